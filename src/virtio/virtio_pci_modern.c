/* The modern (virtio 1.x) interface in BAR2: common configuration, device
 * configuration, notify doorbells and ISR. */
#include <stdatomic.h>

#include "common/bytes.h"
#include "virtio/virtio_pci_internal.h"

static const struct reg_def common_regs[] = {
    {VIRTIO_COMMON_DFSELECT, 4, VIRTIO_COMMON_DFSELECT},
    {VIRTIO_COMMON_DF, 4, VIRTIO_COMMON_DF},
    {VIRTIO_COMMON_GFSELECT, 4, VIRTIO_COMMON_GFSELECT},
    {VIRTIO_COMMON_GF, 4, VIRTIO_COMMON_GF},
    {VIRTIO_COMMON_MSIX, 2, VIRTIO_COMMON_MSIX},
    {VIRTIO_COMMON_NUMQ, 2, VIRTIO_COMMON_NUMQ},
    {VIRTIO_COMMON_STATUS, 1, VIRTIO_COMMON_STATUS},
    {VIRTIO_COMMON_CFGGENERATION, 1, VIRTIO_COMMON_CFGGENERATION},
    {VIRTIO_COMMON_Q_SELECT, 2, VIRTIO_COMMON_Q_SELECT},
    {VIRTIO_COMMON_Q_SIZE, 2, VIRTIO_COMMON_Q_SIZE},
    {VIRTIO_COMMON_Q_MSIX, 2, VIRTIO_COMMON_Q_MSIX},
    {VIRTIO_COMMON_Q_ENABLE, 2, VIRTIO_COMMON_Q_ENABLE},
    {VIRTIO_COMMON_Q_NOFF, 2, VIRTIO_COMMON_Q_NOFF},
    {VIRTIO_COMMON_Q_DESC, 8, VIRTIO_COMMON_Q_DESC},
    {VIRTIO_COMMON_Q_AVAIL, 8, VIRTIO_COMMON_Q_AVAIL},
    {VIRTIO_COMMON_Q_USED, 8, VIRTIO_COMMON_Q_USED},
    {VIRTIO_COMMON_Q_NDATA, 2, VIRTIO_COMMON_Q_NDATA},
    {VIRTIO_COMMON_Q_RESET, 2, VIRTIO_COMMON_Q_RESET},
};

/* Register ids are their offsets. */
static const struct regmap common_map = {common_regs, ARRAY_LEN(common_regs)};

static uint64_t common_get(void *opaque, uint32_t field)
{
    struct virtio_pci *vp = opaque;
    struct virtio_device *vdev = vp->vdev;
    int q = vp_selected_queue(vp);
    switch (field) {
    case VIRTIO_COMMON_DFSELECT:
        return vp->dfselect;
    case VIRTIO_COMMON_DF:
        return vp->dfselect < 2 ? (uint32_t)(vdev->device_features >> (32 * vp->dfselect)) : 0;
    case VIRTIO_COMMON_GFSELECT:
        return vp->gfselect;
    case VIRTIO_COMMON_GF:
        return vp->gfselect < 2
                   ? (uint32_t)(atomic_load(&vdev->driver_features) >> (32 * vp->gfselect))
                   : 0;
    case VIRTIO_COMMON_MSIX:
        return atomic_load(&vp->config_vector);
    case VIRTIO_COMMON_NUMQ:
        return vdev->num_queues;
    case VIRTIO_COMMON_STATUS:
        return virtio_status(vdev);
    case VIRTIO_COMMON_CFGGENERATION:
        return (uint8_t)virtio_config_generation(vdev);
    case VIRTIO_COMMON_Q_SELECT:
        return vp->queue_select;
    case VIRTIO_COMMON_Q_SIZE:
        return q >= 0 ? vdev->queues[q].vq.size : 0;
    case VIRTIO_COMMON_Q_MSIX:
        return q >= 0 ? atomic_load(&vp->queue_vectors[q]) : VIRTIO_MSI_NO_VECTOR;
    case VIRTIO_COMMON_Q_ENABLE:
        return q >= 0 ? vdev->queues[q].enabled : 0;
    case VIRTIO_COMMON_Q_NOFF:
    case VIRTIO_COMMON_Q_NDATA:
        return q >= 0 ? (unsigned)q : 0;
    case VIRTIO_COMMON_Q_DESC:
        return q >= 0 ? virtio_queue_addr(vdev, (unsigned)q, VIRTIO_RING_DESC) : 0;
    case VIRTIO_COMMON_Q_AVAIL:
        return q >= 0 ? virtio_queue_addr(vdev, (unsigned)q, VIRTIO_RING_AVAIL) : 0;
    case VIRTIO_COMMON_Q_USED:
        return q >= 0 ? virtio_queue_addr(vdev, (unsigned)q, VIRTIO_RING_USED) : 0;
    default:
        return 0;
    }
}

/* A 64-bit ring address, written whole or as two 32-bit halves. */
static void set_queue_addr(struct virtio_pci *vp, unsigned q, enum virtio_ring_part part,
                           uint64_t value, uint64_t mask)
{
    uint64_t addr = virtio_queue_addr(vp->vdev, q, part);
    virtio_queue_set_addr_locked(vp->vdev, q, part, reg_merge(addr, value, mask));
}

/* One natural write (vp_natural_register checked it): value and mask as
 * regmap_write gives them. */
static void common_set(void *opaque, uint32_t reg, uint64_t value, uint64_t mask)
{
    struct virtio_pci *vp = opaque;
    struct virtio_device *vdev = vp->vdev;
    int selected = vp_selected_queue(vp);
    bool queue_reg = reg >= VIRTIO_COMMON_Q_SIZE;
    if (queue_reg && selected < 0) {
        log_limited(&vp->log, LOG_WARNING,
                    "%s: write to queue register 0x%x with queue_select %u out of range (%u "
                    "queues); ignored",
                    vp->name, reg, vp->queue_select, vdev->num_queues);
        return;
    }
    unsigned q = selected < 0 ? 0 : (unsigned)selected;
    switch (reg) {
    case VIRTIO_COMMON_DFSELECT:
        vp->dfselect = (uint32_t)value;
        break;
    case VIRTIO_COMMON_GFSELECT:
        vp->gfselect = (uint32_t)value;
        break;
    case VIRTIO_COMMON_GF:
        virtio_set_driver_features_locked(vdev, vp->gfselect, (uint32_t)value);
        break;
    case VIRTIO_COMMON_MSIX:
        atomic_store(&vp->config_vector, vp_msix_vector_value(vp, value));
        break;
    case VIRTIO_COMMON_STATUS:
        vp_write_status_locked(vp, (uint8_t)value, false);
        break;
    case VIRTIO_COMMON_Q_SELECT:
        vp->queue_select = (uint16_t)value;
        break;
    case VIRTIO_COMMON_Q_SIZE:
        virtio_queue_set_size_locked(vdev, q, value);
        break;
    case VIRTIO_COMMON_Q_MSIX:
        vp_set_queue_vector_locked(vp, q, value);
        break;
    case VIRTIO_COMMON_Q_ENABLE:
        virtio_queue_enable_locked(vdev, q, value);
        break;
    case VIRTIO_COMMON_Q_DESC:
        set_queue_addr(vp, q, VIRTIO_RING_DESC, value, mask);
        break;
    case VIRTIO_COMMON_Q_AVAIL:
        set_queue_addr(vp, q, VIRTIO_RING_AVAIL, value, mask);
        break;
    case VIRTIO_COMMON_Q_USED:
        set_queue_addr(vp, q, VIRTIO_RING_USED, value, mask);
        break;
    case VIRTIO_COMMON_Q_RESET:
        log_limited(&vp->log, LOG_WARNING,
                    "%s: queue_reset written, but VIRTIO_F_RING_RESET is not offered; ignored",
                    vp->name);
        break;
    default:
        log_limited(&vp->log, LOG_DEBUG, "%s: write to read-only common config field 0x%x",
                    vp->name, reg);
        break;
    }
}

static void common_write_locked(struct virtio_pci *vp, unsigned off, unsigned size, uint64_t value)
{
    if (!vp_natural_register(&common_map, off, size)) {
        log_limited(&vp->log, LOG_WARNING,
                    "%s: %u-byte write at common config offset 0x%x is not a natural access; "
                    "ignored",
                    vp->name, size, off);
        return;
    }
    regmap_write(&common_map, off, size, value, common_set, vp);
}

static unsigned notify_region_size(const struct virtio_pci *vp)
{
    return vp->vdev->num_queues * VIRTIO_PCI_NOTIFY_MULTIPLIER;
}

static uint64_t modern_bar_read(void *opaque, uint64_t offset, unsigned size)
{
    struct virtio_pci *vp = opaque;
    uint64_t value = 0;
    if (offset < VIRTIO_PCI_COMMON_SIZE) {
        pthread_mutex_lock(&vp->vdev->lock);
        regmap_read(&common_map, offset, size, common_get, vp, &value);
        pthread_mutex_unlock(&vp->vdev->lock);
    } else if (offset >= VIRTIO_PCI_DEVICE_OFFSET && offset < VIRTIO_PCI_NOTIFY_OFFSET) {
        value = virtio_config_read(vp->vdev, (unsigned)(offset - VIRTIO_PCI_DEVICE_OFFSET), size);
    } else if (offset == VIRTIO_PCI_ISR_OFFSET) {
        value = vp_isr_read_clear(vp);
    }
    return value & size_mask(size);
}

static void modern_bar_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct virtio_pci *vp = opaque;
    value &= size_mask(size);
    if (offset < VIRTIO_PCI_COMMON_SIZE) {
        pthread_mutex_lock(&vp->vdev->lock);
        common_write_locked(vp, (unsigned)offset, size, value);
        pthread_mutex_unlock(&vp->vdev->lock);
        return;
    }
    if (offset >= VIRTIO_PCI_DEVICE_OFFSET && offset < VIRTIO_PCI_NOTIFY_OFFSET) {
        virtio_config_write(vp->vdev, (unsigned)(offset - VIRTIO_PCI_DEVICE_OFFSET), size, value);
        return;
    }
    if (offset >= VIRTIO_PCI_NOTIFY_OFFSET && offset < VIRTIO_PCI_ISR_OFFSET) {
        uint64_t rel = offset - VIRTIO_PCI_NOTIFY_OFFSET;
        if (rel >= notify_region_size(vp) || rel % VIRTIO_PCI_NOTIFY_MULTIPLIER) {
            log_limited(&vp->log, LOG_WARNING,
                        "%s: notify at offset 0x%llx is no queue's doorbell (%u queues); ignored",
                        vp->name, (unsigned long long)rel, vp->vdev->num_queues);
            return;
        }
        virtio_queue_kick(vp->vdev, (unsigned)(rel / VIRTIO_PCI_NOTIFY_MULTIPLIER));
        return;
    }
    log_limited(&vp->log, LOG_DEBUG, "%s: write to BAR2 offset 0x%llx ignored", vp->name,
                (unsigned long long)offset);
}

const struct io_ops vp_modern_bar_ops = {.read = modern_bar_read, .write = modern_bar_write};
