/* The legacy interface in BAR0 (VIRTIO 1.x 4.1.4.8): the register block,
 * with the two MSI-X vector registers while MSI-X is enabled, followed by
 * the device configuration. */
#include <stdatomic.h>

#include "common/bytes.h"
#include "virtio/virtio_pci_internal.h"

static const struct reg_def legacy_regs[] = {
    {VIRTIO_LEGACY_DEVICE_FEATURES, 4, VIRTIO_LEGACY_DEVICE_FEATURES},
    {VIRTIO_LEGACY_GUEST_FEATURES, 4, VIRTIO_LEGACY_GUEST_FEATURES},
    {VIRTIO_LEGACY_QUEUE_PFN, 4, VIRTIO_LEGACY_QUEUE_PFN},
    {VIRTIO_LEGACY_QUEUE_SIZE, 2, VIRTIO_LEGACY_QUEUE_SIZE},
    {VIRTIO_LEGACY_QUEUE_SELECT, 2, VIRTIO_LEGACY_QUEUE_SELECT},
    {VIRTIO_LEGACY_QUEUE_NOTIFY, 2, VIRTIO_LEGACY_QUEUE_NOTIFY},
    {VIRTIO_LEGACY_STATUS, 1, VIRTIO_LEGACY_STATUS},
    {VIRTIO_LEGACY_ISR, 1, VIRTIO_LEGACY_ISR},
    {VIRTIO_LEGACY_CONFIG_VECTOR, 2, VIRTIO_LEGACY_CONFIG_VECTOR},
    {VIRTIO_LEGACY_QUEUE_VECTOR, 2, VIRTIO_LEGACY_QUEUE_VECTOR},
};

/* Register ids are their offsets. Without MSI-X the two vector registers
 * are not there (the configuration starts where they would be). */
static const struct regmap legacy_map_msix = {legacy_regs, ARRAY_LEN(legacy_regs)};
static const struct regmap legacy_map = {legacy_regs, ARRAY_LEN(legacy_regs) - 2};

static const struct regmap *map_for(bool msix)
{
    return msix ? &legacy_map_msix : &legacy_map;
}

static uint64_t legacy_get(void *opaque, uint32_t field)
{
    struct virtio_pci *vp = opaque;
    struct virtio_device *vdev = vp->vdev;
    int q = vp_selected_queue(vp);
    switch (field) {
    case VIRTIO_LEGACY_DEVICE_FEATURES:
        return (uint32_t)vdev->device_features;
    case VIRTIO_LEGACY_GUEST_FEATURES:
        return (uint32_t)atomic_load(&vdev->driver_features);
    case VIRTIO_LEGACY_QUEUE_PFN:
        return q >= 0 && vdev->queues[q].enabled
                   ? (uint32_t)(vdev->queues[q].vq.desc_gpa / VIRTQ_LEGACY_ALIGN)
                   : 0;
    case VIRTIO_LEGACY_QUEUE_SIZE:
        return q >= 0 ? vdev->queues[q].vq.size : 0;
    case VIRTIO_LEGACY_QUEUE_SELECT:
        return vp->queue_select;
    case VIRTIO_LEGACY_QUEUE_NOTIFY:
        return 0;
    case VIRTIO_LEGACY_STATUS:
        return virtio_status(vdev);
    case VIRTIO_LEGACY_ISR:
        return vp_isr_read_clear(vp);
    case VIRTIO_LEGACY_CONFIG_VECTOR:
        return atomic_load(&vp->config_vector);
    case VIRTIO_LEGACY_QUEUE_VECTOR:
        return q >= 0 ? atomic_load(&vp->queue_vectors[q]) : VIRTIO_MSI_NO_VECTOR;
    default:
        return 0;
    }
}

static void legacy_notify(struct virtio_pci *vp, uint64_t value)
{
    uint16_t queue = (uint16_t)value;
    if (queue >= vp->vdev->num_queues) {
        log_limited(&vp->log, LOG_WARNING,
                    "%s: notify for queue %u out of range (%u queues); ignored", vp->name, queue,
                    vp->vdev->num_queues);
        return;
    }
    virtio_queue_kick(vp->vdev, queue);
}

/* One natural write (vp_natural_register checked it). */
static void legacy_set(void *opaque, uint32_t reg, uint64_t value, uint64_t mask)
{
    struct virtio_pci *vp = opaque;
    struct virtio_device *vdev = vp->vdev;
    int q = vp_selected_queue(vp);
    switch (reg) {
    case VIRTIO_LEGACY_GUEST_FEATURES:
        virtio_set_legacy_features_locked(vdev, (uint32_t)value);
        break;
    case VIRTIO_LEGACY_QUEUE_PFN:
        if (q < 0)
            log_limited(&vp->log, LOG_WARNING,
                        "%s: queue address for queue %u out of range (%u queues); ignored",
                        vp->name, vp->queue_select, vdev->num_queues);
        else
            virtio_queue_set_legacy_pfn_locked(vdev, (unsigned)q, (uint32_t)value);
        break;
    case VIRTIO_LEGACY_QUEUE_SELECT:
        vp->queue_select = (uint16_t)value;
        break;
    case VIRTIO_LEGACY_STATUS:
        vp_write_status_locked(vp, (uint8_t)value, true);
        break;
    case VIRTIO_LEGACY_CONFIG_VECTOR:
        atomic_store(&vp->config_vector, vp_msix_vector_value(vp, value));
        break;
    case VIRTIO_LEGACY_QUEUE_VECTOR:
        if (q >= 0)
            vp_set_queue_vector_locked(vp, (unsigned)q, value);
        break;
    default:
        log_limited(&vp->log, LOG_DEBUG, "%s: write to read-only legacy register 0x%x", vp->name,
                    reg);
        break;
    }
}

static void legacy_write_locked(struct virtio_pci *vp, unsigned off, unsigned size, uint64_t value,
                                bool msix)
{
    if (!vp_natural_register(map_for(msix), off, size)) {
        log_limited(&vp->log, LOG_WARNING,
                    "%s: %u-byte legacy register write at 0x%x is not a natural access; ignored",
                    vp->name, size, off);
        return;
    }
    regmap_write(map_for(msix), off, size, value, legacy_set, vp);
}

static unsigned config_offset(struct virtio_pci *vp, bool msix)
{
    return msix ? VIRTIO_LEGACY_CONFIG_MSIX : VIRTIO_LEGACY_CONFIG_NOMSIX;
}

static uint64_t legacy_bar_read(void *opaque, uint64_t offset, unsigned size)
{
    struct virtio_pci *vp = opaque;
    bool msix = msix_enabled(&vp->msix);
    unsigned config_at = config_offset(vp, msix);
    unsigned off = (unsigned)offset;
    uint64_t value;
    if (off >= config_at)
        return virtio_config_read(vp->vdev, off - config_at, size) & size_mask(size);
    pthread_mutex_lock(&vp->vdev->lock);
    regmap_read(map_for(msix), off, size, legacy_get, vp, &value);
    pthread_mutex_unlock(&vp->vdev->lock);
    return value & size_mask(size);
}

static void legacy_bar_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct virtio_pci *vp = opaque;
    bool msix = msix_enabled(&vp->msix);
    unsigned config_at = config_offset(vp, msix);
    unsigned off = (unsigned)offset;
    value &= size_mask(size);
    if (off == VIRTIO_LEGACY_QUEUE_NOTIFY && (size == 2 || size == 4)) {
        legacy_notify(vp, value); /* no lock: the doorbell only wakes a loop */
        return;
    }
    if (off >= config_at) {
        virtio_config_write(vp->vdev, off - config_at, size, value);
        return;
    }
    pthread_mutex_lock(&vp->vdev->lock);
    legacy_write_locked(vp, off, size, value, msix);
    pthread_mutex_unlock(&vp->vdev->lock);
}

const struct io_ops vp_legacy_bar_ops = {.read = legacy_bar_read, .write = legacy_bar_write};
