/* The TAP back end of virtio-net: a Linux TAP interface opened through
 * /dev/net/tun with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, one file descriptor
 * per queue pair (IFF_MULTI_QUEUE when there is more than one).
 *
 * Every frame read from or written to a queue fd starts with a
 * virtio_net_hdr of the length set by tap_set_vnet_hdr_len (10 bytes until
 * then). On reads the kernel writes the first 10 bytes of a 12-byte header
 * (older kernels leave the last 2 as they were, newer ones zero them):
 * num_buffers is the caller's to write.
 *
 * The header's fields are little-endian, as virtio 1.0 and legacy virtio
 * on an x86 guest both want, so no TUNSETVNETLE is needed.
 *
 * Every fd is close-on-exec and nonblocking. No global state: each NIC owns
 * its struct tap. The functions act in the network namespace the process
 * was in when tap_open ran. */
#ifndef NET_TAP_H
#define NET_TAP_H

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

/* Queue pairs a TAP carries: the virtio-net cap on queue pairs. */
#define TAP_MAX_QUEUES 8

/* TUNSETOFFLOAD flags that older <linux/if_tun.h> lack (Linux 6.2). */
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

struct tap {
    char name[IFNAMSIZ]; /* as opened; tap_carrier follows a later rename */
    unsigned ifindex;
    bool created;            /* made by tap_open, so it goes away at tap_close */
    bool multi_queue;        /* attached with IFF_MULTI_QUEUE */
    unsigned queues;         /* queue fds open */
    unsigned queues_enabled; /* the first queues_enabled fds are attached */
    int queue_fds[TAP_MAX_QUEUES];
    int ctl_fd;   /* socket for interface ioctls (SIOCGIFFLAGS, SIOCETHTOOL) */
    int link_fd;  /* rtnetlink socket on RTMGRP_LINK: watch for EPOLLIN */
    bool link_up; /* carrier as tap_link_event last saw it */
};

/* Opens TAP `name` with `queues` queue fds (1..TAP_MAX_QUEUES), all of them
 * attached. An existing TAP is attached to (a persistent one made with
 * `ip tuntap add NAME mode tap [user U] [multi_queue]`); if none exists and
 * the process holds CAP_NET_ADMIN, one is created that goes away at
 * tap_close. out->created says which. Returns 0, or -errno with a sentence
 * in err naming the interface: a name that is not a TAP (another kind of
 * interface, a TUN device), too long for IFNAMSIZ or otherwise invalid, a
 * permission failure, a TAP in use or of the wrong queue kind. On failure
 * out holds no resources (tap_close on it is harmless). */
int tap_open(const char *name, unsigned queues, struct tap *out, char *err, size_t err_size);

/* Closes every fd; a TAP tap_open created disappears with the last one.
 * Safe to call twice. */
void tap_close(struct tap *tap);

/* The virtio_net_hdr length on every queue: 10 (legacy without
 * MRG_RXBUF), or 12 (MRG_RXBUF or VERSION_1). Returns 0 or -errno
 * (-EINVAL for another length). */
int tap_set_vnet_hdr_len(struct tap *tap, unsigned len);

/* Offloads the TAP may use in frames it hands to us (TUN_F_* flags: what
 * the guest accepts, VIRTIO_NET_F_GUEST_CSUM/TSO4/TSO6/ECN/UFO/USO). The
 * kernel wants TUN_F_CSUM with any other flag, TSO_ECN only next to TSO4 or
 * TSO6, and USO4 with USO6 (Linux 6.2 on); it refuses the rest, and
 * accepts UFO (with CSUM) without ever making UFO frames. Returns 0 or
 * -errno (-EINVAL for an unknown flag or a combination refused). */
int tap_set_offload(struct tap *tap, unsigned tun_f_flags);

/* Attaches the first n queue fds and detaches the others (virtio-net MQ:
 * the queue pairs the guest enabled). Queue 0 stays attached: n is
 * 1..tap->queues, else -EINVAL. The kernel spreads frames over the
 * attached queues only; a detached fd gets none, and the caller stops
 * watching it and writing to it. Returns 0 or -errno. */
int tap_enable_queues(struct tap *tap, unsigned n);

/* The TAP's own receive filter (TUNSETTXFILTER: what the kernel queues
 * for us, so also for vhost-net): count addresses of 6 bytes, unicast
 * first; count 0 turns the filter off (every frame). The kernel matches
 * the first 8 exactly and hashes further multicast addresses; a ninth
 * unicast address turns the filter off. all_multicast passes every
 * multicast frame (needs count >= 1). Returns 0 or -errno. */
int tap_set_rx_filter(struct tap *tap, const uint8_t (*addrs)[6], unsigned count,
                      bool all_multicast);

/* The link state the guest sees: the interface is administratively up
 * (IFF_UP) and operationally up (IFF_RUNNING: the TAP has carrier, i.e. a
 * queue attached and TUNSETCARRIER not off), read with SIOCGIFFLAGS on the
 * name TUNGETIFF reports now. Not from /sys/class/net, which shows the
 * namespace sysfs was mounted in rather than ours. A TAP deleted under us
 * reads as down. */
bool tap_carrier(struct tap *tap);

/* Call when tap->link_fd is readable. Reads the pending rtnetlink messages
 * (at most 16 reads per call: a flood leaves the fd readable for the next
 * call) and returns true if the link state tap_carrier reports changed
 * since the previous report for this TAP (tap->link_up holds it). */
bool tap_link_event(struct tap *tap);

#endif
