/* virtio over PCI as propolis offers it: a transitional device (legacy PCI
 * device ID 0x1000 + n, subsystem vendor 0x1AF4, subsystem ID = the virtio
 * device type) with both interfaces:
 *
 *   BAR0  I/O, 256 bytes: the legacy register block (VIRTIO 1.x 4.1.4.8),
 *         followed by the device-specific configuration
 *   BAR1  memory, 4 KiB: MSI-X table (offset 0) and PBA (offset 0x800)
 *   BAR2  memory, 16 KiB: the modern structures, one page each -
 *         common config 0x0000, device config 0x1000, notify 0x2000
 *         (notify_off_multiplier 4, queue n notifies at 0x2000 + 4n), ISR 0x3000
 *
 * and the vendor capabilities pointing at them (common, notify, ISR, device,
 * plus the PCI-configuration-access capability, present but without data
 * access, as in propolis).
 *
 * Features: the device's own plus VIRTIO_F_VERSION_1, VIRTIO_F_ANY_LAYOUT,
 * VIRTIO_RING_F_INDIRECT_DESC and VIRTIO_RING_F_EVENT_IDX.
 *
 * Interrupts: MSI-X when the guest enables it (per-queue and config vectors,
 * through msix.h: irqfd on a machine), else INTx with the ISR register (bit 0
 * queue, bit 1 configuration change; read to clear).
 *
 * Threading: vCPU threads only touch registers. Each queue has a worker
 * thread that sleeps on the queue's eventfd: KVM signals it directly
 * (ioeventfd on the queue's notify address, registered while the BAR is
 * mapped and again on vm_attached) and the BAR handlers signal it when a
 * notify write exits to the VMM (legacy notify with several queues, or an
 * access width the ioeventfd does not match). The worker calls the device's
 * queue_process op; completions may run on any thread.
 *
 * Errors: any rule the driver breaks (ring walker errors, bad status
 * transitions, unusable ring addresses) sets DEVICE_NEEDS_RESET (status bit
 * 0x40), sends a configuration-change interrupt and stops queue processing
 * until the driver resets the device; each case is logged (rate limited).
 *
 * Reset (status 0 from the guest, or the device reset op): queue processing
 * stops, in-flight requests drain (device queue_quiesce op), state clears,
 * queue vectors return to NO_VECTOR; the device reset op also resets MSI-X
 * (routes removed) and the PCI function. */
#ifndef VIRTIO_VIRTIO_PCI_H
#define VIRTIO_VIRTIO_PCI_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/log.h"
#include "core/guest_mem.h"
#include "pci/msix.h"
#include "pci/pci.h"
#include "virtio/virtqueue.h"

struct machine;

#define VIRTIO_PCI_VENDOR_ID 0x1af4
#define VIRTIO_PCI_LEGACY_DEVICE_ID_BASE 0x1000 /* transitional ids: table in spec 4.1.2.1 */
#define VIRTIO_PCI_MODERN_DEVICE_ID_BASE 0x1040
#define VIRTIO_MSI_NO_VECTOR 0xffff
#define VIRTIO_PCI_MAX_QUEUES 64

/* Virtio device types. */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER 0x02
#define VIRTIO_STATUS_DRIVER_OK 0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

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

struct virtio_pci;

/* What a device model supplies. Queue ops run for one queue at a time,
 * never concurrently with each other for the same queue. */
struct virtio_pci_device_ops {
    /* FEATURES_OK: accept the driver's feature set? Optional. */
    bool (*features_ok)(struct virtio_pci *vp, uint64_t features);
    /* The queue's rings are active (DRIVER_OK): set up per-queue state.
     * Return -1 to put the device into NEEDS_RESET. Optional. */
    int (*queue_activate)(struct virtio_pci *vp, unsigned queue);
    /* Worker thread, after a notification: consume available chains with
     * virtq_pop (and virtq_disable/enable_notify), completing them with
     * virtio_pci_complete(). Stop early when virtio_pci_queue_running()
     * turns false. On VIRTQ_ERROR call virtio_pci_set_needs_reset(). */
    void (*queue_process)(struct virtio_pci *vp, unsigned queue);
    /* Processing stopped (reset, destroy): wait for every chain still in
     * flight to complete, then free per-queue state. Once it returns, no
     * completion may touch the device (the device may be freed next), so
     * completions still in flight include their tail: a kick of the
     * worker, for one. Optional. */
    void (*queue_quiesce)(struct virtio_pci *vp, unsigned queue);
    /* State dump: the device's own view of a queue (requests in flight),
     * one short phrase. Must not block for long. Optional. */
    void (*queue_describe)(struct virtio_pci *vp, unsigned queue, char *buf, size_t cap);
};

struct virtio_pci_params {
    const char *name;      /* the [dev.NAME] section name */
    uint16_t device_type;  /* VIRTIO_ID_* */
    uint32_t class_code;   /* base << 16 | sub << 8 | prog-if */
    unsigned num_queues;   /* 1..VIRTIO_PCI_MAX_QUEUES */
    uint16_t queue_size;   /* maximum (and legacy) queue size: power of two */
    uint64_t features;     /* device-specific features (bits 0-23, 50+) */
    const uint8_t *config; /* device-specific configuration, copied */
    unsigned config_size;  /* <= 0x100 - 0x18 */
    const struct virtio_pci_device_ops *ops;
    const struct guest_mem *mem;
    struct machine *machine; /* ioeventfds; NULL (unit tests) for none */
    struct msix_sink msix_sink;
};

struct virtio_pci_queue {
    struct virtq vq;
    struct virtio_pci *vp;
    unsigned index;
    bool enabled;   /* driver set queue_enable / a legacy PFN (under vp->lock) */
    bool activated; /* rings active and queue_activate done (under vp->lock) */
    _Atomic bool running;
    _Atomic uint16_t msix_vector;
    int kick_fd; /* eventfd: ioeventfd target and fallback doorbell */
    pthread_t thread;
    bool thread_started;
    _Atomic bool stop_thread;
    pthread_mutex_t proc_lock; /* held by the worker while the device processes the queue */
    /* ioeventfds currently registered (under the PCI device lock) */
    bool ioevent_mmio, ioevent_pio;
    uint64_t ioevent_mmio_addr, ioevent_pio_addr;
};

struct virtio_pci {
    struct pci_device pci;
    const struct virtio_pci_device_ops *ops;
    const char *name;
    uint16_t device_type;
    const struct guest_mem *mem;
    struct machine *machine;
    struct msix msix;

    pthread_mutex_t lock; /* transport registers */
    uint8_t status;       /* as the driver set it, without NEEDS_RESET */
    bool legacy_driver;   /* the driver set up the device through BAR0 */
    uint64_t device_features;
    _Atomic uint64_t driver_features; /* as written by the driver */
    uint32_t dfselect, gfselect;
    uint16_t queue_select;
    _Atomic bool needs_reset;
    _Atomic uint16_t config_vector;

    pthread_mutex_t isr_lock; /* ISR and the INTx level it drives */
    uint8_t isr;

    unsigned num_queues;
    struct virtio_pci_queue *queues;
    uint8_t *config;
    unsigned config_size;
    unsigned pci_cfg_cap; /* config offset of the VIRTIO_PCI_CAP_PCI_CFG capability */

    struct log_ratelimit log;     /* register-level complaints */
    struct log_ratelimit vq_log;  /* ring walker errors */
    struct log_ratelimit dev_log; /* for the device model's own messages */
};

/* Sets the function up (IDs, BARs, capabilities, MSI-X with num_queues + 1
 * vectors), starts the queue workers. The caller fills vp->pci.dev.ops (its
 * reset/vm_attached/destroy call the functions below), then adds vp->pci to
 * the bus. Returns 0, or -1 (logged, nothing left allocated). */
int virtio_pci_init(struct virtio_pci *vp, const struct virtio_pci_params *params);
/* Stops the workers (after quiescing the queues) and frees everything. */
void virtio_pci_destroy(struct virtio_pci *vp);
/* Device reset op: virtio reset, MSI-X reset, PCI function reset. */
void virtio_pci_reset(struct virtio_pci *vp);
/* dump op: transport state and every enabled queue's ring indexes. */
void virtio_pci_dump(struct virtio_pci *vp);
/* vm_attached op: registers ioeventfds for mapped BARs on the new VM. */
int virtio_pci_vm_attached(struct virtio_pci *vp, struct machine *m);

/* ---- For device models ---- */

/* The queue is active and the device not broken: keep processing. */
bool virtio_pci_queue_running(struct virtio_pci *vp, unsigned queue);
/* Returns a chain (push to the used ring) and interrupts the driver if it
 * asked for it. Any thread. */
void virtio_pci_complete(struct virtio_pci *vp, unsigned queue, uint16_t head, uint32_t len);
/* Wakes the queue's worker (e.g. when request slots free up). Any thread;
 * takes no lock (an eventfd write), so a device model may call it under
 * its own locks. */
void virtio_pci_kick(struct virtio_pci *vp, unsigned queue);
/* Device error: DEVICE_NEEDS_RESET + configuration interrupt; processing
 * stops until the driver resets the device. Any thread, no lock held. */
void virtio_pci_set_needs_reset(struct virtio_pci *vp, const char *why);
/* Negotiated features (valid from FEATURES_OK / DRIVER_OK). */
uint64_t virtio_pci_features(struct virtio_pci *vp);
/* Interrupts (normally through virtio_pci_complete). */
void virtio_pci_queue_interrupt(struct virtio_pci *vp, unsigned queue);
void virtio_pci_config_interrupt(struct virtio_pci *vp);

#endif
