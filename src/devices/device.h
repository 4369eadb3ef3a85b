/* The one interface every emulated device implements. The machine keeps an
 * inventory of devices and walks it for reset and teardown (and, later,
 * pause/resume and snapshot). */
#ifndef DEVICES_DEVICE_H
#define DEVICES_DEVICE_H

#include <stddef.h>

struct machine;

struct device;

struct device_ops {
    /* Back to power-on state; called with every vCPU stopped. */
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

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
