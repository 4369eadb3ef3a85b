#include "devices/hpet.h"

#include <string.h>

#include "common/bytes.h"
#include "common/regmap.h"

#define TIMER_CONFIG_WRITABLE                                                                      \
    (HPET_TN_LEVEL | HPET_TN_INT_ENABLE | HPET_TN_PERIODIC | HPET_TN_VAL_SET | HPET_TN_32BIT |     \
     HPET_TN_ROUTE_MASK)
#define NOT_ARMED UINT64_MAX

/* Revision 1, NUM_TIM_CAP, 64-bit counter, legacy replacement capable,
 * vendor 8086 (QEMU's values), tick period in femtoseconds. */
static uint64_t capabilities(void)
{
    return 0x01ull | ((uint64_t)(HPET_NUM_TIMERS - 1) << 8) | (1ull << 13) | (1ull << 15) |
           (0x8086ull << 16) | (HPET_PERIOD_FS << 32);
}

static bool hpet_enabled(const struct hpet *h)
{
    return h->config & HPET_CFG_ENABLE;
}

static bool legacy_mode(const struct hpet *h)
{
    return h->config & HPET_CFG_LEGACY;
}

static uint64_t counter_now(struct hpet *h)
{
    if (!hpet_enabled(h))
        return h->counter;
    return h->counter_at_enable + (vm_clock_now(h->clock) - h->enable_clock_ns) / HPET_TICK_NS;
}

static uint64_t ticks_to_ns(uint64_t ticks)
{
    return ticks > UINT64_MAX / HPET_TICK_NS ? UINT64_MAX : ticks * HPET_TICK_NS;
}

/* ---- Interrupt delivery. */

static unsigned timer_gsi(const struct hpet_timer *t)
{
    if (legacy_mode(t->hpet) && t->index == 0)
        return HPET_LEGACY_TIMER0_IRQ;
    if (legacy_mode(t->hpet) && t->index == 1)
        return HPET_LEGACY_TIMER1_IRQ;
    return (unsigned)((t->config & HPET_TN_ROUTE_MASK) >> HPET_TN_ROUTE_SHIFT);
}

static void set_line(struct hpet *h, unsigned gsi, unsigned source, bool level)
{
    irq_bank_set(&h->irq[source], gsi, level);
}

/* A level-triggered comparator drives its line while its status bit is set
 * and both it and the HPET are enabled; follows route and mode changes. */
static void update_level(struct hpet_timer *t)
{
    struct hpet *h = t->hpet;
    bool want = (t->config & HPET_TN_LEVEL) && (t->config & HPET_TN_INT_ENABLE) &&
                hpet_enabled(h) && (h->int_status & (1ull << t->index));
    int gsi = want ? (int)timer_gsi(t) : -1;
    if (gsi == t->asserted_gsi)
        return;
    if (t->asserted_gsi >= 0)
        set_line(h, (unsigned)t->asserted_gsi, t->index, false);
    if (gsi >= 0)
        set_line(h, (unsigned)gsi, t->index, true);
    t->asserted_gsi = gsi;
}

static void update_all_levels(struct hpet *h)
{
    for (unsigned i = 0; i < HPET_NUM_TIMERS; i++)
        update_level(&h->timers[i]);
}

static void fire(struct hpet_timer *t)
{
    struct hpet *h = t->hpet;
    uint64_t bit = 1ull << t->index;
    if (t->config & HPET_TN_LEVEL) {
        h->int_status |= bit;
        update_level(t);
        return;
    }
    h->int_status &= ~bit; /* edge interrupts leave no status */
    update_level(t);
    unsigned gsi = timer_gsi(t);
    set_line(h, gsi, t->index, true);
    set_line(h, gsi, t->index, false);
}

/* ---- Comparators. */

/* Ticks until the comparator matches. As QEMU: a comparator at or behind
 * the counter (by signed distance in the timer's width) matches at once. */
static uint64_t ticks_until(const struct hpet_timer *t, uint64_t counter)
{
    if (t->config & HPET_TN_32BIT) {
        uint32_t diff = (uint32_t)t->comparator - (uint32_t)counter;
        return (int32_t)diff > 0 ? diff : 1;
    }
    uint64_t diff = t->comparator - counter;
    return (int64_t)diff > 0 ? diff : 1;
}

static void arm(struct hpet_timer *t, uint64_t now, uint64_t delay_ns)
{
    t->deadline_ns = delay_ns >= NOT_ARMED - now ? NOT_ARMED - 1 : now + delay_ns;
    if (t->hpet->paused)
        return; /* resume arms it */
    /* Far deadlines are reached by re-checking; never arm 0 (disarms). */
    uint64_t sleep = delay_ns < HPET_MAX_TIMER_SLEEP_NS ? delay_ns : HPET_MAX_TIMER_SLEEP_NS;
    vm_timer_arm(&t->timer, sleep ? sleep : 1, 0);
}

/* Arms the host timer for the deadline already recorded (resume, load): a
 * deadline that passed meanwhile fires at once. */
static void rearm(struct hpet_timer *t, uint64_t now)
{
    if (t->deadline_ns == NOT_ARMED || t->hpet->paused) {
        vm_timer_disarm(&t->timer);
        return;
    }
    uint64_t left = t->deadline_ns > now ? t->deadline_ns - now : 1;
    vm_timer_arm(&t->timer, left < HPET_MAX_TIMER_SLEEP_NS ? left : HPET_MAX_TIMER_SLEEP_NS, 0);
}

static void disarm(struct hpet_timer *t)
{
    t->deadline_ns = NOT_ARMED;
    t->wrap_pending = false;
    vm_timer_disarm(&t->timer);
}

/* Arms the next expiry from the comparator. A 32-bit one-shot comparator
 * also interrupts when the counter wraps (QEMU, after the spec). */
static void schedule(struct hpet_timer *t)
{
    struct hpet *h = t->hpet;
    if (!hpet_enabled(h) || !(t->config & HPET_TN_INT_ENABLE)) {
        disarm(t);
        return;
    }
    uint64_t now = vm_clock_now(h->clock);
    uint64_t counter = counter_now(h);
    uint64_t ticks = ticks_until(t, counter);
    t->wrap_pending = false;
    if ((t->config & HPET_TN_32BIT) && !(t->config & HPET_TN_PERIODIC)) {
        uint32_t to_wrap = 0xffffffffu - (uint32_t)counter;
        if (to_wrap < (uint32_t)ticks) {
            ticks = to_wrap;
            t->wrap_pending = true;
        }
    }
    arm(t, now, ticks_to_ns(ticks));
}

/* Periodic mode: the comparator accumulates whole periods until it is ahead
 * of the counter; computed, not looped, so a tiny period costs nothing. */
static void advance_comparator(struct hpet_timer *t, uint64_t counter)
{
    if (t->config & HPET_TN_32BIT) {
        uint32_t comparator = (uint32_t)t->comparator;
        uint32_t period = (uint32_t)t->period;
        uint32_t behind = (uint32_t)counter - comparator;
        if (period && (int32_t)behind >= 0)
            comparator = (uint32_t)(comparator + ((uint64_t)behind / period + 1) * period);
        t->comparator = comparator;
        return;
    }
    uint64_t behind = counter - t->comparator;
    if ((int64_t)behind >= 0)
        t->comparator += (behind / t->period + 1) * t->period;
}

static bool periodic_running(const struct hpet_timer *t)
{
    uint64_t period = (t->config & HPET_TN_32BIT) ? (uint32_t)t->period : t->period;
    return (t->config & HPET_TN_PERIODIC) && period != 0;
}

static void timer_expired(void *opaque)
{
    struct hpet_timer *t = opaque;
    struct hpet *h = t->hpet;
    pthread_mutex_lock(&h->lock);
    /* Paused: a tick already on its way is left to resume, which re-arms
     * for the same deadline. */
    if (h->paused || t->deadline_ns == NOT_ARMED || !hpet_enabled(h) ||
        !(t->config & HPET_TN_INT_ENABLE)) {
        pthread_mutex_unlock(&h->lock);
        return;
    }
    uint64_t now = vm_clock_now(h->clock);
    if (now < t->deadline_ns) { /* an intermediate wake-up of a far deadline */
        uint64_t left = t->deadline_ns - now;
        vm_timer_arm(&t->timer, left < HPET_MAX_TIMER_SLEEP_NS ? left : HPET_MAX_TIMER_SLEEP_NS, 0);
        pthread_mutex_unlock(&h->lock);
        return;
    }
    uint64_t counter = counter_now(h);
    if (periodic_running(t)) {
        /* Periods shorter than the floor are coalesced: the comparator moves
         * to the first match at least HPET_MIN_PERIOD_NS ahead, so what the
         * guest reads back is when the next interrupt really comes. */
        advance_comparator(t, counter + HPET_MIN_PERIOD_NS / HPET_TICK_NS - 1);
        uint64_t delay = ticks_to_ns(ticks_until(t, counter));
        arm(t, now, delay < HPET_MIN_PERIOD_NS ? HPET_MIN_PERIOD_NS : delay);
    } else if (t->wrap_pending) {
        t->wrap_pending = false;
        arm(t, now, ticks_to_ns(ticks_until(t, counter)));
    } else {
        t->deadline_ns = NOT_ARMED; /* one-shot: done until rewritten */
    }
    fire(t);
    pthread_mutex_unlock(&h->lock);
}

/* ---- Registers. */

/* Register ids: the general registers, then per comparator its index in
 * the high byte and which of its three registers in the low one. */
enum {
    REG_CAPABILITIES,
    REG_CONFIG,
    REG_INT_STATUS,
    REG_COUNTER,
    REG_TIMER_CONFIG,
    REG_TIMER_COMPARATOR,
    REG_TIMER_FSB_ROUTE,
};
#define TIMER_REG_ID(index, reg) (((uint32_t)(index) << 8) | (reg))

/* Comparator n's register which (CONFIG, COMPARATOR, FSB_ROUTE). */
#define TIMER_REG(n, which)                                                                        \
    {                                                                                              \
        HPET_REG_TIMER0 + (n)*HPET_TIMER_STRIDE + HPET_TIMER_##which, 8,                           \
            TIMER_REG_ID(n, REG_TIMER_##which)                                                     \
    }

/* Every register is 64 bits; the gaps are reserved (read 0, writes logged). */
static const struct reg_def hpet_regs[] = {
    {HPET_REG_CAPABILITIES, 8, REG_CAPABILITIES},
    {HPET_REG_CONFIG, 8, REG_CONFIG},
    {HPET_REG_INT_STATUS, 8, REG_INT_STATUS},
    {HPET_REG_COUNTER, 8, REG_COUNTER},
    TIMER_REG(0, CONFIG),
    TIMER_REG(0, COMPARATOR),
    TIMER_REG(0, FSB_ROUTE),
    TIMER_REG(1, CONFIG),
    TIMER_REG(1, COMPARATOR),
    TIMER_REG(1, FSB_ROUTE),
    TIMER_REG(2, CONFIG),
    TIMER_REG(2, COMPARATOR),
    TIMER_REG(2, FSB_ROUTE),
};
_Static_assert(ARRAY_LEN(hpet_regs) == 4 + 3 * HPET_NUM_TIMERS,
               "three TIMER_REG lines per comparator");
_Static_assert(HPET_REG_TIMER0 + HPET_NUM_TIMERS * HPET_TIMER_STRIDE <= HPET_MMIO_SIZE,
               "comparators fit the MMIO window");
static const struct regmap hpet_map = {hpet_regs, ARRAY_LEN(hpet_regs)};

static unsigned reg_kind(uint32_t id)
{
    return id & 0xffu;
}

/* The comparator a per-timer id names (the table only has valid ones). */
static struct hpet_timer *reg_timer(struct hpet *h, uint32_t id)
{
    return &h->timers[(id >> 8) % HPET_NUM_TIMERS];
}

static uint64_t read_register(void *opaque, uint32_t id)
{
    struct hpet *h = opaque;
    const struct hpet_timer *t = reg_timer(h, id);
    switch (reg_kind(id)) {
    case REG_CAPABILITIES:
        return capabilities();
    case REG_CONFIG:
        return h->config;
    case REG_INT_STATUS:
        return h->int_status;
    case REG_COUNTER:
        return counter_now(h);
    case REG_TIMER_CONFIG:
        return t->config;
    case REG_TIMER_COMPARATOR:
        return t->comparator;
    case REG_TIMER_FSB_ROUTE:
        return t->fsb_route;
    }
    return 0;
}

static void write_general_config(struct hpet *h, uint64_t value)
{
    uint64_t old = h->config;
    uint64_t now = vm_clock_now(h->clock);
    uint64_t counter = counter_now(h);
    h->config = value & (HPET_CFG_ENABLE | HPET_CFG_LEGACY);

    if (!(old & HPET_CFG_ENABLE) && hpet_enabled(h)) {
        h->counter_at_enable = h->counter;
        h->enable_clock_ns = now;
        for (unsigned i = 0; i < HPET_NUM_TIMERS; i++) {
            if (h->timers[i].comparator != ~0ull) /* never-programmed ones stay quiet (QEMU) */
                schedule(&h->timers[i]);
        }
    } else if ((old & HPET_CFG_ENABLE) && !hpet_enabled(h)) {
        h->counter = counter;
        for (unsigned i = 0; i < HPET_NUM_TIMERS; i++)
            disarm(&h->timers[i]);
        h->int_status = 0;
    }

    bool was_legacy = old & HPET_CFG_LEGACY;
    if (!was_legacy && legacy_mode(h)) {
        irq_line_set(&h->pit_legacy, true);
        if (h->rtc_level)
            set_line(h, HPET_LEGACY_TIMER1_IRQ, HPET_SOURCE_RTC, false);
    } else if (was_legacy && !legacy_mode(h)) {
        irq_line_set(&h->pit_legacy, false);
        if (h->rtc_level)
            set_line(h, HPET_LEGACY_TIMER1_IRQ, HPET_SOURCE_RTC, true);
    }
    update_all_levels(h);
}

static void write_timer_config(struct hpet *h, struct hpet_timer *t, uint64_t value, uint64_t mask)
{
    uint64_t old = t->config;
    uint64_t requested = reg_merge(old, value, mask);
    uint64_t config = (old & ~TIMER_CONFIG_WRITABLE) | (requested & TIMER_CONFIG_WRITABLE);
    unsigned route = (unsigned)((config & HPET_TN_ROUTE_MASK) >> HPET_TN_ROUTE_SHIFT);
    if (((config ^ old) & HPET_TN_ROUTE_MASK) && !(h->route_cap & (1u << route))) {
        /* Unsupported routes read back as the old one, as the spec allows. */
        log_limited(&h->bad_access_log, LOG_WARNING,
                    "%s: timer %u: IOAPIC pin %u not in the routing capability 0x%x; ignored",
                    h->dev.name, t->index, route, h->route_cap);
        config = (config & ~HPET_TN_ROUTE_MASK) | (old & HPET_TN_ROUTE_MASK);
    }
    if (requested & mask & HPET_TN_FSB_ENABLE)
        log_limited(&h->bad_access_log, LOG_WARNING,
                    "%s: timer %u: FSB delivery is not supported; ignored", h->dev.name, t->index);
    t->config = config;
    if (config & HPET_TN_32BIT) {
        t->comparator = (uint32_t)t->comparator;
        t->period &= 0x7fffffffull; /* as a 32-bit write would have clamped it */
    }
    if (!(old & HPET_TN_INT_ENABLE) && (config & HPET_TN_INT_ENABLE)) {
        if (hpet_enabled(h))
            schedule(t);
    } else if ((old & HPET_TN_INT_ENABLE) && !(config & HPET_TN_INT_ENABLE)) {
        disarm(t);
        h->int_status &= ~(1ull << t->index);
    }
    update_level(t);
}

/* With VAL_SET (or in one-shot mode) a write sets the comparator; in
 * periodic mode it also sets the period, the accumulator's increment. */
static void write_timer_comparator(struct hpet *h, struct hpet_timer *t, uint64_t value,
                                   uint64_t mask)
{
    bool narrow = t->config & HPET_TN_32BIT;
    if (narrow) {
        mask &= 0xffffffffull;
        if (!mask)
            return; /* the high half does not exist in 32-bit mode */
    }
    if (!(t->config & HPET_TN_PERIODIC) || (t->config & HPET_TN_VAL_SET))
        t->comparator = reg_merge(t->comparator, value, mask);
    if (t->config & HPET_TN_PERIODIC)
        t->period = reg_merge(t->period, value, mask) & (narrow ? 0x7fffffffull : INT64_MAX);
    t->config &= ~HPET_TN_VAL_SET;
    if (narrow)
        t->comparator = (uint32_t)t->comparator;
    if (hpet_enabled(h))
        schedule(t);
}

static void write_register(void *opaque, uint32_t id, uint64_t value, uint64_t mask)
{
    struct hpet *h = opaque;
    struct hpet_timer *t = reg_timer(h, id);
    switch (reg_kind(id)) {
    case REG_CAPABILITIES:
        return; /* read-only */
    case REG_CONFIG:
        write_general_config(h, reg_merge(h->config, value, mask));
        return;
    case REG_INT_STATUS:
        /* Write 1 to clear a level-triggered comparator's status. */
        h->int_status &= ~(value & mask);
        update_all_levels(h);
        return;
    case REG_COUNTER:
        if (hpet_enabled(h)) {
            log_limited(&h->bad_access_log, LOG_WARNING,
                        "%s: main counter written while running; ignored", h->dev.name);
            return;
        }
        h->counter = reg_merge(h->counter, value, mask);
        return;
    case REG_TIMER_CONFIG:
        write_timer_config(h, t, value, mask);
        return;
    case REG_TIMER_COMPARATOR:
        write_timer_comparator(h, t, value, mask);
        return;
    case REG_TIMER_FSB_ROUTE:
        t->fsb_route = reg_merge(t->fsb_route, value, mask); /* kept, unused */
        return;
    }
}

/* Registers are 64 bits wide; aligned 4- and 8-byte accesses reach them
 * (so an access never spans two registers); others are refused before the
 * map is consulted. */
static bool valid_access(uint64_t offset, unsigned size)
{
    return (size == 4 || size == 8) && offset % size == 0 && offset < HPET_MMIO_SIZE &&
           size <= HPET_MMIO_SIZE - offset;
}

static uint64_t hpet_read(void *opaque, uint64_t offset, unsigned size)
{
    struct hpet *h = opaque;
    if (!valid_access(offset, size)) {
        log_limited(&h->bad_access_log, LOG_WARNING, "%s: %u-byte read at 0x%llx ignored",
                    h->dev.name, size, (unsigned long long)offset);
        return 0;
    }
    uint64_t value;
    pthread_mutex_lock(&h->lock);
    regmap_read(&hpet_map, offset, size, read_register, h, &value); /* reserved: 0 */
    pthread_mutex_unlock(&h->lock);
    return value;
}

static void hpet_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct hpet *h = opaque;
    if (!valid_access(offset, size)) {
        log_limited(&h->bad_access_log, LOG_WARNING, "%s: %u-byte write at 0x%llx ignored",
                    h->dev.name, size, (unsigned long long)offset);
        return;
    }
    pthread_mutex_lock(&h->lock);
    bool mapped = regmap_write(&hpet_map, offset, size, value, write_register, h);
    pthread_mutex_unlock(&h->lock);
    if (!mapped)
        log_limited(&h->bad_access_log, LOG_WARNING,
                    "%s: write to reserved register 0x%llx ignored", h->dev.name,
                    (unsigned long long)(offset & ~7ull));
}

const struct io_ops hpet_io_ops = {.read = hpet_read, .write = hpet_write};

void hpet_rtc_irq_input(void *opaque, bool level)
{
    struct hpet *h = opaque;
    pthread_mutex_lock(&h->lock);
    if (level != h->rtc_level) {
        h->rtc_level = level;
        if (!legacy_mode(h))
            set_line(h, HPET_LEGACY_TIMER1_IRQ, HPET_SOURCE_RTC, level);
    }
    pthread_mutex_unlock(&h->lock);
}

struct irq_line hpet_rtc_input(struct hpet *h)
{
    return (struct irq_line){hpet_rtc_irq_input, h};
}

uint64_t hpet_counter_value(struct hpet *h)
{
    pthread_mutex_lock(&h->lock);
    uint64_t counter = counter_now(h);
    pthread_mutex_unlock(&h->lock);
    return counter;
}

/* ---- Lifecycle. */

static void reset_locked(struct hpet *h)
{
    bool was_legacy = legacy_mode(h);
    for (unsigned i = 0; i < HPET_NUM_TIMERS; i++) {
        struct hpet_timer *t = &h->timers[i];
        disarm(t);
        if (t->asserted_gsi >= 0)
            set_line(h, (unsigned)t->asserted_gsi, t->index, false);
        t->asserted_gsi = -1;
        t->config = HPET_TN_PERIODIC_CAP | HPET_TN_SIZE_CAP | ((uint64_t)h->route_cap << 32);
        t->comparator = ~0ull;
        t->period = 0;
        t->fsb_route = 0;
    }
    h->config = 0;
    h->int_status = 0;
    h->counter = 0;
    h->counter_at_enable = 0;
    h->enable_clock_ns = 0;
    if (was_legacy)
        irq_line_set(&h->pit_legacy, false);
    /* The RTC lowers its output on reset too. */
    if (!was_legacy && h->rtc_level)
        set_line(h, HPET_LEGACY_TIMER1_IRQ, HPET_SOURCE_RTC, false);
    h->rtc_level = false;
}

static void hpet_reset(struct device *dev)
{
    struct hpet *h = container_of(dev, struct hpet, dev);
    pthread_mutex_lock(&h->lock);
    reset_locked(h);
    pthread_mutex_unlock(&h->lock);
}

static void hpet_destroy(struct device *dev)
{
    struct hpet *h = container_of(dev, struct hpet, dev);
    for (unsigned i = 0; i < HPET_NUM_TIMERS; i++)
        vm_timer_destroy(&h->timers[i].timer);
    pthread_mutex_destroy(&h->lock);
}

/* Pause: every comparator's host timer stops; the deadlines (clock times)
 * stay, and resume arms them again, at once for one that passed. */
static int hpet_pause(struct device *dev)
{
    struct hpet *h = container_of(dev, struct hpet, dev);
    pthread_mutex_lock(&h->lock);
    h->paused = true;
    for (unsigned i = 0; i < HPET_NUM_TIMERS; i++)
        vm_timer_disarm(&h->timers[i].timer);
    pthread_mutex_unlock(&h->lock);
    return 0;
}

static void hpet_resume(struct device *dev)
{
    struct hpet *h = container_of(dev, struct hpet, dev);
    pthread_mutex_lock(&h->lock);
    h->paused = false;
    uint64_t now = vm_clock_now(h->clock);
    for (unsigned i = 0; i < HPET_NUM_TIMERS; i++)
        rearm(&h->timers[i], now);
    pthread_mutex_unlock(&h->lock);
}

/* A comparator's configuration as the guest can leave it: the fixed
 * capability bits, writable bits only, and a route the capability allows
 * (or 0, the power-on route). */
static bool timer_config_valid(const struct hpet *h, uint64_t config)
{
    uint64_t fixed = HPET_TN_PERIODIC_CAP | HPET_TN_SIZE_CAP | ((uint64_t)h->route_cap << 32);
    unsigned route = (unsigned)((config & HPET_TN_ROUTE_MASK) >> HPET_TN_ROUTE_SHIFT);
    return (config & ~TIMER_CONFIG_WRITABLE) == fixed &&
           (route == 0 || (h->route_cap & (1u << route)));
}

static void timer_state(struct hpet *h, struct hpet_timer *t, struct snap *s)
{
    snap_enter(s, "timer%u", t->index);
    snap_u64(s, "config", &t->config);
    snap_u64(s, "comparator", &t->comparator);
    snap_u64(s, "period", &t->period);
    snap_u64(s, "fsb_route", &t->fsb_route);
    snap_bool(s, "wrap_pending", &t->wrap_pending);
    snap_u64(s, "deadline_ns", &t->deadline_ns);
    if (snap_loading(s) && !snap_error(s)) {
        bool narrow = t->config & HPET_TN_32BIT;
        bool armed = t->deadline_ns != NOT_ARMED;
        snap_check(s, timer_config_valid(h, t->config), "config",
                   "bits or a route this comparator does not have");
        snap_check(s, !narrow || t->comparator <= UINT32_MAX, "comparator",
                   "above 32 bits in 32-bit mode");
        snap_check(s, t->period <= (narrow ? 0x7fffffffull : (uint64_t)INT64_MAX), "period",
                   "too large for the comparator's width");
        snap_check(s, !t->wrap_pending || armed, "wrap_pending", "set on a disarmed comparator");
        snap_check(s, !armed || (hpet_enabled(h) && (t->config & HPET_TN_INT_ENABLE)),
                   "deadline_ns", "armed while the comparator or the HPET is disabled");
    }
    snap_leave(s);
}

/* The registers, the counter's base and each comparator's deadline, all
 * as clock times: a restore sets the machine clock to the saved time, so
 * the counter and the comparators continue (loaded into a paused HPET,
 * nothing is armed until resume). The interrupt lines are not saved:
 * level comparators and legacy mode drive them again from the loaded
 * registers; the forwarded RTC level is the RTC's, which its load drives. */
static int hpet_state(struct device *dev, struct snap *s)
{
    struct hpet *h = container_of(dev, struct hpet, dev);
    pthread_mutex_lock(&h->lock);
    bool was_legacy = legacy_mode(h);
    snap_u64(s, "config", &h->config);
    snap_u64(s, "int_status", &h->int_status);
    snap_u64(s, "counter", &h->counter);
    snap_u64(s, "counter_at_enable", &h->counter_at_enable);
    snap_u64(s, "enable_clock_ns", &h->enable_clock_ns);
    if (snap_loading(s) && !snap_error(s)) {
        snap_check(s, !(h->config & ~(HPET_CFG_ENABLE | HPET_CFG_LEGACY)), "config",
                   "reserved bits set");
        snap_check(s, !(h->int_status & ~((1ull << HPET_NUM_TIMERS) - 1)), "int_status",
                   "bits of comparators this HPET does not have");
    }
    for (unsigned i = 0; i < HPET_NUM_TIMERS; i++)
        timer_state(h, &h->timers[i], s);
    if (snap_loading(s) && !snap_error(s)) {
        irq_line_set(&h->pit_legacy, legacy_mode(h));
        if (h->rtc_level && was_legacy != legacy_mode(h))
            set_line(h, HPET_LEGACY_TIMER1_IRQ, HPET_SOURCE_RTC, !legacy_mode(h));
        uint64_t now = vm_clock_now(h->clock);
        for (unsigned i = 0; i < HPET_NUM_TIMERS; i++)
            rearm(&h->timers[i], now);
        update_all_levels(h);
    }
    pthread_mutex_unlock(&h->lock);
    return snap_error(s);
}

static const struct device_ops hpet_device_ops = {
    .reset = hpet_reset,
    .pause = hpet_pause,
    .resume = hpet_resume,
    .state = hpet_state,
    .kind = "hpet",
    .state_version = 1,
    .destroy = hpet_destroy,
};

int hpet_init(struct hpet *h, const char *name, const struct vm_clock *clock, struct io_loop *loop,
              uint32_t route_cap, const struct irq_bank irq[HPET_SOURCE_COUNT],
              struct irq_line pit_legacy)
{
    memset(h, 0, sizeof(*h));
    h->dev.name = name;
    h->dev.ops = &hpet_device_ops;
    memcpy(h->irq, irq, sizeof(h->irq));
    h->pit_legacy = pit_legacy;
    h->route_cap = route_cap & 0x00ffffffu; /* the IOAPIC has 24 pins */
    h->clock = clock;
    for (unsigned i = 0; i < HPET_NUM_TIMERS; i++) {
        struct hpet_timer *t = &h->timers[i];
        t->hpet = h;
        t->index = i;
        t->asserted_gsi = -1;
        t->timer.fd = -1;
    }
    for (unsigned i = 0; i < HPET_NUM_TIMERS; i++) {
        if (vm_timer_init(&h->timers[i].timer, loop, timer_expired, &h->timers[i]) < 0) {
            for (unsigned j = 0; j < i; j++)
                vm_timer_destroy(&h->timers[j].timer);
            return -1;
        }
    }
    pthread_mutex_init(&h->lock, NULL);
    reset_locked(h);
    return 0;
}
