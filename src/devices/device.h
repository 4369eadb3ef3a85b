/* The one interface every emulated device implements. The machine keeps an
 * inventory of devices and walks it for reset, pause and resume, state and
 * teardown.
 *
 * Lifecycle: built (stopped) -> running; running <-> paused; paused ->
 * state saved or loaded; any -> reset (vCPUs stopped); any -> destroyed.
 * Pause comes after every vCPU has stopped: the device finishes or parks
 * the I/O it has in flight, and until resume nothing of it runs (no worker,
 * timer or completion touches guest memory, its registers or its
 * interrupts). Nothing guest-visible changes across pause and resume.
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

#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h" /* container_of */
#include "common/snap.h"

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
    /* Pause and resume (see above). Optional: a device whose only activity
     * is on vCPU exits needs neither. pause returns 0, or -1 (logged) if
     * the device could not park its I/O; it is then still running. */
    int (*pause)(struct device *dev);
    void (*resume)(struct device *dev);
    /* Saves or loads the device's state (common/snap.h), the machine being
     * paused. A load validates every field before acting on it, then puts
     * the device where the state says: decodes, timers and interrupt lines
     * as they were when saved. Required of every device; kind and
     * state_version name the format (version 1 up). */
    int (*state)(struct device *dev, struct snap *s);
    const char *kind;
    uint32_t state_version;
    /* Frees the device; called once at teardown. */
    void (*destroy)(struct device *dev);
};

struct device {
    const char *name; /* e.g. "com1", "dev.block0" */
    const struct device_ops *ops;
};

/* Appends the device's state record to out. Returns 0, or -1 with the
 * reason (naming the device and field) in err. */
int device_save_state(struct device *dev, struct snap_buf *out, char *err, size_t err_size);
/* Loads a record saved from a device of the same kind. Returns 0, or -1
 * with the reason in err; the device is then in no defined state and must
 * be reset or destroyed. */
int device_load_state(struct device *dev, const struct snap_record *rec, char *err,
                      size_t err_size);
/* Pause and resume, for devices that have them (no-ops otherwise). */
int device_pause(struct device *dev);
void device_resume(struct device *dev);

#endif
