/*
 * Storage benchmark: minimal polling drivers for virtio-blk (modern
 * interface) and NVMe, run at CPL3.
 *
 * PCI enumeration runs at CPL0, device set-up and the I/O loops at CPL3,
 * polling completions (cpl3.h says why). Doorbell and notify writes are
 * MMIO exits: submissions are batched.
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
 *   seed=N   this run's data seed (default 1): every 4 KiB block this run
 *            writes holds content unique to the seed, the test and the
 *            block (data_prepare); the host passes a new seed for every run
 * Output (each line prefixed "testguest: "):
 *   bench DEV device VVVV:DDDD class CCCCCC at B:D bar0 0x... [...]
 *   bench DEV disk bytes=N block=N queue=N [mdts=N] [event_idx=0|1] [dbbuf=0|1]
 *   bench DEV TEST start               (just before the test's first request)
 *   bench DEV TEST qd=N bs=N ops=N us=N iops=N mibps=N bad=N err=N kicks=N
 *             all_ops=N span_us=N
 *   bench DEV TEST FAIL <why>          (a test that could not run)
 *   bench DEV verify seed=N blocks=N written=N table=HASH
 *   bench DEV done                     (always last, unless FAIL below)
 *   bench FAIL <why>                   (nothing was measured)
 * ops: requests completed in the measured window of us microseconds; bad:
 * 4 KiB blocks read with wrong content; err: requests completed with an
 * error status; kicks: doorbell/notify writes (MMIO exits) in the window;
 * all_ops and span_us: every request of the test, warm-up and drain
 * included, and the time from the first submission to the last completion
 * (what the host times between the start line and the result line).
 *
 * Data check: every 4 KiB block of the disk holds, as 64-bit words, its
 * seed, its block number, then 510 words derived from both (data_prepare; the
 * host fills the disk the same way with its own seed before the runs).
 * Every read checks every word of every block it returned. A write of test
 * T stores seed+T (T = 1 for randwrite4k, 3 for seqwrite1m) and marks the
 * block in a table (a byte per block, BENCH_TABLE_ADDR); a later read of a
 * marked block must find exactly that content, so a dropped or misdirected
 * write shows as a bad block. At the end the guest prints a hash of the
 * table; the host reads the disk file, rebuilds the table from the blocks
 * holding this run's seeds and compares (bench/storage.c).
 *
 * Memory: layout.h BENCH_* (2 MiB .. 48 MiB of RAM; the VM needs 64 MiB).
 * NVMe: shadow doorbells (Doorbell Buffer Config, as Linux uses them) when
 * the controller offers them (OACS bit 8); dbbuf=0 turns them off.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpl3.h"
#include "cpu.h"
#include "layout.h"
#include "mmio.h"
#include "pci.h"
#include "rand.h"
#include "storage_bench.h"
#include "text.h"
#include "virtio_modern.h"

void *memset(void *d, int c, size_t n);

/* ------------------------------------------------------------------ */
/* Shared by CPL0 and CPL3                                             */

/* Word i (2..511) of a block is base + i * SB_STEP (bench/storage.c has
 * the same definition for the host's fill and check). */
#define SB_STEP 0x94D049BB133111EBULL
static inline uint64_t sb_base(uint64_t seed, uint64_t block)
{
    return (seed ^ (block * 0x9E3779B97F4A7C15ULL)) * 0xBF58476D1CE4E5B9ULL;
}

/* Test T's writes carry seed + T. */
enum { SB_MARK_RANDWRITE = 1, SB_MARK_SEQWRITE = 3 };

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
    uint64_t ops, tsc, bad, err, kicks, all_ops, span_tsc;
};

/* Driver state in RAM at BENCH_STATE_ADDR (user-accessible). */
struct sb {
    struct cpl3_session cpl3;

    /* Set at CPL0. */
    enum sb_kind kind;
    uint64_t ms, warm_ms;
    unsigned qd, sqd, batch, sbatch;
    uint32_t seg;
    struct virtio_modern vio;
    volatile uint8_t *regs; /* NVMe BAR0 */
    const struct sb_test *test;

    /* Set at CPL3. */
    bool broken;
    uint64_t capacity; /* bytes */
    uint32_t block;    /* logical block size */
    uint64_t kicks;
    uint64_t rng;
    struct sb_result res;
    uint64_t seed;
    uint8_t mark; /* this test's table mark: 0 for reads */
    /* virtio */
    struct virtq vq;
    unsigned dps; /* descriptors per request */
    /* NVMe */
    uint32_t dstrd, mdts_bytes, qs;
    uint16_t asq_tail, acq_head, acid;
    uint8_t acq_phase, cq_phase;
    uint16_t sq_tail, cq_head, cq_unrung;
    bool dbbuf; /* shadow doorbells in use (Doorbell Buffer Config) */
};

#define SB ((struct sb *)(uintptr_t)BENCH_STATE_ADDR)
_Static_assert(sizeof(struct sb) <= 0x10000, "bench state too big");

/* Queue memory (BENCH_QUEUE_ADDR .. 0x3FFFFF). */
#define VQ_RINGS (BENCH_QUEUE_ADDR + 0x0000) /* desc, avail, used (virtio_modern.h) */
#define VQ_HDRS (BENCH_QUEUE_ADDR + 0x3000)
#define VQ_STATUS (BENCH_QUEUE_ADDR + 0x4000)
#define NV_ASQ (BENCH_QUEUE_ADDR + 0x5000)
#define NV_ACQ (BENCH_QUEUE_ADDR + 0x6000)
#define NV_IDENT (BENCH_QUEUE_ADDR + 0x7000)
#define NV_DBS (BENCH_QUEUE_ADDR + 0x8000)  /* shadow doorbells */
#define NV_EIS (BENCH_QUEUE_ADDR + 0x9000)  /* the device's EventIdx values */
#define NV_SQ (BENCH_QUEUE_ADDR + 0x10000)  /* 1024 x 64 bytes */
#define NV_CQ (BENCH_QUEUE_ADDR + 0x20000)  /* 1024 x 16 bytes */
#define NV_PRP (BENCH_QUEUE_ADDR + 0x30000) /* one list page per request */
#define SB_TABLE ((volatile uint8_t *)(uintptr_t)BENCH_TABLE_ADDR)
#define NV_AQ 16
#define NV_QMAX 1024
_Static_assert(VQ_RINGS + VIRTQ_RINGS_SIZE <= VQ_HDRS, "virtio rings overlap the headers");

/* ------------------------------------------------------------------ */
/* CPL3: helpers                                                       */

static inline uint8_t *slot_data(struct sb *s, unsigned slot)
{
    return (uint8_t *)(uintptr_t)(BENCH_DATA_ADDR + (uint64_t)slot * s->test->bytes);
}

/* Before a write: the content of each block, marked in the table; before
 * a read: the first words cleared, so a read that returned nothing fails. */
static void data_prepare(struct sb *s, unsigned slot, uint64_t off)
{
    volatile uint64_t *d = (volatile uint64_t *)slot_data(s, slot);
    uint32_t n = s->test->bytes / 4096;
    for (uint32_t i = 0; i < n; i++, d += 512) {
        uint64_t block = off / 4096 + i;
        if (!s->test->write) {
            d[0] = d[1] = 0;
            continue;
        }
        uint64_t seed = s->seed + s->mark;
        d[0] = seed;
        d[1] = block;
        uint64_t v = sb_base(seed, block) + 2 * SB_STEP;
        for (unsigned w = 2; w < 512; w++, v += SB_STEP)
            d[w] = v;
        SB_TABLE[block] = s->mark;
    }
}

/* Checks every word of each block a read returned; returns the bad ones.
 * A block this run wrote must hold that write's seed. */
static uint64_t data_check(struct sb *s, unsigned slot, uint64_t off)
{
    const volatile uint64_t *d = (const volatile uint64_t *)slot_data(s, slot);
    uint32_t n = s->test->bytes / 4096;
    uint64_t bad = 0;
    for (uint32_t i = 0; i < n; i++, d += 512) {
        uint64_t block = off / 4096 + i;
        uint64_t seed = d[0];
        uint8_t mark = SB_TABLE[block];
        bool ok = d[1] == block && (!mark || seed == s->seed + mark);
        uint64_t v = sb_base(seed, block) + 2 * SB_STEP;
        for (unsigned w = 2; w < 512 && ok; w++, v += SB_STEP)
            ok = d[w] == v;
        bad += !ok;
    }
    return bad;
}

/* ------------------------------------------------------------------ */
/* CPL3: virtio-blk over the modern interface                          */

struct vblk_hdr {
    uint32_t type, reserved;
    uint64_t sector;
};

#define VQ_D ((volatile struct virtq_desc *)(uintptr_t)VQ_RINGS)
#define VQ_H ((volatile struct vblk_hdr *)(uintptr_t)VQ_HDRS)
#define VQ_S ((volatile uint8_t *)(uintptr_t)VQ_STATUS)

static int vio_init(struct sb *s)
{
    uint64_t offered;
    if (!virtio_modern_begin(&s->vio, &s->cpl3, &offered))
        return -1;
    uint64_t want = VIRTIO_F_VERSION_1 | (offered & VIRTIO_F_EVENT_IDX);
    if (!virtio_modern_accept(&s->vio, &s->cpl3, want))
        return -1;
    if (!virtio_modern_queue_setup(&s->vio, &s->vq, 0, VIRTQ_MAX, VQ_RINGS,
                                   (want & VIRTIO_F_EVENT_IDX) != 0)) {
        u_fail(&s->cpl3, "queue 0 too small");
        return -1;
    }
    /* The request headers and status bytes (the setup zeroed the rings). */
    memset((void *)(uintptr_t)VQ_HDRS, 0, VQ_STATUS + 0x1000 - VQ_HDRS);
    virtio_modern_driver_ok(&s->vio);
    volatile uint8_t *cfg = s->vio.devcfg;
    s->capacity = ((uint64_t)r32(cfg, 0) | (uint64_t)r32(cfg, 4) << 32) * 512;
    s->block = 512;
    return 0;
}

static void vio_shutdown(struct sb *s)
{
    (void)virtio_modern_reset(&s->vio, &s->cpl3);
}

static int vio_prepare(struct sb *s, unsigned qd)
{
    uint32_t bytes = s->test->bytes;
    uint32_t seg = s->seg < bytes ? s->seg : bytes;
    uint32_t nseg = bytes / seg;
    s->dps = nseg + 2;
    if (qd * s->dps > s->vq.size) {
        u_fail(&s->cpl3, "queue too small for qd x descriptors per request");
        return -1;
    }
    for (unsigned slot = 0; slot < qd; slot++) {
        unsigned b = slot * s->dps;
        uint64_t data = (uint64_t)(uintptr_t)slot_data(s, slot);
        VQ_D[b].addr = VQ_HDRS + slot * sizeof(struct vblk_hdr);
        VQ_D[b].len = sizeof(struct vblk_hdr);
        VQ_D[b].flags = VIRTQ_DESC_F_NEXT;
        VQ_D[b].next = (uint16_t)(b + 1);
        for (uint32_t k = 0; k < nseg; k++) {
            volatile struct virtq_desc *d = &VQ_D[b + 1 + k];
            d->addr = data + (uint64_t)k * seg;
            d->len = seg;
            d->flags = (uint16_t)(VIRTQ_DESC_F_NEXT | (s->test->write ? 0 : VIRTQ_DESC_F_WRITE));
            d->next = (uint16_t)(b + 2 + k);
        }
        volatile struct virtq_desc *st = &VQ_D[b + nseg + 1];
        st->addr = VQ_STATUS + slot;
        st->len = 1;
        st->flags = VIRTQ_DESC_F_WRITE;
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
    virtq_add(&s->vq, (uint16_t)(slot * s->dps));
}

static void vio_flush(struct sb *s)
{
    if (virtq_publish(&s->vq))
        s->kicks++;
}

static unsigned vio_poll(struct sb *s, unsigned *done, unsigned max, uint64_t *errs)
{
    struct virtq *q = &s->vq;
    uint16_t idx = q->used->idx;
    barrier();
    unsigned n = 0;
    while (q->last_used != idx && n < max) {
        uint32_t id = q->used->ring[q->last_used & (q->size - 1)].id;
        unsigned slot = id / s->dps;
        if (VQ_S[slot] != 0)
            (*errs)++;
        done[n++] = slot;
        q->last_used++;
    }
    if (n && q->event_idx)
        q->avail->ring[q->size] = (uint16_t)(q->last_used + 0x8000); /* used_event */
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
static int nv_admin(struct sb *s, uint8_t opc, uint32_t nsid, uint64_t prp1, uint64_t prp2,
                    uint32_t cdw10, uint32_t cdw11)
{
    volatile struct nvme_sqe *e = (volatile struct nvme_sqe *)(uintptr_t)NV_ASQ + s->asq_tail;
    sqe_clear(e);
    e->opc = opc;
    e->cid = s->acid++;
    e->nsid = nsid;
    e->prp1 = prp1;
    e->prp2 = prp2;
    e->cdw10 = cdw10;
    e->cdw11 = cdw11;
    s->asq_tail = (uint16_t)((s->asq_tail + 1) % NV_AQ);
    barrier();
    nv_db(s, 0, false, s->asq_tail);
    volatile struct nvme_cqe *c = (volatile struct nvme_cqe *)(uintptr_t)NV_ACQ + s->acq_head;
    uint64_t dl = u_deadline(&s->cpl3, 5000);
    while ((c->status & 1) != s->acq_phase)
        if (tsc_passed(dl)) {
            u_fail(&s->cpl3, "admin command timed out");
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
    uint64_t dl = u_deadline(&s->cpl3, ms);
    for (;;) {
        uint32_t csts = r32(s->regs, NV_REG_CSTS);
        if (ready && (csts & 2)) {
            u_fail(&s->cpl3, "controller fatal status");
            return -1;
        }
        if ((csts & 1) == (ready ? 1u : 0u))
            return 0;
        if (tsc_passed(dl)) {
            u_fail(&s->cpl3, ready ? "controller did not become ready" : "controller did not stop");
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
        u_fail(&s->cpl3, "CAP.MPSMIN above 4 KiB");
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
    if (nv_admin(s, 0x06, 0, NV_IDENT, 0, 1, 0) != 0) { /* Identify controller */
        if (!s->cpl3.err[0])
            u_fail(&s->cpl3, "identify controller failed");
        return -1;
    }
    uint8_t mdts = id[77];
    s->mdts_bytes = mdts && mdts <= 12 ? 4096u << mdts : 0;
    bool offers_dbbuf = (id[256] | id[257] << 8) & (1u << 8); /* OACS */
    if (nv_admin(s, 0x06, 1, NV_IDENT, 0, 0, 0) != 0) {       /* Identify namespace 1 */
        if (!s->cpl3.err[0])
            u_fail(&s->cpl3, "identify namespace 1 failed");
        return -1;
    }
    uint64_t nsze = 0;
    for (unsigned i = 0; i < 8; i++)
        nsze |= (uint64_t)id[i] << (8 * i);
    unsigned flbas = id[26] & 0xf;
    unsigned lbads = id[128 + 4 * flbas + 2];
    if (lbads < 9 || lbads > 12) {
        u_fail(&s->cpl3, "namespace block size not 512..4096");
        return -1;
    }
    s->block = 1u << lbads;
    s->capacity = nsze << lbads;

    /* Shadow doorbells before the I/O queues, as Linux sets them up: the
     * I/O queues then use them (the admin queue keeps its MMIO doorbells). */
    if (s->dbbuf && offers_dbbuf) {
        memset((void *)(uintptr_t)NV_DBS, 0, 0x2000);
        if (nv_admin(s, 0x7c, 0, NV_DBS, NV_EIS, 0, 0) != 0) {
            if (s->cpl3.err[0])
                return -1;
            s->dbbuf = false; /* refused: plain doorbells */
        }
    } else {
        s->dbbuf = false;
    }
    uint32_t qs = NV_QMAX < mqes ? NV_QMAX : mqes;
    s->qs = qs;
    s->sq_tail = s->cq_head = s->cq_unrung = 0;
    s->cq_phase = 1;
    if (nv_admin(s, 0x05, 0, NV_CQ, 0, (qs - 1) << 16 | 1, 1) != 0) { /* CQ 1, contiguous */
        if (!s->cpl3.err[0])
            u_fail(&s->cpl3, "create I/O completion queue failed");
        return -1;
    }
    if (nv_admin(s, 0x01, 0, NV_SQ, 0, (qs - 1) << 16 | 1, 1u << 16 | 1) != 0) { /* SQ 1 -> CQ 1 */
        if (!s->cpl3.err[0])
            u_fail(&s->cpl3, "create I/O submission queue failed");
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
        u_fail(&s->cpl3, "transfer exceeds the controller's MDTS");
        return -1;
    }
    if (qd >= s->qs) {
        u_fail(&s->cpl3, "I/O queue smaller than qd");
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

/* I/O queue 1's SQ tail or CQ head doorbell. With shadow doorbells the
 * value goes to the shadow, and the MMIO doorbell is written only when the
 * new value passes the device's EventIdx (the device asked to be told). */
static void nv_io_db(struct sb *s, bool cq, uint16_t value)
{
    if (!s->dbbuf) {
        nv_db(s, 1, cq, value);
        s->kicks++;
        return;
    }
    unsigned at = (2 * 1 + (cq ? 1 : 0)) << s->dstrd; /* 32-bit entries */
    volatile uint32_t *shadow = (volatile uint32_t *)(uintptr_t)NV_DBS;
    volatile uint32_t *event = (volatile uint32_t *)(uintptr_t)NV_EIS;
    uint16_t old = (uint16_t)shadow[at];
    shadow[at] = value;
    full_fence(); /* the shadow store before the EventIdx load */
    uint16_t ei = (uint16_t)event[at];
    if ((uint16_t)(value - ei - 1) < (uint16_t)(value - old)) {
        nv_db(s, 1, cq, value);
        s->kicks++;
    }
}

static void nv_ring_cq(struct sb *s)
{
    nv_io_db(s, true, s->cq_head);
    s->cq_unrung = 0;
}

static void nv_flush(struct sb *s)
{
    barrier();
    nv_io_db(s, false, s->sq_tail);
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
    data_prepare(s, slot, off);
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
    return (xorshift64(&s->rng) % (s->capacity / bytes)) * bytes;
}

static uint64_t u_init(void *arg);
static uint64_t u_run(void *arg);
static uint64_t u_shutdown(void *arg);

static uint64_t u_init(void *arg)
{
    struct sb *s = arg;
    int rc = s->kind == SB_VIRTIO ? vio_init(s) : nv_init(s);
    if (rc == 0 && s->capacity < (64u << 20)) {
        u_fail(&s->cpl3, "disk smaller than 64 MiB");
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
    s->cpl3.err[0] = 0;
    if ((uint64_t)qd * t->bytes > BENCH_DATA_SIZE) {
        u_fail(&s->cpl3, "qd x request size exceeds the data area");
        return 1;
    }
    if (u_prepare(s, qd) < 0)
        return 1;
    uint64_t khz = s->cpl3.tsc_khz;
    uint64_t start = rdtsc();
    uint64_t warm_end = start + s->warm_ms * khz, end = warm_end + s->ms * khz;
    uint64_t t0 = start, last_progress = start, seq_off = 0, kicks0 = 0;
    uint64_t ops = 0, bad = 0, errs = 0, errs_window = 0, all_ops = 0, bad_all = 0;
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
            bad_all += bad;
            bad = 0;
        }
        for (unsigned k = 0; k < n; k++) {
            unsigned slot = done[k];
            if (slot >= qd) { /* an id we never issued */
                errs++;
                continue;
            }
            inflight--;
            all_ops++;
            if (!t->write)
                bad += data_check(s, slot, offs[slot]);
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
            u_fail(&s->cpl3, "requests stopped completing (10 s)");
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
    s->res.span_tsc = rdtsc() - start;
    s->res.all_ops = all_ops;
    s->res.bad = bad + bad_all; /* a bad block in the warm-up counts too */
    s->res.err = errs - errs_window;
    s->res.kicks = s->kicks - kicks0;
    return 0;
}

/* ------------------------------------------------------------------ */
/* CPL0: arguments, the device, output                                 */

static void fail_line(void (*say)(const char *), const char *dev, const char *what, const char *why)
{
    struct out_line l = {.n = 0};
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
    uint64_t seed = 1, dbbuf = 1;
    unsigned tests = 0xf;
    const struct { /* the key=N arguments (tests= and BUS:DEV below) */
        const char *name;
        uint64_t *value;
    } keys[] = {{"ms=", &ms},       {"warm=", &warm},     {"qd=", &qd},   {"sqd=", &sqd},
                {"batch=", &batch}, {"sbatch=", &sbatch}, {"seg=", &seg}, {"keep=", &keep},
                {"seed=", &seed},   {"dbbuf=", &dbbuf}};
    int want_bus = -1, want_dev = -1;
    bool bad = false;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        uint64_t v;
        uint64_t *dst = NULL;
        for (unsigned i = 0; i < sizeof(keys) / sizeof(keys[0]) && !dst; i++)
            if (word_is(p, keys[i].name, &rest))
                dst = keys[i].value;
        if (dst) {
            p = rest;
            if (!parse_decimal(&p, ARG_NUMBER_MAX, &v))
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
        } else if (!parse_pci_location(&p, &want_bus, &want_dev)) {
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

    unsigned bus, dev;
    if (!pci_find(want_bus, want_dev, kind == SB_NVME ? pci_is_nvme : pci_is_virtio_blk, &bus,
                  &dev)) {
        fail_line(say, dname, NULL, "no such device");
        return;
    }
    uint32_t id = pci_cfg_read(bus, dev, 0x00), cr = pci_cfg_read(bus, dev, 0x08);
    cpl3_setup_polling();

    uint64_t bar_addr[6], next = BENCH_MMIO_BASE;
    pci_assign_bars(bus, dev, bar_addr, NULL, &next);

    memset(s, 0, sizeof(*s));
    s->kind = kind;
    s->cpl3.tsc_khz = tsc_khz;
    s->ms = ms;
    s->warm_ms = warm;
    s->qd = (unsigned)qd;
    s->sqd = (unsigned)sqd;
    s->batch = batch ? (unsigned)batch : (unsigned)(qd / 4 ? qd / 4 : 1);
    s->sbatch = sbatch ? (unsigned)sbatch : (unsigned)(sqd / 4 ? sqd / 4 : 1);
    s->seg = (uint32_t)seg * 1024;
    s->rng = 0x9E3779B97F4A7C15ULL;
    s->seed = seed;
    s->dbbuf = dbbuf != 0;

    if (kind == SB_VIRTIO) {
        if (!virtio_modern_map(bus, dev, bar_addr, &s->vio)) {
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

    struct out_line l = {.n = 0};
    ln_str(&l, "bench ");
    ln_str(&l, dname);
    ln_str(&l, " device ");
    ln_pci_id(&l, id);
    ln_str(&l, " class ");
    ln_hex(&l, cr >> 8, 6);
    ln_str(&l, " at ");
    ln_pci_location(&l, bus, dev);
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
        fail_line(say, dname, NULL, u_failure(&s->cpl3, "driver init failed"));
        goto out;
    }
    l.n = 0;
    ln_str(&l, "bench ");
    ln_str(&l, dname);
    ln_str(&l, " disk");
    ln_kv(&l, "bytes", s->capacity);
    ln_kv(&l, "block", s->block);
    if (kind == SB_VIRTIO) {
        ln_kv(&l, "queue", s->vq.size);
        ln_kv(&l, "event_idx", s->vq.event_idx);
    } else {
        ln_kv(&l, "queue", s->qs);
        ln_kv(&l, "mdts", s->mdts_bytes);
        ln_kv(&l, "dbbuf", s->dbbuf);
    }
    ln_kv(&l, "init_us", (rdtsc() - t_init) * 1000 / tsc_khz);
    say(l.buf);
    uint64_t blocks = s->capacity / 4096;
    if (blocks > BENCH_TABLE_SIZE) {
        fail_line(say, dname, NULL, "disk larger than the data-check table (48 GiB)");
        goto out;
    }
    memset((void *)(uintptr_t)BENCH_TABLE_ADDR, 0, blocks);

    for (unsigned i = 0; i < 4; i++) {
        if (!(tests & (1u << i)))
            continue;
        const struct sb_test *t = &sb_tests[i];
        if (s->broken) {
            fail_line(say, dname, t->name, "skipped: device stopped responding");
            continue;
        }
        s->test = t;
        s->mark = !t->write ? 0 : t->seq ? SB_MARK_SEQWRITE : SB_MARK_RANDWRITE;
        l.n = 0;
        ln_str(&l, "bench ");
        ln_str(&l, dname);
        ln_str(&l, " ");
        ln_str(&l, t->name);
        ln_str(&l, " start");
        say(l.buf);
        if (user_enter(u_run, s, USER_STACK_TOP) != 0) {
            fail_line(say, dname, t->name, u_failure(&s->cpl3, "failed"));
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
        ln_kv(&l, "all_ops", r->all_ops);
        ln_kv(&l, "span_us", r->span_tsc * 1000 / tsc_khz);
        say(l.buf);
    }
    /* The table of blocks this run wrote, for the host's check of the file:
     * FNV-1a over a byte per block (0, or the write's mark). */
    uint64_t hash = 0xcbf29ce484222325ULL, written = 0;
    for (uint64_t b = 0; b < blocks; b++) {
        uint8_t m = SB_TABLE[b];
        written += m != 0;
        hash = (hash ^ m) * 0x100000001b3ULL;
    }
    l.n = 0;
    ln_str(&l, "bench ");
    ln_str(&l, dname);
    ln_str(&l, " verify");
    ln_kv(&l, "seed", s->seed);
    ln_kv(&l, "blocks", blocks);
    ln_kv(&l, "written", written);
    ln_str(&l, " table=");
    ln_hex(&l, hash, 16);
    say(l.buf);
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
    pci_disable(bus, dev);
}
