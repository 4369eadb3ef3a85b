#include "devices/reset_ports.h"

#include <string.h>

/* QEMU's PIIX reset control: writing bit 2 resets (hard and soft are the
 * same for a VM) and is not stored; otherwise the reset type bit is kept
 * and reads back. */
static uint64_t cf9_read(void *opaque, uint64_t offset, unsigned size)
{
    struct reset_ports *rp = opaque;
    if (offset != 0 || size != 1)
        return ~0ull;
    return atomic_load(&rp->reset_control);
}

static void cf9_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct reset_ports *rp = opaque;
    if (offset != 0 || size != 1)
        return;
    if (value & RESET_CONTROL_RESET_CPU) {
        log_limited(&rp->log, LOG_INFO, "reset control 0xcf9 <- 0x%02x: %s reset requested",
                    (unsigned)(value & 0xff),
                    (value & RESET_CONTROL_SYSTEM_RESET) ? "hard" : "soft");
        irq_line_pulse(&rp->reset_line);
        return;
    }
    atomic_store(&rp->reset_control, (uint8_t)(value & RESET_CONTROL_SYSTEM_RESET));
}

const struct io_ops reset_ports_cf9_io_ops = {.read = cf9_read, .write = cf9_write};

/* KVM has no A20 masking: the gate bit is stored and read back, and
 * clearing it is only reported. */
static uint64_t port92_read(void *opaque, uint64_t offset, unsigned size)
{
    struct reset_ports *rp = opaque;
    if (offset != 0 || size != 1)
        return ~0ull;
    return atomic_load(&rp->port92);
}

static void port92_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct reset_ports *rp = opaque;
    if (offset != 0 || size != 1)
        return;
    uint8_t next = (uint8_t)(value & (PORT92_INIT | PORT92_A20));
    uint8_t old = atomic_exchange(&rp->port92, next);
    if (!(next & PORT92_A20) && (old & PORT92_A20))
        log_limited(&rp->log, LOG_INFO, "port 0x92: A20 gate cleared; A20 stays enabled");
    if ((next & PORT92_INIT) && !(old & PORT92_INIT)) {
        log_limited(&rp->log, LOG_INFO, "port 0x92: fast reset requested");
        irq_line_pulse(&rp->reset_line);
    }
}

const struct io_ops reset_ports_port92_io_ops = {.read = port92_read, .write = port92_write};

/* Power-on: A20 reported enabled (what KVM does), no reset pending. */
static void reset_ports_reset(struct device *dev)
{
    struct reset_ports *rp = container_of(dev, struct reset_ports, dev);
    atomic_store(&rp->reset_control, 0);
    atomic_store(&rp->port92, PORT92_A20);
}

/* The reset type kept at 0xCF9 and port 0x92. Loading sets them without
 * acting: a saved INIT bit is a reset already requested. */
static int reset_ports_state(struct device *dev, struct snap *s)
{
    struct reset_ports *rp = container_of(dev, struct reset_ports, dev);
    uint8_t reset_control = atomic_load(&rp->reset_control), port92 = atomic_load(&rp->port92);
    snap_u8(s, "reset_control", &reset_control);
    snap_u8(s, "port92", &port92);
    if (!snap_loading(s) || snap_error(s))
        return snap_error(s);
    snap_check(s, !(reset_control & ~RESET_CONTROL_SYSTEM_RESET), "reset_control",
               "bits 0xCF9 does not keep");
    snap_check(s, !(port92 & ~(PORT92_INIT | PORT92_A20)), "port92",
               "bits port 0x92 does not keep");
    if (snap_error(s))
        return -1;
    atomic_store(&rp->reset_control, reset_control);
    atomic_store(&rp->port92, port92);
    return 0;
}

static const struct device_ops reset_ports_device_ops = {
    .reset = reset_ports_reset,
    .state = reset_ports_state,
    .kind = "reset-ports",
    .state_version = 1,
};

void reset_ports_init(struct reset_ports *rp, struct irq_line reset_line)
{
    memset(rp, 0, sizeof(*rp));
    rp->dev.name = "reset-ports";
    rp->dev.ops = &reset_ports_device_ops;
    rp->reset_line = reset_line;
    reset_ports_reset(&rp->dev);
}
