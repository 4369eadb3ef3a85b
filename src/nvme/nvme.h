/* pci-nvme: an NVMe 1.4 controller over PCI with one namespace backed by a
 * block back end (the [dev.NAME] driver = "pci-nvme").
 *
 * PCI identity as propolis: Oxide vendor 0x01de, device 0x0000 (subsystem
 * likewise), class 0x010802. BAR0 (64-bit memory, 16 KiB): controller
 * registers and doorbells (CAP.DSTRD = 0). BAR4 (64-bit memory): the MSI-X
 * table and PBA. INTx pin A as the fallback.
 *
 * Admin commands run on the vCPU thread that rings the admin doorbell; I/O
 * submission queues are drained by one worker per controller (an io_loop on
 * its own thread) and the requests complete on back-end threads. Every
 * guest address (queues, PRPs, PRP lists, data, the shadow doorbell and
 * EventIdx buffers of Doorbell Buffer Config) goes through guest_mem.
 *
 * Lifecycle: pause stops taking commands from the SQs, waits for every
 * request at the back end to complete and be posted, then parks the
 * worker; resume restarts it and looks at every doorbell again. The state
 * (kind "nvme") holds the PCI function, MSI-X, the controller registers,
 * every queue with its doorbell values, features, asynchronous events, the
 * SMART counters and (version 2) the Doorbell Buffer Config; it is saved
 * and loaded only while the controller is paused or disabled, and a loaded
 * controller stays paused until resume. */
#ifndef NVME_NVME_H
#define NVME_NVME_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"
#include "core/guest_mem.h"
#include "core/timer.h"
#include "pci/msix.h"
#include "pci/pci.h"

#define NVME_PCI_VENDOR_ID 0x01de /* Oxide Computer Company */
#define NVME_PCI_DEVICE_ID 0x0000 /* propolis NVMe controller */
#define NVME_PCI_CLASS 0x010802   /* mass storage, NVM, NVMe */

struct nvme_ctrl;

struct nvme_params {
    const char *name;              /* device name, e.g. the [dev.NAME] name (kept by pointer) */
    const char *serial;            /* serial number; NULL: backend->name (the block_dev name) */
    struct block_backend *backend; /* namespace 1; must outlive the controller */
    const struct guest_mem *mem;
    struct msix_sink msix_sink; /* msix_machine_sink(machine) on a real VM; a fake in tests */
    /* The machine's clock (power-on hours); NULL: CLOCK_MONOTONIC. Must
     * outlive the controller. */
    const struct vm_clock *clock;
};

/* Creates a controller with one namespace on params->backend. The serial
 * number is reported as 20 bytes of space-padded ASCII. The controller waits
 * for its own requests at reset and teardown but never drains or destroys
 * the back end: the caller destroys it after the device. The caller adds
 * nvme_pci_device() to the PCI bus and its dev to the machine, whose
 * teardown then frees the controller (dev.ops->destroy). Returns NULL
 * (logged) on failure. */
struct nvme_ctrl *nvme_create(const struct nvme_params *params);

/* The controller's PCI function, for pci_bus_add and machine_add_device. */
struct pci_device *nvme_pci_device(struct nvme_ctrl *ctrl);

/* Waits until the I/O worker has nothing queued and no request is in flight
 * (tests, pause). While the worker is paused, what it has queued stays
 * queued and only the requests in flight are waited for. */
void nvme_wait_idle(struct nvme_ctrl *ctrl);

#endif
