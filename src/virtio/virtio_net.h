/* pci-virtio-viona's device: virtio-net (type 1; on PCI, transitional ID
 * 1af4:1000, class 0x020000), modern and legacy, with the userspace data
 * path. It implements the virtio core's device ops (virtio.h); the
 * transport wraps it (virtio_pci_create). Wire layouts and constants come
 * from <linux/virtio_net.h>.
 *
 * Back end: per queue pair one descriptor that carries whole frames with a
 * virtio_net_hdr in front, one readv = one frame, one writev = one frame
 * (a TAP with IFF_VNET_HDR; a SOCK_SEQPACKET or SOCK_DGRAM socket in the
 * tests). The device sets it non-blocking and does not own it (close the
 * descriptors and the back end after the device: a reset on destroy may
 * still call enable_queue_pairs). A write the back end refuses (EAGAIN,
 * ENOBUFS: a TAP does not block) drops that frame. Callbacks
 * keep the back end in step with the driver: the header length (12 with
 * VERSION_1 or MRG_RXBUF, else 10) and the offloads (the negotiated
 * features; the caller maps GUEST_CSUM/TSO4/TSO6/ECN to TUN_F_*) each time
 * a queue starts with features not yet applied, and the number of queue
 * pairs in use (VQ_PAIRS_SET, reset, state load).
 *
 * Offered features: MAC, STATUS, CSUM, GUEST_CSUM, HOST_TSO4/TSO6/ECN,
 * GUEST_TSO4/TSO6/ECN, MRG_RXBUF, CTRL_VQ, CTRL_RX, CTRL_RX_EXTRA,
 * CTRL_MAC_ADDR, MQ (more than one pair), plus the transport's VERSION_1,
 * ANY_LAYOUT, INDIRECT_DESC and EVENT_IDX. Queues: rx0, tx0, rx1, tx1, ...
 * then the control queue (at 2 * max pairs with MQ negotiated, else at 2).
 *
 * Data path A, vhost (params.vhost set): each data queue, once active, is
 * handed to the engine (its kick eventfd, the rings, and for its
 * interrupts the queue's MSI-X irqfd from the transport, or without one
 * an eventfd the queue's loop relays to the transport); pause and
 * reset stop the engine and take the ring positions back, resume starts
 * it again. The control queue, the configuration, the link and the
 * back end's header length and offloads stay ours. RX filtering is the
 * back end's then (set_rx_filter, kept in step with the control queue).
 *
 * Data path B, userspace, on the core's per-queue I/O loops:
 * - TX (kick): each chain is one frame, its header copied and checked
 *   (flags, GSO type against the negotiated offloads, csum_start/offset
 *   and hdr_len inside the frame), then one writev; a frame that is empty,
 *   over 64 KiB + Ethernet/VLAN headers, has a bogus header or that the
 *   back end refuses is dropped (counted, rate-limited log) and its chain
 *   returned. One interrupt per batch.
 * - RX: the back end's descriptor is watched on the RX queue's loop only
 *   while the guest has buffers posted; with none, the device stops
 *   watching and waits for the RX kick, so frames wait in the back end and
 *   an idle guest costs nothing. Each frame is read straight into guest
 *   buffers: one chain per frame, or with MRG_RXBUF as many chains as it
 *   takes (num_buffers set). A frame longer than the buffers offered is
 *   dropped and counted (a TAP read, and a socket read with MSG_TRUNC,
 *   return the frame's full length). With the RX mode not promiscuous,
 *   frames are filtered by destination (own MAC, MAC tables, all-multi,
 *   and the CTRL_RX_EXTRA modes); the power-on mode is promiscuous.
 * - Control queue: RX modes, MAC table and MAC address set, MQ pairs set;
 *   anything else (or malformed) is answered VIRTIO_NET_ERR.
 * A chain the ring walker refuses, or an RX chain with device-readable
 * buffers or shorter than the header, puts the device into NEEDS_RESET.
 *
 * State (under "net."): max_queue_pairs (refused if it differs), mac,
 * status, the six RX modes, both MAC tables with their overflow flags, and
 * the active queue pairs; every loaded value validated. No frame is ever
 * in flight between callbacks, so pause needs no drain. */
#ifndef VIRTIO_VIRTIO_NET_H
#define VIRTIO_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio/virtio.h"

#define VIRTIO_NET_MAX_PAIRS 8
#define VIRTIO_NET_RX_QUEUE_SIZE 2048
#define VIRTIO_NET_TX_QUEUE_SIZE 256
#define VIRTIO_NET_CTRL_QUEUE_SIZE 64
#define VIRTIO_NET_MAC_TABLE_MAX 64 /* entries per table; beyond: accept all of that kind */
/* The largest frame after the virtio-net header: a 64 KiB GSO packet with
 * Ethernet and VLAN headers. */
#define VIRTIO_NET_MAX_FRAME (65536 + 14 + 4)

/* Called on the thread that starts a queue or handles the control queue;
 * each returns 0, or -1 (the device goes to NEEDS_RESET, or the command
 * answers VIRTIO_NET_ERR). */
struct virtio_net_backend_ops {
    int (*set_vnet_hdr_len)(void *opaque, unsigned len);
    int (*set_offloads)(void *opaque, uint64_t negotiated_features);
    int (*enable_queue_pairs)(void *opaque, unsigned pairs);
    /* With vhost (which delivers whatever the back end hands it): the
     * driver's RX modes and MAC tables as the back end's own filter, count
     * addresses (unicast first), count 0 for every frame, all_multicast
     * for every multicast frame. Optional; without it, or if it fails, the
     * guest gets every frame. */
    int (*set_rx_filter)(void *opaque, const uint8_t (*addrs)[6], unsigned count,
                         bool all_multicast);
};

/* The in-kernel data path (vhost-net), one instance per queue pair, run
 * by the device from activation to quiesce; the caller wires it to the
 * pair's back end descriptor. Each returns 0, or -errno. */
struct virtio_net_ring {
    unsigned size;
    uint16_t last_avail;             /* the next chain the engine takes */
    const void *desc, *avail, *used; /* host views of the rings */
    int kick_fd;                     /* the driver's notifications */
    int call_fd; /* the engine's interrupts: the MSI-X vector's irqfd, else one the device relays */
};
struct virtio_net_vhost_ops {
    /* The negotiated features, before the pair's rings start. */
    int (*set_features)(void *opaque, unsigned pair, uint64_t features);
    /* ring: 0 receive, 1 transmit. */
    int (*start_ring)(void *opaque, unsigned pair, unsigned ring, const struct virtio_net_ring *r);
    /* Stops the ring and returns the next chain it would have taken. */
    int (*stop_ring)(void *opaque, unsigned pair, unsigned ring, uint16_t *last_avail);
    /* A started ring's interrupt eventfd changed (the driver moved its
     * vector). */
    int (*set_call)(void *opaque, unsigned pair, unsigned ring, int call_fd);
};

struct virtio_net_params {
    const char *name; /* the [dev.NAME] name, for messages */
    uint8_t mac[6];
    unsigned max_queue_pairs; /* 0: 1; at most VIRTIO_NET_MAX_PAIRS */
    const int *fds;           /* max_queue_pairs descriptors, pair i's at fds[i] */
    uint16_t rx_queue_size;   /* 0: VIRTIO_NET_RX_QUEUE_SIZE; a power of two */
    uint16_t tx_queue_size;   /* 0: VIRTIO_NET_TX_QUEUE_SIZE */
    const struct virtio_net_backend_ops *backend;
    void *backend_opaque;
    /* With vhost: the data queues are the engine's, the control queue
     * stays ours. vhost_features: the ring features the engine runs
     * (VERSION_1, ANY_LAYOUT, INDIRECT_DESC, EVENT_IDX, MRG_RXBUF); the
     * others are withheld from the offer. */
    const struct virtio_net_vhost_ops *vhost;
    void *vhost_opaque;
    uint64_t vhost_features;
    const struct guest_mem *mem;
};

struct virtio_net_stats {
    uint64_t tx_frames, tx_dropped;
    uint64_t rx_frames, rx_dropped, rx_filtered;
};

/* Builds the device; the caller hands it to a transport, which owns it
 * from then on. Returns NULL (logged) on error. */
struct virtio_device *virtio_net_create(const struct virtio_net_params *params);

/* The back end's carrier: updates the status in the configuration and
 * raises the configuration interrupt (the generation moves). Any thread;
 * nothing happens when the state does not change. */
void virtio_net_set_link(struct virtio_device *vdev, bool up);

/* Counters since the device was built. */
void virtio_net_get_stats(struct virtio_device *vdev, struct virtio_net_stats *out);

#endif
