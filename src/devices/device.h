/* The one interface every emulated device implements. The machine keeps an
 * inventory of devices and walks it for reset and teardown (and, later,
 * pause/resume and snapshot).
 *
 * Reset is two passes over the whole inventory (machine_reset_devices):
 * first every device drops the decodes the guest may have placed (BARs, a
 * relocatable register block), then every device returns to power-on state
 * and claims its power-on decodes. A device's power-on range may be where
 * another device's guest-programmed range still sits (the PIIX4 PM block's
 * 0xB000 under a BAR the guest put there), and the buses refuse overlaps, so
 * no device may claim anything before all of them have let go. */
#ifndef DEVICES_DEVICE_H
#define DEVICES_DEVICE_H

#include "common/bytes.h" /* container_of */

struct machine;

struct device;

struct device_ops {
    /* Reset, first pass: take every range a reset moves or removes off the
     * PIO/MMIO buses, changing nothing else. Called with every vCPU
     * stopped, on every device before any device's reset. Optional: a
     * device with only fixed ranges needs none. */
    void (*drop_decodes)(struct device *dev);
    /* Reset, second pass: back to power-on state, power-on decodes
     * included; called with every vCPU stopped. On its own (without the
     * first pass) it still works for a device whose power-on ranges are
     * free. */
    void (*reset)(struct device *dev);
    /* Called after the machine (re)creates its KVM VM, so devices can
     * register VM-level resources (irqfd, ioeventfd). Optional. */
    int (*vm_attached)(struct device *dev, struct machine *machine);
    /* Logs the device's state for a stalled-guest report (queue indexes,
     * requests in flight), at info level. Optional; main thread, with the
     * vCPUs running: must not wait on locks a stuck guest or worker may
     * hold for long (use trylock and say so). */
    void (*dump)(struct device *dev);
    /* Frees the device; called once at teardown. */
    void (*destroy)(struct device *dev);
};

struct device {
    const char *name; /* e.g. "com1", "dev.block0" */
    const struct device_ops *ops;
};

#endif
