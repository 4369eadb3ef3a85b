#include "devices/rtc.h"

#include <string.h>
#include <time.h>

#include "common/bytes.h"

#define NS_PER_SEC 1000000000ull
#define RTC_TIME_BASE_HZ 32768u
#define SECONDS_PER_DAY 86400

/* CMOS bytes firmware reads (QEMU's pc_cmos_init layout). */
enum {
    CMOS_SHUTDOWN_STATUS = 0x0f,
    CMOS_EQUIPMENT = 0x14,
    CMOS_BASE_MEM_LO = 0x15,
    CMOS_EXT_MEM_LO = 0x17,
    CMOS_CHECKSUM_FIRST = 0x10,
    CMOS_CHECKSUM_LAST = 0x2d,
    CMOS_CHECKSUM_HI = 0x2e,
    CMOS_CHECKSUM_LO = 0x2f,
    CMOS_EXT_MEM2_LO = 0x30,
    CMOS_MEM_16M_LO = 0x34,
    CMOS_BOOT_ORDER_3 = 0x38,
    CMOS_BOOT_ORDER_12 = 0x3d,
    CMOS_MEM_4G_LO = 0x5b,
    CMOS_CPU_COUNT = 0x5f,
};

/* QEMU's equipment byte: FPU present, PS/2 mouse installed. */
#define CMOS_EQUIPMENT_VALUE 0x06
/* QEMU's default boot order "cad" as nibbles (hd=2, floppy=1, cdrom=3);
 * SeaBIOS reads it only when fw_cfg carries no bootorder. */
#define CMOS_BOOT_ORDER_12_VALUE 0x12
#define CMOS_BOOT_ORDER_3_VALUE 0x30

/* The divider runs for DV = 000..010 (QEMU accepts all three); 11x holds it
 * in reset; other codes stop it without reset. */
static bool divider_running(uint8_t reg_a)
{
    return (reg_a & RTC_A_DIVIDER_MASK) <= 0x20;
}

static bool divider_in_reset(uint8_t reg_a)
{
    return (reg_a & 0x60) == 0x60;
}

static bool clock_running(const struct rtc *r)
{
    return !(r->cmos[RTC_REG_B] & RTC_B_SET) && divider_running(r->cmos[RTC_REG_A]);
}

/* ---- Calendar arithmetic (proleptic Gregorian, days since 1970-01-01). */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t days_from_civil(int64_t year, unsigned month, unsigned day)
{
    year -= month <= 2;
    int64_t era = floor_div(year, 400);
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

static void civil_from_days(int64_t days, int64_t *year, unsigned *month, unsigned *day)
{
    days += 719468;
    int64_t era = floor_div(days, 146097);
    int64_t day_of_era = days - era * 146097;
    int64_t year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    int64_t shifted_month = (5 * day_of_year + 2) / 153;
    *day = (unsigned)(day_of_year - (153 * shifted_month + 2) / 5 + 1);
    *month = (unsigned)(shifted_month < 10 ? shifted_month + 3 : shifted_month - 9);
    *year = year_of_era + era * 400 + (*month <= 2);
}

/* ---- Register encodings. */

static bool binary_mode(const struct rtc *r)
{
    return r->cmos[RTC_REG_B] & RTC_B_DM_BINARY;
}

static uint8_t to_reg(const struct rtc *r, unsigned value)
{
    value %= 100;
    return binary_mode(r) ? (uint8_t)value : (uint8_t)(((value / 10) << 4) | (value % 10));
}

static unsigned from_reg(const struct rtc *r, uint8_t value)
{
    return binary_mode(r) ? value : (unsigned)(value >> 4) * 10 + (value & 0x0f);
}

static uint8_t hours_to_reg(const struct rtc *r, unsigned hour)
{
    if (r->cmos[RTC_REG_B] & RTC_B_24H)
        return to_reg(r, hour);
    unsigned hour12 = hour % 12 ? hour % 12 : 12;
    return (uint8_t)(to_reg(r, hour12) | (hour >= 12 ? 0x80 : 0));
}

static unsigned hours_from_reg(const struct rtc *r, uint8_t value)
{
    unsigned hour = from_reg(r, value & 0x7f);
    if (!(r->cmos[RTC_REG_B] & RTC_B_24H)) {
        hour %= 12;
        if (value & 0x80)
            hour += 12;
    }
    return hour;
}

static unsigned clamp(unsigned value, unsigned lo, unsigned hi)
{
    return value < lo ? lo : value > hi ? hi : value;
}

static void write_time_regs(struct rtc *r, int64_t seconds)
{
    int64_t days = floor_div(seconds, SECONDS_PER_DAY);
    int64_t second_of_day = seconds - days * SECONDS_PER_DAY;
    int64_t year;
    unsigned month, day;
    civil_from_days(days, &year, &month, &day);
    if (year < 0)
        year = 0;
    unsigned weekday = (unsigned)((days % 7 + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
    r->cmos[RTC_SECONDS] = to_reg(r, (unsigned)(second_of_day % 60));
    r->cmos[RTC_MINUTES] = to_reg(r, (unsigned)(second_of_day / 60 % 60));
    r->cmos[RTC_HOURS] = hours_to_reg(r, (unsigned)(second_of_day / 3600));
    r->cmos[RTC_DAY_OF_WEEK] = to_reg(r, weekday + 1); /* Sunday = 1 */
    r->cmos[RTC_DAY_OF_MONTH] = to_reg(r, day);
    r->cmos[RTC_MONTH] = to_reg(r, month);
    r->cmos[RTC_YEAR] = to_reg(r, (unsigned)(year % 100));
    r->cmos[RTC_CENTURY] = to_reg(r, (unsigned)(year / 100 % 100));
}

/* Whatever the guest wrote, out-of-range fields are clamped, never trusted. */
static int64_t read_time_regs(const struct rtc *r)
{
    unsigned second = clamp(from_reg(r, r->cmos[RTC_SECONDS]), 0, 59);
    unsigned minute = clamp(from_reg(r, r->cmos[RTC_MINUTES]), 0, 59);
    unsigned hour = clamp(hours_from_reg(r, r->cmos[RTC_HOURS]), 0, 23);
    unsigned day = clamp(from_reg(r, r->cmos[RTC_DAY_OF_MONTH]), 1, 31);
    unsigned month = clamp(from_reg(r, r->cmos[RTC_MONTH]), 1, 12);
    unsigned year = clamp(from_reg(r, r->cmos[RTC_YEAR]), 0, 99);
    unsigned century = clamp(from_reg(r, r->cmos[RTC_CENTURY]), 0, 99);
    int64_t days = days_from_civil((int64_t)century * 100 + year, month, day);
    return days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second;
}

/* ---- The clock. */

static uint64_t clock_now(const struct rtc *r)
{
    return vm_clock_now(r->clock);
}

static void guest_now(struct rtc *r, int64_t *seconds, uint64_t *subsecond_ns)
{
    uint64_t elapsed = clock_now(r) - r->base_clock_ns + r->base_phase_ns;
    *seconds = r->base_seconds + (int64_t)(elapsed / NS_PER_SEC);
    *subsecond_ns = elapsed % NS_PER_SEC;
}

static void rebase(struct rtc *r, int64_t seconds, uint64_t phase_ns)
{
    r->base_seconds = seconds;
    r->base_clock_ns = clock_now(r);
    r->base_phase_ns = phase_ns % NS_PER_SEC;
}

/* While running, the time registers are rendered from the clock on demand. */
static void refresh_time_regs(struct rtc *r)
{
    if (!clock_running(r))
        return;
    int64_t seconds;
    uint64_t subsecond;
    guest_now(r, &seconds, &subsecond);
    write_time_regs(r, seconds);
}

static bool update_in_progress(struct rtc *r)
{
    if (!clock_running(r))
        return false;
    int64_t seconds;
    uint64_t subsecond;
    guest_now(r, &seconds, &subsecond);
    return subsecond >= NS_PER_SEC - RTC_UIP_HOLD_NS;
}

/* ---- Interrupts. IRQ 8 follows IRQF as a level (QEMU's model): the line
 * rises when a flag is raised with its enable set and falls when the guest
 * reads register C, which gives the edge-triggered IOAPIC pin one edge per
 * acknowledged interrupt. */

static void update_irq(struct rtc *r)
{
    bool level = r->cmos[RTC_REG_C] & RTC_C_IRQF;
    if (level != r->irq_asserted) {
        r->irq_asserted = level;
        irq_line_set(&r->irq, level);
    }
}

static void raise_flags(struct rtc *r, uint8_t flags)
{
    r->cmos[RTC_REG_C] |= flags;
    if (flags & r->cmos[RTC_REG_B] & (RTC_B_PIE | RTC_B_AIE | RTC_B_UIE))
        r->cmos[RTC_REG_C] |= RTC_C_IRQF;
    update_irq(r);
}

/* Rate select: 1 and 2 repeat 8 and 9 (3.9 and 7.8 ms); 3..15 give
 * 2^(rate-1) cycles of 32.768 kHz. The shortest, rate 3, is 122 us, above
 * the 100 us floor other device timers use, so no extra clamp is needed;
 * the timerfd folds expirations the main thread misses into one. */
static uint64_t periodic_period_ns(const struct rtc *r)
{
    unsigned rate = r->cmos[RTC_REG_A] & RTC_A_RATE_MASK;
    if (!(r->cmos[RTC_REG_B] & RTC_B_PIE) || rate == 0)
        return 0;
    unsigned cycles = rate <= 2 ? 1u << (rate + 6) : 1u << (rate - 1);
    return (uint64_t)cycles * NS_PER_SEC / RTC_TIME_BASE_HZ;
}

/* Arms the periodic timer for its deadline; nothing runs while paused. */
static void arm_periodic_timer(struct rtc *r)
{
    if (r->paused || !r->periodic_ns) {
        vm_timer_disarm(&r->periodic_timer);
        return;
    }
    uint64_t now = clock_now(r);
    uint64_t delay = r->periodic_deadline_ns > now ? r->periodic_deadline_ns - now : 1;
    /* The next tick is never more than a period away (a loaded deadline is
     * only checked once the clock is known). */
    vm_timer_arm(&r->periodic_timer, delay < r->periodic_ns ? delay : r->periodic_ns,
                 r->periodic_ns);
}

static void update_periodic_timer(struct rtc *r)
{
    uint64_t period = periodic_period_ns(r);
    if (period == r->periodic_ns)
        return;
    r->periodic_ns = period;
    r->periodic_deadline_ns = period ? clock_now(r) + period : 0;
    arm_periodic_timer(r);
}

/* The update timer fires at each boundary of the guest's second. */
static void arm_update_timer(struct rtc *r)
{
    if (r->paused || !clock_running(r)) {
        vm_timer_disarm(&r->update_timer);
        return;
    }
    int64_t seconds;
    uint64_t subsecond;
    guest_now(r, &seconds, &subsecond);
    vm_timer_arm(&r->update_timer, NS_PER_SEC - subsecond, 0);
}

static bool alarm_field_matches(uint8_t alarm, uint8_t value)
{
    return (alarm & 0xc0) == 0xc0 || alarm == value; /* 0xc0-0xff: don't care */
}

static bool alarm_matches(const struct rtc *r)
{
    return alarm_field_matches(r->cmos[RTC_SECONDS_ALARM], r->cmos[RTC_SECONDS]) &&
           alarm_field_matches(r->cmos[RTC_MINUTES_ALARM], r->cmos[RTC_MINUTES]) &&
           alarm_field_matches(r->cmos[RTC_HOURS_ALARM], r->cmos[RTC_HOURS]);
}

static void update_tick(void *opaque)
{
    struct rtc *r = opaque;
    pthread_mutex_lock(&r->lock);
    /* Paused: a tick already on its way is left to resume, which re-arms. */
    if (!r->paused && clock_running(r)) {
        refresh_time_regs(r);
        raise_flags(r, (uint8_t)(RTC_C_UF | (alarm_matches(r) ? RTC_C_AF : 0)));
        arm_update_timer(r);
    }
    pthread_mutex_unlock(&r->lock);
}

static void periodic_tick(void *opaque)
{
    struct rtc *r = opaque;
    pthread_mutex_lock(&r->lock);
    if (!r->paused && r->periodic_ns) {
        /* The next deadline is the first one after now (the timerfd folds
         * missed periods into one tick). */
        uint64_t now = clock_now(r);
        if (now >= r->periodic_deadline_ns)
            r->periodic_deadline_ns +=
                ((now - r->periodic_deadline_ns) / r->periodic_ns + 1) * r->periodic_ns;
        else if (r->periodic_deadline_ns - now > r->periodic_ns)
            r->periodic_deadline_ns = now + r->periodic_ns;
        raise_flags(r, RTC_C_PF);
    }
    pthread_mutex_unlock(&r->lock);
}

/* ---- Register access. */

static bool is_time_register(unsigned index)
{
    switch (index) {
    case RTC_SECONDS:
    case RTC_MINUTES:
    case RTC_HOURS:
    case RTC_DAY_OF_WEEK:
    case RTC_DAY_OF_MONTH:
    case RTC_MONTH:
    case RTC_YEAR:
    case RTC_CENTURY:
        return true;
    default:
        return false;
    }
}

static uint8_t data_read(struct rtc *r)
{
    unsigned index = r->index;
    if (is_time_register(index)) {
        refresh_time_regs(r);
        return r->cmos[index];
    }
    switch (index) {
    case RTC_REG_A:
        return (uint8_t)(r->cmos[RTC_REG_A] | (update_in_progress(r) ? RTC_A_UIP : 0));
    case RTC_REG_C: {
        uint8_t value = r->cmos[RTC_REG_C];
        r->cmos[RTC_REG_C] = 0;
        update_irq(r);
        return value;
    }
    case RTC_REG_D:
        return RTC_D_VRT;
    default:
        return r->cmos[index];
    }
}

/* Registers A and B start and stop the clock; the sub-second phase of the
 * divider chain carries on across SET, and a divider leaving reset makes the
 * first update come half a second later (MC146818 datasheet). */
static void write_control(struct rtc *r, unsigned index, uint8_t value)
{
    bool was_running = clock_running(r);
    int64_t seconds;
    uint64_t phase;
    guest_now(r, &seconds, &phase);
    if (was_running)
        write_time_regs(r, seconds);
    bool leaving_divider_reset = false;

    if (index == RTC_REG_A) {
        leaving_divider_reset = divider_in_reset(r->cmos[RTC_REG_A]) && !divider_in_reset(value);
        r->cmos[RTC_REG_A] = value & (uint8_t)~RTC_A_UIP; /* UIP is read-only */
    } else {
        if (value & RTC_B_SET)
            value &= (uint8_t)~RTC_B_UIE; /* SET clears UIE */
        /* A flag already pending whose enable is being set interrupts now. */
        if (value & r->cmos[RTC_REG_C] & (RTC_C_PF | RTC_C_AF | RTC_C_UF))
            r->cmos[RTC_REG_C] |= RTC_C_IRQF;
        else
            r->cmos[RTC_REG_C] &= (uint8_t)~RTC_C_IRQF;
        r->cmos[RTC_REG_B] = value;
    }

    if (!was_running && clock_running(r))
        rebase(r, read_time_regs(r), leaving_divider_reset ? NS_PER_SEC / 2 : phase);
    update_periodic_timer(r);
    arm_update_timer(r);
    update_irq(r);
}

static void data_write(struct rtc *r, uint8_t value)
{
    unsigned index = r->index;
    if (is_time_register(index)) {
        /* Bring the other fields up to date so the new time is consistent. */
        refresh_time_regs(r);
        r->cmos[index] = value;
        if (clock_running(r)) {
            int64_t seconds;
            uint64_t phase;
            guest_now(r, &seconds, &phase);
            rebase(r, read_time_regs(r), phase);
            arm_update_timer(r);
        }
        return;
    }
    switch (index) {
    case RTC_REG_A:
    case RTC_REG_B:
        write_control(r, index, value);
        break;
    case RTC_REG_C:
    case RTC_REG_D:
        break; /* read-only */
    default:
        r->cmos[index] = value; /* alarms and NVRAM */
        break;
    }
}

static uint64_t rtc_read(void *opaque, uint64_t offset, unsigned size)
{
    struct rtc *r = opaque;
    if (size == 0 || size > RTC_PORT_COUNT || offset + size > RTC_PORT_COUNT) {
        log_limited(&r->bad_access_log, LOG_WARNING, "%s: ignored %u-byte read at port offset %llu",
                    r->dev.name, size, (unsigned long long)offset);
        return ~0ull;
    }
    uint64_t result = 0;
    pthread_mutex_lock(&r->lock);
    /* A word access covers both ports, index first (QEMU splits it so). */
    for (unsigned i = 0; i < size; i++) {
        uint8_t byte = offset + i == 0 ? 0xff : data_read(r); /* the index is write-only */
        result |= (uint64_t)byte << (8 * i);
    }
    pthread_mutex_unlock(&r->lock);
    return result;
}

static void rtc_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct rtc *r = opaque;
    if (size == 0 || size > RTC_PORT_COUNT || offset + size > RTC_PORT_COUNT) {
        log_limited(&r->bad_access_log, LOG_WARNING,
                    "%s: ignored %u-byte write of 0x%llx at port offset %llu", r->dev.name, size,
                    (unsigned long long)value, (unsigned long long)offset);
        return;
    }
    pthread_mutex_lock(&r->lock);
    for (unsigned i = 0; i < size; i++) {
        uint8_t byte = (uint8_t)(value >> (8 * i));
        if (offset + i == 0) {
            r->index = byte & 0x7f;
            r->nmi_masked = byte & 0x80;
        } else {
            data_write(r, byte);
        }
    }
    pthread_mutex_unlock(&r->lock);
}

const struct io_ops rtc_io_ops = {.read = rtc_read, .write = rtc_write};

/* ---- Lifecycle. */

/* Reset pin semantics as QEMU: the clock and NVRAM survive (battery),
 * interrupt enables and flags clear, and the shutdown status byte clears
 * unless it says S3 resume (0xfe). */
static void rtc_reset(struct device *dev)
{
    struct rtc *r = container_of(dev, struct rtc, dev);
    pthread_mutex_lock(&r->lock);
    if (r->cmos[CMOS_SHUTDOWN_STATUS] != 0xfe)
        r->cmos[CMOS_SHUTDOWN_STATUS] = 0;
    r->cmos[RTC_REG_B] &= (uint8_t) ~(RTC_B_PIE | RTC_B_AIE | RTC_B_SQWE);
    r->cmos[RTC_REG_C] = 0;
    update_periodic_timer(r);
    arm_update_timer(r);
    update_irq(r);
    pthread_mutex_unlock(&r->lock);
}

static void rtc_destroy(struct device *dev)
{
    struct rtc *r = container_of(dev, struct rtc, dev);
    vm_timer_destroy(&r->periodic_timer);
    vm_timer_destroy(&r->update_timer);
    pthread_mutex_destroy(&r->lock);
}

/* Pause: both timers stop; the periodic deadline and the guest clock's base
 * (clock times) stay, so resume continues where pause left off. */
static int rtc_pause(struct device *dev)
{
    struct rtc *r = container_of(dev, struct rtc, dev);
    pthread_mutex_lock(&r->lock);
    r->paused = true;
    vm_timer_disarm(&r->periodic_timer);
    vm_timer_disarm(&r->update_timer);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static void rtc_resume(struct device *dev)
{
    struct rtc *r = container_of(dev, struct rtc, dev);
    pthread_mutex_lock(&r->lock);
    r->paused = false;
    arm_periodic_timer(r);
    arm_update_timer(r);
    pthread_mutex_unlock(&r->lock);
}

/* CMOS (time registers as last rendered; while the clock runs the base
 * below is the time), the index latch, the guest clock's base and the next
 * periodic tick. Times are the machine clock's: a restore sets that clock
 * to the saved time (before the devices resume), so the guest clock and
 * the periodic phase continue. The update timer follows from the base.
 * Loaded into a paused RTC, nothing is armed until resume. */
static int rtc_state(struct device *dev, struct snap *s)
{
    struct rtc *r = container_of(dev, struct rtc, dev);
    pthread_mutex_lock(&r->lock);
    snap_bytes(s, "cmos", r->cmos, sizeof(r->cmos));
    snap_u8(s, "index", &r->index);
    snap_bool(s, "nmi_masked", &r->nmi_masked);
    snap_i64(s, "base_seconds", &r->base_seconds);
    snap_u64(s, "base_clock_ns", &r->base_clock_ns);
    snap_u64(s, "base_phase_ns", &r->base_phase_ns);
    snap_u64(s, "periodic_deadline_ns", &r->periodic_deadline_ns);
    if (snap_loading(s) && !snap_error(s)) {
        uint64_t period = periodic_period_ns(r);
        snap_check(s, r->index < RTC_CMOS_SIZE, "index", "beyond the 128 CMOS bytes");
        snap_check(s, r->base_phase_ns < NS_PER_SEC, "base_phase_ns", "not below one second");
        snap_check(s, (period == 0) == (r->periodic_deadline_ns == 0), "periodic_deadline_ns",
                   period ? "missing while the periodic interrupt is on"
                          : "set while the periodic interrupt is off");
        if (!snap_error(s)) {
            r->periodic_ns = period;
            arm_periodic_timer(r);
            arm_update_timer(r);
            update_irq(r);
        }
    }
    pthread_mutex_unlock(&r->lock);
    return snap_error(s);
}

static const struct device_ops rtc_device_ops = {
    .reset = rtc_reset,
    .pause = rtc_pause,
    .resume = rtc_resume,
    .state = rtc_state,
    .kind = "rtc",
    .state_version = 1,
    .destroy = rtc_destroy,
};

int rtc_init(struct rtc *r, const char *name, const struct vm_clock *clock, struct io_loop *loop,
             struct irq_line irq)
{
    memset(r, 0, sizeof(*r));
    r->dev.name = name;
    r->dev.ops = &rtc_device_ops;
    r->irq = irq;
    r->clock = clock;
    r->periodic_timer.fd = r->update_timer.fd = -1;
    if (vm_timer_init(&r->periodic_timer, loop, periodic_tick, r) < 0)
        return -1;
    if (vm_timer_init(&r->update_timer, loop, update_tick, r) < 0) {
        vm_timer_destroy(&r->periodic_timer);
        return -1;
    }
    pthread_mutex_init(&r->lock, NULL);
    /* Power-on values as QEMU: 32.768 kHz divider, 1024 Hz rate, 24-hour BCD. */
    r->cmos[RTC_REG_A] = 0x26;
    r->cmos[RTC_REG_B] = RTC_B_24H;
    r->cmos[RTC_REG_D] = RTC_D_VRT;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    rebase(r, (int64_t)now.tv_sec, (uint64_t)now.tv_nsec);
    refresh_time_regs(r);
    arm_update_timer(r);
    return 0;
}

/* The low 16 bits of value into CMOS bytes index (low) and index + 1. */
static void store_le16(struct rtc *r, unsigned index, uint64_t value)
{
    le16_store(r->cmos + index, (uint16_t)value);
}

void rtc_set_memory_layout(struct rtc *r, uint64_t lowmem_bytes, uint64_t highmem_bytes,
                           unsigned cpus)
{
    const uint64_t kib = 1024, mib = 1024 * kib, chunk = 64 * kib;
    pthread_mutex_lock(&r->lock);
    uint64_t base_kib = lowmem_bytes / kib < 640 ? lowmem_bytes / kib : 640;
    store_le16(r, CMOS_BASE_MEM_LO, base_kib);
    uint64_t ext_kib = lowmem_bytes > mib ? (lowmem_bytes - mib) / kib : 0;
    if (ext_kib > 0xffff)
        ext_kib = 0xffff;
    store_le16(r, CMOS_EXT_MEM_LO, ext_kib);
    store_le16(r, CMOS_EXT_MEM2_LO, ext_kib);
    uint64_t above_16m = lowmem_bytes > 16 * mib ? (lowmem_bytes - 16 * mib) / chunk : 0;
    if (above_16m > 0xffff)
        above_16m = 0xffff;
    store_le16(r, CMOS_MEM_16M_LO, above_16m);
    uint64_t above_4g = highmem_bytes / chunk;
    if (above_4g > 0xffffff)
        above_4g = 0xffffff; /* 1 TiB and up: clamped as propolis does */
    store_le16(r, CMOS_MEM_4G_LO, above_4g);
    r->cmos[CMOS_MEM_4G_LO + 2] = (uint8_t)(above_4g >> 16);
    r->cmos[CMOS_CPU_COUNT] = (uint8_t)(cpus ? cpus - 1 : 0);
    r->cmos[CMOS_EQUIPMENT] = CMOS_EQUIPMENT_VALUE;
    r->cmos[CMOS_BOOT_ORDER_12] = CMOS_BOOT_ORDER_12_VALUE;
    r->cmos[CMOS_BOOT_ORDER_3] = CMOS_BOOT_ORDER_3_VALUE;
    /* The AT checksum: 16-bit sum of 0x10-0x2d, high byte first. */
    unsigned sum = 0;
    for (unsigned i = CMOS_CHECKSUM_FIRST; i <= CMOS_CHECKSUM_LAST; i++)
        sum += r->cmos[i];
    r->cmos[CMOS_CHECKSUM_HI] = (uint8_t)(sum >> 8);
    r->cmos[CMOS_CHECKSUM_LO] = (uint8_t)sum;
    pthread_mutex_unlock(&r->lock);
}

void rtc_set_time(struct rtc *r, int64_t utc_seconds)
{
    pthread_mutex_lock(&r->lock);
    if (clock_running(r))
        rebase(r, utc_seconds, 0);
    else
        write_time_regs(r, utc_seconds);
    arm_update_timer(r);
    pthread_mutex_unlock(&r->lock);
}

int64_t rtc_get_time(struct rtc *r)
{
    pthread_mutex_lock(&r->lock);
    int64_t seconds;
    if (clock_running(r)) {
        uint64_t subsecond;
        guest_now(r, &seconds, &subsecond);
    } else {
        seconds = read_time_regs(r);
    }
    pthread_mutex_unlock(&r->lock);
    return seconds;
}

uint8_t rtc_cmos_peek(struct rtc *r, unsigned index)
{
    if (index >= RTC_CMOS_SIZE)
        return 0xff;
    pthread_mutex_lock(&r->lock);
    uint8_t value = r->cmos[index];
    pthread_mutex_unlock(&r->lock);
    return value;
}

void rtc_cmos_poke(struct rtc *r, unsigned index, uint8_t value)
{
    if (index >= RTC_CMOS_SIZE)
        return;
    pthread_mutex_lock(&r->lock);
    r->cmos[index] = value;
    pthread_mutex_unlock(&r->lock);
}

bool rtc_nmi_masked(struct rtc *r)
{
    pthread_mutex_lock(&r->lock);
    bool masked = r->nmi_masked;
    pthread_mutex_unlock(&r->lock);
    return masked;
}
