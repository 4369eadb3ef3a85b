/* MC146818 RTC/CMOS as on a PC (ports 0x70/0x71, IRQ 8): the wall clock
 * (UTC, taken from the host at start and advancing in real time), BCD or
 * binary and 12/24-hour encodings, update-in-progress, periodic, alarm and
 * update-ended interrupts, and 128 bytes of CMOS where firmware finds the
 * memory sizes (QEMU's layout, which OVMF and SeaBIOS read).
 *
 * The guest's clock is kept as an offset from the host's monotonic clock:
 * a guest that sets the time moves the offset, never the host clock. */
#ifndef DEVICES_RTC_H
#define DEVICES_RTC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/log.h"
#include "core/bus.h"
#include "core/io_loop.h"
#include "core/irq_line.h"
#include "core/timer.h"
#include "devices/device.h"

#define RTC_PORT_BASE 0x70
#define RTC_PORT_COUNT 2
#define RTC_ISA_IRQ 8
#define RTC_CMOS_SIZE 128

/* Register indexes. */
enum {
    RTC_SECONDS = 0x00,
    RTC_SECONDS_ALARM = 0x01,
    RTC_MINUTES = 0x02,
    RTC_MINUTES_ALARM = 0x03,
    RTC_HOURS = 0x04,
    RTC_HOURS_ALARM = 0x05,
    RTC_DAY_OF_WEEK = 0x06,
    RTC_DAY_OF_MONTH = 0x07,
    RTC_MONTH = 0x08,
    RTC_YEAR = 0x09,
    RTC_REG_A = 0x0a,
    RTC_REG_B = 0x0b,
    RTC_REG_C = 0x0c,
    RTC_REG_D = 0x0d,
    RTC_CENTURY = 0x32,
};

#define RTC_A_UIP 0x80
#define RTC_A_DIVIDER_MASK 0x70
#define RTC_A_RATE_MASK 0x0f
#define RTC_B_SET 0x80
#define RTC_B_PIE 0x40
#define RTC_B_AIE 0x20
#define RTC_B_UIE 0x10
#define RTC_B_SQWE 0x08
#define RTC_B_DM_BINARY 0x04
#define RTC_B_24H 0x02
#define RTC_B_DSE 0x01
#define RTC_C_IRQF 0x80
#define RTC_C_PF 0x40
#define RTC_C_AF 0x20
#define RTC_C_UF 0x10
#define RTC_D_VRT 0x80

/* Last 244 us of each second: 8 cycles of the 32.768 kHz time base. */
#define RTC_UIP_HOLD_NS 244141ull

struct rtc {
    struct device dev;
    pthread_mutex_t lock;
    struct irq_line irq;
    const struct vm_clock *clock; /* the machine's; times below are read from it */

    uint8_t cmos[RTC_CMOS_SIZE];
    uint8_t index;
    bool nmi_masked; /* bit 7 of the last index write; KVM NMIs are not gated by it */
    bool irq_asserted;

    /* Guest time = base_seconds + (now - base_clock_ns + base_phase_ns) / 1e9
     * while the clock runs; while stopped (SET or divider held) the time
     * registers in cmos[] are the time. */
    int64_t base_seconds;
    uint64_t base_clock_ns;
    uint64_t base_phase_ns;

    struct vm_timer periodic_timer; /* rate from register A, when PIE */
    struct vm_timer update_timer;   /* each second boundary, while running */
    uint64_t periodic_ns;           /* armed period, 0 = off */
    uint64_t periodic_deadline_ns;  /* next periodic tick (clock time); 0 while off */
    bool paused;                    /* timers disarmed until resume */
    struct log_ratelimit bad_access_log;
};

extern const struct io_ops rtc_io_ops;

/* Sets the clock from the host (UTC) and CMOS to power-on values. clock is
 * the machine's time base (kept, must outlive the device). loop may be NULL
 * (tests): timers are then never delivered. Returns -1 if a timer cannot be
 * created. */
int rtc_init(struct rtc *rtc, const char *name, const struct vm_clock *clock, struct io_loop *loop,
             struct irq_line irq);

/* Writes the bytes firmware reads (QEMU's pc layout): base/extended memory,
 * memory between 16 MiB and 4 GiB (0x34/0x35) and above 4 GiB (0x5b-0x5d)
 * in 64 KiB units, CPU count - 1 (0x5f), equipment, boot order, checksum.
 * lowmem_bytes is RAM below 4 GiB (starting at 0), highmem_bytes RAM at 4 GiB. */
void rtc_set_memory_layout(struct rtc *rtc, uint64_t lowmem_bytes, uint64_t highmem_bytes,
                           unsigned cpus);

/* Sets the guest clock to utc_seconds (tests, restore). */
void rtc_set_time(struct rtc *rtc, int64_t utc_seconds);
/* The guest's current clock in seconds since the epoch (UTC). */
int64_t rtc_get_time(struct rtc *rtc);

/* Raw CMOS access without side effects, for firmware tables and tests. */
uint8_t rtc_cmos_peek(struct rtc *rtc, unsigned index);
void rtc_cmos_poke(struct rtc *rtc, unsigned index, uint8_t value);
bool rtc_nmi_masked(struct rtc *rtc);

#endif
