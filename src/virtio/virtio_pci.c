#include "virtio/virtio_pci.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/sync.h"
#include "common/thread.h"
#include "core/machine.h"

#define TRANSPORT_FEATURES                                                                         \
    ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_ANY_LAYOUT) |                                \
     (1ull << VIRTIO_RING_F_INDIRECT_DESC) | (1ull << VIRTIO_RING_F_EVENT_IDX))

/* Vendor capability layout (struct virtio_pci_cap). */
#define CAP_LEN 2
#define CAP_CFG_TYPE 3
#define CAP_BAR 4
#define CAP_ID 5
#define CAP_OFFSET 8
#define CAP_LENGTH 12
#define CAP_NOTIFY_MULTIPLIER 16
#define CAP_PCI_CFG_DATA 16
#define CAP_SIZE 16
#define CAP_NOTIFY_SIZE 20
#define CAP_PCI_CFG_SIZE 20

struct field {
    unsigned off, size;
};

static const struct field common_fields[] = {
    {VIRTIO_COMMON_DFSELECT, 4}, {VIRTIO_COMMON_DF, 4},
    {VIRTIO_COMMON_GFSELECT, 4}, {VIRTIO_COMMON_GF, 4},
    {VIRTIO_COMMON_MSIX, 2},     {VIRTIO_COMMON_NUMQ, 2},
    {VIRTIO_COMMON_STATUS, 1},   {VIRTIO_COMMON_CFGGENERATION, 1},
    {VIRTIO_COMMON_Q_SELECT, 2}, {VIRTIO_COMMON_Q_SIZE, 2},
    {VIRTIO_COMMON_Q_MSIX, 2},   {VIRTIO_COMMON_Q_ENABLE, 2},
    {VIRTIO_COMMON_Q_NOFF, 2},   {VIRTIO_COMMON_Q_DESC, 8},
    {VIRTIO_COMMON_Q_AVAIL, 8},  {VIRTIO_COMMON_Q_USED, 8},
    {VIRTIO_COMMON_Q_NDATA, 2},  {VIRTIO_COMMON_Q_RESET, 2},
};

static const struct field legacy_fields[] = {
    {VIRTIO_LEGACY_DEVICE_FEATURES, 4}, {VIRTIO_LEGACY_GUEST_FEATURES, 4},
    {VIRTIO_LEGACY_QUEUE_PFN, 4},       {VIRTIO_LEGACY_QUEUE_SIZE, 2},
    {VIRTIO_LEGACY_QUEUE_SELECT, 2},    {VIRTIO_LEGACY_QUEUE_NOTIFY, 2},
    {VIRTIO_LEGACY_STATUS, 1},          {VIRTIO_LEGACY_ISR, 1},
    {VIRTIO_LEGACY_CONFIG_VECTOR, 2},   {VIRTIO_LEGACY_QUEUE_VECTOR, 2},
};

static struct virtio_pci_queue *selected_queue(struct virtio_pci *vp)
{
    return vp->queue_select < vp->num_queues ? &vp->queues[vp->queue_select] : NULL;
}

static uint16_t msix_vector_value(struct virtio_pci *vp, uint64_t value)
{
    /* A vector the device cannot use reads back as NO_VECTOR (spec 4.1.5.1.2). */
    return value < vp->msix.nvec ? (uint16_t)value : VIRTIO_MSI_NO_VECTOR;
}

/* ---- Interrupts ---- */

static void isr_raise(struct virtio_pci *vp, uint8_t bits)
{
    pthread_mutex_lock(&vp->isr_lock);
    vp->isr |= bits;
    pci_set_irq(&vp->pci, true);
    pthread_mutex_unlock(&vp->isr_lock);
}

static uint8_t isr_read_clear(struct virtio_pci *vp)
{
    pthread_mutex_lock(&vp->isr_lock);
    uint8_t isr = vp->isr;
    vp->isr = 0;
    pci_set_irq(&vp->pci, false);
    pthread_mutex_unlock(&vp->isr_lock);
    return isr;
}

static void signal_vector(struct virtio_pci *vp, uint16_t vector, uint8_t isr_bit)
{
    if (msix_enabled(&vp->msix)) {
        if (vector == VIRTIO_MSI_NO_VECTOR)
            return; /* the driver asked for no interrupt */
        if (msix_notify(&vp->msix, vector))
            return;
    }
    isr_raise(vp, isr_bit);
}

void virtio_pci_queue_interrupt(struct virtio_pci *vp, unsigned queue)
{
    if (queue < vp->num_queues)
        signal_vector(vp, atomic_load(&vp->queues[queue].msix_vector), VIRTIO_ISR_QUEUE);
}

void virtio_pci_config_interrupt(struct virtio_pci *vp)
{
    signal_vector(vp, atomic_load(&vp->config_vector), VIRTIO_ISR_CONFIG);
}

/* ---- Queue control ---- */

void virtio_pci_kick(struct virtio_pci *vp, unsigned queue)
{
    if (queue >= vp->num_queues)
        return;
    uint64_t one = 1;
    ssize_t r = write(vp->queues[queue].kick_fd, &one, sizeof(one));
    (void)r; /* a saturated counter still wakes the worker */
}

bool virtio_pci_queue_running(struct virtio_pci *vp, unsigned queue)
{
    return queue < vp->num_queues && atomic_load(&vp->queues[queue].running) &&
           !atomic_load(&vp->needs_reset);
}

void virtio_pci_complete(struct virtio_pci *vp, unsigned queue, uint16_t head, uint32_t len)
{
    if (queue < vp->num_queues && virtq_push(&vp->queues[queue].vq, head, len))
        virtio_pci_queue_interrupt(vp, queue);
}

void virtio_pci_set_needs_reset(struct virtio_pci *vp, const char *why)
{
    if (atomic_exchange(&vp->needs_reset, true))
        return;
    log_limited(&vp->log, LOG_ERROR, "%s: device error, set DEVICE_NEEDS_RESET: %s", vp->name, why);
    virtio_pci_config_interrupt(vp);
}

uint64_t virtio_pci_features(struct virtio_pci *vp)
{
    return atomic_load(&vp->driver_features) & vp->device_features;
}

static void *queue_worker(void *arg)
{
    struct virtio_pci_queue *q = arg;
    struct virtio_pci *vp = q->vp;
    for (;;) {
        uint64_t count;
        ssize_t r = read(q->kick_fd, &count, sizeof(count));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || atomic_load(&q->stop_thread))
            break;
        pthread_mutex_lock(&q->proc_lock);
        if (!virtio_pci_queue_running(vp, q->index)) {
            log_limited(&vp->log, LOG_WARNING,
                        "%s: notify for queue %u while it is not running (device %s); ignored",
                        vp->name, q->index,
                        atomic_load(&vp->needs_reset) ? "needs reset" : "not ready");
        } else if (!pci_bus_master_enabled(&vp->pci)) {
            log_limited(&vp->log, LOG_WARNING,
                        "%s: notify for queue %u with bus mastering disabled; ignored", vp->name,
                        q->index);
        } else {
            vp->ops->queue_process(vp, q->index);
        }
        pthread_mutex_unlock(&q->proc_lock);
    }
    return NULL;
}

/* vp->lock held. */
static int activate_queue_locked(struct virtio_pci *vp, struct virtio_pci_queue *q)
{
    if (!q->enabled || q->activated)
        return 0;
    if (!virtq_activate(&q->vq, vp->mem, virtio_pci_features(vp)))
        return -1;
    if (vp->ops->queue_activate && vp->ops->queue_activate(vp, q->index) < 0) {
        virtq_deactivate(&q->vq);
        return -1;
    }
    q->activated = true;
    atomic_store(&q->running, true);
    virtio_pci_kick(vp, q->index); /* buffers posted before DRIVER_OK */
    return 0;
}

/* vp->lock held. Stops processing and drains the queue's requests. */
static void deactivate_queue_locked(struct virtio_pci *vp, struct virtio_pci_queue *q)
{
    if (!q->activated)
        return;
    atomic_store(&q->running, false);
    /* The worker checks `running` under proc_lock: once we hold it, the
     * worker is idle and will not start another batch. */
    pthread_mutex_lock(&q->proc_lock);
    pthread_mutex_unlock(&q->proc_lock);
    if (vp->ops->queue_quiesce)
        vp->ops->queue_quiesce(vp, q->index);
    virtq_deactivate(&q->vq);
    q->activated = false;
}

static void activate_queues_locked(struct virtio_pci *vp)
{
    for (unsigned i = 0; i < vp->num_queues; i++) {
        if (activate_queue_locked(vp, &vp->queues[i]) < 0) {
            virtio_pci_set_needs_reset(vp, "a queue could not be started");
            return;
        }
    }
}

/* Virtio reset: vp->lock held. Leaves MSI-X and PCI state alone. */
static void virtio_reset_locked(struct virtio_pci *vp)
{
    for (unsigned i = 0; i < vp->num_queues; i++) {
        struct virtio_pci_queue *q = &vp->queues[i];
        deactivate_queue_locked(vp, q);
        virtq_reset(&q->vq);
        q->enabled = false;
        atomic_store(&q->msix_vector, VIRTIO_MSI_NO_VECTOR);
    }
    atomic_store(&vp->driver_features, 0);
    vp->status = 0;
    vp->legacy_driver = false;
    vp->dfselect = vp->gfselect = 0;
    vp->queue_select = 0;
    atomic_store(&vp->config_vector, VIRTIO_MSI_NO_VECTOR);
    atomic_store(&vp->needs_reset, false);
    isr_read_clear(vp);
}

/* ---- Status and features ---- */

static bool features_acceptable_locked(struct virtio_pci *vp)
{
    uint64_t features = atomic_load(&vp->driver_features);
    uint64_t extra = features & ~vp->device_features;
    if (extra) {
        log_limited(&vp->log, LOG_WARNING,
                    "%s: driver accepted features 0x%llx the device does not offer; "
                    "FEATURES_OK refused",
                    vp->name, (unsigned long long)extra);
        return false;
    }
    if (!vp->legacy_driver && !(features & (1ull << VIRTIO_F_VERSION_1))) {
        log_limited(&vp->log, LOG_WARNING,
                    "%s: driver uses the modern interface without VIRTIO_F_VERSION_1; "
                    "FEATURES_OK refused",
                    vp->name);
        return false;
    }
    if (vp->ops->features_ok && !vp->ops->features_ok(vp, features)) {
        log_limited(&vp->log, LOG_WARNING, "%s: feature set 0x%llx refused by the device", vp->name,
                    (unsigned long long)features);
        return false;
    }
    return true;
}

static void set_status_locked(struct virtio_pci *vp, uint8_t value, bool legacy)
{
    uint8_t status = value & (uint8_t)~VIRTIO_STATUS_NEEDS_RESET; /* device-owned bit */
    if (status == 0) {
        virtio_reset_locked(vp);
        return;
    }
    if (legacy)
        vp->legacy_driver = true;
    uint8_t old = vp->status;
    if (status == old)
        return;
    if (old & ~status) {
        char why[96];
        snprintf(why, sizeof(why), "driver cleared status bits (0x%02x -> 0x%02x)", old, status);
        virtio_pci_set_needs_reset(vp, why);
        return;
    }
    bool ordered = (!(status & VIRTIO_STATUS_DRIVER) || (status & VIRTIO_STATUS_ACKNOWLEDGE)) &&
                   (!(status & VIRTIO_STATUS_FEATURES_OK) || (status & VIRTIO_STATUS_DRIVER)) &&
                   (!(status & VIRTIO_STATUS_DRIVER_OK) || (status & VIRTIO_STATUS_DRIVER)) &&
                   (!(status & VIRTIO_STATUS_DRIVER_OK) || vp->legacy_driver ||
                    (status & VIRTIO_STATUS_FEATURES_OK));
    if (!ordered) {
        log_limited(&vp->log, LOG_WARNING,
                    "%s: device status 0x%02x written out of order (was 0x%02x); ignored", vp->name,
                    status, old);
        return;
    }
    uint8_t new_bits = status & (uint8_t)~old;
    if ((new_bits & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable_locked(vp)) {
        /* Not reflecting FEATURES_OK tells the driver the set was refused. */
        status &= (uint8_t) ~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
        new_bits &= (uint8_t) ~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
    }
    if ((new_bits & VIRTIO_STATUS_DRIVER_OK) && vp->legacy_driver &&
        !features_acceptable_locked(vp)) {
        status &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
        new_bits &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
    }
    vp->status = status;
    if (new_bits & VIRTIO_STATUS_DRIVER_OK)
        activate_queues_locked(vp);
}

static uint8_t status_value(struct virtio_pci *vp)
{
    return vp->status | (atomic_load(&vp->needs_reset) ? VIRTIO_STATUS_NEEDS_RESET : 0);
}

/* ---- Register files ---- */

typedef uint64_t (*field_get_fn)(struct virtio_pci *vp, unsigned field);

/* Reads bytes [off, off+size) of a register file field by field (each field
 * fetched once, so a read-to-clear register clears once). */
static uint64_t fields_read(struct virtio_pci *vp, const struct field *fields, size_t n,
                            unsigned off, unsigned size, field_get_fn get)
{
    uint64_t result = 0;
    for (size_t i = 0; i < n; i++) {
        const struct field *f = &fields[i];
        if (off >= f->off + f->size || f->off >= off + size)
            continue;
        uint64_t v = get(vp, f->off);
        for (unsigned b = 0; b < size; b++) {
            unsigned at = off + b;
            if (at >= f->off && at < f->off + f->size)
                result |= ((v >> (8 * (at - f->off))) & 0xff) << (8 * b);
        }
    }
    return result;
}

/* The field a write targets with a natural access, or NULL. 64-bit fields
 * take two 32-bit halves. */
static const struct field *field_for_write(const struct field *fields, size_t n, unsigned off,
                                           unsigned size)
{
    for (size_t i = 0; i < n; i++) {
        const struct field *f = &fields[i];
        if (off == f->off && size == f->size)
            return f;
        if (f->size == 8 && size == 4 && (off == f->off || off == f->off + 4))
            return f;
    }
    return NULL;
}

static void config_read_bytes(struct virtio_pci *vp, unsigned off, unsigned size, uint64_t *value)
{
    /* Bytes past the end of the device's configuration read as zero. */
    unsigned avail = off < vp->config_size ? vp->config_size - off : 0;
    *value = avail ? le_load(vp->config + off, size < avail ? size : avail) : 0;
}

/* ---- Common configuration (BAR2) ---- */

static uint64_t common_get(struct virtio_pci *vp, unsigned field)
{
    struct virtio_pci_queue *q = selected_queue(vp);
    switch (field) {
    case VIRTIO_COMMON_DFSELECT:
        return vp->dfselect;
    case VIRTIO_COMMON_DF:
        return vp->dfselect < 2 ? (uint32_t)(vp->device_features >> (32 * vp->dfselect)) : 0;
    case VIRTIO_COMMON_GFSELECT:
        return vp->gfselect;
    case VIRTIO_COMMON_GF:
        return vp->gfselect < 2
                   ? (uint32_t)(atomic_load(&vp->driver_features) >> (32 * vp->gfselect))
                   : 0;
    case VIRTIO_COMMON_MSIX:
        return atomic_load(&vp->config_vector);
    case VIRTIO_COMMON_NUMQ:
        return vp->num_queues;
    case VIRTIO_COMMON_STATUS:
        return status_value(vp);
    case VIRTIO_COMMON_CFGGENERATION:
        return 0; /* the configuration never changes under the driver */
    case VIRTIO_COMMON_Q_SELECT:
        return vp->queue_select;
    case VIRTIO_COMMON_Q_SIZE:
        return q ? q->vq.size : 0;
    case VIRTIO_COMMON_Q_MSIX:
        return q ? atomic_load(&q->msix_vector) : VIRTIO_MSI_NO_VECTOR;
    case VIRTIO_COMMON_Q_ENABLE:
        return q ? q->enabled : 0;
    case VIRTIO_COMMON_Q_NOFF:
    case VIRTIO_COMMON_Q_NDATA:
        return q ? q->index : 0;
    case VIRTIO_COMMON_Q_DESC:
        return q ? q->vq.desc_gpa : 0;
    case VIRTIO_COMMON_Q_AVAIL:
        return q ? q->vq.avail_gpa : 0;
    case VIRTIO_COMMON_Q_USED:
        return q ? q->vq.used_gpa : 0;
    default:
        return 0;
    }
}

static void set_queue_addr(struct virtio_pci *vp, struct virtio_pci_queue *q, uint64_t *addr,
                           unsigned off, unsigned field, unsigned size, uint64_t value)
{
    if (q->enabled) {
        log_limited(&vp->log, LOG_WARNING,
                    "%s: queue %u address written while the queue is enabled; ignored", vp->name,
                    q->index);
        return;
    }
    if (size == 8)
        *addr = value;
    else if (off == field)
        *addr = (*addr & ~0xffffffffull) | (value & 0xffffffffull);
    else
        *addr = (*addr & 0xffffffffull) | (value & 0xffffffffull) << 32;
}

static void common_write_locked(struct virtio_pci *vp, unsigned off, unsigned size, uint64_t value)
{
    const struct field *f = field_for_write(common_fields, ARRAY_LEN(common_fields), off, size);
    if (!f) {
        log_limited(&vp->log, LOG_WARNING,
                    "%s: %u-byte write at common config offset 0x%x is not a natural access; "
                    "ignored",
                    vp->name, size, off);
        return;
    }
    struct virtio_pci_queue *q = selected_queue(vp);
    bool queue_field = f->off >= VIRTIO_COMMON_Q_SIZE;
    if (queue_field && !q) {
        log_limited(&vp->log, LOG_WARNING,
                    "%s: write to queue register 0x%x with queue_select %u out of range (%u "
                    "queues); ignored",
                    vp->name, f->off, vp->queue_select, vp->num_queues);
        return;
    }
    switch (f->off) {
    case VIRTIO_COMMON_DFSELECT:
        vp->dfselect = (uint32_t)value;
        break;
    case VIRTIO_COMMON_GFSELECT:
        vp->gfselect = (uint32_t)value;
        break;
    case VIRTIO_COMMON_GF:
        if (vp->status & VIRTIO_STATUS_FEATURES_OK) {
            log_limited(&vp->log, LOG_WARNING,
                        "%s: driver features written after FEATURES_OK; ignored", vp->name);
        } else if (vp->gfselect < 2) {
            unsigned shift = 32 * vp->gfselect;
            uint64_t features = (atomic_load(&vp->driver_features) & ~(0xffffffffull << shift)) |
                                (value & 0xffffffffull) << shift;
            atomic_store(&vp->driver_features, features);
        }
        break;
    case VIRTIO_COMMON_MSIX:
        atomic_store(&vp->config_vector, msix_vector_value(vp, value));
        break;
    case VIRTIO_COMMON_STATUS:
        set_status_locked(vp, (uint8_t)value, false);
        break;
    case VIRTIO_COMMON_Q_SELECT:
        vp->queue_select = (uint16_t)value;
        break;
    case VIRTIO_COMMON_Q_SIZE:
        if (q->enabled) {
            log_limited(&vp->log, LOG_WARNING,
                        "%s: queue %u size written while the queue is enabled; ignored", vp->name,
                        q->index);
        } else if (!virtq_size_valid(&q->vq, value)) {
            log_limited(&vp->log, LOG_WARNING,
                        "%s: queue %u size %llu is not a power of two in 1..%u; kept %u", vp->name,
                        q->index, (unsigned long long)value, q->vq.max_size, q->vq.size);
        } else {
            q->vq.size = (uint16_t)value;
        }
        break;
    case VIRTIO_COMMON_Q_MSIX:
        atomic_store(&q->msix_vector, msix_vector_value(vp, value));
        break;
    case VIRTIO_COMMON_Q_ENABLE:
        if (value != 1) {
            log_limited(&vp->log, LOG_WARNING,
                        "%s: queue %u: queue_enable write of %llu ignored (only 1 is allowed)",
                        vp->name, q->index, (unsigned long long)value);
        } else if (!q->enabled) {
            q->enabled = true;
            if ((vp->status & VIRTIO_STATUS_DRIVER_OK) && activate_queue_locked(vp, q) < 0)
                virtio_pci_set_needs_reset(vp, "a queue enabled after DRIVER_OK is unusable");
        }
        break;
    case VIRTIO_COMMON_Q_DESC:
        set_queue_addr(vp, q, &q->vq.desc_gpa, off, f->off, size, value);
        break;
    case VIRTIO_COMMON_Q_AVAIL:
        set_queue_addr(vp, q, &q->vq.avail_gpa, off, f->off, size, value);
        break;
    case VIRTIO_COMMON_Q_USED:
        set_queue_addr(vp, q, &q->vq.used_gpa, off, f->off, size, value);
        break;
    case VIRTIO_COMMON_Q_RESET:
        log_limited(&vp->log, LOG_WARNING,
                    "%s: queue_reset written, but VIRTIO_F_RING_RESET is not offered; ignored",
                    vp->name);
        break;
    default:
        log_limited(&vp->log, LOG_DEBUG, "%s: write to read-only common config field 0x%x",
                    vp->name, f->off);
        break;
    }
}

/* ---- Legacy registers (BAR0) ---- */

static uint64_t legacy_get(struct virtio_pci *vp, unsigned field)
{
    struct virtio_pci_queue *q = selected_queue(vp);
    switch (field) {
    case VIRTIO_LEGACY_DEVICE_FEATURES:
        return (uint32_t)vp->device_features;
    case VIRTIO_LEGACY_GUEST_FEATURES:
        return (uint32_t)atomic_load(&vp->driver_features);
    case VIRTIO_LEGACY_QUEUE_PFN:
        return q && q->enabled ? (uint32_t)(q->vq.desc_gpa / VIRTQ_LEGACY_ALIGN) : 0;
    case VIRTIO_LEGACY_QUEUE_SIZE:
        return q ? q->vq.size : 0;
    case VIRTIO_LEGACY_QUEUE_SELECT:
        return vp->queue_select;
    case VIRTIO_LEGACY_QUEUE_NOTIFY:
        return 0;
    case VIRTIO_LEGACY_STATUS:
        return status_value(vp);
    case VIRTIO_LEGACY_ISR:
        return isr_read_clear(vp);
    case VIRTIO_LEGACY_CONFIG_VECTOR:
        return atomic_load(&vp->config_vector);
    case VIRTIO_LEGACY_QUEUE_VECTOR:
        return q ? atomic_load(&q->msix_vector) : VIRTIO_MSI_NO_VECTOR;
    default:
        return 0;
    }
}

static void legacy_notify(struct virtio_pci *vp, uint64_t value)
{
    uint16_t queue = (uint16_t)value;
    if (queue >= vp->num_queues) {
        log_limited(&vp->log, LOG_WARNING,
                    "%s: notify for queue %u out of range (%u queues); ignored", vp->name, queue,
                    vp->num_queues);
        return;
    }
    virtio_pci_kick(vp, queue);
}

static void legacy_set_pfn_locked(struct virtio_pci *vp, struct virtio_pci_queue *q, uint32_t pfn)
{
    vp->legacy_driver = true;
    if (pfn == 0) {
        /* Legacy drivers release a queue by writing 0. */
        deactivate_queue_locked(vp, q);
        virtq_reset(&q->vq);
        q->enabled = false;
        return;
    }
    if (q->enabled) {
        log_limited(&vp->log, LOG_WARNING,
                    "%s: queue %u address written while the queue is set up; ignored", vp->name,
                    q->index);
        return;
    }
    virtq_set_legacy_pfn(&q->vq, pfn);
    q->enabled = true;
    if ((vp->status & VIRTIO_STATUS_DRIVER_OK) && activate_queue_locked(vp, q) < 0)
        virtio_pci_set_needs_reset(vp, "a queue set up after DRIVER_OK is unusable");
}

static void legacy_write_locked(struct virtio_pci *vp, unsigned off, unsigned size, uint64_t value,
                                bool msix)
{
    size_t n = ARRAY_LEN(legacy_fields) - (msix ? 0 : 2);
    const struct field *f = field_for_write(legacy_fields, n, off, size);
    if (!f) {
        log_limited(&vp->log, LOG_WARNING,
                    "%s: %u-byte legacy register write at 0x%x is not a natural access; ignored",
                    vp->name, size, off);
        return;
    }
    struct virtio_pci_queue *q = selected_queue(vp);
    switch (f->off) {
    case VIRTIO_LEGACY_GUEST_FEATURES:
        if (vp->status & VIRTIO_STATUS_DRIVER_OK) {
            log_limited(&vp->log, LOG_WARNING,
                        "%s: guest features written after DRIVER_OK; ignored", vp->name);
            break;
        }
        vp->legacy_driver = true;
        atomic_store(&vp->driver_features, value & (uint32_t)vp->device_features);
        break;
    case VIRTIO_LEGACY_QUEUE_PFN:
        if (!q)
            log_limited(&vp->log, LOG_WARNING,
                        "%s: queue address for queue %u out of range (%u queues); ignored",
                        vp->name, vp->queue_select, vp->num_queues);
        else
            legacy_set_pfn_locked(vp, q, (uint32_t)value);
        break;
    case VIRTIO_LEGACY_QUEUE_SELECT:
        vp->queue_select = (uint16_t)value;
        break;
    case VIRTIO_LEGACY_STATUS:
        set_status_locked(vp, (uint8_t)value, true);
        break;
    case VIRTIO_LEGACY_CONFIG_VECTOR:
        atomic_store(&vp->config_vector, msix_vector_value(vp, value));
        break;
    case VIRTIO_LEGACY_QUEUE_VECTOR:
        if (q)
            atomic_store(&q->msix_vector, msix_vector_value(vp, value));
        break;
    default:
        log_limited(&vp->log, LOG_DEBUG, "%s: write to read-only legacy register 0x%x", vp->name,
                    f->off);
        break;
    }
}

static uint64_t legacy_bar_read(void *opaque, uint64_t offset, unsigned size)
{
    struct virtio_pci *vp = opaque;
    bool msix = msix_enabled(&vp->msix);
    unsigned config_at = msix ? VIRTIO_LEGACY_CONFIG_MSIX : VIRTIO_LEGACY_CONFIG_NOMSIX;
    unsigned off = (unsigned)offset;
    uint64_t value = 0;
    pthread_mutex_lock(&vp->lock);
    if (off >= config_at)
        config_read_bytes(vp, off - config_at, size, &value);
    else
        value = fields_read(vp, legacy_fields, ARRAY_LEN(legacy_fields) - (msix ? 0 : 2), off, size,
                            legacy_get);
    pthread_mutex_unlock(&vp->lock);
    return value & size_mask(size);
}

static void legacy_bar_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct virtio_pci *vp = opaque;
    bool msix = msix_enabled(&vp->msix);
    unsigned config_at = msix ? VIRTIO_LEGACY_CONFIG_MSIX : VIRTIO_LEGACY_CONFIG_NOMSIX;
    unsigned off = (unsigned)offset;
    value &= size_mask(size);
    if (off == VIRTIO_LEGACY_QUEUE_NOTIFY && (size == 2 || size == 4)) {
        legacy_notify(vp, value); /* no lock: the doorbell only wakes a worker */
        return;
    }
    if (off >= config_at) {
        log_limited(&vp->log, LOG_DEBUG, "%s: write to device config offset 0x%x ignored", vp->name,
                    off - config_at);
        return;
    }
    pthread_mutex_lock(&vp->lock);
    legacy_write_locked(vp, off, size, value, msix);
    pthread_mutex_unlock(&vp->lock);
}

static const struct io_ops legacy_bar_ops = {.read = legacy_bar_read, .write = legacy_bar_write};

/* ---- Modern BAR (BAR2) ---- */

static unsigned notify_region_size(const struct virtio_pci *vp)
{
    return vp->num_queues * VIRTIO_PCI_NOTIFY_MULTIPLIER;
}

static uint64_t modern_bar_read(void *opaque, uint64_t offset, unsigned size)
{
    struct virtio_pci *vp = opaque;
    uint64_t value = 0;
    if (offset < VIRTIO_PCI_COMMON_SIZE) {
        pthread_mutex_lock(&vp->lock);
        value = fields_read(vp, common_fields, ARRAY_LEN(common_fields), (unsigned)offset, size,
                            common_get);
        pthread_mutex_unlock(&vp->lock);
    } else if (offset >= VIRTIO_PCI_DEVICE_OFFSET && offset < VIRTIO_PCI_NOTIFY_OFFSET) {
        pthread_mutex_lock(&vp->lock);
        config_read_bytes(vp, (unsigned)(offset - VIRTIO_PCI_DEVICE_OFFSET), size, &value);
        pthread_mutex_unlock(&vp->lock);
    } else if (offset == VIRTIO_PCI_ISR_OFFSET) {
        value = isr_read_clear(vp);
    }
    return value & size_mask(size);
}

static void modern_bar_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct virtio_pci *vp = opaque;
    value &= size_mask(size);
    if (offset < VIRTIO_PCI_COMMON_SIZE) {
        pthread_mutex_lock(&vp->lock);
        common_write_locked(vp, (unsigned)offset, size, value);
        pthread_mutex_unlock(&vp->lock);
        return;
    }
    if (offset >= VIRTIO_PCI_NOTIFY_OFFSET && offset < VIRTIO_PCI_ISR_OFFSET) {
        uint64_t rel = offset - VIRTIO_PCI_NOTIFY_OFFSET;
        if (rel >= notify_region_size(vp) || rel % VIRTIO_PCI_NOTIFY_MULTIPLIER) {
            log_limited(&vp->log, LOG_WARNING,
                        "%s: notify at offset 0x%llx is no queue's doorbell (%u queues); ignored",
                        vp->name, (unsigned long long)rel, vp->num_queues);
            return;
        }
        virtio_pci_kick(vp, (unsigned)(rel / VIRTIO_PCI_NOTIFY_MULTIPLIER));
        return;
    }
    log_limited(&vp->log, LOG_DEBUG, "%s: write to BAR2 offset 0x%llx ignored", vp->name,
                (unsigned long long)offset);
}

static const struct io_ops modern_bar_ops = {.read = modern_bar_read, .write = modern_bar_write};

/* ---- PCI hooks ---- */

/* The modern doorbell has an address per queue; the legacy one is a single
 * port for every queue, the value written naming the queue, so its
 * ioeventfds match on that value. */
static void ioevent_set(struct virtio_pci *vp, struct virtio_pci_queue *q, bool pio, bool on,
                        uint64_t addr)
{
    bool *registered = pio ? &q->ioevent_pio : &q->ioevent_mmio;
    uint64_t *at = pio ? &q->ioevent_pio_addr : &q->ioevent_mmio_addr;
    uint64_t queue_index = q->index;
    const uint64_t *match = pio ? &queue_index : NULL;
    if (*registered && vp->machine->vm_fd >= 0)
        machine_ioeventfd(vp->machine, q->kick_fd, *at, 2, pio, match, false);
    *registered = false;
    if (!on || vp->machine->vm_fd < 0)
        return;
    if (machine_ioeventfd(vp->machine, q->kick_fd, addr, 2, pio, match, true) == 0) {
        *registered = true;
        *at = addr;
    } else {
        log_warn("%s: queue %u: no ioeventfd at %s 0x%llx; notifications take the slow path",
                 vp->name, q->index, pio ? "port" : "address", (unsigned long long)addr);
    }
}

/* Device lock held (a pci_device_ops hook, or vm_attached). */
static void update_ioeventfds(struct virtio_pci *vp, unsigned bar, bool mapped, uint64_t base)
{
    if (!vp->machine)
        return;
    for (unsigned i = 0; i < vp->num_queues; i++) {
        struct virtio_pci_queue *q = &vp->queues[i];
        if (bar == VIRTIO_PCI_BAR_MODERN)
            ioevent_set(vp, q, false, mapped,
                        base + VIRTIO_PCI_NOTIFY_OFFSET + i * VIRTIO_PCI_NOTIFY_MULTIPLIER);
        if (bar == VIRTIO_PCI_BAR_LEGACY)
            ioevent_set(vp, q, true, mapped, base + VIRTIO_LEGACY_QUEUE_NOTIFY);
    }
}

static void vp_bar_mapped(struct pci_device *pdev, unsigned bar, bool mapped, uint64_t base)
{
    update_ioeventfds(container_of(pdev, struct virtio_pci, pci), bar, mapped, base);
}

static void vp_config_write(struct pci_device *pdev, unsigned offset, unsigned size, uint32_t value)
{
    struct virtio_pci *vp = container_of(pdev, struct virtio_pci, pci);
    msix_config_write(&vp->msix, offset, size);
    /* With MSI-X on, the function must not drive INTx. */
    if (msix_enabled(&vp->msix) && pdev->intx_level)
        pci_set_irq_locked(pdev, false);
    unsigned data = vp->pci_cfg_cap + CAP_PCI_CFG_DATA;
    if (vp->pci_cfg_cap && offset < data + 4 && data < offset + size)
        log_limited(&vp->log, LOG_WARNING,
                    "%s: access through VIRTIO_PCI_CAP_PCI_CFG is not supported; ignored",
                    vp->name);
}

static const struct pci_device_ops virtio_pci_ops = {
    .config_write = vp_config_write,
    .bar_mapped = vp_bar_mapped,
};

int virtio_pci_vm_attached(struct virtio_pci *vp, struct machine *m)
{
    pthread_mutex_lock(&vp->pci.lock);
    /* A new VM has none of the old registrations. */
    for (unsigned i = 0; i < vp->num_queues; i++)
        vp->queues[i].ioevent_mmio = vp->queues[i].ioevent_pio = false;
    for (unsigned bar = 0; bar < PCI_BAR_COUNT; bar++)
        if (vp->pci.bars[bar].mapped)
            update_ioeventfds(vp, bar, true, vp->pci.bars[bar].mapped_base);
    pthread_mutex_unlock(&vp->pci.lock);
    return 0;
}

/* ---- Setup and teardown ---- */

static uint16_t pci_device_id_for(uint16_t type, bool *transitional)
{
    static const uint16_t legacy_ids[][2] = {
        {1, 0x1000}, {2, 0x1001}, {5, 0x1002}, {3, 0x1003}, {8, 0x1004}, {4, 0x1005}, {9, 0x1009},
    };
    for (size_t i = 0; i < ARRAY_LEN(legacy_ids); i++) {
        if (legacy_ids[i][0] == type) {
            *transitional = true;
            return legacy_ids[i][1];
        }
    }
    *transitional = false;
    return (uint16_t)(VIRTIO_PCI_MODERN_DEVICE_ID_BASE + type);
}

static int add_vendor_cap(struct virtio_pci *vp, uint8_t type, unsigned size, uint8_t bar,
                          uint32_t offset, uint32_t length)
{
    int at = pci_add_capability(&vp->pci, PCI_CAP_ID_VNDR, 0, size);
    if (at < 0)
        return -1;
    unsigned c = (unsigned)at;
    pci_set_byte(&vp->pci, c + CAP_LEN, (uint8_t)size);
    pci_set_byte(&vp->pci, c + CAP_CFG_TYPE, type);
    pci_set_byte(&vp->pci, c + CAP_BAR, bar);
    pci_set_byte(&vp->pci, c + CAP_ID, 0);
    pci_set_long(&vp->pci, c + CAP_OFFSET, offset);
    pci_set_long(&vp->pci, c + CAP_LENGTH, length);
    if (type == VIRTIO_PCI_CAP_NOTIFY_CFG)
        pci_set_long(&vp->pci, c + CAP_NOTIFY_MULTIPLIER, VIRTIO_PCI_NOTIFY_MULTIPLIER);
    if (type == VIRTIO_PCI_CAP_PCI_CFG) {
        vp->pci_cfg_cap = c;
        /* bar, offset, length and data are the driver's to write. */
        pci_set_wmask(&vp->pci, c + CAP_BAR, 1, 0xff);
        pci_set_wmask(&vp->pci, c + CAP_OFFSET, 4, 0xffffffff);
        pci_set_wmask(&vp->pci, c + CAP_LENGTH, 4, 0xffffffff);
        pci_set_wmask(&vp->pci, c + CAP_PCI_CFG_DATA, 4, 0xffffffff);
    }
    return 0;
}

static void stop_workers(struct virtio_pci *vp)
{
    for (unsigned i = 0; i < vp->num_queues; i++) {
        struct virtio_pci_queue *q = &vp->queues[i];
        if (!q->thread_started)
            continue;
        atomic_store(&q->stop_thread, true);
        virtio_pci_kick(vp, i);
        pthread_join(q->thread, NULL);
        q->thread_started = false;
    }
}

static void free_queues(struct virtio_pci *vp)
{
    for (unsigned i = 0; i < vp->num_queues; i++) {
        struct virtio_pci_queue *q = &vp->queues[i];
        if (q->kick_fd >= 0)
            close(q->kick_fd);
        pthread_mutex_destroy(&q->proc_lock);
        virtq_destroy(&q->vq);
    }
    free(vp->queues);
    vp->queues = NULL;
}

int virtio_pci_init(struct virtio_pci *vp, const struct virtio_pci_params *p)
{
    memset(vp, 0, sizeof(*vp));
    const char *name = p->name ? p->name : "virtio";
    uint16_t qs = p->queue_size;
    if (p->num_queues == 0 || p->num_queues > VIRTIO_PCI_MAX_QUEUES || qs == 0 ||
        qs > VIRTQ_MAX_SIZE || (qs & (qs - 1)) ||
        p->config_size > VIRTIO_PCI_LEGACY_BAR_SIZE - VIRTIO_LEGACY_CONFIG_MSIX || !p->ops ||
        !p->ops->queue_process || !p->mem) {
        log_error("%s: invalid virtio device parameters (%u queues of %u)", name, p->num_queues,
                  qs);
        return -1;
    }
    bool transitional;
    struct pci_ids ids = {
        .vendor_id = VIRTIO_PCI_VENDOR_ID,
        .device_id = pci_device_id_for(p->device_type, &transitional),
        .subsystem_vendor_id = VIRTIO_PCI_VENDOR_ID,
        .subsystem_id = p->device_type,
        .class_code = p->class_code,
        .revision = transitional ? 0 : 1,
    };
    pci_device_init(&vp->pci, name, NULL, &ids, &virtio_pci_ops);
    pci_set_interrupt_pin(&vp->pci, PCI_INTA);
    vp->ops = p->ops;
    vp->name = name;
    vp->device_type = p->device_type;
    vp->mem = p->mem;
    vp->machine = p->machine;
    vp->device_features = p->features | TRANSPORT_FEATURES;
    vp->num_queues = p->num_queues;
    vp->config_size = p->config_size;
    atomic_store(&vp->config_vector, VIRTIO_MSI_NO_VECTOR);
    pthread_mutex_init(&vp->lock, NULL);
    pthread_mutex_init(&vp->isr_lock, NULL);

    vp->config = calloc(1, p->config_size ? p->config_size : 1);
    vp->queues = calloc(p->num_queues, sizeof(*vp->queues));
    if (!vp->config || !vp->queues) {
        log_error("%s: out of memory", name);
        goto fail_alloc;
    }
    if (p->config_size)
        memcpy(vp->config, p->config, p->config_size);
    for (unsigned i = 0; i < p->num_queues; i++) {
        struct virtio_pci_queue *q = &vp->queues[i];
        q->vp = vp;
        q->index = i;
        q->kick_fd = -1;
        virtq_init(&q->vq, name, i, qs, &vp->vq_log);
        pthread_mutex_init(&q->proc_lock, NULL);
        atomic_store(&q->msix_vector, VIRTIO_MSI_NO_VECTOR);
    }
    for (unsigned i = 0; i < p->num_queues; i++) {
        vp->queues[i].kick_fd = eventfd(0, EFD_CLOEXEC);
        if (vp->queues[i].kick_fd < 0) {
            log_error("%s: eventfd: %s", name, strerror(errno));
            goto fail_queues;
        }
    }

    if (pci_register_bar(&vp->pci, VIRTIO_PCI_BAR_LEGACY, PCI_BAR_IO, false,
                         VIRTIO_PCI_LEGACY_BAR_SIZE, &legacy_bar_ops, vp) < 0 ||
        pci_register_bar(&vp->pci, VIRTIO_PCI_BAR_MSIX, PCI_BAR_MEM32, false,
                         VIRTIO_PCI_MSIX_BAR_SIZE, &msix_bar_io_ops, &vp->msix) < 0 ||
        pci_register_bar(&vp->pci, VIRTIO_PCI_BAR_MODERN, PCI_BAR_MEM32, false,
                         VIRTIO_PCI_MODERN_BAR_SIZE, &modern_bar_ops, vp) < 0)
        goto fail_queues;
    if (msix_init(&vp->msix, &vp->pci, p->num_queues + 1, VIRTIO_PCI_BAR_MSIX,
                  VIRTIO_PCI_MSIX_TABLE_OFFSET, VIRTIO_PCI_MSIX_PBA_OFFSET, p->msix_sink) < 0)
        goto fail_queues;
    if (add_vendor_cap(vp, VIRTIO_PCI_CAP_COMMON_CFG, CAP_SIZE, VIRTIO_PCI_BAR_MODERN,
                       VIRTIO_PCI_COMMON_OFFSET, VIRTIO_PCI_COMMON_SIZE) < 0 ||
        add_vendor_cap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, CAP_NOTIFY_SIZE, VIRTIO_PCI_BAR_MODERN,
                       VIRTIO_PCI_NOTIFY_OFFSET, notify_region_size(vp)) < 0 ||
        add_vendor_cap(vp, VIRTIO_PCI_CAP_ISR_CFG, CAP_SIZE, VIRTIO_PCI_BAR_MODERN,
                       VIRTIO_PCI_ISR_OFFSET, 1) < 0 ||
        add_vendor_cap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, CAP_SIZE, VIRTIO_PCI_BAR_MODERN,
                       VIRTIO_PCI_DEVICE_OFFSET, p->config_size ? p->config_size : 4) < 0 ||
        add_vendor_cap(vp, VIRTIO_PCI_CAP_PCI_CFG, CAP_PCI_CFG_SIZE, 0, 0, 0) < 0)
        goto fail_msix;
    memcpy(vp->pci.power_on_config, vp->pci.config, sizeof(vp->pci.config));

    for (unsigned i = 0; i < p->num_queues; i++) {
        struct virtio_pci_queue *q = &vp->queues[i];
        char thread_name[16];
        snprintf(thread_name, sizeof(thread_name), "%.10s-q%u", name, i % 100);
        int err = thread_start(&q->thread, thread_name, 0, queue_worker, q);
        if (err) {
            log_error("%s: cannot start queue worker: %s", name, strerror(-err));
            stop_workers(vp);
            goto fail_msix;
        }
        q->thread_started = true;
    }
    return 0;

fail_msix:
    msix_destroy(&vp->msix);
fail_queues:
    free_queues(vp);
fail_alloc:
    free(vp->config);
    free(vp->queues);
    vp->config = NULL;
    vp->queues = NULL;
    pthread_mutex_destroy(&vp->lock);
    pthread_mutex_destroy(&vp->isr_lock);
    pci_device_destroy(&vp->pci);
    return -1;
}

#define DUMP_LOCK_MS 100

void virtio_pci_dump(struct virtio_pci *vp)
{
    if (!mutex_lock_within(&vp->lock, DUMP_LOCK_MS)) {
        log_info("%s: transport lock held for %u ms (a vCPU is stuck in a register access?)",
                 vp->name, DUMP_LOCK_MS);
        return;
    }
    pthread_mutex_lock(&vp->isr_lock);
    uint8_t isr = vp->isr;
    pthread_mutex_unlock(&vp->isr_lock);
    log_info("%s: virtio status 0x%02x%s, %s driver, features 0x%llx, isr 0x%x, msix %s, config "
             "vector %u",
             vp->name, vp->status, atomic_load(&vp->needs_reset) ? " NEEDS_RESET" : "",
             vp->legacy_driver ? "legacy" : "modern", (unsigned long long)virtio_pci_features(vp),
             isr, msix_enabled(&vp->msix) ? "on" : "off", atomic_load(&vp->config_vector));
    for (unsigned i = 0; i < vp->num_queues; i++) {
        struct virtio_pci_queue *q = &vp->queues[i];
        if (!q->enabled)
            continue;
        char ring[320], device[128] = "";
        bool popper_idle = mutex_lock_within(&q->proc_lock, DUMP_LOCK_MS);
        virtq_describe(&q->vq, popper_idle, ring, sizeof(ring));
        if (popper_idle)
            pthread_mutex_unlock(&q->proc_lock);
        if (vp->ops->queue_describe)
            vp->ops->queue_describe(vp, i, device, sizeof(device));
        uint16_t vector = atomic_load(&q->msix_vector);
        log_info("%s queue %u: %s; running %u, vector %u%s%s%s", vp->name, i, ring,
                 atomic_load(&q->running), vector,
                 vector != VIRTIO_MSI_NO_VECTOR && msix_is_pending(&vp->msix, vector)
                     ? " (pending in PBA)"
                     : "",
                 device[0] ? "; " : "", device);
    }
    pthread_mutex_unlock(&vp->lock);
}

void virtio_pci_reset(struct virtio_pci *vp)
{
    pthread_mutex_lock(&vp->lock);
    virtio_reset_locked(vp);
    pthread_mutex_unlock(&vp->lock);
    msix_reset(&vp->msix);
    pci_device_reset(&vp->pci);
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
    if (!vp->queues)
        return;
    pthread_mutex_lock(&vp->lock);
    virtio_reset_locked(vp);
    pthread_mutex_unlock(&vp->lock);
    stop_workers(vp);
    msix_destroy(&vp->msix);
    free_queues(vp);
    free(vp->config);
    vp->config = NULL;
    pthread_mutex_destroy(&vp->lock);
    pthread_mutex_destroy(&vp->isr_lock);
    pci_device_destroy(&vp->pci);
}
