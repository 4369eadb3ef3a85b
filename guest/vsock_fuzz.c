/*
 * The device fuzzer's virtio-vsock mode: a hostile vsock driver at CPL3
 * (polling, like net_test.c; cpl3.h says why), against the host's side of
 * the device (CID 2). It needs the VM's port_mappings to map
 * VSOCK_FUZZ_ECHO_PORT to a server that echoes and VSOCK_FUZZ_SINK_PORT to
 * one that accepts and never reads. Phases, in one driver session:
 *
 *  1. Credit lie: a connection to the sink port, then 64 KiB RW packets
 *     sent without waiting for credit until the device resets the
 *     connection (its buffer and the host socket's fill up: the guest
 *     has sent past the device's buf_alloc); at most 1024 packets (the
 *     RST can lag behind a guest that sends this fast: `sent` may reach
 *     64 MiB), then up to 3 s for the RST.
 *  2. CREDIT_REQUEST floods: 2048 on an open connection to the echo port
 *     (CREDIT_UPDATEs counted), then 1024 for connections that do not
 *     exist while the receive queue is not drained (the device owes more
 *     RSTs than it can queue).
 *  3. Connection storm: VSOCK_FUZZ_CONNECTS REQUESTs from distinct guest
 *     ports, a quarter each to the echo and sink ports, half to unmapped
 *     ones, at most 32 unanswered at a time; RESPONSE and RST replies are
 *     counted; one connection in eight is closed again (RST), the others
 *     stay open, so the device's cap on connections is reached.
 *  4. 2000 malformed packets, about half naming an open connection:
 *     wrong src_cid, dst_cid, type or op, len past the chain or over
 *     64 KiB, payload on control ops, unknown SHUTDOWN flags, headers cut
 *     short, device-writable buffers in tx chains, REQUEST or RESPONSE on
 *     an open connection, headers of random fields, CREDIT_UPDATEs of any
 *     buf_alloc and fwd_cnt; some valid RW mixed in.
 *  5. A device reset with the storm's connections open.
 * Then, each of `rounds` times: the device set up again and one broken
 * chain (addresses outside RAM, loops, chains longer than the queue, huge
 * or bad indirect tables, zero-length buffers, heads out of range, avail
 * index jumps; on tx, or on rx: readable, short or bad buffers there,
 * reached through a RST the device owes), then up to 500 ms for the device
 * to set DEVICE_NEEDS_RESET. Last, the check that the device works again:
 * a reset, one connection to the echo port, VSOCK_FUZZ_ECHO_BYTES of
 * vsock_fuzz_byte() sent in RW packets of random sizes and the echo read
 * back byte for byte, SHUTDOWN, and the device's RST.
 *
 * Every packet the device hands the guest is checked (used id and length,
 * dst_cid, type, op, len against the used length): `bad` counts the ones
 * that break the rules.
 *
 * Output (each line prefixed "testguest: devfuzz vsock "):
 *   credit lie buf_alloc=B sent=N
 *   credit requests=N updates=N flood=N rsts=N
 *   connects=N responses=N rsts=N closed=N reset_later=N unanswered=N
 *   malformed=N rsts=N
 *   reset open=N
 *   bad chains=N needs_reset=N
 *   rx packets=N bad=N
 *   echo ok bytes=N | FAIL <why>
 *
 * Memory: rings and buffers in the device fuzzer's scratch RAM (64 MiB
 * up, vsock_fuzz.c's VF_* below), the driver's state at BENCH_STATE_ADDR.
 */
#include "vsock_fuzz.h"

#include <stddef.h>

#include "cpl3.h"
#include "cpu.h"
#include "layout.h"
#include "mmio.h"
#include "rand.h"
#include "text.h"
#include "virtio_modern.h"

void *memset(void *d, int c, size_t n);

#define VF_BASE 0x4000000ULL
#define VF_RX_RING (VF_BASE + 0x0000)
#define VF_TX_RING (VF_BASE + 0x4000)
#define VF_EV_RING (VF_BASE + 0x8000)
#define VF_TX_HDRS (VF_BASE + 0x10000) /* 64 bytes per tx chain */
#define VF_EV_BUFS (VF_BASE + 0x12000)
#define VF_BAD (VF_BASE + 0x20000)      /* indirect tables: up to 1 MiB */
#define VF_RX_BUFS (VF_BASE + 0x200000) /* VF_RX_BUF per rx descriptor */
#define VF_DATA (VF_BASE + 0x400000)    /* VF_DATA_SIZE of vsock_fuzz_byte() */
#define VF_DATA_SIZE 0x20000

#define VF_QMAX 256
#define VF_RX_BUF 4096
#define VF_TX_CHAINS 64 /* two descriptors each */
#define VF_GUEST_BUF_ALLOC 65536
#define VF_OWN_PORT 0x30000000u   /* guest ports of the phases' own connections */
#define VF_FLOOD_PORT 0x31000000u /* guest ports of the CREDIT_REQUEST flood */
#define VF_STORM_PORT 0x40000000u /* + attempt */
#define VF_MALFORMED 2000
#define VF_LOG_PAUSE_MS 1100

enum {
    OP_REQUEST = 1,
    OP_RESPONSE,
    OP_RST,
    OP_SHUTDOWN,
    OP_RW,
    OP_CREDIT_UPDATE,
    OP_CREDIT_REQUEST,
};

/* The 44-byte packet header (little-endian, as x86 stores it). */
struct __attribute__((packed)) vf_hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
};
_Static_assert(sizeof(struct vf_hdr) == 44, "vsock header");

/* A storm attempt: its state in the low bits, its port kind above. */
enum { AT_WAIT, AT_OPEN, AT_DONE };
#define AT_STATE 3
#define AT_KIND_SHIFT 2 /* 0: echo, 1: sink, 2: unmapped */

/* Driver state in RAM at BENCH_STATE_ADDR (user-accessible). */
struct vf {
    struct cpl3_session cpl3;

    /* Set at CPL0. */
    struct virtio_modern vio;
    uint64_t rng;
    unsigned round;

    /* Set at CPL3. */
    uint64_t cid;
    struct virtq rx, tx, ev;
    uint8_t rx_held[VF_QMAX]; /* rx buffers the device holds */
    bool no_drain, stuck;
    uint64_t sent, rx_packets, rx_bad;
    uint64_t rx_rst;

    /* The connection a phase watches (its guest port) and what came. */
    uint32_t w_port;
    uint16_t w_last; /* the last op for it; 0: none yet */
    uint32_t w_buf_alloc, w_fwd_cnt;
    uint64_t w_updates;
    uint32_t w_rx; /* RW bytes received, checked against vsock_fuzz_byte() */
    bool w_rx_bad;

    uint64_t lie_sent, lie_buf_alloc;
    uint64_t creq, flood_rst;
    uint32_t st_resp, st_rst, st_closed, st_later_rst;
    uint64_t mal_rst, open_at_reset;
    uint64_t needs_reset;
    uint8_t st[VSOCK_FUZZ_CONNECTS];
};

#define VF ((struct vf *)(uintptr_t)BENCH_STATE_ADDR)
_Static_assert(sizeof(struct vf) <= 0x10000, "vsock fuzz state too big");

bool vsock_fuzz_match(uint32_t id, uint32_t class_rev)
{
    (void)class_rev;
    return id == 0x10121af4u || id == 0x10531af4u;
}

/* The byte at offset i of the data the guest sends (the credit lie's and
 * the echo check's); tests/kvm/run_tests.py has the same. */
static uint8_t vsock_fuzz_byte(uint32_t i)
{
    return (uint8_t)(i * 131u + (i >> 8) + 1u);
}

static uint64_t rnd(struct vf *s)
{
    return xorshift64(&s->rng);
}

static uint32_t below(struct vf *s, uint32_t n)
{
    return n ? (uint32_t)(rnd(s) % n) : 0;
}

static bool one_in(struct vf *s, uint32_t n)
{
    return below(s, n) == 0;
}

/* ------------------------------------------------------------------ */
/* CPL3                                                                */

/* One packet from the device: counted, checked, and if it is for the
 * storm or the watched connection, taken into account. */
static void vf_packet(struct vf *s, const struct vf_hdr *h, uint32_t used_len)
{
    s->rx_packets++;
    if (used_len < sizeof(*h) || h->dst_cid != s->cid || h->type != 1 || h->op < OP_REQUEST ||
        h->op > OP_CREDIT_REQUEST || h->len != used_len - sizeof(*h)) {
        s->rx_bad++;
        return;
    }
    uint16_t op = h->op;
    if (op == OP_RST)
        s->rx_rst++;
    uint32_t at = h->dst_port - VF_STORM_PORT;
    if (at < VSOCK_FUZZ_CONNECTS) {
        uint8_t *st = &s->st[at], state = *st & AT_STATE;
        if (state == AT_WAIT && (op == OP_RESPONSE || op == OP_RST)) {
            *st ^= op == OP_RESPONSE ? AT_OPEN : AT_DONE;
            if (op == OP_RESPONSE)
                s->st_resp++;
            else
                s->st_rst++;
        } else if (state == AT_OPEN && op == OP_RST) {
            *st ^= AT_OPEN ^ AT_DONE;
            s->st_later_rst++;
        }
        return;
    }
    if (h->dst_port != s->w_port)
        return;
    s->w_last = op;
    s->w_buf_alloc = h->buf_alloc;
    s->w_fwd_cnt = h->fwd_cnt;
    if (op == OP_CREDIT_UPDATE)
        s->w_updates++;
    if (op == OP_RW) {
        const uint8_t *b = (const uint8_t *)(h + 1);
        for (uint32_t i = 0; i < h->len; i++)
            if (b[i] != vsock_fuzz_byte(s->w_rx + i))
                s->w_rx_bad = true;
        s->w_rx += h->len;
    }
}

/* Takes what the device put in the rx queue, then gives the buffers back
 * (a buffer the device returns twice, or never had, is bad). */
static void vf_poll(struct vf *s)
{
    struct virtq *q = &s->rx;
    uint16_t taken[VF_QMAX];
    unsigned n = 0;
    while (q->used->idx != q->last_used && n < VF_QMAX) {
        barrier();
        uint32_t id = q->used->ring[q->last_used & (q->size - 1)].id;
        uint32_t len = q->used->ring[q->last_used & (q->size - 1)].len;
        q->last_used++;
        if (id >= q->size || !s->rx_held[id] || len > VF_RX_BUF) {
            s->rx_bad++;
            continue;
        }
        s->rx_held[id] = 0;
        taken[n++] = (uint16_t)id;
        vf_packet(s, (const struct vf_hdr *)(uintptr_t)(VF_RX_BUFS + (uint64_t)id * VF_RX_BUF),
                  len);
    }
    while (n) {
        s->rx_held[taken[--n]] = 1;
        virtq_add(q, taken[n]);
    }
    virtq_publish(q);
}

/* Polls for ms milliseconds (without draining rx when no_drain). */
static void vf_settle(struct vf *s, uint64_t ms)
{
    uint64_t dl = u_deadline(&s->cpl3, ms);
    while (!tsc_passed(dl))
        if (!s->no_drain)
            vf_poll(s);
}

static struct vf_hdr vf_hdr(struct vf *s, uint32_t src_port, uint32_t dst_port, uint16_t op)
{
    return (struct vf_hdr){
        .src_cid = s->cid,
        .dst_cid = 2,
        .src_port = src_port,
        .dst_port = dst_port,
        .type = 1,
        .op = op,
        .buf_alloc = VF_GUEST_BUF_ALLOC,
        .fwd_cnt = src_port == s->w_port ? s->w_rx : 0,
    };
}

/* Queues a packet: hdr_len bytes of *h, then (data_len > 0) a second
 * descriptor of data_flags. Waits (draining rx) for a free chain; after 3 s
 * the tx queue is stuck and nothing more is sent. */
static void vf_send(struct vf *s, const struct vf_hdr *h, uint32_t hdr_len, uint64_t data,
                    uint32_t data_len, uint16_t data_flags)
{
    struct virtq *q = &s->tx;
    uint64_t dl = u_deadline(&s->cpl3, 3000);
    while (!s->stuck && (uint16_t)(q->avail_idx - q->used->idx) >= VF_TX_CHAINS) {
        if (!s->no_drain)
            vf_poll(s);
        s->stuck = tsc_passed(dl);
    }
    if (s->stuck)
        return;
    uint16_t k = q->avail_idx % VF_TX_CHAINS, d = (uint16_t)(2 * k);
    uint64_t at = VF_TX_HDRS + 64ull * k;
    *(struct vf_hdr *)(uintptr_t)at = *h;
    q->desc[d] = (struct virtq_desc){at, hdr_len, data_len ? VIRTQ_DESC_F_NEXT : 0, d + 1};
    q->desc[d + 1] = (struct virtq_desc){data, data_len, data_flags, 0};
    virtq_add(q, d);
    virtq_publish(q);
    s->sent++;
}

static void vf_send_op(struct vf *s, uint32_t src_port, uint32_t dst_port, uint16_t op,
                       uint32_t flags)
{
    struct vf_hdr h = vf_hdr(s, src_port, dst_port, op);
    h.flags = flags;
    vf_send(s, &h, sizeof(h), 0, 0, 0);
}

/* Watches guest port port and asks for dst_port; true on RESPONSE. */
static bool vf_connect(struct vf *s, uint32_t port, uint32_t dst_port)
{
    s->w_port = port;
    s->w_last = 0;
    s->w_rx = 0;
    s->w_rx_bad = false;
    vf_send_op(s, port, dst_port, OP_REQUEST, 0);
    uint64_t dl = u_deadline(&s->cpl3, 5000);
    while (!s->w_last && !tsc_passed(dl))
        vf_poll(s);
    return s->w_last == OP_RESPONSE;
}

/* Reset, features (VERSION_1, STREAM), the three queues, every rx and event
 * buffer posted, DRIVER_OK. */
static bool vf_init(struct vf *s)
{
    uint64_t f;
    if (!virtio_modern_begin(&s->vio, &s->cpl3, &f) ||
        !virtio_modern_accept(&s->vio, &s->cpl3, VIRTIO_F_VERSION_1 | (f & 1)))
        return false;
    if (!virtio_modern_queue_setup(&s->vio, &s->rx, 0, VF_QMAX, VF_RX_RING, false) ||
        !virtio_modern_queue_setup(&s->vio, &s->tx, 1, VF_QMAX, VF_TX_RING, false) ||
        !virtio_modern_queue_setup(&s->vio, &s->ev, 2, 8, VF_EV_RING, false) ||
        s->tx.size < 2 * VF_TX_CHAINS) {
        u_fail(&s->cpl3, "queues too small");
        return false;
    }
    s->cid = r32(s->vio.devcfg, 0) | (uint64_t)r32(s->vio.devcfg, 4) << 32;
    for (uint16_t i = 0; i < s->rx.size; i++) {
        s->rx.desc[i] = (struct virtq_desc){VF_RX_BUFS + (uint64_t)i * VF_RX_BUF, VF_RX_BUF,
                                            VIRTQ_DESC_F_WRITE, 0};
        s->rx_held[i] = 1;
        virtq_add(&s->rx, i);
    }
    for (uint16_t i = 0; i < s->ev.size; i++) {
        s->ev.desc[i] = (struct virtq_desc){VF_EV_BUFS + 8ull * i, 8, VIRTQ_DESC_F_WRITE, 0};
        virtq_add(&s->ev, i);
    }
    virtio_modern_driver_ok(&s->vio);
    virtq_publish(&s->rx);
    virtq_publish(&s->ev);
    s->stuck = false;
    s->w_port = 0;
    return true;
}

/* ---- the attack ---- */

static uint32_t storm_dst(uint32_t at, uint8_t st)
{
    unsigned kind = st >> AT_KIND_SHIFT;
    return kind == 0 ? VSOCK_FUZZ_ECHO_PORT : kind == 1 ? VSOCK_FUZZ_SINK_PORT : 6000 + at % 1000;
}

static void vf_storm(struct vf *s)
{
    uint32_t n = 0;
    while (n < VSOCK_FUZZ_CONNECTS && !s->stuck) {
        uint32_t first = n;
        for (; n < first + 32 && n < VSOCK_FUZZ_CONNECTS; n++) {
            uint32_t kind = below(s, 4);
            s->st[n] = (uint8_t)((kind > 2 ? 2 : kind) << AT_KIND_SHIFT | AT_WAIT);
            vf_send_op(s, VF_STORM_PORT + n, storm_dst(n, s->st[n]), OP_REQUEST, 0);
        }
        uint64_t dl = u_deadline(&s->cpl3, 5000);
        while (s->st_resp + s->st_rst < n && !tsc_passed(dl))
            vf_poll(s);
        for (uint32_t i = first; i < n; i++) {
            if ((s->st[i] & AT_STATE) == AT_OPEN && one_in(s, 8)) {
                vf_send_op(s, VF_STORM_PORT + i, storm_dst(i, s->st[i]), OP_RST, 0);
                s->st[i] ^= AT_OPEN ^ AT_DONE;
                s->st_closed++;
            }
        }
    }
}

/* One malformed packet, for an open storm connection or any other. */
static void vf_malformed(struct vf *s)
{
    uint32_t at = below(s, VSOCK_FUZZ_CONNECTS);
    for (unsigned tries = 0; tries < 8 && one_in(s, 2) && (s->st[at] & AT_STATE) != AT_OPEN;
         tries++)
        at = below(s, VSOCK_FUZZ_CONNECTS);
    struct vf_hdr h = vf_hdr(s, VF_STORM_PORT + at, storm_dst(at, s->st[at]), OP_RW);
    uint32_t hdr_len = sizeof(h), data_len = 0;
    uint16_t data_flags = 0;
    static const uint16_t control[] = {OP_REQUEST,  OP_RESPONSE,      OP_RST,
                                       OP_SHUTDOWN, OP_CREDIT_UPDATE, OP_CREDIT_REQUEST};
    switch (below(s, 14)) {
    case 0:
        h.src_cid = s->cid + 1 + below(s, 3);
        break;
    case 1:
        h.dst_cid = one_in(s, 2) ? 3 : rnd(s);
        break;
    case 2:
        h.type = one_in(s, 2) ? 2 : (uint16_t)rnd(s);
        break;
    case 3:
        h.op = one_in(s, 2) ? 0 : (uint16_t)(8 + below(s, 0xfff8));
        break;
    case 4: /* len past the chain */
        h.len = 17 + below(s, 4096);
        data_len = 16;
        break;
    case 5: /* len over 64 KiB, the chain as long or not */
        h.len = one_in(s, 4) ? 0xffffffffu : 65537 + below(s, 4096);
        data_len = one_in(s, 2) ? h.len & (VF_DATA_SIZE - 1) : 16;
        break;
    case 6: /* payload on a control op */
        h.op = control[below(s, 6)];
        h.len = data_len = 1 + below(s, 64);
        break;
    case 7:
        h.op = OP_SHUTDOWN;
        h.flags = 4u << below(s, 29) | below(s, 4);
        break;
    case 8:
        hdr_len = 1 + below(s, sizeof(h) - 1); /* (empty buffers break the ring: later) */
        break;
    case 9: /* a device-writable buffer in a tx chain */
        h.len = data_len = 16;
        data_flags = VIRTQ_DESC_F_WRITE;
        break;
    case 10: /* a second REQUEST, or a RESPONSE, on an open connection */
        h.op = one_in(s, 2) ? OP_REQUEST : OP_RESPONSE;
        break;
    case 11: /* random fields */
        h.src_cid = one_in(s, 2) ? s->cid : rnd(s);
        h.dst_cid = one_in(s, 2) ? 2 : rnd(s);
        h.len = (uint32_t)rnd(s);
        h.type = (uint16_t)rnd(s);
        h.op = (uint16_t)below(s, 9);
        h.flags = (uint32_t)rnd(s);
        h.buf_alloc = (uint32_t)rnd(s);
        h.fwd_cnt = (uint32_t)rnd(s);
        break;
    case 12: /* credit from nowhere: fwd_cnt ahead of what was sent, any buf_alloc */
        h.op = OP_CREDIT_UPDATE;
        h.buf_alloc = (uint32_t)rnd(s);
        h.fwd_cnt = (uint32_t)rnd(s);
        break;
    default: /* valid data, for the echo connections to answer */
        h.len = data_len = 1 + below(s, 512);
        break;
    }
    vf_send(s, &h, hdr_len, VF_DATA, data_len, data_flags);
}

static uint64_t u_attack(void *arg)
{
    struct vf *s = arg;
    uint8_t *data = (uint8_t *)(uintptr_t)VF_DATA;
    for (uint32_t i = 0; i < VF_DATA_SIZE; i++)
        data[i] = vsock_fuzz_byte(i);
    if (!vf_init(s))
        return 1;

    /* 1. Credit lie: 64 KiB packets to a host end that does not read. The
     * phases that make the device log start after VF_LOG_PAUSE_MS (its log
     * is rate-limited per second: each phase's refusals get logged). */
    vf_settle(s, VF_LOG_PAUSE_MS);
    if (!vf_connect(s, VF_OWN_PORT, VSOCK_FUZZ_SINK_PORT)) {
        u_fail(&s->cpl3, "no connection to the sink port");
        return 1;
    }
    s->lie_buf_alloc = s->w_buf_alloc;
    for (unsigned i = 0; i < 1024 && s->w_last != OP_RST && !s->stuck; i++) {
        struct vf_hdr h = vf_hdr(s, VF_OWN_PORT, VSOCK_FUZZ_SINK_PORT, OP_RW);
        h.len = 65536;
        vf_send(s, &h, sizeof(h), VF_DATA, h.len, 0);
        s->lie_sent += h.len;
        vf_poll(s);
    }
    /* (While the guest keeps the tx queue busy, the device's replies can
     * lag far behind: wait for them.) */
    uint64_t dl = u_deadline(&s->cpl3, 3000);
    while (s->w_last != OP_RST && !tsc_passed(dl))
        vf_poll(s);
    if (s->w_last != OP_RST) {
        u_fail(&s->cpl3, "no RST for a credit lie");
        return 1;
    }

    /* 2. CREDIT_REQUEST floods: on an open connection, then for none with
     * rx not drained. */
    if (!vf_connect(s, VF_OWN_PORT + 1, VSOCK_FUZZ_ECHO_PORT)) {
        u_fail(&s->cpl3, "no connection to the echo port");
        return 1;
    }
    for (; s->creq < 2048; s->creq++)
        vf_send_op(s, VF_OWN_PORT + 1, VSOCK_FUZZ_ECHO_PORT, OP_CREDIT_REQUEST, 0);
    vf_settle(s, 200);
    uint64_t rst_before = s->rx_rst;
    s->no_drain = true;
    for (uint32_t i = 0; i < 1024; i++)
        vf_send_op(s, VF_FLOOD_PORT + i, 6000 + below(s, 1000), OP_CREDIT_REQUEST, 0);
    vf_settle(s, 200);
    s->no_drain = false;
    vf_settle(s, 300);
    s->flood_rst = s->rx_rst - rst_before;

    /* 3. The connection storm. */
    vf_settle(s, VF_LOG_PAUSE_MS);
    vf_storm(s);

    /* 4. Malformed packets. */
    vf_settle(s, VF_LOG_PAUSE_MS);
    rst_before = s->rx_rst;
    for (unsigned i = 0; i < VF_MALFORMED; i++)
        vf_malformed(s);
    vf_settle(s, 300);
    s->mal_rst = s->rx_rst - rst_before;
    if (s->stuck) {
        u_fail(&s->cpl3, "the tx queue stopped moving");
        return 1;
    }

    /* 5. A reset with the connections open. */
    for (uint32_t i = 0; i < VSOCK_FUZZ_CONNECTS; i++)
        s->open_at_reset += (s->st[i] & AT_STATE) == AT_OPEN;
    if (!virtio_modern_reset(&s->vio, &s->cpl3)) {
        u_fail(&s->cpl3, "reset with connections open did not complete");
        return 1;
    }
    return 0;
}

/* One broken chain (see the top comment), then up to 500 ms for the
 * device to say it needs a reset. */
static uint64_t u_bad_chain(void *arg)
{
    struct vf *s = arg;
    if (!vf_init(s))
        return 1;
    unsigned kind = (s->round + below(s, 2) * 5) % 10;
    bool rx = kind >= 7;
    struct virtq *q = rx ? &s->rx : &s->tx;
    volatile struct virtq_desc *d = q->desc;
    uint64_t hdr = VF_TX_HDRS;
    struct vf_hdr h = vf_hdr(s, VF_OWN_PORT, 6000, OP_REQUEST);
    *(struct vf_hdr *)(uintptr_t)hdr = h;
    uint16_t head = 0;
    switch (kind) {
    case 0: /* outside RAM */
        d[0] = (struct virtq_desc){(1ull << 46) + (rnd(s) & 0xfffff000ull), 44, 0, 0};
        break;
    case 1: /* a two-descriptor loop */
        d[0] = (struct virtq_desc){hdr, 44, VIRTQ_DESC_F_NEXT, 1};
        d[1] = (struct virtq_desc){VF_DATA, 16, VIRTQ_DESC_F_NEXT, 0};
        break;
    case 2:   /* a huge indirect table: 64 Ki entries, or past RAM, or ragged */
    case 8: { /* (rx too) */
        volatile struct virtq_desc *t = (volatile struct virtq_desc *)(uintptr_t)VF_BAD;
        for (uint32_t i = 0; i < 65536; i++)
            t[i] = (struct virtq_desc){
                i ? VF_DATA : hdr, i ? 16 : 44,
                (uint16_t)(VIRTQ_DESC_F_NEXT | (rx ? VIRTQ_DESC_F_WRITE : 0)), (uint16_t)(i + 1)};
        static const uint32_t lens[] = {0x100000, 0xfffffff0u, 0, 17};
        d[0] = (struct virtq_desc){VF_BAD, lens[below(s, 4)], 4, 0};
        break;
    }
    case 3: { /* an indirect table that nests or loops */
        volatile struct virtq_desc *t = (volatile struct virtq_desc *)(uintptr_t)VF_BAD;
        t[0] = (struct virtq_desc){hdr, 44, VIRTQ_DESC_F_NEXT, 1};
        t[1] = (struct virtq_desc){VF_BAD, 32, (uint16_t)(one_in(s, 2) ? 4 : VIRTQ_DESC_F_NEXT), 0};
        d[0] = (struct virtq_desc){VF_BAD, 32, 4, 0};
        break;
    }
    case 4: /* zero-length buffers */
        d[0] = (struct virtq_desc){hdr, 0, VIRTQ_DESC_F_NEXT, 1};
        d[1] = (struct virtq_desc){VF_DATA, 0, 0, 0};
        break;
    case 5: /* a head out of range, or the avail index far ahead */
        head = (uint16_t)(q->size + below(s, 0xff00));
        if (one_in(s, 2)) {
            d[0] = (struct virtq_desc){hdr, 44, 0, 0};
            head = 0;
            q->avail_idx += 1000;
        }
        break;
    case 6: /* every descriptor chained to the next, the last to the first */
    case 9: /* (rx too) */
        for (uint16_t i = 0; i < q->size; i++)
            d[i] =
                (struct virtq_desc){rx ? VF_RX_BUFS : hdr, 44,
                                    (uint16_t)(VIRTQ_DESC_F_NEXT | (rx ? VIRTQ_DESC_F_WRITE : 0)),
                                    (uint16_t)((i + 1) % q->size)};
        break;
    default: { /* 7: an rx buffer device-readable, or shorter than a header */
        bool readable = one_in(s, 2);
        d[0] = (struct virtq_desc){VF_RX_BUFS, readable ? VF_RX_BUF : below(s, 44),
                                   (uint16_t)(readable ? 0 : VIRTQ_DESC_F_WRITE), 0};
        break;
    }
    }
    if (!rx) {
        virtq_add(q, head);
        virtq_publish(q);
    } else {
        /* The first rx buffer the device takes is descriptor 0: a REQUEST
         * to an unmapped port makes it owe a RST. */
        vf_send_op(s, VF_OWN_PORT, 6000, OP_REQUEST, 0);
    }
    s->sent++;
    uint64_t dl = u_deadline(&s->cpl3, 500);
    while (!(r8(s->vio.common, VCOM_STATUS) & VST_NEEDS_RESET) && !tsc_passed(dl))
        cpu_relax();
    s->needs_reset += (r8(s->vio.common, VCOM_STATUS) & VST_NEEDS_RESET) != 0;
    return 0;
}

/* The device works again: VSOCK_FUZZ_ECHO_BYTES each way, byte for byte. */
static uint64_t u_echo(void *arg)
{
    struct vf *s = arg;
    if (!vf_init(s))
        return 1;
    if (!vf_connect(s, VF_OWN_PORT + 2, VSOCK_FUZZ_ECHO_PORT)) {
        u_fail(&s->cpl3, "echo: no RESPONSE");
        return 1;
    }
    uint32_t off = 0;
    uint64_t dl = u_deadline(&s->cpl3, 10000);
    while ((off < VSOCK_FUZZ_ECHO_BYTES || s->w_rx < VSOCK_FUZZ_ECHO_BYTES) && !s->stuck &&
           !s->w_rx_bad && s->w_last != OP_RST && !tsc_passed(dl)) {
        uint32_t n = 1 + below(s, 1500), credit = s->w_buf_alloc - (off - s->w_fwd_cnt);
        if (n > VSOCK_FUZZ_ECHO_BYTES - off)
            n = VSOCK_FUZZ_ECHO_BYTES - off;
        if (n > credit)
            n = 0;
        if (n) {
            struct vf_hdr h = vf_hdr(s, VF_OWN_PORT + 2, VSOCK_FUZZ_ECHO_PORT, OP_RW);
            h.len = n;
            vf_send(s, &h, sizeof(h), VF_DATA + off, n, 0);
            off += n;
        }
        vf_poll(s);
    }
    if (s->w_rx_bad || s->w_rx != VSOCK_FUZZ_ECHO_BYTES) {
        u_fail(&s->cpl3, s->w_rx_bad ? "echo: bytes differ" : "echo: not every byte came back");
        return 1;
    }
    vf_send_op(s, VF_OWN_PORT + 2, VSOCK_FUZZ_ECHO_PORT, OP_SHUTDOWN, 3);
    dl = u_deadline(&s->cpl3, 3000);
    while (s->w_last != OP_RST && !tsc_passed(dl))
        vf_poll(s);
    if (s->w_last != OP_RST) {
        u_fail(&s->cpl3, "echo: no RST after SHUTDOWN");
        return 1;
    }
    return 0;
}

static uint64_t u_reset(void *arg)
{
    struct vf *s = arg;
    (void)virtio_modern_reset(&s->vio, &s->cpl3);
    return 0;
}

/* ------------------------------------------------------------------ */
/* CPL0                                                                */

/* "devfuzz vsock <what>" and " key=value" pairs, NULL-terminated. */
static void vf_say(void (*say)(const char *), const char *what, ...)
{
    struct out_line l = {.n = 0};
    ln_str(&l, "devfuzz vsock ");
    ln_str(&l, what);
    __builtin_va_list ap;
    __builtin_va_start(ap, what);
    for (const char *key; (key = __builtin_va_arg(ap, const char *));)
        ln_kv(&l, key, __builtin_va_arg(ap, uint64_t));
    __builtin_va_end(ap);
    say(l.buf);
}

uint64_t vsock_fuzz(unsigned bus, unsigned dev, const uint64_t bar_addr[6], uint64_t seed,
                    unsigned rounds, uint64_t tsc_khz, void (*say)(const char *line))
{
    struct vf *s = VF;
    memset(s, 0, sizeof(*s));
    s->cpl3.tsc_khz = tsc_khz;
    s->rng = seed * 0x9E3779B97F4A7C15ULL | 1;
    if (!virtio_modern_map(bus, dev, bar_addr, &s->vio)) {
        vf_say(say, "FAIL no modern virtio interface", NULL);
        return 0;
    }
    cpl3_setup_polling();
    bool ok = user_enter(u_attack, s, USER_STACK_TOP) == 0;
    vf_say(say, "credit lie", "buf_alloc", s->lie_buf_alloc, "sent", s->lie_sent, NULL);
    vf_say(say, "credit", "requests", s->creq, "updates", s->w_updates, "flood", (uint64_t)1024,
           "rsts", s->flood_rst, NULL);
    vf_say(say, "connects=10000", "responses", (uint64_t)s->st_resp, "rsts", (uint64_t)s->st_rst,
           "closed", (uint64_t)s->st_closed, "reset_later", (uint64_t)s->st_later_rst, "unanswered",
           (uint64_t)(VSOCK_FUZZ_CONNECTS - s->st_resp - s->st_rst), NULL);
    vf_say(say, "malformed=2000", "rsts", s->mal_rst, NULL);
    vf_say(say, "reset", "open", s->open_at_reset, NULL);
    unsigned r = 0;
    for (; ok && r < rounds; r++) {
        s->round = r;
        ok = user_enter(u_bad_chain, s, USER_STACK_TOP) == 0;
    }
    vf_say(say, "bad", "chains", (uint64_t)r, "needs_reset", s->needs_reset, NULL);
    if (ok)
        ok = user_enter(u_echo, s, USER_STACK_TOP) == 0;
    vf_say(say, "rx", "packets", s->rx_packets, "bad", s->rx_bad, NULL);
    if (ok)
        vf_say(say, "echo ok", "bytes", (uint64_t)VSOCK_FUZZ_ECHO_BYTES, NULL);
    else {
        struct out_line l = {.n = 0};
        ln_str(&l, "devfuzz vsock FAIL ");
        ln_str(&l, u_failure(&s->cpl3, "driver failed"));
        say(l.buf);
    }
    user_enter(u_reset, s, USER_STACK_TOP);
    return s->sent;
}
