/* A hostile virtio driver for the virtio device targets: the input is a
 * sequence of operations on the virtio core (status, features, queue
 * configuration, configuration space, reset), guest-memory writes, and
 * notifications. The device is not wired to a transport: its queue loops
 * never start, and a notification is the real kick (the queue's eventfd)
 * followed by io_loop_poll on this thread, so the queue's processing runs
 * synchronously, as on its loop thread. */
#ifndef TESTS_FUZZ_FUZZ_VIRTIO_H
#define TESTS_FUZZ_FUZZ_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio/virtio.h"

#include "fuzz_support.h"

/* Where queue q's rings go when the driver takes the usual layout (op
 * "queue setup"): a 2 KiB window each, queues 0..7; buffers and indirect
 * tables come after. */
#define FUZZ_VQ_WINDOW 0x800ull
#define FUZZ_VQ_MAX_SIZE 32u
#define FUZZ_VQ_DATA 0x4000ull

/* Queue q's window: descriptors at +0, avail ring at +0x200, used ring
 * at +0x300. */
uint64_t fuzz_vq_base(unsigned q);
/* Writes a chain from the input into the rings at base (a queue of `size`
 * entries): up to 8 descriptors from a head the input picks, in the ring's
 * table or an indirect table in the data area, usually linked in order,
 * sometimes anywhere; then makes the head available. */
void fuzz_vq_post(uint64_t base, uint16_t size, struct fuzz_in *in);

/* Dispatches every event pending on the queues' loops (kicks, and the
 * sockets a device watches there). */
void fuzz_virtio_poll(struct virtio_device *vdev);

/* One operation from the input; returns false for an opcode it does not
 * know (the target's own operations use those). */
bool fuzz_virtio_op(struct virtio_device *vdev, uint8_t op, struct fuzz_in *in);

/* Negotiates every offered feature and starts every queue with the usual
 * layout and size `size` (what most inputs begin with, given as the first
 * byte: bit 7 set skips the bring-up). */
void fuzz_virtio_bring_up(struct virtio_device *vdev, uint16_t size);

/* What a target adds to the common operations. */
struct fuzz_virtio_hooks {
    /* The target's own opcodes (0..31). Optional. */
    void (*extra)(void *opaque, uint8_t op, struct fuzz_in *in);
    /* Before an operation that may quiesce a queue (status, PFN, reset,
     * pause) and before the device is destroyed: a back end holding
     * requests completes them, as a real one would on its own threads
     * (the quiesce waits for them on this one). Optional. */
    void (*settle)(void *opaque);
    void *opaque;
};

/* Runs the input: an optional bring-up, then operations until it ends. */
void fuzz_virtio_run(struct virtio_device *vdev, struct fuzz_in *in,
                     const struct fuzz_virtio_hooks *hooks);

#endif
