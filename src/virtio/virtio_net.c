#include "virtio/virtio_net.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

#include "common/bytes.h"
#include "common/iov.h"

#define F(bit) (1ull << (bit))
#define ETH_ADDR_LEN 6
#define HDR_LEN_MAX 12         /* struct virtio_net_hdr_v1 */
#define NUM_BUFFERS_OFFSET 10  /* in struct virtio_net_hdr_v1 */
#define RX_IOV_MAX 1024        /* buffers one read can fill (IOV_MAX) */
#define RX_CHAIN_MAX_BUFS 256  /* buffers in one receive chain */
#define TX_CHAIN_MAX_BUFS 1023 /* buffers in one transmit chain (+ the header copy) */
#define CTRL_CHAIN_MAX_BUFS 16 /* buffers in one control command */
#define BATCH_FRAMES 256       /* frames per wake-up before the loop looks around */
#define CONFIG_SIZE offsetof(struct virtio_net_config, mtu)
/* Offered features a vhost engine must run itself. */
#define VHOST_RING_FEATURES                                                                        \
    (F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_ANY_LAYOUT) | F(VIRTIO_RING_F_INDIRECT_DESC) |             \
     F(VIRTIO_RING_F_EVENT_IDX) | F(VIRTIO_NET_F_MRG_RXBUF))
#define CONFIG_MAC offsetof(struct virtio_net_config, mac)
#define CONFIG_STATUS offsetof(struct virtio_net_config, status)
#define CONFIG_MAX_PAIRS offsetof(struct virtio_net_config, max_virtqueue_pairs)

/* The RX modes, indexed by their VIRTIO_NET_CTRL_RX_* command. */
enum { RX_PROMISC, RX_ALLMULTI, RX_ALLUNI, RX_NOMULTI, RX_NOUNI, RX_NOBCAST, RX_MODES };
static const char *const rx_mode_names[RX_MODES] = {"promisc", "allmulti", "alluni",
                                                    "nomulti", "nouni",    "nobcast"};

struct mac_table {
    uint32_t count;
    bool overflow; /* the driver gave more entries than we keep: accept all of that kind */
    uint8_t addr[VIRTIO_NET_MAC_TABLE_MAX][ETH_ADDR_LEN];
};

struct vnet_filter {
    uint8_t mac[ETH_ADDR_LEN];
    bool rx_mode[RX_MODES];
    struct mac_table uni, multi;
};

/* A receive chain popped but not yet used: its buffers are
 * rx_iov[iov_first .. iov_first + niov). */
struct rx_chain {
    uint16_t head;
    unsigned iov_first, niov;
    uint64_t bytes;
};

/* A data queue run by vhost (vdev->lock covers it). */
struct vhost_ring {
    struct virtio_net *net;
    unsigned queue;
    int call_fd; /* without an irqfd: the engine's interrupts, relayed on the queue's loop */
    struct io_watch call_watch;
    bool started; /* the engine runs the ring */
};

struct vnet_pair {
    struct virtio_net *net;
    unsigned index;
    int fd;
    bool is_socket; /* reads use recvmsg(MSG_TRUNC) to learn a truncated frame's length */
    struct vhost_ring vhost[2]; /* [0] receive, [1] transmit */
    bool vhost_features_valid;  /* the engine has applied vhost_features */
    uint64_t vhost_features;

    /* Receive: only the RX queue's loop thread touches these. */
    struct io_watch rx_watch; /* watched while the guest has buffers posted */
    _Atomic bool rx_watched;  /* the same, for the state dump's thread */
    struct iovec rx_iov[RX_IOV_MAX];
    struct rx_chain rx_held[RX_IOV_MAX];
    unsigned rx_nheld, rx_niov;
    uint64_t rx_offered;

    /* Transmit: the TX queue's loop thread only. */
    uint8_t tx_hdr[HDR_LEN_MAX];
    struct iovec tx_iov[TX_CHAIN_MAX_BUFS + 1]; /* [0] for the header copy */
};

struct virtio_net {
    struct virtio_device vdev;
    unsigned max_pairs;
    uint8_t perm_mac[ETH_ADDR_LEN];
    const struct virtio_net_backend_ops *be;
    void *be_opaque;
    const struct virtio_net_vhost_ops *vhost; /* NULL: the userspace data path */
    void *vhost_opaque;

    pthread_mutex_t apply_lock; /* what the back end was told */
    bool applied_valid;
    uint64_t applied_features;

    pthread_mutex_t filter_lock; /* filter and active_pairs; after config_lock */
    struct vnet_filter filter;
    _Atomic bool filtering; /* !promisc: RX looks at the filter */
    unsigned active_pairs;

    pthread_mutex_t link_lock; /* serializes virtio_net_set_link */

    _Atomic uint64_t tx_frames, tx_dropped, rx_frames, rx_dropped, rx_filtered;

    struct iovec ctrl_iov[CTRL_CHAIN_MAX_BUFS]; /* the control queue's loop thread */
    struct vnet_pair *pairs;
};

static struct virtio_net *net_of(struct virtio_device *vdev)
{
    return container_of(vdev, struct virtio_net, vdev);
}

/* Header the driver and the back end put in front of each frame. */
static unsigned hdr_len(uint64_t features)
{
    return (features & (F(VIRTIO_F_VERSION_1) | F(VIRTIO_NET_F_MRG_RXBUF))) ? HDR_LEN_MAX
                                                                            : HDR_LEN_MAX - 2;
}

enum queue_role { ROLE_RX, ROLE_TX, ROLE_CTRL, ROLE_UNUSED };

/* Queue layout by the negotiated features: without MQ, one pair and the
 * control queue at 2. */
static enum queue_role queue_role(struct virtio_net *net, unsigned queue, unsigned *pair)
{
    bool mq = virtio_features(&net->vdev) & F(VIRTIO_NET_F_MQ);
    unsigned pairs = mq ? net->max_pairs : 1;
    if (queue == 2 * pairs)
        return ROLE_CTRL;
    if (queue < 2 * pairs) {
        *pair = queue / 2;
        return queue % 2 ? ROLE_TX : ROLE_RX;
    }
    return ROLE_UNUSED;
}

static void filter_power_on(struct virtio_net *net, struct vnet_filter *f)
{
    memset(f, 0, sizeof(*f));
    memcpy(f->mac, net->perm_mac, ETH_ADDR_LEN);
    f->rx_mode[RX_PROMISC] = true; /* a driver without CTRL_RX gets every frame */
}

static bool is_multicast(const uint8_t *mac)
{
    return mac[0] & 1;
}

/* ---- Receive ---- */

static bool table_has(const struct mac_table *t, const uint8_t *mac)
{
    if (t->overflow)
        return true;
    for (uint32_t i = 0; i < t->count; i++)
        if (memcmp(t->addr[i], mac, ETH_ADDR_LEN) == 0)
            return true;
    return false;
}

/* Whether the RX mode and MAC tables let a frame for dst through. */
static bool rx_accept(struct virtio_net *net, const uint8_t *dst)
{
    static const uint8_t broadcast[ETH_ADDR_LEN] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    pthread_mutex_lock(&net->filter_lock);
    const struct vnet_filter *f = &net->filter;
    bool ok;
    if (f->rx_mode[RX_PROMISC])
        ok = true;
    else if (memcmp(dst, broadcast, ETH_ADDR_LEN) == 0)
        ok = !f->rx_mode[RX_NOBCAST];
    else if (is_multicast(dst))
        ok = !f->rx_mode[RX_NOMULTI] && (f->rx_mode[RX_ALLMULTI] || table_has(&f->multi, dst));
    else
        ok = !f->rx_mode[RX_NOUNI] &&
             (f->rx_mode[RX_ALLUNI] || memcmp(dst, f->mac, ETH_ADDR_LEN) == 0 ||
              table_has(&f->uni, dst));
    pthread_mutex_unlock(&net->filter_lock);
    return ok;
}

/* The filter as a list for the back end (see set_rx_filter): unicast
 * addresses first, then broadcast and multicast ones; 0 for every frame.
 * An empty list that must still filter holds the zero address, which no
 * frame carries. out holds at least VNET_BACKEND_FILTER_MAX entries. */
#define VNET_BACKEND_FILTER_MAX (2 + 2 * VIRTIO_NET_MAC_TABLE_MAX)
static unsigned backend_filter(const struct vnet_filter *f, uint8_t (*out)[ETH_ADDR_LEN],
                               bool *all_multicast)
{
    static const uint8_t broadcast[ETH_ADDR_LEN] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    *all_multicast = false;
    if (f->rx_mode[RX_PROMISC] ||
        (!f->rx_mode[RX_NOUNI] && (f->rx_mode[RX_ALLUNI] || f->uni.overflow)))
        return 0;
    unsigned n = 0;
    if (!f->rx_mode[RX_NOUNI]) {
        memcpy(out[n++], f->mac, ETH_ADDR_LEN);
        for (uint32_t i = 0; i < f->uni.count; i++)
            memcpy(out[n++], f->uni.addr[i], ETH_ADDR_LEN);
    }
    if (!f->rx_mode[RX_NOBCAST])
        memcpy(out[n++], broadcast, ETH_ADDR_LEN);
    if (!f->rx_mode[RX_NOMULTI]) {
        if (f->rx_mode[RX_ALLMULTI] || f->multi.overflow)
            *all_multicast = true;
        else
            for (uint32_t i = 0; i < f->multi.count; i++)
                memcpy(out[n++], f->multi.addr[i], ETH_ADDR_LEN);
    }
    if (n == 0)
        memset(out[n++], 0, ETH_ADDR_LEN);
    return n;
}

/* With vhost, the back end filters: tell it the filter after a change. */
static void backend_filter_sync(struct virtio_net *net)
{
    if (!net->vhost || !net->be->set_rx_filter)
        return;
    uint8_t list[VNET_BACKEND_FILTER_MAX][ETH_ADDR_LEN];
    bool all_multicast;
    pthread_mutex_lock(&net->filter_lock);
    unsigned n = backend_filter(&net->filter, list, &all_multicast);
    pthread_mutex_unlock(&net->filter_lock);
    if (net->be->set_rx_filter(net->be_opaque, (const uint8_t(*)[ETH_ADDR_LEN])list, n,
                               all_multicast) < 0) {
        log_limited(&net->vdev.dev_log, LOG_WARNING,
                    "%s: the back end refused the RX filter; the guest gets every frame",
                    net->vdev.name);
        net->be->set_rx_filter(net->be_opaque, NULL, 0, false);
    }
}

static void rx_readable(void *opaque, uint32_t events);

/* Watches the back end while the guest has buffers (loop thread). */
static void rx_watch(struct vnet_pair *p, bool on)
{
    struct io_loop *loop = virtio_queue_loop(&p->net->vdev, 2 * p->index);
    if (on && p->rx_watch.fd < 0)
        io_loop_watch(loop, &p->rx_watch, p->fd, EPOLLIN, rx_readable, p); /* logs */
    else if (!on && p->rx_watch.fd >= 0)
        io_loop_unwatch(loop, &p->rx_watch);
    atomic_store(&p->rx_watched, p->rx_watch.fd >= 0);
}

static void rx_readable(void *opaque, uint32_t events)
{
    struct vnet_pair *p = opaque;
    if (!virtio_queue_process(&p->net->vdev, 2 * p->index))
        rx_watch(p, false); /* the next kick (after a reset: activation) re-arms */
}

/* Pops receive chains until one frame of any size fits (with MRG_RXBUF),
 * or one chain is held (without). Returns 1 with buffers held, 0 with
 * none available, -1 on a broken chain (the device needs a reset). */
static int rx_fill(struct vnet_pair *p, struct virtq *vq, unsigned hl, bool mrg)
{
    struct virtio_net *net = p->net;
    uint64_t want = hl + (uint64_t)VIRTIO_NET_MAX_FRAME;
    while (p->rx_nheld == 0 || (mrg && p->rx_offered < want)) {
        if (RX_IOV_MAX - p->rx_niov < RX_CHAIN_MAX_BUFS)
            break;
        struct virtq_chain c = {.iov = &p->rx_iov[p->rx_niov], .iov_cap = RX_CHAIN_MAX_BUFS};
        enum virtq_pop_result res = virtq_pop(vq, &c);
        if (res == VIRTQ_EMPTY)
            break;
        if (res == VIRTQ_ERROR) {
            virtio_device_needs_reset(&net->vdev, "malformed virtqueue (see above)");
            return -1;
        }
        if (c.nout || c.in_bytes < hl) {
            log_limited(&net->vdev.dev_log, LOG_WARNING,
                        "%s: receive chain %u of pair %u has %u device-readable buffers and %llu "
                        "writable bytes (the %u-byte header at least, all writable, needed)",
                        net->vdev.name, c.head, p->index, c.nout, (unsigned long long)c.in_bytes,
                        hl);
            virtio_device_needs_reset(&net->vdev, "unusable receive buffer");
            return -1;
        }
        p->rx_held[p->rx_nheld++] = (struct rx_chain){
            .head = c.head, .iov_first = p->rx_niov, .niov = c.nin, .bytes = c.in_bytes};
        p->rx_niov += c.nin;
        p->rx_offered += c.in_bytes;
    }
    return p->rx_nheld > 0;
}

static ssize_t read_frame(struct vnet_pair *p, struct iovec *iov, unsigned cnt)
{
    ssize_t n;
    do {
        if (p->is_socket) {
            struct msghdr m = {.msg_iov = iov, .msg_iovlen = cnt};
            n = recvmsg(p->fd, &m, MSG_TRUNC | MSG_DONTWAIT);
        } else {
            n = readv(p->fd, iov, (int)cnt);
        }
    } while (n < 0 && errno == EINTR);
    return n;
}

/* Drops the first `used` held chains (they went to the used ring). */
static void rx_consume(struct vnet_pair *p, unsigned used)
{
    unsigned iov_shift = used < p->rx_nheld ? p->rx_held[used].iov_first : p->rx_niov;
    for (unsigned i = 0; i < used; i++)
        p->rx_offered -= p->rx_held[i].bytes;
    memmove(p->rx_held, p->rx_held + used, (p->rx_nheld - used) * sizeof(p->rx_held[0]));
    p->rx_nheld -= used;
    memmove(p->rx_iov, p->rx_iov + iov_shift, (p->rx_niov - iov_shift) * sizeof(p->rx_iov[0]));
    p->rx_niov -= iov_shift;
    for (unsigned i = 0; i < p->rx_nheld; i++)
        p->rx_held[i].iov_first -= iov_shift;
}

enum rx_result { RX_FRAME, RX_DRAINED, RX_FAILED };

/* Reads one frame into the held buffers and returns its chains. */
static enum rx_result rx_frame(struct vnet_pair *p, struct virtq *vq, unsigned hl, bool mrg,
                               bool *irq)
{
    struct virtio_net *net = p->net;
    unsigned cnt = mrg ? p->rx_niov : p->rx_held[0].niov;
    uint64_t offered = mrg ? p->rx_offered : p->rx_held[0].bytes;
    ssize_t n = read_frame(p, p->rx_iov, cnt);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return RX_DRAINED;
    if (n <= 0) {
        log_limited(&net->vdev.dev_log, LOG_WARNING,
                    "%s: pair %u: back end read: %s; receive waits for the next kick",
                    net->vdev.name, p->index, n == 0 ? "end of file" : strerror(errno));
        return RX_FAILED;
    }
    if ((uint64_t)n > offered || (uint64_t)n < hl) {
        atomic_fetch_add(&net->rx_dropped, 1);
        log_limited(&net->vdev.dev_log, LOG_DEBUG,
                    "%s: pair %u: %zd-byte frame dropped (%llu bytes of buffers, %u-byte header)",
                    net->vdev.name, p->index, n, (unsigned long long)offered, hl);
        return RX_FRAME; /* the buffers stay ours for the next frame */
    }
    if (atomic_load(&net->filtering)) {
        uint8_t dst[ETH_ADDR_LEN];
        if (iov_to_buf(p->rx_iov, cnt, hl, dst, sizeof(dst)) != sizeof(dst) ||
            !rx_accept(net, dst)) {
            atomic_fetch_add(&net->rx_filtered, 1);
            return RX_FRAME;
        }
    }
    uint64_t left = (uint64_t)n;
    unsigned used = 0;
    uint32_t lens[RX_IOV_MAX];
    while (left) {
        uint64_t take = left < p->rx_held[used].bytes ? left : p->rx_held[used].bytes;
        lens[used++] = (uint32_t)take;
        left -= take;
    }
    if (hl == HDR_LEN_MAX) {
        uint8_t nb[2];
        le16_store(nb, (uint16_t)used);
        iov_from_buf(p->rx_iov, p->rx_held[0].niov, NUM_BUFFERS_OFFSET, nb, sizeof(nb));
    }
    uint16_t heads[RX_IOV_MAX];
    for (unsigned i = 0; i < used; i++)
        heads[i] = p->rx_held[i].head;
    /* A merged frame's buffers appear in the used ring together. */
    *irq |= virtq_push_many(vq, heads, lens, used);
    rx_consume(p, used);
    atomic_fetch_add(&net->rx_frames, 1);
    return RX_FRAME;
}

/* RX kick or back end readable: frames into buffers until the back end is
 * empty, the buffers run out, or a batch is done. */
static void rx_process(struct virtio_net *net, struct vnet_pair *p, unsigned queue)
{
    struct virtio_device *vdev = &net->vdev;
    struct virtq *vq = virtio_queue_ring(vdev, queue);
    uint64_t features = virtio_features(vdev);
    unsigned hl = hdr_len(features);
    bool mrg = features & F(VIRTIO_NET_F_MRG_RXBUF);
    bool irq = false, watch = false, broken = false;
    unsigned frames = 0;
    /* While we watch the back end, buffers the guest adds need no kick. */
    virtq_disable_notify(vq);
    for (;;) {
        if (!virtio_queue_running(vdev, queue))
            break;
        if (frames == BATCH_FRAMES) {
            watch = true; /* level-triggered: the loop calls again */
            break;
        }
        int have = rx_fill(p, vq, hl, mrg);
        if (have < 0) {
            broken = true;
            break;
        }
        if (have == 0) {
            if (virtq_enable_notify(vq)) {
                virtq_disable_notify(vq);
                continue; /* buffers arrived meanwhile */
            }
            break; /* no buffers: the frames wait in the back end for the next kick */
        }
        enum rx_result r = rx_frame(p, vq, hl, mrg, &irq);
        if (r == RX_DRAINED) {
            watch = true;
            break;
        }
        if (r == RX_FAILED) {
            virtq_enable_notify(vq);
            break;
        }
        frames++;
    }
    /* Chains popped but not filled go back to the ring (they are the last
     * ones popped, in order); after a broken chain the ring is dead. */
    if (p->rx_nheld && !broken)
        virtio_queue_unpop(vdev, queue, (uint16_t)p->rx_nheld);
    p->rx_nheld = p->rx_niov = 0;
    p->rx_offered = 0;
    if (irq)
        virtio_queue_interrupt(vdev, queue);
    rx_watch(p, watch);
}

/* ---- Transmit ---- */

/* Why the header in front of a frame of frame_len bytes is refused, or
 * NULL. */
static const char *tx_header_refusal(const uint8_t *h, uint64_t frame_len, uint64_t features)
{
    uint8_t flags = h[0], gso = h[1];
    uint16_t hdr_len_field = le16_load(h + 2), gso_size = le16_load(h + 4);
    uint32_t csum_start = le16_load(h + 6), csum_offset = le16_load(h + 8);
    if (flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))
        return "unknown flags";
    if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
        if (!(features & F(VIRTIO_NET_F_CSUM)))
            return "NEEDS_CSUM without the CSUM feature";
        if (csum_start + csum_offset + 2 > frame_len)
            return "csum_start/csum_offset beyond the frame";
    }
    uint8_t type = gso & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
    if (type == VIRTIO_NET_HDR_GSO_NONE) {
        if (gso & VIRTIO_NET_HDR_GSO_ECN)
            return "ECN without a GSO type";
    } else {
        uint64_t need = type == VIRTIO_NET_HDR_GSO_TCPV4   ? F(VIRTIO_NET_F_HOST_TSO4)
                        : type == VIRTIO_NET_HDR_GSO_TCPV6 ? F(VIRTIO_NET_F_HOST_TSO6)
                                                           : 0;
        if (!need || !(features & need))
            return "a GSO type not negotiated";
        if ((gso & VIRTIO_NET_HDR_GSO_ECN) && !(features & F(VIRTIO_NET_F_HOST_ECN)))
            return "GSO ECN without HOST_ECN";
        if (!(flags & VIRTIO_NET_HDR_F_NEEDS_CSUM))
            return "GSO without NEEDS_CSUM";
        if (gso_size == 0)
            return "GSO with gso_size 0";
    }
    if (hdr_len_field > frame_len)
        return "hdr_len beyond the frame";
    return NULL;
}

static void tx_drop(struct virtio_net *net, struct vnet_pair *p, const struct virtq_chain *c,
                    const char *why)
{
    atomic_fetch_add(&net->tx_dropped, 1);
    log_limited(&net->vdev.dev_log, LOG_WARNING,
                "%s: pair %u: transmit chain %u (%llu bytes) dropped: %s", net->vdev.name, p->index,
                c->head, (unsigned long long)c->out_bytes, why);
}

/* Sends one chain's frame: the header from a private copy (the one that
 * was checked), the rest straight from guest memory. */
static void tx_frame(struct virtio_net *net, struct vnet_pair *p, struct virtq_chain *c,
                     uint64_t features)
{
    unsigned hl = hdr_len(features);
    if (c->nin) {
        tx_drop(net, p, c, "device-writable buffers in a transmit chain");
        return;
    }
    if (c->out_bytes <= hl) {
        tx_drop(net, p, c, "no frame after the header");
        return;
    }
    uint64_t frame_len = c->out_bytes - hl;
    if (frame_len > VIRTIO_NET_MAX_FRAME) {
        tx_drop(net, p, c, "frame over 64 KiB plus Ethernet and VLAN headers");
        return;
    }
    iov_to_buf(c->iov, c->nout, 0, p->tx_hdr, hl);
    const char *why = tx_header_refusal(p->tx_hdr, frame_len, features);
    if (why) {
        tx_drop(net, p, c, why);
        return;
    }
    unsigned cnt = c->nout;
    struct iovec *rest = iov_skip(c->iov, &cnt, hl);
    struct iovec *iov = rest - 1; /* c->iov starts at tx_iov + 1 */
    iov->iov_base = p->tx_hdr;
    iov->iov_len = hl;
    ssize_t n;
    do {
        if (p->is_socket) {
            struct msghdr m = {.msg_iov = iov, .msg_iovlen = cnt + 1};
            n = sendmsg(p->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        } else {
            n = writev(p->fd, iov, (int)cnt + 1);
        }
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        tx_drop(net, p, c, strerror(errno));
        return;
    }
    atomic_fetch_add(&net->tx_frames, 1);
}

static void tx_process(struct virtio_net *net, struct vnet_pair *p, unsigned queue)
{
    struct virtio_device *vdev = &net->vdev;
    struct virtq *vq = virtio_queue_ring(vdev, queue);
    uint64_t features = virtio_features(vdev);
    bool irq = false;
    unsigned frames = 0;
    for (;;) {
        virtq_disable_notify(vq);
        for (;;) {
            if (!virtio_queue_running(vdev, queue))
                goto out;
            if (frames == BATCH_FRAMES) {
                virtio_queue_kick(vdev, queue); /* the rest after the loop looked around */
                goto out;
            }
            struct virtq_chain c = {.iov = p->tx_iov + 1, .iov_cap = TX_CHAIN_MAX_BUFS};
            enum virtq_pop_result res = virtq_pop(vq, &c);
            if (res == VIRTQ_EMPTY)
                break;
            if (res == VIRTQ_ERROR) {
                virtio_device_needs_reset(vdev, "malformed virtqueue (see above)");
                goto out;
            }
            tx_frame(net, p, &c, features);
            irq |= virtq_push(vq, c.head, 0);
            frames++;
        }
        if (!virtq_enable_notify(vq))
            break;
    }
out:
    if (irq)
        virtio_queue_interrupt(vdev, queue);
}

/* ---- Control queue ---- */

static uint8_t ctrl_refuse(struct virtio_net *net, uint8_t class, uint8_t cmd, const char *why)
{
    log_limited(&net->vdev.dev_log, LOG_DEBUG, "%s: control command %u.%u refused: %s",
                net->vdev.name, class, cmd, why);
    return VIRTIO_NET_ERR;
}

/* Reads a MAC table (a le32 count, then the entries) at *off of the
 * command; false if it runs past `end`. */
static bool read_mac_table(const struct virtq_chain *c, uint64_t *off, uint64_t end,
                           struct mac_table *t)
{
    uint8_t count_le[4];
    if (end - *off < sizeof(count_le))
        return false;
    iov_to_buf(c->iov, c->nout, *off, count_le, sizeof(count_le));
    *off += sizeof(count_le);
    uint32_t count = le32_load(count_le);
    uint64_t bytes = (uint64_t)count * ETH_ADDR_LEN;
    if (end - *off < bytes)
        return false;
    memset(t, 0, sizeof(*t));
    if (count > VIRTIO_NET_MAC_TABLE_MAX) {
        t->overflow = true;
    } else {
        t->count = count;
        iov_to_buf(c->iov, c->nout, *off, t->addr, bytes);
    }
    *off += bytes;
    return true;
}

static uint8_t ctrl_command(struct virtio_net *net, struct virtq_chain *c)
{
    uint64_t features = virtio_features(&net->vdev);
    uint8_t head[2] = {0xff, 0xff};
    if (c->out_bytes < sizeof(head))
        return ctrl_refuse(net, 0xff, 0xff, "shorter than its class and command");
    iov_to_buf(c->iov, c->nout, 0, head, sizeof(head));
    uint8_t class = head[0], cmd = head[1];
    uint64_t dlen = c->out_bytes - sizeof(head);

    switch (class) {
    case VIRTIO_NET_CTRL_RX: {
        uint64_t need = cmd <= VIRTIO_NET_CTRL_RX_ALLMULTI ? F(VIRTIO_NET_F_CTRL_RX)
                                                           : F(VIRTIO_NET_F_CTRL_RX_EXTRA);
        uint8_t on = 0xff;
        if (cmd >= RX_MODES || !(features & need))
            return ctrl_refuse(net, class, cmd, "RX mode not offered or not negotiated");
        if (dlen != 1)
            return ctrl_refuse(net, class, cmd, "RX mode data is not one byte");
        iov_to_buf(c->iov, c->nout, sizeof(head), &on, 1);
        if (on > 1)
            return ctrl_refuse(net, class, cmd, "RX mode value neither 0 nor 1");
        pthread_mutex_lock(&net->filter_lock);
        net->filter.rx_mode[cmd] = on;
        atomic_store(&net->filtering, !net->filter.rx_mode[RX_PROMISC]);
        pthread_mutex_unlock(&net->filter_lock);
        backend_filter_sync(net);
        return VIRTIO_NET_OK;
    }
    case VIRTIO_NET_CTRL_MAC:
        if (cmd == VIRTIO_NET_CTRL_MAC_TABLE_SET) {
            if (!(features & F(VIRTIO_NET_F_CTRL_RX)))
                return ctrl_refuse(net, class, cmd, "CTRL_RX not negotiated");
            struct mac_table uni, multi;
            uint64_t off = sizeof(head);
            if (!read_mac_table(c, &off, c->out_bytes, &uni) ||
                !read_mac_table(c, &off, c->out_bytes, &multi) || off != c->out_bytes)
                return ctrl_refuse(net, class, cmd, "MAC tables do not match the command length");
            pthread_mutex_lock(&net->filter_lock);
            net->filter.uni = uni;
            net->filter.multi = multi;
            pthread_mutex_unlock(&net->filter_lock);
            backend_filter_sync(net);
            return VIRTIO_NET_OK;
        }
        if (cmd == VIRTIO_NET_CTRL_MAC_ADDR_SET) {
            uint8_t mac[ETH_ADDR_LEN];
            if (!(features & F(VIRTIO_NET_F_CTRL_MAC_ADDR)))
                return ctrl_refuse(net, class, cmd, "CTRL_MAC_ADDR not negotiated");
            if (dlen != sizeof(mac))
                return ctrl_refuse(net, class, cmd, "address is not 6 bytes");
            iov_to_buf(c->iov, c->nout, sizeof(head), mac, sizeof(mac));
            if (is_multicast(mac))
                return ctrl_refuse(net, class, cmd, "a multicast address");
            /* The driver's own change: no configuration-change interrupt. */
            pthread_mutex_lock(&net->vdev.config_lock);
            memcpy(net->vdev.config + CONFIG_MAC, mac, sizeof(mac));
            pthread_mutex_lock(&net->filter_lock);
            memcpy(net->filter.mac, mac, sizeof(mac));
            pthread_mutex_unlock(&net->filter_lock);
            pthread_mutex_unlock(&net->vdev.config_lock);
            backend_filter_sync(net);
            return VIRTIO_NET_OK;
        }
        return ctrl_refuse(net, class, cmd, "unknown MAC command");
    case VIRTIO_NET_CTRL_MQ: {
        uint8_t n_le[2];
        if (cmd != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET || !(features & F(VIRTIO_NET_F_MQ)))
            return ctrl_refuse(net, class, cmd, "MQ command not offered or not negotiated");
        if (dlen != sizeof(n_le))
            return ctrl_refuse(net, class, cmd, "pair count is not 2 bytes");
        iov_to_buf(c->iov, c->nout, sizeof(head), n_le, sizeof(n_le));
        unsigned n = le16_load(n_le);
        if (n < 1 || n > net->max_pairs)
            return ctrl_refuse(net, class, cmd, "pair count outside 1..max_virtqueue_pairs");
        if (net->be->enable_queue_pairs(net->be_opaque, n) < 0)
            return ctrl_refuse(net, class, cmd, "the back end could not enable the pairs");
        pthread_mutex_lock(&net->filter_lock);
        net->active_pairs = n;
        pthread_mutex_unlock(&net->filter_lock);
        return VIRTIO_NET_OK;
    }
    default:
        return ctrl_refuse(net, class, cmd, "unsupported class");
    }
}

static void ctrl_process(struct virtio_net *net, unsigned queue)
{
    struct virtio_device *vdev = &net->vdev;
    struct virtq *vq = virtio_queue_ring(vdev, queue);
    bool irq = false;
    for (;;) {
        virtq_disable_notify(vq);
        for (;;) {
            if (!virtio_queue_running(vdev, queue))
                goto out;
            struct virtq_chain c = {.iov = net->ctrl_iov, .iov_cap = CTRL_CHAIN_MAX_BUFS};
            enum virtq_pop_result res = virtq_pop(vq, &c);
            if (res == VIRTQ_EMPTY)
                break;
            if (res == VIRTQ_ERROR) {
                virtio_device_needs_reset(vdev, "malformed virtqueue (see above)");
                goto out;
            }
            uint32_t len = 0;
            if (c.nin == 0) {
                log_limited(&vdev->dev_log, LOG_WARNING,
                            "%s: control command without a writable ack byte; returned unanswered",
                            vdev->name);
            } else {
                uint8_t ack = ctrl_command(net, &c);
                struct iovec *last = &c.iov[c.nout + c.nin - 1];
                __atomic_store_n((uint8_t *)last->iov_base + last->iov_len - 1, ack,
                                 __ATOMIC_RELAXED);
                len = 1;
            }
            irq |= virtq_push(vq, c.head, len);
        }
        if (!virtq_enable_notify(vq))
            break;
    }
out:
    if (irq)
        virtio_queue_interrupt(vdev, queue);
}

/* ---- Device ops ---- */

static bool net_features_ok(struct virtio_device *vdev, uint64_t f)
{
    /* The dependencies of VIRTIO 1.x 5.1.3.1. */
    bool guest_tso = f & (F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6));
    bool host_tso = f & (F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6));
    bool ctrl_users = f & (F(VIRTIO_NET_F_CTRL_RX) | F(VIRTIO_NET_F_CTRL_RX_EXTRA) |
                           F(VIRTIO_NET_F_CTRL_MAC_ADDR) | F(VIRTIO_NET_F_MQ));
    return !(guest_tso && !(f & F(VIRTIO_NET_F_GUEST_CSUM))) &&
           !((f & F(VIRTIO_NET_F_GUEST_ECN)) && !guest_tso) &&
           !(host_tso && !(f & F(VIRTIO_NET_F_CSUM))) &&
           !((f & F(VIRTIO_NET_F_HOST_ECN)) && !host_tso) &&
           !(ctrl_users && !(f & F(VIRTIO_NET_F_CTRL_VQ))) &&
           !((f & F(VIRTIO_NET_F_CTRL_RX_EXTRA)) && !(f & F(VIRTIO_NET_F_CTRL_RX)));
}

/* Tells the back end the header length and offloads for the negotiated
 * features, once per feature set. */
static int apply_features(struct virtio_net *net, uint64_t features)
{
    int err = 0;
    pthread_mutex_lock(&net->apply_lock);
    if (!net->applied_valid || net->applied_features != features) {
        if (net->be->set_vnet_hdr_len(net->be_opaque, hdr_len(features)) < 0 ||
            net->be->set_offloads(net->be_opaque, features) < 0) {
            log_error("%s: the back end refused header length %u or offloads 0x%llx",
                      net->vdev.name, hdr_len(features), (unsigned long long)features);
            err = -1;
        } else {
            net->applied_valid = true;
            net->applied_features = features;
        }
    }
    pthread_mutex_unlock(&net->apply_lock);
    return err;
}

/* ---- vhost: the data queues in the kernel ---- */

/* The data queue's engine ring, or NULL on the userspace path. */
static struct vhost_ring *vhost_ring_of(struct virtio_net *net, unsigned queue)
{
    unsigned pair = 0;
    enum queue_role role = queue_role(net, queue, &pair);
    if (!net->vhost || (role != ROLE_RX && role != ROLE_TX))
        return NULL;
    return &net->pairs[pair].vhost[role == ROLE_TX];
}

/* The engine completed chains: its interrupt, through the transport. */
static void vhost_call(void *opaque, uint32_t events)
{
    (void)events;
    struct vhost_ring *r = opaque;
    uint64_t count;
    if (read(r->call_fd, &count, sizeof(count)) == sizeof(count))
        virtio_queue_interrupt(&r->net->vdev, r->queue);
}

/* The MSI-X vector's own eventfd, so KVM injects without us; INTx or no
 * vector: our relay. */
static int vhost_call_fd(struct virtio_net *net, struct vhost_ring *r)
{
    int fd = virtio_queue_irqfd(&net->vdev, r->queue);
    return fd >= 0 ? fd : r->call_fd;
}

static int vhost_start(struct virtio_net *net, struct vhost_ring *r)
{
    struct virtio_device *vdev = &net->vdev;
    struct virtq *vq = virtio_queue_ring(vdev, r->queue);
    unsigned pair = r->queue / 2, ring = r->queue % 2;
    struct vnet_pair *p = &net->pairs[pair];
    uint64_t features = virtio_features(vdev);
    int err = 0;
    if (!p->vhost_features_valid || p->vhost_features != features) {
        err = net->vhost->set_features(net->vhost_opaque, pair, features);
        p->vhost_features_valid = err == 0;
        p->vhost_features = features;
    }
    struct virtio_net_ring desc = {
        .size = vq->size,
        .last_avail = vq->last_avail,
        .desc = vq->desc,
        .avail = vq->avail,
        .used = vq->used,
        .kick_fd = virtio_queue_hand_off(vdev, r->queue),
        .call_fd = vhost_call_fd(net, r),
    };
    if (!err)
        err = net->vhost->start_ring(net->vhost_opaque, pair, ring, &desc);
    if (err) {
        log_error("%s: vhost-net could not start queue %u: %s", vdev->name, r->queue,
                  strerror(-err));
        return -1;
    }
    r->started = true;
    virtio_queue_kick(vdev, r->queue); /* chains posted before the start */
    return 0;
}

/* The engine stops where it is; our ring positions follow it. */
static void vhost_stop(struct virtio_net *net, struct vhost_ring *r)
{
    if (!r->started)
        return;
    uint16_t last_avail = 0;
    int err = net->vhost->stop_ring(net->vhost_opaque, r->queue / 2, r->queue % 2, &last_avail);
    if (err)
        log_error("%s: vhost-net did not stop queue %u cleanly: %s", net->vdev.name, r->queue,
                  strerror(-err));
    virtio_queue_sync(&net->vdev, r->queue, last_avail);
    r->started = false;
}

static int vhost_activate(struct virtio_net *net, struct vhost_ring *r)
{
    struct io_loop *loop = virtio_queue_loop(&net->vdev, r->queue);
    io_loop_pause(loop);
    int err = r->call_watch.fd >= 0
                  ? 0
                  : io_loop_watch(loop, &r->call_watch, r->call_fd, EPOLLIN, vhost_call, r);
    io_loop_resume(loop);
    if (err < 0)
        return -1;
    /* Paused (a state load): resume starts the engine. */
    return virtio_device_paused(&net->vdev) ? 0 : vhost_start(net, r);
}

static void vhost_quiesce(struct virtio_net *net, struct vhost_ring *r)
{
    vhost_stop(net, r);
    if (r->call_watch.fd >= 0)
        io_loop_unwatch(virtio_queue_loop(&net->vdev, r->queue), &r->call_watch);
    virtio_queue_take_back(&net->vdev, r->queue);
}

static int net_activate(struct virtio_device *vdev, unsigned queue)
{
    struct virtio_net *net = net_of(vdev);
    unsigned pair = 0;
    enum queue_role role = queue_role(net, queue, &pair);
    if (role == ROLE_UNUSED)
        return 0;
    if (role == ROLE_RX) {
        struct vnet_pair *p = &net->pairs[pair];
        p->rx_nheld = p->rx_niov = 0;
        p->rx_offered = 0;
    }
    /* The back end is watched from the activation kick on. */
    if (apply_features(net, virtio_features(vdev)) < 0)
        return -1;
    struct vhost_ring *r = vhost_ring_of(net, queue);
    return r ? vhost_activate(net, r) : 0;
}

/* Pause: the engine stops, so the saved ring positions are final. */
static void net_drain(struct virtio_device *vdev, unsigned queue)
{
    struct virtio_net *net = net_of(vdev);
    struct vhost_ring *r = vhost_ring_of(net, queue);
    if (r)
        vhost_stop(net, r);
}

static void net_restart(struct virtio_device *vdev, unsigned queue)
{
    struct virtio_net *net = net_of(vdev);
    struct vhost_ring *r = vhost_ring_of(net, queue);
    if (r && !r->started && vhost_start(net, r) < 0)
        virtio_device_needs_reset(vdev, "vhost-net could not restart a queue");
}

/* A running engine signals the queue's new vector from now on (a stopped
 * one fetches it when it starts). */
static void net_interrupt_moved(struct virtio_device *vdev, unsigned queue)
{
    struct virtio_net *net = net_of(vdev);
    struct vhost_ring *r = vhost_ring_of(net, queue);
    if (!r || !r->started)
        return;
    int err = net->vhost->set_call(net->vhost_opaque, queue / 2, queue % 2, vhost_call_fd(net, r));
    if (err) {
        log_error("%s: vhost-net could not move queue %u's interrupt: %s", vdev->name, queue,
                  strerror(-err));
        virtio_device_needs_reset(vdev, "vhost-net could not move a queue's interrupt");
    }
}

static void net_queue_notify(struct virtio_device *vdev, unsigned queue)
{
    struct virtio_net *net = net_of(vdev);
    unsigned pair = 0;
    enum queue_role role = queue_role(net, queue, &pair);
    if (net->vhost && (role == ROLE_RX || role == ROLE_TX))
        return; /* the engine's (a kick that raced the hand-off) */
    switch (role) {
    case ROLE_RX:
        rx_process(net, &net->pairs[pair], queue);
        return;
    case ROLE_TX:
        tx_process(net, &net->pairs[pair], queue);
        return;
    case ROLE_CTRL:
        ctrl_process(net, queue);
        return;
    default:
        log_limited(&vdev->dev_log, LOG_DEBUG,
                    "%s: notify for queue %u, unused with the negotiated features; ignored",
                    vdev->name, queue);
        return;
    }
}

/* Stops watching the back end (the queue's loop parked while we do). */
static void net_quiesce(struct virtio_device *vdev, unsigned queue)
{
    struct virtio_net *net = net_of(vdev);
    struct vhost_ring *r = vhost_ring_of(net, queue);
    if (r) {
        vhost_quiesce(net, r);
        return;
    }
    if (queue % 2 || queue / 2 >= net->max_pairs)
        return;
    struct vnet_pair *p = &net->pairs[queue / 2];
    struct io_loop *loop = virtio_queue_loop(vdev, queue);
    io_loop_pause(loop);
    if (p->rx_watch.fd >= 0)
        io_loop_unwatch(loop, &p->rx_watch);
    atomic_store(&p->rx_watched, false);
    io_loop_resume(loop);
    p->rx_nheld = p->rx_niov = 0;
    p->rx_offered = 0;
}

static void net_reset(struct virtio_device *vdev)
{
    struct virtio_net *net = net_of(vdev);
    pthread_mutex_lock(&vdev->config_lock);
    memcpy(vdev->config + CONFIG_MAC, net->perm_mac, ETH_ADDR_LEN);
    pthread_mutex_lock(&net->filter_lock);
    filter_power_on(net, &net->filter);
    atomic_store(&net->filtering, false);
    bool pairs_changed = net->active_pairs != 1;
    net->active_pairs = 1;
    pthread_mutex_unlock(&net->filter_lock);
    pthread_mutex_unlock(&vdev->config_lock);
    pthread_mutex_lock(&net->apply_lock);
    net->applied_valid = false;
    pthread_mutex_unlock(&net->apply_lock);
    for (unsigned i = 0; i < net->max_pairs; i++)
        net->pairs[i].vhost_features_valid = false;
    backend_filter_sync(net);
    if (pairs_changed && net->be->enable_queue_pairs(net->be_opaque, 1) < 0)
        log_error("%s: the back end could not go back to one queue pair", vdev->name);
}

/* Legacy drivers set the MAC through the configuration space. */
static void net_write_config(struct virtio_device *vdev, unsigned offset, unsigned size,
                             uint64_t value)
{
    struct virtio_net *net = net_of(vdev);
    if (virtio_features(vdev) & F(VIRTIO_F_VERSION_1) || offset >= CONFIG_MAC + ETH_ADDR_LEN ||
        size > CONFIG_MAC + ETH_ADDR_LEN - offset) {
        log_limited(&vdev->log, LOG_DEBUG,
                    "%s: configuration write at 0x%x (%u bytes) ignored: only a legacy driver "
                    "writes the MAC",
                    vdev->name, offset, size);
        return;
    }
    le_store(vdev->config + offset, size, value);
    pthread_mutex_lock(&net->filter_lock);
    memcpy(net->filter.mac, vdev->config + CONFIG_MAC, ETH_ADDR_LEN);
    pthread_mutex_unlock(&net->filter_lock);
    backend_filter_sync(net);
}

static void net_describe_queue(struct virtio_device *vdev, unsigned queue, char *buf, size_t cap)
{
    struct virtio_net *net = net_of(vdev);
    unsigned pair = 0;
    struct vhost_ring *r = vhost_ring_of(net, queue);
    if (r) {
        snprintf(buf, cap, "%s of pair %u, run by vhost-net (%s)",
                 queue % 2 ? "transmit" : "receive", queue / 2, r->started ? "started" : "stopped");
        return;
    }
    switch (queue_role(net, queue, &pair)) {
    case ROLE_RX:
        snprintf(buf, cap,
                 "receive of pair %u (back end %s); device: %llu frames, %llu dropped, %llu "
                 "filtered",
                 pair, atomic_load(&net->pairs[pair].rx_watched) ? "watched" : "not watched",
                 (unsigned long long)atomic_load(&net->rx_frames),
                 (unsigned long long)atomic_load(&net->rx_dropped),
                 (unsigned long long)atomic_load(&net->rx_filtered));
        return;
    case ROLE_TX:
        snprintf(buf, cap, "transmit of pair %u; device: %llu frames, %llu dropped", pair,
                 (unsigned long long)atomic_load(&net->tx_frames),
                 (unsigned long long)atomic_load(&net->tx_dropped));
        return;
    case ROLE_CTRL:
        snprintf(buf, cap, "control queue");
        return;
    default:
        snprintf(buf, cap, "unused with the negotiated features");
        return;
    }
}

static void mac_table_fields(struct snap *s, const char *name, struct mac_table *t)
{
    size_t len = (size_t)t->count * ETH_ADDR_LEN;
    snap_enter(s, "%s", name);
    snap_u32(s, "count", &t->count);
    snap_check(s, t->count <= VIRTIO_NET_MAC_TABLE_MAX, "count",
               "more entries than the table holds");
    snap_var_bytes(s, "addr", t->addr, &len, sizeof(t->addr));
    snap_check(s, len == (size_t)t->count * ETH_ADDR_LEN, "count",
               "does not match the addresses saved");
    snap_bool(s, "overflow", &t->overflow);
    snap_check(s, !t->overflow || t->count == 0, "overflow", "set with entries kept");
    snap_leave(s);
}

/* The configuration (MAC, link status, pairs), the RX filter and the pairs
 * in use. Called paused: no frame is in flight. */
static int net_state(struct virtio_device *vdev, struct snap *s)
{
    struct virtio_net *net = net_of(vdev);
    bool loading = snap_loading(s);
    uint16_t max_pairs = (uint16_t)net->max_pairs, status, active;
    uint8_t mac[ETH_ADDR_LEN];
    struct vnet_filter f;
    pthread_mutex_lock(&vdev->config_lock);
    memcpy(mac, vdev->config + CONFIG_MAC, ETH_ADDR_LEN);
    status = le16_load(vdev->config + CONFIG_STATUS);
    pthread_mutex_lock(&net->filter_lock);
    f = net->filter;
    active = (uint16_t)net->active_pairs;
    pthread_mutex_unlock(&net->filter_lock);
    pthread_mutex_unlock(&vdev->config_lock);

    snap_u16(s, "max_queue_pairs", &max_pairs);
    snap_check(s, max_pairs == net->max_pairs, "max_queue_pairs",
               "another NIC (its maximum of queue pairs differs)");
    snap_bytes(s, "mac", mac, sizeof(mac));
    snap_check(s, !is_multicast(mac), "mac", "a multicast address");
    snap_u16(s, "status", &status);
    snap_check(s, (status & ~VIRTIO_NET_S_LINK_UP) == 0, "status", "bits other than LINK_UP");
    for (unsigned i = 0; i < RX_MODES; i++)
        snap_bool(s, rx_mode_names[i], &f.rx_mode[i]);
    mac_table_fields(s, "uni", &f.uni);
    mac_table_fields(s, "multi", &f.multi);
    snap_u16(s, "active_pairs", &active);
    bool mq = virtio_features(vdev) & F(VIRTIO_NET_F_MQ);
    snap_check(s, active >= 1 && active <= (mq ? net->max_pairs : 1), "active_pairs",
               "outside 1..max_virtqueue_pairs (1 without MQ)");
    if (!loading || snap_error(s))
        return snap_error(s);

    memcpy(f.mac, mac, sizeof(mac));
    pthread_mutex_lock(&vdev->config_lock);
    memcpy(vdev->config + CONFIG_MAC, mac, sizeof(mac));
    le16_store(vdev->config + CONFIG_STATUS, status);
    pthread_mutex_lock(&net->filter_lock);
    net->filter = f;
    atomic_store(&net->filtering, !f.rx_mode[RX_PROMISC]);
    bool pairs_changed = net->active_pairs != active;
    net->active_pairs = active;
    pthread_mutex_unlock(&net->filter_lock);
    pthread_mutex_unlock(&vdev->config_lock);
    backend_filter_sync(net);
    if (pairs_changed && net->be->enable_queue_pairs(net->be_opaque, active) < 0)
        snap_fail(s, "active_pairs", "the back end could not enable %u pairs", active);
    return snap_error(s);
}

static void close_call_fds(struct vnet_pair *pairs, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        for (unsigned k = 0; k < 2; k++)
            if (pairs[i].vhost[k].call_fd >= 0)
                close(pairs[i].vhost[k].call_fd);
}

static void net_destroy(struct virtio_device *vdev)
{
    struct virtio_net *net = net_of(vdev);
    close_call_fds(net->pairs, net->max_pairs);
    pthread_mutex_destroy(&net->apply_lock);
    pthread_mutex_destroy(&net->filter_lock);
    pthread_mutex_destroy(&net->link_lock);
    free(net->pairs);
    free(net);
}

static const struct virtio_device_ops net_ops = {
    .kind = "net",
    .features_ok = net_features_ok,
    .activate = net_activate,
    .queue_notify = net_queue_notify,
    .drain = net_drain,
    .restart = net_restart,
    .quiesce = net_quiesce,
    .interrupt_moved = net_interrupt_moved,
    .reset = net_reset,
    .write_config = net_write_config,
    .state = net_state,
    .describe_queue = net_describe_queue,
    .destroy = net_destroy,
};

/* ---- Setup and the public calls ---- */

static bool queue_size_ok(uint16_t n)
{
    return n && !(n & (n - 1)) && n <= VIRTQ_MAX_SIZE;
}

static int prepare_fd(const char *name, unsigned pair, int fd, bool *is_socket)
{
    struct stat st;
    errno = EBADF; /* for a negative fd */
    int fl = fd >= 0 ? fcntl(fd, F_GETFL) : -1;
    if (fl < 0 || fstat(fd, &st) < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        log_error("%s: pair %u: back end descriptor %d unusable: %s", name, pair, fd,
                  strerror(errno));
        return -1;
    }
    *is_socket = S_ISSOCK(st.st_mode);
    return 0;
}

struct virtio_device *virtio_net_create(const struct virtio_net_params *p)
{
    const char *name = p->name ? p->name : "virtio-net";
    unsigned pairs = p->max_queue_pairs ? p->max_queue_pairs : 1;
    uint16_t rxq = p->rx_queue_size ? p->rx_queue_size : VIRTIO_NET_RX_QUEUE_SIZE;
    uint16_t txq = p->tx_queue_size ? p->tx_queue_size : VIRTIO_NET_TX_QUEUE_SIZE;
    if (!p->mem || !p->fds || pairs > VIRTIO_NET_MAX_PAIRS || !queue_size_ok(rxq) ||
        !queue_size_ok(txq) || !p->backend || !p->backend->set_vnet_hdr_len ||
        !p->backend->set_offloads || !p->backend->enable_queue_pairs || is_multicast(p->mac) ||
        (p->vhost && (!p->vhost->set_features || !p->vhost->start_ring || !p->vhost->stop_ring))) {
        log_error("%s: invalid virtio-net parameters (%u queue pairs, queues of %u and %u)", name,
                  pairs, rxq, txq);
        return NULL;
    }
    struct virtio_net *net = calloc(1, sizeof(*net));
    struct vnet_pair *pa = calloc(pairs, sizeof(*pa));
    if (!net || !pa) {
        log_error("%s: out of memory", name);
        free(net);
        free(pa);
        return NULL;
    }
    for (unsigned i = 0; i < pairs; i++) {
        if (prepare_fd(name, i, p->fds[i], &pa[i].is_socket) < 0) {
            free(net);
            free(pa);
            return NULL;
        }
        pa[i].net = net;
        pa[i].index = i;
        pa[i].fd = p->fds[i];
        io_watch_init(&pa[i].rx_watch);
        for (unsigned k = 0; k < 2; k++) {
            pa[i].vhost[k] = (struct vhost_ring){.net = net, .queue = 2 * i + k, .call_fd = -1};
            io_watch_init(&pa[i].vhost[k].call_watch);
        }
    }
    for (unsigned i = 0; i < pairs && p->vhost; i++) {
        for (unsigned k = 0; k < 2; k++) {
            if ((pa[i].vhost[k].call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
                log_error("%s: eventfd: %s", name, strerror(errno));
                close_call_fds(pa, pairs);
                free(net);
                free(pa);
                return NULL;
            }
        }
    }
    net->pairs = pa;
    net->max_pairs = pairs;
    memcpy(net->perm_mac, p->mac, ETH_ADDR_LEN);
    net->be = p->backend;
    net->be_opaque = p->backend_opaque;
    net->vhost = p->vhost;
    net->vhost_opaque = p->vhost_opaque;
    net->active_pairs = 1;
    filter_power_on(net, &net->filter);

    uint64_t features =
        F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_STATUS) | F(VIRTIO_NET_F_CSUM) |
        F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6) |
        F(VIRTIO_NET_F_HOST_ECN) | F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6) |
        F(VIRTIO_NET_F_GUEST_ECN) | F(VIRTIO_NET_F_MRG_RXBUF) | F(VIRTIO_NET_F_CTRL_VQ) |
        F(VIRTIO_NET_F_CTRL_RX) | F(VIRTIO_NET_F_CTRL_RX_EXTRA) | F(VIRTIO_NET_F_CTRL_MAC_ADDR);
    if (pairs > 1)
        features |= F(VIRTIO_NET_F_MQ);
    uint16_t max_size = rxq > txq ? rxq : txq;
    if (max_size < VIRTIO_NET_CTRL_QUEUE_SIZE)
        max_size = VIRTIO_NET_CTRL_QUEUE_SIZE;
    struct virtio_device_params vdp = {
        .name = name,
        .device_type = VIRTIO_ID_NET,
        .num_queues = 2 * pairs + 1,
        .queue_size = max_size,
        .features = features,
        .config_size = CONFIG_SIZE,
        .ops = &net_ops,
        .mem = p->mem,
    };
    if (virtio_device_init(&net->vdev, &vdp) < 0) {
        close_call_fds(pa, pairs);
        free(pa);
        free(net);
        return NULL;
    }
    /* What the engine cannot run is not offered. */
    if (p->vhost)
        net->vdev.device_features &= ~(VHOST_RING_FEATURES & ~p->vhost_features);
    pthread_mutex_init(&net->apply_lock, NULL);
    pthread_mutex_init(&net->filter_lock, NULL);
    pthread_mutex_init(&net->link_lock, NULL);
    for (unsigned i = 0; i < 2 * pairs + 1; i++) {
        uint16_t size = i == 2 * pairs ? VIRTIO_NET_CTRL_QUEUE_SIZE : i % 2 ? txq : rxq;
        if (virtio_queue_set_max_size(&net->vdev, i, size) < 0) {
            virtio_device_destroy(&net->vdev);
            return NULL;
        }
    }
    uint8_t *cfg = net->vdev.config;
    memcpy(cfg + CONFIG_MAC, p->mac, ETH_ADDR_LEN);
    le16_store(cfg + CONFIG_STATUS, VIRTIO_NET_S_LINK_UP);
    le16_store(cfg + CONFIG_MAX_PAIRS, (uint16_t)pairs);
    return &net->vdev;
}

void virtio_net_set_link(struct virtio_device *vdev, bool up)
{
    struct virtio_net *net = net_of(vdev);
    pthread_mutex_lock(&net->link_lock);
    pthread_mutex_lock(&vdev->config_lock);
    uint16_t status = le16_load(vdev->config + CONFIG_STATUS);
    pthread_mutex_unlock(&vdev->config_lock);
    uint16_t want = up ? status | VIRTIO_NET_S_LINK_UP : status & ~VIRTIO_NET_S_LINK_UP;
    if (want != status) {
        uint8_t le[2];
        le16_store(le, want);
        virtio_config_update(vdev, CONFIG_STATUS, le, sizeof(le));
        log_info("%s: link %s", vdev->name, up ? "up" : "down");
    }
    pthread_mutex_unlock(&net->link_lock);
}

void virtio_net_get_stats(struct virtio_device *vdev, struct virtio_net_stats *out)
{
    struct virtio_net *net = net_of(vdev);
    *out = (struct virtio_net_stats){
        .tx_frames = atomic_load(&net->tx_frames),
        .tx_dropped = atomic_load(&net->tx_dropped),
        .rx_frames = atomic_load(&net->rx_frames),
        .rx_dropped = atomic_load(&net->rx_dropped),
        .rx_filtered = atomic_load(&net->rx_filtered),
    };
}
