/* The PC's reset registers: the PIIX3 reset control register at 0xCF9
 * (bit 1 hard/soft, bit 2 resets; reached through the PCI bus, which shares
 * the dword at 0xCF8) and port 0x92 (system control port A: bit 0 rising
 * edge resets, bit 1 is the fast A20 gate). */
#ifndef DEVICES_RESET_PORTS_H
#define DEVICES_RESET_PORTS_H

#include <stdatomic.h>
#include <stdint.h>

#include "common/log.h"
#include "core/bus.h"
#include "core/irq_line.h"
#include "devices/device.h"

#define RESET_CONTROL_SYSTEM_RESET 0x02 /* hard reset when bit 2 fires */
#define RESET_CONTROL_RESET_CPU 0x04
#define PORT92_INIT 0x01
#define PORT92_A20 0x02

struct reset_ports {
    struct device dev;
    /* Pulsed to ask the machine to reset (machine_request_line(m, MACHINE_RESET)). */
    struct irq_line reset_line;
    _Atomic uint8_t reset_control; /* 0xCF9: only the reset type is kept */
    _Atomic uint8_t port92;
    struct log_ratelimit log;
};

/* 1-byte registers; opaque is the struct reset_ports. */
extern const struct io_ops reset_ports_cf9_io_ops;    /* pci_bus_set_cf9_handler() */
extern const struct io_ops reset_ports_port92_io_ops; /* pio 0x92, length 1 */

void reset_ports_init(struct reset_ports *rp, struct irq_line reset_line);

#endif
