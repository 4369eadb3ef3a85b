/* The in-kernel virtio-net data path: one /dev/vhost-net instance per
 * queue pair (its rings 0 = receive, 1 = transmit), moving frames between
 * the guest's rings and a TAP queue fd without our process.
 *
 * The caller owns the rings and the guest memory; this file only speaks
 * the vhost ioctls: the memory table (guest RAM regions, read-only ones
 * left out, so a guest pointing buffers at them gets an error instead of
 * a write), features, and per ring start (size, base index, ring
 * addresses, kick and call eventfds, the TAP fd) and stop (which returns
 * the ring's next available index). The TAP keeps its IFF_VNET_HDR header
 * (VHOST_NET_F_VIRTIO_NET_HDR is never set), so offloads and the header
 * length stay the TAP's business, as on the userspace path. */
#ifndef NET_VHOST_NET_H
#define NET_VHOST_NET_H

#include <stddef.h>
#include <stdint.h>

#include "core/guest_mem.h"

#define VHOST_NET_RING_RX 0
#define VHOST_NET_RING_TX 1

struct vhost_net {
    int fd;            /* /dev/vhost-net, -1 when closed */
    uint64_t features; /* what this kernel's vhost-net offers */
};

/* Where a ring lives (host virtual addresses of the guest's rings) and
 * what drives it. */
struct vhost_net_ring {
    unsigned size;
    uint16_t last_avail; /* where the kernel starts taking chains */
    const void *desc, *avail, *used;
    int kick_fd, call_fd, tap_fd;
};

/* Opens /dev/vhost-net, takes ownership and gives it guest RAM. Returns 0,
 * or -errno with a sentence in err (e.g. the device absent: -ENOENT). On
 * failure v holds nothing (vhost_net_close is harmless). */
int vhost_net_open(struct vhost_net *v, const struct guest_mem *mem, char *err, size_t err_size);
void vhost_net_close(struct vhost_net *v);

/* The negotiated features the kernel must know (ring layout, event index,
 * merged receive buffers); bits vhost does not offer are dropped. Before
 * any ring starts. Returns 0 or -errno. */
int vhost_net_set_features(struct vhost_net *v, uint64_t features);
/* Starts ring `ring` (VHOST_NET_RING_*). Returns 0 or -errno (the ring is
 * left stopped). */
int vhost_net_start_ring(struct vhost_net *v, unsigned ring, const struct vhost_net_ring *r);
/* Stops the ring: detaches the TAP, reads back the next available index,
 * unbinds the kick and call eventfds. Returns 0 or -errno. */
int vhost_net_stop_ring(struct vhost_net *v, unsigned ring, uint16_t *last_avail);
/* A running ring's interrupt eventfd is now call_fd. Returns 0 or -errno. */
int vhost_net_set_call(struct vhost_net *v, unsigned ring, int call_fd);

#endif
