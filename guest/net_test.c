/*
 * Network test: a minimal polling virtio-net driver (modern interface;
 * 1af4:1000 transitional or 1af4:1041) run at CPL3 like the storage
 * benchmark's drivers (storage_bench.c): PCI enumeration and the CPL3
 * plumbing run at CPL0, device set-up and the frame loops at CPL3 against
 * user-accessible RAM and BARs, polling the used rings (no interrupts).
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
 *     tx: frames of `size` bytes (generator frames 0, 1, ... of seed 1 cut
 *     to `size`) sent as fast as they go for ms, then drained; rx: the
 *     frames of ethertype 0x88b5 that arrive in ms counted, buffers
 *     reposted. A notify is written after `batch` new buffers (or when
 *     no more fit), unless the device set VIRTQ_USED_F_NO_NOTIFY.
 *   BUS:DEV  PCI location (decimal); default: the first match on bus 0.
 * Output (each line prefixed "testguest: "):
 *   net device VVVV:DDDD at B:D
 *   net mac XX:XX:XX:XX:XX:XX
 *   net link up|down gen=N          (check, bench: once; link: then each change)
 *   net queues rx=N tx=N mrg=0|1
 *   net tx sent=N                   (check: frames the device gave back)
 *   net rx ok=N bad=N other=N       (check; other: ignored, see above)
 *   net rx first bad frame=I what=W at=O got=G want=W
 *   net check done | net link done changes=N
 *   net bench tx|rx frames=N bytes=N us=N bad=N kicks=N
 *   net FAIL <why>                  (instead of the done line)
 * bench rx counts frames, and bytes after the virtio-net header; bad:
 * buffers whose used length or header is wrong (tx: always 0); us: the
 * window, from the TSC.
 *
 * Frames (tests/kvm/net_peer.py has the same generator): frame I of
 * direction D ('G' = 0x47 guest to host, 'H' = 0x48 host to guest), seed S
 * and largest size M has nt_frame_len(S, D, I, M) bytes: M for I = 0, 60
 * for I = 1, else 60 + mix(S ^ D << 24 ^ I * 0x9E3779B9) % (M - 59).
 * Bytes 0-5: destination (guest: ff:ff:ff:ff:ff:ff; host: the guest's
 * MAC); 6-11: source (guest: its MAC; host: 02:70:65:65:72:00); 12-13:
 * ethertype 0x88b5; 14: D; 15: 1; 16-19: I; 20-21: the length; 22-23: S
 * & 0xffff (little-endian); from byte 24 the little-endian words mix(K),
 * mix(K + 1), ..., K = mix(mix(S ^ D << 24) + I), cut at the length. mix
 * is the 32-bit "lowbias32" hash; arithmetic is modulo 2^32. The host's
 * frames must arrive in order.
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

#include "cpu.h"
#include "layout.h"
#include "mmio.h"
#include "pci.h"
#include "storage_bench.h"

void *memset(void *d, int c, size_t n);

#define NT_QMAX 256
#define NT_BUF 2048
#define NT_HDR 12 /* struct virtio_net_hdr_v1 (VERSION_1) */
#define NT_MIN_FRAME 60
#define NT_MAX_FRAME 1514
#define NT_ETHERTYPE 0x88b5
#define NT_DIR_GUEST 'G'
#define NT_DIR_HOST 'H'

#define NT_RX_RING (BENCH_QUEUE_ADDR + 0x0000) /* desc, avail, used: 4 KiB each */
#define NT_TX_RING (BENCH_QUEUE_ADDR + 0x4000)
#define NT_RX_BUFS BENCH_DATA_ADDR
#define NT_TX_BUFS (BENCH_DATA_ADDR + NT_QMAX * NT_BUF)
#define NT_EXPECTED (BENCH_DATA_ADDR + 2 * NT_QMAX * NT_BUF) /* the frame a check wants */

#define VIRTIO_NET_F_MAC (1ULL << 5)
#define VIRTIO_NET_F_MRG_RXBUF (1ULL << 15)
#define VIRTIO_NET_F_STATUS (1ULL << 16)
#define VIRTIO_F_VERSION_1 (1ULL << 32)

#define VCOM_DFSELECT 0x00
#define VCOM_DF 0x04
#define VCOM_GFSELECT 0x08
#define VCOM_GF 0x0c
#define VCOM_STATUS 0x14
#define VCOM_GENERATION 0x15
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
#define VST_NEEDS_RESET 0x40
#define VDESC_WRITE 2
#define VUSED_NO_NOTIFY 1
#define VAVAIL_NO_INTERRUPT 1

static const uint8_t nt_broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const uint8_t nt_host_mac[6] = {0x02, 0x70, 0x65, 0x65, 0x72, 0x00};

struct nt_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

struct nt_avail {
    uint16_t flags, idx;
    uint16_t ring[NT_QMAX];
};

struct nt_used {
    uint16_t flags, idx;
    struct {
        uint32_t id, len;
    } ring[NT_QMAX];
};

/* One virtqueue; descriptor i always describes buffer i (slot i). */
struct nt_ring {
    volatile struct nt_desc *desc;
    volatile struct nt_avail *avail;
    volatile struct nt_used *used;
    volatile uint16_t *notify;
    uint8_t *bufs;
    uint16_t index, size, avail_idx, avail_pub, last_used, nfree;
    uint16_t free[NT_QMAX]; /* slots the driver holds (TX) */
    bool with_device[NT_QMAX];
};

enum nt_mode { NT_CHECK, NT_LINK, NT_BENCH_TX, NT_BENCH_RX };

/* Driver state in RAM at BENCH_STATE_ADDR (user-accessible). */
struct nt {
    /* Set at CPL0. */
    enum nt_mode mode;
    uint64_t tsc_khz;
    volatile uint8_t *common, *notify, *devcfg;
    uint32_t notify_mult;
    uint64_t count, size, seed, mrg_wanted, wait_ms, quiet_ms, timeout_ms, changes, ms, batch;
    uint64_t link_deadline; /* TSC */

    /* Set at CPL3. */
    char err[80];
    uint8_t mac[6];
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

static void u_fail(struct nt *s, const char *why)
{
    unsigned i = 0;
    while (why[i] && i < sizeof(s->err) - 1) {
        s->err[i] = why[i];
        i++;
    }
    s->err[i] = 0;
}

static uint64_t u_deadline(struct nt *s, uint64_t ms)
{
    return rdtsc() + ms * s->tsc_khz;
}

static bool u_expired(uint64_t deadline)
{
    return (int64_t)(rdtsc() - deadline) >= 0;
}

/* ---- the frame generator (see the header comment) ---- */

static uint32_t nt_mix(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

static uint32_t nt_frame_len(uint32_t seed, uint8_t dir, uint32_t index, uint32_t max)
{
    if (index == 0)
        return max;
    if (index == 1)
        return NT_MIN_FRAME;
    return NT_MIN_FRAME +
           nt_mix(seed ^ ((uint32_t)dir << 24) ^ (index * 0x9E3779B9u)) % (max - NT_MIN_FRAME + 1);
}

static void nt_put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void nt_put32(uint8_t *p, uint32_t v)
{
    nt_put16(p, v);
    nt_put16(p + 2, v >> 16);
}

/* Writes frame `index` of `len` bytes (at least 24) at f. */
static void nt_frame(uint8_t *f, uint32_t seed, uint8_t dir, uint32_t index, uint32_t len,
                     const uint8_t *dst, const uint8_t *src)
{
    for (unsigned i = 0; i < 6; i++) {
        f[i] = dst[i];
        f[6 + i] = src[i];
    }
    f[12] = NT_ETHERTYPE >> 8;
    f[13] = NT_ETHERTYPE & 0xff;
    f[14] = dir;
    f[15] = 1;
    nt_put32(f + 16, index);
    nt_put16(f + 20, len);
    nt_put16(f + 22, seed);
    uint32_t key = nt_mix(nt_mix(seed ^ ((uint32_t)dir << 24)) + index);
    for (uint32_t o = 24, k = 0; o < len; o += 4, k++) {
        uint32_t w = nt_mix(key + k);
        for (uint32_t b = 0; b < 4 && o + b < len; b++)
            f[o + b] = (uint8_t)(w >> (8 * b));
    }
}

/* ---- virtqueues ---- */

static int nt_queue_setup(struct nt *s, struct nt_ring *r, uint16_t index, uint64_t ring,
                          uint64_t bufs)
{
    volatile uint8_t *c = s->common;
    w16(c, VCOM_Q_SELECT, index);
    uint16_t max = r16(c, VCOM_Q_SIZE);
    uint16_t size = NT_QMAX;
    while (size > max)
        size >>= 1;
    if (size < 8) {
        u_fail(s, "a queue holds fewer than 8 entries");
        return -1;
    }
    memset((void *)(uintptr_t)ring, 0, 0x3000);
    memset(r, 0, sizeof(*r));
    r->desc = (volatile struct nt_desc *)(uintptr_t)ring;
    r->avail = (volatile struct nt_avail *)(uintptr_t)(ring + 0x1000);
    r->used = (volatile struct nt_used *)(uintptr_t)(ring + 0x2000);
    r->bufs = (uint8_t *)(uintptr_t)bufs;
    r->index = index;
    r->size = size;
    for (uint16_t i = 0; i < size; i++)
        r->free[r->nfree++] = (uint16_t)(size - 1 - i);
    w16(c, VCOM_Q_SIZE, size);
    w16(c, VCOM_Q_MSIX, 0xffff);
    w64(c, VCOM_Q_DESC, ring);
    w64(c, VCOM_Q_AVAIL, ring + 0x1000);
    w64(c, VCOM_Q_USED, ring + 0x2000);
    r->notify = (volatile uint16_t *)(s->notify + (uint64_t)r16(c, VCOM_Q_NOFF) * s->notify_mult);
    r->avail->flags = VAVAIL_NO_INTERRUPT; /* we poll */
    w16(c, VCOM_Q_ENABLE, 1);
    return 0;
}

static uint8_t *nt_buf(struct nt_ring *r, uint16_t slot)
{
    return r->bufs + (uint64_t)slot * NT_BUF;
}

/* Hands a free slot's buffer to the device (published by nt_flush). */
static void nt_post(struct nt_ring *r, uint16_t slot, uint32_t len, uint16_t flags)
{
    volatile struct nt_desc *d = &r->desc[slot];
    d->addr = (uint64_t)(uintptr_t)nt_buf(r, slot);
    d->len = len;
    d->flags = flags;
    d->next = 0;
    r->with_device[slot] = true;
    r->avail->ring[r->avail_idx & (r->size - 1)] = slot;
    r->avail_idx++;
}

/* Publishes posted buffers; notifies unless the device said it need not. */
static void nt_flush(struct nt *s, struct nt_ring *r)
{
    if (r->avail_pub == r->avail_idx)
        return;
    barrier();
    r->avail->idx = r->avail_idx;
    r->avail_pub = r->avail_idx;
    full_fence();
    if (!(r->used->flags & VUSED_NO_NOTIFY)) {
        *r->notify = r->index;
        s->kicks++;
    }
}

/* The next used buffer: its slot, or -1 when there is none, or -2 when the
 * device broke the ring's rules (s->err says how). */
static int nt_take_used(struct nt *s, struct nt_ring *r, uint32_t *len)
{
    uint16_t idx = r->used->idx;
    if (idx == r->last_used)
        return -1;
    if ((uint16_t)(idx - r->last_used) > r->size) {
        u_fail(s, "used index ran ahead of the buffers posted");
        return -2;
    }
    barrier();
    uint32_t id = r->used->ring[r->last_used & (r->size - 1)].id;
    *len = r->used->ring[r->last_used & (r->size - 1)].len;
    r->last_used++;
    if (id >= r->size || !r->with_device[id]) {
        u_fail(s, "used ring returned a buffer the device did not hold");
        return -2;
    }
    r->with_device[id] = false;
    return (int)id;
}

/* ---- set-up ---- */

static void nt_read_config(struct nt *s)
{
    for (unsigned tries = 0; tries < 100; tries++) {
        uint8_t gen = r8(s->common, VCOM_GENERATION);
        for (unsigned i = 0; i < 6; i++)
            s->mac[i] = r8(s->devcfg, i);
        s->link_up = s->has_status ? (r16(s->devcfg, 6) & 1) != 0 : true;
        s->gen = gen;
        if (r8(s->common, VCOM_GENERATION) == gen)
            return;
    }
}

static uint64_t u_init(void *arg)
{
    struct nt *s = arg;
    volatile uint8_t *c = s->common;
    w8(c, VCOM_STATUS, 0);
    uint64_t dl = u_deadline(s, 1000);
    while (r8(c, VCOM_STATUS) != 0)
        if (u_expired(dl)) {
            u_fail(s, "virtio reset did not complete");
            return 1;
        }
    w8(c, VCOM_STATUS, VST_ACK);
    w8(c, VCOM_STATUS, VST_ACK | VST_DRIVER);
    w32(c, VCOM_DFSELECT, 0);
    uint64_t f = r32(c, VCOM_DF);
    w32(c, VCOM_DFSELECT, 1);
    f |= (uint64_t)r32(c, VCOM_DF) << 32;
    if (!(f & VIRTIO_F_VERSION_1)) {
        u_fail(s, "device does not offer VIRTIO_F_VERSION_1");
        return 1;
    }
    if (!(f & VIRTIO_NET_F_MAC)) {
        u_fail(s, "device does not offer VIRTIO_NET_F_MAC");
        return 1;
    }
    uint64_t want = VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | (f & VIRTIO_NET_F_STATUS) |
                    (s->mrg_wanted ? f & VIRTIO_NET_F_MRG_RXBUF : 0);
    s->has_status = (want & VIRTIO_NET_F_STATUS) != 0;
    s->mrg = (want & VIRTIO_NET_F_MRG_RXBUF) != 0;
    w32(c, VCOM_GFSELECT, 0);
    w32(c, VCOM_GF, (uint32_t)want);
    w32(c, VCOM_GFSELECT, 1);
    w32(c, VCOM_GF, (uint32_t)(want >> 32));
    w8(c, VCOM_STATUS, VST_ACK | VST_DRIVER | VST_FEATURES_OK);
    if (!(r8(c, VCOM_STATUS) & VST_FEATURES_OK)) {
        u_fail(s, "device refused FEATURES_OK");
        return 1;
    }
    if (nt_queue_setup(s, &s->rx, 0, NT_RX_RING, NT_RX_BUFS) < 0 ||
        nt_queue_setup(s, &s->tx, 1, NT_TX_RING, NT_TX_BUFS) < 0)
        return 1;
    w8(c, VCOM_STATUS, VST_ACK | VST_DRIVER | VST_FEATURES_OK | VST_DRIVER_OK);
    if (r8(c, VCOM_STATUS) & VST_NEEDS_RESET) {
        u_fail(s, "device needs a reset right after DRIVER_OK");
        return 1;
    }
    nt_read_config(s);
    /* Every receive buffer to the device, for good. */
    while (s->rx.nfree)
        nt_post(&s->rx, s->rx.free[--s->rx.nfree], NT_BUF, VDESC_WRITE);
    nt_flush(s, &s->rx);
    return 0;
}

static uint64_t u_shutdown(void *arg)
{
    struct nt *s = arg;
    w8(s->common, VCOM_STATUS, 0);
    uint64_t dl = u_deadline(s, 1000);
    while (r8(s->common, VCOM_STATUS) != 0 && !u_expired(dl))
        cpu_relax();
    return 0;
}

/* ---- receive ---- */

/* Counts a bad receive buffer and keeps the first one's details (frame:
 * the index of the host frame a check expected). */
static void nt_rx_bad(struct nt *s, const char *what, uint64_t at, uint64_t got, uint64_t want)
{
    if (!s->bad_seen) {
        s->bad_seen = true;
        s->bad_what = what;
        s->bad_frame = s->rx_ok + s->rx_bad;
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

static bool nt_is_test_frame(const uint8_t *f)
{
    return f[12] == (NT_ETHERTYPE >> 8) && f[13] == (NT_ETHERTYPE & 0xff);
}

/* net check: a received buffer against the next frame the host sends. */
static void nt_check_rx(struct nt *s, const uint8_t *b, uint32_t used_len)
{
    uint32_t len = nt_rx_frame(s, b, used_len);
    if (!len)
        return;
    const uint8_t *f = b + NT_HDR;
    if (!nt_is_test_frame(f)) {
        s->rx_other++;
        return;
    }
    uint32_t index = (uint32_t)(s->rx_ok + s->rx_bad);
    uint32_t want_len = nt_frame_len((uint32_t)s->seed, NT_DIR_HOST, index, (uint32_t)s->size);
    uint8_t *want = (uint8_t *)(uintptr_t)NT_EXPECTED;
    nt_frame(want, (uint32_t)s->seed, NT_DIR_HOST, index, want_len, s->mac, nt_host_mac);
    uint32_t n = len < want_len ? len : want_len;
    uint32_t o = 0;
    while (o < n && f[o] == want[o])
        o++;
    if (o < n)
        nt_rx_bad(s, "byte", o, f[o], want[o]);
    else if (len != want_len)
        nt_rx_bad(s, "length", 0, len, want_len);
    else
        s->rx_ok++;
}

/* ---- the commands' loops ---- */

static uint64_t u_check(void *arg)
{
    struct nt *s = arg;
    uint64_t dl = u_deadline(s, s->wait_ms), quiet = u_deadline(s, s->quiet_ms);
    uint32_t queued = 0, len;
    int slot;
    /* Frames left in the TAP from before are not the host's answer: take
     * them until none came for quiet_ms, so that the TAP has room. */
    while (!u_expired(quiet)) {
        while ((slot = nt_take_used(s, &s->rx, &len)) >= 0) {
            if (nt_rx_frame(s, nt_buf(&s->rx, (uint16_t)slot), len))
                s->rx_other++;
            nt_post(&s->rx, (uint16_t)slot, NT_BUF, VDESC_WRITE);
            quiet = u_deadline(s, s->quiet_ms);
        }
        if (slot == -2)
            return 1;
        nt_flush(s, &s->rx);
        if (u_expired(dl)) {
            u_fail(s, "frames kept coming for wait_ms before the check began");
            return 1;
        }
        cpu_relax();
    }
    for (;;) {
        while (queued < s->count && s->tx.nfree) {
            uint16_t t = s->tx.free[--s->tx.nfree];
            uint8_t *b = nt_buf(&s->tx, t);
            uint32_t flen =
                nt_frame_len((uint32_t)s->seed, NT_DIR_GUEST, queued, (uint32_t)s->size);
            memset(b, 0, NT_HDR);
            nt_frame(b + NT_HDR, (uint32_t)s->seed, NT_DIR_GUEST, queued, flen, nt_broadcast,
                     s->mac);
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
            nt_post(&s->rx, (uint16_t)slot, NT_BUF, VDESC_WRITE);
        }
        if (slot == -2)
            return 1;
        nt_flush(s, &s->rx);
        if ((s->tx_done == s->count && s->rx_ok + s->rx_bad >= s->count) || u_expired(dl))
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
        if (u_expired(s->link_deadline))
            return 1;
        uint64_t pause = u_deadline(s, 1);
        while (!u_expired(pause))
            cpu_relax();
    }
}

static uint64_t u_bench_tx(void *arg)
{
    struct nt *s = arg;
    uint32_t len = (uint32_t)s->size, pending = 0;
    for (uint16_t t = 0; t < s->tx.size; t++) {
        uint8_t *b = nt_buf(&s->tx, t);
        memset(b, 0, NT_HDR);
        nt_frame(b + NT_HDR, 1, NT_DIR_GUEST, t, len, nt_broadcast, s->mac);
    }
    uint64_t start = rdtsc(), end = start + s->ms * s->tsc_khz, progress = start;
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
        if (!running && s->tx.nfree == s->tx.size) {
            s->tsc = now - start;
            break;
        }
        if (now - progress > 10000 * s->tsc_khz) {
            u_fail(s, "transmit buffers stopped coming back (10 s)");
            return 1;
        }
    }
    s->bytes = s->frames * len;
    return 0;
}

static uint64_t u_bench_rx(void *arg)
{
    struct nt *s = arg;
    uint64_t start = rdtsc(), end = start + s->ms * s->tsc_khz;
    uint32_t pending = 0;
    s->kicks = 0;
    while ((int64_t)(rdtsc() - end) < 0) {
        uint32_t used_len;
        int slot;
        bool got = false;
        while ((slot = nt_take_used(s, &s->rx, &used_len)) >= 0) {
            const uint8_t *b = nt_buf(&s->rx, (uint16_t)slot);
            uint32_t len = nt_rx_frame(s, b, used_len);
            if (len && nt_is_test_frame(b + NT_HDR)) {
                s->frames++;
                s->bytes += len;
            }
            nt_post(&s->rx, (uint16_t)slot, NT_BUF, VDESC_WRITE);
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
    s->tsc = s->ms * s->tsc_khz;
    return 0;
}

/* ------------------------------------------------------------------ */
/* CPL0: arguments, the device, output                                 */

struct nt_line {
    char buf[160];
    unsigned n;
};

static void ln_str(struct nt_line *l, const char *s)
{
    while (*s && l->n < sizeof(l->buf) - 1)
        l->buf[l->n++] = *s++;
    l->buf[l->n] = 0;
}

static void ln_num(struct nt_line *l, uint64_t v, unsigned base, int digits)
{
    static const char hx[] = "0123456789abcdef";
    char t[24];
    int k = 0;
    do {
        t[k++] = hx[v % base];
        v /= base;
    } while (v || k < digits);
    while (k && l->n < sizeof(l->buf) - 1)
        l->buf[l->n++] = t[--k];
    l->buf[l->n] = 0;
}

static void ln_kv(struct nt_line *l, const char *key, uint64_t v)
{
    ln_str(l, " ");
    ln_str(l, key);
    ln_str(l, "=");
    ln_num(l, v, 10, 1);
}

static bool nt_word(const char *p, const char *w, const char **rest)
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

static bool nt_num(const char **pp, uint64_t *out)
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

static void nt_say_fail(void (*say)(const char *), const char *why)
{
    struct nt_line l = {.n = 0};
    ln_str(&l, "net FAIL ");
    ln_str(&l, why);
    say(l.buf);
}

static void nt_say_link(struct nt *s, void (*say)(const char *))
{
    struct nt_line l = {.n = 0};
    ln_str(&l, s->link_up ? "net link up" : "net link down");
    ln_kv(&l, "gen", s->gen);
    say(l.buf);
}

struct nt_key {
    const char *name;
    size_t field; /* offset in struct nt */
    uint64_t min, max, dflt;
};

static const struct nt_key nt_keys[] = {
    {"count=", offsetof(struct nt, count), 1, 1000000, 64},
    {"size=", offsetof(struct nt, size), NT_MIN_FRAME, NT_MAX_FRAME, NT_MAX_FRAME},
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
        uint64_t v, d;
        const struct nt_key *key = NULL;
        for (unsigned i = 0; i < sizeof(nt_keys) / sizeof(nt_keys[0]) && !key; i++)
            if (nt_word(p, nt_keys[i].name, &rest))
                key = &nt_keys[i];
        if (key) {
            p = rest;
            if (!nt_num(&p, &v) || v < key->min || v > key->max)
                return false;
            *nt_field(s, key) = v;
        } else if (nt_num(&p, &v) && *p == ':') {
            p++;
            if (!nt_num(&p, &d) || v > 255 || d > 31)
                return false;
            *want_bus = (int)v;
            *want_dev = (int)d;
        } else {
            return false;
        }
        if (*p && *p != ' ')
            return false;
    }
}

static bool nt_is_net(uint32_t id)
{
    return id == 0x10001af4u || id == 0x10411af4u;
}

static const char nt_usage[] = "usage: net check|link|bench tx|bench rx [BUS:DEV] [key=value...]";

void net_test(const char *args, uint64_t tsc_khz, void (*say)(const char *line))
{
    struct nt *s = NT;
    const char *p = args, *rest;
    enum nt_mode mode;
    while (*p == ' ')
        p++;
    if (nt_word(p, "check", &rest))
        mode = NT_CHECK;
    else if (nt_word(p, "link", &rest))
        mode = NT_LINK;
    else if (nt_word(p, "bench tx", &rest))
        mode = NT_BENCH_TX;
    else if (nt_word(p, "bench rx", &rest))
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
    s->tsc_khz = tsc_khz;

    unsigned bus = want_bus >= 0 ? (unsigned)want_bus : 0, dev = 0;
    uint32_t id = 0;
    bool found = false;
    for (unsigned d = want_dev >= 0 ? (unsigned)want_dev : 0; d < 32 && !found; d++) {
        id = pci_cfg_read(bus, d, 0x00);
        if (nt_is_net(id)) {
            found = true;
            dev = d;
        }
        if (want_dev >= 0)
            break;
    }
    if (!found) {
        nt_say_fail(say, "no virtio-net function (1af4:1000 or 1af4:1041)");
        return;
    }

    /* Mask interrupt sources: the driver polls. */
    outb(0x21, 0xff);
    outb(0xA1, 0xff);
    outb(0x3F8 + 1, 0x00); /* COM1 IER */
    cpl3_setup();
    uint64_t bar_addr[6], next = BENCH_MMIO_BASE;
    pci_assign_bars(bus, dev, bar_addr, NULL, &next);
    s->common = pci_virtio_cap(bus, dev, bar_addr, 1, 0);
    s->notify = pci_virtio_cap(bus, dev, bar_addr, 2, &s->notify_mult);
    s->devcfg = pci_virtio_cap(bus, dev, bar_addr, 4, 0);

    struct nt_line l = {.n = 0};
    ln_str(&l, "net device ");
    ln_num(&l, id & 0xffff, 16, 4);
    ln_str(&l, ":");
    ln_num(&l, id >> 16, 16, 4);
    ln_str(&l, " at ");
    ln_num(&l, bus, 10, 1);
    ln_str(&l, ":");
    ln_num(&l, dev, 10, 1);
    say(l.buf);
    if (!s->common || !s->notify || !s->devcfg) {
        nt_say_fail(say, "no modern virtio interface (capabilities)");
        goto out;
    }
    if (user_enter(u_init, s, USER_STACK_TOP) != 0) {
        nt_say_fail(say, s->err[0] ? s->err : "driver init failed");
        goto out_reset;
    }
    l.n = 0;
    ln_str(&l, "net mac ");
    for (unsigned i = 0; i < 6; i++) {
        if (i)
            ln_str(&l, ":");
        ln_num(&l, s->mac[i], 16, 2);
    }
    say(l.buf);
    nt_say_link(s, say);
    l.n = 0;
    ln_str(&l, "net queues");
    ln_kv(&l, "rx", s->rx.size);
    ln_kv(&l, "tx", s->tx.size);
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
        if (s->bad_seen) {
            l.n = 0;
            ln_str(&l, "net rx first bad");
            ln_kv(&l, "frame", s->bad_frame);
            ln_str(&l, " what=");
            ln_str(&l, s->bad_what);
            ln_kv(&l, "at", s->bad_at);
            ln_kv(&l, "got", s->bad_got);
            ln_kv(&l, "want", s->bad_want);
            say(l.buf);
        }
        if (!ran)
            nt_say_fail(say, s->err[0] ? s->err : "check failed");
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
            nt_say_fail(say, s->err[0] ? s->err : "bench failed");
        } else {
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
    /* Leave the function quiet: no decoding, no bus mastering, so a later
     * command may place another device's BARs at the same addresses. */
    pci_cfg_write(bus, dev, 0x04, 0x400);
}
