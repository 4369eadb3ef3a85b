/* Split virtqueues (VIRTIO 1.x section 2.7, and the legacy layout): the one
 * descriptor walker every virtio device model uses.
 *
 * Every guest address and length goes through core/guest_mem: the rings are
 * checked once when the queue is activated (alignment, inside RAM, writable
 * where the device writes), and every buffer of every chain is checked as it
 * is walked. Anything a well-behaved driver cannot produce - a loop, a chain
 * longer than the queue, nested indirect tables, a buffer outside RAM or
 * spanning a hole, an address+length that overflows, an available index
 * that jumps by more than the queue size - makes virtq_pop() log (rate
 * limited, naming the device and queue) and return VIRTQ_ERROR; the
 * transport then puts the device into DEVICE_NEEDS_RESET. No loop and no
 * allocation here is driven by guest values.
 *
 * Threading: one thread pops (the queue's worker); any threads push, pushes
 * being serialized by the queue's used-ring lock. Ring indices in guest
 * memory are accessed atomically with the barriers the spec requires. */
#ifndef VIRTIO_VIRTQUEUE_H
#define VIRTIO_VIRTQUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/iov.h"
#include "common/log.h"
#include "core/guest_mem.h"

#define VIRTQ_MAX_SIZE 32768
#define VIRTQ_DESC_SIZE 16
#define VIRTQ_LEGACY_ALIGN 4096

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

/* Ring feature bits (shared by every device). */
#define VIRTIO_F_NOTIFY_ON_EMPTY 24
#define VIRTIO_F_ANY_LAYOUT 27
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

/* A popped chain: its head (to return through virtq_push) and its buffers
 * as host iovecs, the device-readable ones first (iov[0..nout)), then the
 * device-writable ones (iov[nout..nout+nin)). The caller provides iov. */
struct virtq_chain {
    uint16_t head;
    unsigned nout, nin;
    uint64_t out_bytes, in_bytes;
    struct iovec *iov;
    unsigned iov_cap; /* a chain with more buffers is a VIRTQ_ERROR */
};

enum virtq_pop_result {
    VIRTQ_EMPTY = 0, /* nothing available */
    VIRTQ_CHAIN = 1, /* chain filled in */
    VIRTQ_ERROR = -1 /* the driver broke the rules (logged); stop using the queue */
};

struct virtq {
    /* For messages: "<device> queue <index>". */
    const char *dev_name;
    unsigned index;
    struct log_ratelimit *log;

    /* Configuration, written by the transport while the queue is inactive. */
    uint16_t size;     /* power of two, <= max_size */
    uint16_t max_size; /* what the device offers */
    uint64_t desc_gpa, avail_gpa, used_gpa;

    /* Valid while active. */
    bool active;
    bool event_idx, indirect;
    const struct guest_mem *mem;
    uint8_t *desc, *avail, *used; /* host views of the three rings */
    uint16_t last_avail;          /* next avail entry to consume (popper only) */

    pthread_mutex_t used_lock;
    uint16_t used_idx;       /* our copy of used->idx (under used_lock) */
    uint16_t signalled_used; /* used_idx at the last interrupt (event idx) */
    bool signalled_valid;
};

/* One-time setup; max_size a power of two <= VIRTQ_MAX_SIZE. */
void virtq_init(struct virtq *vq, const char *dev_name, unsigned index, uint16_t max_size,
                struct log_ratelimit *log);
void virtq_destroy(struct virtq *vq);
/* Back to the unconfigured state (size = max_size, addresses 0, inactive). */
void virtq_reset(struct virtq *vq);

/* Legacy layout: the three rings at page frame pfn (desc, avail, then used at
 * the next 4 KiB boundary) for the current size. */
void virtq_set_legacy_pfn(struct virtq *vq, uint32_t pfn);
/* True if size is a power of two in 1..max_size. */
bool virtq_size_valid(const struct virtq *vq, uint64_t size);

/* Checks the configured rings against guest memory and starts using them
 * with the negotiated features (bit numbers as in VIRTIO_RING_F_*). Returns
 * false (logged) if a ring is misaligned or not wholly in guest RAM. */
bool virtq_activate(struct virtq *vq, const struct guest_mem *mem, uint64_t features);
void virtq_deactivate(struct virtq *vq);
/* After virtq_activate, for a state load: the ring positions as saved
 * (caller validated them against the size). */
void virtq_restore(struct virtq *vq, uint16_t last_avail, uint16_t used_idx,
                   uint16_t signalled_used, bool signalled_valid);

/* Takes the next available chain (popper thread). */
enum virtq_pop_result virtq_pop(struct virtq *vq, struct virtq_chain *chain);
/* Returns a chain to the driver with len bytes written into its writable
 * buffers. Returns true if the driver wants an interrupt now (flags or
 * used_event, with the barrier the spec asks for). Any thread. */
bool virtq_push(struct virtq *vq, uint16_t head, uint32_t len);
/* Returns n chains at once: the driver sees the new used index only after
 * every element is written (a merged receive frame, VIRTIO 5.1.6.4.2: its
 * buffers are used together). Same return as virtq_push. */
bool virtq_push_many(struct virtq *vq, const uint16_t *heads, const uint32_t *lens, unsigned n);

/* Driver-to-device notification suppression (popper thread): disable while
 * draining the ring; enable returns true if more buffers arrived meanwhile
 * (then drain again). */
void virtq_disable_notify(struct virtq *vq);
bool virtq_enable_notify(struct virtq *vq);
/* True if the available ring holds entries not yet popped. */
bool virtq_has_available(struct virtq *vq);

/* For the state dump: the ring indexes in guest memory and ours. The caller
 * keeps the queue's configuration stable; last_avail is shown only when the
 * caller holds the popper off (popper_idle), else "busy". */
void virtq_describe(struct virtq *vq, bool popper_idle, char *buf, size_t cap);

/* Ring sizes in bytes for a queue of n entries (event fields included). */
uint64_t virtq_desc_bytes(unsigned n);
uint64_t virtq_avail_bytes(unsigned n);
uint64_t virtq_used_bytes(unsigned n);

#endif
