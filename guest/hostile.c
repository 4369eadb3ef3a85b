/*
 * The hostile-guest matrix: one scenario per command, each a bug class
 * that VMM CVEs came from, then a driver reset and a checked write and
 * read-back on both storage devices.
 *
 * Command (parsed in main.c): hostile NAME [SEED] [n=N]
 * Needs a virtio-blk function (1af4:1001/1042) and an NVMe function (class
 * 010802) on bus 0 and at least 128 MiB of RAM. NAME:
 *   self-dma   virtio-blk data buffers and NVMe PRPs (and an NVMe CQ) on
 *              the devices' own BARs: common cfg, notify, ISR, MSI-X table,
 *              registers, doorbells
 *   loops      descriptor loops (direct, via indirect, nested indirect),
 *              NVMe PRP lists whose entries point at the list itself
 *   indirect   indirect tables far past the queue size, 4 GiB long, not a
 *              multiple of 16, empty, past the end of RAM, wrapping
 *   fwcfg      fw_cfg DMA aimed at the LAPIC, IOAPIC, HPET, a device BAR,
 *              with its descriptor in MMIO and over its own descriptor
 *   nvme-flood more commands than the CQ holds with no completion taken,
 *              then n doorbell writes (default 1000000) of bad values
 *   bars       two devices' BARs at one address, a BAR over RAM, over the
 *              LAPIC, over the other device's MSI-X table, a BAR moved
 *              with requests in flight, then all set back
 *   timers     every HPET timer periodic at the shortest period (legacy
 *              routing on, the PIC lines unmasked) and the RTC at its
 *              fastest periodic rate with every interrupt on, for n ms
 *              (default 1500); left running afterwards
 *   legacy     n random bytes (default 20000) to the 8042's command and
 *              data ports (0xD1 and 0xF0-0xFF, which reset the machine,
 *              excepted), n more spread over every register of COM2-4
 *              (COM1 is the console), then loopback with and without the
 *              FIFO
 *   resets     n (default 2000) device resets with requests in flight:
 *              virtio status 0, NVMe CC.EN 0
 *   cfg-dma    command register, BARs and the MSI-X capability written
 *              while requests run (a kick with bus mastering off too)
 *   msix-race  the MSI-X entry in use rewritten (address, data, mask)
 *              while completions stream
 *   decode     memory decoding (and I/O decoding) toggled mid-request
 *              (these three: n rounds of 16 requests per device, default
 *              200; the MSI-X messages use vector 0x40, which main.c's
 *              handler acknowledges once the command loop enables
 *              interrupts again)
 *   io         only the check below
 * Output (each line prefixed "testguest: "):
 *   hostile NAME: WHAT k=v ...        what was done and what came back
 *   hostile NAME io virtio-blk=ok|FAIL nvme=ok|FAIL
 *   hostile NAME done                  (last)
 *   hostile NAME FAIL WHY              (a step that could not run)
 * The io line: each device reset and set up again by a driver that follows
 * the rules, one 4 KiB write of a pattern from SEED, a read-back into
 * another buffer, compared byte for byte.
 *
 * Memory: everything lives at 64 MiB .. 128 MiB; the devices are never
 * given addresses in the guest's own low memory.
 */
#include "hostile.h"

#include <stdbool.h>
#include <stddef.h>

#include "cpu.h"
#include "layout.h"
#include "mmio.h"
#include "pci.h"
#include "rand.h"
#include "text.h"
#include "virtio_modern.h"

void *memset(void *d, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#define H_VQ 0x4000000ULL    /* virtqueue rings (VIRTQ_*_OFF) */
#define H_HDR 0x4004000ULL   /* virtio-blk headers (16 bytes per head), status at +0x800 */
#define H_ASQ 0x4010000ULL   /* NVMe admin SQ (16 entries) */
#define H_ACQ 0x4011000ULL   /* NVMe admin CQ */
#define H_SQ 0x4012000ULL    /* NVMe I/O SQ 1 (64 entries) */
#define H_CQ 0x4013000ULL    /* NVMe I/O CQ 1 */
#define H_ID 0x4014000ULL    /* identify data */
#define H_SQ2 0x4015000ULL   /* NVMe I/O SQ 2 */
#define H_TABLE 0x4020000ULL /* indirect tables, PRP lists: 64 KiB */
#define H_DATA 0x4100000ULL  /* write buffer */
#define H_BACK 0x4200000ULL  /* read-back buffer */
#define H_BULK 0x4400000ULL  /* 4 MiB of bulk I/O */
#define H_RAM_END 0x8000000ULL
#define H_QSIZE 64
#define H_NVQ 64

#define MSIX_CAP 0x11
#define VIRTIO_F_INDIRECT_DESC (1u << 28)
#define ARRAY_LEN_(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */

struct vb {
    unsigned dev;
    uint64_t bar[6], size[6];
    struct virtio_modern v;
    volatile uint8_t *isr;
    uint64_t msix; /* MSI-X table address (0: none) */
    volatile uint16_t *notify;
    uint64_t desc_at; /* where vb_setup puts the descriptor table (0: H_VQ) */
    uint16_t qsize, avail, used;
};

struct nv {
    unsigned dev;
    uint64_t bar[6], size[6];
    volatile uint8_t *r;
    uint64_t msix;
    unsigned stride, lbads;
    uint16_t sqt, cqh, asqt, acqh, cqsize, sqsize;
    uint8_t phase, aphase;
};

struct hx {
    const char *name;
    uint64_t rng, tsc_khz, n;
    void (*say)(const char *line);
    struct vb vb;
    struct nv nv;
    unsigned fails;
};

static uint64_t rnd(struct hx *x)
{
    return xorshift64(&x->rng);
}

/* "hostile NAME: what" then " key=value" pairs by the caller. */
static void start(struct hx *x, struct out_line *l, const char *what)
{
    l->n = 0;
    ln_str(l, "hostile ");
    ln_str(l, x->name);
    ln_str(l, ": ");
    ln_str(l, what);
}

static void note(struct hx *x, const char *what, const char *k1, uint64_t v1, const char *k2,
                 uint64_t v2)
{
    struct out_line l;
    start(x, &l, what);
    if (k1)
        ln_kv(&l, k1, v1);
    if (k2)
        ln_kv(&l, k2, v2);
    x->say(l.buf);
}

static void fail(struct hx *x, const char *what)
{
    struct out_line l;
    l.n = 0;
    ln_str(&l, "hostile ");
    ln_str(&l, x->name);
    ln_str(&l, " FAIL ");
    ln_str(&l, what);
    x->say(l.buf);
    x->fails++;
}

static bool passed(uint64_t deadline)
{
    cpu_relax();
    return tsc_passed(deadline);
}

/* Waits ms: used between phases whose log lines share one rate limit (ten
 * a second), so that every phase's lines reach the log. */
static void pause_ms(struct hx *x, uint64_t ms)
{
    uint64_t deadline = tsc_deadline(x->tsc_khz, ms);
    while (!passed(deadline))
        ;
}

static uint32_t cfg_rd(unsigned dev, unsigned reg)
{
    return pci_cfg_read(0, dev, reg);
}

static void cfg_wr(unsigned dev, unsigned reg, uint32_t v)
{
    pci_cfg_write(0, dev, reg, v);
}

/* The config offset of capability id, 0 if absent. */
static unsigned find_cap(unsigned dev, unsigned id)
{
    unsigned ptr = cfg_rd(dev, 0x34) & 0xfc;
    for (unsigned guard = 0; ptr >= 0x40 && guard < 48; guard++) {
        uint32_t h = cfg_rd(dev, ptr);
        if ((h & 0xff) == id)
            return ptr;
        ptr = (h >> 8) & 0xfc;
    }
    return 0;
}

static uint64_t msix_table(unsigned dev, const uint64_t bar[6])
{
    unsigned cap = find_cap(dev, MSIX_CAP);
    if (!cap)
        return 0;
    uint32_t t = cfg_rd(dev, cap + 4);
    return bar[t & 7] ? bar[t & 7] + (t & ~7u) : 0;
}

/* MSI-X enable (bit 15 of message control) and function mask (bit 14). */
static void msix_control(unsigned dev, bool enable, bool mask)
{
    unsigned cap = find_cap(dev, MSIX_CAP);
    if (cap) {
        uint32_t h = cfg_rd(dev, cap);
        h = (h & 0x3fffffffu) | (enable ? 1u << 31 : 0) | (mask ? 1u << 30 : 0);
        cfg_wr(dev, cap, h);
    }
}

/* The first assigned memory BAR of a function (its config register). */
static unsigned first_bar(const uint64_t bar[6])
{
    for (unsigned i = 0; i < 6; i++)
        if (bar[i])
            return i;
    return 0;
}

/* ------------------------------------------------------------------ */
/* virtio-blk, polled at CPL0                                          */

static void vb_status(struct vb *b, uint8_t s)
{
    w8(b->v.common, VCOM_STATUS, s);
}

/* Resets the device and sets queue 0 up by the rules (its MSI-X vector 0
 * when msix, else none). False when the device refuses a step. */
static bool vb_setup(struct hx *x, bool msix)
{
    struct vb *b = &x->vb;
    volatile uint8_t *c = b->v.common;
    vb_status(b, 0);
    uint64_t deadline = tsc_deadline(x->tsc_khz, 1000);
    while (r8(c, VCOM_STATUS) != 0)
        if (passed(deadline))
            return false;
    vb_status(b, VST_ACK | VST_DRIVER);
    w32(c, VCOM_DFSELECT, 0);
    uint32_t low = r32(c, VCOM_DF) & VIRTIO_F_INDIRECT_DESC; /* the loops need it */
    w32(c, VCOM_DFSELECT, 1);
    if (!(r32(c, VCOM_DF) & 1))
        return false;
    w32(c, VCOM_GFSELECT, 0);
    w32(c, VCOM_GF, low);
    w32(c, VCOM_GFSELECT, 1);
    w32(c, VCOM_GF, 1); /* VERSION_1 */
    vb_status(b, VST_ACK | VST_DRIVER | VST_FEATURES_OK);
    if (!(r8(c, VCOM_STATUS) & VST_FEATURES_OK))
        return false;
    w16(c, 0x10, 0xffff); /* no configuration-change vector */
    w16(c, VCOM_Q_SELECT, 0);
    uint16_t max = r16(c, VCOM_Q_SIZE);
    b->qsize = max < H_QSIZE ? max : H_QSIZE;
    if (b->qsize < 8)
        return false;
    w16(c, VCOM_Q_SIZE, b->qsize);
    w16(c, VCOM_Q_MSIX, msix ? 0 : 0xffff);
    memset((void *)(uintptr_t)H_VQ, 0, VIRTQ_RINGS_SIZE);
    w64(c, VCOM_Q_DESC, b->desc_at ? b->desc_at : H_VQ);
    w64(c, VCOM_Q_AVAIL, H_VQ + VIRTQ_AVAIL_OFF);
    w64(c, VCOM_Q_USED, H_VQ + VIRTQ_USED_OFF);
    b->notify = (volatile uint16_t *)(b->v.notify + r16(c, VCOM_Q_NOFF) * b->v.notify_mult);
    w16(c, VCOM_Q_ENABLE, 1);
    vb_status(b, VST_ACK | VST_DRIVER | VST_FEATURES_OK | VST_DRIVER_OK);
    b->avail = b->used = 0;
    return true;
}

static volatile struct virtq_desc *vb_desc(unsigned i)
{
    return (volatile struct virtq_desc *)(uintptr_t)H_VQ + (i % H_QSIZE);
}

static void desc_set(volatile struct virtq_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    d->addr = addr;
    d->len = len;
    d->flags = flags;
    d->next = next;
}

/* Request header for head (type, sector); its status byte preset to 0xEE. */
static uint64_t vb_hdr(unsigned head, uint32_t type, uint64_t sector)
{
    volatile uint32_t *h = (volatile uint32_t *)(uintptr_t)(H_HDR + 16ull * head);
    h[0] = type;
    h[1] = 0;
    *(volatile uint64_t *)(h + 2) = sector;
    *(volatile uint8_t *)(uintptr_t)(H_HDR + 0x800 + head) = 0xEE;
    return (uint64_t)(uintptr_t)h;
}

static uint8_t vb_status_byte(unsigned head)
{
    return *(volatile uint8_t *)(uintptr_t)(H_HDR + 0x800 + head);
}

static void vb_add(struct vb *b, uint16_t head)
{
    volatile struct virtq_avail *a =
        (volatile struct virtq_avail *)(uintptr_t)(H_VQ + VIRTQ_AVAIL_OFF);
    a->ring[b->avail % b->qsize] = head;
    b->avail++;
}

/* A well-formed request at descriptors head..head+2: type 0 reads into
 * data, type 1 writes from it. */
static void vb_put(struct vb *b, uint16_t head, uint32_t type, uint64_t sector, uint64_t data,
                   uint32_t len)
{
    desc_set(vb_desc(head), vb_hdr(head, type, sector), 16, VIRTQ_DESC_F_NEXT,
             (uint16_t)((head + 1) % b->qsize));
    desc_set(vb_desc(head + 1u), data, len,
             VIRTQ_DESC_F_NEXT | (type == 0 ? VIRTQ_DESC_F_WRITE : 0),
             (uint16_t)((head + 2) % b->qsize));
    desc_set(vb_desc(head + 2u), H_HDR + 0x800 + head, 1, VIRTQ_DESC_F_WRITE, 0);
    vb_add(b, head);
}

static void vb_kick(struct vb *b)
{
    volatile struct virtq_avail *a =
        (volatile struct virtq_avail *)(uintptr_t)(H_VQ + VIRTQ_AVAIL_OFF);
    barrier();
    a->idx = b->avail;
    full_fence();
    *b->notify = 0;
}

static uint16_t vb_used_idx(void)
{
    return ((volatile struct virtq_used *)(uintptr_t)(H_VQ + VIRTQ_USED_OFF))->idx;
}

/* Waits up to ms for every published request; returns how many of them
 * completed. */
static unsigned vb_wait(struct hx *x, uint64_t ms)
{
    uint64_t deadline = tsc_deadline(x->tsc_khz, ms);
    while (vb_used_idx() != x->vb.avail && !passed(deadline))
        ;
    return (uint16_t)(vb_used_idx() - x->vb.used);
}

/* One request at head 0, waited for: its status byte, 0x100 on timeout. */
static unsigned vb_io(struct hx *x, uint32_t type, uint64_t sector, uint64_t data, uint32_t len)
{
    vb_put(&x->vb, 0, type, sector, data, len);
    vb_kick(&x->vb);
    unsigned done = vb_wait(x, 250);
    x->vb.used = vb_used_idx();
    return done ? vb_status_byte(0) : 0x100;
}

/* ------------------------------------------------------------------ */
/* NVMe, polled at CPL0                                                */

enum { NV_CAP = 0x00, NV_CC = 0x14, NV_CSTS = 0x1c, NV_AQA = 0x24, NV_ASQ = 0x28, NV_ACQ = 0x30 };
#define NV_CC_ON (1u | 6u << 16 | 4u << 20)

static void nv_db(struct nv *n, unsigned qid, bool cq, uint32_t v)
{
    w32(n->r, 0x1000 + (2 * qid + (cq ? 1 : 0)) * n->stride, v);
}

static void sqe_put(uint64_t at, uint8_t opc, uint16_t cid, uint32_t nsid, uint64_t prp1,
                    uint64_t prp2, uint32_t cdw10, uint32_t cdw11, uint32_t cdw12)
{
    volatile uint32_t *e = (volatile uint32_t *)(uintptr_t)at;
    for (unsigned i = 0; i < 16; i++)
        e[i] = 0;
    e[0] = opc | (uint32_t)cid << 16;
    e[1] = nsid;
    *(volatile uint64_t *)(e + 6) = prp1;
    *(volatile uint64_t *)(e + 8) = prp2;
    e[10] = cdw10;
    e[11] = cdw11;
    e[12] = cdw12;
}

static bool nv_ready(struct hx *x, bool want)
{
    uint64_t deadline = tsc_deadline(x->tsc_khz, 1000);
    for (;;) {
        uint32_t csts = r32(x->nv.r, NV_CSTS);
        if ((csts & 1) == (want ? 1u : 0u) && !(csts & 2))
            return true;
        if ((csts & 2) && !want)
            return (csts & 1) == 0;
        if (passed(deadline))
            return false;
    }
}

/* An admin command, waited for: its status field, 0x10000 on timeout. */
static unsigned nv_admin(struct hx *x, uint8_t opc, uint32_t nsid, uint64_t prp1, uint32_t cdw10,
                         uint32_t cdw11)
{
    struct nv *n = &x->nv;
    sqe_put(H_ASQ + 64ull * n->asqt, opc, n->asqt, nsid, prp1, 0, cdw10, cdw11, 0);
    n->asqt = (uint16_t)((n->asqt + 1) % 16);
    nv_db(n, 0, false, n->asqt);
    volatile uint32_t *c = (volatile uint32_t *)(uintptr_t)(H_ACQ + 16ull * n->acqh);
    uint64_t deadline = tsc_deadline(x->tsc_khz, 1000);
    while (((c[3] >> 16) & 1) != n->aphase)
        if (passed(deadline))
            return 0x10000;
    unsigned status = (c[3] >> 17) & 0x7fff;
    if (++n->acqh == 16) {
        n->acqh = 0;
        n->aphase ^= 1;
    }
    nv_db(n, 0, true, n->acqh);
    return status;
}

/* Resets the controller, enables it by the rules and creates I/O CQ 1
 * (cq entries, interrupts on vector 0 when ien) and SQ 1 (64 entries). */
static bool nv_setup(struct hx *x, uint16_t cq, bool ien)
{
    struct nv *n = &x->nv;
    w32(n->r, NV_CC, 0);
    if (!nv_ready(x, false))
        return false;
    memset((void *)(uintptr_t)H_ASQ, 0, 0x5000);
    w32(n->r, NV_AQA, 15u << 16 | 15u);
    w64(n->r, NV_ASQ, H_ASQ);
    w64(n->r, NV_ACQ, H_ACQ);
    w32(n->r, NV_CC, NV_CC_ON);
    if (!nv_ready(x, true))
        return false;
    n->asqt = n->acqh = n->sqt = n->cqh = 0;
    n->aphase = n->phase = 1;
    n->cqsize = cq;
    n->sqsize = H_NVQ;
    if (nv_admin(x, 0x06, 1, H_ID, 0, 0) != 0) /* identify namespace 1 */
        return false;
    n->lbads = *(volatile uint8_t *)(uintptr_t)(H_ID + 130);
    if (n->lbads < 9 || n->lbads > 12)
        return false;
    return nv_admin(x, 0x05, 0, H_CQ, (uint32_t)(cq - 1) << 16 | 1, 1u | (ien ? 2u : 0)) == 0 &&
           nv_admin(x, 0x01, 0, H_SQ, (H_NVQ - 1u) << 16 | 1, 1u << 16 | 1) == 0;
}

/* An I/O command on SQ 1 (not rung): opc 1 write, 2 read, of bytes. */
static void nv_put(struct hx *x, uint8_t opc, uint64_t lba, uint64_t prp1, uint64_t prp2,
                   uint32_t bytes)
{
    struct nv *n = &x->nv;
    uint32_t blocks = bytes >> n->lbads;
    sqe_put(H_SQ + 64ull * n->sqt, opc, n->sqt, 1, prp1, prp2, (uint32_t)lba, (uint32_t)(lba >> 32),
            blocks ? blocks - 1 : 0);
    n->sqt = (uint16_t)((n->sqt + 1) % n->sqsize);
}

/* Takes up to want completions from CQ 1 within ms; returns how many,
 * *errors (if not NULL) counts those with a non-zero status. */
static unsigned nv_reap(struct hx *x, unsigned want, uint64_t ms, unsigned *errors)
{
    struct nv *n = &x->nv;
    unsigned got = 0;
    uint64_t deadline = tsc_deadline(x->tsc_khz, ms);
    while (got < want) {
        volatile uint32_t *c = (volatile uint32_t *)(uintptr_t)(H_CQ + 16ull * n->cqh);
        if (((c[3] >> 16) & 1) != n->phase) {
            if (passed(deadline))
                break;
            continue;
        }
        if (errors && ((c[3] >> 17) & 0x7fff))
            ++*errors;
        got++;
        if (++n->cqh == n->cqsize) {
            n->cqh = 0;
            n->phase ^= 1;
        }
        nv_db(n, 1, true, n->cqh);
    }
    return got;
}

/* One I/O command, waited for: its status field, 0x10000 on timeout. */
static unsigned nv_io(struct hx *x, uint8_t opc, uint64_t lba, uint64_t prp1, uint64_t prp2,
                      uint32_t bytes)
{
    struct nv *n = &x->nv;
    nv_put(x, opc, lba, prp1, prp2, bytes);
    nv_db(n, 1, false, n->sqt);
    volatile uint32_t *c = (volatile uint32_t *)(uintptr_t)(H_CQ + 16ull * n->cqh);
    if (nv_reap(x, 1, 500, 0) != 1)
        return 0x10000;
    return (c[3] >> 17) & 0x7fff;
}

/* ------------------------------------------------------------------ */
/* The check every scenario ends with                                  */

static void fill(struct hx *x, uint64_t at, uint32_t len)
{
    uint64_t s = x->rng | 1;
    for (uint32_t i = 0; i < len; i += 8)
        *(volatile uint64_t *)(uintptr_t)(at + i) = xorshift64(&s);
}

static bool vb_check(struct hx *x)
{
    uint64_t sector = 8 + (x->rng & 0xff) * 8;
    fill(x, H_DATA, 4096);
    memset((void *)(uintptr_t)H_BACK, 0x5a, 4096);
    return vb_setup(x, false) && vb_io(x, 1, sector, H_DATA, 4096) == 0 &&
           vb_io(x, 0, sector, H_BACK, 4096) == 0 &&
           memcmp((const void *)(uintptr_t)H_DATA, (const void *)(uintptr_t)H_BACK, 4096) == 0;
}

static bool nv_check(struct hx *x)
{
    fill(x, H_DATA, 4096);
    memset((void *)(uintptr_t)H_BACK, 0x5a, 4096);
    if (!nv_setup(x, H_NVQ, false))
        return false;
    uint64_t lba = ((x->rng & 0xff) * 4096 + 65536) >> x->nv.lbads;
    return nv_io(x, 1, lba, H_DATA, 0, 4096) == 0 && nv_io(x, 2, lba, H_BACK, 0, 4096) == 0 &&
           memcmp((const void *)(uintptr_t)H_DATA, (const void *)(uintptr_t)H_BACK, 4096) == 0;
}

/* ------------------------------------------------------------------ */
/* 1. DMA into the devices' own registers                              */

static void self_dma(struct hx *x)
{
    struct vb *b = &x->vb;
    struct nv *n = &x->nv;
    const uint64_t vtargets[] = {(uint64_t)(uintptr_t)b->v.common, (uint64_t)(uintptr_t)b->v.notify,
                                 (uint64_t)(uintptr_t)b->isr, b->msix,
                                 (uint64_t)(uintptr_t)b->v.devcfg};
    unsigned answered = 0, refused = 0;
    for (unsigned i = 0; i < ARRAY_LEN_(vtargets); i++) {
        for (uint32_t type = 0; type < 2; type++) {
            if (!vb_setup(x, false)) {
                fail(x, "virtio-blk set-up");
                return;
            }
            unsigned st = vb_io(x, type, 0, vtargets[i], 512);
            answered += st != 0x100;
            refused += st != 0 && st != 0x100;
        }
    }
    /* The descriptor table itself in the common configuration, then in
     * the MSI-X table. */
    for (unsigned i = 0; i < 2; i++) {
        b->desc_at = i ? b->msix : vtargets[0];
        if (vb_setup(x, false)) {
            vb_add(b, 0);
            vb_kick(b);
            answered += vb_wait(x, 200);
        }
    }
    b->desc_at = 0;
    note(x, "virtio-blk data buffers on common/notify/isr/msix/devcfg, rings on common/msix",
         "requests", 12, "answered", answered);
    note(x, "virtio-blk", "refused", refused, 0, 0);

    uint64_t base = (uint64_t)(uintptr_t)n->r;
    const uint64_t ntargets[] = {base, base + 0x1000, n->msix, (uint64_t)(uintptr_t)b->v.common};
    unsigned nerr = 0, ndone = 0;
    for (unsigned i = 0; i < ARRAY_LEN_(ntargets); i++) {
        for (uint8_t opc = 1; opc <= 2; opc++) {
            if (!nv_setup(x, H_NVQ, false)) {
                fail(x, "nvme set-up");
                return;
            }
            unsigned st = nv_io(x, opc, 0, ntargets[i], 0, 4096);
            ndone += st != 0x10000;
            nerr += st != 0 && st != 0x10000;
        }
    }
    note(x, "nvme PRPs on registers/doorbells/msix/virtio common", "commands", 8, "answered",
         ndone);
    note(x, "nvme", "errors", nerr, 0, 0);
    /* A CQ in the doorbell page: completions would be posted into the
     * controller's own doorbells. */
    unsigned cq_st = 0x10000, sq_st = 0x10000;
    if (nv_setup(x, H_NVQ, false)) {
        cq_st = nv_admin(x, 0x05, 0, base + 0x1000, 15u << 16 | 2, 1);
        sq_st = nv_admin(x, 0x01, 0, H_SQ2, 15u << 16 | 2, 2u << 16 | 1);
        sqe_put(H_SQ2, 2, 7, 1, H_BULK, 0, 0, 0, 0);
        nv_db(n, 2, false, 1);
        pause_ms(x, 100);
    }
    note(x, "nvme CQ 2 in its doorbell page", "create_cq_status", cq_st, "create_sq_status", sq_st);
}

/* ------------------------------------------------------------------ */
/* 2. Loops                                                            */

static volatile struct virtq_desc *table_desc(unsigned i)
{
    return (volatile struct virtq_desc *)(uintptr_t)H_TABLE + i;
}

static void loops(struct hx *x)
{
    unsigned completed = 0;
    for (unsigned kind = 0; kind < 5; kind++) {
        if (!vb_setup(x, false)) {
            fail(x, "virtio-blk set-up");
            return;
        }
        uint64_t hdr = vb_hdr(0, kind == 0, 0);
        switch (kind) {
        case 0: /* a write, all readable: 0 -> 1 -> 2 -> 0 */
            desc_set(vb_desc(0), hdr, 16, 1, 1);
            desc_set(vb_desc(1), H_BULK, 512, 1, 2);
            desc_set(vb_desc(2), H_BULK + 512, 512, 1, 0);
            break;
        case 1: /* 0 -> 0 */
            desc_set(vb_desc(0), hdr, 16, 1, 0);
            break;
        case 2: /* indirect: 0 -> 1 -> 2 -> 1 */
        case 3: /* indirect: 0 -> 0 */
            desc_set(table_desc(0), hdr, 16, 1, kind == 2 ? 1 : 0);
            desc_set(table_desc(1), H_BULK, 512, 3, 2);
            desc_set(table_desc(2), H_HDR + 0x800, 1, 3, 1);
            desc_set(vb_desc(0), H_TABLE, 48, 4, 0);
            break;
        default: /* an indirect table whose entry is the table again */
            desc_set(table_desc(0), H_TABLE, 32, 4, 1);
            desc_set(table_desc(1), H_HDR + 0x800, 1, 2, 0);
            desc_set(vb_desc(0), H_TABLE, 32, 4, 0);
            break;
        }
        vb_add(&x->vb, 0);
        vb_kick(&x->vb);
        completed += vb_wait(x, 200);
    }
    note(x,
         "virtio-blk chains: direct loop, self loop, indirect loop, indirect self loop, nested "
         "indirect",
         "chains", 5, "completed", completed);

    /* NVMe: a read of 32 KiB whose PRP list entries all point at the list
     * page itself (the data lands on the list being walked); reads of 1 MiB
     * (MDTS) whose list starts 16 bytes before its page's end, so that its
     * second entry is the pointer to the next list: the same page again
     * (aligned), or the list's own start (misaligned, a loop); entries
     * pointing into the list at a misaligned offset. MDTS (256 pages)
     * keeps an aligned list from ever needing a second chain. */
    volatile uint64_t *list = (volatile uint64_t *)(uintptr_t)H_TABLE;
    unsigned st[4];
    for (unsigned kind = 0; kind < 4; kind++) {
        if (!nv_setup(x, H_NVQ, false)) {
            fail(x, "nvme set-up");
            return;
        }
        for (unsigned i = 0; i < 512; i++)
            list[i] = kind == 3 ? H_TABLE + 8 : H_TABLE;
        list[510] = H_BULK;
        list[511] = kind == 2 ? H_TABLE + 0xff0 : H_TABLE;
        bool chained = kind == 1 || kind == 2;
        st[kind] =
            nv_io(x, 2, 0, H_BULK, chained ? H_TABLE + 0xff0 : H_TABLE, chained ? 1u << 20 : 32768);
    }
    note(x, "nvme PRP list entries on the list itself", "status", st[0], "misaligned_status",
         st[3]);
    note(x, "nvme PRP list chained to its own page (1 MiB read)", "status", st[1], "looped_status",
         st[2]);
}

/* ------------------------------------------------------------------ */
/* 3. Huge indirect tables                                             */

static void indirect(struct hx *x)
{
    static const struct {
        uint64_t addr;
        uint32_t len;
    } cases[] = {
        {H_TABLE, 16 * 4096},        /* 4096 entries, queue of 64 */
        {H_TABLE, 0xFFFFFFF0u},      /* 4 GiB */
        {H_TABLE, 0xFFFFFFFFu},      /* 4 GiB, not a multiple of 16 */
        {H_TABLE, 17},               /* not a multiple of 16 */
        {H_TABLE, 8},                /* less than one entry */
        {H_TABLE, 0},                /* empty */
        {H_RAM_END - 16, 64},        /* past the end of RAM */
        {0xFFFFFFFFFFFFFFF0ull, 32}, /* wraps */
        {H_TABLE + 1, 48},           /* misaligned */
    };
    /* A table of valid-looking entries, all chained. */
    for (unsigned i = 0; i < 4096; i++)
        desc_set(table_desc(i), H_BULK + 512ull * (i % 64), 512, 3, (uint16_t)(i + 1));
    unsigned completed = 0, status_ok = 0;
    for (unsigned i = 0; i < ARRAY_LEN_(cases); i++) {
        if (!vb_setup(x, false)) {
            fail(x, "virtio-blk set-up");
            return;
        }
        desc_set(table_desc(0), vb_hdr(0, 0, 0), 16, 1, 1);
        desc_set(vb_desc(0), cases[i].addr, cases[i].len, 4, 0);
        vb_add(&x->vb, 0);
        vb_kick(&x->vb);
        unsigned got = vb_wait(x, 200);
        completed += got;
        status_ok += got && vb_status_byte(0) == 0;
    }
    note(x,
         "virtio-blk indirect tables: 4096 entries, 4 GiB, 4 GiB-1, 17, 8, 0, past RAM, wrapping, "
         "misaligned",
         "requests", ARRAY_LEN_(cases), "completed", completed);
    note(x, "virtio-blk", "status_ok", status_ok, 0, 0);
}

/* ------------------------------------------------------------------ */
/* 4. fw_cfg DMA aimed at MMIO                                         */

static uint32_t be32(uint32_t v)
{
    return __builtin_bswap32(v);
}

/* Writes the DMA address register (big-endian, the low half starts it). */
static void fwcfg_dma_start(uint64_t desc)
{
    outl(0x514, be32((uint32_t)(desc >> 32)));
    outl(0x518, be32((uint32_t)desc));
}

static void fwcfg(struct hx *x)
{
    const uint64_t targets[] = {0xFEE00000ull,
                                0xFEC00000ull,
                                0xFED00000ull,
                                (uint64_t)(uintptr_t)x->vb.v.common,
                                (uint64_t)(uintptr_t)x->nv.r + 0x1000,
                                x->nv.msix,
                                H_RAM_END - 8};
    volatile uint32_t *d = (volatile uint32_t *)(uintptr_t)H_TABLE;
    unsigned errors = 0;
    for (unsigned i = 0; i < ARRAY_LEN_(targets); i++) {
        for (unsigned write = 0; write < 2; write++) {
            /* Select the signature (read), or a read-only item (write). */
            d[0] = be32(write ? 0x00010018u : 0x00000008u | 0x02u);
            d[1] = be32(4096);
            d[2] = be32((uint32_t)(targets[i] >> 32));
            d[3] = be32((uint32_t)targets[i]);
            fwcfg_dma_start(H_TABLE);
            errors += (be32(d[0]) & 1) != 0;
        }
    }
    note(x,
         "DMA into LAPIC/IOAPIC/HPET/virtio common/nvme doorbells/msix/end of RAM, reads and "
         "writes",
         "transfers", 2 * ARRAY_LEN_(targets), "errors", errors);
    pause_ms(x, 1100);
    /* The descriptor in MMIO (LAPIC, HPET, the NVMe doorbells), at the end
     * of RAM and wrapping. */
    const uint64_t descs[] = {0xFEE00000ull, 0xFED00000ull, (uint64_t)(uintptr_t)x->nv.r + 0x1000,
                              H_RAM_END - 8, 0xFFFFFFFFFFFFFFF8ull};
    for (unsigned i = 0; i < ARRAY_LEN_(descs); i++)
        fwcfg_dma_start(descs[i]);
    note(x, "descriptors in MMIO, across the end of RAM, wrapping", "descriptors",
         ARRAY_LEN_(descs), 0, 0);
    pause_ms(x, 1100);
    /* A read whose data lands on its own descriptor, and a skip of 4 GiB. */
    d[0] = be32(0x00000008u | 0x02u);
    d[1] = be32(64);
    d[2] = 0;
    d[3] = be32((uint32_t)H_TABLE);
    fwcfg_dma_start(H_TABLE);
    uint32_t self = be32(d[0]);
    d[0] = be32(0x04u);
    d[1] = 0xffffffffu;
    fwcfg_dma_start(H_TABLE);
    note(x, "data over its own descriptor, then a 4 GiB skip", "control_after", self,
         "skip_control", be32(d[0]));
}

/* ------------------------------------------------------------------ */
/* 5. NVMe CQ overflow and doorbell floods                             */

static void nvme_flood(struct hx *x)
{
    struct nv *n = &x->nv;
    if (!nv_setup(x, 4, false)) {
        fail(x, "nvme set-up");
        return;
    }
    for (unsigned i = 0; i < 60; i++)
        nv_put(x, 2, i, H_BULK + 4096ull * i, 0, 4096);
    nv_db(n, 1, false, n->sqt);
    pause_ms(x, 300);
    /* Nothing taken yet: the CQ holds 3. */
    unsigned posted = 0;
    for (unsigned i = 0; i < 4; i++)
        posted += ((*(volatile uint32_t *)(uintptr_t)(H_CQ + 16ull * i + 12) >> 16) & 1) == 1;
    unsigned errors = 0;
    unsigned got = nv_reap(x, 60, 2000, &errors);
    note(x, "60 reads on a CQ of 4, none taken for 300 ms", "posted_before_taking", posted,
         "completed", got);
    note(x, "nvme", "errors", errors, "csts", r32(n->r, NV_CSTS));

    for (uint64_t i = 0; i < x->n; i++) {
        uint64_t r = rnd(x);
        switch (r & 7) {
        case 0:
        case 1:
            nv_db(n, 1, false, (uint32_t)(r >> 8)); /* SQ 1 tail, any value */
            break;
        case 2:
            nv_db(n, 1, true, (uint32_t)(r >> 8)); /* CQ 1 head, any value */
            break;
        case 3:
            nv_db(n, 0, false, (uint32_t)(r >> 8) & 0x1f);
            break;
        case 4:
            nv_db(n, (unsigned)(r >> 40) & 0x3ff, (r >> 50) & 1, (uint32_t)(r >> 8));
            break;
        case 5:
            w16(n->r, 0x1000 + ((unsigned)(r >> 8) & 0xffe), (uint16_t)(r >> 24));
            break;
        default:
            nv_db(n, 1, false, (uint32_t)(r >> 8) % H_NVQ); /* plausible tails */
            break;
        }
    }
    note(x, "doorbell writes of bad values", "writes", x->n, "csts", r32(n->r, NV_CSTS));
    /* virtio-blk: notifications for queues that do not exist, bad values. */
    if (vb_setup(x, false)) {
        for (uint64_t i = 0; i < x->n / 16; i++)
            *(volatile uint16_t *)(x->vb.v.notify + ((rnd(x) & 0x3f) * x->vb.v.notify_mult %
                                                     0x1000)) = (uint16_t)rnd(x);
    }
    note(x, "virtio-blk notifications of bad values", "writes", x->n / 16, 0, 0);
}

/* ------------------------------------------------------------------ */
/* 6. BAR games                                                        */

static void bar_write(unsigned dev, unsigned bar, uint64_t addr)
{
    cfg_wr(dev, 0x10 + 4 * bar, (uint32_t)addr);
    if ((cfg_rd(dev, 0x10 + 4 * bar) & 6) == 4)
        cfg_wr(dev, 0x14 + 4 * bar, (uint32_t)(addr >> 32));
}

static void bars(struct hx *x)
{
    struct vb *b = &x->vb;
    struct nv *n = &x->nv;
    unsigned vbar = 0;
    uint64_t common = (uint64_t)(uintptr_t)b->v.common;
    for (unsigned i = 0; i < 6; i++)
        if (b->bar[i] && common >= b->bar[i] && common < b->bar[i] + b->size[i])
            vbar = i;
    unsigned nbar = first_bar(n->bar);
    uint64_t nbase = n->bar[nbar], vbase = b->bar[vbar];
    if (!vb_setup(x, false) || !nv_setup(x, H_NVQ, false)) {
        fail(x, "set-up");
        return;
    }
    /* NVMe registers over the virtio-blk BAR: I/O on both. */
    bar_write(n->dev, nbar, vbase);
    unsigned vst = vb_io(x, 1, 0, H_DATA, 512);
    uint32_t seen = r32((volatile uint8_t *)(uintptr_t)vbase, 0);
    bar_write(n->dev, nbar, nbase);
    unsigned nst = nv_io(x, 2, 0, H_BULK, 0, 4096);
    note(x, "nvme BAR0 on the virtio-blk BAR", "virtio_status", vst, "nvme_status", nst);
    note(x, "nvme", "read_there", seen, 0, 0);
    /* Over RAM, the LAPIC, the other device's MSI-X table, above 4 GiB. */
    const uint64_t places[] = {H_BULK, 0xFEE00000ull, b->msix & ~0x3fffull, 0x100000000ull,
                               0xFFFFC000ull};
    for (unsigned i = 0; i < ARRAY_LEN_(places); i++) {
        bar_write(n->dev, nbar, places[i]);
        (void)*(volatile uint32_t *)(uintptr_t)(places[i] < 0x100000000ull ? places[i] : H_BULK);
        (void)*(volatile uint32_t *)(uintptr_t)(LAPIC_BASE + 0x20);
        if (b->msix)
            (void)*(volatile uint32_t *)(uintptr_t)(b->msix + 12);
    }
    bar_write(n->dev, nbar, nbase);
    note(x, "nvme BAR0 over RAM, LAPIC, virtio MSI-X table, 4 GiB, top of 4 GiB", "places",
         ARRAY_LEN_(places), "nvme_status_after", nv_io(x, 2, 0, H_BULK, 0, 4096));
    /* virtio-blk's BAR moved with 20 requests in flight, and back. */
    unsigned moved_done = 0;
    for (unsigned round = 0; round < 20; round++) {
        for (unsigned i = 0; i < 20; i++)
            vb_put(b, (uint16_t)(3 * i), round & 1, 64 * i, H_BULK + 65536ull * i, 65536);
        vb_kick(b);
        bar_write(b->dev, vbar, round & 1 ? H_BULK : vbase + 0x1000000);
        bar_write(n->dev, nbar, vbase);
        bar_write(b->dev, vbar, vbase);
        bar_write(n->dev, nbar, nbase);
        moved_done += vb_wait(x, 500);
        b->used = vb_used_idx();
    }
    note(x, "virtio-blk BAR moved under 20 requests, 20 times", "completed", moved_done, 0, 0);
}

/* ------------------------------------------------------------------ */
/* 7. Timer storms                                                     */

#define HPET ((volatile uint8_t *)(uintptr_t)0xFED00000ull)

static uint8_t cmos(uint8_t reg, int value)
{
    outb(0x70, reg);
    if (value >= 0)
        outb(0x71, (uint8_t)value);
    return inb(0x71);
}

static void timers(struct hx *x)
{
    unsigned ntimers = ((r32(HPET, 0) >> 8) & 0x1f) + 1;
    w32(HPET, 0x10, 0);
    for (unsigned t = 0; t < ntimers; t++) {
        volatile uint8_t *tn = HPET + 0x100 + 0x20 * t;
        uint32_t routes = r32(tn, 4);
        unsigned route = routes ? (unsigned)__builtin_ctz(routes) : 0;
        /* Periodic, interrupts on, level for odd timers, timer 1 32-bit. */
        w32(tn, 0, 4u | 8u | 0x40u | (t & 1 ? 2u : 0) | (t == 1 ? 0x100u : 0) | route << 9);
        w64(tn, 8, 1);
        w64(tn, 8, 1); /* the period: one tick */
    }
    w32(HPET, 0x10, 3); /* enable, legacy replacement */
    cmos(0x0A, 0x23);   /* 32.768 kHz, rate 3: 122 us */
    cmos(0x0B, 0x72);   /* PIE, AIE, UIE, 24 h */
    /* Let the storms through the PIC (IRQ 0, 2, 8) for the window. */
    uint8_t m1 = inb(0x21), m2 = inb(0xA1);
    outb(0x21, m1 & ~5u);
    outb(0xA1, m2 & ~1u);
    uint64_t deadline = tsc_deadline(x->tsc_khz, x->n), reads = 0, rtc_flags = 0;
    __asm__ volatile("sti" ::: "memory");
    while (!tsc_passed(deadline)) {
        rtc_flags |= cmos(0x0C, -1);  /* re-arms the RTC interrupt */
        w32(HPET, 0x20, 0xffffffffu); /* level timers' status */
        reads++;
    }
    __asm__ volatile("cli" ::: "memory");
    outb(0x21, m1);
    outb(0xA1, m2);
    uint32_t c1 = r32(HPET, 0xF0);
    note(x, "every HPET timer periodic at 1 tick, legacy routing, RTC rate 3 PIE+AIE+UIE", "timers",
         ntimers, "ms", x->n);
    note(x, "storm", "polls", reads, "rtc_flags", rtc_flags & 0xf0);
    note(x, "left running", "hpet_counter_moves", r32(HPET, 0xF0) != c1, 0, 0);
}

/* ------------------------------------------------------------------ */
/* 8. PS/2 and UART floods                                             */

static void legacy(struct hx *x)
{
    uint64_t kbd = 0;
    for (uint64_t i = 0; i < x->n; i++) {
        uint64_t r = rnd(x);
        uint8_t v = (uint8_t)r;
        if (r & 0x100) {
            /* Commands that reset the machine (output-port write, pulse of
             * the reset line) excepted: everything else goes. */
            if (v != 0xD1 && v < 0xF0) {
                outb(0x64, v);
                kbd++;
            }
        } else {
            outb(0x60, v);
            kbd++;
        }
        (void)inb(0x64);
        if (r & 0x200)
            (void)inb(0x60);
    }
    for (unsigned i = 0; i < 64; i++) /* drain what the controller queued */
        (void)inb(0x60);
    static const uint16_t coms[] = {0x2F8, 0x3E8, 0x2E8};
    uint64_t uart = 0, looped = 0;
    for (unsigned c = 0; c < 3; c++) {
        uint16_t p = coms[c];
        for (uint64_t i = 0; i < x->n / 3; i++) {
            uint64_t r = rnd(x);
            outb((uint16_t)(p + (r & 7)), (uint8_t)(r >> 8));
            (void)inb((uint16_t)(p + ((r >> 16) & 7)));
            uart++;
        }
        /* Loopback with the FIFO on, then off: bytes written, bytes back. */
        outb((uint16_t)(p + 3), 0x03);
        outb((uint16_t)(p + 4), 0x1f);
        outb((uint16_t)(p + 2), (uint8_t)(c == 1 ? 0x00 : 0xc7));
        for (unsigned i = 0; i < 4096; i++) {
            outb(p, (uint8_t)i);
            if (inb((uint16_t)(p + 5)) & 1) {
                (void)inb(p);
                looped++;
            }
        }
        outb((uint16_t)(p + 4), 0);
        outb((uint16_t)(p + 2), 0x06);
    }
    note(x, "8042 command and data bytes", "writes", kbd, 0, 0);
    note(x, "COM2-4 random register writes, loopback with and without FIFO", "writes", uart,
         "looped_back", looped);
}

/* ------------------------------------------------------------------ */
/* 9. Reset storms                                                     */

static void resets(struct hx *x)
{
    struct vb *b = &x->vb;
    unsigned vset = 0, nset = 0;
    for (uint64_t i = 0; i < x->n; i++) {
        if (!vb_setup(x, false))
            continue;
        vset++;
        for (unsigned k = 0; k < 8; k++)
            vb_put(b, (uint16_t)(3 * k), (unsigned)(rnd(x) & 1), rnd(x) & 0xffff,
                   H_BULK + 65536ull * k, 65536);
        vb_kick(b);
        if (i & 1)
            vb_status(b, 0);
        else
            w16(b->v.common, VCOM_Q_ENABLE, 0); /* a queue disable is as good */
    }
    vb_status(b, 0);
    note(x, "virtio-blk status 0 with 8 requests in flight", "resets", x->n, "set_up", vset);
    for (uint64_t i = 0; i < x->n; i++) {
        if (!nv_setup(x, H_NVQ, false))
            continue;
        nset++;
        for (unsigned k = 0; k < 16; k++)
            nv_put(x, (uint8_t)(1 + (rnd(x) & 1)), rnd(x) & 0xffff, H_BULK + 65536ull * k, 0, 4096);
        nv_db(&x->nv, 1, false, x->nv.sqt);
        w32(x->nv.r, NV_CC, i & 1 ? 0 : NV_CC_ON | 1u << 14); /* reset, or shutdown */
    }
    note(x, "nvme CC.EN 0 (or shutdown) with 16 commands in flight", "resets", x->n, "set_up",
         nset);
}

/* ------------------------------------------------------------------ */
/* 10-12. Config space, MSI-X and decoding during DMA                  */

enum poke { POKE_CFG, POKE_MSIX, POKE_DECODE };

/* Rewrites the vector-0 entry of the table at t: LAPIC address of a
 * present or absent CPU, or not the LAPIC at all; vector 0x40 (the guest's
 * handler EOIs it) fixed or lowest priority, edge or level; masked or not. */
static void msix_scramble(struct hx *x, uint64_t t)
{
    if (!t)
        return;
    volatile uint32_t *e = (volatile uint32_t *)(uintptr_t)t;
    uint64_t r = rnd(x);
    static const uint32_t addrs[] = {0xFEE00000u, 0xFEE01000u,      0xFEEFF000u,
                                     0xFEE0000Cu, (uint32_t)H_BULK, 0xFEC00000u};
    e[0] = addrs[r % ARRAY_LEN_(addrs)];
    e[1] = (r >> 8) & 1 ? (uint32_t)(r >> 32) : 0;
    e[2] = 0x40u | (uint32_t)((r >> 12) & 0x100) | (uint32_t)((r >> 16) & 0xc000);
    e[3] = (r >> 20) & 1;
}

/* One hostile write to the function at dev while its requests run. */
static void poke(struct hx *x, enum poke kind, unsigned dev, const uint64_t bar[6], uint64_t table)
{
    uint32_t cmd = cfg_rd(dev, 0x04) & 0xffff;
    uint64_t r = rnd(x);
    switch (kind) {
    case POKE_CFG:
        switch (r % 5) {
        case 0: /* bus mastering off and on */
            cfg_wr(dev, 0x04, cmd & ~4u);
            cfg_wr(dev, 0x04, cmd);
            break;
        case 1: { /* BAR sizing in the middle of everything */
            unsigned i = first_bar(bar);
            cfg_wr(dev, 0x10 + 4 * i, 0xffffffffu);
            (void)cfg_rd(dev, 0x10 + 4 * i);
            cfg_wr(dev, 0x10 + 4 * i, (uint32_t)bar[i]);
            break;
        }
        case 2: /* MSI-X on with the function masked, then off */
            msix_control(dev, true, (r >> 8) & 1);
            msix_control(dev, false, false);
            break;
        case 3: /* the whole command register, random, then back */
            cfg_wr(dev, 0x04, (uint32_t)(r >> 16) & 0x7ff);
            cfg_wr(dev, 0x04, cmd);
            break;
        default: /* the capability area, byte by byte: rewritten with itself */
            for (unsigned reg = 0x40; reg < 0x100; reg += 4)
                cfg_wr(dev, reg, cfg_rd(dev, reg));
            break;
        }
        break;
    case POKE_MSIX:
        msix_scramble(x, table);
        break;
    case POKE_DECODE:
        cfg_wr(dev, 0x04, cmd & ~(r & 1 ? 2u : 3u));
        if (r & 2) /* a doorbell nobody decodes */
            *(volatile uint32_t *)(uintptr_t)bar[first_bar(bar)] = (uint32_t)r;
        cfg_wr(dev, 0x04, cmd);
        break;
    }
}

static void during_dma(struct hx *x, enum poke kind)
{
    struct vb *b = &x->vb;
    bool msix = kind == POKE_MSIX;
    unsigned rounds = (unsigned)x->n, vdone = 0, ndone = 0, nerr = 0, stalls = 0;
    for (unsigned round = 0; round < rounds; round++) {
        if (round % 16 == 0) {
            if (msix) {
                msix_control(b->dev, true, false);
                msix_scramble(x, b->msix);
            }
            if (!vb_setup(x, msix)) {
                fail(x, "virtio-blk set-up");
                return;
            }
        }
        for (unsigned i = 0; i < 16; i++)
            vb_put(b, (uint16_t)(3 * i), (unsigned)(rnd(x) & 1), 128 * i, H_BULK + 65536ull * i,
                   65536);
        if (kind == POKE_CFG && round % 16 == 1) { /* a kick with bus mastering off */
            uint32_t cmd = cfg_rd(b->dev, 0x04) & 0xffff;
            pause_ms(x, 110); /* the device's log budget refills: its line is not suppressed */
            cfg_wr(b->dev, 0x04, cmd & ~4u);
            vb_kick(b);
            /* The kick reaches the device's queue thread through an
             * eventfd: give it time to see it while bus mastering is
             * still off, else the test of it depends on the host's
             * scheduling. */
            pause_ms(x, 20);
            cfg_wr(b->dev, 0x04, cmd);
        }
        vb_kick(b);
        for (unsigned k = 0; k < 4; k++)
            poke(x, kind, b->dev, b->bar, b->msix);
        unsigned got = vb_wait(x, 300);
        stalls += got != 16;
        vdone += got;
        b->used = vb_used_idx();
        if (got != 16)
            round |= 15; /* set the device up again */
    }
    vb_status(b, 0);
    msix_control(b->dev, false, false);
    note(x, "virtio-blk: 16 x 64 KiB per round", "rounds", rounds, "completed", vdone);
    note(x, "virtio-blk", "stalled_rounds", stalls, 0, 0);

    struct nv *n = &x->nv;
    stalls = 0;
    for (unsigned round = 0; round < rounds; round++) {
        if (round % 16 == 0) {
            if (msix) {
                msix_control(n->dev, true, false);
                msix_scramble(x, n->msix);
            }
            if (!nv_setup(x, H_NVQ, msix)) {
                fail(x, "nvme set-up");
                return;
            }
        }
        for (unsigned i = 0; i < 16; i++)
            nv_put(x, (uint8_t)(1 + (rnd(x) & 1)), 16 * i, H_BULK + 65536ull * i, 0, 4096);
        if (kind == POKE_CFG && round % 16 == 1) { /* a doorbell with bus mastering off */
            uint32_t cmd = cfg_rd(n->dev, 0x04) & 0xffff;
            pause_ms(x, 110);
            cfg_wr(n->dev, 0x04, cmd & ~4u);
            nv_db(n, 1, false, n->sqt);
            pause_ms(x, 20); /* as for virtio-blk: the I/O thread sees it with mastering off */
            cfg_wr(n->dev, 0x04, cmd);
        }
        nv_db(n, 1, false, n->sqt);
        for (unsigned k = 0; k < 4; k++)
            poke(x, kind, n->dev, n->bar, n->msix);
        if (kind == POKE_DECODE)
            nv_db(n, 1, false, n->sqt); /* the doorbell again, decoded this time */
        unsigned got = nv_reap(x, 16, 300, &nerr);
        stalls += got != 16;
        ndone += got;
        if (got != 16)
            round |= 15;
    }
    w32(n->r, NV_CC, 0);
    msix_control(n->dev, false, false);
    note(x, "nvme: 16 x 4 KiB per round", "rounds", rounds, "completed", ndone);
    note(x, "nvme", "errors", nerr, "stalled_rounds", stalls);
}

static void cfg_dma(struct hx *x)
{
    during_dma(x, POKE_CFG);
}

static void msix_race(struct hx *x)
{
    during_dma(x, POKE_MSIX);
}

static void decode(struct hx *x)
{
    during_dma(x, POKE_DECODE);
}

static void io_only(struct hx *x)
{
    (void)x;
}

/* ------------------------------------------------------------------ */

static const struct {
    const char *name;
    void (*run)(struct hx *x);
    uint64_t n; /* default n= */
} scenarios[] = {
    {"self-dma", self_dma, 0},
    {"loops", loops, 0},
    {"indirect", indirect, 0},
    {"fwcfg", fwcfg, 0},
    {"nvme-flood", nvme_flood, 1000000},
    {"bars", bars, 0},
    {"timers", timers, 1500},
    {"legacy", legacy, 20000},
    {"resets", resets, 2000},
    {"cfg-dma", cfg_dma, 200},
    {"msix-race", msix_race, 200},
    {"decode", decode, 200},
    {"io", io_only, 0},
};

static bool find_devices(struct hx *x)
{
    unsigned bus;
    uint64_t next = BENCH_MMIO_BASE;
    if (!pci_find(0, -1, pci_is_virtio_blk, &bus, &x->vb.dev) ||
        !pci_find(0, -1, pci_is_nvme, &bus, &x->nv.dev))
        return false;
    struct vb *b = &x->vb;
    struct nv *n = &x->nv;
    pci_assign_bars(0, b->dev, b->bar, b->size, &next);
    pci_assign_bars(0, n->dev, n->bar, n->size, &next);
    msix_control(b->dev, false, false);
    msix_control(n->dev, false, false);
    if (!virtio_modern_map(0, b->dev, b->bar, &b->v))
        return false;
    b->isr = pci_virtio_cap(0, b->dev, b->bar, 3, 0);
    b->msix = msix_table(b->dev, b->bar);
    n->r = (volatile uint8_t *)(uintptr_t)n->bar[0];
    n->msix = msix_table(n->dev, n->bar);
    n->stride = 4u << ((r32(n->r, NV_CAP + 4)) & 0xf);
    return n->r != 0;
}

void hostile(const char *args, uint64_t tsc_khz, void (*say)(const char *line))
{
    struct hx x;
    memset(&x, 0, sizeof(x));
    x.say = say;
    x.tsc_khz = tsc_khz;
    unsigned which = ARRAY_LEN_(scenarios);
    const char *p = args;
    for (unsigned i = 0; i < ARRAY_LEN_(scenarios); i++) {
        const char *rest;
        if (word_is(p, scenarios[i].name, &rest) && (*rest == ' ' || *rest == 0)) {
            which = i;
            p = rest;
            break;
        }
    }
    uint64_t seed = 1, n = which < ARRAY_LEN_(scenarios) ? scenarios[which].n : 0;
    while (*p == ' ')
        p++;
    if (*p >= '0' && *p <= '9' && !parse_decimal(&p, ARG_NUMBER_MAX, &seed))
        p = "?";
    while (*p == ' ')
        p++;
    if (word_is(p, "n=", &p) && !parse_decimal(&p, 100000000, &n))
        p = "?";
    if (which == ARRAY_LEN_(scenarios) || *p) {
        say("hostile FAIL usage: hostile self-dma|loops|indirect|fwcfg|nvme-flood|bars|timers|"
            "legacy|resets|cfg-dma|msix-race|decode|io [SEED] [n=N]");
        return;
    }
    x.name = scenarios[which].name;
    x.n = n;
    x.rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    if (!find_devices(&x)) {
        fail(&x, "needs a virtio-blk and an NVMe function on bus 0");
        return;
    }
    scenarios[which].run(&x);

    struct out_line l;
    l.n = 0;
    ln_str(&l, "hostile ");
    ln_str(&l, x.name);
    ln_str(&l, " io virtio-blk=");
    ln_str(&l, vb_check(&x) ? "ok" : "FAIL");
    ln_str(&l, " nvme=");
    ln_str(&l, nv_check(&x) ? "ok" : "FAIL");
    say(l.buf);
    vb_status(&x.vb, 0);
    w32(x.nv.r, NV_CC, 0);
    l.n = 0;
    ln_str(&l, "hostile ");
    ln_str(&l, x.name);
    ln_str(&l, " done");
    say(l.buf);
}
