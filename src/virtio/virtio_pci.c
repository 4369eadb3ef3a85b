/* The PCI transport's common part: the function (IDs, BARs, capabilities),
 * MSI-X vectors and the ISR, ioeventfds, and the device lifecycle (reset,
 * pause, resume, state, dump, teardown). The register files are in
 * virtio_pci_modern.c and virtio_pci_legacy.c. */
#include "virtio/virtio_pci.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/sync.h"
#include "core/machine.h"
#include "virtio/virtio_pci_internal.h"

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

#define ISR_BITS (VIRTIO_ISR_QUEUE | VIRTIO_ISR_CONFIG)

/* ---- Shared with the register files ---- */

int vp_selected_queue(struct virtio_pci *vp)
{
    return vp->queue_select < vp->vdev->num_queues ? vp->queue_select : -1;
}

uint16_t vp_msix_vector_value(struct virtio_pci *vp, uint64_t value)
{
    return value < vp->msix.nvec ? (uint16_t)value : VIRTIO_MSI_NO_VECTOR;
}

void vp_set_queue_vector_locked(struct virtio_pci *vp, unsigned q, uint64_t value)
{
    uint16_t vector = vp_msix_vector_value(vp, value);
    if (atomic_exchange(&vp->queue_vectors[q], vector) != vector)
        virtio_queue_interrupt_moved_locked(vp->vdev, q);
}

const struct reg_def *vp_natural_register(const struct regmap *map, unsigned offset, unsigned size)
{
    for (size_t i = 0; i < map->count; i++) {
        const struct reg_def *r = &map->regs[i];
        if (offset == r->offset && size == r->size)
            return r;
        if (r->size == 8 && size == 4 && (offset == r->offset || offset == r->offset + 4))
            return r;
    }
    return NULL;
}

/* ---- Interrupts ---- */

static void isr_raise(struct virtio_pci *vp, uint8_t bits)
{
    pthread_mutex_lock(&vp->isr_lock);
    vp->isr |= bits;
    pci_set_irq(&vp->pci, true);
    pthread_mutex_unlock(&vp->isr_lock);
}

uint8_t vp_isr_read_clear(struct virtio_pci *vp)
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

static void vp_queue_interrupt(void *opaque, unsigned queue)
{
    struct virtio_pci *vp = opaque;
    if (queue < vp->vdev->num_queues)
        signal_vector(vp, atomic_load(&vp->queue_vectors[queue]), VIRTIO_ISR_QUEUE);
}

static void vp_config_interrupt(void *opaque)
{
    struct virtio_pci *vp = opaque;
    signal_vector(vp, atomic_load(&vp->config_vector), VIRTIO_ISR_CONFIG);
}

/* The queue's interrupt as an eventfd another engine may write: its MSI-X
 * vector's, when MSI-X is on and the queue has a vector. */
static int vp_queue_irqfd(void *opaque, unsigned queue)
{
    struct virtio_pci *vp = opaque;
    if (queue >= vp->vdev->num_queues || !msix_enabled(&vp->msix))
        return -1;
    uint16_t vector = atomic_load(&vp->queue_vectors[queue]);
    return vector == VIRTIO_MSI_NO_VECTOR ? -1 : msix_vector_eventfd(&vp->msix, vector);
}

static bool vp_dma_enabled(void *opaque)
{
    struct virtio_pci *vp = opaque;
    return pci_bus_master_enabled(&vp->pci);
}

static const struct virtio_transport_ops vp_transport_ops = {
    .queue_interrupt = vp_queue_interrupt,
    .config_interrupt = vp_config_interrupt,
    .queue_irqfd = vp_queue_irqfd,
    .dma_enabled = vp_dma_enabled,
};

/* ---- Reset ---- */

/* Virtio reset (vdev->lock held): the device's, then the transport's
 * registers. MSI-X and PCI state are left alone. */
static void transport_reset_locked(struct virtio_pci *vp)
{
    virtio_reset_locked(vp->vdev);
    for (unsigned i = 0; i < vp->vdev->num_queues; i++)
        atomic_store(&vp->queue_vectors[i], VIRTIO_MSI_NO_VECTOR);
    vp->dfselect = vp->gfselect = 0;
    vp->queue_select = 0;
    atomic_store(&vp->config_vector, VIRTIO_MSI_NO_VECTOR);
    vp_isr_read_clear(vp);
}

void vp_write_status_locked(struct virtio_pci *vp, uint8_t value, bool legacy)
{
    if ((value & (uint8_t)~VIRTIO_STATUS_NEEDS_RESET) == 0)
        transport_reset_locked(vp);
    else
        virtio_set_status_locked(vp->vdev, value, legacy);
}

void virtio_pci_reset(struct virtio_pci *vp)
{
    pthread_mutex_lock(&vp->vdev->lock);
    transport_reset_locked(vp);
    pthread_mutex_unlock(&vp->vdev->lock);
    msix_reset(&vp->msix);
    pci_device_reset(&vp->pci);
}

/* ---- PCI hooks ---- */

/* The modern doorbell has an address per queue; the legacy one is a single
 * port for every queue, the value written naming the queue, so its
 * ioeventfds match on that value. */
static void ioevent_set(struct virtio_pci *vp, unsigned queue, bool pio, bool on, uint64_t addr)
{
    struct virtio_pci_ioevent *ev = &vp->ioevents[queue];
    int kick_fd = vp->vdev->queues[queue].kick_fd;
    bool *registered = pio ? &ev->pio : &ev->mmio;
    uint64_t *at = pio ? &ev->pio_addr : &ev->mmio_addr;
    uint64_t queue_index = queue;
    const uint64_t *match = pio ? &queue_index : NULL;
    if (*registered && vp->machine->vm_fd >= 0)
        machine_ioeventfd(vp->machine, kick_fd, *at, 2, pio, match, false);
    *registered = false;
    if (!on || vp->machine->vm_fd < 0)
        return;
    if (machine_ioeventfd(vp->machine, kick_fd, addr, 2, pio, match, true) == 0) {
        *registered = true;
        *at = addr;
    } else {
        log_warn("%s: queue %u: no ioeventfd at %s 0x%llx; notifications take the slow path",
                 vp->name, queue, pio ? "port" : "address", (unsigned long long)addr);
    }
}

/* Device lock held (a pci_device_ops hook, or vm_attached). */
static void update_ioeventfds(struct virtio_pci *vp, unsigned bar, bool mapped, uint64_t base)
{
    if (!vp->machine)
        return;
    for (unsigned i = 0; i < vp->vdev->num_queues; i++) {
        if (bar == VIRTIO_PCI_BAR_MODERN)
            ioevent_set(vp, i, false, mapped,
                        base + VIRTIO_PCI_NOTIFY_OFFSET + i * VIRTIO_PCI_NOTIFY_MULTIPLIER);
        if (bar == VIRTIO_PCI_BAR_LEGACY)
            ioevent_set(vp, i, true, mapped, base + VIRTIO_LEGACY_QUEUE_NOTIFY);
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

/* ---- Device lifecycle ---- */

static struct virtio_pci *vp_of(struct device *dev)
{
    return container_of(dev, struct virtio_pci, pci.dev);
}

static void vp_reset(struct device *dev)
{
    virtio_pci_reset(vp_of(dev));
}

static int vp_vm_attached(struct device *dev, struct machine *m)
{
    struct virtio_pci *vp = vp_of(dev);
    pthread_mutex_lock(&vp->pci.lock);
    /* A new VM has none of the old registrations. */
    for (unsigned i = 0; i < vp->vdev->num_queues; i++)
        vp->ioevents[i].mmio = vp->ioevents[i].pio = false;
    for (unsigned bar = 0; bar < PCI_BAR_COUNT; bar++)
        if (vp->pci.bars[bar].mapped)
            update_ioeventfds(vp, bar, true, vp->pci.bars[bar].mapped_base);
    pthread_mutex_unlock(&vp->pci.lock);
    return 0;
}

static int vp_pause(struct device *dev)
{
    virtio_device_pause(vp_of(dev)->vdev);
    return 0;
}

static void vp_resume(struct device *dev)
{
    virtio_device_resume(vp_of(dev)->vdev);
}

#define DUMP_LOCK_MS 100

static void vp_dump(struct device *dev)
{
    struct virtio_pci *vp = vp_of(dev);
    struct virtio_device *vdev = vp->vdev;
    if (!mutex_lock_within(&vdev->lock, DUMP_LOCK_MS)) {
        log_info("%s: transport lock held for %u ms (a vCPU is stuck in a register access?)",
                 vp->name, DUMP_LOCK_MS);
        return;
    }
    pthread_mutex_lock(&vp->isr_lock);
    uint8_t isr = vp->isr;
    pthread_mutex_unlock(&vp->isr_lock);
    log_info("%s: virtio status 0x%02x%s, %s driver, features 0x%llx, isr 0x%x, msix %s, config "
             "vector %u, config generation %u",
             vp->name, vdev->status, atomic_load(&vdev->needs_reset) ? " NEEDS_RESET" : "",
             vdev->legacy_driver ? "legacy" : "modern", (unsigned long long)virtio_features(vdev),
             isr, msix_enabled(&vp->msix) ? "on" : "off", atomic_load(&vp->config_vector),
             virtio_config_generation(vdev));
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        if (!vdev->queues[i].enabled)
            continue;
        char ring[320], device[128];
        virtio_describe_queue(vdev, i, ring, sizeof(ring), device, sizeof(device));
        uint16_t vector = atomic_load(&vp->queue_vectors[i]);
        log_info("%s queue %u: %s; running %u, vector %u%s%s%s", vp->name, i, ring,
                 atomic_load(&vdev->queues[i].running), vector,
                 vector != VIRTIO_MSI_NO_VECTOR && msix_is_pending(&vp->msix, vector)
                     ? " (pending in PBA)"
                     : "",
                 device[0] ? "; " : "", device);
    }
    pthread_mutex_unlock(&vdev->lock);
}

/* The transport's registers (vdev->lock held). A load validates each
 * before anything is changed. */
static void transport_fields(struct virtio_pci *vp, struct snap *s)
{
    unsigned nq = vp->vdev->num_queues;
    bool loading = snap_loading(s);
    uint32_t dfselect = vp->dfselect, gfselect = vp->gfselect;
    uint16_t queue_select = vp->queue_select, config_vector = atomic_load(&vp->config_vector);
    uint16_t vectors[VIRTIO_MAX_QUEUES];
    for (unsigned i = 0; i < nq; i++)
        vectors[i] = atomic_load(&vp->queue_vectors[i]);
    pthread_mutex_lock(&vp->isr_lock);
    uint8_t isr = vp->isr;
    pthread_mutex_unlock(&vp->isr_lock);

    snap_enter(s, "transport");
    snap_u32(s, "device_feature_select", &dfselect);
    snap_u32(s, "driver_feature_select", &gfselect);
    snap_u16(s, "queue_select", &queue_select);
    snap_u16(s, "config_vector", &config_vector);
    if (loading)
        snap_check(s, config_vector < vp->msix.nvec || config_vector == VIRTIO_MSI_NO_VECTOR,
                   "config_vector", "beyond the function's MSI-X vectors");
    for (unsigned i = 0; i < nq; i++) {
        snap_enter(s, "q%u", i);
        snap_u16(s, "vector", &vectors[i]);
        if (loading)
            snap_check(s, vectors[i] < vp->msix.nvec || vectors[i] == VIRTIO_MSI_NO_VECTOR,
                       "vector", "beyond the function's MSI-X vectors");
        snap_leave(s);
    }
    snap_u8(s, "isr", &isr);
    if (loading)
        snap_check(s, (isr & ~ISR_BITS) == 0, "isr", "bits other than queue and config");
    snap_leave(s);

    if (!loading || snap_error(s))
        return;
    vp->dfselect = dfselect;
    vp->gfselect = gfselect;
    vp->queue_select = queue_select;
    atomic_store(&vp->config_vector, config_vector);
    for (unsigned i = 0; i < nq; i++)
        atomic_store(&vp->queue_vectors[i], vectors[i]);
    /* The INTx level came back with the function's state. */
    pthread_mutex_lock(&vp->isr_lock);
    vp->isr = isr;
    pthread_mutex_unlock(&vp->isr_lock);
}

static int vp_state(struct device *dev, struct snap *s)
{
    struct virtio_pci *vp = vp_of(dev);
    snap_enter(s, "pci");
    pci_device_state(&vp->pci, s);
    snap_leave(s);
    snap_enter(s, "msix");
    msix_state(&vp->msix, s);
    snap_leave(s);
    pthread_mutex_lock(&vp->vdev->lock);
    transport_fields(vp, s);
    pthread_mutex_unlock(&vp->vdev->lock);
    if (!snap_error(s))
        virtio_device_state(vp->vdev, s);
    return snap_error(s);
}

static void vp_destroy(struct device *dev)
{
    virtio_pci_destroy(vp_of(dev));
}

static const struct device_ops virtio_pci_device_ops = {
    .drop_decodes = pci_device_drop_decodes,
    .reset = vp_reset,
    .vm_attached = vp_vm_attached,
    .dump = vp_dump,
    .pause = vp_pause,
    .resume = vp_resume,
    .state = vp_state,
    .state_version = VIRTIO_PCI_STATE_VERSION,
    .destroy = vp_destroy,
};

/* ---- Setup and teardown ---- */

/* The transitional IDs of virtio_ids.h; others get 0x1040 + type. */
static uint16_t pci_device_id_for(uint16_t type, bool *transitional)
{
    static const uint16_t ids[][2] = {
        {VIRTIO_ID_NET, VIRTIO_PCI_ID_NET},         {VIRTIO_ID_BLOCK, VIRTIO_PCI_ID_BLOCK},
        {VIRTIO_ID_BALLOON, VIRTIO_PCI_ID_BALLOON}, {VIRTIO_ID_CONSOLE, VIRTIO_PCI_ID_CONSOLE},
        {VIRTIO_ID_SCSI, VIRTIO_PCI_ID_SCSI},       {VIRTIO_ID_ENTROPY, VIRTIO_PCI_ID_ENTROPY},
        {VIRTIO_ID_9P, VIRTIO_PCI_ID_9P},           {VIRTIO_ID_VSOCK, VIRTIO_PCI_ID_VSOCK},
    };
    for (size_t i = 0; i < ARRAY_LEN(ids); i++) {
        if (ids[i][0] == type) {
            *transitional = true;
            return ids[i][1];
        }
    }
    *transitional = false;
    return (uint16_t)(VIRTIO_PCI_MODERN_DEVICE_ID_BASE + type);
}

/* PCI class codes by device type (base << 16 | sub << 8). */
static uint32_t class_code_for(uint16_t type)
{
    switch (type) {
    case VIRTIO_ID_NET:
        return 0x020000; /* Ethernet controller */
    case VIRTIO_ID_BLOCK:
        return 0x010000; /* SCSI storage controller */
    case VIRTIO_ID_CONSOLE:
        return 0x078000; /* other communication controller */
    default:
        return 0x00ff00; /* unclassified */
    }
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

static int setup_function(struct virtio_pci *vp, const struct virtio_pci_params *p)
{
    struct virtio_device *vdev = vp->vdev;
    unsigned nq = vdev->num_queues;
    unsigned config_size = vdev->config_size;
    if (pci_register_bar(&vp->pci, VIRTIO_PCI_BAR_LEGACY, PCI_BAR_IO, false,
                         VIRTIO_PCI_LEGACY_BAR_SIZE, &vp_legacy_bar_ops, vp) < 0 ||
        pci_register_bar(&vp->pci, VIRTIO_PCI_BAR_MSIX, PCI_BAR_MEM32, false,
                         VIRTIO_PCI_MSIX_BAR_SIZE, &msix_bar_io_ops, &vp->msix) < 0 ||
        pci_register_bar(&vp->pci, VIRTIO_PCI_BAR_MODERN, PCI_BAR_MEM32, false,
                         VIRTIO_PCI_MODERN_BAR_SIZE, &vp_modern_bar_ops, vp) < 0)
        return -1;
    if (msix_init(&vp->msix, &vp->pci, nq + 1, VIRTIO_PCI_BAR_MSIX, VIRTIO_PCI_MSIX_TABLE_OFFSET,
                  VIRTIO_PCI_MSIX_PBA_OFFSET, p->msix_sink) < 0)
        return -1;
    if (add_vendor_cap(vp, VIRTIO_PCI_CAP_COMMON_CFG, CAP_SIZE, VIRTIO_PCI_BAR_MODERN,
                       VIRTIO_PCI_COMMON_OFFSET, VIRTIO_PCI_COMMON_SIZE) < 0 ||
        add_vendor_cap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, CAP_NOTIFY_SIZE, VIRTIO_PCI_BAR_MODERN,
                       VIRTIO_PCI_NOTIFY_OFFSET, nq * VIRTIO_PCI_NOTIFY_MULTIPLIER) < 0 ||
        add_vendor_cap(vp, VIRTIO_PCI_CAP_ISR_CFG, CAP_SIZE, VIRTIO_PCI_BAR_MODERN,
                       VIRTIO_PCI_ISR_OFFSET, 1) < 0 ||
        add_vendor_cap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, CAP_SIZE, VIRTIO_PCI_BAR_MODERN,
                       VIRTIO_PCI_DEVICE_OFFSET, config_size ? config_size : 4) < 0 ||
        add_vendor_cap(vp, VIRTIO_PCI_CAP_PCI_CFG, CAP_PCI_CFG_SIZE, 0, 0, 0) < 0) {
        msix_destroy(&vp->msix);
        return -1;
    }
    memcpy(vp->pci.power_on_config, vp->pci.config, sizeof(vp->pci.config));
    return 0;
}

struct virtio_pci *virtio_pci_create(struct virtio_device *vdev, const struct virtio_pci_params *p)
{
    struct virtio_pci *vp = calloc(1, sizeof(*vp));
    unsigned nq = vdev->num_queues;
    if (vp) {
        vp->queue_vectors = calloc(nq, sizeof(*vp->queue_vectors));
        vp->ioevents = calloc(nq, sizeof(*vp->ioevents));
    }
    if (!vp || !vp->queue_vectors || !vp->ioevents) {
        log_error("%s: out of memory", vdev->name);
        if (vp) {
            free(vp->queue_vectors);
            free(vp->ioevents);
        }
        free(vp);
        virtio_device_destroy(vdev);
        return NULL;
    }
    bool transitional;
    struct pci_ids ids = {
        .vendor_id = VIRTIO_PCI_VENDOR_ID,
        .device_id = pci_device_id_for(vdev->device_type, &transitional),
        .subsystem_vendor_id = VIRTIO_PCI_VENDOR_ID,
        .subsystem_id = vdev->device_type,
        .class_code = p->class_code ? p->class_code : class_code_for(vdev->device_type),
        .revision = transitional ? 0 : 1,
    };
    vp->vdev = vdev;
    vp->name = vdev->name;
    vp->machine = p->machine;
    snprintf(vp->kind, sizeof(vp->kind), "virtio-pci-%s", vdev->ops->kind);
    vp->dev_ops = virtio_pci_device_ops;
    vp->dev_ops.kind = vp->kind;
    pci_device_init(&vp->pci, vdev->name, &vp->dev_ops, &ids, &virtio_pci_ops);
    pci_set_interrupt_pin(&vp->pci, PCI_INTA);
    pthread_mutex_init(&vp->isr_lock, NULL);
    atomic_store(&vp->config_vector, VIRTIO_MSI_NO_VECTOR);
    for (unsigned i = 0; i < nq; i++)
        atomic_store(&vp->queue_vectors[i], VIRTIO_MSI_NO_VECTOR);
    if (setup_function(vp, p) < 0)
        goto fail;
    if (virtio_device_attach(vdev, &vp_transport_ops, vp) < 0) {
        msix_destroy(&vp->msix);
        goto fail;
    }
    return vp;

fail:
    pthread_mutex_destroy(&vp->isr_lock);
    pci_device_destroy(&vp->pci);
    free(vp->queue_vectors);
    free(vp->ioevents);
    free(vp);
    virtio_device_destroy(vdev);
    return NULL;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
    /* The device first: its queues quiesce and its loops stop, so no
     * interrupt reaches the function while it goes. */
    virtio_device_destroy(vp->vdev);
    msix_destroy(&vp->msix);
    pthread_mutex_destroy(&vp->isr_lock);
    pci_device_destroy(&vp->pci);
    free(vp->queue_vectors);
    free(vp->ioevents);
    free(vp);
}
