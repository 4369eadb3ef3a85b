/* The state codec: fields round-trip, strict loading refuses what does not
 * match, versions gate fields, errors name the device and field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/bytes.h"
#include "common/snap.h"

struct sample {
    uint8_t a;
    uint16_t b;
    uint32_t c;
    uint64_t d;
    int32_t e;
    int64_t f;
    bool g;
    uint8_t raw[5];
    uint8_t var[16];
    size_t var_len;
    uint32_t words[3];
    uint16_t halves[2];
    uint64_t quads[2];
    uint32_t added_in_v2;
    uint32_t queue_size[2];
};

static int sample_state(void *opaque, struct snap *s)
{
    struct sample *x = opaque;
    snap_u8(s, "a", &x->a);
    snap_u16(s, "b", &x->b);
    snap_u32(s, "c", &x->c);
    snap_u64(s, "d", &x->d);
    snap_i32(s, "e", &x->e);
    snap_i64(s, "f", &x->f);
    snap_bool(s, "g", &x->g);
    snap_bytes(s, "raw", x->raw, sizeof(x->raw));
    snap_var_bytes(s, "var", x->var, &x->var_len, sizeof(x->var));
    snap_u32_array(s, "words", x->words, ARRAY_LEN(x->words));
    snap_u16_array(s, "halves", x->halves, ARRAY_LEN(x->halves));
    snap_u64_array(s, "quads", x->quads, ARRAY_LEN(x->quads));
    if (snap_version(s) >= 2)
        snap_u32(s, "added_in_v2", &x->added_in_v2);
    for (unsigned i = 0; i < 2; i++) {
        snap_enter(s, "q%u", i);
        snap_u32(s, "size", &x->queue_size[i]);
        snap_check(s, x->queue_size[i] <= 256, "size", "over 256");
        snap_leave(s);
    }
    return snap_error(s);
}

static const struct sample filled = {
    .a = 0xa1,
    .b = 0xb2b3,
    .c = 0xc4c5c6c7,
    .d = 0xd8d9dadbdcdddedfull,
    .e = -5,
    .f = -6,
    .g = true,
    .raw = {1, 2, 3, 4, 5},
    .var = {9, 8, 7},
    .var_len = 3,
    .words = {10, 11, 12},
    .halves = {13, 14},
    .quads = {15, 16},
    .added_in_v2 = 17,
    .queue_size = {128, 256},
};

static void save(struct snap_buf *b, const struct sample *x, uint32_t version)
{
    char err[512];
    struct sample copy = *x;
    assert_int_equal(
        snap_save_record(b, "dev.x", "sample", version, sample_state, &copy, err, sizeof(err)), 0);
}

static int load(const struct snap_buf *b, struct sample *x, uint32_t version, char *err,
                size_t err_size)
{
    struct snap_record rec;
    size_t pos = 0;
    if (snap_next_record(b->data, b->len, &pos, &rec, err, err_size) != 1)
        return -1;
    return snap_load_record(&rec, "sample", version, sample_state, x, err, err_size);
}

static void test_round_trip_is_little_endian_and_exact(void **state)
{
    struct snap_buf b = {0};
    save(&b, &filled, 2);
    struct sample out = {0};
    char err[512] = "";
    assert_int_equal(load(&b, &out, 2, err, sizeof(err)), 0);
    assert_memory_equal(&out, &filled, sizeof(out));
    /* The u16 field "b" is stored little-endian after its name and length. */
    static const uint8_t field_b[] = {1, 'b', 2, 0, 0, 0, 0xb3, 0xb2};
    assert_non_null(memmem(b.data, b.len, field_b, sizeof(field_b)));
    snap_buf_free(&b);
}

static void test_older_version_loads_without_newer_fields(void **state)
{
    struct snap_buf b = {0};
    save(&b, &filled, 1);
    struct sample out = {0};
    char err[512] = "";
    assert_int_equal(load(&b, &out, 2, err, sizeof(err)), 0);
    assert_int_equal(out.added_in_v2, 0);
    assert_int_equal(out.queue_size[1], 256);
    snap_buf_free(&b);
}

static void test_newer_version_refused(void **state)
{
    struct snap_buf b = {0};
    save(&b, &filled, 3);
    struct sample out = {0};
    char err[512] = "";
    assert_int_equal(load(&b, &out, 2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "dev.x"));
    assert_non_null(strstr(err, "version 3"));
    assert_int_equal(out.a, 0); /* nothing loaded */
    snap_buf_free(&b);
}

static void test_every_truncation_refused(void **state)
{
    struct snap_buf b = {0};
    save(&b, &filled, 2);
    for (size_t cut = 1; cut < b.len; cut++) { /* 0: no record at all */
        struct snap_buf part = {.data = b.data, .len = cut};
        struct sample out = {0};
        char err[512] = "";
        assert_int_equal(load(&part, &out, 2, err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
    }
    snap_buf_free(&b);
}

static void test_checked_value_refused_with_prefixed_name(void **state)
{
    struct sample big = filled;
    big.queue_size[1] = 4096;
    struct snap_buf b = {0};
    save(&b, &big, 2); /* saving does not check */
    struct sample out = {0};
    char err[512] = "";
    assert_int_equal(load(&b, &out, 2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "'q1.size'"));
    assert_non_null(strstr(err, "over 256"));
    snap_buf_free(&b);
}

static void test_var_bytes_over_capacity_refused(void **state)
{
    /* A hand-made record whose "var" claims 17 bytes. */
    struct sample x = filled;
    x.var_len = 17;
    uint8_t big[17] = {0};
    struct snap_buf b = {0};
    struct snap s = {
        .mode = SNAP_SAVE, .device = "dev.x", .kind = "sample", .version = 2, .out = &b};
    snap_var_bytes(&s, "var", big, &x.var_len, sizeof(big));
    assert_int_equal(snap_error(&s), 0);
    struct snap in = {.mode = SNAP_LOAD,
                      .device = "dev.x",
                      .kind = "sample",
                      .version = 2,
                      .in = b.data,
                      .in_len = b.len};
    size_t len = 0;
    snap_var_bytes(&in, "var", x.var, &len, sizeof(x.var));
    assert_int_equal(snap_error(&in), -1);
    assert_non_null(strstr(in.error, "at most 16"));
    snap_buf_free(&b);
}

static void test_bool_other_than_0_or_1_refused(void **state)
{
    struct snap_buf b = {0};
    save(&b, &filled, 2);
    static const uint8_t field_g[] = {1, 'g', 1, 0, 0, 0, 1};
    uint8_t *at = memmem(b.data, b.len, field_g, sizeof(field_g));
    assert_non_null(at);
    at[sizeof(field_g) - 1] = 2;
    struct sample out = {0};
    char err[512] = "";
    assert_int_equal(load(&b, &out, 2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "'g'"));
    snap_buf_free(&b);
}

static void test_records_in_sequence(void **state)
{
    struct snap_buf b = {0};
    save(&b, &filled, 2);
    save(&b, &filled, 1);
    size_t pos = 0;
    struct snap_record rec;
    char err[256];
    assert_int_equal(snap_next_record(b.data, b.len, &pos, &rec, err, sizeof(err)), 1);
    assert_int_equal(rec.version, 2);
    assert_string_equal(rec.name, "dev.x");
    assert_string_equal(rec.kind, "sample");
    assert_int_equal(snap_next_record(b.data, b.len, &pos, &rec, err, sizeof(err)), 1);
    assert_int_equal(rec.version, 1);
    assert_int_equal(snap_next_record(b.data, b.len, &pos, &rec, err, sizeof(err)), 0);
    snap_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_is_little_endian_and_exact),
        cmocka_unit_test(test_older_version_loads_without_newer_fields),
        cmocka_unit_test(test_newer_version_refused),
        cmocka_unit_test(test_every_truncation_refused),
        cmocka_unit_test(test_checked_value_refused_with_prefixed_name),
        cmocka_unit_test(test_var_bytes_over_capacity_refused),
        cmocka_unit_test(test_bool_other_than_0_or_1_refused),
        cmocka_unit_test(test_records_in_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
