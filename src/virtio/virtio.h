/* The virtio core: everything about a virtio device that does not depend on
 * how the guest reaches it. A device model (virtio-blk, and next net,
 * console, vsock) implements struct virtio_device_ops and sees features,
 * its configuration, queue activation, notifications, drain/quiesce and
 * its own state; it never sees PCI. A transport (virtio_pci.h) maps the
 * core's registers into the guest and delivers its interrupts.
 *
 * A new virtio device (e.g. virtio-net) touches exactly:
 *   src/virtio/virtio_net.h, src/virtio/virtio_net.c  the device (ops below)
 *   src/virtio/virtio_ids.h                            only if its type or
 *                                                      PCI ID is not there yet
 *   src/main.c                                         its build function
 *                                                      (device create +
 *                                                      virtio_pci_create) and
 *                                                      its driver-table row
 *   tests/unit/test_virtio_net.c                       its tests (support/
 *                                                      vring.h drives rings)
 *
 * What the core owns (VIRTIO 1.x sections 2 and 3):
 * - the device status state machine: bits set in order, FEATURES_OK only
 *   for an acceptable feature set (a subset of the offer, VERSION_1 on the
 *   modern interface, the device's features_ok), DRIVER_OK starts the
 *   queues, a driver clearing a bit or any rule broken sets
 *   DEVICE_NEEDS_RESET (status bit 0x40) with a configuration interrupt;
 * - feature negotiation (device offer = the device's features + the ring
 *   features every device gets);
 * - queue configuration (size, addresses, enable) and activation against
 *   guest memory;
 * - the device configuration space: a buffer the device fills, read by the
 *   transport under a lock; a device that changes it at run time calls
 *   virtio_config_update/virtio_config_changed, which move the
 *   configuration generation and raise the configuration interrupt; driver
 *   writes reach the device's write_config op (dropped without one);
 * - one I/O loop per queue (core/io_loop.h) watching the queue's kick
 *   eventfd (KVM's ioeventfd target): the loop calls queue_notify;
 * - pause (loops parked after the device drained what it had in flight),
 *   resume, reset, and the state of status, features, generation and
 *   every queue.
 *
 * Locking: vdev->lock covers status, features and queue configuration; the
 * transport takes it around register accesses and calls the *_locked
 * functions. The configuration buffer has its own lock (config_lock), so a
 * device may update it from any thread. Queue processing runs on the
 * queue's loop thread under the queue's proc_lock. */
#ifndef VIRTIO_VIRTIO_H
#define VIRTIO_VIRTIO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "common/snap.h"
#include "core/guest_mem.h"
#include "core/io_loop.h"
#include "virtio/virtio_ids.h"
#include "virtio/virtqueue.h"

#define VIRTIO_MAX_QUEUES 64
#define VIRTIO_MAX_CONFIG_SIZE 0xe8 /* what the legacy I/O window leaves (0x100 - 0x18) */

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER 0x02
#define VIRTIO_STATUS_DRIVER_OK 0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

/* Feature bits every device offers on top of its own. */
#define VIRTIO_TRANSPORT_FEATURES                                                                  \
    ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_ANY_LAYOUT) |                                \
     (1ull << VIRTIO_RING_F_INDIRECT_DESC) | (1ull << VIRTIO_RING_F_EVENT_IDX))

struct virtio_device;

/* What a device model supplies. Queue ops for one queue never run
 * concurrently with each other. */
struct virtio_device_ops {
    /* The device part of the transport's state kind ("blk" makes
     * "virtio-pci-blk"). */
    const char *kind;
    /* FEATURES_OK: accept the driver's feature set? Optional. */
    bool (*features_ok)(struct virtio_device *vdev, uint64_t features);
    /* The queue's rings are active with guest memory (DRIVER_OK, a queue
     * enabled after it, or a state load): set up per-queue state. Return -1
     * to put the device into NEEDS_RESET (or refuse the load). Optional. */
    int (*activate)(struct virtio_device *vdev, unsigned queue);
    /* Loop thread, after a notification: consume available chains with
     * virtq_pop (and virtq_disable/enable_notify), completing them with
     * virtio_queue_complete(). Stop early when virtio_queue_running()
     * turns false. On VIRTQ_ERROR call virtio_device_needs_reset(). */
    void (*queue_notify)(struct virtio_device *vdev, unsigned queue);
    /* Pause: the queue's loop is parked; return once every request of the
     * queue still in flight has completed into the used ring (per-queue
     * state is kept for resume). Optional. */
    void (*drain)(struct virtio_device *vdev, unsigned queue);
    /* Resume, for a queue the device stopped in drain (one run by another
     * engine: vhost): start it again. vdev->lock held, before the queue's
     * loop resumes. Optional. */
    void (*restart)(struct virtio_device *vdev, unsigned queue);
    /* Processing stopped (reset, destroy): wait for every request still in
     * flight to complete, then free per-queue state. Once it returns, no
     * completion may touch the device (the device may be freed next), so
     * completions still in flight include their tail: a kick of the
     * queue, for one. Optional. */
    void (*quiesce)(struct virtio_device *vdev, unsigned queue);
    /* The driver moved an active queue's interrupt (a new MSI-X vector):
     * a device that gave another engine virtio_queue_irqfd fetches it
     * again. vdev->lock held. Optional. */
    void (*interrupt_moved)(struct virtio_device *vdev, unsigned queue);
    /* Device reset (status 0 or a machine reset), queues already quiesced:
     * the device's own run-time state back to power-on. Optional. */
    void (*reset)(struct virtio_device *vdev);
    /* A driver write of size bytes at offset of the configuration space,
     * config_lock held: change vdev->config as the device allows (a driver
     * write is no configuration change: the generation stays, and this op
     * must not call virtio_config_update/changed). Optional (without it,
     * writes are dropped). */
    void (*write_config)(struct virtio_device *vdev, unsigned offset, unsigned size,
                         uint64_t value);
    /* The device's own state fields (the core saved its part already);
     * called with the device paused. Optional. */
    int (*state)(struct virtio_device *vdev, struct snap *s);
    /* State dump: the device's own view of a queue (requests in flight),
     * one short phrase. Must not block for long. Optional. */
    void (*describe_queue)(struct virtio_device *vdev, unsigned queue, char *buf, size_t cap);
    /* Frees the device; the core has released everything of its own. */
    void (*destroy)(struct virtio_device *vdev);
};

/* What the transport supplies: interrupts and whether the device may do
 * DMA (bus mastering). Called from any thread, no core lock held. */
struct virtio_transport_ops {
    void (*queue_interrupt)(void *opaque, unsigned queue);
    void (*config_interrupt)(void *opaque);
    /* An eventfd whose every write raises the queue's interrupt in the
     * guest without us (an MSI-X vector's irqfd), for an engine that
     * signals by itself; -1 when there is none. Optional. */
    int (*queue_irqfd)(void *opaque, unsigned queue);
    bool (*dma_enabled)(void *opaque);
};

struct virtio_device_params {
    const char *name;     /* the [dev.NAME] section name, kept */
    uint16_t device_type; /* VIRTIO_ID_* */
    unsigned num_queues;  /* 1..VIRTIO_MAX_QUEUES */
    uint16_t queue_size;  /* maximum (and legacy) queue size: power of two */
    uint64_t features;    /* device-specific features (bits 0-23, 50+) */
    unsigned config_size; /* <= VIRTIO_MAX_CONFIG_SIZE; the device fills vdev->config */
    const struct virtio_device_ops *ops;
    const struct guest_mem *mem;
};

struct virtio_queue {
    struct virtq vq;
    struct virtio_device *vdev;
    unsigned index;
    bool enabled;   /* the driver set queue_enable / a legacy PFN (under vdev->lock) */
    bool activated; /* rings active and the device's activate done (under vdev->lock) */
    _Atomic bool running;
    int kick_fd; /* eventfd: ioeventfd target and the transport's doorbell */
    struct io_loop loop;
    struct io_watch kick_watch;
    char loop_name[16];
    bool loop_started;
    pthread_mutex_t proc_lock; /* held while the device processes the queue */
};

struct virtio_device {
    const char *name;
    uint16_t device_type;
    const struct virtio_device_ops *ops;
    const struct guest_mem *mem;

    const struct virtio_transport_ops *transport;
    void *transport_opaque;

    pthread_mutex_t lock; /* status, features, queue configuration */
    uint8_t status;       /* as the driver set it, without NEEDS_RESET */
    bool legacy_driver;   /* the driver uses the legacy interface */
    uint64_t device_features;
    _Atomic uint64_t driver_features; /* as written by the driver */
    _Atomic bool needs_reset;

    pthread_mutex_t config_lock; /* config and the generation */
    uint8_t *config;
    unsigned config_size;
    _Atomic uint32_t config_generation;

    unsigned num_queues;
    struct virtio_queue *queues;
    _Atomic bool paused; /* between virtio_device_pause and virtio_device_resume */

    struct log_ratelimit log;     /* register-level complaints */
    struct log_ratelimit vq_log;  /* ring walker errors */
    struct log_ratelimit dev_log; /* for the device model's own messages */
};

/* ---- Setup (device models) ---- */

/* Sets the core up (queues, their eventfds and loops, not yet started).
 * Returns 0, or -1 (logged, nothing left allocated). */
int virtio_device_init(struct virtio_device *vdev, const struct virtio_device_params *params);
/* Called by the transport once it is wired: starts the queue loops.
 * Returns 0, or -1 (logged). */
int virtio_device_attach(struct virtio_device *vdev, const struct virtio_transport_ops *ops,
                         void *opaque);
/* Quiesces and stops everything, frees the core's memory, then calls the
 * device's destroy op. */
void virtio_device_destroy(struct virtio_device *vdev);

/* ---- For device models ---- */

/* The queue is active and the device not broken: keep processing. */
bool virtio_queue_running(struct virtio_device *vdev, unsigned queue);
/* Returns a chain (to the used ring) and interrupts the driver if it asked
 * for it. Any thread. */
void virtio_queue_complete(struct virtio_device *vdev, unsigned queue, uint16_t head, uint32_t len);
/* Wakes the queue's loop (e.g. when request slots free up). Any thread;
 * takes no lock (an eventfd write). */
void virtio_queue_kick(struct virtio_device *vdev, unsigned queue);
/* The queue's ring (for virtq_pop and friends). */
struct virtq *virtio_queue_ring(struct virtio_device *vdev, unsigned queue);
/* Batched completion: a device that returns many chains with virtq_push
 * (ORing what each push returned) raises the queue's interrupt once, with
 * this, if any push asked for one. Any thread. */
void virtio_queue_interrupt(struct virtio_device *vdev, unsigned queue);
/* Gives back the last n chains virtq_pop returned and the device did not
 * complete (they are popped again next time, in the same order): for a
 * device that pops buffers before it knows how many it needs. Queue
 * processing only. */
void virtio_queue_unpop(struct virtio_device *vdev, unsigned queue, uint16_t n);
/* The queue's I/O loop, for a device watching a descriptor of its own
 * there (a TAP on its receive queue). Such a watch's callback runs on the
 * loop's thread and processes the queue only through
 * virtio_queue_process. */
struct io_loop *virtio_queue_loop(struct virtio_device *vdev, unsigned queue);
/* On the queue's loop thread: what a kick does (queue_notify under the
 * queue's processing lock) without the eventfd. Returns false, not having
 * called queue_notify, when the queue is not running or bus mastering is
 * off (the caller stops watching until the next kick). */
bool virtio_queue_process(struct virtio_device *vdev, unsigned queue);
/* Before virtio_device_attach: queue `queue` offers at most size entries
 * (a power of two up to the params' queue_size), for devices whose queues
 * differ. Returns 0, or -1 (logged). */
int virtio_queue_set_max_size(struct virtio_device *vdev, unsigned queue, uint16_t size);
/* A queue run by another engine (vhost) from its activate op to its
 * quiesce op; vdev->lock held (the ops that call these run under it).
 * hand_off: the queue's loop stops watching the kick eventfd, which it
 * returns for the engine to wait on (it stays the core's). sync: the ring
 * positions where the engine stopped (its next available index; the used
 * index is read from the ring); the next interrupt is decided afresh.
 * take_back: the loop watches the kick eventfd again (kicks that came
 * meanwhile are dropped: the queue is being stopped). */
int virtio_queue_hand_off(struct virtio_device *vdev, unsigned queue);
/* The transport's eventfd for the queue's interrupt (queue_irqfd), or -1:
 * the engine then signals an eventfd of the device's, which relays. */
int virtio_queue_irqfd(struct virtio_device *vdev, unsigned queue);
void virtio_queue_sync(struct virtio_device *vdev, unsigned queue, uint16_t last_avail);
/* Transport, vdev->lock held: the queue's interrupt vector changed. */
void virtio_queue_interrupt_moved_locked(struct virtio_device *vdev, unsigned queue);
void virtio_queue_take_back(struct virtio_device *vdev, unsigned queue);
/* True between virtio_device_pause and virtio_device_resume (an activate
 * op then leaves another engine stopped until its restart op). */
bool virtio_device_paused(struct virtio_device *vdev);
/* Device error: DEVICE_NEEDS_RESET + configuration interrupt; processing
 * stops until the driver resets the device. Any thread, no lock held. */
void virtio_device_needs_reset(struct virtio_device *vdev, const char *why);
/* Negotiated features (valid from FEATURES_OK / DRIVER_OK). */
uint64_t virtio_features(struct virtio_device *vdev);
/* Replaces len bytes of the configuration at offset, then as
 * virtio_config_changed. Any thread. */
void virtio_config_update(struct virtio_device *vdev, unsigned offset, const void *data,
                          size_t len);
/* The device changed its configuration: the generation moves and the
 * driver gets a configuration-change interrupt. */
void virtio_config_changed(struct virtio_device *vdev);

/* ---- For transports ---- */

/* Configuration space access (bytes past the end read 0). */
uint64_t virtio_config_read(struct virtio_device *vdev, unsigned offset, unsigned size);
void virtio_config_write(struct virtio_device *vdev, unsigned offset, unsigned size,
                         uint64_t value);
uint32_t virtio_config_generation(struct virtio_device *vdev);

/* Status as the driver reads it (NEEDS_RESET included). */
uint8_t virtio_status(struct virtio_device *vdev);
/* A status write (vdev->lock held). 0 (or only NEEDS_RESET) resets the
 * device: the caller resets its own registers too. legacy: written
 * through the legacy interface. */
void virtio_set_status_locked(struct virtio_device *vdev, uint8_t value, bool legacy);
/* Virtio reset (vdev->lock held): queues quiesced and cleared, status and
 * features 0. */
void virtio_reset_locked(struct virtio_device *vdev);
/* Driver feature writes (vdev->lock held): the modern 32-bit word `word`
 * (ignored after FEATURES_OK), or the legacy guest features (ignored
 * after DRIVER_OK; bits not offered dropped). */
void virtio_set_driver_features_locked(struct virtio_device *vdev, unsigned word, uint32_t value);
void virtio_set_legacy_features_locked(struct virtio_device *vdev, uint32_t value);

/* Queue configuration (vdev->lock held; queue < num_queues). Writes to an
 * enabled queue are ignored (logged). */
void virtio_queue_set_size_locked(struct virtio_device *vdev, unsigned queue, uint64_t size);
enum virtio_ring_part { VIRTIO_RING_DESC, VIRTIO_RING_AVAIL, VIRTIO_RING_USED };
void virtio_queue_set_addr_locked(struct virtio_device *vdev, unsigned queue,
                                  enum virtio_ring_part part, uint64_t gpa);
uint64_t virtio_queue_addr(struct virtio_device *vdev, unsigned queue, enum virtio_ring_part part);
/* queue_enable (only 1 is allowed: there is no disable). */
void virtio_queue_enable_locked(struct virtio_device *vdev, unsigned queue, uint64_t value);
/* The legacy queue address register: pfn 0 releases the queue. */
void virtio_queue_set_legacy_pfn_locked(struct virtio_device *vdev, unsigned queue, uint32_t pfn);

/* Pause: parks every queue's loop, then waits for the device to drain its
 * requests in flight. Resume calls the device's restart op for the active
 * queues and restarts the loops (work that arrived while paused, a kick
 * from a state load included, is picked up then). */
void virtio_device_pause(struct virtio_device *vdev);
void virtio_device_resume(struct virtio_device *vdev);
/* The core's state then the device's (the transport wraps it in
 * snap_enter(s, "virtio")). A load resets the device first, validates
 * every field, then re-activates the queues that were active (against
 * guest memory) and kicks them. */
int virtio_device_state(struct virtio_device *vdev, struct snap *s);
/* For a state dump: queue i's ring indexes, and the device's own phrase
 * about it (empty without one); waits at most 100 ms for any lock. */
void virtio_describe_queue(struct virtio_device *vdev, unsigned queue, char *ring, size_t ring_cap,
                           char *device, size_t device_cap);

#endif
