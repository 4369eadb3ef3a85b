/* pci-virtio-viona's device (virtio-net) over SOCK_SEQPACKET socket pairs
 * standing in for the TAP (one frame per read and write, header in
 * front): configuration and features, TX frames byte for byte (direct,
 * split and indirect chains), RX frames byte for byte with and without
 * MRG_RXBUF (a frame over three buffers), RX with no buffers posted, the
 * control queue (MQ, RX modes, MAC table and address filtering, garbage),
 * link status with its configuration interrupt, a legacy driver's 10-byte
 * header, hostile TX frames and broken chains, state, and the hand-off of
 * the data queues to a (fake) vhost engine with the RX filter moved to the
 * back end. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <linux/virtio_net.h>

#include "common/bytes.h"
#include "core/bus.h"
#include "devices/device.h"
#include "pci/pci.h"
#include "virtio/virtio_net.h"
#include "virtio/virtio_pci.h"

#include "support/fake_mem.h"
#include "support/poll.h"
#include "support/state.h"
#include "support/vp_regs.h"
#include "support/vring.h"

#define RAM_SIZE 0x400000ull
#define NQ 5 /* rx0 tx0 rx1 tx1 ctrl */
#define RING_SIZE 16
#define HL 12 /* header length with VERSION_1 */

#define F(bit) (1ull << (bit))
#define F_V1 F(VIRTIO_F_VERSION_1)
#define BASE_FEATURES                                                                              \
    (F_V1 | F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_STATUS) | F(VIRTIO_NET_F_CSUM) |                  \
     F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6) |          \
     F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_CTRL_VQ) | F(VIRTIO_NET_F_CTRL_RX) |              \
     F(VIRTIO_NET_F_CTRL_MAC_ADDR) | F(VIRTIO_NET_F_MQ))
#define MRG_FEATURES (BASE_FEATURES | F(VIRTIO_NET_F_MRG_RXBUF))

static const uint8_t own_mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};

/* ---- The back end's callbacks ---- */

static unsigned be_hdr_len, be_pairs, be_pairs_calls;
static uint64_t be_offloads;

static int be_set_hdr_len(void *opaque, unsigned len)
{
    __atomic_store_n(&be_hdr_len, len, __ATOMIC_SEQ_CST);
    return 0;
}

static int be_set_offloads(void *opaque, uint64_t features)
{
    __atomic_store_n(&be_offloads, features, __ATOMIC_SEQ_CST);
    return 0;
}

static int be_enable_pairs(void *opaque, unsigned n)
{
    __atomic_store_n(&be_pairs, n, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&be_pairs_calls, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static uint8_t be_filter[140][6];
static unsigned be_filter_count, be_filter_calls;
static bool be_filter_allmulti;

static int be_set_rx_filter(void *opaque, const uint8_t (*addrs)[6], unsigned count,
                            bool all_multicast)
{
    assert_true(count <= ARRAY_LEN(be_filter));
    if (count)
        memcpy(be_filter, addrs, count * 6);
    be_filter_count = count;
    be_filter_allmulti = all_multicast;
    be_filter_calls++;
    return 0;
}

static const struct virtio_net_backend_ops be_ops = {
    .set_vnet_hdr_len = be_set_hdr_len,
    .set_offloads = be_set_offloads,
    .enable_queue_pairs = be_enable_pairs,
    .set_rx_filter = be_set_rx_filter,
};

/* ---- A fake vhost engine: records what the device asks of it ---- */

struct fake_ring {
    bool started;
    unsigned starts, stops;
    struct virtio_net_ring r; /* the last start */
    uint16_t stop_at;         /* what stop_ring reports as the next chain */
};

static struct fake_ring fake_rings[2][2]; /* [pair][ring] */
static uint64_t fake_features[2];
static unsigned fake_feature_calls;

static int fake_set_features(void *opaque, unsigned pair, uint64_t features)
{
    assert_true(pair < 2);
    assert_false(fake_rings[pair][0].started || fake_rings[pair][1].started);
    fake_features[pair] = features;
    fake_feature_calls++;
    return 0;
}

static int fake_start_ring(void *opaque, unsigned pair, unsigned ring,
                           const struct virtio_net_ring *r)
{
    assert_true(pair < 2 && ring < 2);
    struct fake_ring *f = &fake_rings[pair][ring];
    assert_false(f->started);
    f->started = true;
    f->starts++;
    f->r = *r;
    return 0;
}

static int fake_stop_ring(void *opaque, unsigned pair, unsigned ring, uint16_t *last_avail)
{
    struct fake_ring *f = &fake_rings[pair][ring];
    assert_true(f->started);
    f->started = false;
    f->stops++;
    *last_avail = f->stop_at;
    return 0;
}

static unsigned fake_set_calls;

static int fake_set_call(void *opaque, unsigned pair, unsigned ring, int call_fd)
{
    struct fake_ring *f = &fake_rings[pair][ring];
    assert_true(f->started);
    f->r.call_fd = call_fd;
    fake_set_calls++;
    return 0;
}

static const struct virtio_net_vhost_ops fake_vhost_ops = {
    .set_features = fake_set_features,
    .start_ring = fake_start_ring,
    .stop_ring = fake_stop_ring,
    .set_call = fake_set_call,
};

/* ---- Devices under test ---- */

struct tdev {
    int peer[2]; /* our ends of the pairs' sockets */
    int dev_fd[2];
    struct virtio_device *vdev;
    struct virtio_pci *vp;
    struct vring rings[NQ];
    uint16_t next_desc[NQ];
    uint64_t next_buf;      /* bump allocator for buffers */
    uint64_t rx_posted[64]; /* queue 0's buffers in the order posted */
    unsigned rx_put, rx_get;
};

static struct bus pio, mmio;
static struct pci_bus pcibus;
static struct tdev dev;

static void fake_router(void *opaque, uint8_t devfn, unsigned pin, bool level)
{
}

static void fake_msi(void *opaque, uint64_t addr, uint32_t data)
{
}

/* An irqfd-capable sink, so MSI-X vectors have eventfds an engine can
 * signal; routes and bindings are not followed here (test_msix does). */
static int fake_gsis;

static int fake_route_add(void *opaque, uint64_t addr, uint32_t data)
{
    return 100 + fake_gsis++;
}

static int fake_route_update(void *opaque, int gsi, uint64_t addr, uint32_t data)
{
    return 0;
}

static void fake_route_remove(void *opaque, int gsi)
{
}

static int fake_irqfd(void *opaque, int fd, int gsi, bool assign)
{
    return 0;
}

/* Set by a test before tdev_create: the device runs its data queues there. */
static const struct virtio_net_vhost_ops *tdev_vhost;
static uint64_t tdev_vhost_features;

static void tdev_create(struct tdev *t, uint8_t slot)
{
    memset(t, 0, sizeof(*t));
    for (unsigned i = 0; i < 2; i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
        t->peer[i] = sv[0];
        t->dev_fd[i] = sv[1];
    }
    struct virtio_net_params p = {
        .name = "net0",
        .max_queue_pairs = 2,
        .fds = t->dev_fd,
        .rx_queue_size = 512,
        .tx_queue_size = 256,
        .backend = &be_ops,
        .vhost = tdev_vhost,
        .vhost_features = tdev_vhost_features,
        .mem = &fake_mem,
    };
    memcpy(p.mac, own_mac, 6);
    t->vdev = virtio_net_create(&p);
    assert_non_null(t->vdev);
    t->vp = virtio_pci_create(t->vdev, &(struct virtio_pci_params){
                                           .machine = NULL,
                                           .msix_sink = {.route_add = fake_route_add,
                                                         .route_update = fake_route_update,
                                                         .route_remove = fake_route_remove,
                                                         .irqfd = fake_irqfd,
                                                         .signal_msi = fake_msi},
                                       });
    assert_non_null(t->vp);
    assert_int_equal(pci_bus_add(&pcibus, &t->vp->pci, PCI_DEVFN(slot, 0)), 0);
    pci_device_config_write(&t->vp->pci, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    for (unsigned q = 0; q < NQ; q++) {
        uint64_t b = 0x100000 + q * 0x10000ull;
        t->rings[q] =
            (struct vring){.desc = b, .avail = b + 0x1000, .used = b + 0x2000, .size = RING_SIZE};
    }
    t->next_buf = 0x200000;
}

static void tdev_destroy(struct tdev *t)
{
    struct pci_device *pdev = &t->vp->pci;
    pdev->dev.ops->destroy(&pdev->dev);
    for (unsigned i = 0; i < 2; i++) {
        close(t->peer[i]);
        close(t->dev_fd[i]);
    }
}

static uint8_t isr_read(struct tdev *t)
{
    return (uint8_t)vp_bar_read(t->vp, VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_ISR_OFFSET, 1);
}

static uint64_t device_features(struct tdev *t)
{
    return vp_device_features(t->vp);
}

/* The modern interface to DRIVER_OK with `features` and every queue. */
static void bring_up(struct tdev *t, uint64_t features)
{
    vp_negotiate(t->vp, features);
    for (unsigned q = 0; q < NQ; q++) {
        struct vring *r = &t->rings[q];
        vring_clear(r);
        t->next_desc[q] = 0;
        vp_common_write(t->vp, VIRTIO_COMMON_Q_SELECT, 2, q);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_SIZE, 2, r->size);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_DESC, 8, r->desc);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_AVAIL, 8, r->avail);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_USED, 8, r->used);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_ENABLE, 2, 1);
    }
    vp_common_write(t->vp, VIRTIO_COMMON_STATUS, 1, 0x0f);
    assert_int_equal(vp_common_read(t->vp, VIRTIO_COMMON_STATUS, 1), 0x0f);
    t->next_buf = 0x200000;
    t->rx_put = t->rx_get = 0;
}

static void notify(struct tdev *t, unsigned q)
{
    vp_bar_write(t->vp, VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_NOTIFY_OFFSET + 4 * q, 2, q);
}

static uint64_t alloc_buf(struct tdev *t, uint64_t len)
{
    uint64_t gpa = t->next_buf;
    t->next_buf += (len + 0xfff) & ~0xfffull;
    assert_true(t->next_buf <= 0x380000);
    return gpa;
}

static uint16_t alloc_desc(struct tdev *t, unsigned q)
{
    return (uint16_t)(t->next_desc[q]++ % RING_SIZE);
}

/* Posts a TX frame (header + payload bytes) split into `parts`
 * descriptors; returns its head. */
static uint16_t post_tx(struct tdev *t, unsigned q, const uint8_t *bytes, uint32_t len,
                        unsigned parts)
{
    struct vring *r = &t->rings[q];
    uint64_t buf = alloc_buf(t, len);
    memcpy(mem_host(buf), bytes, len);
    uint16_t head = alloc_desc(t, q), d = head;
    uint32_t done = 0;
    for (unsigned i = 0; i < parts; i++) {
        uint32_t n = i + 1 == parts ? len - done : len / parts;
        uint16_t next = i + 1 == parts ? 0 : alloc_desc(t, q);
        vring_set_desc(r, d, buf + done, n, i + 1 == parts ? 0 : VIRTQ_DESC_F_NEXT, next);
        done += n;
        d = next;
    }
    vring_avail_add(r, head);
    return head;
}

/* Posts one writable RX buffer of len bytes; returns its guest address. */
static uint64_t post_rx(struct tdev *t, unsigned q, uint32_t len)
{
    struct vring *r = &t->rings[q];
    uint64_t buf = alloc_buf(t, len);
    memset(mem_host(buf), 0xee, len);
    uint16_t d = alloc_desc(t, q);
    vring_set_desc(r, d, buf, len, VIRTQ_DESC_F_WRITE, 0);
    vring_avail_add(r, d);
    if (q == 0)
        t->rx_posted[t->rx_put++ % ARRAY_LEN(t->rx_posted)] = buf;
    return buf;
}

/* A frame: header (flags, gso 0), then dst MAC, a source MAC, then
 * payload bytes derived from `tag`. */
static uint32_t make_frame(uint8_t *out, const uint8_t *dst, uint32_t payload, uint8_t tag)
{
    memset(out, 0, HL);
    memcpy(out + HL, dst, 6);
    memcpy(out + HL + 6, "\x02\xaa\xbb\xcc\xdd\xee", 6);
    for (uint32_t i = 0; i < payload; i++)
        out[HL + 12 + i] = (uint8_t)(tag + i * 7);
    return HL + 12 + payload;
}

static void send_frame(struct tdev *t, unsigned pair, const uint8_t *f, uint32_t len)
{
    assert_int_equal(send(t->peer[pair], f, len, 0), (ssize_t)len);
}

static struct virtio_net_stats stats_of(struct tdev *t)
{
    struct virtio_net_stats s;
    virtio_net_get_stats(t->vdev, &s);
    return s;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- Fixtures ---- */

static int setup(void **state)
{
    fake_mem_add(0, RAM_SIZE, false, 0);
    bus_init(&pio, "pio");
    bus_init(&mmio, "mmio");
    pci_bus_init(&pcibus, &pio, &mmio);
    pci_bus_set_intx_router(&pcibus, (struct pci_intx_router){fake_router, NULL});
    be_hdr_len = be_pairs = be_pairs_calls = 0;
    be_offloads = 0;
    tdev_vhost = NULL;
    be_filter_count = be_filter_calls = 0;
    be_filter_allmulti = false;
    memset(fake_rings, 0, sizeof(fake_rings));
    fake_feature_calls = fake_set_calls = 0;
    tdev_create(&dev, 5);
    return 0;
}

static int teardown(void **state)
{
    tdev_destroy(&dev);
    pci_bus_destroy(&pcibus);
    bus_destroy(&pio);
    bus_destroy(&mmio);
    fake_mem_free();
    return 0;
}

/* ======================= Tests ======================= */

static void test_identity_config_features(void **state)
{
    struct pci_device *pdev = &dev.vp->pci;
    assert_int_equal(pci_device_config_read(pdev, PCI_VENDOR_ID, 4), 0x10001af4);
    assert_int_equal(pci_device_config_read(pdev, PCI_SUBSYSTEM_VENDOR_ID, 4), 0x00011af4);
    for (unsigned i = 0; i < 6; i++)
        assert_int_equal(vp_device_config_read(dev.vp, i, 1), own_mac[i]);
    assert_int_equal(vp_device_config_read(dev.vp, offsetof(struct virtio_net_config, status), 2),
                     VIRTIO_NET_S_LINK_UP);
    assert_int_equal(
        vp_device_config_read(dev.vp, offsetof(struct virtio_net_config, max_virtqueue_pairs), 2),
        2);
    assert_int_equal(vp_device_config_read(dev.vp, offsetof(struct virtio_net_config, mtu), 2),
                     0); /* past the end */
    assert_int_equal(vp_bar_read(dev.vp, VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_CONFIG_NOMSIX, 1),
                     own_mac[0]);
    uint64_t f = device_features(&dev);
    uint64_t want = MRG_FEATURES | F(VIRTIO_NET_F_HOST_ECN) | F(VIRTIO_NET_F_GUEST_TSO6) |
                    F(VIRTIO_NET_F_GUEST_ECN) | F(VIRTIO_NET_F_CTRL_RX_EXTRA) |
                    F(VIRTIO_RING_F_INDIRECT_DESC) | F(VIRTIO_RING_F_EVENT_IDX);
    assert_int_equal(f & want, want);
    assert_false(f & F(VIRTIO_NET_F_GUEST_UFO));
    assert_false(f & F(VIRTIO_NET_F_CTRL_VLAN));
    assert_int_equal(vp_common_read(dev.vp, VIRTIO_COMMON_NUMQ, 2), NQ);
    uint16_t sizes[NQ] = {512, 256, 512, 256, VIRTIO_NET_CTRL_QUEUE_SIZE};
    for (unsigned q = 0; q < NQ; q++) {
        vp_common_write(dev.vp, VIRTIO_COMMON_Q_SELECT, 2, q);
        assert_int_equal(vp_common_read(dev.vp, VIRTIO_COMMON_Q_SIZE, 2), sizes[q]);
    }
    /* Dependencies: guest TSO without GUEST_CSUM is refused. */
    vp_common_write(dev.vp, VIRTIO_COMMON_STATUS, 1, 3);
    vp_common_write(dev.vp, VIRTIO_COMMON_GFSELECT, 4, 0);
    vp_common_write(dev.vp, VIRTIO_COMMON_GF, 4, (uint32_t)F(VIRTIO_NET_F_GUEST_TSO4));
    vp_common_write(dev.vp, VIRTIO_COMMON_GFSELECT, 4, 1);
    vp_common_write(dev.vp, VIRTIO_COMMON_GF, 4, 1); /* VERSION_1 */
    vp_common_write(dev.vp, VIRTIO_COMMON_STATUS, 1, 0x0b);
    assert_int_equal(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1), 0x03);
}

static void test_tx_frames(void **state)
{
    bring_up(&dev, BASE_FEATURES | F(VIRTIO_RING_F_INDIRECT_DESC));
    assert_int_equal(be_hdr_len, HL);
    assert_int_equal(be_offloads, BASE_FEATURES | F(VIRTIO_RING_F_INDIRECT_DESC));
    uint8_t f1[2000], f2[2000], f3[200];
    uint32_t l1 = make_frame(f1, own_mac, 1500, 1);
    uint32_t l2 = make_frame(f2, own_mac, 777, 2);
    uint32_t l3 = make_frame(f3, own_mac, 60, 3);
    f2[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM; /* csum_start 34, offset 16 */
    f2[6] = 34;
    f2[8] = 16;
    post_tx(&dev, 1, f1, l1, 1);
    post_tx(&dev, 1, f2, l2, 3); /* header split between descriptors */
    /* Third through an indirect table of two entries. */
    struct vring *r = &dev.rings[1];
    uint64_t buf = alloc_buf(&dev, l3), table = alloc_buf(&dev, 32);
    memcpy(mem_host(buf), f3, l3);
    vring_set_desc_at(table, 0, buf, 5, VIRTQ_DESC_F_NEXT, 1);
    vring_set_desc_at(table, 1, buf + 5, l3 - 5, 0, 0);
    uint16_t d = alloc_desc(&dev, 1);
    vring_set_desc(r, d, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
    vring_avail_add(r, d);
    notify(&dev, 1);
    assert_true(vring_wait_used(r, 3));
    assert_int_equal(vring_used_len(r, 0), 0);
    uint8_t got[4096];
    const uint8_t *want[3] = {f1, f2, f3};
    uint32_t lens[3] = {l1, l2, l3};
    for (unsigned i = 0; i < 3; i++) {
        ssize_t n = recv(dev.peer[0], got, sizeof(got), MSG_DONTWAIT);
        assert_int_equal(n, lens[i]);
        assert_memory_equal(got, want[i], lens[i]);
    }
    assert_int_equal(recv(dev.peer[0], got, sizeof(got), MSG_DONTWAIT), -1);
    /* The second pair's TX queue goes to the second descriptor. */
    post_tx(&dev, 3, f3, l3, 1);
    notify(&dev, 3);
    assert_true(vring_wait_used(&dev.rings[3], 1));
    assert_int_equal(recv(dev.peer[1], got, sizeof(got), MSG_DONTWAIT), l3);
    assert_memory_equal(got, f3, l3);
    assert_int_equal(stats_of(&dev).tx_frames, 4);
    assert_int_equal(stats_of(&dev).tx_dropped, 0);
}

static void test_rx_single_buffers(void **state)
{
    bring_up(&dev, BASE_FEATURES);
    uint64_t b0 = post_rx(&dev, 0, 2048), b1 = post_rx(&dev, 0, 2048);
    notify(&dev, 0);
    uint8_t f[4096];
    uint32_t l0 = make_frame(f, own_mac, 100, 9);
    f[10] = 0x77; /* num_buffers from the back end: the device sets 1 */
    send_frame(&dev, 0, f, l0);
    struct vring *r = &dev.rings[0];
    assert_true(vring_wait_used(r, 1));
    assert_int_equal(vring_used_len(r, 0), l0);
    assert_int_equal(le16_load(mem_host(b0) + 10), 1);
    assert_memory_equal(mem_host(b0), f, 10);
    assert_memory_equal(mem_host(b0) + HL, f + HL, l0 - HL);
    /* Too big for the posted buffer: dropped, the buffer reused. */
    uint32_t big = make_frame(f, own_mac, 3000, 4);
    send_frame(&dev, 0, f, big);
    uint32_t l1 = make_frame(f, own_mac, 200, 5);
    send_frame(&dev, 0, f, l1);
    assert_true(vring_wait_used(r, 2));
    assert_int_equal(vring_used_id(r, 1), 1);
    assert_int_equal(vring_used_len(r, 1), l1);
    assert_memory_equal(mem_host(b1) + HL, f + HL, l1 - HL);
    assert_int_equal(stats_of(&dev).rx_dropped, 1);
    assert_int_equal(stats_of(&dev).rx_frames, 2);
    /* The second pair receives on its own socket. */
    uint64_t b2 = post_rx(&dev, 2, 2048);
    notify(&dev, 2);
    uint32_t l2 = make_frame(f, own_mac, 64, 6);
    send_frame(&dev, 1, f, l2);
    assert_true(vring_wait_used(&dev.rings[2], 1));
    assert_memory_equal(mem_host(b2) + HL, f + HL, l2 - HL);
}

static void test_rx_mergeable(void **state)
{
    bring_up(&dev, MRG_FEATURES);
    uint64_t b[4];
    for (unsigned i = 0; i < 4; i++)
        b[i] = post_rx(&dev, 0, 1024);
    notify(&dev, 0);
    uint8_t f[4096];
    uint32_t len = make_frame(f, own_mac, 2500 - 12, 7); /* 2500 bytes with the header */
    assert_int_equal(len, HL + 2500);
    send_frame(&dev, 0, f, len);
    struct vring *r = &dev.rings[0];
    assert_true(vring_wait_used(r, 3));
    assert_int_equal(vring_used_len(r, 0), 1024);
    assert_int_equal(vring_used_len(r, 1), 1024);
    assert_int_equal(vring_used_len(r, 2), len - 2048);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(vring_used_id(r, i), i);
    assert_int_equal(le16_load(mem_host(b[0]) + 10), 3);
    assert_memory_equal(mem_host(b[0]), f, 10);
    assert_memory_equal(mem_host(b[0]) + HL, f + HL, 1024 - HL);
    assert_memory_equal(mem_host(b[1]), f + 1024, 1024);
    assert_memory_equal(mem_host(b[2]), f + 2048, len - 2048);
    /* The fourth buffer was given back and takes the next frame. */
    uint32_t small = make_frame(f, own_mac, 50, 8);
    send_frame(&dev, 0, f, small);
    assert_true(vring_wait_used(r, 4));
    assert_int_equal(vring_used_id(r, 3), 3);
    assert_int_equal(vring_used_len(r, 3), small);
    assert_int_equal(le16_load(mem_host(b[3]) + 10), 1);
    assert_memory_equal(mem_host(b[3]) + HL, f + HL, small - HL);
    assert_int_equal(stats_of(&dev).rx_frames, 2);
    /* A frame larger than every buffer posted is dropped; the buffers
     * take the next frame. */
    uint64_t c0 = post_rx(&dev, 0, 1024);
    post_rx(&dev, 0, 1024);
    notify(&dev, 0);
    send_frame(&dev, 0, f, make_frame(f, own_mac, 3000, 9));
    small = make_frame(f, own_mac, 70, 10);
    send_frame(&dev, 0, f, small);
    assert_true(vring_wait_used(r, 5));
    assert_int_equal(vring_used_id(r, 4), 4);
    assert_int_equal(vring_used_len(r, 4), small);
    assert_memory_equal(mem_host(c0) + HL, f + HL, small - HL);
    assert_int_equal(stats_of(&dev).rx_dropped, 1);
}

static void test_rx_waits_for_buffers(void **state)
{
    bring_up(&dev, BASE_FEATURES);
    uint8_t f[3][256];
    uint32_t len[3];
    for (unsigned i = 0; i < 3; i++) {
        len[i] = make_frame(f[i], own_mac, 100 + i, (uint8_t)(20 + i));
        send_frame(&dev, 0, f[i], len[i]);
    }
    sleep_ms(30);
    struct vring *r = &dev.rings[0];
    assert_int_equal(vring_used_idx(r), 0);
    uint8_t peek[256];
    assert_int_equal(recv(dev.dev_fd[0], peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT), len[0]);
    /* Without buffers the device does not even watch the back end. */
    char ring[128], desc[256];
    virtio_describe_queue(dev.vdev, 0, ring, sizeof(ring), desc, sizeof(desc));
    assert_non_null(strstr(desc, "back end not watched"));
    assert_int_equal(stats_of(&dev).rx_dropped, 0);
    uint64_t b[3];
    for (unsigned i = 0; i < 3; i++)
        b[i] = post_rx(&dev, 0, 1024);
    notify(&dev, 0);
    assert_true(vring_wait_used(r, 3));
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(vring_used_len(r, i), len[i]);
        assert_memory_equal(mem_host(b[i]) + HL, f[i] + HL, len[i] - HL);
    }
    /* A fourth frame waits again until a buffer comes. */
    send_frame(&dev, 0, f[0], len[0]);
    sleep_ms(20);
    assert_int_equal(vring_used_idx(r), 3);
    virtio_describe_queue(dev.vdev, 0, ring, sizeof(ring), desc, sizeof(desc));
    assert_non_null(strstr(desc, "back end not watched"));
    post_rx(&dev, 0, 1024);
    post_rx(&dev, 0, 1024);
    notify(&dev, 0);
    assert_true(vring_wait_used(r, 4));
    assert_int_equal(stats_of(&dev).rx_frames, 4);
    /* With a buffer left it watches the back end for the next frame. */
    for (int i = 0; i < 2000; i++) {
        virtio_describe_queue(dev.vdev, 0, ring, sizeof(ring), desc, sizeof(desc));
        if (strstr(desc, "back end watched"))
            break;
        sleep_ms(1);
    }
    assert_non_null(strstr(desc, "back end watched"));
}

/* Sends a control command; returns the ack byte. */
static uint8_t ctrl(struct tdev *t, unsigned q, const void *cmd, uint32_t len)
{
    struct vring *r = &t->rings[q];
    uint64_t buf = alloc_buf(t, len + 1);
    memcpy(mem_host(buf), cmd, len);
    *mem_host(buf + len) = 0xee;
    uint16_t d0 = alloc_desc(t, q), d1 = alloc_desc(t, q);
    vring_set_desc(r, d0, buf, len, VIRTQ_DESC_F_NEXT, d1);
    vring_set_desc(r, d1, buf + len, 1, VIRTQ_DESC_F_WRITE, 0);
    vring_avail_add(r, d0);
    notify(t, q);
    assert_true(vring_wait_used(r, r->avail_idx));
    assert_int_equal(vring_used_len(r, (uint16_t)(r->avail_idx - 1)), 1);
    return *mem_host(buf + len);
}

static uint8_t rx_mode(struct tdev *t, uint8_t cmd, uint8_t on)
{
    uint8_t c[3] = {VIRTIO_NET_CTRL_RX, cmd, on};
    return ctrl(t, 4, c, sizeof(c));
}

/* Sends a frame to each dst in turn, then a marker frame (to a unicast
 * address in the test's MAC table, or anything when promiscuous), with
 * enough buffers posted; returns a bitmask of the frames delivered (bit i
 * for dsts[i]). Buffers are consumed in the order they were posted. */
static unsigned deliveries(struct tdev *t, const uint8_t (*dsts)[6], unsigned n)
{
    static const uint8_t marker_dst[6] = {0x02, 0x77, 0x77, 0x77, 0x77, 0x77};
    struct vring *r = &t->rings[0];
    uint16_t seen = vring_used_idx(r);
    uint8_t f[256];
    for (unsigned i = 0; i <= n; i++)
        post_rx(t, 0, 256);
    notify(t, 0);
    for (unsigned i = 0; i < n; i++)
        send_frame(t, 0, f, make_frame(f, dsts[i], 20, (uint8_t)i));
    send_frame(t, 0, f, make_frame(f, marker_dst, 20, 0xff));
    unsigned mask = 0;
    for (int tries = 0; tries < 2000; tries++) {
        while (seen != vring_used_idx(r)) {
            assert_true(t->rx_get != t->rx_put);
            uint64_t buf = t->rx_posted[t->rx_get++ % ARRAY_LEN(t->rx_posted)];
            seen++;
            uint8_t tag = *mem_host(buf + HL + 12);
            if (tag == 0xff)
                return mask;
            mask |= 1u << tag;
        }
        sleep_ms(1);
    }
    fail_msg("the marker frame never arrived");
    return mask;
}

static void test_control_queue(void **state)
{
    bring_up(&dev, BASE_FEATURES | F(VIRTIO_NET_F_CTRL_RX_EXTRA));
    /* MQ: pairs set calls the back end; out of range is refused. */
    uint8_t mq[4] = {VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, 2, 0};
    assert_int_equal(ctrl(&dev, 4, mq, 4), VIRTIO_NET_OK);
    assert_int_equal(be_pairs, 2);
    mq[2] = 3;
    assert_int_equal(ctrl(&dev, 4, mq, 4), VIRTIO_NET_ERR);
    mq[2] = 0;
    assert_int_equal(ctrl(&dev, 4, mq, 4), VIRTIO_NET_ERR);
    assert_int_equal(ctrl(&dev, 4, mq, 3), VIRTIO_NET_ERR); /* short */
    assert_int_equal(be_pairs, 2);
    /* Garbage. */
    uint8_t junk[8] = {99, 1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(ctrl(&dev, 4, junk, 8), VIRTIO_NET_ERR);
    assert_int_equal(ctrl(&dev, 4, junk, 1), VIRTIO_NET_ERR);
    uint8_t vlan[4] = {VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_ADD, 1, 0};
    assert_int_equal(ctrl(&dev, 4, vlan, 4), VIRTIO_NET_ERR);
    assert_int_equal(rx_mode(&dev, VIRTIO_NET_CTRL_RX_PROMISC, 2), VIRTIO_NET_ERR);
    assert_int_equal(rx_mode(&dev, 9, 1), VIRTIO_NET_ERR);
    uint8_t badtab[6] = {VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, 5, 0, 0, 0};
    assert_int_equal(ctrl(&dev, 4, badtab, 6), VIRTIO_NET_ERR); /* 5 entries, none given */
    uint8_t badaddr[8] = {VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, 1, 2, 3, 4, 5, 6};
    assert_int_equal(ctrl(&dev, 4, badaddr, 8), VIRTIO_NET_ERR); /* multicast */
    /* A command without a writable ack byte comes back unanswered. */
    struct vring *r = &dev.rings[4];
    uint64_t buf = alloc_buf(&dev, 8);
    memcpy(mem_host(buf), mq, 4);
    uint16_t d = alloc_desc(&dev, 4);
    vring_set_desc(r, d, buf, 4, 0, 0);
    vring_avail_add(r, d);
    notify(&dev, 4);
    assert_true(vring_wait_used(r, r->avail_idx));
    assert_int_equal(vring_used_len(r, (uint16_t)(r->avail_idx - 1)), 0);
    assert_int_equal(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1), 0x0f);

    /* Filtering: promiscuous at first. */
    static const uint8_t dsts[5][6] = {
        {0x02, 0x99, 0x99, 0x99, 0x99, 0x99}, /* 0: another unicast */
        {0x02, 0x77, 0x77, 0x77, 0x77, 0x77}, /* 1: unicast in the table */
        {0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, /* 2: multicast in the table */
        {0x01, 0x00, 0x5e, 0x00, 0x00, 0x02}, /* 3: another multicast */
        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, /* 4: broadcast */
    };
    assert_int_equal(deliveries(&dev, dsts, 5), 0x1f);
    uint8_t tab[2 + 4 + 6 + 4 + 6] = {
        VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, 1, 0, 0, 0};
    memcpy(tab + 6, dsts[1], 6);
    tab[12] = 1;
    memcpy(tab + 16, dsts[2], 6);
    assert_int_equal(ctrl(&dev, 4, tab, sizeof(tab)), VIRTIO_NET_OK);
    assert_int_equal(rx_mode(&dev, VIRTIO_NET_CTRL_RX_PROMISC, 0), VIRTIO_NET_OK);
    uint64_t filtered = stats_of(&dev).rx_filtered;
    assert_int_equal(deliveries(&dev, dsts, 5), 0x16);
    assert_int_equal(stats_of(&dev).rx_filtered, filtered + 2);
    assert_int_equal(rx_mode(&dev, VIRTIO_NET_CTRL_RX_ALLMULTI, 1), VIRTIO_NET_OK);
    assert_int_equal(rx_mode(&dev, VIRTIO_NET_CTRL_RX_NOBCAST, 1), VIRTIO_NET_OK);
    assert_int_equal(deliveries(&dev, dsts, 5), 0x0e);
    /* A new address: frames to it pass, the old one is filtered. */
    uint8_t addr[8] = {
        VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, 0x02, 0x99, 0x99, 0x99, 0x99, 0x99};
    uint32_t gen = (uint32_t)vp_common_read(dev.vp, VIRTIO_COMMON_CFGGENERATION, 1);
    assert_int_equal(ctrl(&dev, 4, addr, 8), VIRTIO_NET_OK);
    assert_int_equal(vp_device_config_read(dev.vp, 1, 1), 0x99);
    assert_int_equal(vp_common_read(dev.vp, VIRTIO_COMMON_CFGGENERATION, 1), gen);
    assert_int_equal(deliveries(&dev, dsts, 1), 0x01);
    /* A reset restores the MAC and promiscuous mode. */
    bring_up(&dev, BASE_FEATURES);
    assert_int_equal(vp_device_config_read(dev.vp, 1, 1), own_mac[1]);
    assert_int_equal(be_pairs, 1);
    assert_int_equal(deliveries(&dev, dsts, 5), 0x1f);
}

static void test_link_status(void **state)
{
    bring_up(&dev, BASE_FEATURES);
    (void)isr_read(&dev);
    unsigned status_off = offsetof(struct virtio_net_config, status);
    uint8_t gen = (uint8_t)vp_common_read(dev.vp, VIRTIO_COMMON_CFGGENERATION, 1);
    virtio_net_set_link(dev.vdev, false);
    assert_int_equal(vp_device_config_read(dev.vp, status_off, 2), 0);
    assert_int_not_equal(vp_common_read(dev.vp, VIRTIO_COMMON_CFGGENERATION, 1), gen);
    assert_true(isr_read(&dev) & 2);
    gen = (uint8_t)vp_common_read(dev.vp, VIRTIO_COMMON_CFGGENERATION, 1);
    virtio_net_set_link(dev.vdev, false); /* no change: nothing */
    assert_int_equal(vp_common_read(dev.vp, VIRTIO_COMMON_CFGGENERATION, 1), gen);
    assert_false(isr_read(&dev) & 2);
    virtio_net_set_link(dev.vdev, true);
    assert_int_equal(vp_device_config_read(dev.vp, status_off, 2), VIRTIO_NET_S_LINK_UP);
    assert_int_not_equal(vp_common_read(dev.vp, VIRTIO_COMMON_CFGGENERATION, 1), gen);
    assert_true(isr_read(&dev) & 2);
    /* The link state survives a driver reset. */
    virtio_net_set_link(dev.vdev, false);
    bring_up(&dev, BASE_FEATURES);
    assert_int_equal(vp_device_config_read(dev.vp, status_off, 2), 0);
}

/* A legacy driver: no VERSION_1, no MRG_RXBUF, so 10-byte headers. */
static void test_legacy_header(void **state)
{
    vp_bar_write(dev.vp, VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_STATUS, 1, 0);
    vp_bar_write(dev.vp, VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_STATUS, 1, 3);
    uint32_t offer = (uint32_t)vp_bar_read(dev.vp, VIRTIO_PCI_BAR_LEGACY, 0, 4);
    assert_true(offer & F(VIRTIO_NET_F_MAC));
    vp_bar_write(dev.vp, VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_GUEST_FEATURES, 4,
                 F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_CSUM));
    /* Legacy rings: queue size fixed at the maximum, one page frame each. */
    uint64_t ring_gpa[2] = {0x100000, 0x180000};
    for (unsigned q = 0; q < 2; q++) {
        vp_bar_write(dev.vp, VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_SELECT, 2, q);
        uint16_t n =
            (uint16_t)vp_bar_read(dev.vp, VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_SIZE, 2);
        dev.rings[q] =
            (struct vring){.desc = ring_gpa[q],
                           .avail = ring_gpa[q] + 16ull * n,
                           .used = (ring_gpa[q] + 16ull * n + 6 + 2 * n + 4095) & ~4095ull,
                           .size = n};
        vring_clear(&dev.rings[q]);
        dev.next_desc[q] = 0;
        vp_bar_write(dev.vp, VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_PFN, 4, ring_gpa[q] >> 12);
    }
    /* The legacy driver sets its MAC through the configuration. */
    vp_bar_write(dev.vp, VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_CONFIG_NOMSIX + 5, 1, 0x56);
    vp_bar_write(dev.vp, VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_STATUS, 1, 7);
    assert_int_equal(vp_device_config_read(dev.vp, 5, 1), 0x56);
    assert_int_equal(be_hdr_len, 10);
    dev.next_buf = 0x200000;
    uint8_t f[128];
    memset(f, 0, 10);
    for (unsigned i = 10; i < sizeof(f); i++)
        f[i] = (uint8_t)i;
    post_tx(&dev, 1, f, sizeof(f), 2);
    vp_bar_write(dev.vp, VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_NOTIFY, 2, 1);
    assert_true(vring_wait_used(&dev.rings[1], 1));
    uint8_t got[256];
    assert_int_equal(recv(dev.peer[0], got, sizeof(got), MSG_DONTWAIT), sizeof(f));
    assert_memory_equal(got, f, sizeof(f));
    uint64_t b = post_rx(&dev, 0, 512);
    vp_bar_write(dev.vp, VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_NOTIFY, 2, 0);
    send_frame(&dev, 0, f, sizeof(f));
    assert_true(vring_wait_used(&dev.rings[0], 1));
    assert_int_equal(vring_used_len(&dev.rings[0], 0), sizeof(f));
    assert_memory_equal(mem_host(b), f, sizeof(f));
}

static void test_hostile_tx_and_chains(void **state)
{
    bring_up(&dev, BASE_FEATURES);
    struct vring *r = &dev.rings[1];
    static uint8_t big[HL + VIRTIO_NET_MAX_FRAME + 1];
    uint8_t f[256];
    uint32_t len = make_frame(f, own_mac, 100, 1);
    memset(big, 0, sizeof(big));
    post_tx(&dev, 1, f, HL, 1);            /* header only */
    post_tx(&dev, 1, big, sizeof(big), 1); /* over 64 KiB */
    f[1] = VIRTIO_NET_HDR_GSO_UDP;         /* UFO: not offered */
    post_tx(&dev, 1, f, len, 1);
    f[1] = VIRTIO_NET_HDR_GSO_TCPV4; /* GSO without NEEDS_CSUM */
    f[4] = 100;
    post_tx(&dev, 1, f, len, 1);
    f[1] = 0;
    f[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM; /* checksum beyond the frame */
    f[6] = 200;
    post_tx(&dev, 1, f, len, 1);
    f[0] = 0;
    f[2] = 0xff; /* hdr_len beyond the frame */
    post_tx(&dev, 1, f, len, 1);
    memset(f, 0, HL);
    post_tx(&dev, 1, f, len, 1); /* a good one */
    notify(&dev, 1);
    assert_true(vring_wait_used(r, 7));
    uint8_t got[512];
    assert_int_equal(recv(dev.peer[0], got, sizeof(got), MSG_DONTWAIT), len);
    assert_memory_equal(got, f, len);
    assert_int_equal(recv(dev.peer[0], got, sizeof(got), MSG_DONTWAIT), -1);
    assert_int_equal(stats_of(&dev).tx_dropped, 6);
    assert_int_equal(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1), 0x0f);

    /* A descriptor loop on TX: NEEDS_RESET. */
    uint16_t a = alloc_desc(&dev, 1), b = alloc_desc(&dev, 1);
    vring_set_desc(r, a, 0x200000, 64, VIRTQ_DESC_F_NEXT, b);
    vring_set_desc(r, b, 0x200000, 64, VIRTQ_DESC_F_NEXT, a);
    vring_avail_add(r, a);
    notify(&dev, 1);
    for (int i = 0; i < 2000 && !(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1) & 0x40); i++)
        sleep_ms(1);
    assert_true(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);

    /* An RX buffer the device may not write: NEEDS_RESET too. */
    bring_up(&dev, BASE_FEATURES);
    uint16_t d = alloc_desc(&dev, 0);
    vring_set_desc(&dev.rings[0], d, 0x200000, 2048, 0, 0);
    vring_avail_add(&dev.rings[0], d);
    notify(&dev, 0);
    send_frame(&dev, 0, f, len);
    for (int i = 0; i < 2000 && !(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1) & 0x40); i++)
        sleep_ms(1);
    assert_true(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);

    /* After a reset frames pass both ways (the waiting frame included). */
    bring_up(&dev, MRG_FEATURES);
    uint64_t rb = post_rx(&dev, 0, 2048);
    notify(&dev, 0);
    assert_true(vring_wait_used(&dev.rings[0], 1));
    assert_memory_equal(mem_host(rb) + HL, f + HL, len - HL);
    post_tx(&dev, 1, f, len, 1);
    notify(&dev, 1);
    assert_true(vring_wait_used(r, 1));
    assert_int_equal(recv(dev.peer[0], got, sizeof(got), MSG_DONTWAIT), len);
}

/* dev up with MQ, two pairs, filters set, some frames moved, paused; and a
 * twin built the same way, paused. */
static void active_device_and_twin(struct tdev *other)
{
    bring_up(&dev, MRG_FEATURES | F(VIRTIO_RING_F_EVENT_IDX));
    uint8_t mq[4] = {VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, 2, 0};
    assert_int_equal(ctrl(&dev, 4, mq, 4), VIRTIO_NET_OK);
    uint8_t tab[2 + 4 + 12 + 4] = {VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, 2};
    memcpy(tab + 6, "\x02\x01\x01\x01\x01\x01\x02\x02\x02\x02\x02\x02", 12);
    assert_int_equal(ctrl(&dev, 4, tab, sizeof(tab)), VIRTIO_NET_OK);
    assert_int_equal(rx_mode(&dev, VIRTIO_NET_CTRL_RX_PROMISC, 0), VIRTIO_NET_OK);
    assert_int_equal(rx_mode(&dev, VIRTIO_NET_CTRL_RX_ALLMULTI, 1), VIRTIO_NET_OK);
    uint8_t f[256];
    uint32_t len = make_frame(f, own_mac, 80, 3);
    post_tx(&dev, 1, f, len, 1);
    notify(&dev, 1);
    assert_true(vring_wait_used(&dev.rings[1], 1));
    post_rx(&dev, 0, 1024);
    post_rx(&dev, 0, 1024); /* left posted */
    notify(&dev, 0);
    send_frame(&dev, 0, f, len);
    assert_true(vring_wait_used(&dev.rings[0], 1));
    virtio_net_set_link(dev.vdev, false);
    assert_int_equal(device_pause(&dev.vp->pci.dev), 0);
    tdev_create(other, 6);
    assert_int_equal(device_pause(&other->vp->pci.dev), 0);
}

static void test_state_roundtrip(void **state)
{
    struct tdev other;
    active_device_and_twin(&other);
    assert_string_equal(dev.vp->pci.dev.ops->kind, "virtio-pci-net");
    unsigned calls = be_pairs_calls;
    be_pairs = 0;
    assert_state_roundtrip(&dev.vp->pci.dev, &other.vp->pci.dev);
    assert_int_equal(be_pairs, 2); /* the twin's back end was told */
    assert_true(be_pairs_calls > calls);
    assert_int_equal(vp_device_config_read(other.vp, offsetof(struct virtio_net_config, status), 2),
                     0);
    /* The twin carries on from the restored rings and filter: the posted
     * buffer takes a frame from the twin's socket, a filtered one does not. */
    device_resume(&other.vp->pci.dev);
    uint8_t f[256];
    static const uint8_t stranger[6] = {0x02, 0x09, 0x09, 0x09, 0x09, 0x09};
    send_frame(&other, 0, f, make_frame(f, stranger, 40, 1));
    uint32_t len = make_frame(f, (const uint8_t *)"\x02\x02\x02\x02\x02\x02", 40, 2);
    send_frame(&other, 0, f, len);
    notify(&other, 0);
    assert_true(vring_wait_used(&dev.rings[0], 2));
    assert_int_equal(vring_used_len(&dev.rings[0], 1), len);
    assert_int_equal(stats_of(&other).rx_filtered, 1);
    device_resume(&dev.vp->pci.dev);
    tdev_destroy(&other);
}

static void test_state_refusals(void **state)
{
    struct tdev other;
    active_device_and_twin(&other);
    assert_state_refusals(&dev.vp->pci.dev, &other.vp->pci.dev);
    uint16_t pairs = 3;
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "net.active_pairs", &pairs,
                               sizeof(pairs));
    pairs = 1;
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "net.max_queue_pairs", &pairs,
                               sizeof(pairs));
    uint8_t mac[6] = {0x01, 0, 0, 0, 0, 1};
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "net.mac", mac, sizeof(mac));
    uint16_t status = 4;
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "net.status", &status,
                               sizeof(status));
    uint32_t count = VIRTIO_NET_MAC_TABLE_MAX + 1;
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "net.uni.count", &count,
                               sizeof(count));
    count = 1; /* two addresses saved */
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "net.uni.count", &count,
                               sizeof(count));
    bool on = true;
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "net.uni.overflow", &on,
                               sizeof(on));
    device_resume(&dev.vp->pci.dev);
    tdev_destroy(&other);
}

static void test_bad_parameters(void **state)
{
    int fds[2] = {dev.dev_fd[0], dev.dev_fd[1]};
    struct virtio_net_params p = {
        .name = "bad", .max_queue_pairs = 9, .fds = fds, .backend = &be_ops, .mem = &fake_mem};
    memcpy(p.mac, own_mac, 6);
    assert_null(virtio_net_create(&p));
    p.max_queue_pairs = 1;
    p.rx_queue_size = 1000;
    assert_null(virtio_net_create(&p));
    p.rx_queue_size = 0;
    p.mac[0] = 1; /* multicast */
    assert_null(virtio_net_create(&p));
    p.mac[0] = 2;
    int closed[1] = {-1};
    p.fds = closed;
    assert_null(virtio_net_create(&p));
    p.fds = fds;
    p.backend = NULL;
    assert_null(virtio_net_create(&p));
}

static void test_pause_stops_receive(void **state)
{
    bring_up(&dev, BASE_FEATURES);
    uint64_t b = post_rx(&dev, 0, 1024);
    notify(&dev, 0);
    struct device *d = &dev.vp->pci.dev;
    assert_int_equal(device_pause(d), 0);
    uint8_t f[256];
    uint32_t len = make_frame(f, own_mac, 30, 4);
    send_frame(&dev, 0, f, len);
    sleep_ms(30);
    assert_int_equal(vring_used_idx(&dev.rings[0]), 0);
    device_resume(d);
    assert_true(vring_wait_used(&dev.rings[0], 1));
    assert_memory_equal(mem_host(b) + HL, f + HL, len - HL);
}

/* With a vhost engine the data queues are the engine's from DRIVER_OK:
 * their rings and kick eventfds are handed over, a kick no longer moves
 * frames in our process, the engine's call eventfd raises the queue's
 * interrupt, pause stops the engine and takes its ring positions, resume
 * and a reset start it again from there; features it cannot run are not
 * offered; the control queue stays ours. */
static void test_vhost_engine(void **state)
{
    tdev_vhost = &fake_vhost_ops;
    tdev_vhost_features = F_V1 | F(VIRTIO_F_ANY_LAYOUT) | F(VIRTIO_RING_F_INDIRECT_DESC) |
                          F(VIRTIO_NET_F_MRG_RXBUF); /* no EVENT_IDX */
    struct tdev v;
    tdev_create(&v, 6);
    uint64_t offer = device_features(&v);
    assert_false(offer & F(VIRTIO_RING_F_EVENT_IDX));
    assert_int_equal(offer & MRG_FEATURES, MRG_FEATURES);
    assert_int_equal(fake_rings[0][0].starts, 0);

    bring_up(&v, MRG_FEATURES);
    assert_int_equal(fake_feature_calls, 2); /* once per pair */
    assert_int_equal(fake_features[0], MRG_FEATURES);
    for (unsigned q = 0; q < 4; q++) {
        struct fake_ring *f = &fake_rings[q / 2][q % 2];
        assert_true(f->started);
        assert_int_equal(f->r.size, RING_SIZE);
        assert_int_equal(f->r.last_avail, 0);
        assert_ptr_equal(f->r.desc, mem_host(v.rings[q].desc));
        assert_ptr_equal(f->r.avail, mem_host(v.rings[q].avail));
        assert_ptr_equal(f->r.used, mem_host(v.rings[q].used));
        assert_true(f->r.kick_fd >= 0 && f->r.call_fd >= 0);
        assert_int_not_equal(f->r.kick_fd, f->r.call_fd);
    }
    assert_int_equal(be_hdr_len, HL); /* the TAP still carries the header */

    /* A TX kick is the engine's: nothing reaches the back end from us, the
     * kick eventfd is left for the engine. */
    uint8_t f[256];
    uint32_t len = make_frame(f, own_mac, 50, 3);
    post_tx(&v, 1, f, len, 1);
    notify(&v, 1);
    uint64_t kicks = 0;
    for (int i = 0; i < 200 && read(fake_rings[0][1].r.kick_fd, &kicks, 8) != 8; i++)
        sleep_ms(5);
    assert_true(kicks >= 1);
    assert_int_equal(recv(v.peer[0], f, sizeof(f), MSG_DONTWAIT), -1);
    assert_int_equal(stats_of(&v).tx_frames, 0);

    /* The engine completes the chain and signals: the queue's interrupt. */
    le16_store(mem_host(v.rings[1].used) + 2, 1);
    assert_int_equal(isr_read(&v), 0);
    uint64_t one = 1;
    assert_int_equal(write(fake_rings[0][1].r.call_fd, &one, 8), 8);
    uint8_t isr = 0;
    for (int i = 0; i < 200 && !(isr = isr_read(&v)); i++)
        sleep_ms(5);
    assert_int_equal(isr & 1, 1);

    /* The control queue is still ours, and the RX filter becomes the back
     * end's: own address and broadcast, then the MAC tables, all-multicast. */
    assert_int_equal(be_filter_count, 0);
    static const uint8_t promisc_off[3] = {VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, 0};
    assert_int_equal(ctrl(&v, 4, promisc_off, sizeof(promisc_off)), VIRTIO_NET_OK);
    assert_int_equal(be_filter_count, 2);
    assert_memory_equal(be_filter[0], own_mac, 6);
    assert_memory_equal(be_filter[1], "\xff\xff\xff\xff\xff\xff", 6);
    assert_false(be_filter_allmulti);
    static const uint8_t tables[2 + 4 + 6 + 4 + 6] = {VIRTIO_NET_CTRL_MAC,
                                                      VIRTIO_NET_CTRL_MAC_TABLE_SET,
                                                      1,
                                                      0,
                                                      0,
                                                      0,
                                                      0x02,
                                                      1,
                                                      2,
                                                      3,
                                                      4,
                                                      5,
                                                      1,
                                                      0,
                                                      0,
                                                      0,
                                                      0x33,
                                                      0x33,
                                                      0,
                                                      0,
                                                      0,
                                                      1};
    assert_int_equal(ctrl(&v, 4, tables, sizeof(tables)), VIRTIO_NET_OK);
    assert_int_equal(be_filter_count, 4);
    assert_memory_equal(be_filter[1], "\x02\x01\x02\x03\x04\x05", 6);
    assert_memory_equal(be_filter[3], "\x33\x33\x00\x00\x00\x01", 6);
    static const uint8_t allmulti_on[3] = {VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, 1};
    assert_int_equal(ctrl(&v, 4, allmulti_on, sizeof(allmulti_on)), VIRTIO_NET_OK);
    assert_int_equal(be_filter_count, 3);
    assert_true(be_filter_allmulti);

    /* Pause stops the engine; the saved positions are where it stopped. */
    fake_rings[0][1].stop_at = 1;
    struct device *dv = &v.vp->pci.dev;
    assert_int_equal(device_pause(dv), 0);
    for (unsigned q = 0; q < 4; q++)
        assert_false(fake_rings[q / 2][q % 2].started);
    assert_int_equal(virtio_queue_ring(v.vdev, 1)->last_avail, 1);
    assert_int_equal(virtio_queue_ring(v.vdev, 1)->used_idx, 1);
    device_resume(dv);
    assert_true(fake_rings[0][1].started);
    assert_int_equal(fake_rings[0][1].starts, 2);
    assert_int_equal(fake_rings[0][1].r.last_avail, 1);
    assert_int_equal(fake_feature_calls, 2); /* same features: not set again */

    /* A reset stops it (the filter back to every frame); the next
     * DRIVER_OK starts it from the new rings. */
    vp_common_write(v.vp, VIRTIO_COMMON_STATUS, 1, 0);
    assert_int_equal(be_filter_count, 0);
    for (unsigned q = 0; q < 4; q++)
        assert_false(fake_rings[q / 2][q % 2].started);
    fake_rings[0][1].stop_at = 0;
    bring_up(&v, BASE_FEATURES);
    assert_int_equal(fake_feature_calls, 4);
    assert_int_equal(fake_features[1], BASE_FEATURES);
    assert_true(fake_rings[1][0].started);
    assert_int_equal(fake_rings[0][1].r.last_avail, 0);
    tdev_destroy(&v);
    for (unsigned q = 0; q < 4; q++)
        assert_false(fake_rings[q / 2][q % 2].started);
}

/* A driver that moves a running queue's vector: the engine signals the
 * new vector's eventfd (KVM injects it), and our relay once the queue has
 * no vector; a stopped engine just starts with the current one. */
static void test_vhost_follows_moved_vector(void **state)
{
    tdev_vhost = &fake_vhost_ops;
    tdev_vhost_features = F_V1 | F(VIRTIO_NET_F_MRG_RXBUF);
    struct tdev v;
    tdev_create(&v, 6);
    pci_device_config_write(&v.vp->pci, v.vp->msix.cap + MSIX_CAP_CONTROL, 2, MSIX_CONTROL_ENABLE);
    bring_up(&v, F_V1);
    struct fake_ring *tx = &fake_rings[0][1];
    assert_true(tx->started);
    int relay = tx->r.call_fd; /* no vector yet: the relay */
    assert_true(relay >= 0);
    assert_int_equal(fake_set_calls, 0);

    vp_common_write(v.vp, VIRTIO_COMMON_Q_SELECT, 2, 1);
    vp_common_write(v.vp, VIRTIO_COMMON_Q_MSIX, 2, 2);
    assert_int_equal(vp_common_read(v.vp, VIRTIO_COMMON_Q_MSIX, 2), 2);
    assert_int_equal(fake_set_calls, 1);
    assert_int_equal(tx->r.call_fd, v.vp->msix.vec[2].event_fd);
    assert_int_not_equal(tx->r.call_fd, relay);
    vp_common_write(v.vp, VIRTIO_COMMON_Q_MSIX, 2, 2); /* unchanged: nothing to do */
    assert_int_equal(fake_set_calls, 1);

    vp_common_write(v.vp, VIRTIO_COMMON_Q_MSIX, 2, VIRTIO_MSI_NO_VECTOR);
    assert_int_equal(fake_set_calls, 2);
    assert_int_equal(tx->r.call_fd, relay);

    /* Moved while paused: the restart takes the vector as it is then. */
    struct device *dv = &v.vp->pci.dev;
    assert_int_equal(device_pause(dv), 0);
    vp_common_write(v.vp, VIRTIO_COMMON_Q_MSIX, 2, 3);
    assert_int_equal(fake_set_calls, 2);
    device_resume(dv);
    assert_true(tx->started);
    assert_int_equal(tx->r.call_fd, v.vp->msix.vec[3].event_fd);
    tdev_destroy(&v);
}

/* On the userspace path the device filters itself: the back end's filter
 * stays off. */
static void test_userspace_path_leaves_backend_filter_alone(void **state)
{
    bring_up(&dev, BASE_FEATURES);
    static const uint8_t promisc_off[3] = {VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, 0};
    assert_int_equal(ctrl(&dev, 4, promisc_off, sizeof(promisc_off)), VIRTIO_NET_OK);
    assert_int_equal(be_filter_calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identity_config_features, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_single_buffers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_mergeable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_waits_for_buffers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_tx_and_chains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_parameters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_stops_receive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_engine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_follows_moved_vector, setup, teardown),
        cmocka_unit_test_setup_teardown(test_userspace_path_leaves_backend_filter_alone, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
