/* virtio over PCI as propolis offers it: a transitional device (legacy PCI
 * device ID from virtio_ids.h, subsystem vendor 0x1AF4, subsystem ID = the
 * virtio device type) with both interfaces:
 *
 *   BAR0  I/O, 256 bytes: the legacy register block (VIRTIO 1.x 4.1.4.8),
 *         followed by the device-specific configuration
 *         (virtio_pci_legacy.c)
 *   BAR1  memory, 4 KiB: MSI-X table (offset 0) and PBA (offset 0x800)
 *   BAR2  memory, 16 KiB: the modern structures, one page each -
 *         common config 0x0000, device config 0x1000, notify 0x2000
 *         (notify_off_multiplier 4, queue n notifies at 0x2000 + 4n), ISR 0x3000
 *         (virtio_pci_modern.c)
 *
 * and the vendor capabilities pointing at them (common, notify, ISR, device,
 * plus the PCI-configuration-access capability, present but without data
 * access, as in propolis). This file's .c holds what both interfaces share:
 * the function, its BARs and capabilities, MSI-X vectors, the ISR,
 * notifications (ioeventfds) and the device lifecycle.
 *
 * The device behind it is a struct virtio_device (virtio.h): the transport
 * maps the core's registers and configuration, raises its interrupts and
 * reports bus mastering; the device never sees PCI.
 *
 * Interrupts: MSI-X when the guest enables it (per-queue and config vectors,
 * through msix.h: irqfd on a machine), else INTx with the ISR register (bit 0
 * queue, bit 1 configuration change; read to clear).
 *
 * Notifications: KVM signals the queue's kick eventfd directly (ioeventfd
 * on the queue's notify address, registered while the BAR is mapped and
 * again on vm_attached); the BAR handlers signal it when a notify write
 * exits to the VMM (legacy notify with several queues, or an access width
 * the ioeventfd does not match). The queue's I/O loop does the rest.
 *
 * Reset (status 0 from the guest): queue processing stops, in-flight
 * requests drain, state clears, queue vectors return to NO_VECTOR; the
 * device reset op also resets MSI-X (routes removed) and the PCI function.
 *
 * State (kind "virtio-pci-<device kind>", version 1): pci.* (config space,
 * INTx), msix.* (table, PBA, enable/mask), transport.* (feature selects,
 * queue select, config vector, each queue's vector, ISR), then the core's
 * virtio.* and the device's own fields. */
#ifndef VIRTIO_VIRTIO_PCI_H
#define VIRTIO_VIRTIO_PCI_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/log.h"
#include "devices/device.h"
#include "pci/msix.h"
#include "pci/pci.h"
#include "virtio/virtio.h"

struct machine;

#define VIRTIO_PCI_STATE_VERSION 1
#define VIRTIO_MSI_NO_VECTOR 0xffff

#define VIRTIO_ISR_QUEUE 0x1
#define VIRTIO_ISR_CONFIG 0x2

/* BAR layout. */
#define VIRTIO_PCI_BAR_LEGACY 0
#define VIRTIO_PCI_BAR_MSIX 1
#define VIRTIO_PCI_BAR_MODERN 2
#define VIRTIO_PCI_LEGACY_BAR_SIZE 0x100
#define VIRTIO_PCI_MSIX_BAR_SIZE 0x1000
#define VIRTIO_PCI_MSIX_TABLE_OFFSET 0x0
#define VIRTIO_PCI_MSIX_PBA_OFFSET 0x800
#define VIRTIO_PCI_MODERN_BAR_SIZE 0x4000
#define VIRTIO_PCI_COMMON_OFFSET 0x0000
#define VIRTIO_PCI_COMMON_SIZE 0x3c
#define VIRTIO_PCI_DEVICE_OFFSET 0x1000
#define VIRTIO_PCI_NOTIFY_OFFSET 0x2000
#define VIRTIO_PCI_NOTIFY_MULTIPLIER 4
#define VIRTIO_PCI_ISR_OFFSET 0x3000

/* Legacy register block (BAR0). */
#define VIRTIO_LEGACY_DEVICE_FEATURES 0x00
#define VIRTIO_LEGACY_GUEST_FEATURES 0x04
#define VIRTIO_LEGACY_QUEUE_PFN 0x08
#define VIRTIO_LEGACY_QUEUE_SIZE 0x0c
#define VIRTIO_LEGACY_QUEUE_SELECT 0x0e
#define VIRTIO_LEGACY_QUEUE_NOTIFY 0x10
#define VIRTIO_LEGACY_STATUS 0x12
#define VIRTIO_LEGACY_ISR 0x13
#define VIRTIO_LEGACY_CONFIG_VECTOR 0x14 /* these two only with MSI-X enabled */
#define VIRTIO_LEGACY_QUEUE_VECTOR 0x16
#define VIRTIO_LEGACY_CONFIG_NOMSIX 0x14
#define VIRTIO_LEGACY_CONFIG_MSIX 0x18

/* Common configuration structure (BAR2 + 0). */
#define VIRTIO_COMMON_DFSELECT 0x00
#define VIRTIO_COMMON_DF 0x04
#define VIRTIO_COMMON_GFSELECT 0x08
#define VIRTIO_COMMON_GF 0x0c
#define VIRTIO_COMMON_MSIX 0x10
#define VIRTIO_COMMON_NUMQ 0x12
#define VIRTIO_COMMON_STATUS 0x14
#define VIRTIO_COMMON_CFGGENERATION 0x15
#define VIRTIO_COMMON_Q_SELECT 0x16
#define VIRTIO_COMMON_Q_SIZE 0x18
#define VIRTIO_COMMON_Q_MSIX 0x1a
#define VIRTIO_COMMON_Q_ENABLE 0x1c
#define VIRTIO_COMMON_Q_NOFF 0x1e
#define VIRTIO_COMMON_Q_DESC 0x20
#define VIRTIO_COMMON_Q_AVAIL 0x28
#define VIRTIO_COMMON_Q_USED 0x30
#define VIRTIO_COMMON_Q_NDATA 0x38
#define VIRTIO_COMMON_Q_RESET 0x3a

/* Vendor capability cfg_type values. */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5

struct virtio_pci_params {
    uint32_t class_code;     /* base << 16 | sub << 8 | prog-if; 0: the device type's */
    struct machine *machine; /* ioeventfds; NULL (unit tests) for none */
    struct msix_sink msix_sink;
};

/* A queue's ioeventfd registrations (under the PCI function's lock). */
struct virtio_pci_ioevent {
    bool mmio, pio;
    uint64_t mmio_addr, pio_addr;
};

struct virtio_pci {
    struct pci_device pci;
    struct device_ops dev_ops; /* the lifecycle, with this device's kind */
    char kind[32];             /* "virtio-pci-<device kind>" */
    struct virtio_device *vdev;
    const char *name;
    struct machine *machine;
    struct msix msix;

    /* Transport registers, under vdev->lock. */
    uint32_t dfselect, gfselect;
    uint16_t queue_select;
    _Atomic uint16_t config_vector;
    _Atomic uint16_t *queue_vectors; /* one per queue */

    pthread_mutex_t isr_lock; /* ISR and the INTx level it drives */
    uint8_t isr;

    struct virtio_pci_ioevent *ioevents; /* one per queue */
    unsigned pci_cfg_cap; /* config offset of the VIRTIO_PCI_CAP_PCI_CFG capability */

    struct log_ratelimit log; /* register-level complaints */
};

/* Wraps vdev (set up with virtio_device_init) in a PCI function: IDs,
 * BARs, capabilities, MSI-X with num_queues + 1 vectors; starts the queue
 * loops. The transport owns vdev from here on (on failure too: it is
 * destroyed). The caller adds &vp->pci.dev to the machine (which then owns
 * it: its destroy op frees the transport and the device) and vp->pci to
 * the bus. Returns NULL (logged) on error. */
struct virtio_pci *virtio_pci_create(struct virtio_device *vdev,
                                     const struct virtio_pci_params *params);
/* The device ops behind vp->pci.dev.ops, callable directly (tests). */
void virtio_pci_reset(struct virtio_pci *vp); /* virtio, MSI-X and PCI reset */
void virtio_pci_destroy(struct virtio_pci *vp);

#endif
