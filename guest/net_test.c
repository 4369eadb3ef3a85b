/*
 * Network test: a minimal polling virtio-net driver (modern interface;
 * 1af4:1000 transitional or 1af4:1041) run at CPL3 like the storage
 * benchmark's drivers (storage_bench.c; cpl3.h says why): PCI enumeration
 * runs at CPL0, device set-up and the frame loops at CPL3, polling the used
 * rings (no interrupts).
 * Features: VERSION_1 and MAC required; STATUS, and MRG_RXBUF unless
 * mrg=0, taken when offered; no offloads, no EVENT_IDX, no control queue.
 * One queue pair (queues 0 and 1, at most 256 entries each); every buffer
 * is 2 KiB and holds the 12-byte virtio-net header and one whole frame.
 * Every value the device hands back (used ids, lengths, headers) is
 * checked.
 *
 * Commands:
 *   net check [BUS:DEV] [count=64] [size=1514] [seed=1] [mrg=1] [wait_ms=30000]
 *             [quiet_ms=100]
 *     First takes the frames waiting in the TAP from before (counted as
 *     other) until none came for quiet_ms; then sends `count` frames of
 *     the generator below (largest `size`, 60..1514) and, at the same
 *     time, receives and checks byte for byte the `count` frames the host
 *     sends (ethertype 0x88b5; other ethertypes are counted and ignored),
 *     until both are done or wait_ms (from the start) ran out.
 *   net link [BUS:DEV] [timeout_ms=10000] [changes=0] [mrg=1]
 *     Reports the config status link bit and the config generation, then
 *     each change of either, until timeout_ms or until `changes` changes
 *     of the link bit (0: no limit).
 *   net bench tx|rx [BUS:DEV] [ms=2000] [size=1514] [batch=32] [mrg=1]
 *             [seed=1] [quiet_ms=100] [wait_ms=30000]
 *     tx: frames of `size` bytes (generator frames 0, 1, ... of `seed`
 *     cut to `size`) sent as fast as they go for ms, then drained.
 *     rx: first takes the frames waiting in the TAP from before, until
 *     none came for quiet_ms (at most wait_ms), and only then prints the
 *     queues line (the host starts sending when it sees it); then for ms
 *     every frame of ethertype 0x88b5 is checked byte for byte as the
 *     frame its header says it is (index from bytes 16-19, length from
 *     bytes 20-21, which must be the length received) of direction 'H'
 *     and `seed` (the host gives each test a seed of its own, so a frame
 *     of an earlier test is bad, not counted), buffers reposted. A notify
 *     is written after `batch` new buffers (or when no more fit), unless
 *     the device set VIRTQ_USED_F_NO_NOTIFY.
 *   BUS:DEV  PCI location (decimal); default: the first match on bus 0.
 * Output (each line prefixed "testguest: "):
 *   net device VVVV:DDDD at B:D
 *   net mac XX:XX:XX:XX:XX:XX
 *   net link up|down gen=N          (check, bench: once; link: then each change)
 *   net queues rx=N tx=N mrg=0|1
 *   net tx sent=N                   (check: frames the device gave back)
 *   net rx ok=N bad=N other=N       (check; other: ignored, see above)
 *   net rx first bad frame=I what=W at=O got=G want=W   (check, bench rx)
 *   net check done | net link done changes=N
 *   net bench tx|rx frames=N bytes=N us=N bad=N kicks=N
 *   net FAIL <why>                  (instead of the done line)
 * bench rx counts the good frames, and their bytes after the virtio-net
 * header; bad: buffers whose used length or header is wrong, and frames
 * that differ from the generator (tx: always 0; the first bad one gets
 * its line before the result, frame I: the I-th of ethertype 0x88b5);
 * us: the window, from the TSC.
 *
 * Frames: net_frame.h's generator (tests/kvm/net_peer.py has the same in
 * Python), destination ff:ff:ff:ff:ff:ff and source the guest's MAC from
 * the guest, destination the guest's MAC and source 02:70:65:65:72:00
 * from the host. In `net check` the host's frames must arrive in order.
 *
 * Memory: layout.h BENCH_* (the benchmark's areas; the VM needs 64 MiB):
 * state at BENCH_STATE_ADDR, rings at BENCH_QUEUE_ADDR, buffers at
 * BENCH_DATA_ADDR. When done the device is reset and its decoding and bus
 * mastering are off.
 */
#include "net_test.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpl3.h"
#include "cpu.h"
#include "layout.h"
#include "mmio.h"
#include "net_frame.h"
#include "pci.h"
#include "text.h"
#include "virtio_modern.h"

void *memset(void *d, int c, size_t n);

#define NT_QMAX 256
#define NT_BUF 2048
#define NT_HDR 12 /* struct virtio_net_hdr_v1 (VERSION_1) */

#define NT_RX_RING (BENCH_QUEUE_ADDR + 0x0000) /* desc, avail, used: 4 KiB each */
#define NT_TX_RING (BENCH_QUEUE_ADDR + 0x4000)
#define NT_RX_BUFS BENCH_DATA_ADDR
#define NT_TX_BUFS (BENCH_DATA_ADDR + NT_QMAX * NT_BUF)
_Static_assert(NT_QMAX <= VIRTQ_MAX && VIRTQ_RINGS_SIZE <= NT_TX_RING - NT_RX_RING,
               "a queue's rings do not fit its ring area");

#define VIRTIO_NET_F_MAC (1ULL << 5)
#define VIRTIO_NET_F_MRG_RXBUF (1ULL << 15)
#define VIRTIO_NET_F_STATUS (1ULL << 16)

static const uint8_t nt_broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const uint8_t nt_host_mac[6] = {0x02, 0x70, 0x65, 0x65, 0x72, 0x00};

/* One virtqueue and its buffers; descriptor i always describes buffer i
 * (slot i). */
struct nt_ring {
    struct virtq q;
    uint8_t *bufs;
    uint16_t nfree;
    uint16_t free[NT_QMAX]; /* slots the driver holds (TX) */
    bool with_device[NT_QMAX];
};

enum nt_mode { NT_CHECK, NT_LINK, NT_BENCH_TX, NT_BENCH_RX };

/* Driver state in RAM at BENCH_STATE_ADDR (user-accessible). */
struct nt {
    struct cpl3_session cpl3;

    /* Set at CPL0. */
    enum nt_mode mode;
    struct virtio_modern vio;
    uint64_t count, size, seed, mrg_wanted, wait_ms, quiet_ms, timeout_ms, changes, ms, batch;
    uint64_t link_deadline; /* TSC */

    /* Set at CPL3. */
    uint8_t mac[6];
    struct net_frames guest_frames, host_frames;
    bool mrg, has_status, link_up;
    uint8_t gen;
    struct nt_ring rx, tx;
    uint64_t kicks;
    uint64_t tx_done, rx_ok, rx_bad, rx_other;
    uint64_t frames, bytes, tsc, bad; /* bench */
    bool bad_seen;                    /* the first bad frame, for its line */
    const char *bad_what;
    uint64_t bad_frame, bad_at, bad_got, bad_want;
};

#define NT ((struct nt *)(uintptr_t)BENCH_STATE_ADDR)
_Static_assert(sizeof(struct nt) <= 0x10000, "net state too big");

/* ------------------------------------------------------------------ */
/* CPL3                                                                */

/* ---- virtqueues ---- */

static int nt_queue_setup(struct nt *s, struct nt_ring *r, uint16_t index, uint64_t rings,
                          uint64_t bufs)
{
    memset(r, 0, sizeof(*r));
    if (!virtio_modern_queue_setup(&s->vio, &r->q, index, NT_QMAX, rings, false)) {
        u_fail(&s->cpl3, "a queue holds fewer than 8 entries");
        return -1;
    }
    r->bufs = (uint8_t *)(uintptr_t)bufs;
    for (uint16_t i = 0; i < r->q.size; i++)
        r->free[r->nfree++] = (uint16_t)(r->q.size - 1 - i);
    return 0;
}

static uint8_t *nt_buf(struct nt_ring *r, uint16_t slot)
{
    return r->bufs + (uint64_t)slot * NT_BUF;
}

/* Hands a free slot's buffer to the device (published by nt_flush). */
static void nt_post(struct nt_ring *r, uint16_t slot, uint32_t len, uint16_t flags)
{
    volatile struct virtq_desc *d = &r->q.desc[slot];
    d->addr = (uint64_t)(uintptr_t)nt_buf(r, slot);
    d->len = len;
    d->flags = flags;
    d->next = 0;
    r->with_device[slot] = true;
    virtq_add(&r->q, slot);
}

/* Publishes posted buffers; notifies unless the device said it need not. */
static void nt_flush(struct nt *s, struct nt_ring *r)
{
    if (virtq_publish(&r->q))
        s->kicks++;
}

/* The next used buffer: its slot, or -1 when there is none, or -2 when the
 * device broke the ring's rules (u_fail said how). */
static int nt_take_used(struct nt *s, struct nt_ring *r, uint32_t *len)
{
    struct virtq *q = &r->q;
    uint16_t idx = q->used->idx;
    if (idx == q->last_used)
        return -1;
    if ((uint16_t)(idx - q->last_used) > q->size) {
        u_fail(&s->cpl3, "used index ran ahead of the buffers posted");
        return -2;
    }
    barrier();
    uint32_t id = q->used->ring[q->last_used & (q->size - 1)].id;
    *len = q->used->ring[q->last_used & (q->size - 1)].len;
    q->last_used++;
    if (id >= q->size || !r->with_device[id]) {
        u_fail(&s->cpl3, "used ring returned a buffer the device did not hold");
        return -2;
    }
    r->with_device[id] = false;
    return (int)id;
}

/* ---- set-up ---- */

static void nt_read_config(struct nt *s)
{
    for (unsigned tries = 0; tries < 100; tries++) {
        uint8_t gen = r8(s->vio.common, VCOM_GENERATION);
        for (unsigned i = 0; i < 6; i++)
            s->mac[i] = r8(s->vio.devcfg, i);
        s->link_up = s->has_status ? (r16(s->vio.devcfg, 6) & 1) != 0 : true;
        s->gen = gen;
        if (r8(s->vio.common, VCOM_GENERATION) == gen)
            return;
    }
}

static uint64_t u_init(void *arg)
{
    struct nt *s = arg;
    uint64_t f;
    if (!virtio_modern_begin(&s->vio, &s->cpl3, &f))
        return 1;
    if (!(f & VIRTIO_NET_F_MAC)) {
        u_fail(&s->cpl3, "device does not offer VIRTIO_NET_F_MAC");
        return 1;
    }
    uint64_t want = VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | (f & VIRTIO_NET_F_STATUS) |
                    (s->mrg_wanted ? f & VIRTIO_NET_F_MRG_RXBUF : 0);
    s->has_status = (want & VIRTIO_NET_F_STATUS) != 0;
    s->mrg = (want & VIRTIO_NET_F_MRG_RXBUF) != 0;
    if (!virtio_modern_accept(&s->vio, &s->cpl3, want))
        return 1;
    if (nt_queue_setup(s, &s->rx, 0, NT_RX_RING, NT_RX_BUFS) < 0 ||
        nt_queue_setup(s, &s->tx, 1, NT_TX_RING, NT_TX_BUFS) < 0)
        return 1;
    virtio_modern_driver_ok(&s->vio);
    if (r8(s->vio.common, VCOM_STATUS) & VST_NEEDS_RESET) {
        u_fail(&s->cpl3, "device needs a reset right after DRIVER_OK");
        return 1;
    }
    nt_read_config(s);
    s->guest_frames = (struct net_frames){
        .seed = (uint32_t)s->seed, .dir = NET_FRAME_GUEST, .dst = nt_broadcast, .src = s->mac};
    s->host_frames = (struct net_frames){
        .seed = (uint32_t)s->seed, .dir = NET_FRAME_HOST, .dst = s->mac, .src = nt_host_mac};
    /* Every receive buffer to the device, for good. */
    while (s->rx.nfree)
        nt_post(&s->rx, s->rx.free[--s->rx.nfree], NT_BUF, VIRTQ_DESC_F_WRITE);
    nt_flush(s, &s->rx);
    return 0;
}

static uint64_t u_shutdown(void *arg)
{
    struct nt *s = arg;
    (void)virtio_modern_reset(&s->vio, &s->cpl3);
    return 0;
}

/* ---- receive ---- */

/* Counts a bad receive buffer and keeps the first one's details (frame:
 * the number of test frames before it). */
static void nt_rx_bad(struct nt *s, const char *what, uint64_t at, uint64_t got, uint64_t want)
{
    if (!s->bad_seen) {
        s->bad_seen = true;
        s->bad_what = what;
        s->bad_frame = s->mode == NT_CHECK ? s->rx_ok + s->rx_bad : s->frames + s->bad;
        s->bad_at = at;
        s->bad_got = got;
        s->bad_want = want;
    }
    if (s->mode == NT_CHECK)
        s->rx_bad++;
    else
        s->bad++;
}

/* Checks a used receive buffer's length and header; returns the frame
 * length, or 0 when the buffer is bad (counted). */
static uint32_t nt_rx_frame(struct nt *s, const uint8_t *b, uint32_t used_len)
{
    if (used_len < NT_HDR + 14 || used_len > NT_BUF) {
        nt_rx_bad(s, "used_length", 0, used_len, NT_BUF);
        return 0;
    }
    if (b[0] != 0) { /* no flags: we took no offloads */
        nt_rx_bad(s, "hdr_flags", 0, b[0], 0);
        return 0;
    }
    if (b[1] != 0) {
        nt_rx_bad(s, "hdr_gso_type", 1, b[1], 0);
        return 0;
    }
    uint32_t num_buffers = b[10] | (uint32_t)b[11] << 8;
    if (num_buffers != 1) { /* each frame fits one 2 KiB buffer */
        nt_rx_bad(s, "hdr_num_buffers", 10, num_buffers, 1);
        return 0;
    }
    return used_len - NT_HDR;
}

/* A received frame of `len` bytes against host frame `index` of
 * want_len bytes; false (counted bad) when they differ. */
static bool nt_frame_ok(struct nt *s, const uint8_t *f, uint32_t len, uint32_t index,
                        uint32_t want_len)
{
    uint32_t at = net_frame_diff(&s->host_frames, index, want_len, f, len);
    if (at == NET_FRAME_SAME)
        return true;
    if (at < len && at < want_len)
        nt_rx_bad(s, "byte", at, f[at], net_frame_byte(&s->host_frames, index, want_len, at));
    else
        nt_rx_bad(s, "length", 0, len, want_len);
    return false;
}

/* net check: a received buffer against the next frame the host sends. */
static void nt_check_rx(struct nt *s, const uint8_t *b, uint32_t used_len)
{
    uint32_t len = nt_rx_frame(s, b, used_len);
    if (!len)
        return;
    const uint8_t *f = b + NT_HDR;
    if (!net_frame_is_test(f)) {
        s->rx_other++;
        return;
    }
    uint32_t index = (uint32_t)(s->rx_ok + s->rx_bad);
    if (nt_frame_ok(s, f, len, index, net_frame_len(&s->host_frames, index, (uint32_t)s->size)))
        s->rx_ok++;
}

/* net bench rx: a received buffer against the frame its header says it
 * is; counts the good ones. */
static void nt_bench_rx(struct nt *s, const uint8_t *b, uint32_t used_len)
{
    uint32_t len = nt_rx_frame(s, b, used_len);
    const uint8_t *f = b + NT_HDR;
    if (!len || !net_frame_is_test(f))
        return;
    if (len < NET_FRAME_HEADER) {
        nt_rx_bad(s, "length", 0, len, NET_FRAME_HEADER);
        return;
    }
    if (nt_frame_ok(s, f, len, net_frame_stated_index(f), net_frame_stated_len(f))) {
        s->frames++;
        s->bytes += len;
    }
}

/* Takes the frames waiting from before (counted as other) until none came
 * for quiet_ms; false when they kept coming until the deadline dl, or the
 * device broke the ring's rules (u_fail said which). */
static bool nt_drain(struct nt *s, uint64_t dl)
{
    uint64_t quiet = u_deadline(&s->cpl3, s->quiet_ms);
    uint32_t len;
    int slot;
    while (!tsc_passed(quiet)) {
        while ((slot = nt_take_used(s, &s->rx, &len)) >= 0) {
            if (nt_rx_frame(s, nt_buf(&s->rx, (uint16_t)slot), len))
                s->rx_other++;
            nt_post(&s->rx, (uint16_t)slot, NT_BUF, VIRTQ_DESC_F_WRITE);
            quiet = u_deadline(&s->cpl3, s->quiet_ms);
        }
        if (slot == -2)
            return false;
        nt_flush(s, &s->rx);
        if (tsc_passed(dl)) {
            u_fail(&s->cpl3, "frames kept coming for wait_ms before the test began");
            return false;
        }
        cpu_relax();
    }
    return true;
}

/* ---- the commands' loops ---- */

static uint64_t u_check(void *arg)
{
    struct nt *s = arg;
    uint64_t dl = u_deadline(&s->cpl3, s->wait_ms);
    uint32_t queued = 0, len;
    int slot;
    /* Frames left in the TAP from before are not the host's answer: take
     * them first, so that the TAP has room. */
    if (!nt_drain(s, dl))
        return 1;
    for (;;) {
        while (queued < s->count && s->tx.nfree) {
            uint16_t t = s->tx.free[--s->tx.nfree];
            uint8_t *b = nt_buf(&s->tx, t);
            uint32_t flen = net_frame_len(&s->guest_frames, queued, (uint32_t)s->size);
            memset(b, 0, NT_HDR);
            net_frame_fill(&s->guest_frames, queued, flen, b + NT_HDR);
            nt_post(&s->tx, t, NT_HDR + flen, 0);
            queued++;
        }
        nt_flush(s, &s->tx);
        while ((slot = nt_take_used(s, &s->tx, &len)) >= 0) {
            s->tx.free[s->tx.nfree++] = (uint16_t)slot;
            s->tx_done++;
        }
        if (slot == -2)
            return 1;
        while ((slot = nt_take_used(s, &s->rx, &len)) >= 0) {
            nt_check_rx(s, nt_buf(&s->rx, (uint16_t)slot), len);
            nt_post(&s->rx, (uint16_t)slot, NT_BUF, VIRTQ_DESC_F_WRITE);
        }
        if (slot == -2)
            return 1;
        nt_flush(s, &s->rx);
        if ((s->tx_done == s->count && s->rx_ok + s->rx_bad >= s->count) || tsc_passed(dl))
            return 0;
        cpu_relax();
    }
}

/* net link: returns 0 when the link bit or the generation changed, 1 at
 * the deadline. Polls about every millisecond. */
static uint64_t u_link_wait(void *arg)
{
    struct nt *s = arg;
    bool up = s->link_up;
    uint8_t gen = s->gen;
    for (;;) {
        nt_read_config(s);
        if (s->link_up != up || s->gen != gen)
            return 0;
        if (tsc_passed(s->link_deadline))
            return 1;
        uint64_t pause = u_deadline(&s->cpl3, 1);
        while (!tsc_passed(pause))
            cpu_relax();
    }
}

static uint64_t u_bench_tx(void *arg)
{
    struct nt *s = arg;
    uint32_t len = (uint32_t)s->size, pending = 0;
    for (uint16_t t = 0; t < s->tx.q.size; t++) {
        uint8_t *b = nt_buf(&s->tx, t);
        memset(b, 0, NT_HDR);
        net_frame_fill(&s->guest_frames, t, len, b + NT_HDR);
    }
    uint64_t start = rdtsc(), end = start + s->ms * s->cpl3.tsc_khz, progress = start;
    s->kicks = 0;
    for (;;) {
        uint64_t now = rdtsc();
        bool running = (int64_t)(now - end) < 0;
        uint32_t used_len;
        int slot;
        while ((slot = nt_take_used(s, &s->tx, &used_len)) >= 0) {
            s->tx.free[s->tx.nfree++] = (uint16_t)slot;
            s->frames++;
            progress = now;
        }
        if (slot == -2)
            return 1;
        while (running && s->tx.nfree) {
            nt_post(&s->tx, s->tx.free[--s->tx.nfree], NT_HDR + len, 0);
            if (++pending >= s->batch) {
                nt_flush(s, &s->tx);
                pending = 0;
            }
        }
        if (pending && (!running || !s->tx.nfree)) {
            nt_flush(s, &s->tx);
            pending = 0;
        }
        if (!running && s->tx.nfree == s->tx.q.size) {
            s->tsc = now - start;
            break;
        }
        if (now - progress > 10000 * s->cpl3.tsc_khz) {
            u_fail(&s->cpl3, "transmit buffers stopped coming back (10 s)");
            return 1;
        }
    }
    s->bytes = s->frames * len;
    return 0;
}

/* net bench rx, before the host is told to send. */
static uint64_t u_bench_rx_drain(void *arg)
{
    struct nt *s = arg;
    return nt_drain(s, u_deadline(&s->cpl3, s->wait_ms)) ? 0 : 1;
}

static uint64_t u_bench_rx(void *arg)
{
    struct nt *s = arg;
    uint64_t start = rdtsc(), end = start + s->ms * s->cpl3.tsc_khz;
    uint32_t pending = 0;
    s->kicks = 0;
    while ((int64_t)(rdtsc() - end) < 0) {
        uint32_t used_len;
        int slot;
        bool got = false;
        while ((slot = nt_take_used(s, &s->rx, &used_len)) >= 0) {
            nt_bench_rx(s, nt_buf(&s->rx, (uint16_t)slot), used_len);
            nt_post(&s->rx, (uint16_t)slot, NT_BUF, VIRTQ_DESC_F_WRITE);
            got = true;
            if (++pending >= s->batch) {
                nt_flush(s, &s->rx);
                pending = 0;
            }
        }
        if (slot == -2)
            return 1;
        if (!got && pending) {
            nt_flush(s, &s->rx);
            pending = 0;
        }
        if (!got)
            cpu_relax();
    }
    nt_flush(s, &s->rx);
    s->tsc = s->ms * s->cpl3.tsc_khz;
    return 0;
}

/* ------------------------------------------------------------------ */
/* CPL0: arguments, the device, output                                 */

static void nt_say_fail(void (*say)(const char *), const char *why)
{
    struct out_line l = {.n = 0};
    ln_str(&l, "net FAIL ");
    ln_str(&l, why);
    say(l.buf);
}

static void nt_say_link(struct nt *s, void (*say)(const char *))
{
    struct out_line l = {.n = 0};
    ln_str(&l, s->link_up ? "net link up" : "net link down");
    ln_kv(&l, "gen", s->gen);
    say(l.buf);
}

static void nt_say_first_bad(struct nt *s, void (*say)(const char *))
{
    if (!s->bad_seen)
        return;
    struct out_line l = {.n = 0};
    ln_str(&l, "net rx first bad");
    ln_kv(&l, "frame", s->bad_frame);
    ln_str(&l, " what=");
    ln_str(&l, s->bad_what);
    ln_kv(&l, "at", s->bad_at);
    ln_kv(&l, "got", s->bad_got);
    ln_kv(&l, "want", s->bad_want);
    say(l.buf);
}

struct nt_key {
    const char *name;
    size_t field; /* offset in struct nt */
    uint64_t min, max, dflt;
};

static const struct nt_key nt_keys[] = {
    {"count=", offsetof(struct nt, count), 1, 1000000, 64},
    {"size=", offsetof(struct nt, size), NET_FRAME_MIN, NET_FRAME_MAX, NET_FRAME_MAX},
    {"seed=", offsetof(struct nt, seed), 0, 0xffffffffu, 1},
    {"mrg=", offsetof(struct nt, mrg_wanted), 0, 1, 1},
    {"wait_ms=", offsetof(struct nt, wait_ms), 1, 600000, 30000},
    {"quiet_ms=", offsetof(struct nt, quiet_ms), 0, 10000, 100},
    {"timeout_ms=", offsetof(struct nt, timeout_ms), 1, 600000, 10000},
    {"changes=", offsetof(struct nt, changes), 0, 1000, 0},
    {"ms=", offsetof(struct nt, ms), 1, 600000, 2000},
    {"batch=", offsetof(struct nt, batch), 1, NT_QMAX, 32},
};

static uint64_t *nt_field(struct nt *s, const struct nt_key *k)
{
    return (uint64_t *)(void *)((char *)s + k->field);
}

/* Parses the arguments after the mode into s; false on anything unknown
 * or out of range. */
static bool nt_parse(struct nt *s, const char *p, int *want_bus, int *want_dev)
{
    for (unsigned i = 0; i < sizeof(nt_keys) / sizeof(nt_keys[0]); i++)
        *nt_field(s, &nt_keys[i]) = nt_keys[i].dflt;
    for (;;) {
        while (*p == ' ')
            p++;
        if (!*p)
            return true;
        const char *rest;
        uint64_t v;
        const struct nt_key *key = NULL;
        for (unsigned i = 0; i < sizeof(nt_keys) / sizeof(nt_keys[0]) && !key; i++)
            if (word_is(p, nt_keys[i].name, &rest))
                key = &nt_keys[i];
        if (key) {
            p = rest;
            if (!parse_decimal(&p, ARG_NUMBER_MAX, &v) || v < key->min || v > key->max)
                return false;
            *nt_field(s, key) = v;
        } else if (!parse_pci_location(&p, want_bus, want_dev)) {
            return false;
        }
        if (*p && *p != ' ')
            return false;
    }
}

static const char nt_usage[] = "usage: net check|link|bench tx|bench rx [BUS:DEV] [key=value...]";

void net_test(const char *args, uint64_t tsc_khz, void (*say)(const char *line))
{
    struct nt *s = NT;
    const char *p = args, *rest;
    enum nt_mode mode;
    while (*p == ' ')
        p++;
    if (word_is(p, "check", &rest))
        mode = NT_CHECK;
    else if (word_is(p, "link", &rest))
        mode = NT_LINK;
    else if (word_is(p, "bench tx", &rest))
        mode = NT_BENCH_TX;
    else if (word_is(p, "bench rx", &rest))
        mode = NT_BENCH_RX;
    else {
        nt_say_fail(say, nt_usage);
        return;
    }
    int want_bus = -1, want_dev = -1;
    memset(s, 0, sizeof(*s));
    if ((*rest && *rest != ' ') || !nt_parse(s, rest, &want_bus, &want_dev)) {
        nt_say_fail(say, nt_usage);
        return;
    }
    s->mode = mode;
    s->cpl3.tsc_khz = tsc_khz;

    unsigned bus, dev;
    if (!pci_find(want_bus, want_dev, pci_is_virtio_net, &bus, &dev)) {
        nt_say_fail(say, "no virtio-net function (1af4:1000 or 1af4:1041)");
        return;
    }
    uint32_t id = pci_cfg_read(bus, dev, 0x00);
    cpl3_setup_polling();
    uint64_t bar_addr[6], next = BENCH_MMIO_BASE;
    pci_assign_bars(bus, dev, bar_addr, NULL, &next);
    bool mapped = virtio_modern_map(bus, dev, bar_addr, &s->vio);

    struct out_line l = {.n = 0};
    ln_str(&l, "net device ");
    ln_pci_id(&l, id);
    ln_str(&l, " at ");
    ln_pci_location(&l, bus, dev);
    say(l.buf);
    if (!mapped) {
        nt_say_fail(say, "no modern virtio interface (capabilities)");
        goto out;
    }
    if (user_enter(u_init, s, USER_STACK_TOP) != 0) {
        nt_say_fail(say, u_failure(&s->cpl3, "driver init failed"));
        goto out_reset;
    }
    if (mode == NT_BENCH_RX && user_enter(u_bench_rx_drain, s, USER_STACK_TOP) != 0) {
        nt_say_fail(say, u_failure(&s->cpl3, "draining failed"));
        goto out_reset;
    }
    l.n = 0;
    ln_str(&l, "net mac ");
    for (unsigned i = 0; i < 6; i++) {
        if (i)
            ln_str(&l, ":");
        ln_hex(&l, s->mac[i], 2);
    }
    say(l.buf);
    nt_say_link(s, say);
    l.n = 0;
    ln_str(&l, "net queues");
    ln_kv(&l, "rx", s->rx.q.size);
    ln_kv(&l, "tx", s->tx.q.size);
    ln_kv(&l, "mrg", s->mrg);
    say(l.buf);

    if (mode == NT_CHECK) {
        bool ran = user_enter(u_check, s, USER_STACK_TOP) == 0;
        l.n = 0;
        ln_str(&l, "net tx");
        ln_kv(&l, "sent", s->tx_done);
        say(l.buf);
        l.n = 0;
        ln_str(&l, "net rx");
        ln_kv(&l, "ok", s->rx_ok);
        ln_kv(&l, "bad", s->rx_bad);
        ln_kv(&l, "other", s->rx_other);
        say(l.buf);
        nt_say_first_bad(s, say);
        if (!ran)
            nt_say_fail(say, u_failure(&s->cpl3, "check failed"));
        else if (s->tx_done != s->count)
            nt_say_fail(say, "not every frame sent before wait_ms");
        else if (s->rx_bad)
            nt_say_fail(say, "bad frames received");
        else if (s->rx_ok != s->count)
            nt_say_fail(say, "not every frame received before wait_ms");
        else
            say("net check done");
    } else if (mode == NT_LINK) {
        uint64_t changes = 0;
        bool up = s->link_up;
        s->link_deadline = rdtsc() + s->timeout_ms * tsc_khz;
        while (!s->changes || changes < s->changes) {
            if (user_enter(u_link_wait, s, USER_STACK_TOP) != 0)
                break;
            nt_say_link(s, say);
            if (s->link_up != up) {
                changes++;
                up = s->link_up;
            }
        }
        l.n = 0;
        ln_str(&l, "net link done");
        ln_kv(&l, "changes", changes);
        say(l.buf);
    } else {
        bool tx = mode == NT_BENCH_TX;
        if (user_enter(tx ? u_bench_tx : u_bench_rx, s, USER_STACK_TOP) != 0) {
            nt_say_fail(say, u_failure(&s->cpl3, "bench failed"));
        } else {
            nt_say_first_bad(s, say);
            l.n = 0;
            ln_str(&l, tx ? "net bench tx" : "net bench rx");
            ln_kv(&l, "frames", s->frames);
            ln_kv(&l, "bytes", s->bytes);
            ln_kv(&l, "us", s->tsc * 1000 / tsc_khz);
            ln_kv(&l, "bad", s->bad);
            ln_kv(&l, "kicks", s->kicks);
            say(l.buf);
        }
    }
out_reset:
    user_enter(u_shutdown, s, USER_STACK_TOP);
out:
    pci_disable(bus, dev);
}
