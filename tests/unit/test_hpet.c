/* HPET model: capabilities, counter at 100 MHz, one-shot and periodic
 * comparators (fired by invoking the timer callback), level/edge delivery,
 * legacy replacement routing, hostile MMIO. A fake clock drives time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/io_loop.h"
#include "devices/hpet.h"
#include "support/state.h"

#define NS_PER_SEC 1000000000ull
#define NOT_ARMED UINT64_MAX
#define IOAPIC_PINS 24

static uint64_t fake_now;

static uint64_t fake_source(void *opaque)
{
    return fake_now;
}

/* The machine's clock, on a fake source; real_clock on CLOCK_MONOTONIC. */
static struct vm_clock fake_clock = {.source = fake_source};
static struct vm_clock real_clock;

struct recorder {
    bool level[IOAPIC_PINS][HPET_SOURCE_COUNT];
    int raises[IOAPIC_PINS];
    int calls;
    bool bad_line;
    bool pit_legacy;
    int pit_calls;
};

/* One per HPET source: the bank it drives names the recorder and source. */
struct source_tap {
    struct recorder *rec;
    unsigned source;
};

static void record_irq(void *opaque, unsigned gsi, bool level)
{
    const struct source_tap *tap = opaque;
    struct recorder *r = tap->rec;
    unsigned source = tap->source;
    r->calls++;
    if (gsi >= IOAPIC_PINS || source >= HPET_SOURCE_COUNT) {
        r->bad_line = true;
        return;
    }
    if (level && !r->level[gsi][source])
        r->raises[gsi]++;
    r->level[gsi][source] = level;
}

static void record_pit(void *opaque, bool legacy)
{
    struct recorder *r = opaque;
    r->pit_legacy = legacy;
    r->pit_calls++;
}

static struct hpet hpet;
static struct recorder rec;
static struct source_tap taps[HPET_SOURCE_COUNT];

static int setup(void **state)
{
    memset(&rec, 0, sizeof(rec));
    fake_now = 5 * NS_PER_SEC;
    struct irq_bank irq[HPET_SOURCE_COUNT];
    for (unsigned i = 0; i < HPET_SOURCE_COUNT; i++) {
        taps[i] = (struct source_tap){&rec, i};
        irq[i] = (struct irq_bank){record_irq, &taps[i]};
    }
    vm_clock_init(&real_clock);
    assert_int_equal(hpet_init(&hpet, "hpet", &fake_clock, NULL, HPET_ROUTE_CAP_DEFAULT, irq,
                               (struct irq_line){record_pit, &rec}),
                     0);
    return 0;
}

static int teardown(void **state)
{
    hpet.dev.ops->destroy(&hpet.dev);
    return 0;
}

static uint32_t rd32(uint64_t offset)
{
    return (uint32_t)hpet_io_ops.read(&hpet, offset, 4);
}

static uint64_t rd64(uint64_t offset)
{
    return hpet_io_ops.read(&hpet, offset, 8);
}

static void wr32(uint64_t offset, uint32_t value)
{
    hpet_io_ops.write(&hpet, offset, 4, value);
}

static void wr64(uint64_t offset, uint64_t value)
{
    hpet_io_ops.write(&hpet, offset, 8, value);
}

static uint64_t timer_reg(unsigned n, unsigned reg)
{
    return HPET_REG_TIMER0 + n * HPET_TIMER_STRIDE + reg;
}

static void expire(unsigned n)
{
    hpet.timers[n].timer.fn(hpet.timers[n].timer.opaque);
}

static uint64_t route(unsigned pin)
{
    return (uint64_t)pin << HPET_TN_ROUTE_SHIFT;
}

static void enable_hpet(uint64_t extra)
{
    wr64(HPET_REG_CONFIG, HPET_CFG_ENABLE | extra);
}

static void test_capabilities(void **state)
{
    assert_int_equal(rd64(HPET_REG_CAPABILITIES), 0x009896808086a201ull);
    assert_int_equal(rd32(HPET_REG_CAPABILITIES), 0x8086a201);
    assert_int_equal(rd32(HPET_REG_CAPABILITIES + 4), 10000000); /* fs per tick */
    for (unsigned n = 0; n < HPET_NUM_TIMERS; n++) {
        assert_int_equal(rd64(timer_reg(n, HPET_TIMER_CONFIG)),
                         HPET_TN_PERIODIC_CAP | HPET_TN_SIZE_CAP |
                             ((uint64_t)HPET_ROUTE_CAP_DEFAULT << 32));
        assert_int_equal(rd64(timer_reg(n, HPET_TIMER_COMPARATOR)), ~0ull);
    }
    assert_int_equal(rd64(HPET_REG_CONFIG), 0);
    assert_int_equal(rd64(HPET_REG_INT_STATUS), 0);
    wr64(HPET_REG_CAPABILITIES, 0); /* read-only */
    assert_int_equal(rd32(HPET_REG_CAPABILITIES), 0x8086a201);
}

static void test_counter_runs_at_100_mhz(void **state)
{
    fake_now += NS_PER_SEC;
    assert_int_equal(rd64(HPET_REG_COUNTER), 0); /* halted */
    enable_hpet(0);
    fake_now += 1000000; /* 1 ms */
    assert_int_equal(rd64(HPET_REG_COUNTER), 100000);
    fake_now += 3 * NS_PER_SEC;
    assert_int_equal(rd32(HPET_REG_COUNTER), 300100000);
    assert_int_equal(rd32(HPET_REG_COUNTER + 4), 0);
    wr64(HPET_REG_COUNTER, 7); /* ignored while running */
    assert_int_equal(hpet_counter_value(&hpet), 300100000);
    wr64(HPET_REG_CONFIG, 0);
    fake_now += NS_PER_SEC;
    assert_int_equal(rd64(HPET_REG_COUNTER), 300100000); /* holds */
    wr32(HPET_REG_COUNTER + 4, 0x12);
    wr32(HPET_REG_COUNTER, 0xfffffff0);
    assert_int_equal(rd64(HPET_REG_COUNTER), 0x12fffffff0ull);
    enable_hpet(0);
    fake_now += 200; /* 20 ticks: carries into the high half */
    assert_int_equal(rd32(HPET_REG_COUNTER), 4);
    assert_int_equal(rd32(HPET_REG_COUNTER + 4), 0x13);
}

static void test_one_shot_edge(void **state)
{
    enable_hpet(0);
    wr64(timer_reg(2, HPET_TIMER_CONFIG), HPET_TN_INT_ENABLE | route(20));
    uint64_t counter = rd64(HPET_REG_COUNTER);
    wr64(timer_reg(2, HPET_TIMER_COMPARATOR), counter + 1000); /* 10 us */
    assert_int_equal(hpet.timers[2].deadline_ns, fake_now + 10000);
    fake_now += 5000;
    expire(2); /* an early wake-up: nothing yet */
    assert_int_equal(rec.raises[20], 0);
    fake_now += 5000;
    expire(2);
    assert_int_equal(rec.raises[20], 1);
    assert_false(rec.level[20][2]);                 /* a pulse */
    assert_int_equal(rd64(HPET_REG_INT_STATUS), 0); /* edge mode: no status */
    assert_int_equal(hpet.timers[2].deadline_ns, NOT_ARMED);
    fake_now += NS_PER_SEC;
    expire(2);
    assert_int_equal(rec.raises[20], 1); /* one-shot */
    assert_false(rec.bad_line);
}

static void test_comparator_in_the_past_fires_at_once(void **state)
{
    enable_hpet(0);
    fake_now += NS_PER_SEC;
    wr64(timer_reg(0, HPET_TIMER_CONFIG), HPET_TN_INT_ENABLE | route(20));
    wr64(timer_reg(0, HPET_TIMER_COMPARATOR), 5); /* long gone */
    assert_true(hpet.timers[0].deadline_ns <= fake_now + 10);
    fake_now += 10;
    expire(0);
    assert_int_equal(rec.raises[20], 1);
}

static void test_periodic_accumulator(void **state)
{
    enable_hpet(0);
    uint64_t start = rd64(HPET_REG_COUNTER);
    /* Linux's sequence: VAL_SET, first expiry, then the period. */
    wr64(timer_reg(1, HPET_TIMER_CONFIG),
         HPET_TN_INT_ENABLE | HPET_TN_PERIODIC | HPET_TN_VAL_SET | route(21));
    wr64(timer_reg(1, HPET_TIMER_COMPARATOR), start + 100000); /* 1 ms */
    wr64(timer_reg(1, HPET_TIMER_COMPARATOR), 100000);
    assert_int_equal(rd64(timer_reg(1, HPET_TIMER_COMPARATOR)), start + 100000);
    assert_false(rd64(timer_reg(1, HPET_TIMER_CONFIG)) & HPET_TN_VAL_SET);
    assert_int_equal(hpet.timers[1].period, 100000);

    fake_now += 1000000;
    expire(1);
    assert_int_equal(rec.raises[21], 1);
    assert_int_equal(rd64(timer_reg(1, HPET_TIMER_COMPARATOR)), start + 200000);
    assert_int_equal(hpet.timers[1].deadline_ns, fake_now + 1000000);

    /* The main thread was late by 2.5 periods: one interrupt, and the
     * comparator lands on the next period boundary ahead. */
    fake_now += 3500000;
    expire(1);
    assert_int_equal(rec.raises[21], 2);
    assert_int_equal(rd64(timer_reg(1, HPET_TIMER_COMPARATOR)), start + 500000);
    assert_int_equal(hpet.timers[1].deadline_ns, fake_now + 500000);
}

static void test_periodic_tiny_period_is_coalesced(void **state)
{
    enable_hpet(0);
    wr64(timer_reg(0, HPET_TIMER_CONFIG),
         HPET_TN_INT_ENABLE | HPET_TN_PERIODIC | HPET_TN_VAL_SET | route(22));
    wr64(timer_reg(0, HPET_TIMER_COMPARATOR), rd64(HPET_REG_COUNTER) + 1);
    wr64(timer_reg(0, HPET_TIMER_COMPARATOR), 1); /* every 10 ns */
    uint64_t start = fake_now;
    fake_now += 10;
    for (int i = 0; i < 1000; i++) {
        int before = rec.raises[22];
        expire(0);
        assert_int_equal(rec.raises[22], before + 1);
        uint64_t deadline = hpet.timers[0].deadline_ns;
        assert_true(deadline != NOT_ARMED);
        assert_true(deadline - fake_now >= HPET_MIN_PERIOD_NS);
        fake_now = deadline;
    }
    /* One interrupt per wake-up, wake-ups at least 100 us apart; the
     * comparator skipped the periods in between. */
    assert_true(fake_now - start >= 1000 * HPET_MIN_PERIOD_NS);
    assert_true(rd64(timer_reg(0, HPET_TIMER_COMPARATOR)) >= rd64(HPET_REG_COUNTER));
}

static void test_level_interrupt_and_status(void **state)
{
    enable_hpet(0);
    wr64(timer_reg(1, HPET_TIMER_CONFIG), HPET_TN_INT_ENABLE | HPET_TN_LEVEL | route(21));
    wr64(timer_reg(1, HPET_TIMER_COMPARATOR), rd64(HPET_REG_COUNTER) + 100);
    fake_now += 1000;
    expire(1);
    assert_true(rec.level[21][1]);
    assert_int_equal(rd64(HPET_REG_INT_STATUS), 0x2);
    wr64(HPET_REG_INT_STATUS, 0x1); /* another bit: no effect */
    assert_true(rec.level[21][1]);
    wr32(HPET_REG_INT_STATUS, 0x2); /* write 1 to clear */
    assert_false(rec.level[21][1]);
    assert_int_equal(rd64(HPET_REG_INT_STATUS), 0);

    /* Disabling the timer drops a pending level. */
    wr64(timer_reg(1, HPET_TIMER_COMPARATOR), rd64(HPET_REG_COUNTER) + 100);
    fake_now += 1000;
    expire(1);
    assert_true(rec.level[21][1]);
    wr64(timer_reg(1, HPET_TIMER_CONFIG), HPET_TN_LEVEL | route(21));
    assert_false(rec.level[21][1]);
    assert_int_equal(rd64(HPET_REG_INT_STATUS), 0);
}

static void test_legacy_replacement(void **state)
{
    hpet_rtc_irq_input(&hpet, true); /* the RTC's line passes through */
    assert_true(rec.level[8][HPET_SOURCE_RTC]);
    enable_hpet(HPET_CFG_LEGACY);
    assert_true(rec.pit_legacy);
    assert_int_equal(rec.pit_calls, 1);
    assert_false(rec.level[8][HPET_SOURCE_RTC]); /* disconnected */
    hpet_rtc_irq_input(&hpet, false);
    hpet_rtc_irq_input(&hpet, true);
    assert_false(rec.level[8][HPET_SOURCE_RTC]);

    /* Timers 0 and 1 ignore their route: IRQ 0 and IRQ 8. */
    for (unsigned n = 0; n < 2; n++) {
        wr64(timer_reg(n, HPET_TIMER_CONFIG), HPET_TN_INT_ENABLE | route(20));
        wr64(timer_reg(n, HPET_TIMER_COMPARATOR), rd64(HPET_REG_COUNTER) + 10);
    }
    wr64(timer_reg(2, HPET_TIMER_CONFIG), HPET_TN_INT_ENABLE | route(20));
    wr64(timer_reg(2, HPET_TIMER_COMPARATOR), rd64(HPET_REG_COUNTER) + 10);
    fake_now += 100;
    int rtc_raises = rec.raises[HPET_LEGACY_TIMER1_IRQ];
    expire(0);
    expire(1);
    expire(2);
    assert_int_equal(rec.raises[HPET_LEGACY_TIMER0_IRQ], 1);
    assert_int_equal(rec.raises[HPET_LEGACY_TIMER1_IRQ], rtc_raises + 1);
    assert_int_equal(rec.raises[20], 1); /* timer 2 keeps its route */

    wr64(HPET_REG_CONFIG, HPET_CFG_ENABLE);
    assert_false(rec.pit_legacy);
    assert_true(rec.level[8][HPET_SOURCE_RTC]); /* reconnected at its level */
    assert_false(rec.bad_line);
}

static void test_32bit_mode_and_wrap(void **state)
{
    wr64(HPET_REG_COUNTER, 0xffffff00ull); /* while halted */
    wr64(timer_reg(2, HPET_TIMER_CONFIG), HPET_TN_INT_ENABLE | HPET_TN_32BIT | route(22));
    wr64(timer_reg(2, HPET_TIMER_COMPARATOR), 0x1234567800000100ull);
    assert_int_equal(rd64(timer_reg(2, HPET_TIMER_COMPARATOR)), 0x100);
    wr32(timer_reg(2, HPET_TIMER_COMPARATOR) + 4, 0xffffffff); /* no high half */
    assert_int_equal(rd64(timer_reg(2, HPET_TIMER_COMPARATOR)), 0x100);
    enable_hpet(0);
    /* A 32-bit one-shot also interrupts when the counter wraps. */
    assert_true(hpet.timers[2].wrap_pending);
    assert_int_equal(hpet.timers[2].deadline_ns, fake_now + 0xff * 10);
    fake_now += 0xff * 10;
    expire(2);
    assert_int_equal(rec.raises[22], 1);
    assert_false(hpet.timers[2].wrap_pending);
    assert_int_equal(hpet.timers[2].deadline_ns, fake_now + 0x101 * 10);
    fake_now += 0x101 * 10;
    expire(2);
    assert_int_equal(rec.raises[22], 2);
    assert_int_equal(rd32(HPET_REG_COUNTER), 0x100);
    assert_int_equal(rd32(HPET_REG_COUNTER + 4), 1);
}

static void test_route_capability_and_fsb(void **state)
{
    wr64(timer_reg(0, HPET_TIMER_CONFIG), route(4)); /* pin 4 not offered */
    assert_int_equal(rd64(timer_reg(0, HPET_TIMER_CONFIG)) & HPET_TN_ROUTE_MASK, 0);
    wr64(timer_reg(0, HPET_TIMER_CONFIG), route(23));
    assert_int_equal(rd64(timer_reg(0, HPET_TIMER_CONFIG)) & HPET_TN_ROUTE_MASK, route(23));
    wr64(timer_reg(0, HPET_TIMER_CONFIG), route(23) | HPET_TN_FSB_ENABLE);
    assert_false(rd64(timer_reg(0, HPET_TIMER_CONFIG)) & HPET_TN_FSB_ENABLE);
    wr64(timer_reg(0, HPET_TIMER_CONFIG), ~0ull); /* capability bits are read-only */
    assert_int_equal(rd64(timer_reg(0, HPET_TIMER_CONFIG)) >> 32, HPET_ROUTE_CAP_DEFAULT);
    assert_true(rd64(timer_reg(0, HPET_TIMER_CONFIG)) & HPET_TN_PERIODIC_CAP);
    wr64(timer_reg(0, HPET_TIMER_FSB_ROUTE), 0xfee00000000000ffull);
    assert_int_equal(rd64(timer_reg(0, HPET_TIMER_FSB_ROUTE)), 0xfee00000000000ffull);
}

static void test_bad_access_sizes(void **state)
{
    wr64(HPET_REG_CONFIG, HPET_CFG_ENABLE);
    assert_int_equal(hpet_io_ops.read(&hpet, HPET_REG_CONFIG, 1), 0);
    assert_int_equal(hpet_io_ops.read(&hpet, HPET_REG_CONFIG, 2), 0);
    assert_int_equal(hpet_io_ops.read(&hpet, HPET_REG_CONFIG + 2, 4), 0);
    assert_int_equal(hpet_io_ops.read(&hpet, HPET_REG_CONFIG + 4, 8), 0);
    assert_int_equal(hpet_io_ops.read(&hpet, HPET_MMIO_SIZE, 4), 0);
    hpet_io_ops.write(&hpet, HPET_REG_CONFIG, 1, 0);
    hpet_io_ops.write(&hpet, HPET_REG_CONFIG, 2, 0);
    hpet_io_ops.write(&hpet, HPET_REG_CONFIG + 1, 4, 0);
    hpet_io_ops.write(&hpet, HPET_MMIO_SIZE - 4, 8, 0);
    assert_int_equal(rd64(HPET_REG_CONFIG), HPET_CFG_ENABLE);
    assert_int_equal(rd32(HPET_REG_CONFIG + 4), 0);
}

/* 64-bit registers in halves: a 4-byte write changes its half only and a
 * 4-byte read returns its half; a byte access, even to a comparator's top
 * byte, is refused; reserved slots (also the one inside a comparator's
 * block) read 0 and keep nothing. */
static void test_register_halves_and_reserved(void **state)
{
    uint64_t comparator = timer_reg(1, HPET_TIMER_COMPARATOR);
    wr64(comparator, 0x1122334455667788ull);
    assert_int_equal(rd32(comparator), 0x55667788);
    assert_int_equal(rd32(comparator + 4), 0x11223344);
    wr32(comparator + 4, 0xaabbccdd);
    assert_int_equal(rd64(comparator), 0xaabbccdd55667788ull);
    wr32(comparator, 0x01020304);
    assert_int_equal(rd64(comparator), 0xaabbccdd01020304ull);
    assert_int_equal(hpet_io_ops.read(&hpet, comparator + 7, 1), 0);
    hpet_io_ops.write(&hpet, comparator + 7, 1, 0xff);
    assert_int_equal(rd64(comparator), 0xaabbccdd01020304ull);

    /* The halted counter takes either half; the config's high half is empty. */
    wr32(HPET_REG_COUNTER + 4, 0x12345678);
    assert_int_equal(rd64(HPET_REG_COUNTER), 0x1234567800000000ull);
    wr32(HPET_REG_COUNTER, 0x9abcdef0);
    assert_int_equal(rd64(HPET_REG_COUNTER), 0x123456789abcdef0ull);
    wr32(HPET_REG_CONFIG + 4, 0xffffffff);
    assert_int_equal(rd64(HPET_REG_CONFIG), 0);
    /* A timer config's high half is the read-only routing capability. */
    wr32(timer_reg(1, HPET_TIMER_CONFIG) + 4, 0);
    assert_int_equal(rd32(timer_reg(1, HPET_TIMER_CONFIG) + 4), HPET_ROUTE_CAP_DEFAULT);

    uint64_t gap = timer_reg(0, HPET_TIMER_FSB_ROUTE) + 8;
    wr64(gap, ~0ull);
    wr32(gap + 4, ~0u);
    assert_int_equal(rd64(gap), 0);
    assert_int_equal(rd64(timer_reg(0, HPET_TIMER_FSB_ROUTE)), 0);
    assert_int_equal(rd64(timer_reg(1, HPET_TIMER_CONFIG)) & ~(uint64_t)UINT32_MAX,
                     (uint64_t)HPET_ROUTE_CAP_DEFAULT << 32);
    wr64(0x030, ~0ull);
    assert_int_equal(rd64(0x030), 0);
    assert_int_equal(rd64(HPET_REG_INT_STATUS), 0);
    assert_int_equal(rd64(HPET_REG_CONFIG), 0);
}

static void test_reset(void **state)
{
    hpet_rtc_irq_input(&hpet, true);
    enable_hpet(HPET_CFG_LEGACY);
    wr64(timer_reg(2, HPET_TIMER_CONFIG), HPET_TN_INT_ENABLE | HPET_TN_LEVEL | route(23));
    wr64(timer_reg(2, HPET_TIMER_COMPARATOR), rd64(HPET_REG_COUNTER) + 10);
    fake_now += 100;
    expire(2);
    assert_true(rec.level[23][2]);
    hpet.dev.ops->reset(&hpet.dev);
    assert_false(rec.level[23][2]);
    assert_false(rec.pit_legacy);
    assert_int_equal(rd64(HPET_REG_CONFIG), 0);
    assert_int_equal(rd64(HPET_REG_COUNTER), 0);
    assert_int_equal(rd64(HPET_REG_INT_STATUS), 0);
    assert_int_equal(rd64(timer_reg(2, HPET_TIMER_COMPARATOR)), ~0ull);
    assert_int_equal(hpet.timers[2].deadline_ns, NOT_ARMED);
    for (unsigned gsi = 0; gsi < IOAPIC_PINS; gsi++)
        for (unsigned s = 0; s < HPET_SOURCE_COUNT; s++)
            assert_false(rec.level[gsi][s]);
}

static void test_hostile_accesses(void **state)
{
    static const unsigned sizes[] = {1, 2, 4, 8};
    static const uint64_t patterns[] = {
        0, ~0ull, 0x5555555555555555ull, 0xaaaaaaaaaaaaaaaaull, 1, 0x8000000000000000ull};
    /* Every register offset, every size, fixed patterns. */
    for (uint64_t offset = 0; offset < HPET_MMIO_SIZE; offset++) {
        for (size_t s = 0; s < 4; s++) {
            for (size_t p = 0; p < sizeof(patterns) / sizeof(patterns[0]); p++) {
                hpet_io_ops.write(&hpet, offset, sizes[s], patterns[p]);
                (void)hpet_io_ops.read(&hpet, offset, sizes[s]);
            }
        }
        fake_now += 777;
    }
    /* Random traffic on the live registers, with expiries interleaved; each
     * expiry delivers at most one interrupt per timer. */
    srand(1234);
    for (int i = 0; i < 300000; i++) {
        uint64_t offset = (uint64_t)(rand() % 0x180);
        if (rand() % 4 == 0)
            offset = (uint64_t)(rand() % HPET_MMIO_SIZE);
        unsigned size = sizes[rand() % 4];
        uint64_t value = (uint64_t)rand() << 33 ^ (uint64_t)rand() << 2 ^ (uint64_t)rand();
        if (rand() & 1)
            hpet_io_ops.write(&hpet, offset, size, value);
        else
            (void)hpet_io_ops.read(&hpet, offset, size);
        if (i % 7 == 0) {
            unsigned n = (unsigned)rand() % HPET_NUM_TIMERS;
            int before = 0, after = 0;
            for (unsigned g = 0; g < IOAPIC_PINS; g++)
                before += rec.raises[g];
            expire(n);
            for (unsigned g = 0; g < IOAPIC_PINS; g++)
                after += rec.raises[g];
            assert_true(after - before <= 1);
            struct hpet_timer *t = &hpet.timers[n];
            if (t->deadline_ns != NOT_ARMED && (t->config & HPET_TN_PERIODIC) && after > before)
                assert_true(t->deadline_ns - fake_now >= HPET_MIN_PERIOD_NS);
        }
        if (i % 11 == 0)
            hpet_rtc_irq_input(&hpet, rand() & 1);
        fake_now += (uint64_t)(rand() % 20000);
    }
    assert_false(rec.bad_line);
    /* Lines only where the routing capability or legacy mode allows. */
    for (unsigned gsi = 0; gsi < IOAPIC_PINS; gsi++) {
        if (gsi != 0 && gsi != 8 && !(HPET_ROUTE_CAP_DEFAULT & (1u << gsi)))
            assert_int_equal(rec.raises[gsi], 0);
    }
    /* Still a working HPET. */
    hpet.dev.ops->reset(&hpet.dev);
    enable_hpet(0);
    fake_now += 1000000;
    assert_int_equal(rd64(HPET_REG_COUNTER), 100000);
}

static bool timer_armed(const struct vm_timer *t)
{
    struct itimerspec spec;
    assert_int_equal(timerfd_gettime(t->fd, &spec), 0);
    return spec.it_value.tv_sec || spec.it_value.tv_nsec;
}

/* The restored machine's clock: another host's monotonic time, which the
 * restore moves (vm_clock_set) to the saved machine's time. */
static uint64_t other_host_now;

static uint64_t other_host_source(void *opaque)
{
    return other_host_now;
}

/* An HPET in legacy replacement with a periodic comparator (IRQ 8, 1 s),
 * a 32-bit one-shot comparator pending (IRQ 0) and a level comparator
 * holding IOAPIC pin 20. A fresh HPET on another host's clock, set to the
 * saved time, takes the state: the same counter and registers, the PIT
 * disconnected and pin 20 held again, the comparators due when the saved
 * ones were and firing there. */
static void test_state_roundtrip_and_refusals(void **state)
{
    enable_hpet(HPET_CFG_LEGACY);
    uint64_t start = rd64(HPET_REG_COUNTER);
    wr64(timer_reg(1, HPET_TIMER_CONFIG),
         HPET_TN_INT_ENABLE | HPET_TN_PERIODIC | HPET_TN_VAL_SET | route(21));
    wr64(timer_reg(1, HPET_TIMER_COMPARATOR), start + 100000000);
    wr64(timer_reg(1, HPET_TIMER_COMPARATOR), 100000000);
    wr64(timer_reg(0, HPET_TIMER_CONFIG), HPET_TN_INT_ENABLE | HPET_TN_32BIT | route(22));
    wr32(timer_reg(0, HPET_TIMER_COMPARATOR), (uint32_t)start + 500000000);
    wr64(timer_reg(2, HPET_TIMER_CONFIG), HPET_TN_INT_ENABLE | HPET_TN_LEVEL | route(20));
    wr64(timer_reg(2, HPET_TIMER_COMPARATOR), start + 100);
    fake_now += 1000;
    expire(2);
    assert_true(rec.level[20][2]);
    fake_now += 300000000; /* 0.3 s in */

    struct vm_clock other = {.source = other_host_source};
    other_host_now = 99 * NS_PER_SEC;
    struct recorder rec_b = {0};
    struct source_tap taps_b[HPET_SOURCE_COUNT];
    struct irq_bank irq_b[HPET_SOURCE_COUNT];
    for (unsigned i = 0; i < HPET_SOURCE_COUNT; i++) {
        taps_b[i] = (struct source_tap){&rec_b, i};
        irq_b[i] = (struct irq_bank){record_irq, &taps_b[i]};
    }
    struct hpet b;
    assert_int_equal(hpet_init(&b, "hpet", &other, NULL, HPET_ROUTE_CAP_DEFAULT, irq_b,
                               (struct irq_line){record_pit, &rec_b}),
                     0);
    vm_clock_set(&other, vm_clock_now(&fake_clock));
    assert_state_roundtrip(&hpet.dev, &b.dev);
    assert_true(rec_b.pit_legacy);
    assert_true(rec_b.level[20][2]);
    assert_int_equal(hpet_counter_value(&b), hpet_counter_value(&hpet));
    assert_int_equal(hpet_io_ops.read(&b, HPET_REG_INT_STATUS, 8), 1u << 2);
    assert_int_equal(hpet_io_ops.read(&b, HPET_REG_CONFIG, 8), HPET_CFG_ENABLE | HPET_CFG_LEGACY);
    for (unsigned n = 0; n < HPET_NUM_TIMERS; n++) {
        assert_int_equal(b.timers[n].deadline_ns, hpet.timers[n].deadline_ns);
        assert_int_equal(hpet_io_ops.read(&b, timer_reg(n, HPET_TIMER_COMPARATOR), 8),
                         rd64(timer_reg(n, HPET_TIMER_COMPARATOR)));
    }
    assert_true(timer_armed(&b.timers[0].timer));
    assert_true(timer_armed(&b.timers[1].timer));
    assert_false(timer_armed(&b.timers[2].timer)); /* one-shot, fired */

    /* The periodic comparator fires on IRQ 8 at its deadline, then the
     * one-shot on IRQ 0. */
    other_host_now += hpet.timers[1].deadline_ns - fake_now;
    b.timers[1].timer.fn(b.timers[1].timer.opaque);
    assert_int_equal(rec_b.raises[HPET_LEGACY_TIMER1_IRQ], 1);
    assert_int_equal(hpet_io_ops.read(&b, timer_reg(1, HPET_TIMER_COMPARATOR), 8),
                     start + 200000000);
    other_host_now += 4000000000ull;
    b.timers[0].timer.fn(b.timers[0].timer.opaque);
    assert_int_equal(rec_b.raises[HPET_LEGACY_TIMER0_IRQ], 1);
    assert_false(rec_b.bad_line);

    assert_state_refusals(&hpet.dev, &b.dev);
    const uint64_t bad_config = 0x4, bad_status = 0x8, wide = 1ull << 32;
    const uint64_t fsb = rd64(timer_reg(2, HPET_TIMER_CONFIG)) | HPET_TN_FSB_ENABLE;
    const uint64_t bad_route = (rd64(timer_reg(2, HPET_TIMER_CONFIG)) & ~HPET_TN_ROUTE_MASK) |
                               route(5); /* not in the capability */
    assert_state_field_refused(&hpet.dev, &b.dev, "config", &bad_config, 8);
    assert_state_field_refused(&hpet.dev, &b.dev, "int_status", &bad_status, 8);
    assert_state_field_refused(&hpet.dev, &b.dev, "timer0.comparator", &wide, 8);
    assert_state_field_refused(&hpet.dev, &b.dev, "timer2.config", &fsb, 8);
    assert_state_field_refused(&hpet.dev, &b.dev, "timer2.config", &bad_route, 8);
    b.dev.ops->destroy(&b.dev);
}

/* The restore's order: the target is paused, loads the state while its
 * clock still reads another host's time, then the clock is set to the
 * saved time and the target resumes: the comparator is armed only then,
 * due when the saved one was, and the counter reads as the saved one. */
static void test_state_loads_into_paused_hpet(void **state)
{
    enable_hpet(0);
    wr64(timer_reg(2, HPET_TIMER_CONFIG), HPET_TN_INT_ENABLE | route(20));
    wr64(timer_reg(2, HPET_TIMER_COMPARATOR), rd64(HPET_REG_COUNTER) + 100000000); /* 1 s */
    fake_now += 400000000;
    struct vm_clock other = {.source = other_host_source};
    other_host_now = 3 * NS_PER_SEC;
    struct recorder rec_b = {0};
    struct source_tap taps_b[HPET_SOURCE_COUNT];
    struct irq_bank irq_b[HPET_SOURCE_COUNT];
    for (unsigned i = 0; i < HPET_SOURCE_COUNT; i++) {
        taps_b[i] = (struct source_tap){&rec_b, i};
        irq_b[i] = (struct irq_bank){record_irq, &taps_b[i]};
    }
    struct hpet b;
    assert_int_equal(hpet_init(&b, "hpet", &other, NULL, HPET_ROUTE_CAP_DEFAULT, irq_b,
                               (struct irq_line){record_pit, &rec_b}),
                     0);
    assert_int_equal(b.dev.ops->pause(&b.dev), 0);
    struct snap_buf saved = {0};
    char err[512] = "";
    state_save(&hpet.dev, &saved);
    assert_int_equal(state_load(&b.dev, saved.data, saved.len, err, sizeof(err)), 0);
    snap_buf_free(&saved);
    assert_false(timer_armed(&b.timers[2].timer));
    vm_clock_set(&other, vm_clock_now(&fake_clock));
    b.dev.ops->resume(&b.dev);
    assert_true(timer_armed(&b.timers[2].timer));
    struct itimerspec spec;
    assert_int_equal(timerfd_gettime(b.timers[2].timer.fd, &spec), 0);
    uint64_t left = (uint64_t)spec.it_value.tv_sec * NS_PER_SEC + (uint64_t)spec.it_value.tv_nsec;
    assert_true(left <= 600000000 && left > 300000000);
    assert_int_equal(hpet_counter_value(&b), hpet_counter_value(&hpet));
    other_host_now += 600000000;
    b.timers[2].timer.fn(b.timers[2].timer.opaque);
    assert_int_equal(rec_b.raises[20], 1);
    b.dev.ops->destroy(&b.dev);
}

/* Pause disarms every comparator's timer and ignores ticks already on
 * their way; resume arms them for their deadlines (at once if passed). */
static void test_pause_and_resume(void **state)
{
    enable_hpet(0);
    wr64(timer_reg(2, HPET_TIMER_CONFIG), HPET_TN_INT_ENABLE | route(20));
    wr64(timer_reg(2, HPET_TIMER_COMPARATOR), rd64(HPET_REG_COUNTER) + 100000000); /* 1 s */
    uint64_t deadline = hpet.timers[2].deadline_ns;
    assert_true(timer_armed(&hpet.timers[2].timer));
    assert_int_equal(hpet.dev.ops->pause(&hpet.dev), 0);
    assert_false(timer_armed(&hpet.timers[2].timer));
    fake_now += 2 * NS_PER_SEC;
    expire(2);
    assert_int_equal(rec.raises[20], 0);
    assert_int_equal(hpet.timers[2].deadline_ns, deadline);
    hpet.dev.ops->resume(&hpet.dev);
    uint64_t expirations = 0;
    struct timespec ten_us = {0, 10000};
    nanosleep(&ten_us, NULL);
    assert_int_equal(read(hpet.timers[2].timer.fd, &expirations, sizeof(expirations)),
                     sizeof(expirations)); /* due at once */
    expire(2);
    assert_int_equal(rec.raises[20], 1);
}

/* The real thing: timerfds on an event loop and the host clock, with another
 * thread hammering registers the way a vCPU would. Margins are generous. */
static _Atomic bool hammer_stop;

static void *hammer(void *opaque)
{
    struct hpet *h = opaque;
    while (!atomic_load(&hammer_stop)) {
        (void)hpet_io_ops.read(h, HPET_REG_COUNTER, 8);
        (void)hpet_io_ops.read(h, timer_reg(2, HPET_TIMER_COMPARATOR), 4);
        hpet_io_ops.write(h, HPET_REG_INT_STATUS, 4, 0);
    }
    return NULL;
}

static _Atomic int live_raises;

static void count_live_irq(void *opaque, unsigned gsi, bool level)
{
    if (level && gsi == 22)
        atomic_fetch_add(&live_raises, 1);
}

static void test_real_timers_on_event_loop(void **state)
{
    struct io_loop loop;
    assert_int_equal(io_loop_init(&loop, "test"), 0);
    struct hpet live;
    struct irq_bank live_irq[HPET_SOURCE_COUNT];
    for (unsigned i = 0; i < HPET_SOURCE_COUNT; i++)
        live_irq[i] = (struct irq_bank){count_live_irq, NULL};
    assert_int_equal(hpet_init(&live, "hpet-live", &real_clock, &loop, HPET_ROUTE_CAP_DEFAULT,
                               live_irq, (struct irq_line){0}),
                     0);
    atomic_store(&live_raises, 0);
    atomic_store(&hammer_stop, false);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, hammer, &live), 0);

    hpet_io_ops.write(&live, HPET_REG_CONFIG, 8, HPET_CFG_ENABLE);
    hpet_io_ops.write(&live, timer_reg(2, HPET_TIMER_CONFIG), 8,
                      HPET_TN_INT_ENABLE | HPET_TN_PERIODIC | HPET_TN_VAL_SET | route(22));
    uint64_t counter = hpet_io_ops.read(&live, HPET_REG_COUNTER, 8);
    hpet_io_ops.write(&live, timer_reg(2, HPET_TIMER_COMPARATOR), 8, counter + 100000);
    hpet_io_ops.write(&live, timer_reg(2, HPET_TIMER_COMPARATOR), 8, 100000); /* 1 ms */

    uint64_t start = vm_clock_ns();
    while (atomic_load(&live_raises) < 20 && vm_clock_ns() - start < 10 * NS_PER_SEC)
        io_loop_poll(&loop, 100);
    uint64_t elapsed = vm_clock_ns() - start;
    int raises = atomic_load(&live_raises);
    assert_true(raises >= 20);
    /* Never more than one interrupt per 100 us of wall time. */
    assert_true((uint64_t)raises <= elapsed / HPET_MIN_PERIOD_NS + 2);

    /* The counter follows the host clock at 100 MHz (within 20%). */
    uint64_t c0 = hpet_counter_value(&live), t0 = vm_clock_ns();
    while (vm_clock_ns() - t0 < 50000000)
        ;
    uint64_t ticks = hpet_counter_value(&live) - c0, ns = vm_clock_ns() - t0;
    assert_true(ticks * 10 >= ns * 8 / 10 && ticks * 10 <= ns * 12 / 10);

    atomic_store(&hammer_stop, true);
    pthread_join(thread, NULL);
    live.dev.ops->destroy(&live.dev);
    io_loop_destroy(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_capabilities, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counter_runs_at_100_mhz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_shot_edge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_comparator_in_the_past_fires_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_periodic_accumulator, setup, teardown),
        cmocka_unit_test_setup_teardown(test_periodic_tiny_period_is_coalesced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_interrupt_and_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_replacement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_32bit_mode_and_wrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_capability_and_fsb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_access_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_halves_and_reserved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_accesses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_roundtrip_and_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_loads_into_paused_hpet, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_and_resume, setup, teardown),
        cmocka_unit_test(test_real_timers_on_event_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
