/* MSI-X for PCI device models: the capability in config space, the vector
 * table and pending-bit array (PBA) in a memory BAR, and delivery.
 *
 * Delivery goes through a sink so the model runs without KVM in tests. With
 * the machine sink (msix_machine_sink) each vector that fires gets, on first
 * use, an eventfd bound by irqfd to an MSI route GSI carrying the vector's
 * address/data; msix_notify() then only writes that eventfd (no ioctl on the
 * hot path). A guest rewrite of address/data marks the route stale; it is
 * updated before the next delivery. A masked vector (or a masked function)
 * sets its pending bit instead; unmasking delivers it.
 *
 * Locking: the model has its own lock and never takes the PCI device's lock,
 * so msix_config_write() may run from a pci_device_ops hook and
 * msix_notify() from any thread. Lock order: device lock -> msix lock ->
 * machine irq lock. */
#ifndef PCI_MSIX_H
#define PCI_MSIX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/log.h"
#include "core/bus.h"

struct pci_device;
struct machine;

#define MSIX_MAX_VECTORS 2048
#define MSIX_ENTRY_SIZE 16
#define MSIX_CAP_SIZE 12

/* Capability register offsets (from the capability start) and bits. */
#define MSIX_CAP_CONTROL 2
#define MSIX_CAP_TABLE 4
#define MSIX_CAP_PBA 8
#define MSIX_CONTROL_TABLE_SIZE 0x07ff
#define MSIX_CONTROL_MASKALL 0x4000
#define MSIX_CONTROL_ENABLE 0x8000

/* Table entry layout. */
#define MSIX_ENTRY_ADDR_LO 0
#define MSIX_ENTRY_ADDR_HI 4
#define MSIX_ENTRY_DATA 8
#define MSIX_ENTRY_CTRL 12
#define MSIX_ENTRY_CTRL_MASKBIT 0x1

/* Where messages go. Every callback is optional:
 *  - route_add/route_update/route_remove + irqfd: the irqfd path (KVM);
 *  - signal_msi: direct delivery, used when the irqfd path is absent or a
 *    route cannot be had (e.g. routes exhausted).
 * route_add returns a GSI (>= 0) or -1; irqfd returns 0 or -1. */
struct msix_sink {
    int (*route_add)(void *opaque, uint64_t address, uint32_t data);
    int (*route_update)(void *opaque, int gsi, uint64_t address, uint32_t data);
    void (*route_remove)(void *opaque, int gsi);
    int (*irqfd)(void *opaque, int event_fd, int gsi, bool assign);
    void (*signal_msi)(void *opaque, uint64_t address, uint32_t data);
    void *opaque;
};

/* The sink for a real machine: MSI routes + irqfd, KVM_SIGNAL_MSI fallback. */
struct msix_sink msix_machine_sink(struct machine *m);

struct msix_vector {
    uint32_t addr_lo, addr_hi, data, ctrl;
    bool pending;
    /* irqfd state (machine sink) */
    int event_fd;        /* -1 until first needed; kept open until destroy */
    int gsi;             /* -1: no route */
    bool irqfd_assigned; /* event_fd bound to gsi */
    bool route_stale;    /* address/data changed since the route was made */
    bool route_refused;  /* the sink had no route for this message: deliver
                          * directly, without asking again, until it changes */
    bool external;       /* another engine writes event_fd (msix_vector_eventfd) */
};

struct msix {
    struct pci_device *pdev;
    const char *name; /* for messages */
    pthread_mutex_t lock;
    unsigned nvec;
    unsigned cap; /* config-space offset of the capability */
    unsigned bar; /* BAR index holding table and PBA */
    uint32_t table_offset, pba_offset;
    struct msix_vector *vec;
    bool enabled, function_masked; /* from the message control register */
    _Atomic bool enabled_hint;     /* lock-free copy of `enabled` */
    struct msix_sink sink;
    struct log_ratelimit log;
};

/* Adds the MSI-X capability to pdev (call before pci_bus_add) for nvec
 * vectors (1..MSIX_MAX_VECTORS) whose table sits at table_offset and PBA at
 * pba_offset (both 8-byte aligned, non-overlapping) of memory BAR `bar`. The
 * device registers that BAR itself and forwards accesses through
 * msix_bar_read/msix_bar_write (or uses msix_bar_io_ops when the BAR holds
 * nothing else). Returns 0, or -1 (logged). */
int msix_init(struct msix *x, struct pci_device *pdev, unsigned nvec, unsigned bar,
              uint32_t table_offset, uint32_t pba_offset, struct msix_sink sink);
/* Removes routes and irqfds, closes eventfds, frees the table. */
void msix_destroy(struct msix *x);
/* Power-on state: every vector masked with address/data 0, no pending bits,
 * MSI routes and irqfds released (eventfds stay open). Call from the device's
 * reset op (before the machine drops its routes), along with
 * pci_device_reset, which clears the enable and function-mask bits. */
void msix_reset(struct msix *x);

/* Saves or loads the vector table, pending bits and the enable and
 * function-mask state (the caller wraps it in snap_enter(s, "msix") and
 * loads the function's config space first). A load refuses another vector
 * count and reserved bits; MSI routes are made again on first delivery,
 * and pending vectors stay pending until the guest unmasks them. */
struct snap;
int msix_state(struct msix *x, struct snap *s);

/* Table/PBA access at offset within the BAR. Returns false (value untouched)
 * if offset is outside both. Accesses are 4 or 8 bytes, naturally aligned;
 * others read 0 / are dropped (logged). */
bool msix_bar_read(struct msix *x, uint64_t offset, unsigned size, uint64_t *value);
bool msix_bar_write(struct msix *x, uint64_t offset, unsigned size, uint64_t value);
/* For a BAR holding only the table and PBA: opaque is the struct msix. */
extern const struct io_ops msix_bar_io_ops;

/* From the device's pci_device_ops.config_write hook (device lock held),
 * after the generic write: picks up the enable and function-mask bits and
 * delivers what became deliverable. */
void msix_config_write(struct msix *x, unsigned offset, unsigned size);

/* Whether the guest enabled MSI-X (then INTx must not be used). */
bool msix_enabled(struct msix *x);
/* Signals vector: delivered, or left pending if masked. Returns false if
 * MSI-X is disabled (the caller may use INTx). A vector out of range is
 * dropped (logged) and counts as handled. Any thread. */
bool msix_notify(struct msix *x, unsigned vector);

/* For interrupts another engine raises (vhost writes the eventfd itself):
 * the vector's eventfd, bound by irqfd to the vector's message while the
 * vector is deliverable. From then on the binding follows the guest: a new
 * message moves the route at once; masking the vector or the function, or
 * disabling MSI-X, unbinds it, and signals wait in the eventfd until the
 * guest unmasks or enables again (KVM delivers a pending eventfd when it is
 * bound; the PBA does not show them). A reset ends it. Returns the
 * eventfd, or -1 (no irqfd path, vector out of range, no route or eventfd
 * to be had): raise the vector with msix_notify instead. Any thread. */
int msix_vector_eventfd(struct msix *x, unsigned vector);

/* Test/inspection helpers. */
bool msix_is_pending(struct msix *x, unsigned vector);
bool msix_is_masked(struct msix *x, unsigned vector);

#endif
