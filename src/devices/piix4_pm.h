/* PIIX4 power management function (0.1.3, 8086:7113 rev 3, class 0x068000):
 * the ACPI fixed hardware. PM1a event/control blocks and the 24-bit PM timer
 * in a 64-byte I/O block placed by PMBA (config 0x40) and enabled by
 * PMREGMISC (config 0x80), the GPE0 block at 0xAFE0, and the APM/SMI command
 * port 0xB2 (ACPI enable/disable). The SCI is a level on ISA IRQ 9 while
 * (PM1 status & PM1 enable) or (GPE status & GPE enable) is non-zero.
 * Layout and values: devices/pc_layout.h. */
#ifndef DEVICES_PIIX4_PM_H
#define DEVICES_PIIX4_PM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/irq_line.h"
#include "core/timer.h"
#include "pci/pci.h"

#define PIIX4_PM_DEVICE_ID 0x7113
#define PIIX4_PM_REVISION 0x03 /* Linux distrusts the PM timer of earlier steppings */
#define PIIX4_PM_PMBA 0x40
#define PIIX4_PM_PMREGMISC 0x80
#define PIIX4_PM_PMREGMISC_PMIOSE 0x01
#define PIIX4_PM_SMBBA 0x90
#define PIIX4_PM_SMBHSTCFG 0xd2

struct piix4_pm {
    struct pci_device pci;
    struct irq_line sci;       /* machine_irq_line(m, PC_SCI_IRQ, PC_IRQ_SOURCE_SCI) */
    struct irq_line power_off; /* pulsed on S5 (or S4): machine_request_line(m, MACHINE_HALT) */
    /* Time base of the PM timer: the machine's clock (a test may point it
     * elsewhere, then reset the device to rebase). */
    const struct vm_clock *clock;
    struct vm_timer overflow_timer; /* fd -1 without an event loop */

    pthread_mutex_t lock; /* registers below; taken inside the PCI lock */
    uint64_t clock_base_ns;
    uint64_t overflow_tick; /* TMR_STS sets when the count reaches it */
    uint16_t pm1_sts, pm1_en, pm1_cnt;
    uint8_t gpe_sts[2], gpe_en[2];
    uint8_t apm_cnt, apm_sts;
    bool sci_level;
    bool paused; /* overflow timer disarmed until resume */

    /* PM block placement; changed under the PCI lock. */
    bool io_mapped;
    uint16_t io_base;
    struct log_ratelimit log;
};

/* Registers (opaque: struct piix4_pm). The PM block is mapped by the device
 * itself; the GPE0 and APM ranges by piix4_pm_attach. */
extern const struct io_ops piix4_pm_io_ops;  /* PC_PM_BLOCK_LEN bytes at PMBA */
extern const struct io_ops piix4_gpe_io_ops; /* PC_GPE0_LEN bytes at PC_GPE0_BASE */
extern const struct io_ops piix4_apm_io_ops; /* 2 bytes at PC_SMI_CMD_PORT */

/* clock: the machine's time base (kept). loop: where the timer-overflow
 * timer runs; NULL (tests) means no timer, call piix4_pm_timer_tick()
 * instead. Returns -1 if the timer fails. */
int piix4_pm_init(struct piix4_pm *pm, const struct vm_clock *clock, struct irq_line sci,
                  struct irq_line power_off, struct io_loop *loop);
/* Places the function at 0.1.3, maps the PM block at its reset base and
 * claims the GPE0 and APM ports. */
int piix4_pm_attach(struct piix4_pm *pm, struct pci_bus *bus);

/* The PM block's base as PMBA gives it now, decoded or not (QEMU's ACPI
 * tables follow PMBA the same way); 0 if unset. Takes the PCI lock: the
 * fw_cfg lock may be held, never the other way round. */
uint16_t piix4_pm_block_base(struct piix4_pm *pm);
/* The power button: sets PWRBTN_STS and raises the SCI if enabled. */
void piix4_pm_press_power_button(struct piix4_pm *pm);
/* Sets GPE0 status bit (0-15), e.g. for hotplug notification. */
void piix4_pm_raise_gpe(struct piix4_pm *pm, unsigned bit);
/* Re-evaluates status and SCI at the current time (the timer's callback). */
void piix4_pm_timer_tick(struct piix4_pm *pm);
/* The 24-bit PM timer count now. */
uint32_t piix4_pm_timer_value(struct piix4_pm *pm);

#endif
