/* virtio-vsock: the packet parser (src/virtio/vsock_packet.c) on raw
 * headers, and the device (src/virtio/virtio_vsock.c) driven by a hostile
 * driver (fuzz_virtio.h): packets of any op, port, length and credit on
 * the transmit queue, receive buffers of any shape, the event queue. One
 * guest port is mapped to a UNIX socket the fuzzer listens on, so guest
 * connections reach a real host peer, which accepts, sends, reads and
 * closes as the input says; the device's socket events are dispatched on
 * this thread (io_loop_poll on its receive queue's loop). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "virtio/virtio_vsock.h"
#include "virtio/vsock_packet.h"

#include "fuzz_virtio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define GUEST_CID 3
#define MAPPED_PORT 1234
#define MAX_PEERS 8

static int listen_fd = -1;
static struct virtio_vsock_mapping mapping;

static void cleanup(void)
{
    unlink(((struct sockaddr_un *)&mapping.addr)->sun_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_logs_init();
    struct sockaddr_un *a = (struct sockaddr_un *)&mapping.addr;
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof(a->sun_path), "/tmp/fuzz-vsock-%d.sock", (int)getpid());
    unlink(a->sun_path);
    mapping.port = MAPPED_PORT;
    mapping.addr_len = sizeof(*a);
    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)a, sizeof(*a)) < 0 ||
        listen(listen_fd, 64) < 0)
        abort();
    atexit(cleanup);
    return 0;
}

/* ---- The parser alone ---- */

static void parse_raw(struct fuzz_in *in)
{
    uint8_t bytes[VSOCK_HDR_SIZE];
    size_t have = fi_bytes(in, bytes, sizeof(bytes));
    if (fi_u8(in) & 1)
        have = fi_u8(in) % (VSOCK_HDR_SIZE + 1);
    uint64_t chain_len = fi_u8(in) & 1 ? fi_u64(in) : have + fi_u16(in);
    uint64_t cid = fi_u8(in) & 1 ? fi_u64(in) : GUEST_CID;
    struct vsock_hdr h;
    memset(&h, 0, sizeof(h));
    enum vsock_pkt_error e = vsock_packet_parse(bytes, have, chain_len, cid, &h);
    (void)vsock_pkt_error_str(e);
    if (e == VSOCK_PKT_OK) {
        if (h.len > VSOCK_MAX_PAYLOAD || h.len > chain_len - VSOCK_HDR_SIZE || h.src_cid != cid ||
            h.dst_cid != VSOCK_HOST_CID)
            abort(); /* accepted what the parser promises to refuse */
        if (h.op != VSOCK_OP_RW && h.len != 0)
            abort();
    }
    if (e != VSOCK_PKT_SHORT) {
        (void)vsock_pkt_error_answered(e, &h);
        uint8_t again[VSOCK_HDR_SIZE];
        struct vsock_hdr h2;
        vsock_hdr_encode(&h, again);
        vsock_hdr_decode(again, &h2);
        if (h.src_cid != h2.src_cid || h.dst_cid != h2.dst_cid || h.src_port != h2.src_port ||
            h.dst_port != h2.dst_port || h.len != h2.len || h.type != h2.type || h.op != h2.op ||
            h.flags != h2.flags || h.buf_alloc != h2.buf_alloc || h.fwd_cnt != h2.fwd_cnt ||
            memcmp(again, bytes, have < sizeof(again) ? have : sizeof(again)) != 0)
            abort(); /* encode and decode disagree */
    }
}

/* ---- The host peer ---- */

struct host {
    int fds[MAX_PEERS];
    unsigned n;
    struct virtio_device *vdev;
};

static void extra(void *opaque, uint8_t op, struct fuzz_in *in)
{
    struct host *h = opaque;
    switch (op % 6) {
    case 0: { /* accept what the device connected */
        int fd;
        while (h->n < MAX_PEERS &&
               (fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
            h->fds[h->n++] = fd;
        break;
    }
    case 1: { /* a peer sends */
        if (!h->n)
            break;
        int fd = h->fds[fi_u8(in) % h->n];
        uint8_t buf[512];
        size_t len = fi_bytes(in, buf, 1 + fi_u8(in) % 64 * 8u);
        ssize_t r = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)r;
        break;
    }
    case 2: { /* a peer reads */
        if (!h->n)
            break;
        uint8_t buf[4096];
        ssize_t r = recv(h->fds[fi_u8(in) % h->n], buf, sizeof(buf), MSG_DONTWAIT);
        (void)r;
        break;
    }
    case 3: /* a peer closes or half-closes */
        if (h->n) {
            unsigned i = fi_u8(in) % h->n;
            if (fi_u8(in) & 1) {
                shutdown(h->fds[i], SHUT_WR);
            } else {
                close(h->fds[i]);
                h->fds[i] = h->fds[--h->n];
            }
        }
        break;
    case 4:
        parse_raw(in);
        break;
    default: { /* the counters */
        struct virtio_vsock_stats st;
        virtio_vsock_get_stats(h->vdev, &st);
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    fuzz_mem_reset();
    uint8_t shape = fi_u8(&in);
    struct virtio_vsock_params p = {.name = "vsock",
                                    .guest_cid = GUEST_CID,
                                    .mappings = &mapping,
                                    .mapping_count = 1,
                                    .max_conns = shape & 1 ? 2 : 0,
                                    .buf_alloc = shape & 2 ? 4096 : 0,
                                    .max_buffered = shape & 4 ? 8192 : 0,
                                    .queue_size = 32,
                                    .mem = &fake_mem};
    struct host h = {.vdev = virtio_vsock_create(&p)};
    if (!h.vdev)
        abort();
    fuzz_virtio_run(h.vdev, &in, &(struct fuzz_virtio_hooks){.extra = extra, .opaque = &h});
    virtio_device_destroy(h.vdev);
    for (unsigned i = 0; i < h.n; i++)
        close(h.fds[i]);
    /* Connections the device made and nobody accepted. */
    int fd;
    while ((fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
        close(fd);
    return 0;
}
