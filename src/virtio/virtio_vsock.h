/* pci-virtio-socket's device: virtio-vsock (type 19; on PCI 1af4:1012),
 * stream sockets between the guest and this process, which proxies them
 * to host sockets (as propolis does, in its process rather than through
 * vhost-vsock). It implements the virtio core's device ops (virtio.h).
 *
 * Queues: rx (0, device to driver), tx (1, driver to device), event (2).
 * Configuration: le64 guest_cid. Offered feature: STREAM (a driver that
 * takes none gets streams too, VIRTIO 1.2 5.10.3).
 *
 * Guest to host: a REQUEST to CID 2 on a mapped port connects (non-
 * blocking) to the mapping's address, TCP (IPv4 or IPv6) or a UNIX
 * socket; RESPONSE once connected, RST on failure or for an unmapped
 * port. Host to guest: with uds_path, a UNIX listening socket where a
 * client writes "CONNECT <port>\n"; the device sends the guest a REQUEST
 * from an ephemeral host port (49152 up), and on its RESPONSE writes "OK
 * <host port>\n" to the client before the byte stream (RST, or a line
 * that is not "CONNECT <port>": the client is closed). The listener is
 * served while the guest's driver runs the rx queue; a client that
 * connects before waits in the listen queue.
 *
 * Flow control (5.10.6.3): each connection advertises buf_alloc bytes
 * (params.buf_alloc) and the count it forwarded to the host (fwd_cnt);
 * the guest's payload goes straight to the host socket and only what the
 * socket does not take is buffered, never more than buf_alloc (a guest
 * that sends past its credit is reset: a credit lie). A CREDIT_UPDATE goes
 * out when a quarter of buf_alloc was forwarded since the guest last
 * heard, and in answer to CREDIT_REQUEST. The other way, the host socket
 * is read straight into the guest's rx buffers, never more than the
 * guest's credit (its buf_alloc - (sent - its fwd_cnt)); with no credit
 * the socket is not read until the guest's next update.
 *
 * Half-close: the guest's SHUTDOWN SEND becomes shutdown(SHUT_WR) once its
 * data is written, RCV shutdown(SHUT_RD) and no more reads; the host's end
 * of file becomes SHUTDOWN SEND to the guest. A connection whose guest shut
 * both ways, or where both sides are done sending, is answered with a RST
 * and closed; a host socket error resets the connection.
 *
 * Limits: at most max_conns connections (host clients waiting for their
 * CONNECT line included) and max_buffered bytes buffered across them; past
 * either, the new connection or the one that needs more is refused with a
 * RST (rate-limited log). Malformed packets (vsock_packet.h) are logged
 * (rate-limited) and answered with a RST, which also ends the connection
 * they name; a header cut short, one from another CID and a RST are not
 * answered. Only what breaks the rings (the walker's refusals, an rx or
 * event buffer that is not writable or too short) puts the device into
 * NEEDS_RESET.
 *
 * Threads: the host sockets and the listener are watched on the rx queue's
 * I/O loop, which also fills the rx queue; the tx queue's loop parses the
 * guest's packets and writes their data to the host sockets. One mutex
 * covers the connection table.
 *
 * State (under "vsock."): guest_cid (refused if it differs from the
 * device's). Connections are not saved: after a load the device sends the
 * guest a TRANSPORT_RESET event, so it drops the connections it had. */
#ifndef VIRTIO_VIRTIO_VSOCK_H
#define VIRTIO_VIRTIO_VSOCK_H

#include <stdint.h>
#include <sys/socket.h>

#include "virtio/virtio.h"

#define VIRTIO_VSOCK_QUEUE_SIZE 256
#define VIRTIO_VSOCK_MAX_CONNS 1024
#define VIRTIO_VSOCK_MAX_BUFFERED (64u << 20)
#define VIRTIO_VSOCK_BUF_ALLOC (256u << 10)
#define VIRTIO_VSOCK_CONNECT_TIMEOUT_MS 10000u

/* A guest port proxied to a host address: sockaddr_in, sockaddr_in6 or
 * sockaddr_un. */
struct virtio_vsock_mapping {
    uint32_t port;
    struct sockaddr_storage addr;
    socklen_t addr_len;
};

struct virtio_vsock_params {
    const char *name;   /* the [dev.NAME] name, for messages */
    uint64_t guest_cid; /* 3..0xfffffffe */
    const struct virtio_vsock_mapping *mappings;
    size_t mapping_count;
    /* The host-initiated connections' listening socket; NULL for none.
     * Created at this path, which must not exist (a socket left by an
     * earlier run of ours is replaced); unlinked on destroy. */
    const char *uds_path;
    unsigned max_conns;    /* 0: VIRTIO_VSOCK_MAX_CONNS */
    uint64_t max_buffered; /* 0: VIRTIO_VSOCK_MAX_BUFFERED */
    uint32_t buf_alloc;    /* 0: VIRTIO_VSOCK_BUF_ALLOC; per connection, 4 KiB..64 MiB */
    uint16_t queue_size;   /* 0: VIRTIO_VSOCK_QUEUE_SIZE */
    /* 0: VIRTIO_VSOCK_CONNECT_TIMEOUT_MS; how long a connection may take
     * to be established (a host client's CONNECT line and the guest's
     * RESPONSE, or our connect() for the guest) before it is closed. */
    unsigned connect_timeout_ms;
    const struct guest_mem *mem;
};

struct virtio_vsock_stats {
    uint64_t conns_open;  /* now */
    uint64_t conns_total; /* established since the device was built */
    uint64_t refused;     /* connections refused at a cap */
    uint64_t malformed;   /* packets refused by the parser */
    uint64_t credit_lies; /* connections reset for sending past their credit */
    uint64_t resets_sent; /* RSTs to the guest */
    uint64_t rx_bytes;    /* payload to the guest */
    uint64_t tx_bytes;    /* payload from the guest */
    uint64_t buffered;    /* bytes buffered now (guest to host) */
};

/* Builds the device; the caller hands it to a transport, which owns it
 * from then on. Returns NULL (logged) on error. */
struct virtio_device *virtio_vsock_create(const struct virtio_vsock_params *params);

void virtio_vsock_get_stats(struct virtio_device *vdev, struct virtio_vsock_stats *out);

#endif
