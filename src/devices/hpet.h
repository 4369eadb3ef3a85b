/* HPET (IA-PC HPET spec 1.0a) at 0xfed00000 as QEMU's pc machine has it:
 * a 64-bit main counter at 100 MHz, three comparators (periodic capable,
 * 64-bit capable, one-shot and periodic with the VAL_SET accumulator, 32-bit
 * mode with wrap), level and edge interrupts routed to IOAPIC pins, and
 * legacy replacement (timer 0 -> ISA IRQ 0, timer 1 -> IRQ 8, the PIT and the
 * RTC disconnected). No FSB (MSI) delivery.
 *
 * The counter is derived from the machine's clock; comparators run on
 * vm_timers (main thread). A periodic comparator never wakes the host more
 * often than every HPET_MIN_PERIOD_NS: shorter periods are coalesced (the
 * comparator skips the periods that passed, one interrupt per wake-up). */
#ifndef DEVICES_HPET_H
#define DEVICES_HPET_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/log.h"
#include "core/bus.h"
#include "core/io_loop.h"
#include "core/irq_line.h"
#include "core/timer.h"
#include "devices/device.h"

#define HPET_MMIO_BASE 0xfed00000ull
#define HPET_MMIO_SIZE 0x400
#define HPET_NUM_TIMERS 3
#define HPET_TICK_NS 10                        /* 100 MHz, as QEMU */
#define HPET_PERIOD_FS 10000000ull             /* the same in femtoseconds */
#define HPET_MIN_PERIOD_NS 100000ull           /* host wake-up floor for periodic timers */
#define HPET_MAX_TIMER_SLEEP_NS 60000000000ull /* far comparators: re-check this often */

/* Lines raised in legacy replacement mode, as ISA IRQ numbers (QEMU raises
 * its GSI 0 and 8). IRQ 0 reaches IOAPIC pin 2 only through a GSI routing
 * entry 0 -> IOAPIC pin 2 (what QEMU installs and what the in-kernel PIT,
 * which also raises GSI 0, needs to match the MADT override IRQ0 -> GSI2). */
#define HPET_LEGACY_TIMER0_IRQ 0
#define HPET_LEGACY_TIMER1_IRQ 8

/* IOAPIC pins a comparator may be routed to when the caller has no better
 * choice: 20-23, IOAPIC-only pins the _PRT leaves free (PCI INTx uses
 * 16-19). QEMU's pc machine advertises only pin 2, q35 pins 2, 8 and 16-23. */
#define HPET_ROUTE_CAP_DEFAULT 0x00f00000u

/* Interrupt sources the HPET drives, each through its own irq_bank (line n
 * = GSI n: an IOAPIC pin, or an ISA IRQ in legacy mode): timer n is source
 * n, the forwarded RTC output is HPET_SOURCE_RTC. */
#define HPET_SOURCE_RTC HPET_NUM_TIMERS
#define HPET_SOURCE_COUNT (HPET_NUM_TIMERS + 1)

/* Register offsets and bits, shared with tests. */
enum {
    HPET_REG_CAPABILITIES = 0x000,
    HPET_REG_CONFIG = 0x010,
    HPET_REG_INT_STATUS = 0x020,
    HPET_REG_COUNTER = 0x0f0,
    HPET_REG_TIMER0 = 0x100, /* timer n at 0x100 + 0x20 * n */
    HPET_TIMER_STRIDE = 0x20,
    HPET_TIMER_CONFIG = 0x00,
    HPET_TIMER_COMPARATOR = 0x08,
    HPET_TIMER_FSB_ROUTE = 0x10,
};
#define HPET_CFG_ENABLE 0x1ull
#define HPET_CFG_LEGACY 0x2ull
#define HPET_TN_LEVEL 0x002ull
#define HPET_TN_INT_ENABLE 0x004ull
#define HPET_TN_PERIODIC 0x008ull
#define HPET_TN_PERIODIC_CAP 0x010ull
#define HPET_TN_SIZE_CAP 0x020ull
#define HPET_TN_VAL_SET 0x040ull
#define HPET_TN_32BIT 0x100ull
#define HPET_TN_ROUTE_SHIFT 9
#define HPET_TN_ROUTE_MASK (0x1full << HPET_TN_ROUTE_SHIFT)
#define HPET_TN_FSB_ENABLE 0x4000ull
#define HPET_TN_FSB_CAP 0x8000ull

struct hpet;

struct hpet_timer {
    struct hpet *hpet;
    unsigned index;
    uint64_t config;
    uint64_t comparator;
    uint64_t period; /* periodic mode: the accumulator increment */
    uint64_t fsb_route;
    bool wrap_pending;    /* 32-bit one-shot: next expiry is the counter wrap */
    uint64_t deadline_ns; /* when the armed expiry is due; UINT64_MAX: not armed */
    int asserted_gsi;     /* level interrupt currently driven, -1: none */
    struct vm_timer timer;
};

struct hpet {
    struct device dev;
    pthread_mutex_t lock;
    /* Set with the HPET locked; must not call back into the HPET. */
    struct irq_bank irq[HPET_SOURCE_COUNT];
    /* High while legacy replacement is on: the in-kernel PIT must stop
     * driving IRQ 0 (machine_pit_legacy_line). */
    struct irq_line pit_legacy;
    uint32_t route_cap;
    const struct vm_clock *clock; /* the machine's; times below are read from it */
    bool paused;                  /* comparators' timers disarmed until resume */

    uint64_t config;
    uint64_t int_status;
    uint64_t counter;           /* the value while halted */
    uint64_t counter_at_enable; /* while running: counter = this + elapsed ticks */
    uint64_t enable_clock_ns;
    bool rtc_level; /* the RTC's IRQ output, forwarded unless legacy */
    struct hpet_timer timers[HPET_NUM_TIMERS];
    struct log_ratelimit bad_access_log;
};

extern const struct io_ops hpet_io_ops;

/* clock: the machine's time base (kept). route_cap: bit n set = comparators
 * may be routed to IOAPIC pin n (pins 24-31 are dropped). irq: one bank per
 * source (machine_irq_bank(m, PC_IRQ_SOURCE_HPET(n))). loop may be NULL
 * (tests). Returns -1 if a timer cannot be created. */
int hpet_init(struct hpet *hpet, const char *name, const struct vm_clock *clock,
              struct io_loop *loop, uint32_t route_cap,
              const struct irq_bank irq[HPET_SOURCE_COUNT], struct irq_line pit_legacy);

/* The RTC's IRQ output enters here: forwarded to IRQ 8 unless legacy
 * replacement owns it. hpet_rtc_input() is the line for rtc_init. */
void hpet_rtc_irq_input(void *hpet, bool level);
struct irq_line hpet_rtc_input(struct hpet *hpet);

/* Main counter now, for tests and diagnostics. */
uint64_t hpet_counter_value(struct hpet *hpet);

#endif
