#include "virtio/virtio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/sync.h"

#define STATUS_DRIVER_BITS                                                                         \
    (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK |                  \
     VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED)

/* ---- Interrupts and small helpers ---- */

static void queue_interrupt(struct virtio_device *vdev, unsigned queue)
{
    if (vdev->transport)
        vdev->transport->queue_interrupt(vdev->transport_opaque, queue);
}

static void config_interrupt(struct virtio_device *vdev)
{
    if (vdev->transport)
        vdev->transport->config_interrupt(vdev->transport_opaque);
}

static bool dma_enabled(struct virtio_device *vdev)
{
    return !vdev->transport || !vdev->transport->dma_enabled ||
           vdev->transport->dma_enabled(vdev->transport_opaque);
}

void virtio_queue_kick(struct virtio_device *vdev, unsigned queue)
{
    if (queue >= vdev->num_queues)
        return;
    uint64_t one = 1;
    ssize_t r = write(vdev->queues[queue].kick_fd, &one, sizeof(one));
    (void)r; /* a saturated counter still wakes the loop */
}

bool virtio_queue_running(struct virtio_device *vdev, unsigned queue)
{
    return queue < vdev->num_queues && atomic_load(&vdev->queues[queue].running) &&
           !atomic_load(&vdev->needs_reset);
}

struct virtq *virtio_queue_ring(struct virtio_device *vdev, unsigned queue)
{
    return &vdev->queues[queue].vq;
}

void virtio_queue_complete(struct virtio_device *vdev, unsigned queue, uint16_t head, uint32_t len)
{
    if (queue < vdev->num_queues && virtq_push(&vdev->queues[queue].vq, head, len))
        queue_interrupt(vdev, queue);
}

void virtio_device_needs_reset(struct virtio_device *vdev, const char *why)
{
    if (atomic_exchange(&vdev->needs_reset, true))
        return;
    log_limited(&vdev->log, LOG_ERROR, "%s: device error, set DEVICE_NEEDS_RESET: %s", vdev->name,
                why);
    config_interrupt(vdev);
}

uint64_t virtio_features(struct virtio_device *vdev)
{
    return atomic_load(&vdev->driver_features) & vdev->device_features;
}

uint8_t virtio_status(struct virtio_device *vdev)
{
    return vdev->status | (atomic_load(&vdev->needs_reset) ? VIRTIO_STATUS_NEEDS_RESET : 0);
}

/* ---- Configuration space ---- */

uint64_t virtio_config_read(struct virtio_device *vdev, unsigned offset, unsigned size)
{
    pthread_mutex_lock(&vdev->config_lock);
    unsigned avail = offset < vdev->config_size ? vdev->config_size - offset : 0;
    uint64_t value = avail ? le_load(vdev->config + offset, size < avail ? size : avail) : 0;
    pthread_mutex_unlock(&vdev->config_lock);
    return value;
}

void virtio_config_write(struct virtio_device *vdev, unsigned offset, unsigned size, uint64_t value)
{
    if (!vdev->ops->write_config) {
        log_limited(&vdev->log, LOG_DEBUG, "%s: write to device config offset 0x%x ignored",
                    vdev->name, offset);
        return;
    }
    pthread_mutex_lock(&vdev->config_lock);
    vdev->ops->write_config(vdev, offset, size, value);
    pthread_mutex_unlock(&vdev->config_lock);
}

uint32_t virtio_config_generation(struct virtio_device *vdev)
{
    return atomic_load(&vdev->config_generation);
}

void virtio_config_update(struct virtio_device *vdev, unsigned offset, const void *data, size_t len)
{
    pthread_mutex_lock(&vdev->config_lock);
    if (offset > vdev->config_size || len > vdev->config_size - offset) {
        pthread_mutex_unlock(&vdev->config_lock);
        log_error("%s: configuration update of %zu bytes at 0x%x is outside its %u bytes",
                  vdev->name, len, offset, vdev->config_size);
        return;
    }
    memcpy(vdev->config + offset, data, len);
    /* Inside the lock: a driver reading the generation around its reads
     * sees it move if any of its reads saw the new bytes. */
    atomic_fetch_add(&vdev->config_generation, 1);
    pthread_mutex_unlock(&vdev->config_lock);
    config_interrupt(vdev);
}

void virtio_config_changed(struct virtio_device *vdev)
{
    pthread_mutex_lock(&vdev->config_lock);
    atomic_fetch_add(&vdev->config_generation, 1);
    pthread_mutex_unlock(&vdev->config_lock);
    config_interrupt(vdev);
}

/* ---- Queue loops ---- */

static bool queue_process(struct virtio_queue *q)
{
    struct virtio_device *vdev = q->vdev;
    bool processed = false;
    pthread_mutex_lock(&q->proc_lock);
    if (!virtio_queue_running(vdev, q->index)) {
        log_limited(&vdev->log, LOG_WARNING,
                    "%s: notify for queue %u while it is not running (device %s); ignored",
                    vdev->name, q->index,
                    atomic_load(&vdev->needs_reset) ? "needs reset" : "not ready");
    } else if (!dma_enabled(vdev)) {
        log_limited(&vdev->log, LOG_WARNING,
                    "%s: notify for queue %u with bus mastering disabled; ignored", vdev->name,
                    q->index);
    } else {
        vdev->ops->queue_notify(vdev, q->index);
        processed = true;
    }
    pthread_mutex_unlock(&q->proc_lock);
    return processed;
}

static void queue_kicked(void *opaque, uint32_t events)
{
    struct virtio_queue *q = opaque;
    uint64_t count;
    if (read(q->kick_fd, &count, sizeof(count)) < 0)
        return; /* EAGAIN: another read took it */
    queue_process(q);
}

bool virtio_queue_process(struct virtio_device *vdev, unsigned queue)
{
    return queue < vdev->num_queues && queue_process(&vdev->queues[queue]);
}

struct io_loop *virtio_queue_loop(struct virtio_device *vdev, unsigned queue)
{
    return &vdev->queues[queue].loop;
}

void virtio_queue_interrupt(struct virtio_device *vdev, unsigned queue)
{
    if (queue < vdev->num_queues)
        queue_interrupt(vdev, queue);
}

void virtio_queue_unpop(struct virtio_device *vdev, unsigned queue, uint16_t n)
{
    if (queue < vdev->num_queues)
        vdev->queues[queue].vq.last_avail -= n;
}

int virtio_queue_hand_off(struct virtio_device *vdev, unsigned queue)
{
    struct virtio_queue *q = &vdev->queues[queue];
    if (q->kick_watch.fd >= 0)
        io_loop_unwatch(&q->loop, &q->kick_watch);
    return q->kick_fd;
}

int virtio_queue_irqfd(struct virtio_device *vdev, unsigned queue)
{
    if (queue >= vdev->num_queues || !vdev->transport || !vdev->transport->queue_irqfd)
        return -1;
    return vdev->transport->queue_irqfd(vdev->transport_opaque, queue);
}

void virtio_queue_interrupt_moved_locked(struct virtio_device *vdev, unsigned queue)
{
    if (queue < vdev->num_queues && vdev->queues[queue].activated && vdev->ops->interrupt_moved)
        vdev->ops->interrupt_moved(vdev, queue);
}

void virtio_queue_sync(struct virtio_device *vdev, unsigned queue, uint16_t last_avail)
{
    struct virtq *vq = &vdev->queues[queue].vq;
    virtq_restore(vq, last_avail, le16_load(vq->used + 2), 0, false);
}

void virtio_queue_take_back(struct virtio_device *vdev, unsigned queue)
{
    struct virtio_queue *q = &vdev->queues[queue];
    if (q->kick_watch.fd >= 0)
        return;
    uint64_t count;
    ssize_t r = read(q->kick_fd, &count, sizeof(count));
    (void)r; /* EAGAIN: no kick pending */
    io_loop_pause(&q->loop);
    if (io_loop_watch(&q->loop, &q->kick_watch, q->kick_fd, EPOLLIN, queue_kicked, q) < 0)
        log_error("%s: queue %u: its kicks are no longer watched", vdev->name, queue);
    io_loop_resume(&q->loop);
}

bool virtio_device_paused(struct virtio_device *vdev)
{
    return atomic_load(&vdev->paused);
}

int virtio_queue_set_max_size(struct virtio_device *vdev, unsigned queue, uint16_t size)
{
    if (queue >= vdev->num_queues || vdev->transport || size == 0 || (size & (size - 1)) ||
        size > vdev->queues[queue].vq.max_size) {
        log_error("%s: queue %u: maximum size %u refused (a power of two up to %u, before attach)",
                  vdev->name, queue, size,
                  queue < vdev->num_queues ? vdev->queues[queue].vq.max_size : 0);
        return -1;
    }
    vdev->queues[queue].vq.max_size = size;
    vdev->queues[queue].vq.size = size;
    return 0;
}

/* ---- Queue activation ---- */

/* vdev->lock held. */
static int activate_queue_locked(struct virtio_device *vdev, struct virtio_queue *q)
{
    if (!q->enabled || q->activated)
        return 0;
    if (!virtq_activate(&q->vq, vdev->mem, virtio_features(vdev)))
        return -1;
    if (vdev->ops->activate && vdev->ops->activate(vdev, q->index) < 0) {
        virtq_deactivate(&q->vq);
        return -1;
    }
    q->activated = true;
    atomic_store(&q->running, true);
    virtio_queue_kick(vdev, q->index); /* buffers posted before DRIVER_OK */
    return 0;
}

/* vdev->lock held. Stops processing and drains the queue's requests. */
static void deactivate_queue_locked(struct virtio_device *vdev, struct virtio_queue *q)
{
    if (!q->activated)
        return;
    atomic_store(&q->running, false);
    /* The loop checks `running` under proc_lock: once we hold it, the
     * loop is idle and will not start another batch. */
    pthread_mutex_lock(&q->proc_lock);
    pthread_mutex_unlock(&q->proc_lock);
    if (vdev->ops->quiesce)
        vdev->ops->quiesce(vdev, q->index);
    virtq_deactivate(&q->vq);
    q->activated = false;
}

static void activate_queues_locked(struct virtio_device *vdev)
{
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        if (activate_queue_locked(vdev, &vdev->queues[i]) < 0) {
            virtio_device_needs_reset(vdev, "a queue could not be started");
            return;
        }
    }
}

void virtio_reset_locked(struct virtio_device *vdev)
{
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        struct virtio_queue *q = &vdev->queues[i];
        deactivate_queue_locked(vdev, q);
        virtq_reset(&q->vq);
        q->enabled = false;
    }
    if (vdev->ops->reset)
        vdev->ops->reset(vdev);
    atomic_store(&vdev->driver_features, 0);
    vdev->status = 0;
    vdev->legacy_driver = false;
    atomic_store(&vdev->needs_reset, false);
}

/* ---- Status and features ---- */

/* The order the spec gives the driver (3.1.1); legacy drivers set
 * DRIVER_OK without FEATURES_OK. */
static bool status_ordered(uint8_t status, bool legacy)
{
    return (!(status & VIRTIO_STATUS_DRIVER) || (status & VIRTIO_STATUS_ACKNOWLEDGE)) &&
           (!(status & VIRTIO_STATUS_FEATURES_OK) || (status & VIRTIO_STATUS_DRIVER)) &&
           (!(status & VIRTIO_STATUS_DRIVER_OK) || (status & VIRTIO_STATUS_DRIVER)) &&
           (!(status & VIRTIO_STATUS_DRIVER_OK) || legacy || (status & VIRTIO_STATUS_FEATURES_OK));
}

/* Why features cannot be accepted, or NULL. */
static const char *features_refusal(struct virtio_device *vdev, uint64_t features, bool legacy)
{
    if (features & ~vdev->device_features)
        return "features the device does not offer";
    if (!legacy && !(features & (1ull << VIRTIO_F_VERSION_1)))
        return "the modern interface without VIRTIO_F_VERSION_1";
    if (vdev->ops->features_ok && !vdev->ops->features_ok(vdev, features))
        return "a feature set the device refuses";
    return NULL;
}

static bool features_acceptable_locked(struct virtio_device *vdev)
{
    uint64_t features = atomic_load(&vdev->driver_features);
    const char *why = features_refusal(vdev, features, vdev->legacy_driver);
    if (!why)
        return true;
    if (features & ~vdev->device_features)
        log_limited(&vdev->log, LOG_WARNING,
                    "%s: driver accepted features 0x%llx the device does not offer; "
                    "FEATURES_OK refused",
                    vdev->name, (unsigned long long)(features & ~vdev->device_features));
    else
        log_limited(&vdev->log, LOG_WARNING, "%s: feature set 0x%llx refused (%s)", vdev->name,
                    (unsigned long long)features, why);
    return false;
}

void virtio_set_status_locked(struct virtio_device *vdev, uint8_t value, bool legacy)
{
    uint8_t status = value & (uint8_t)~VIRTIO_STATUS_NEEDS_RESET; /* device-owned bit */
    if (status == 0) {
        virtio_reset_locked(vdev);
        return;
    }
    if (legacy)
        vdev->legacy_driver = true;
    uint8_t old = vdev->status;
    if (status == old)
        return;
    if (old & ~status) {
        char why[96];
        snprintf(why, sizeof(why), "driver cleared status bits (0x%02x -> 0x%02x)", old, status);
        virtio_device_needs_reset(vdev, why);
        return;
    }
    if (!status_ordered(status, vdev->legacy_driver)) {
        log_limited(&vdev->log, LOG_WARNING,
                    "%s: device status 0x%02x written out of order (was 0x%02x); ignored",
                    vdev->name, status, old);
        return;
    }
    uint8_t new_bits = status & (uint8_t)~old;
    if ((new_bits & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable_locked(vdev)) {
        /* Not reflecting FEATURES_OK tells the driver the set was refused. */
        status &= (uint8_t) ~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
        new_bits &= (uint8_t) ~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
    }
    if ((new_bits & VIRTIO_STATUS_DRIVER_OK) && vdev->legacy_driver &&
        !features_acceptable_locked(vdev)) {
        status &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
        new_bits &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
    }
    vdev->status = status;
    if (new_bits & VIRTIO_STATUS_DRIVER_OK)
        activate_queues_locked(vdev);
}

void virtio_set_driver_features_locked(struct virtio_device *vdev, unsigned word, uint32_t value)
{
    if (vdev->status & VIRTIO_STATUS_FEATURES_OK) {
        log_limited(&vdev->log, LOG_WARNING,
                    "%s: driver features written after FEATURES_OK; ignored", vdev->name);
        return;
    }
    if (word >= 2)
        return;
    unsigned shift = 32 * word;
    uint64_t features = (atomic_load(&vdev->driver_features) & ~(0xffffffffull << shift)) |
                        (uint64_t)value << shift;
    atomic_store(&vdev->driver_features, features);
}

void virtio_set_legacy_features_locked(struct virtio_device *vdev, uint32_t value)
{
    if (vdev->status & VIRTIO_STATUS_DRIVER_OK) {
        log_limited(&vdev->log, LOG_WARNING, "%s: guest features written after DRIVER_OK; ignored",
                    vdev->name);
        return;
    }
    vdev->legacy_driver = true;
    atomic_store(&vdev->driver_features, value & (uint32_t)vdev->device_features);
}

/* ---- Queue configuration ---- */

static bool queue_frozen(struct virtio_device *vdev, struct virtio_queue *q, const char *what)
{
    if (q->enabled)
        log_limited(&vdev->log, LOG_WARNING,
                    "%s: queue %u %s written while the queue is enabled; ignored", vdev->name,
                    q->index, what);
    return q->enabled;
}

void virtio_queue_set_size_locked(struct virtio_device *vdev, unsigned queue, uint64_t size)
{
    struct virtio_queue *q = &vdev->queues[queue];
    if (queue_frozen(vdev, q, "size"))
        return;
    if (!virtq_size_valid(&q->vq, size)) {
        log_limited(&vdev->log, LOG_WARNING,
                    "%s: queue %u size %llu is not a power of two in 1..%u; kept %u", vdev->name,
                    q->index, (unsigned long long)size, q->vq.max_size, q->vq.size);
        return;
    }
    q->vq.size = (uint16_t)size;
}

static uint64_t *ring_addr(struct virtq *vq, enum virtio_ring_part part)
{
    switch (part) {
    case VIRTIO_RING_DESC:
        return &vq->desc_gpa;
    case VIRTIO_RING_AVAIL:
        return &vq->avail_gpa;
    default:
        return &vq->used_gpa;
    }
}

void virtio_queue_set_addr_locked(struct virtio_device *vdev, unsigned queue,
                                  enum virtio_ring_part part, uint64_t gpa)
{
    struct virtio_queue *q = &vdev->queues[queue];
    if (!queue_frozen(vdev, q, "address"))
        *ring_addr(&q->vq, part) = gpa;
}

uint64_t virtio_queue_addr(struct virtio_device *vdev, unsigned queue, enum virtio_ring_part part)
{
    return *ring_addr(&vdev->queues[queue].vq, part);
}

void virtio_queue_enable_locked(struct virtio_device *vdev, unsigned queue, uint64_t value)
{
    struct virtio_queue *q = &vdev->queues[queue];
    if (value != 1) {
        log_limited(&vdev->log, LOG_WARNING,
                    "%s: queue %u: queue_enable write of %llu ignored (only 1 is allowed)",
                    vdev->name, q->index, (unsigned long long)value);
        return;
    }
    if (q->enabled)
        return;
    q->enabled = true;
    if ((vdev->status & VIRTIO_STATUS_DRIVER_OK) && activate_queue_locked(vdev, q) < 0)
        virtio_device_needs_reset(vdev, "a queue enabled after DRIVER_OK is unusable");
}

void virtio_queue_set_legacy_pfn_locked(struct virtio_device *vdev, unsigned queue, uint32_t pfn)
{
    struct virtio_queue *q = &vdev->queues[queue];
    vdev->legacy_driver = true;
    if (pfn == 0) {
        /* Legacy drivers release a queue by writing 0. */
        deactivate_queue_locked(vdev, q);
        virtq_reset(&q->vq);
        q->enabled = false;
        return;
    }
    if (q->enabled) {
        log_limited(&vdev->log, LOG_WARNING,
                    "%s: queue %u address written while the queue is set up; ignored", vdev->name,
                    q->index);
        return;
    }
    virtq_set_legacy_pfn(&q->vq, pfn);
    q->enabled = true;
    if ((vdev->status & VIRTIO_STATUS_DRIVER_OK) && activate_queue_locked(vdev, q) < 0)
        virtio_device_needs_reset(vdev, "a queue set up after DRIVER_OK is unusable");
}

/* ---- Setup and teardown ---- */

static void free_queues(struct virtio_device *vdev)
{
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        struct virtio_queue *q = &vdev->queues[i];
        if (q->loop_started) {
            io_loop_stop(&q->loop);
            q->loop_started = false;
        }
        if (q->kick_watch.fd >= 0)
            io_loop_unwatch(&q->loop, &q->kick_watch);
        io_loop_destroy(&q->loop);
        if (q->kick_fd >= 0)
            close(q->kick_fd);
        pthread_mutex_destroy(&q->proc_lock);
        virtq_destroy(&q->vq);
    }
    free(vdev->queues);
    vdev->queues = NULL;
}

int virtio_device_init(struct virtio_device *vdev, const struct virtio_device_params *p)
{
    memset(vdev, 0, sizeof(*vdev));
    const char *name = p->name ? p->name : "virtio";
    uint16_t qs = p->queue_size;
    if (p->num_queues == 0 || p->num_queues > VIRTIO_MAX_QUEUES || qs == 0 || qs > VIRTQ_MAX_SIZE ||
        (qs & (qs - 1)) || p->config_size > VIRTIO_MAX_CONFIG_SIZE || !p->ops ||
        !p->ops->queue_notify || !p->ops->kind || !p->mem) {
        log_error("%s: invalid virtio device parameters (%u queues of %u)", name, p->num_queues,
                  qs);
        return -1;
    }
    vdev->name = name;
    vdev->device_type = p->device_type;
    vdev->ops = p->ops;
    vdev->mem = p->mem;
    vdev->device_features = p->features | VIRTIO_TRANSPORT_FEATURES;
    vdev->config_size = p->config_size;
    vdev->config = calloc(1, p->config_size ? p->config_size : 1);
    vdev->queues = calloc(p->num_queues, sizeof(*vdev->queues));
    if (!vdev->config || !vdev->queues) {
        log_error("%s: out of memory", name);
        free(vdev->config);
        free(vdev->queues);
        return -1;
    }
    pthread_mutex_init(&vdev->lock, NULL);
    pthread_mutex_init(&vdev->config_lock, NULL);
    vdev->num_queues = p->num_queues;
    bool ok = true;
    for (unsigned i = 0; i < p->num_queues; i++) {
        struct virtio_queue *q = &vdev->queues[i];
        q->vdev = vdev;
        q->index = i;
        virtq_init(&q->vq, name, i, qs, &vdev->vq_log);
        pthread_mutex_init(&q->proc_lock, NULL);
        io_watch_init(&q->kick_watch);
        snprintf(q->loop_name, sizeof(q->loop_name), "%.10s-q%u", name, i % 100);
        q->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (q->kick_fd < 0) {
            log_error("%s: eventfd: %s", name, strerror(errno));
            ok = false;
        }
        /* A failed init leaves epoll_fd -1, which io_loop_destroy skips. */
        if (io_loop_init(&q->loop, q->loop_name) < 0)
            ok = false;
        else if (ok &&
                 io_loop_watch(&q->loop, &q->kick_watch, q->kick_fd, EPOLLIN, queue_kicked, q) < 0)
            ok = false;
    }
    if (!ok) {
        free_queues(vdev);
        free(vdev->config);
        vdev->config = NULL;
        pthread_mutex_destroy(&vdev->lock);
        pthread_mutex_destroy(&vdev->config_lock);
        return -1;
    }
    return 0;
}

int virtio_device_attach(struct virtio_device *vdev, const struct virtio_transport_ops *ops,
                         void *opaque)
{
    vdev->transport = ops;
    vdev->transport_opaque = opaque;
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        struct virtio_queue *q = &vdev->queues[i];
        int err = io_loop_start(&q->loop);
        if (err) {
            log_error("%s: cannot start queue %u's loop: %s", vdev->name, i, strerror(-err));
            for (unsigned j = 0; j < i; j++) {
                io_loop_stop(&vdev->queues[j].loop);
                vdev->queues[j].loop_started = false;
            }
            return -1;
        }
        q->loop_started = true;
    }
    return 0;
}

void virtio_device_destroy(struct virtio_device *vdev)
{
    if (vdev->queues) {
        pthread_mutex_lock(&vdev->lock);
        virtio_reset_locked(vdev);
        pthread_mutex_unlock(&vdev->lock);
        free_queues(vdev);
        free(vdev->config);
        vdev->config = NULL;
        pthread_mutex_destroy(&vdev->lock);
        pthread_mutex_destroy(&vdev->config_lock);
    }
    if (vdev->ops->destroy)
        vdev->ops->destroy(vdev);
}

/* ---- Pause and resume ---- */

void virtio_device_pause(struct virtio_device *vdev)
{
    /* Park the loops first, so nothing new is taken from the rings, then
     * let what the back end still has complete into the used rings. */
    atomic_store(&vdev->paused, true);
    for (unsigned i = 0; i < vdev->num_queues; i++)
        if (vdev->queues[i].loop_started)
            io_loop_pause(&vdev->queues[i].loop);
    pthread_mutex_lock(&vdev->lock);
    for (unsigned i = 0; i < vdev->num_queues; i++)
        if (vdev->queues[i].activated && vdev->ops->drain)
            vdev->ops->drain(vdev, i);
    pthread_mutex_unlock(&vdev->lock);
}

void virtio_device_resume(struct virtio_device *vdev)
{
    pthread_mutex_lock(&vdev->lock);
    atomic_store(&vdev->paused, false);
    for (unsigned i = 0; i < vdev->num_queues; i++)
        if (vdev->queues[i].activated && vdev->ops->restart)
            vdev->ops->restart(vdev, i);
    pthread_mutex_unlock(&vdev->lock);
    for (unsigned i = 0; i < vdev->num_queues; i++)
        if (vdev->queues[i].loop_started)
            io_loop_resume(&vdev->queues[i].loop);
}

/* ---- State ---- */

struct queue_state {
    uint16_t size;
    bool enabled, activated;
    uint64_t desc, avail, used;
    uint16_t last_avail, used_idx, signalled_used;
    bool signalled_valid;
};

static void queue_state_get(struct virtio_queue *q, struct queue_state *qs)
{
    struct virtq *vq = &q->vq;
    *qs = (struct queue_state){
        .size = vq->size,
        .enabled = q->enabled,
        .activated = q->activated,
        .desc = vq->desc_gpa,
        .avail = vq->avail_gpa,
        .used = vq->used_gpa,
        .last_avail = vq->last_avail,
    };
    pthread_mutex_lock(&vq->used_lock);
    qs->used_idx = vq->used_idx;
    qs->signalled_used = vq->signalled_used;
    qs->signalled_valid = vq->signalled_valid;
    pthread_mutex_unlock(&vq->used_lock);
}

static void queue_fields(struct snap *s, struct queue_state *qs)
{
    snap_u16(s, "size", &qs->size);
    snap_bool(s, "enabled", &qs->enabled);
    snap_bool(s, "activated", &qs->activated);
    snap_u64(s, "desc", &qs->desc);
    snap_u64(s, "avail", &qs->avail);
    snap_u64(s, "used", &qs->used);
    snap_u16(s, "last_avail_idx", &qs->last_avail);
    snap_u16(s, "used_idx", &qs->used_idx);
    snap_u16(s, "signalled_used", &qs->signalled_used);
    snap_bool(s, "signalled_valid", &qs->signalled_valid);
}

/* A loaded queue against the loaded status (fields under the queue's
 * prefix). */
static void queue_validate(struct snap *s, struct virtio_queue *q, const struct queue_state *qs,
                           uint8_t status, bool needs_reset)
{
    if (!snap_check(s, virtq_size_valid(&q->vq, qs->size), "size",
                    "not a power of two up to the queue's maximum"))
        return;
    bool driver_ok = status & VIRTIO_STATUS_DRIVER_OK;
    if (qs->activated) {
        snap_check(s, qs->enabled && driver_ok, "activated",
                   "set for a queue that is not enabled or before DRIVER_OK");
        /* The device drained before the save: every chain it took is back
         * in the used ring, unless the ring was found broken (the chain
         * that broke it is never returned). */
        uint16_t outstanding = (uint16_t)(qs->last_avail - qs->used_idx);
        if (needs_reset)
            snap_check(s, outstanding <= qs->size, "last_avail_idx",
                       "more chains taken than the queue holds");
        else
            snap_check(s, outstanding == 0, "last_avail_idx",
                       "chains still in flight (a state is saved after the device drained)");
        snap_check(
            s, (uint16_t)(qs->used_idx - qs->signalled_used) <= qs->size || !qs->signalled_valid,
            "signalled_used", "further behind the used index than the queue size");
    } else {
        snap_check(s, !(qs->enabled && driver_ok && !needs_reset), "activated",
                   "clear for an enabled queue of a running device");
        snap_check(s,
                   qs->last_avail == 0 && qs->used_idx == 0 && qs->signalled_used == 0 &&
                       !qs->signalled_valid,
                   "last_avail_idx", "ring positions of a queue that is not active");
    }
}

/* Puts a validated queue in place (vdev->lock held, the queue reset). */
static void queue_apply(struct snap *s, struct virtio_device *vdev, struct virtio_queue *q,
                        const struct queue_state *qs)
{
    q->vq.size = qs->size;
    q->vq.desc_gpa = qs->desc;
    q->vq.avail_gpa = qs->avail;
    q->vq.used_gpa = qs->used;
    q->enabled = qs->enabled;
    if (!qs->activated)
        return;
    if (!virtq_activate(&q->vq, vdev->mem, virtio_features(vdev))) {
        snap_fail(s, "desc", "the rings are not usable in guest memory (see above)");
        return;
    }
    virtq_restore(&q->vq, qs->last_avail, qs->used_idx, qs->signalled_used, qs->signalled_valid);
    if (vdev->ops->activate && vdev->ops->activate(vdev, q->index) < 0) {
        virtq_deactivate(&q->vq);
        snap_fail(s, "activated", "the device could not start the queue");
        return;
    }
    q->activated = true;
    atomic_store(&q->running, true);
    virtio_queue_kick(vdev, q->index); /* buffers posted since the save */
}

static void core_validate(struct snap *s, struct virtio_device *vdev, uint8_t status, bool legacy,
                          uint64_t features)
{
    if (!snap_check(s, (status & ~STATUS_DRIVER_BITS) == 0, "status", "bits a driver cannot set") ||
        !snap_check(s, status_ordered(status, legacy), "status", "bits out of order"))
        return;
    /* Before FEATURES_OK the register holds whatever the driver wrote;
     * from then on the set was accepted, so it must be acceptable here. */
    bool accepted =
        (status & VIRTIO_STATUS_FEATURES_OK) || (legacy && (status & VIRTIO_STATUS_DRIVER_OK));
    if (accepted) {
        const char *why = features_refusal(vdev, features, legacy);
        if (why)
            snap_fail(s, "driver_features", "0x%llx: %s (offer 0x%llx)",
                      (unsigned long long)features, why, (unsigned long long)vdev->device_features);
    }
}

int virtio_device_state(struct virtio_device *vdev, struct snap *s)
{
    bool loading = snap_loading(s);
    pthread_mutex_lock(&vdev->lock);
    if (loading)
        virtio_reset_locked(vdev);
    uint8_t status = vdev->status;
    bool legacy = vdev->legacy_driver, needs_reset = atomic_load(&vdev->needs_reset);
    uint64_t features = atomic_load(&vdev->driver_features);
    uint32_t generation = atomic_load(&vdev->config_generation);
    struct queue_state qs[VIRTIO_MAX_QUEUES];

    snap_enter(s, "virtio");
    snap_u8(s, "status", &status);
    snap_bool(s, "legacy_driver", &legacy);
    snap_bool(s, "needs_reset", &needs_reset);
    snap_u64(s, "driver_features", &features);
    snap_u32(s, "config_generation", &generation);
    if (loading && !snap_error(s))
        core_validate(s, vdev, status, legacy, features);
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        struct virtio_queue *q = &vdev->queues[i];
        if (loading)
            qs[i] = (struct queue_state){0}; /* the field functions read before they load */
        else
            queue_state_get(q, &qs[i]);
        snap_enter(s, "q%u", i);
        queue_fields(s, &qs[i]);
        if (loading && !snap_error(s))
            queue_validate(s, q, &qs[i], status, needs_reset);
        snap_leave(s);
    }
    if (loading && !snap_error(s)) {
        vdev->status = status;
        vdev->legacy_driver = legacy;
        atomic_store(&vdev->driver_features, features);
        atomic_store(&vdev->needs_reset, needs_reset);
        atomic_store(&vdev->config_generation, generation);
        for (unsigned i = 0; i < vdev->num_queues && !snap_error(s); i++) {
            snap_enter(s, "q%u", i);
            queue_apply(s, vdev, &vdev->queues[i], &qs[i]);
            snap_leave(s);
        }
    }
    snap_leave(s);
    pthread_mutex_unlock(&vdev->lock);

    if (vdev->ops->state && !snap_error(s)) {
        snap_enter(s, "%s", vdev->ops->kind);
        vdev->ops->state(vdev, s);
        snap_leave(s);
    }
    return snap_error(s);
}

/* ---- State dump ---- */

#define DUMP_LOCK_MS 100

void virtio_describe_queue(struct virtio_device *vdev, unsigned queue, char *ring, size_t ring_cap,
                           char *device, size_t device_cap)
{
    struct virtio_queue *q = &vdev->queues[queue];
    bool popper_idle = mutex_lock_within(&q->proc_lock, DUMP_LOCK_MS);
    virtq_describe(&q->vq, popper_idle, ring, ring_cap);
    if (popper_idle)
        pthread_mutex_unlock(&q->proc_lock);
    if (device_cap)
        device[0] = '\0';
    if (vdev->ops->describe_queue)
        vdev->ops->describe_queue(vdev, queue, device, device_cap);
}
