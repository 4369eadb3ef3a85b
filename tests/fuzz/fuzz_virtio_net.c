/* virtio-net (src/virtio/virtio_net.c) with its TAP replaced by sequenced-
 * packet socket pairs (one frame per message, as a TAP gives): the input
 * drives the device as a hostile driver (fuzz_virtio.h): transmit chains
 * of any shape and virtio-net header (GSO, checksum offsets), receive
 * buffers (mergeable or not), control-queue commands (RX modes, MAC
 * tables, multiqueue, offloads), while the host side sends frames of any
 * length and content, drains what the guest sent, or hangs up, and the
 * carrier comes and goes. The receive path runs when the device's loop
 * sees a frame (io_loop_poll on this thread). */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "virtio/virtio_net.h"

#include "fuzz_virtio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define PAIRS 2

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_logs_init();
    return 0;
}

struct host {
    int peer[PAIRS];
    bool fail_backend;
    struct virtio_device *vdev;
};

static int be_hdr_len(void *opaque, unsigned len)
{
    return ((struct host *)opaque)->fail_backend ? -1 : 0;
}

static int be_offloads(void *opaque, uint64_t features)
{
    return ((struct host *)opaque)->fail_backend ? -1 : 0;
}

static int be_pairs(void *opaque, unsigned pairs)
{
    return ((struct host *)opaque)->fail_backend ? -1 : 0;
}

static int be_filter(void *opaque, const uint8_t (*addrs)[6], unsigned count, bool all_multicast)
{
    return ((struct host *)opaque)->fail_backend ? -1 : 0;
}

static const struct virtio_net_backend_ops be_ops = {be_hdr_len, be_offloads, be_pairs, be_filter};

static void extra(void *opaque, uint8_t op, struct fuzz_in *in)
{
    struct host *h = opaque;
    switch (op % 5) {
    case 0: { /* the host sends a frame to pair i (virtio-net header included) */
        unsigned i = fi_u8(in) % PAIRS;
        static uint8_t frame[VIRTIO_NET_MAX_FRAME + 64];
        size_t len = fi_u16(in) % sizeof(frame);
        size_t have = fi_bytes(in, frame, len < 128 ? len : 128);
        /* Longer frames: the rest repeats what the input gave. */
        if (!have)
            memset(frame, 0, len);
        for (size_t k = have; have && k < len;) {
            size_t n = len - k < k ? len - k : k;
            memcpy(frame + k, frame, n);
            k += n;
        }
        if (h->peer[i] >= 0)
            (void)send(h->peer[i], frame, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        fuzz_virtio_poll(h->vdev);
        break;
    }
    case 1: { /* the host drains what the guest sent */
        static uint8_t buf[VIRTIO_NET_MAX_FRAME + 64];
        for (unsigned i = 0; i < PAIRS; i++)
            while (h->peer[i] >= 0 && recv(h->peer[i], buf, sizeof(buf), MSG_DONTWAIT) > 0)
                ;
        fuzz_virtio_poll(h->vdev);
        break;
    }
    case 2: /* carrier */
        virtio_net_set_link(h->vdev, fi_u8(in) & 1);
        break;
    case 3: { /* the host hangs up a pair */
        unsigned i = fi_u8(in) % PAIRS;
        if (h->peer[i] >= 0) {
            close(h->peer[i]);
            h->peer[i] = -1;
        }
        fuzz_virtio_poll(h->vdev);
        break;
    }
    default: {
        struct virtio_net_stats st;
        virtio_net_get_stats(h->vdev, &st);
        h->fail_backend = fi_u8(in) & 1;
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    fuzz_mem_reset();
    uint8_t shape = fi_u8(&in);
    struct host h = {.fail_backend = false};
    int dev_fd[PAIRS];
    for (unsigned i = 0; i < PAIRS; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
            abort();
        h.peer[i] = sv[0];
        dev_fd[i] = sv[1];
    }
    struct virtio_net_params p = {.name = "net0",
                                  .mac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56},
                                  .max_queue_pairs = shape & 1 ? 2 : 1,
                                  .fds = dev_fd,
                                  .rx_queue_size = 32,
                                  .tx_queue_size = 32,
                                  .backend = &be_ops,
                                  .backend_opaque = &h,
                                  .mem = &fake_mem};
    h.vdev = virtio_net_create(&p);
    if (!h.vdev)
        abort();
    fuzz_virtio_run(h.vdev, &in, &(struct fuzz_virtio_hooks){.extra = extra, .opaque = &h});
    virtio_device_destroy(h.vdev);
    for (unsigned i = 0; i < PAIRS; i++) {
        if (h.peer[i] >= 0)
            close(h.peer[i]);
        close(dev_fd[i]);
    }
    return 0;
}
