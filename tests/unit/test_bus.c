/* Port/MMIO bus dispatch and the checked guest-memory path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/bus.h"
#include "core/guest_mem.h"

struct recorder {
    uint64_t last_offset, last_value;
    unsigned last_size, reads, writes;
};

static uint64_t rec_read(void *opaque, uint64_t offset, unsigned size)
{
    struct recorder *r = opaque;
    r->reads++;
    r->last_offset = offset;
    r->last_size = size;
    return 0x1122334455667788ull;
}

static void rec_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct recorder *r = opaque;
    r->writes++;
    r->last_offset = offset;
    r->last_size = size;
    r->last_value = value;
}

static const struct io_ops rec_ops = {rec_read, rec_write};

static void test_dispatch_and_offsets(void **state)
{
    struct bus bus;
    struct recorder a = {0}, b = {0};
    bus_init(&bus, "pio");
    assert_true(bus_register(&bus, 0x3f8, 8, &rec_ops, &a, "a"));
    assert_true(bus_register(&bus, 0x2f8, 8, &rec_ops, &b, "b"));
    bus_write(&bus, 0x3fb, 1, 0x1ff);
    assert_int_equal(a.writes, 1);
    assert_int_equal(a.last_offset, 3);
    assert_int_equal(a.last_value, 0xff); /* truncated to the access size */
    assert_int_equal(bus_read(&bus, 0x2f8, 2), 0x7788);
    assert_int_equal(b.reads, 1);
    bus_destroy(&bus);
}

static void test_unclaimed_reads_all_ones(void **state)
{
    struct bus bus;
    bus_init(&bus, "mmio");
    assert_int_equal(bus_read(&bus, 0x1234, 1), 0xff);
    assert_int_equal(bus_read(&bus, 0x1234, 2), 0xffff);
    assert_int_equal(bus_read(&bus, 0x1234, 4), 0xffffffffull);
    assert_int_equal(bus_read(&bus, 0x1234, 8), ~0ull);
    bus_write(&bus, 0x1234, 4, 5); /* logged, ignored */
    bus_destroy(&bus);
}

static void test_overlap_rejected_and_straddle_unclaimed(void **state)
{
    struct bus bus;
    struct recorder a = {0};
    bus_init(&bus, "pio");
    assert_true(bus_register(&bus, 0x100, 0x10, &rec_ops, &a, "a"));
    assert_false(bus_register(&bus, 0x10f, 2, &rec_ops, &a, "b"));
    assert_false(bus_register(&bus, 0xf0, 0x11, &rec_ops, &a, "c"));
    assert_false(bus_register(&bus, 0x0, 0, &rec_ops, &a, "empty"));
    assert_false(bus_register(&bus, ~0ull, 2, &rec_ops, &a, "wraps"));
    /* An access running past the end of a range is not the device's. */
    assert_int_equal(bus_read(&bus, 0x10e, 4), 0xffffffffull);
    assert_int_equal(a.reads, 0);
    assert_true(bus_unregister(&bus, 0x100, &a));
    assert_true(bus_register(&bus, 0x108, 0x10, &rec_ops, &a, "moved"));
    bus_destroy(&bus);
}

static void test_many_ranges_sorted(void **state)
{
    struct bus bus;
    struct recorder r[40];
    memset(r, 0, sizeof(r));
    bus_init(&bus, "pio");
    for (int i = 39; i >= 0; i--)
        assert_true(bus_register(&bus, (uint64_t)i * 0x10, 8, &rec_ops, &r[i], "r"));
    for (int i = 0; i < 40; i++) {
        bus_read(&bus, (uint64_t)i * 0x10 + 7, 1);
        assert_int_equal(r[i].reads, 1);
        assert_int_equal(bus_read(&bus, (uint64_t)i * 0x10 + 8, 1), 0xff);
    }
    bus_destroy(&bus);
}

static void test_guest_mem_bounds(void **state)
{
    static uint8_t low[4096], high[4096], rom[4096];
    struct guest_mem mem = {0};
    assert_true(guest_mem_add(&mem, 0, sizeof(low), low, false));
    assert_true(guest_mem_add(&mem, 1ull << 32, sizeof(high), high, false));
    assert_true(guest_mem_add(&mem, (1ull << 32) - 4096, sizeof(rom), rom, true));
    assert_false(guest_mem_add(&mem, 100, 10, low, false)); /* overlap */

    uint8_t buf[16] = {1, 2, 3};
    assert_true(guest_mem_write(&mem, 4096 - 16, buf, 16));
    assert_false(guest_mem_write(&mem, 4096 - 15, buf, 16));         /* runs past RAM */
    assert_false(guest_mem_read(&mem, 4096, buf, 1));                /* hole */
    assert_false(guest_mem_write(&mem, (1ull << 32) - 16, buf, 16)); /* ROM is read-only */
    assert_true(guest_mem_read(&mem, (1ull << 32) - 16, buf, 16));
    assert_null(guest_mem_ptr(&mem, ~0ull - 3, 8, false)); /* wraps */
    assert_null(guest_mem_ptr(&mem, 0, ~0ull, false));
    assert_null(guest_mem_ptr(&mem, 0, 0, false));
    assert_ptr_equal(guest_mem_ptr(&mem, (1ull << 32) + 10, 1, true), high + 10);
}

static void test_le_helpers(void **state)
{
    uint8_t d[8];
    le_store(d, 4, 0xa1b2c3d4);
    assert_int_equal(d[0], 0xd4);
    assert_int_equal(d[3], 0xa1);
    assert_int_equal(le_load(d, 4), 0xa1b2c3d4);
    assert_int_equal(le_load(d, 2), 0xc3d4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_and_offsets),
        cmocka_unit_test(test_unclaimed_reads_all_ones),
        cmocka_unit_test(test_overlap_rejected_and_straddle_unclaimed),
        cmocka_unit_test(test_many_ranges_sorted),
        cmocka_unit_test(test_guest_mem_bounds),
        cmocka_unit_test(test_le_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
