/* MC146818 RTC/CMOS model: encodings, clock, UIP, interrupts, NVRAM layout,
 * hostile port traffic. A fake monotonic clock makes time deterministic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/io_loop.h"
#include "devices/rtc.h"
#include "support/state.h"

#define NS_PER_SEC 1000000000ull

static uint64_t fake_now;

static uint64_t fake_source(void *opaque)
{
    return fake_now;
}

/* The machine's clock, on a fake source; real_clock on CLOCK_MONOTONIC. */
static struct vm_clock fake_clock = {.source = fake_source};
static struct vm_clock real_clock;

struct irq_probe {
    bool level;
    int raises;
    int calls;
};

static void probe_irq(void *opaque, bool level)
{
    struct irq_probe *p = opaque;
    if (level && !p->level)
        p->raises++;
    p->level = level;
    p->calls++;
}

static struct rtc rtc;
static struct irq_probe irq;

/* 2024-02-29 13:45:30 UTC, a Thursday. */
static int64_t sample_time(void)
{
    struct tm tm = {
        .tm_year = 124, .tm_mon = 1, .tm_mday = 29, .tm_hour = 13, .tm_min = 45, .tm_sec = 30};
    return (int64_t)timegm(&tm);
}

static int setup(void **state)
{
    memset(&irq, 0, sizeof(irq));
    vm_clock_init(&real_clock);
    fake_now = 1000 * NS_PER_SEC;
    assert_int_equal(rtc_init(&rtc, "rtc", &fake_clock, NULL, (struct irq_line){probe_irq, &irq}),
                     0);
    rtc_set_time(&rtc, sample_time()); /* phase 0 at fake_now */
    return 0;
}

static int teardown(void **state)
{
    rtc.dev.ops->destroy(&rtc.dev);
    return 0;
}

static uint8_t cmos_read(unsigned index)
{
    rtc_io_ops.write(&rtc, 0, 1, index);
    return (uint8_t)rtc_io_ops.read(&rtc, 1, 1);
}

static void cmos_write(unsigned index, uint8_t value)
{
    rtc_io_ops.write(&rtc, 0, 1, index);
    rtc_io_ops.write(&rtc, 1, 1, value);
}

static void run_update_tick(void)
{
    rtc.update_timer.fn(rtc.update_timer.opaque);
}

static void run_periodic_tick(void)
{
    rtc.periodic_timer.fn(rtc.periodic_timer.opaque);
}

static uint64_t armed_interval_ns(const struct vm_timer *t)
{
    struct itimerspec spec;
    assert_int_equal(timerfd_gettime(t->fd, &spec), 0);
    return (uint64_t)spec.it_interval.tv_sec * NS_PER_SEC + (uint64_t)spec.it_interval.tv_nsec;
}

static bool timer_armed(const struct vm_timer *t)
{
    struct itimerspec spec;
    assert_int_equal(timerfd_gettime(t->fd, &spec), 0);
    return spec.it_value.tv_sec || spec.it_value.tv_nsec;
}

static void test_power_on_registers(void **state)
{
    assert_int_equal(cmos_read(RTC_REG_A), 0x26);
    assert_int_equal(cmos_read(RTC_REG_B), RTC_B_24H);
    assert_int_equal(cmos_read(RTC_REG_C), 0);
    assert_int_equal(cmos_read(RTC_REG_D), RTC_D_VRT);
    assert_true(timer_armed(&rtc.update_timer));
    assert_false(timer_armed(&rtc.periodic_timer));
}

static void test_host_time_at_start(void **state)
{
    /* A fresh RTC on the real clock reads the host's UTC time. */
    struct rtc fresh;
    assert_int_equal(rtc_init(&fresh, "fresh", &real_clock, NULL, (struct irq_line){0}), 0);
    int64_t host = (int64_t)time(NULL);
    int64_t guest = rtc_get_time(&fresh);
    assert_true(guest >= host - 2 && guest <= host + 2);
    fresh.dev.ops->destroy(&fresh.dev);
}

static void test_bcd_24_hour(void **state)
{
    assert_int_equal(cmos_read(RTC_SECONDS), 0x30);
    assert_int_equal(cmos_read(RTC_MINUTES), 0x45);
    assert_int_equal(cmos_read(RTC_HOURS), 0x13);
    assert_int_equal(cmos_read(RTC_DAY_OF_WEEK), 5); /* Thursday; Sunday = 1 */
    assert_int_equal(cmos_read(RTC_DAY_OF_MONTH), 0x29);
    assert_int_equal(cmos_read(RTC_MONTH), 0x02);
    assert_int_equal(cmos_read(RTC_YEAR), 0x24);
    assert_int_equal(cmos_read(RTC_CENTURY), 0x20);
}

static void test_binary_12_hour(void **state)
{
    cmos_write(RTC_REG_B, RTC_B_DM_BINARY); /* binary, 12-hour */
    assert_int_equal(cmos_read(RTC_SECONDS), 30);
    assert_int_equal(cmos_read(RTC_MINUTES), 45);
    assert_int_equal(cmos_read(RTC_HOURS), 0x80 | 1); /* 1 PM */
    assert_int_equal(cmos_read(RTC_YEAR), 24);
    assert_int_equal(cmos_read(RTC_CENTURY), 20);
    rtc_set_time(&rtc, sample_time() - 13 * 3600 - 45 * 60); /* 00:00:30 */
    assert_int_equal(cmos_read(RTC_HOURS), 12);              /* 12 AM */
    rtc_set_time(&rtc, sample_time() - 1 * 3600 - 45 * 60);  /* 12:00:30 */
    assert_int_equal(cmos_read(RTC_HOURS), 0x80 | 12);       /* 12 PM */
    cmos_write(RTC_REG_B, 0);                                /* BCD, 12-hour */
    rtc_set_time(&rtc, sample_time() + 9 * 3600);            /* 22:45:30 */
    assert_int_equal(cmos_read(RTC_HOURS), 0x80 | 0x10);
}

static void test_time_advances_with_clock(void **state)
{
    fake_now += 61 * NS_PER_SEC;
    assert_int_equal(cmos_read(RTC_SECONDS), 0x31);
    assert_int_equal(cmos_read(RTC_MINUTES), 0x46);
    fake_now += 11 * 3600 * NS_PER_SEC; /* past midnight: 1 March */
    assert_int_equal(cmos_read(RTC_DAY_OF_MONTH), 0x01);
    assert_int_equal(cmos_read(RTC_MONTH), 0x03);
    assert_int_equal(cmos_read(RTC_DAY_OF_WEEK), 6);
}

static void test_calendar_matches_gmtime(void **state)
{
    cmos_write(RTC_REG_B, RTC_B_24H | RTC_B_DM_BINARY);
    srand(7);
    for (int i = 0; i < 2000; i++) {
        /* 1970 .. about 2200 */
        int64_t t = ((int64_t)rand() << 16 ^ rand()) % 7258118400ll;
        rtc_set_time(&rtc, t);
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        assert_int_equal(cmos_read(RTC_SECONDS), tm.tm_sec);
        assert_int_equal(cmos_read(RTC_MINUTES), tm.tm_min);
        assert_int_equal(cmos_read(RTC_HOURS), tm.tm_hour);
        assert_int_equal(cmos_read(RTC_DAY_OF_WEEK), tm.tm_wday + 1);
        assert_int_equal(cmos_read(RTC_DAY_OF_MONTH), tm.tm_mday);
        assert_int_equal(cmos_read(RTC_MONTH), tm.tm_mon + 1);
        assert_int_equal(cmos_read(RTC_YEAR), (tm.tm_year + 1900) % 100);
        assert_int_equal(cmos_read(RTC_CENTURY), (tm.tm_year + 1900) / 100);
        assert_int_equal(rtc_get_time(&rtc), t);
    }
}

static void test_guest_sets_time_with_set_bit(void **state)
{
    cmos_write(RTC_REG_B, RTC_B_24H | RTC_B_SET);
    /* 1999-12-31 23:59:58 */
    cmos_write(RTC_SECONDS, 0x58);
    cmos_write(RTC_MINUTES, 0x59);
    cmos_write(RTC_HOURS, 0x23);
    cmos_write(RTC_DAY_OF_MONTH, 0x31);
    cmos_write(RTC_MONTH, 0x12);
    cmos_write(RTC_YEAR, 0x99);
    cmos_write(RTC_CENTURY, 0x19);
    fake_now += 10 * NS_PER_SEC; /* frozen while SET */
    assert_int_equal(cmos_read(RTC_SECONDS), 0x58);
    assert_false(timer_armed(&rtc.update_timer));
    cmos_write(RTC_REG_B, RTC_B_24H);
    struct tm tm = {
        .tm_year = 99, .tm_mon = 11, .tm_mday = 31, .tm_hour = 23, .tm_min = 59, .tm_sec = 58};
    assert_int_equal(rtc_get_time(&rtc), (int64_t)timegm(&tm));
    fake_now += 3 * NS_PER_SEC; /* the new time runs: into 2000 */
    assert_int_equal(cmos_read(RTC_SECONDS), 0x01);
    assert_int_equal(cmos_read(RTC_YEAR), 0x00);
    assert_int_equal(cmos_read(RTC_CENTURY), 0x20);
    assert_int_equal(cmos_read(RTC_MONTH), 0x01);
}

static void test_write_while_running_moves_offset(void **state)
{
    cmos_write(RTC_MINUTES, 0x00); /* 13:00:30 */
    assert_int_equal(rtc_get_time(&rtc), sample_time() - 45 * 60);
    fake_now += 2 * NS_PER_SEC;
    assert_int_equal(cmos_read(RTC_SECONDS), 0x32);
    assert_int_equal(cmos_read(RTC_MINUTES), 0x00);
}

static void test_garbage_time_is_clamped(void **state)
{
    cmos_write(RTC_REG_B, RTC_B_24H | RTC_B_SET);
    for (unsigned index = 0; index <= RTC_YEAR; index++)
        cmos_write(index, 0xff);
    cmos_write(RTC_CENTURY, 0xff);
    cmos_write(RTC_REG_B, RTC_B_24H);
    /* Clamped to 9999-12-31 23:59:59: defined, and the clock runs. */
    int64_t t = rtc_get_time(&rtc);
    fake_now += NS_PER_SEC;
    assert_int_equal(rtc_get_time(&rtc), t + 1);
}

static void test_update_in_progress_window(void **state)
{
    uint64_t second_start = fake_now; /* set_time put phase 0 here */
    fake_now = second_start + NS_PER_SEC - 300000;
    assert_false(cmos_read(RTC_REG_A) & RTC_A_UIP);
    fake_now = second_start + NS_PER_SEC - 200000;
    assert_true(cmos_read(RTC_REG_A) & RTC_A_UIP);
    fake_now = second_start + NS_PER_SEC + 1000;
    assert_false(cmos_read(RTC_REG_A) & RTC_A_UIP);
    /* UIP is read-only, and never set while SET holds the clock. */
    cmos_write(RTC_REG_A, 0x26 | RTC_A_UIP);
    assert_int_equal(rtc_cmos_peek(&rtc, RTC_REG_A), 0x26);
    cmos_write(RTC_REG_B, RTC_B_24H | RTC_B_SET);
    fake_now = second_start + 2 * NS_PER_SEC - 100000;
    assert_false(cmos_read(RTC_REG_A) & RTC_A_UIP);
}

static void test_periodic_rates(void **state)
{
    static const struct {
        uint8_t rate;
        uint64_t period_ns;
    } rates[] = {
        {0, 0}, {1, 3906250}, {2, 7812500}, {3, 122070}, {6, 976562}, {7, 1953125}, {15, 500000000},
    };
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        cmos_write(RTC_REG_A, (uint8_t)(0x20 | rates[i].rate));
        cmos_write(RTC_REG_B, RTC_B_24H | RTC_B_PIE);
        assert_int_equal(rtc.periodic_ns, rates[i].period_ns);
        if (rates[i].period_ns) {
            assert_true(timer_armed(&rtc.periodic_timer));
            assert_int_equal(armed_interval_ns(&rtc.periodic_timer), rates[i].period_ns);
        } else {
            assert_false(timer_armed(&rtc.periodic_timer));
        }
        cmos_write(RTC_REG_B, RTC_B_24H); /* PIE off: no timer */
        assert_int_equal(rtc.periodic_ns, 0);
        assert_false(timer_armed(&rtc.periodic_timer));
    }
}

static void test_periodic_interrupt_and_reg_c(void **state)
{
    cmos_write(RTC_REG_A, 0x26);
    cmos_write(RTC_REG_B, RTC_B_24H | RTC_B_PIE);
    run_periodic_tick();
    assert_true(irq.level);
    assert_int_equal(irq.raises, 1);
    run_periodic_tick(); /* not acknowledged yet: no new edge */
    assert_int_equal(irq.raises, 1);
    assert_int_equal(cmos_read(RTC_REG_C), RTC_C_IRQF | RTC_C_PF);
    assert_false(irq.level); /* reading C lowers IRQ 8 */
    assert_int_equal(cmos_read(RTC_REG_C), 0);
    run_periodic_tick();
    assert_int_equal(irq.raises, 2);
}

static void test_update_ended_interrupt(void **state)
{
    fake_now += NS_PER_SEC;
    run_update_tick(); /* UIE off: flag only */
    assert_false(irq.level);
    assert_int_equal(cmos_read(RTC_REG_C), RTC_C_UF);
    cmos_write(RTC_REG_B, RTC_B_24H | RTC_B_UIE);
    fake_now += NS_PER_SEC;
    run_update_tick();
    assert_true(irq.level);
    assert_int_equal(cmos_read(RTC_REG_C), RTC_C_IRQF | RTC_C_UF);
    assert_false(irq.level);
    assert_true(timer_armed(&rtc.update_timer));
}

static void test_enabling_with_pending_flag_interrupts(void **state)
{
    fake_now += NS_PER_SEC;
    run_update_tick();
    assert_false(irq.level);
    cmos_write(RTC_REG_B, RTC_B_24H | RTC_B_UIE);
    assert_true(irq.level);
    cmos_write(RTC_REG_B, RTC_B_24H); /* disabling drops IRQF and the line */
    assert_false(irq.level);
}

static void test_set_clears_uie(void **state)
{
    cmos_write(RTC_REG_B, RTC_B_24H | RTC_B_UIE | RTC_B_SET);
    assert_int_equal(cmos_read(RTC_REG_B), RTC_B_24H | RTC_B_SET);
}

static void test_alarm(void **state)
{
    /* Alarm at 13:45:32 in BCD. */
    cmos_write(RTC_SECONDS_ALARM, 0x32);
    cmos_write(RTC_MINUTES_ALARM, 0x45);
    cmos_write(RTC_HOURS_ALARM, 0x13);
    cmos_write(RTC_REG_B, RTC_B_24H | RTC_B_AIE);
    fake_now += NS_PER_SEC;
    run_update_tick();
    assert_false(irq.level);
    assert_int_equal(cmos_read(RTC_REG_C), RTC_C_UF);
    fake_now += NS_PER_SEC;
    run_update_tick();
    assert_true(irq.level);
    assert_int_equal(cmos_read(RTC_REG_C), RTC_C_IRQF | RTC_C_AF | RTC_C_UF);

    /* Don't-care hours and minutes: fires whenever the seconds match. */
    cmos_write(RTC_HOURS_ALARM, 0xc0);
    cmos_write(RTC_MINUTES_ALARM, 0xff);
    cmos_write(RTC_SECONDS_ALARM, 0x33);
    fake_now += NS_PER_SEC; /* 13:45:33 */
    run_update_tick();
    assert_int_equal(cmos_read(RTC_REG_C), RTC_C_IRQF | RTC_C_AF | RTC_C_UF);
    fake_now += 60 * NS_PER_SEC; /* 13:46:33 */
    run_update_tick();
    assert_int_equal(cmos_read(RTC_REG_C), RTC_C_IRQF | RTC_C_AF | RTC_C_UF);
    fake_now += NS_PER_SEC;
    run_update_tick();
    assert_int_equal(cmos_read(RTC_REG_C), RTC_C_UF);
}

static void test_divider_reset_stops_and_restarts_late(void **state)
{
    cmos_write(RTC_REG_A, 0x70); /* divider in reset */
    fake_now += 5 * NS_PER_SEC;
    assert_int_equal(cmos_read(RTC_SECONDS), 0x30);
    assert_false(cmos_read(RTC_REG_A) & RTC_A_UIP);
    cmos_write(RTC_REG_A, 0x26);
    /* The first update comes half a second after the divider restarts. */
    fake_now += 400000000;
    assert_int_equal(cmos_read(RTC_SECONDS), 0x30);
    fake_now += 200000000;
    assert_int_equal(cmos_read(RTC_SECONDS), 0x31);
}

static void check_memory_layout(uint64_t lowmem, uint64_t highmem, unsigned cpus,
                                const uint8_t expected[][2], size_t count)
{
    rtc_set_memory_layout(&rtc, lowmem, highmem, cpus);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(cmos_read(expected[i][0]), expected[i][1]);
    unsigned sum = 0;
    for (unsigned i = 0x10; i <= 0x2d; i++)
        sum += cmos_read(i);
    assert_int_equal(cmos_read(0x2e), (sum >> 8) & 0xff);
    assert_int_equal(cmos_read(0x2f), sum & 0xff);
}

static void test_nvram_256_mib(void **state)
{
    static const uint8_t expected[][2] = {
        {0x15, 0x80}, {0x16, 0x02}, /* 640 KiB base memory */
        {0x17, 0xff}, {0x18, 0xff}, /* extended memory, capped at 65535 KiB */
        {0x30, 0xff}, {0x31, 0xff}, {0x34, 0x00}, {0x35, 0x0f}, /* 240 MiB / 64 KiB */
        {0x5b, 0x00}, {0x5c, 0x00}, {0x5d, 0x00}, {0x5f, 0x00}, {0x14, 0x06}, {0x3d, 0x12},
        {0x38, 0x30}, {0x0e, 0x00}, {0x0f, 0x00}, {0x10, 0x00}, {0x12, 0x00},
    };
    check_memory_layout(256ull << 20, 0, 1, expected, sizeof(expected) / sizeof(expected[0]));
}

static void test_nvram_5_gib(void **state)
{
    /* 5 GiB: 3 GiB below the PCI hole, 2 GiB above 4 GiB; 4 vCPUs. */
    static const uint8_t expected[][2] = {
        {0x15, 0x80}, {0x16, 0x02}, {0x17, 0xff},
        {0x18, 0xff}, {0x34, 0x00}, {0x35, 0xbf}, /* (3072 - 16) MiB / 64 KiB = 0xbf00 */
        {0x5b, 0x00}, {0x5c, 0x80}, {0x5d, 0x00}, /* 2 GiB / 64 KiB = 0x8000 */
        {0x5f, 0x03},
    };
    check_memory_layout(3ull << 30, 2ull << 30, 4, expected,
                        sizeof(expected) / sizeof(expected[0]));
}

static void test_nvram_small_and_huge(void **state)
{
    static const uint8_t small[][2] = {
        {0x15, 0x00}, {0x16, 0x02}, /* 512 KiB */
        {0x17, 0x00}, {0x18, 0x00}, {0x34, 0x00}, {0x35, 0x00},
    };
    check_memory_layout(512ull << 10, 0, 1, small, sizeof(small) / sizeof(small[0]));
    static const uint8_t huge[][2] = {{0x5b, 0xff}, {0x5c, 0xff}, {0x5d, 0xff}};
    check_memory_layout(3ull << 30, 2ull << 40, 255, huge, sizeof(huge) / sizeof(huge[0]));
}

static void test_nmi_mask_bit_and_word_access(void **state)
{
    rtc_io_ops.write(&rtc, 0, 1, 0x80 | 0x40);
    assert_true(rtc_nmi_masked(&rtc));
    rtc_io_ops.write(&rtc, 1, 1, 0x5a);
    assert_int_equal(rtc_cmos_peek(&rtc, 0x40), 0x5a);
    rtc_io_ops.write(&rtc, 0, 1, 0x40);
    assert_false(rtc_nmi_masked(&rtc));
    /* outw 0x70: index in the low byte, data in the high byte. */
    rtc_io_ops.write(&rtc, 0, 2, 0xa541);
    assert_int_equal(rtc_cmos_peek(&rtc, 0x41), 0xa5);
    assert_int_equal(rtc_io_ops.read(&rtc, 0, 2), 0xa5ff);
    assert_int_equal(rtc_io_ops.read(&rtc, 0, 1), 0xff); /* the index port is write-only */
}

static void test_reset(void **state)
{
    rtc_set_memory_layout(&rtc, 256ull << 20, 0, 2);
    cmos_write(0x0f, 0x05);
    cmos_write(RTC_REG_B, RTC_B_24H | RTC_B_PIE | RTC_B_AIE | RTC_B_UIE);
    run_periodic_tick();
    assert_true(irq.level);
    rtc.dev.ops->reset(&rtc.dev);
    assert_false(irq.level);
    assert_int_equal(cmos_read(RTC_REG_B), RTC_B_24H | RTC_B_UIE);
    assert_int_equal(cmos_read(RTC_REG_C), 0);
    assert_int_equal(cmos_read(0x0f), 0);
    assert_int_equal(cmos_read(0x5f), 1); /* NVRAM survives */
    assert_int_equal(rtc_get_time(&rtc), sample_time());
    cmos_write(0x0f, 0xfe); /* S3 resume marker survives a reset */
    rtc.dev.ops->reset(&rtc.dev);
    assert_int_equal(cmos_read(0x0f), 0xfe);
}

static void test_hostile_accesses(void **state)
{
    static const unsigned sizes[] = {1, 2, 4, 8};
    /* Every index with every value. */
    for (unsigned index = 0; index < 256; index++) {
        for (unsigned value = 0; value < 256; value++) {
            rtc_io_ops.write(&rtc, 0, 1, index);
            rtc_io_ops.write(&rtc, 1, 1, value);
            (void)rtc_io_ops.read(&rtc, 1, 1);
            if (rtc.periodic_ns)
                assert_true(rtc.periodic_ns >= 122070);
        }
        fake_now += 1234567;
    }
    /* Random sizes, offsets, values, interleaved with timer callbacks. */
    srand(42);
    for (int i = 0; i < 200000; i++) {
        unsigned size = sizes[rand() % 4];
        uint64_t offset = (uint64_t)(rand() % 4);
        uint64_t value = (uint64_t)rand() << 32 | (uint64_t)rand();
        if (rand() & 1)
            rtc_io_ops.write(&rtc, offset, size, value);
        else
            (void)rtc_io_ops.read(&rtc, offset, size);
        if (i % 97 == 0)
            run_update_tick();
        if (i % 89 == 0)
            run_periodic_tick();
        fake_now += (uint64_t)(rand() % 5000000);
        if (rtc.periodic_ns)
            assert_true(rtc.periodic_ns >= 122070);
        assert_int_equal(rtc_cmos_peek(&rtc, RTC_REG_A) & RTC_A_UIP, 0);
    }
    assert_int_equal(cmos_read(RTC_REG_D), RTC_D_VRT);
    /* Still a working clock afterwards. */
    cmos_write(RTC_REG_A, 0x26);
    cmos_write(RTC_REG_B, RTC_B_24H);
    rtc_set_time(&rtc, sample_time());
    assert_int_equal(cmos_read(RTC_HOURS), 0x13);
    (void)cmos_read(RTC_REG_C);
    assert_false(irq.level);
}

static uint64_t armed_value_ns(const struct vm_timer *t)
{
    struct itimerspec spec;
    assert_int_equal(timerfd_gettime(t->fd, &spec), 0);
    return (uint64_t)spec.it_value.tv_sec * NS_PER_SEC + (uint64_t)spec.it_value.tv_nsec;
}

/* The restored machine's clock: another host's monotonic time, which the
 * restore moves (vm_clock_set) to the saved machine's time. */
static uint64_t other_host_now;

static uint64_t other_host_source(void *opaque)
{
    return other_host_now;
}

static uint8_t port_read(struct rtc *r, unsigned index)
{
    rtc_io_ops.write(r, 0, 1, index);
    return (uint8_t)rtc_io_ops.read(r, 1, 1);
}

/* An RTC with a periodic interrupt running (2 Hz, one tick pending and
 * IRQ 8 up), update interrupts on, NVRAM written, the index latch and NMI
 * mask set. A fresh RTC on another host's clock, set to the saved time,
 * takes the state: the same time, registers and NVRAM, IRQ 8 up, and the
 * periodic timer due when the saved one was; its ticks interrupt again. */
static void test_state_roundtrip_and_refusals(void **state)
{
    const uint64_t period = 500000000; /* rate 15: slow enough to inspect the timerfd */
    cmos_write(0x40, 0xab);
    cmos_write(RTC_REG_A, 0x2f);
    cmos_write(RTC_REG_B, RTC_B_24H | RTC_B_PIE | RTC_B_UIE);
    fake_now += period;
    run_periodic_tick();
    assert_true(irq.level);
    fake_now += 300000000;                     /* part way to the next tick */
    rtc_io_ops.write(&rtc, 0, 1, 0x80 | 0x40); /* NMI masked, index 0x40 */
    uint64_t deadline = rtc.periodic_deadline_ns;
    assert_int_equal(deadline, 1000 * NS_PER_SEC + 2 * period);

    struct vm_clock other = {.source = other_host_source};
    other_host_now = 7 * NS_PER_SEC;
    struct irq_probe irq_b = {0};
    struct rtc b;
    assert_int_equal(rtc_init(&b, "rtc", &other, NULL, (struct irq_line){probe_irq, &irq_b}), 0);
    vm_clock_set(&other, vm_clock_now(&fake_clock));
    assert_state_roundtrip(&rtc.dev, &b.dev);
    assert_true(irq_b.level);
    assert_true(rtc_nmi_masked(&b));
    assert_int_equal(rtc_io_ops.read(&b, 1, 1), 0xab); /* the index latch survived */
    assert_int_equal(rtc_get_time(&b), rtc_get_time(&rtc));
    assert_int_equal(b.periodic_ns, period);
    assert_true(timer_armed(&b.periodic_timer));
    assert_int_equal(armed_interval_ns(&b.periodic_timer), period);
    uint64_t left = armed_value_ns(&b.periodic_timer);
    assert_true(left <= deadline - fake_now && left > (deadline - fake_now) / 2);
    assert_true(timer_armed(&b.update_timer));
    /* Time moves on both hosts alike; B's reading is A's. */
    fake_now += 3 * NS_PER_SEC;
    other_host_now += 3 * NS_PER_SEC;
    assert_int_equal(port_read(&b, RTC_SECONDS), port_read(&rtc, RTC_SECONDS));
    assert_int_equal(port_read(&b, RTC_REG_C), RTC_C_IRQF | RTC_C_PF);
    assert_false(irq_b.level);
    b.periodic_timer.fn(b.periodic_timer.opaque);
    assert_true(irq_b.level);
    assert_int_equal(irq_b.raises, 2);

    assert_state_refusals(&rtc.dev, &b.dev);
    const uint8_t bad_index = 0x80;
    const uint64_t bad_phase = NS_PER_SEC, no_deadline = 0;
    assert_state_field_refused(&rtc.dev, &b.dev, "index", &bad_index, 1);
    assert_state_field_refused(&rtc.dev, &b.dev, "base_phase_ns", &bad_phase, 8);
    assert_state_field_refused(&rtc.dev, &b.dev, "periodic_deadline_ns", &no_deadline, 8);
    b.dev.ops->destroy(&b.dev);
}

/* The restore's order: the target is paused, loads the state while its
 * clock still reads another host's time, then the clock is set to the
 * saved time and the target resumes. Nothing is armed before resume;
 * after it, the periodic tick is due when the saved one was. */
static void test_state_loads_into_paused_rtc(void **state)
{
    cmos_write(RTC_REG_A, 0x2f); /* 2 Hz */
    cmos_write(RTC_REG_B, RTC_B_24H | RTC_B_PIE);
    fake_now += 300000000;
    uint64_t left_on_a = rtc.periodic_deadline_ns - fake_now;
    struct vm_clock other = {.source = other_host_source};
    other_host_now = 3 * NS_PER_SEC;
    struct irq_probe irq_b = {0};
    struct rtc b;
    assert_int_equal(rtc_init(&b, "rtc", &other, NULL, (struct irq_line){probe_irq, &irq_b}), 0);
    assert_int_equal(b.dev.ops->pause(&b.dev), 0);
    struct snap_buf saved = {0};
    char err[512] = "";
    state_save(&rtc.dev, &saved);
    assert_int_equal(state_load(&b.dev, saved.data, saved.len, err, sizeof(err)), 0);
    snap_buf_free(&saved);
    assert_false(timer_armed(&b.periodic_timer));
    assert_false(timer_armed(&b.update_timer));
    vm_clock_set(&other, vm_clock_now(&fake_clock));
    b.dev.ops->resume(&b.dev);
    assert_true(timer_armed(&b.periodic_timer));
    assert_true(timer_armed(&b.update_timer));
    uint64_t left = armed_value_ns(&b.periodic_timer);
    assert_true(left <= left_on_a && left > left_on_a / 2);
    assert_int_equal(rtc_get_time(&b), rtc_get_time(&rtc));
    b.dev.ops->destroy(&b.dev);
}

/* Pause stops both timers and ticks already on their way; resume arms
 * them again, a periodic deadline that passed meanwhile at once. */
static void test_pause_and_resume(void **state)
{
    cmos_write(RTC_REG_B, RTC_B_24H | RTC_B_PIE);
    assert_int_equal(rtc.dev.ops->pause(&rtc.dev), 0);
    assert_false(timer_armed(&rtc.periodic_timer));
    assert_false(timer_armed(&rtc.update_timer));
    fake_now += NS_PER_SEC;
    run_periodic_tick();
    run_update_tick();
    assert_false(irq.level);
    assert_false(timer_armed(&rtc.periodic_timer));
    assert_int_equal(cmos_read(RTC_REG_C), 0);
    rtc.dev.ops->resume(&rtc.dev);
    assert_true(timer_armed(&rtc.periodic_timer));
    uint64_t expirations = 0;
    struct timespec ten_us = {0, 10000};
    nanosleep(&ten_us, NULL);
    assert_int_equal(read(rtc.periodic_timer.fd, &expirations, sizeof(expirations)),
                     sizeof(expirations)); /* due at once */
    assert_true(timer_armed(&rtc.update_timer));
    run_periodic_tick();
    assert_true(irq.level);
}

/* Real timerfds on an event loop with the host clock: periodic interrupts at
 * about 1024 Hz and an update-ended interrupt within a couple of seconds. */
static void test_real_timers_on_event_loop(void **state)
{
    struct io_loop loop;
    assert_int_equal(io_loop_init(&loop, "test"), 0);
    struct rtc live;
    struct irq_probe live_irq = {0};
    assert_int_equal(
        rtc_init(&live, "rtc-live", &real_clock, &loop, (struct irq_line){probe_irq, &live_irq}),
        0);
    rtc_io_ops.write(&live, 0, 1, RTC_REG_B);
    rtc_io_ops.write(&live, 1, 1, RTC_B_24H | RTC_B_PIE);
    uint64_t start = vm_clock_ns();
    while (live_irq.raises < 20 && vm_clock_ns() - start < 10 * NS_PER_SEC) {
        io_loop_poll(&loop, 100);
        rtc_io_ops.write(&live, 0, 1, RTC_REG_C); /* acknowledge, as a driver does */
        (void)rtc_io_ops.read(&live, 1, 1);
    }
    assert_true(live_irq.raises >= 20);

    rtc_io_ops.write(&live, 0, 1, RTC_REG_B);
    rtc_io_ops.write(&live, 1, 1, RTC_B_24H | RTC_B_UIE);
    rtc_io_ops.write(&live, 0, 1, RTC_REG_C);
    (void)rtc_io_ops.read(&live, 1, 1);
    uint8_t flags = 0;
    start = vm_clock_ns();
    while (!(flags & RTC_C_UF) && vm_clock_ns() - start < 5 * NS_PER_SEC) {
        io_loop_poll(&loop, 100);
        rtc_io_ops.write(&live, 0, 1, RTC_REG_C);
        flags |= (uint8_t)rtc_io_ops.read(&live, 1, 1);
    }
    assert_true(flags & RTC_C_UF);
    assert_true(flags & RTC_C_IRQF);
    live.dev.ops->destroy(&live.dev);
    io_loop_destroy(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_power_on_registers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_time_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bcd_24_hour, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_12_hour, setup, teardown),
        cmocka_unit_test_setup_teardown(test_time_advances_with_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_calendar_matches_gmtime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_sets_time_with_set_bit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_while_running_moves_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_time_is_clamped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_in_progress_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_periodic_rates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_periodic_interrupt_and_reg_c, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_ended_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enabling_with_pending_flag_interrupts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_set_clears_uie, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alarm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_divider_reset_stops_and_restarts_late, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nvram_256_mib, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nvram_5_gib, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nvram_small_and_huge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nmi_mask_bit_and_word_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_accesses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_roundtrip_and_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_loads_into_paused_rtc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_and_resume, setup, teardown),
        cmocka_unit_test(test_real_timers_on_event_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
