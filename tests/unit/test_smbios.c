/* SMBIOS: the 3.0 entry point OVMF validates, the structure table's framing
 * (every structure double-NUL terminated, type 127 last), and the values
 * propolis reports for types 0, 1, 4, 16, 17, 19 and 32. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "firmware/smbios.h"

#define GIB (1024ull * 1024 * 1024)
#define MAX_STRUCTS 16

struct parsed {
    const uint8_t *s[MAX_STRUCTS]; /* formatted areas */
    size_t size[MAX_STRUCTS];      /* including strings */
    unsigned count;
};

/* Walks the table like OVMF's SmbiosTableLength(), with bounds checks. */
static void parse(const struct bytebuf *t, struct parsed *p)
{
    memset(p, 0, sizeof(*p));
    size_t off = 0;
    while (off < t->len) {
        assert_true(p->count < MAX_STRUCTS);
        assert_true(off + 4 <= t->len);
        const uint8_t *s = t->data + off;
        assert_true(s[1] >= 4 && off + s[1] + 2 <= t->len);
        size_t end = off + s[1];
        while (!(t->data[end] == 0 && t->data[end + 1] == 0)) {
            end++;
            assert_true(end + 1 < t->len);
        }
        p->s[p->count] = s;
        p->size[p->count] = end + 2 - off;
        p->count++;
        off = end + 2;
        if (s[0] == 127)
            break;
    }
    assert_int_equal(off, t->len); /* nothing after type 127 */
}

/* String n (1-based) of a structure, or NULL. */
static const char *string_of(const struct parsed *p, unsigned index, uint8_t n)
{
    if (n == 0)
        return NULL;
    const char *str = (const char *)p->s[index] + p->s[index][1];
    for (uint8_t i = 1; i < n; i++) {
        str += strlen(str) + 1;
        if (*str == '\0')
            return NULL;
    }
    return str;
}

static const uint8_t *find_type(const struct parsed *p, uint8_t type, unsigned *index)
{
    for (unsigned i = 0; i < p->count; i++)
        if (p->s[i][0] == type) {
            *index = i;
            return p->s[i];
        }
    fail_msg("no type %u structure", type);
    return NULL;
}

static void sample(struct platform_desc *d, unsigned cpus, uint64_t ram)
{
    uint64_t low = ram < 3 * GIB ? ram : 3 * GIB;
    platform_desc_defaults(d, cpus, low, ram - low);
    d->bootrom_size = 2 * 1024 * 1024;
    snprintf(d->bootrom_version, sizeof(d->bootrom_version), "v1.2.3-test");
    /* An AMD Zen 3 leaf 1 and brand string, as [cpuid.X] would give them. */
    const uint32_t leaf0[4] = {0x10, 0x68747541, 0x444d4163, 0x69746e65}; /* AuthenticAMD */
    const uint32_t leaf1[4] = {0x00a00f11, 0, 0, 0x178bfbff};
    uint32_t brand[3][4];
    const char text[49] = "AMD EPYC 7713P 64-Core Processor                ";
    for (int l = 0; l < 3; l++)
        for (int r = 0; r < 4; r++)
            memcpy(&brand[l][r], text + 16 * l + 4 * r, 4);
    platform_desc_set_cpuid(d, leaf0, leaf1, (const uint32_t(*)[4])brand);
}

static void test_anchor(void **state)
{
    struct platform_desc d;
    sample(&d, 4, 4 * GIB);
    struct bytebuf t, a;
    assert_int_equal(smbios_build(&d, &t, &a), 0);
    assert_int_equal(a.len, SMBIOS3_ANCHOR_SIZE);
    assert_memory_equal(a.data, "_SM3_", 5);
    assert_int_equal(a.data[6], SMBIOS3_ANCHOR_SIZE);
    assert_int_equal(a.data[7], 3);
    assert_int_equal(a.data[8], 0);
    assert_int_equal(a.data[10], 1);
    assert_int_equal(byte_sum(a.data, a.len), 0);
    /* OVMF requires the maximum size to equal the table file's size. */
    assert_int_equal(le32_load(a.data + 12), t.len);
    assert_int_equal(le64_load(a.data + 16), 0);
    bytebuf_free(&t);
    bytebuf_free(&a);
}

static void test_structure_framing(void **state)
{
    struct platform_desc d;
    sample(&d, 2, 6 * GIB);
    struct bytebuf t, a;
    assert_int_equal(smbios_build(&d, &t, &a), 0);
    struct parsed p;
    parse(&t, &p);
    static const uint8_t types[] = {0, 1, 4, 16, 17, 19, 19, 32, 127};
    assert_int_equal(p.count, sizeof(types));
    for (unsigned i = 0; i < p.count; i++) {
        assert_int_equal(p.s[i][0], types[i]);
        for (unsigned j = 0; j < i; j++) /* handles are unique */
            assert_int_not_equal(le16_load(p.s[i] + 2), le16_load(p.s[j] + 2));
        /* Strings, if any, are non-empty and at most 64 bytes (EDK2's limit). */
        for (uint8_t n = 1; string_of(&p, i, n); n++)
            assert_true(strlen(string_of(&p, i, n)) <= 64);
    }
    assert_int_equal(p.s[0][1], 0x18);
    assert_int_equal(p.s[1][1], 0x1b);
    assert_int_equal(p.s[2][1], 0x30);
    assert_int_equal(p.s[3][1], 0x17);
    assert_int_equal(p.s[4][1], 0x28);
    assert_int_equal(p.s[5][1], 0x1f);
    assert_int_equal(p.s[7][1], 0x0b);
    assert_int_equal(le16_load(p.s[8] + 2), SMBIOS_HANDLE_TYPE127);
    /* A structure without strings ends in two NULs right after it. */
    assert_int_equal(p.size[8], 6);
    bytebuf_free(&t);
    bytebuf_free(&a);
}

static void test_values(void **state)
{
    struct platform_desc d;
    sample(&d, 6, 4 * GIB);
    d.has_uuid = true;
    for (int i = 0; i < 16; i++)
        d.uuid[i] = (uint8_t)i;
    struct bytebuf t, a;
    assert_int_equal(smbios_build(&d, &t, &a), 0);
    struct parsed p;
    parse(&t, &p);
    unsigned i;

    const uint8_t *s0 = find_type(&p, 0, &i);
    assert_string_equal(string_of(&p, i, s0[4]), "Oxide");
    assert_string_equal(string_of(&p, i, s0[5]), "v1.2.3-test");
    assert_string_equal(string_of(&p, i, s0[8]), "Bureaucracy 41, 3186 YOLD");
    assert_int_equal(s0[9], 31); /* 2 MiB = 32 x 64 KiB */
    assert_int_equal(le64_load(s0 + 0x0a), 1u << 3);
    assert_int_equal(s0[0x12], 0x01);
    assert_int_equal(s0[0x13], 0x18); /* UEFI, virtual machine */

    const uint8_t *s1 = find_type(&p, 1, &i);
    assert_string_equal(string_of(&p, i, s1[4]), "Oxide");
    assert_string_equal(string_of(&p, i, s1[5]), "OxVM");
    static const uint8_t uuid[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
    assert_memory_equal(s1 + 8, uuid, 16);
    assert_int_equal(s1[0x18], 6);

    const uint8_t *s4 = find_type(&p, 4, &i);
    assert_int_equal(s4[5], 3);
    assert_int_equal(s4[6], 0x6b); /* Zen: AMD family 0x19 */
    assert_string_equal(string_of(&p, i, s4[7]), "Advanced Micro Devices, Inc.");
    assert_int_equal(le64_load(s4 + 8), 0x178bfbff00a00f11ull);
    assert_string_equal(string_of(&p, i, s4[0x10]), "AMD EPYC 7713P 64-Core Processor");
    assert_int_equal(s4[0x18], 0x41);
    assert_int_equal(s4[0x23], 6);
    assert_int_equal(s4[0x24], 6);
    assert_int_equal(s4[0x25], 6);
    assert_int_equal(le16_load(s4 + 0x26), 0x0c);
    assert_int_equal(le16_load(s4 + 0x28), 0x6b);
    assert_int_equal(le16_load(s4 + 0x2a), 6);

    const uint8_t *s16 = find_type(&p, 16, &i);
    assert_int_equal(le32_load(s16 + 7), 4 * 1024 * 1024); /* KiB */
    assert_int_equal(le16_load(s16 + 0x0d), 1);
    const uint8_t *s17 = find_type(&p, 17, &i);
    assert_int_equal(le16_load(s17 + 4), le16_load(s16 + 2));
    assert_int_equal(le16_load(s17 + 0x0c), 4096); /* MiB */
    const uint8_t *s19 = find_type(&p, 19, &i);
    assert_int_equal(le32_load(s19 + 4), 0);
    assert_int_equal(le32_load(s19 + 8), 3 * 1024 * 1024 - 1);
    assert_int_equal(le16_load(s19 + 0x0c), le16_load(s16 + 2));
    const uint8_t *s19b = p.s[i + 1];
    assert_int_equal(s19b[0], 19);
    assert_int_equal(le32_load(s19b + 4), 4 * 1024 * 1024);
    assert_int_equal(le32_load(s19b + 8), 5 * 1024 * 1024 - 1);
    const uint8_t *s32 = find_type(&p, 32, &i);
    assert_int_equal(s32[0x0a], 0);
    bytebuf_free(&t);
    bytebuf_free(&a);
}

static void test_intel_and_unknown_cpus(void **state)
{
    struct platform_desc d;
    sample(&d, 1, GIB);
    const uint32_t intel[4] = {0x16, 0x756e6547, 0x6c65746e, 0x49656e69}; /* GenuineIntel */
    const uint32_t leaf1[4] = {0x000606a6, 0, 0, 0xbfebfbff};
    platform_desc_set_cpuid(&d, intel, leaf1, NULL);
    struct bytebuf t, a;
    assert_int_equal(smbios_build(&d, &t, &a), 0);
    struct parsed p;
    parse(&t, &p);
    unsigned i;
    const uint8_t *s4 = find_type(&p, 4, &i);
    assert_int_equal(s4[6], 0x02);
    assert_string_equal(string_of(&p, i, s4[7]), "Intel");
    assert_int_equal(s4[0x10], 0);                /* no brand string: no version string */
    assert_int_equal(le16_load(s4 + 0x26), 0x04); /* one core: not multi-core */
    bytebuf_free(&t);
    bytebuf_free(&a);

    const uint32_t other[4] = {0xd, 0x20202020, 0x20202020, 0x20202020};
    platform_desc_set_cpuid(&d, other, leaf1, NULL);
    assert_int_equal(smbios_build(&d, &t, &a), 0);
    parse(&t, &p);
    s4 = find_type(&p, 4, &i);
    assert_int_equal(s4[7], 0);
    bytebuf_free(&t);
    bytebuf_free(&a);
}

static void test_large_memory(void **state)
{
    /* 3 TiB: type 16 and 17 use their extended fields. */
    struct platform_desc d;
    sample(&d, 255, 3072 * GIB);
    struct bytebuf t, a;
    assert_int_equal(smbios_build(&d, &t, &a), 0);
    struct parsed p;
    parse(&t, &p);
    unsigned i;
    const uint8_t *s16 = find_type(&p, 16, &i);
    assert_int_equal(le32_load(s16 + 7), 0x80000000u);
    assert_int_equal(le64_load(s16 + 0x0f), 3072 * GIB);
    const uint8_t *s17 = find_type(&p, 17, &i);
    assert_int_equal(le16_load(s17 + 0x0c), 0x7fff);
    assert_int_equal(le32_load(s17 + 0x1c), 3072 * 1024);
    const uint8_t *s4 = find_type(&p, 4, &i);
    assert_int_equal(s4[0x23], 255);
    bytebuf_free(&t);
    bytebuf_free(&a);

    /* Above 4 TiB of address space, type 19 moves to its extended fields. */
    sample(&d, 1, 8192 * GIB);
    assert_int_equal(smbios_build(&d, &t, &a), 0);
    parse(&t, &p);
    const uint8_t *s19 = p.s[6];
    assert_int_equal(s19[0], 19);
    assert_int_equal(le32_load(s19 + 4), 0xffffffffu);
    assert_int_equal(le64_load(s19 + 0x0f), 4 * GIB);
    assert_int_equal(le64_load(s19 + 0x17), 4 * GIB + (8192 - 3) * GIB - 1);
    bytebuf_free(&t);
    bytebuf_free(&a);
}

static void test_strings_are_bounded(void **state)
{
    struct platform_desc d;
    sample(&d, 1, GIB);
    memset(d.bootrom_version, 'v', sizeof(d.bootrom_version) - 1);
    d.bootrom_version[sizeof(d.bootrom_version) - 1] = '\0';
    d.bootrom_size = 64ull << 20; /* more than 16 MiB: ROM size saturates */
    struct bytebuf t, a;
    assert_int_equal(smbios_build(&d, &t, &a), 0);
    struct parsed p;
    parse(&t, &p);
    unsigned i;
    const uint8_t *s0 = find_type(&p, 0, &i);
    assert_int_equal(strlen(string_of(&p, i, s0[5])), 64);
    assert_int_equal(s0[9], 0xff);
    bytebuf_free(&t);
    bytebuf_free(&a);

    /* An empty version string is "no string", not an empty one. */
    d.bootrom_version[0] = '\0';
    d.bootrom_size = 0;
    assert_int_equal(smbios_build(&d, &t, &a), 0);
    parse(&t, &p);
    s0 = find_type(&p, 0, &i);
    assert_int_equal(s0[5], 0);
    assert_int_equal(s0[9], 0);
    bytebuf_free(&t);
    bytebuf_free(&a);

    d.cpus = 0;
    assert_int_equal(smbios_build(&d, &t, &a), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anchor),       cmocka_unit_test(test_structure_framing),
        cmocka_unit_test(test_values),       cmocka_unit_test(test_intel_and_unknown_cpus),
        cmocka_unit_test(test_large_memory), cmocka_unit_test(test_strings_are_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
