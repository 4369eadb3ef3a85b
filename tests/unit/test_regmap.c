/* Register maps: sub-register reads and masked writes, accesses spanning
 * registers and gaps, each register read once, bad maps detected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/bytes.h"
#include "common/regmap.h"

enum { REG_A, REG_B, REG_C, REG_Q, REG_COUNT };

static const struct reg_def defs[] = {
    {0x00, 2, REG_A}, /* 0x02-0x03: gap */
    {0x04, 4, REG_B},
    {0x08, 1, REG_C},
    {0x10, 8, REG_Q},
};
static const struct regmap map = {defs, ARRAY_LEN(defs)};

static uint64_t regs[REG_COUNT];
static unsigned reads[REG_COUNT], writes[REG_COUNT];
static uint64_t last_mask[REG_COUNT];

static uint64_t reg_read(void *opaque, uint32_t id)
{
    reads[id]++;
    return regs[id];
}

static void reg_write(void *opaque, uint32_t id, uint64_t value, uint64_t mask)
{
    writes[id]++;
    last_mask[id] = mask;
    regs[id] = reg_merge(regs[id], value, mask);
}

static int setup(void **state)
{
    regs[REG_A] = 0xa1a0;
    regs[REG_B] = 0xb3b2b1b0;
    regs[REG_C] = 0xc0;
    regs[REG_Q] = 0x1716151413121110ull;
    memset(reads, 0, sizeof(reads));
    memset(writes, 0, sizeof(writes));
    return 0;
}

static uint64_t rd(uint64_t offset, unsigned size, bool *whole)
{
    uint64_t v;
    *whole = regmap_read(&map, offset, size, reg_read, NULL, &v);
    return v;
}

static void test_reads(void **state)
{
    bool whole;
    assert_int_equal(rd(0x04, 4, &whole), 0xb3b2b1b0);
    assert_true(whole);
    assert_int_equal(rd(0x05, 2, &whole), 0xb2b1);
    assert_true(whole);
    /* The upper dword of a qword register, and one byte of it. */
    assert_int_equal(rd(0x14, 4, &whole), 0x17161514);
    assert_int_equal(rd(0x17, 1, &whole), 0x17);
    /* Spanning A, the gap and B: the gap reads zero and is reported. */
    assert_int_equal(rd(0x00, 8, &whole), 0xb3b2b1b00000a1a0ull);
    assert_false(whole);
    assert_int_equal(reads[REG_A], 1);
    /* Outside every register. */
    assert_int_equal(rd(0x20, 4, &whole), 0);
    assert_false(whole);
    assert_int_equal(rd(0x04, 0, &whole), 0);
    assert_false(whole);
    assert_int_equal(rd(0x04, 9, &whole), 0);
    assert_false(whole);
}

static void test_masked_writes(void **state)
{
    assert_true(regmap_write(&map, 0x15, 2, 0xeeff, reg_write, NULL));
    assert_int_equal(writes[REG_Q], 1);
    assert_int_equal(last_mask[REG_Q], 0x00ffff0000000000ull);
    assert_int_equal(regs[REG_Q], 0x17eeff1413121110ull);
    /* One 8-byte write over B and C and a gap: each register once. */
    assert_false(regmap_write(&map, 0x04, 8, 0x99887766554433ull, reg_write, NULL));
    assert_int_equal(writes[REG_B], 1);
    assert_int_equal(writes[REG_C], 1);
    assert_int_equal(regs[REG_B], 0x66554433);
    assert_int_equal(regs[REG_C], 0x77);
    assert_int_equal(last_mask[REG_C], 0xff);
    /* Nothing written outside. */
    assert_false(regmap_write(&map, 0x30, 4, 1, reg_write, NULL));
    assert_int_equal(writes[REG_A], 0);
}

static void test_bad_maps(void **state)
{
    assert_true(regmap_valid(&map));
    static const struct reg_def overlapping[] = {{0, 4, 0}, {2, 2, 1}};
    static const struct reg_def odd_size[] = {{0, 3, 0}};
    assert_false(regmap_valid(&(struct regmap){overlapping, 2}));
    assert_false(regmap_valid(&(struct regmap){odd_size, 1}));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reads, setup, NULL),
        cmocka_unit_test_setup_teardown(test_masked_writes, setup, NULL),
        cmocka_unit_test(test_bad_maps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
