/*
 * Storage benchmark: minimal polling drivers for virtio-blk (modern
 * interface) and NVMe, run at CPL3.
 *
 * This host's KVM emulates CPL0 code (a few million instructions/s) but
 * runs CPL3 natively, so only PCI enumeration (config mechanism #1, port
 * I/O) and the CPL3 plumbing run at CPL0; device set-up and the I/O loops
 * run at CPL3 against user-accessible RAM and BARs, polling completions (no
 * interrupts). Doorbell and notify writes are MMIO exits: submissions are
 * batched.
 *
 * Command: bench virtio-blk|nvme [BUS:DEV] [KEY=VALUE...]
 *   BUS:DEV  PCI location (decimal); default: the first match on bus 0
 *            (virtio-blk: 1af4:1001 or 1af4:1042; NVMe: class 010802)
 *   ms=N     measured time per test (default 2000), after warm=N ms (200)
 *   qd=N     requests in flight for 4 KiB random I/O (32; at most 64)
 *   sqd=N    requests in flight for 1 MiB sequential I/O (8; at most 16)
 *   batch=N  / sbatch=N: new requests gathered before a doorbell
 *            (default qd/4 and sqd/4, at least 1)
 *   seg=N    virtio data segment size in KiB (64): a 1 MiB request is
 *            1024/N descriptors over physically contiguous memory
 *   tests=rr,rw,sr,sw  which of randread4k, randwrite4k, seqread1m,
 *            seqwrite1m to run (default all, in that order)
 *   keep=1   leave the device running afterwards (queues set up, BARs
 *            decoded), for tests that look at it from the host; a later
 *            bench reuses the same BAR addresses and queue memory
 * Output (each line prefixed "testguest: "):
 *   bench DEV device VVVV:DDDD class CCCCCC at B:D bar0 0x... [...]
 *   bench DEV disk bytes=N block=N queue=N [mdts=N] [event_idx=0|1]
 *   bench DEV TEST qd=N bs=N ops=N us=N iops=N mibps=N bad=N err=N kicks=N
 *   bench DEV TEST FAIL <why>          (a test that could not run)
 *   bench DEV done                     (always last, unless FAIL below)
 *   bench FAIL <why>                   (nothing was measured)
 * ops: requests completed in the measured window of us microseconds; bad:
 * read blocks whose tag was wrong; err: requests completed with an error
 * status; kicks: doorbell/notify writes in the window.
 *
 * Data check: the host fills the disk so that the first 8 bytes of each
 * 4 KiB block hold sb_tag(block number); writes store the same tags, so
 * every read can be checked.
 *
 * Memory: layout.h BENCH_* (2 MiB .. 48 MiB of RAM; the VM needs 64 MiB).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu.h"
#include "layout.h"
#include "mmio.h"
#include "pci.h"
#include "storage_bench.h"

void *memset(void *d, int c, size_t n);

/* ------------------------------------------------------------------ */
/* Shared by CPL0 and CPL3                                             */

static inline uint64_t sb_tag(uint64_t block)
{
    return 0x53544f5242454e43ULL ^ (block * 0x9E3779B97F4A7C15ULL);
}

enum sb_kind { SB_VIRTIO, SB_NVME };

struct sb_test {
    const char *name, *key;
    bool write, seq;
    uint32_t bytes;
};

static const struct sb_test sb_tests[4] = {
    {"randread4k", "rr", false, false, 4096},
    {"randwrite4k", "rw", true, false, 4096},
    {"seqread1m", "sr", false, true, 1u << 20},
    {"seqwrite1m", "sw", true, true, 1u << 20},
};

#define SB_MAX_QD 64
#define SB_MAX_SQD 16

struct sb_result {
    uint64_t ops, tsc, bad, err, kicks;
};

/* Driver state in RAM at BENCH_STATE_ADDR (user-accessible). */
struct sb {
    /* Set at CPL0. */
    enum sb_kind kind;
    uint64_t tsc_khz, ms, warm_ms;
    unsigned qd, sqd, batch, sbatch;
    uint32_t seg;
    volatile uint8_t *common, *notify, *devcfg; /* virtio */
    uint32_t notify_mult;
    volatile uint8_t *regs; /* NVMe BAR0 */
    const struct sb_test *test;

    /* Set at CPL3. */
    char err[80];
    bool broken;
    uint64_t capacity; /* bytes */
    uint32_t block;    /* logical block size */
    uint64_t kicks;
    uint64_t rng;
    struct sb_result res;
    /* virtio */
    uint16_t qsize, avail_idx, avail_pub, last_used;
    bool event_idx;
    volatile uint16_t *notify_addr;
    unsigned dps; /* descriptors per request */
    /* NVMe */
    uint32_t dstrd, mdts_bytes, qs;
    uint16_t asq_tail, acq_head, acid;
    uint8_t acq_phase, cq_phase;
    uint16_t sq_tail, cq_head, cq_unrung;
};

#define SB ((struct sb *)(uintptr_t)BENCH_STATE_ADDR)
_Static_assert(sizeof(struct sb) <= 0x10000, "bench state too big");

/* Queue memory (BENCH_QUEUE_ADDR .. 0x3FFFFF). */
#define VQ_DESC (BENCH_QUEUE_ADDR + 0x0000)
#define VQ_AVAIL (BENCH_QUEUE_ADDR + 0x1000)
#define VQ_USED (BENCH_QUEUE_ADDR + 0x2000)
#define VQ_HDRS (BENCH_QUEUE_ADDR + 0x3000)
#define VQ_STATUS (BENCH_QUEUE_ADDR + 0x4000)
#define NV_ASQ (BENCH_QUEUE_ADDR + 0x5000)
#define NV_ACQ (BENCH_QUEUE_ADDR + 0x6000)
#define NV_IDENT (BENCH_QUEUE_ADDR + 0x7000)
#define NV_SQ (BENCH_QUEUE_ADDR + 0x10000)  /* 1024 x 64 bytes */
#define NV_CQ (BENCH_QUEUE_ADDR + 0x20000)  /* 1024 x 16 bytes */
#define NV_PRP (BENCH_QUEUE_ADDR + 0x30000) /* one list page per request */
#define VQ_MAX 256
#define NV_AQ 16
#define NV_QMAX 1024

/* ------------------------------------------------------------------ */
/* CPL3: helpers                                                       */

static void u_fail(struct sb *s, const char *why)
{
    unsigned i = 0;
    while (why[i] && i < sizeof(s->err) - 1) {
        s->err[i] = why[i];
        i++;
    }
    s->err[i] = 0;
}

static uint64_t u_deadline(struct sb *s, uint64_t ms)
{
    return rdtsc() + ms * s->tsc_khz;
}

static bool u_expired(uint64_t deadline)
{
    return (int64_t)(rdtsc() - deadline) >= 0;
}

static uint64_t u_rand(struct sb *s)
{
    uint64_t x = s->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->rng = x;
    return x;
}

static inline uint8_t *slot_data(struct sb *s, unsigned slot)
{
    return (uint8_t *)(uintptr_t)(BENCH_DATA_ADDR + (uint64_t)slot * s->test->bytes);
}

/* Before a read: clear the tags; before a write: store them. */
static void tags_prepare(struct sb *s, unsigned slot, uint64_t off)
{
    uint8_t *d = slot_data(s, slot);
    uint32_t n = s->test->bytes / 4096;
    for (uint32_t i = 0; i < n; i++)
        *(volatile uint64_t *)(d + (uint64_t)i * 4096) =
            s->test->write ? sb_tag(off / 4096 + i) : 0;
}

static uint64_t tags_check(struct sb *s, unsigned slot, uint64_t off)
{
    uint8_t *d = slot_data(s, slot);
    uint32_t n = s->test->bytes / 4096;
    uint64_t bad = 0;
    for (uint32_t i = 0; i < n; i++)
        if (*(volatile uint64_t *)(d + (uint64_t)i * 4096) != sb_tag(off / 4096 + i))
            bad++;
    return bad;
}

/* ------------------------------------------------------------------ */
/* CPL3: virtio-blk over the modern interface                          */

#define VIRTIO_F_EVENT_IDX (1ULL << 29)
#define VIRTIO_F_VERSION_1 (1ULL << 32)
#define VCOM_DFSELECT 0x00
#define VCOM_DF 0x04
#define VCOM_GFSELECT 0x08
#define VCOM_GF 0x0c
#define VCOM_STATUS 0x14
#define VCOM_Q_SELECT 0x16
#define VCOM_Q_SIZE 0x18
#define VCOM_Q_MSIX 0x1a
#define VCOM_Q_ENABLE 0x1c
#define VCOM_Q_NOFF 0x1e
#define VCOM_Q_DESC 0x20
#define VCOM_Q_AVAIL 0x28
#define VCOM_Q_USED 0x30
#define VST_ACK 1
#define VST_DRIVER 2
#define VST_DRIVER_OK 4
#define VST_FEATURES_OK 8
#define VDESC_NEXT 1
#define VDESC_WRITE 2

struct vq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

struct vq_avail {
    uint16_t flags, idx;
    uint16_t ring[VQ_MAX + 1]; /* + used_event */
};

struct vq_used_elem {
    uint32_t id, len;
};

struct vq_used {
    uint16_t flags, idx;
    struct vq_used_elem ring[VQ_MAX];
    uint16_t avail_event_max; /* at ring[qsize] for smaller queues */
};

struct vblk_hdr {
    uint32_t type, reserved;
    uint64_t sector;
};

#define VQ_D ((volatile struct vq_desc *)(uintptr_t)VQ_DESC)
#define VQ_A ((volatile struct vq_avail *)(uintptr_t)VQ_AVAIL)
#define VQ_U ((volatile struct vq_used *)(uintptr_t)VQ_USED)
#define VQ_H ((volatile struct vblk_hdr *)(uintptr_t)VQ_HDRS)
#define VQ_S ((volatile uint8_t *)(uintptr_t)VQ_STATUS)

static volatile uint16_t *vq_avail_event(struct sb *s)
{
    return (volatile uint16_t *)&VQ_U->ring[s->qsize];
}

static int vio_init(struct sb *s)
{
    volatile uint8_t *c = s->common;
    w8(c, VCOM_STATUS, 0);
    uint64_t dl = u_deadline(s, 1000);
    while (r8(c, VCOM_STATUS) != 0)
        if (u_expired(dl)) {
            u_fail(s, "virtio reset did not complete");
            return -1;
        }
    w8(c, VCOM_STATUS, VST_ACK);
    w8(c, VCOM_STATUS, VST_ACK | VST_DRIVER);
    w32(c, VCOM_DFSELECT, 0);
    uint64_t f = r32(c, VCOM_DF);
    w32(c, VCOM_DFSELECT, 1);
    f |= (uint64_t)r32(c, VCOM_DF) << 32;
    if (!(f & VIRTIO_F_VERSION_1)) {
        u_fail(s, "device does not offer VIRTIO_F_VERSION_1");
        return -1;
    }
    uint64_t want = VIRTIO_F_VERSION_1 | (f & VIRTIO_F_EVENT_IDX);
    s->event_idx = (want & VIRTIO_F_EVENT_IDX) != 0;
    w32(c, VCOM_GFSELECT, 0);
    w32(c, VCOM_GF, (uint32_t)want);
    w32(c, VCOM_GFSELECT, 1);
    w32(c, VCOM_GF, (uint32_t)(want >> 32));
    w8(c, VCOM_STATUS, VST_ACK | VST_DRIVER | VST_FEATURES_OK);
    if (!(r8(c, VCOM_STATUS) & VST_FEATURES_OK)) {
        u_fail(s, "device refused FEATURES_OK");
        return -1;
    }
    w16(c, VCOM_Q_SELECT, 0);
    uint16_t qmax = r16(c, VCOM_Q_SIZE);
    uint16_t qs = VQ_MAX;
    while (qs > qmax)
        qs >>= 1;
    if (qs < 8) {
        u_fail(s, "queue 0 too small");
        return -1;
    }
    s->qsize = qs;
    memset((void *)(uintptr_t)VQ_DESC, 0, 0x5000);
    w16(c, VCOM_Q_SIZE, qs);
    w16(c, VCOM_Q_MSIX, 0xffff);
    w64(c, VCOM_Q_DESC, VQ_DESC);
    w64(c, VCOM_Q_AVAIL, VQ_AVAIL);
    w64(c, VCOM_Q_USED, VQ_USED);
    uint16_t noff = r16(c, VCOM_Q_NOFF);
    s->notify_addr = (volatile uint16_t *)(s->notify + (uint64_t)noff * s->notify_mult);
    if (s->event_idx)
        VQ_A->ring[qs] = 0x8000; /* used_event: no interrupts wanted */
    else
        VQ_A->flags = 1; /* VIRTQ_AVAIL_F_NO_INTERRUPT */
    w16(c, VCOM_Q_ENABLE, 1);
    s->avail_idx = s->avail_pub = s->last_used = 0;
    w8(c, VCOM_STATUS, VST_ACK | VST_DRIVER | VST_FEATURES_OK | VST_DRIVER_OK);
    s->capacity = ((uint64_t)r32(s->devcfg, 0) | (uint64_t)r32(s->devcfg, 4) << 32) * 512;
    s->block = 512;
    return 0;
}

static void vio_shutdown(struct sb *s)
{
    w8(s->common, VCOM_STATUS, 0);
    uint64_t dl = u_deadline(s, 1000);
    while (r8(s->common, VCOM_STATUS) != 0 && !u_expired(dl))
        cpu_relax();
}

static int vio_prepare(struct sb *s, unsigned qd)
{
    uint32_t bytes = s->test->bytes;
    uint32_t seg = s->seg < bytes ? s->seg : bytes;
    uint32_t nseg = bytes / seg;
    s->dps = nseg + 2;
    if (qd * s->dps > s->qsize) {
        u_fail(s, "queue too small for qd x descriptors per request");
        return -1;
    }
    for (unsigned slot = 0; slot < qd; slot++) {
        unsigned b = slot * s->dps;
        uint64_t data = (uint64_t)(uintptr_t)slot_data(s, slot);
        VQ_D[b].addr = VQ_HDRS + slot * sizeof(struct vblk_hdr);
        VQ_D[b].len = sizeof(struct vblk_hdr);
        VQ_D[b].flags = VDESC_NEXT;
        VQ_D[b].next = (uint16_t)(b + 1);
        for (uint32_t k = 0; k < nseg; k++) {
            volatile struct vq_desc *d = &VQ_D[b + 1 + k];
            d->addr = data + (uint64_t)k * seg;
            d->len = seg;
            d->flags = (uint16_t)(VDESC_NEXT | (s->test->write ? 0 : VDESC_WRITE));
            d->next = (uint16_t)(b + 2 + k);
        }
        volatile struct vq_desc *st = &VQ_D[b + nseg + 1];
        st->addr = VQ_STATUS + slot;
        st->len = 1;
        st->flags = VDESC_WRITE;
        st->next = 0;
    }
    return 0;
}

static void vio_submit(struct sb *s, unsigned slot, uint64_t off)
{
    VQ_H[slot].type = s->test->write ? 1 : 0; /* OUT : IN */
    VQ_H[slot].reserved = 0;
    VQ_H[slot].sector = off / 512;
    VQ_S[slot] = 0xff;
    VQ_A->ring[s->avail_idx & (s->qsize - 1)] = (uint16_t)(slot * s->dps);
    s->avail_idx++;
}

static void vio_flush(struct sb *s)
{
    barrier();
    VQ_A->idx = s->avail_idx;
    full_fence();
    bool need;
    if (s->event_idx) {
        uint16_t ev = *vq_avail_event(s);
        need = (uint16_t)(s->avail_idx - ev - 1) < (uint16_t)(s->avail_idx - s->avail_pub);
    } else {
        need = !(VQ_U->flags & 1);
    }
    s->avail_pub = s->avail_idx;
    if (need) {
        *s->notify_addr = 0;
        s->kicks++;
    }
}

static unsigned vio_poll(struct sb *s, unsigned *done, unsigned max, uint64_t *errs)
{
    uint16_t idx = VQ_U->idx;
    barrier();
    unsigned n = 0;
    while (s->last_used != idx && n < max) {
        uint32_t id = VQ_U->ring[s->last_used & (s->qsize - 1)].id;
        unsigned slot = id / s->dps;
        if (VQ_S[slot] != 0)
            (*errs)++;
        done[n++] = slot;
        s->last_used++;
    }
    if (n && s->event_idx)
        VQ_A->ring[s->qsize] = (uint16_t)(s->last_used + 0x8000);
    return n;
}

/* ------------------------------------------------------------------ */
/* CPL3: NVMe                                                          */

struct nvme_sqe {
    uint8_t opc, flags;
    uint16_t cid;
    uint32_t nsid;
    uint64_t rsvd, mptr, prp1, prp2;
    uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};

struct nvme_cqe {
    uint32_t dw0, dw1;
    uint16_t sqhd, sqid, cid, status;
};

#define NV_REG_CAP 0x00
#define NV_REG_CC 0x14
#define NV_REG_CSTS 0x1c
#define NV_REG_AQA 0x24
#define NV_REG_ASQ 0x28
#define NV_REG_ACQ 0x30

static void nv_db(struct sb *s, unsigned qid, bool cq, uint32_t v)
{
    w32(s->regs, 0x1000 + (2 * qid + (cq ? 1 : 0)) * (4u << s->dstrd), v);
}

static void sqe_clear(volatile struct nvme_sqe *e)
{
    volatile uint64_t *q = (volatile uint64_t *)e;
    for (unsigned i = 0; i < 8; i++)
        q[i] = 0;
}

/* One admin command; returns the status (0: success) or -1 on timeout. */
static int nv_admin(struct sb *s, uint8_t opc, uint32_t nsid, uint64_t prp1, uint32_t cdw10,
                    uint32_t cdw11)
{
    volatile struct nvme_sqe *e = (volatile struct nvme_sqe *)(uintptr_t)NV_ASQ + s->asq_tail;
    sqe_clear(e);
    e->opc = opc;
    e->cid = s->acid++;
    e->nsid = nsid;
    e->prp1 = prp1;
    e->cdw10 = cdw10;
    e->cdw11 = cdw11;
    s->asq_tail = (uint16_t)((s->asq_tail + 1) % NV_AQ);
    barrier();
    nv_db(s, 0, false, s->asq_tail);
    volatile struct nvme_cqe *c = (volatile struct nvme_cqe *)(uintptr_t)NV_ACQ + s->acq_head;
    uint64_t dl = u_deadline(s, 5000);
    while ((c->status & 1) != s->acq_phase)
        if (u_expired(dl)) {
            u_fail(s, "admin command timed out");
            return -1;
        }
    barrier();
    int status = c->status >> 1;
    if (++s->acq_head == NV_AQ) {
        s->acq_head = 0;
        s->acq_phase ^= 1;
    }
    nv_db(s, 0, true, s->acq_head);
    return status;
}

static int nv_wait_ready(struct sb *s, bool ready, uint64_t ms)
{
    uint64_t dl = u_deadline(s, ms);
    for (;;) {
        uint32_t csts = r32(s->regs, NV_REG_CSTS);
        if (ready && (csts & 2)) {
            u_fail(s, "controller fatal status");
            return -1;
        }
        if ((csts & 1) == (ready ? 1u : 0u))
            return 0;
        if (u_expired(dl)) {
            u_fail(s, ready ? "controller did not become ready" : "controller did not stop");
            return -1;
        }
    }
}

static int nv_init(struct sb *s)
{
    volatile uint8_t *r = s->regs;
    uint32_t cap_lo = r32(r, NV_REG_CAP), cap_hi = r32(r, NV_REG_CAP + 4);
    uint32_t mqes = (cap_lo & 0xffff) + 1;
    uint64_t to_ms = ((cap_lo >> 24) & 0xff) * 500 + 1000;
    s->dstrd = cap_hi & 0xf;
    if ((cap_hi >> 16) & 0xf) {
        u_fail(s, "CAP.MPSMIN above 4 KiB");
        return -1;
    }
    uint32_t cc = r32(r, NV_REG_CC);
    if (cc & 1)
        w32(r, NV_REG_CC, cc & ~1u);
    if (nv_wait_ready(s, false, to_ms) < 0)
        return -1;
    memset((void *)(uintptr_t)NV_ASQ, 0, 0x3000);
    memset((void *)(uintptr_t)NV_CQ, 0, NV_QMAX * sizeof(struct nvme_cqe));
    s->asq_tail = s->acq_head = s->acid = 0;
    s->acq_phase = 1;
    w32(r, NV_REG_AQA, (NV_AQ - 1) << 16 | (NV_AQ - 1));
    w64(r, NV_REG_ASQ, NV_ASQ);
    w64(r, NV_REG_ACQ, NV_ACQ);
    w32(r, NV_REG_CC, 1u | 6u << 16 | 4u << 20); /* EN, NVM, 4 KiB pages, 64/16-byte entries */
    if (nv_wait_ready(s, true, to_ms) < 0)
        return -1;

    const volatile uint8_t *id = (const volatile uint8_t *)(uintptr_t)NV_IDENT;
    if (nv_admin(s, 0x06, 0, NV_IDENT, 1, 0) != 0) { /* Identify controller */
        if (!s->err[0])
            u_fail(s, "identify controller failed");
        return -1;
    }
    uint8_t mdts = id[77];
    s->mdts_bytes = mdts && mdts <= 12 ? 4096u << mdts : 0;
    if (nv_admin(s, 0x06, 1, NV_IDENT, 0, 0) != 0) { /* Identify namespace 1 */
        if (!s->err[0])
            u_fail(s, "identify namespace 1 failed");
        return -1;
    }
    uint64_t nsze = 0;
    for (unsigned i = 0; i < 8; i++)
        nsze |= (uint64_t)id[i] << (8 * i);
    unsigned flbas = id[26] & 0xf;
    unsigned lbads = id[128 + 4 * flbas + 2];
    if (lbads < 9 || lbads > 12) {
        u_fail(s, "namespace block size not 512..4096");
        return -1;
    }
    s->block = 1u << lbads;
    s->capacity = nsze << lbads;

    uint32_t qs = NV_QMAX < mqes ? NV_QMAX : mqes;
    s->qs = qs;
    s->sq_tail = s->cq_head = s->cq_unrung = 0;
    s->cq_phase = 1;
    if (nv_admin(s, 0x05, 0, NV_CQ, (qs - 1) << 16 | 1, 1) != 0) { /* CQ 1, contiguous */
        if (!s->err[0])
            u_fail(s, "create I/O completion queue failed");
        return -1;
    }
    if (nv_admin(s, 0x01, 0, NV_SQ, (qs - 1) << 16 | 1, 1u << 16 | 1) != 0) { /* SQ 1 -> CQ 1 */
        if (!s->err[0])
            u_fail(s, "create I/O submission queue failed");
        return -1;
    }
    return 0;
}

static void nv_shutdown(struct sb *s)
{
    w32(s->regs, NV_REG_CC, r32(s->regs, NV_REG_CC) & ~1u);
    (void)nv_wait_ready(s, false, 5000);
}

static int nv_prepare(struct sb *s, unsigned qd)
{
    uint32_t bytes = s->test->bytes;
    if (s->mdts_bytes && bytes > s->mdts_bytes) {
        u_fail(s, "transfer exceeds the controller's MDTS");
        return -1;
    }
    if (qd >= s->qs) {
        u_fail(s, "I/O queue smaller than qd");
        return -1;
    }
    uint32_t pages = bytes / 4096;
    for (unsigned slot = 0; slot < qd && pages > 2; slot++) {
        volatile uint64_t *list = (volatile uint64_t *)(uintptr_t)(NV_PRP + slot * 4096);
        uint64_t data = (uint64_t)(uintptr_t)slot_data(s, slot);
        for (uint32_t i = 1; i < pages; i++)
            list[i - 1] = data + (uint64_t)i * 4096;
    }
    return 0;
}

static void nv_submit(struct sb *s, unsigned slot, uint64_t off)
{
    volatile struct nvme_sqe *e = (volatile struct nvme_sqe *)(uintptr_t)NV_SQ + s->sq_tail;
    uint32_t bytes = s->test->bytes;
    uint64_t data = (uint64_t)(uintptr_t)slot_data(s, slot);
    uint64_t slba = off / s->block;
    sqe_clear(e);
    e->opc = s->test->write ? 0x01 : 0x02;
    e->cid = (uint16_t)slot;
    e->nsid = 1;
    e->prp1 = data;
    e->prp2 = bytes <= 4096 ? 0 : bytes <= 8192 ? data + 4096 : NV_PRP + slot * 4096;
    e->cdw10 = (uint32_t)slba;
    e->cdw11 = (uint32_t)(slba >> 32);
    e->cdw12 = bytes / s->block - 1;
    if (++s->sq_tail == s->qs)
        s->sq_tail = 0;
}

static void nv_ring_cq(struct sb *s)
{
    nv_db(s, 1, true, s->cq_head);
    s->cq_unrung = 0;
    s->kicks++;
}

static void nv_flush(struct sb *s)
{
    barrier();
    nv_db(s, 1, false, s->sq_tail);
    s->kicks++;
    if (s->cq_unrung >= s->qs / 4)
        nv_ring_cq(s);
}

static unsigned nv_poll(struct sb *s, unsigned *done, unsigned max, uint64_t *errs)
{
    volatile struct nvme_cqe *cq = (volatile struct nvme_cqe *)(uintptr_t)NV_CQ;
    unsigned n = 0;
    while (n < max) {
        volatile struct nvme_cqe *c = &cq[s->cq_head];
        uint16_t st = c->status;
        if ((st & 1) != s->cq_phase)
            break;
        barrier();
        if (st >> 1)
            (*errs)++;
        done[n++] = c->cid;
        if (++s->cq_head == s->qs) {
            s->cq_head = 0;
            s->cq_phase ^= 1;
        }
        s->cq_unrung++;
    }
    if (s->cq_unrung >= s->qs / 2)
        nv_ring_cq(s);
    return n;
}

/* ------------------------------------------------------------------ */
/* CPL3: the measurement loop                                          */

static int u_prepare(struct sb *s, unsigned qd)
{
    return s->kind == SB_VIRTIO ? vio_prepare(s, qd) : nv_prepare(s, qd);
}

static void u_submit(struct sb *s, unsigned slot, uint64_t off)
{
    tags_prepare(s, slot, off);
    barrier();
    if (s->kind == SB_VIRTIO)
        vio_submit(s, slot, off);
    else
        nv_submit(s, slot, off);
}

static void u_flush(struct sb *s)
{
    if (s->kind == SB_VIRTIO)
        vio_flush(s);
    else
        nv_flush(s);
}

static unsigned u_poll(struct sb *s, unsigned *done, unsigned max, uint64_t *errs)
{
    return s->kind == SB_VIRTIO ? vio_poll(s, done, max, errs) : nv_poll(s, done, max, errs);
}

static uint64_t u_next_offset(struct sb *s, uint64_t *seq_off)
{
    uint64_t bytes = s->test->bytes;
    if (s->test->seq) {
        if (*seq_off + bytes > s->capacity)
            *seq_off = 0;
        uint64_t off = *seq_off;
        *seq_off += bytes;
        return off;
    }
    return (u_rand(s) % (s->capacity / bytes)) * bytes;
}

static uint64_t u_init(void *arg);
static uint64_t u_run(void *arg);
static uint64_t u_shutdown(void *arg);

static uint64_t u_init(void *arg)
{
    struct sb *s = arg;
    int rc = s->kind == SB_VIRTIO ? vio_init(s) : nv_init(s);
    if (rc == 0 && s->capacity < (64u << 20)) {
        u_fail(s, "disk smaller than 64 MiB");
        rc = -1;
    }
    return rc == 0 ? 0 : 1;
}

static uint64_t u_shutdown(void *arg)
{
    struct sb *s = arg;
    if (s->kind == SB_VIRTIO)
        vio_shutdown(s);
    else
        nv_shutdown(s);
    return 0;
}

static uint64_t u_run(void *arg)
{
    struct sb *s = arg;
    const struct sb_test *t = s->test;
    unsigned qd = t->seq ? s->sqd : s->qd;
    unsigned batch = t->seq ? s->sbatch : s->batch;
    uint64_t offs[SB_MAX_QD];
    unsigned done[SB_MAX_QD];
    memset(&s->res, 0, sizeof(s->res));
    s->err[0] = 0;
    if ((uint64_t)qd * t->bytes > BENCH_DATA_SIZE) {
        u_fail(s, "qd x request size exceeds the data area");
        return 1;
    }
    if (u_prepare(s, qd) < 0)
        return 1;
    uint64_t khz = s->tsc_khz;
    uint64_t start = rdtsc();
    uint64_t warm_end = start + s->warm_ms * khz, end = warm_end + s->ms * khz;
    uint64_t t0 = start, last_progress = start, seq_off = 0, kicks0 = 0;
    uint64_t ops = 0, bad = 0, errs = 0, errs_window = 0;
    bool measuring = false;
    unsigned inflight = 0, pending = 0;
    s->kicks = 0;
    for (unsigned i = 0; i < qd; i++) {
        offs[i] = u_next_offset(s, &seq_off);
        u_submit(s, i, offs[i]);
        inflight++;
    }
    u_flush(s);
    for (;;) {
        unsigned n = u_poll(s, done, qd, &errs);
        uint64_t now = rdtsc();
        bool running = (int64_t)(now - end) < 0;
        if (!measuring && (int64_t)(now - warm_end) >= 0) {
            measuring = true;
            t0 = now;
            kicks0 = s->kicks;
            errs_window = errs;
            bad = 0;
        }
        for (unsigned k = 0; k < n; k++) {
            unsigned slot = done[k];
            if (slot >= qd) { /* an id we never issued */
                errs++;
                continue;
            }
            inflight--;
            if (!t->write)
                bad += tags_check(s, slot, offs[slot]);
            if (measuring && running)
                ops++;
            if (running) {
                offs[slot] = u_next_offset(s, &seq_off);
                u_submit(s, slot, offs[slot]);
                inflight++;
                pending++;
            }
        }
        if (n)
            last_progress = now;
        if (pending && (pending >= batch || !running)) {
            u_flush(s);
            pending = 0;
        }
        if (!running && inflight == 0)
            break;
        if (now - last_progress > 10000 * khz) {
            u_fail(s, "requests stopped completing (10 s)");
            s->broken = true;
            return 1;
        }
        if (!n)
            cpu_relax();
    }
    if (s->kind == SB_NVME && s->cq_unrung)
        nv_ring_cq(s);
    s->res.ops = ops;
    s->res.tsc = measuring ? end - t0 : 0;
    s->res.bad = bad;
    s->res.err = errs - errs_window;
    s->res.kicks = s->kicks - kicks0;
    return 0;
}

/* ------------------------------------------------------------------ */
/* CPL0: port I/O, PCI, CPL3 plumbing, output                          */

struct tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
} __attribute__((packed));

/* Used by entry.S (user_enter, user_ud_entry). */
extern struct tss64 user_tss;
extern uint64_t user_saved_rsp;
struct tss64 user_tss __attribute__((aligned(16)));
uint64_t user_saved_rsp;

extern uint64_t user_enter(uint64_t (*fn)(void *), void *arg, uint64_t stack);
extern const char user_ud_entry[];

static uint64_t gdt_ram[8] __attribute__((aligned(16)));
static bool cpl3_ready;

struct __attribute__((packed)) sb_desc_ptr {
    uint16_t limit;
    uint64_t base;
};

void cpl3_setup(void)
{
    if (cpl3_ready)
        return;
    gdt_ram[0] = 0;
    gdt_ram[1] = 0x00CF9B000000FFFFULL; /* as the ROM GDT */
    gdt_ram[2] = 0x00CF93000000FFFFULL;
    gdt_ram[3] = 0x00AF9B000000FFFFULL;
    gdt_ram[4] = 0x00CFF3000000FFFFULL; /* SEL_UDATA: DPL3 data */
    gdt_ram[5] = 0x00AFFB000000FFFFULL; /* SEL_UCODE: DPL3 64-bit code */
    uint64_t base = (uint64_t)(uintptr_t)&user_tss, limit = sizeof(user_tss) - 1;
    gdt_ram[6] = (limit & 0xffff) | (base & 0xffffff) << 16 | 0x89ULL << 40 |
                 ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56;
    gdt_ram[7] = base >> 32;
    user_tss.iomap_base = sizeof(user_tss); /* no I/O bitmap: no port I/O at CPL3 */
    struct sb_desc_ptr g = {sizeof(gdt_ram) - 1, (uint64_t)(uintptr_t)gdt_ram};
    __asm__ volatile("lgdt %0" : : "m"(g) : "memory");
    __asm__ volatile("ltr %w0" : : "r"((uint16_t)SEL_TSS) : "memory");

    /* #UD gate: CPL3 sessions end with ud2 (user_ud_entry hands a CPL0 #UD
     * to the ordinary handler). */
    struct sb_desc_ptr idtr;
    __asm__ volatile("sidt %0" : "=m"(idtr));
    volatile uint16_t *gate = (volatile uint16_t *)(uintptr_t)(idtr.base + 6 * 16);
    uint64_t h = (uint64_t)(uintptr_t)user_ud_entry;
    gate[0] = (uint16_t)h;
    gate[3] = (uint16_t)(h >> 16);
    *(volatile uint32_t *)(gate + 4) = (uint32_t)(h >> 32);

    /* User-accessible identity map of 0..4 GiB; the BAR window uncached. */
    volatile uint64_t *pml4 = (volatile uint64_t *)(uintptr_t)PML4_ADDR;
    volatile uint64_t *pdpt = (volatile uint64_t *)(uintptr_t)PDPT_ADDR;
    volatile uint64_t *pd = (volatile uint64_t *)(uintptr_t)PD_LOW_ADDR;
    pml4[0] |= 4;
    for (unsigned i = 0; i < 4; i++)
        pdpt[i] |= 4;
    for (unsigned i = 0; i < 2048; i++)
        pd[i] |= 4;
    for (uint64_t a = BENCH_MMIO_BASE; a < BENCH_MMIO_END; a += 0x200000)
        pd[a >> 21] |= 0x18;
    __asm__ volatile("mov %0, %%cr3" : : "r"((uint64_t)PML4_ADDR) : "memory");
    cpl3_ready = true;
}

static bool dev_matches(enum sb_kind kind, uint32_t id, uint32_t class_rev)
{
    if (id == 0xffffffffu)
        return false;
    if (kind == SB_NVME)
        return (class_rev >> 8) == 0x010802;
    return (id & 0xffff) == 0x1af4 && ((id >> 16) == 0x1001 || (id >> 16) == 0x1042);
}

/* Output line builder. */
struct sb_line {
    char buf[160];
    unsigned n;
};

static void ln_str(struct sb_line *l, const char *s)
{
    while (*s && l->n < sizeof(l->buf) - 1)
        l->buf[l->n++] = *s++;
    l->buf[l->n] = 0;
}

static void ln_dec(struct sb_line *l, uint64_t v)
{
    char t[24];
    int k = 0;
    do {
        t[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k && l->n < sizeof(l->buf) - 1)
        l->buf[l->n++] = t[--k];
    l->buf[l->n] = 0;
}

static void ln_hex(struct sb_line *l, uint64_t v, int digits)
{
    static const char hx[] = "0123456789abcdef";
    char t[16];
    int k = 0;
    do {
        t[k++] = hx[v & 15];
        v >>= 4;
    } while (v || k < digits);
    while (k && l->n < sizeof(l->buf) - 1)
        l->buf[l->n++] = t[--k];
    l->buf[l->n] = 0;
}

static void ln_kv(struct sb_line *l, const char *key, uint64_t v)
{
    ln_str(l, " ");
    ln_str(l, key);
    ln_str(l, "=");
    ln_dec(l, v);
}

static bool parse_num(const char **pp, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9') {
        if (v > 1000000000ULL)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    *pp = p;
    *out = v;
    return true;
}

static bool word_is(const char *p, const char *w, const char **rest)
{
    while (*w && *p == *w) {
        p++;
        w++;
    }
    if (*w)
        return false;
    *rest = p;
    return true;
}

static void fail_line(void (*say)(const char *), const char *dev, const char *what, const char *why)
{
    struct sb_line l = {.n = 0};
    ln_str(&l, "bench ");
    if (dev) {
        ln_str(&l, dev);
        ln_str(&l, " ");
    }
    if (what) {
        ln_str(&l, what);
        ln_str(&l, " ");
    }
    ln_str(&l, "FAIL ");
    ln_str(&l, why);
    say(l.buf);
}

void storage_bench(const char *args, uint64_t tsc_khz, void (*say)(const char *line))
{
    struct sb *s = SB;
    const char *p = args, *rest;
    enum sb_kind kind;
    const char *dname;
    while (*p == ' ')
        p++;
    if (word_is(p, "virtio-blk", &rest)) {
        kind = SB_VIRTIO;
        dname = "virtio-blk";
    } else if (word_is(p, "nvme", &rest)) {
        kind = SB_NVME;
        dname = "nvme";
    } else {
        fail_line(say, NULL, NULL, "usage: bench virtio-blk|nvme [BUS:DEV] [key=value...]");
        return;
    }
    p = rest;
    if (*p && *p != ' ') {
        fail_line(say, NULL, NULL, "usage: bench virtio-blk|nvme [BUS:DEV] [key=value...]");
        return;
    }

    uint64_t ms = 2000, warm = 200, qd = 32, sqd = 8, batch = 0, sbatch = 0, seg = 64, keep = 0;
    unsigned tests = 0xf;
    int want_bus = -1, want_dev = -1;
    bool bad = false;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        uint64_t v;
        uint64_t *dst = NULL;
        if (word_is(p, "ms=", &rest))
            dst = &ms;
        else if (word_is(p, "warm=", &rest))
            dst = &warm;
        else if (word_is(p, "qd=", &rest))
            dst = &qd;
        else if (word_is(p, "sqd=", &rest))
            dst = &sqd;
        else if (word_is(p, "batch=", &rest))
            dst = &batch;
        else if (word_is(p, "sbatch=", &rest))
            dst = &sbatch;
        else if (word_is(p, "seg=", &rest))
            dst = &seg;
        else if (word_is(p, "keep=", &rest))
            dst = &keep;
        if (dst) {
            p = rest;
            if (!parse_num(&p, &v))
                bad = true;
            else
                *dst = v;
        } else if (word_is(p, "tests=", &rest)) {
            p = rest;
            tests = 0;
            while (*p && *p != ' ') {
                bool hit = false;
                for (unsigned i = 0; i < 4; i++) {
                    if (word_is(p, sb_tests[i].key, &rest)) {
                        tests |= 1u << i;
                        p = rest;
                        hit = true;
                        break;
                    }
                }
                if (!hit) {
                    bad = true;
                    break;
                }
                if (*p == ',')
                    p++;
            }
        } else if (parse_num(&p, &v) && *p == ':') {
            uint64_t d;
            p++;
            if (!parse_num(&p, &d) || v > 255 || d > 31)
                bad = true;
            want_bus = (int)v;
            want_dev = (int)d;
        } else {
            bad = true;
        }
        if (bad)
            break;
        while (*p && *p != ' ') /* rest of the token */
            p++;
    }
    if (!bad && (qd < 1 || qd > SB_MAX_QD || sqd < 1 || sqd > SB_MAX_SQD || ms < 1 || ms > 600000 ||
                 warm > 60000 || seg < 4 || seg > 1024 || (seg & (seg - 1))))
        bad = true;
    if (bad) {
        fail_line(say, dname, NULL, "bad arguments");
        return;
    }

    /* Find the function. */
    unsigned bus = 0, dev = 0;
    bool found = false;
    uint32_t id = 0, cr = 0;
    for (unsigned d = 0; d < 32 && !found; d++) {
        unsigned b = want_bus >= 0 ? (unsigned)want_bus : 0;
        unsigned dd = want_dev >= 0 ? (unsigned)want_dev : d;
        id = pci_cfg_read(b, dd, 0x00);
        cr = pci_cfg_read(b, dd, 0x08);
        if (dev_matches(kind, id, cr)) {
            found = true;
            bus = b;
            dev = dd;
        }
        if (want_dev >= 0)
            break;
    }
    if (!found) {
        fail_line(say, dname, NULL, "no such device");
        return;
    }

    /* Mask interrupt sources: the drivers poll. */
    outb(0x21, 0xff);
    outb(0xA1, 0xff);
    outb(0x3F8 + 1, 0x00); /* COM1 IER */
    cpl3_setup();

    uint64_t bar_addr[6], next = BENCH_MMIO_BASE;
    pci_assign_bars(bus, dev, bar_addr, NULL, &next);

    memset(s, 0, sizeof(*s));
    s->kind = kind;
    s->tsc_khz = tsc_khz;
    s->ms = ms;
    s->warm_ms = warm;
    s->qd = (unsigned)qd;
    s->sqd = (unsigned)sqd;
    s->batch = batch ? (unsigned)batch : (unsigned)(qd / 4 ? qd / 4 : 1);
    s->sbatch = sbatch ? (unsigned)sbatch : (unsigned)(sqd / 4 ? sqd / 4 : 1);
    s->seg = (uint32_t)seg * 1024;
    s->rng = 0x9E3779B97F4A7C15ULL;

    if (kind == SB_VIRTIO) {
        s->common = pci_virtio_cap(bus, dev, bar_addr, 1, 0);
        s->notify = pci_virtio_cap(bus, dev, bar_addr, 2, &s->notify_mult);
        s->devcfg = pci_virtio_cap(bus, dev, bar_addr, 4, 0);
        if (!s->common || !s->notify || !s->devcfg) {
            fail_line(say, dname, NULL, "no modern virtio interface (capabilities)");
            goto out;
        }
    } else {
        if (!bar_addr[0]) {
            fail_line(say, dname, NULL, "BAR0 not assigned");
            goto out;
        }
        s->regs = (volatile uint8_t *)(uintptr_t)bar_addr[0];
    }

    struct sb_line l = {.n = 0};
    ln_str(&l, "bench ");
    ln_str(&l, dname);
    ln_str(&l, " device ");
    ln_hex(&l, id & 0xffff, 4);
    ln_str(&l, ":");
    ln_hex(&l, id >> 16, 4);
    ln_str(&l, " class ");
    ln_hex(&l, cr >> 8, 6);
    ln_str(&l, " at ");
    ln_dec(&l, bus);
    ln_str(&l, ":");
    ln_dec(&l, dev);
    for (unsigned i = 0; i < 6; i++) {
        if (bar_addr[i]) {
            ln_str(&l, " bar");
            ln_dec(&l, i);
            ln_str(&l, " 0x");
            ln_hex(&l, bar_addr[i], 1);
        }
    }
    say(l.buf);

    uint64_t t_init = rdtsc();
    if (user_enter(u_init, s, USER_STACK_TOP) != 0) {
        fail_line(say, dname, NULL, s->err[0] ? s->err : "driver init failed");
        goto out;
    }
    l.n = 0;
    ln_str(&l, "bench ");
    ln_str(&l, dname);
    ln_str(&l, " disk");
    ln_kv(&l, "bytes", s->capacity);
    ln_kv(&l, "block", s->block);
    if (kind == SB_VIRTIO) {
        ln_kv(&l, "queue", s->qsize);
        ln_kv(&l, "event_idx", s->event_idx);
    } else {
        ln_kv(&l, "queue", s->qs);
        ln_kv(&l, "mdts", s->mdts_bytes);
    }
    ln_kv(&l, "init_us", (rdtsc() - t_init) * 1000 / tsc_khz);
    say(l.buf);

    for (unsigned i = 0; i < 4; i++) {
        if (!(tests & (1u << i)))
            continue;
        const struct sb_test *t = &sb_tests[i];
        if (s->broken) {
            fail_line(say, dname, t->name, "skipped: device stopped responding");
            continue;
        }
        s->test = t;
        if (user_enter(u_run, s, USER_STACK_TOP) != 0) {
            fail_line(say, dname, t->name, s->err[0] ? s->err : "failed");
            continue;
        }
        const struct sb_result *r = &s->res;
        uint64_t us = r->tsc * 1000 / tsc_khz;
        l.n = 0;
        ln_str(&l, "bench ");
        ln_str(&l, dname);
        ln_str(&l, " ");
        ln_str(&l, t->name);
        ln_kv(&l, "qd", t->seq ? s->sqd : s->qd);
        ln_kv(&l, "bs", t->bytes);
        ln_kv(&l, "ops", r->ops);
        ln_kv(&l, "us", us);
        ln_kv(&l, "iops", us ? r->ops * 1000000 / us : 0);
        ln_kv(&l, "mibps", us ? r->ops * (t->bytes / 1024) * 1000000 / us / 1024 : 0);
        ln_kv(&l, "bad", r->bad);
        ln_kv(&l, "err", r->err);
        ln_kv(&l, "kicks", r->kicks);
        say(l.buf);
    }
    if (!s->broken && !keep)
        user_enter(u_shutdown, s, USER_STACK_TOP);
    l.n = 0;
    ln_str(&l, "bench ");
    ln_str(&l, dname);
    ln_str(&l, " done");
    say(l.buf);
    if (keep)
        return;
out:
    /* Leave the function quiet: no decoding, no bus mastering, so another
     * run may place another device's BARs at the same addresses. */
    pci_cfg_write(bus, dev, 0x04, 0x400);
}
