/* The VM's CPUID table (core/cpuid.h): the host path from a fake
 * KVM_GET_SUPPORTED_CPUID, profiles parsed from TOML, the vendors' rules
 * for absent leaves, refusals of what the host cannot give, and the
 * per-vCPU specialisation for several VM shapes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/bytes.h"
#include "config/config.h"
#include "core/cpuid.h"

enum { EAX, EBX, ECX, EDX };

/* A small AMD host like this project's machines (values from one). */
static const struct kvm_cpuid_entry2 fake_entries[] = {
#define E(f, i, fl, a, b, c, d)                                                                    \
    {                                                                                              \
        .function = f, .index = i, .flags = fl, .eax = a, .ebx = b, .ecx = c, .edx = d             \
    }
#define IDX KVM_CPUID_FLAG_SIGNIFCANT_INDEX
    E(0x0, 0, 0, 0x10, 0x68747541, 0x444d4163, 0x69746e65),
    E(0x1, 0, 0, 0x00a10f11, 0x00020800, 0x80202001, 0x078bfbff),
    E(0x4, 0, IDX, 0x121, 0x01c0003f, 0x3f, 0),
    E(0x4, 1, IDX, 0x143, 0x01c0003f, 0x7ff, 0),
    E(0x4, 2, IDX, 0x163, 0x03c0003f, 0x7fff, 0),
    E(0x4, 3, IDX, 0, 0, 0, 0),
    E(0x6, 0, 0, 0x4, 0, 0, 0),
    E(0x7, 0, IDX, 1, 0x01800002, 0x104, 0x20000000),
    E(0x7, 1, IDX, 0, 0, 0, 0),
    E(0xb, 0, IDX, 0, 0, 0, 0),
    E(0xd, 0, IDX, 0xe7, 0x980, 0x980, 0),
    E(0xd, 1, IDX, 0xf, 0, 0, 0),
    E(0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d),
    E(0x40000001, 0, 0, 0x01007efb, 0, 0, 0),
    E(0x80000000, 0, 0, 0x8000001e, 0x68747541, 0x444d4163, 0x69746e65),
    E(0x80000001, 0, 0, 0x00a10f11, 0x40000000, 0x00400393, 0x23d3fbff),
    E(0x80000002, 0, 0, 0x656b6146, 0x55504320, 0, 0), /* "Fake CPU" */
    E(0x80000003, 0, 0, 0, 0, 0, 0),
    E(0x80000004, 0, 0, 0, 0, 0, 0),
    E(0x80000008, 0, 0, 0x3030, 0x50020005, 0x7001, 0),
    E(0x8000001d, 0, IDX, 0x121, 0x01c0003f, 0x3f, 0),
    E(0x8000001d, 1, IDX, 0x143, 0x01c0003f, 0x7ff, 2),
    E(0x8000001d, 2, IDX, 0x163, 0x03c0003f, 0x7fff, 1),
    E(0x8000001d, 3, IDX, 0, 0, 0, 0),
    E(0x8000001e, 0, 0, 0, 0x100, 0, 0),
#undef E
};

static struct kvm_cpuid2 *fake_supported(void)
{
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + sizeof(fake_entries));
    assert_non_null(c);
    c->nent = ARRAY_LEN(fake_entries);
    memcpy(c->entries, fake_entries, sizeof(fake_entries));
    return c;
}

struct fixture {
    struct kvm_cpuid2 *supported;
    struct cpuid_host host;
    struct cpuid_table table, vcpu;
    struct cpuid_error err;
    struct config cfg;
    bool cfg_loaded;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->supported = fake_supported();
    f->host = (struct cpuid_host){.supported = f->supported, .tsc_deadline = true};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->cfg_loaded)
        config_free(&f->cfg);
    free(f->supported);
    free(f);
    return 0;
}

/* Six lines of [main] naming profile "p", then the profile from line 7. */
#define MAIN                                                                                       \
    "[main]\nname = \"vm\"\ncpus = 1\nbootrom = \"/x\"\nmemory = 16\ncpuid_profile = \"p\"\n"

static const struct config_cpuid_profile *load_profile(struct fixture *f, const char *body)
{
    char text[4096];
    snprintf(text, sizeof(text), MAIN "%s", body);
    if (f->cfg_loaded)
        config_free(&f->cfg);
    int rc = config_parse("t.toml", text, strlen(text), &f->cfg);
    if (rc != 0)
        print_error("config error: %s\n", f->cfg.error);
    assert_int_equal(rc, 0);
    f->cfg_loaded = true;
    const struct config_cpuid_profile *p = config_cpuid_profile(&f->cfg);
    assert_non_null(p);
    return p;
}

static int build_profile(struct fixture *f, const char *body)
{
    int rc = cpuid_table_build(&f->table, &f->host, load_profile(f, body), &f->err);
    if (rc != 0)
        print_message("refused: %u %s: %s\n", f->err.pos.line, f->err.key, f->err.msg);
    return rc;
}

static void expect_regs(const struct cpuid_table *t, uint32_t leaf, uint32_t sub, uint32_t a,
                        uint32_t b, uint32_t c, uint32_t d)
{
    uint32_t r[4];
    cpuid_lookup(t, leaf, sub, r);
    if (r[0] != a || r[1] != b || r[2] != c || r[3] != d)
        print_error("leaf 0x%x.%u: got %08x %08x %08x %08x want %08x %08x %08x %08x\n", leaf, sub,
                    r[0], r[1], r[2], r[3], a, b, c, d);
    assert_true(r[0] == a && r[1] == b && r[2] == c && r[3] == d);
}

static uint32_t reg(const struct cpuid_table *t, uint32_t leaf, uint32_t sub, int which)
{
    uint32_t r[4];
    cpuid_lookup(t, leaf, sub, r);
    return r[which];
}

static void expect_refusal(struct fixture *f, const char *body, unsigned line, const char *key,
                           const char *msg)
{
    int rc = build_profile(f, body);
    if (rc == 0 || strcmp(f->err.msg, msg) != 0 || strcmp(f->err.key, key) != 0 ||
        f->err.pos.line != line)
        print_error("for profile:\n%s\ngot %u %s: %s\n", body, f->err.pos.line, f->err.key,
                    f->err.msg);
    assert_int_equal(rc, -1);
    assert_string_equal(f->err.key, key);
    assert_string_equal(f->err.msg, msg);
    assert_int_equal(f->err.pos.line, line);
}

/* An Intel profile, leaf 1's features within the fake host's. */
#define INTEL_PROFILE                                                                              \
    "[cpuid.p]\n"                                                                                  \
    "vendor = \"intel\"\n"                                                                         \
    "\"0\" = [0xd, 0x756e6547, 0x6c65746e, 0x49656e69]\n"                                          \
    "\"1\" = [0x000506e3, 0x00000800, 0x80202001, 0x078bfbff]\n"                                   \
    "\"4-0\" = [0x121, 0x01c0003f, 0x3f, 0]\n"                                                     \
    "\"4-1\" = [0x143, 0x01c0003f, 0x3ff, 0]\n"                                                    \
    "\"4-2\" = [0x163, 0x02c0003f, 0x1fff, 6]\n"                                                   \
    "\"4-3\" = [0, 0, 0, 0]\n"                                                                     \
    "\"7-0\" = [0, 0x2, 0, 0]\n"                                                                   \
    "\"b\" = [0, 0, 0, 0]\n"                                                                       \
    "\"d\" = [0x7, 0x2222, 0, 0]\n"                                                                \
    "\"80000000\" = [0x80000008, 0, 0, 0]\n"                                                       \
    "\"80000001\" = [0, 0, 0x1, 0x20100800]\n"                                                     \
    "\"80000002\" = [0x65746e49, 0x2952286c, 0x6f655820, 0x2952286e]\n"                            \
    "\"80000003\" = [0x55504320, 0, 0, 0]\n"                                                       \
    "\"80000004\" = [0, 0, 0, 0]\n"                                                                \
    "\"80000008\" = [0x3027, 0, 0, 0]\n"

/* ---- the host path ---- */

static void test_host_table(void **state)
{
    struct fixture *f = *state;
    f->host.tsc_deadline = false;
    assert_int_equal(cpuid_table_build(&f->table, &f->host, NULL, &f->err), 0);
    assert_false(f->table.from_profile);
    assert_int_equal(f->table.vendor, CPUID_VENDOR_AMD);
    char vendor[13];
    cpuid_vendor_string(&f->table, vendor);
    assert_string_equal(vendor, "AuthenticAMD");
    /* Every supported leaf as KVM gives it; leaf 1 gains nothing without the cap. */
    assert_int_equal(f->table.count, ARRAY_LEN(fake_entries));
    expect_regs(&f->table, 1, 0, 0x00a10f11, 0x00020800, 0x80202001, 0x078bfbff);
    expect_regs(&f->table, 7, 0, 1, 0x01800002, 0x104, 0x20000000);
    expect_regs(&f->table, 0x8000001d, 2, 0x163, 0x03c0003f, 0x7fff, 1);
    expect_regs(&f->table, 0x40000000, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d);
    expect_regs(&f->table, 0x40000001, 0, 0x01007efb, 0, 0, 0);

    /* With KVM_CAP_TSC_DEADLINE_TIMER the bit appears. */
    f->host.tsc_deadline = true;
    assert_int_equal(cpuid_table_build(&f->table, &f->host, NULL, &f->err), 0);
    assert_int_equal(reg(&f->table, 1, 0, ECX), 0x80202001u | 1u << 24);

    /* Old KVMs give 0x40000000 EAX = 0: the maximum is the last leaf there. */
    f->supported->entries[12].eax = 0;
    assert_int_equal(cpuid_table_build(&f->table, &f->host, NULL, &f->err), 0);
    expect_regs(&f->table, 0x40000000, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d);

    /* A host list without the hypervisor bit or KVM's leaves still gets both. */
    f->supported->entries[1].ecx = 0x00202001;
    f->supported->nent = 12; /* up to 0xd.1: no 0x4000000x */
    assert_int_equal(cpuid_table_build(&f->table, &f->host, NULL, &f->err), 0);
    assert_true(reg(&f->table, 1, 0, ECX) & 1u << 31);
    expect_regs(&f->table, 0x40000000, 0, 0x40000000, 0x4b4d564b, 0x564b4d56, 0x4d);

    /* The brand string: KVM's where it gives one, the host CPU's where its
     * leaves are absent or zero (as QEMU's -cpu host shows it). */
    f->supported->nent = ARRAY_LEN(fake_entries);
    f->host.has_brand = true;
    for (unsigned i = 0; i < 3; i++)
        for (unsigned r = 0; r < 4; r++)
            f->host.brand[i][r] = 0x10000000u * (i + 1) + r;
    assert_int_equal(cpuid_table_build(&f->table, &f->host, NULL, &f->err), 0);
    expect_regs(&f->table, 0x80000002, 0, 0x656b6146, 0x55504320, 0, 0);
    expect_regs(&f->table, 0x80000003, 0, 0x20000000, 0x20000001, 0x20000002, 0x20000003);
    expect_regs(&f->table, 0x80000004, 0, 0x30000000, 0x30000001, 0x30000002, 0x30000003);
    for (unsigned i = 0; i < f->supported->nent; i++)
        if (f->supported->entries[i].function == 0x80000002)
            f->supported->entries[i].eax = f->supported->entries[i].ebx = 0;
    assert_int_equal(cpuid_table_build(&f->table, &f->host, NULL, &f->err), 0);
    expect_regs(&f->table, 0x80000002, 0, 0x10000000, 0x10000001, 0x10000002, 0x10000003);
}

static void test_host_specialised(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(cpuid_table_build(&f->table, &f->host, NULL, &f->err), 0);
    assert_int_equal(cpuid_specialize(&f->table, 4, 3, &f->vcpu), 0);
    const struct cpuid_table *v = &f->vcpu;
    /* Leaf 1: APIC id 3, 4 logical processors, HTT, hypervisor; rest as given. */
    expect_regs(v, 1, 0, 0x00a10f11, 0x03040800, 0x81202001, 0x078bfbff | 1u << 28);
    /* 0xB: SMT level (1 thread), core level (shift 2, 4 vCPUs), end; x2APIC id 3. */
    expect_regs(v, 0xb, 0, 0, 1, 0x100, 3);
    expect_regs(v, 0xb, 1, 2, 4, 0x201, 3);
    expect_regs(v, 0xb, 2, 0, 0, 2, 3);
    /* Leaf 4: L1/L2 per core, L3 shared by the 4; 4 cores. */
    assert_int_equal(reg(v, 4, 0, EAX), 0x121u | 3u << 26);
    assert_int_equal(reg(v, 4, 1, EAX), 0x143u | 3u << 26);
    assert_int_equal(reg(v, 4, 2, EAX), 0x163u | 3u << 14 | 3u << 26);
    assert_int_equal(reg(v, 4, 3, EAX), 0);
    /* AMD: 0x8000001D sharing, 0x8000001E ids, 0x80000008 core count. */
    assert_int_equal(reg(v, 0x8000001d, 0, EAX), 0x121);
    assert_int_equal(reg(v, 0x8000001d, 2, EAX), 0x163u | 3u << 14);
    expect_regs(v, 0x8000001e, 0, 3, 3, 0, 0);
    assert_int_equal(reg(v, 0x80000008, 0, ECX), 2u << 12 | 3); /* the host's size replaced */
    /* Not touched: KVM's leaves, the brand. */
    expect_regs(v, 0x40000001, 0, 0x01007efb, 0, 0, 0);
    expect_regs(v, 0x80000002, 0, 0x656b6146, 0x55504320, 0, 0);

    /* vCPU 0 of the same VM. */
    assert_int_equal(cpuid_specialize(&f->table, 4, 0, &f->vcpu), 0);
    assert_int_equal(reg(v, 1, 0, EBX) >> 24, 0);
    assert_int_equal(reg(v, 0xb, 1, EDX), 0);
    assert_int_equal(reg(v, 0x8000001e, 0, EAX), 0);
    /* The VM's table is unchanged by specialising. */
    assert_int_equal(reg(&f->table, 1, 0, EBX), 0x00020800);
    assert_int_equal(cpuid_specialize(&f->table, 4, 4, &f->vcpu), -1);
}

/* 1, 2, 4, 6 vCPUs: counts and shifts follow the shape; each vCPU its id. */
static void test_topology_shapes(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(cpuid_table_build(&f->table, &f->host, NULL, &f->err), 0);
    static const struct {
        unsigned cpus, shift;
    } shapes[] = {{1, 0}, {2, 1}, {4, 2}, {6, 3}};
    for (size_t s = 0; s < ARRAY_LEN(shapes); s++) {
        unsigned n = shapes[s].cpus, shift = shapes[s].shift;
        for (unsigned id = 0; id < n; id++) {
            assert_int_equal(cpuid_specialize(&f->table, n, id, &f->vcpu), 0);
            const struct cpuid_table *v = &f->vcpu;
            uint32_t ebx = reg(v, 1, 0, EBX);
            assert_int_equal(ebx >> 24, id);
            assert_int_equal((ebx >> 16) & 0xff, n);
            assert_int_equal((reg(v, 1, 0, EDX) >> 28) & 1, n > 1);
            expect_regs(v, 0xb, 0, 0, 1, 0x100, id);
            expect_regs(v, 0xb, 1, shift, n, 0x201, id);
            expect_regs(v, 0xb, 2, 0, 0, 2, id);
            assert_int_equal(reg(v, 4, 2, EAX) >> 14 & 0xfff, (1u << shift) - 1);
            assert_int_equal(reg(v, 4, 2, EAX) >> 26, (1u << shift) - 1);
            assert_int_equal(reg(v, 4, 0, EAX) >> 14 & 0xfff, 0);
            assert_int_equal(reg(v, 0x8000001d, 2, EAX) >> 14 & 0xfff, n - 1);
            assert_int_equal(reg(v, 0x8000001d, 1, EAX) >> 14 & 0xfff, 0);
            assert_int_equal(reg(v, 0x80000008, 0, ECX) & 0xff, n - 1);
            assert_int_equal(reg(v, 0x80000008, 0, ECX) >> 12 & 0xf, shift);
            assert_int_equal(reg(v, 0x8000001e, 0, EAX), id);
            assert_int_equal(reg(v, 0x8000001e, 0, EBX) & 0xffff, id);
        }
    }
    /* No 0x1F in the table: none made up. */
    assert_int_equal(cpuid_specialize(&f->table, 2, 1, &f->vcpu), 0);
    for (unsigned i = 0; i < f->vcpu.count; i++)
        assert_int_not_equal(f->vcpu.entries[i].function, 0x1f);
}

/* ---- profiles ---- */

static void test_profile_to_table(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(build_profile(f, INTEL_PROFILE), 0);
    const struct cpuid_table *t = &f->table;
    assert_true(t->from_profile);
    assert_int_equal(t->vendor, CPUID_VENDOR_INTEL);
    char vendor[13];
    cpuid_vendor_string(t, vendor);
    assert_string_equal(vendor, "GenuineIntel");
    expect_regs(t, 0, 0, 0xd, 0x756e6547, 0x6c65746e, 0x49656e69);
    /* Leaf 1 as written plus the hypervisor bit (already set here). */
    expect_regs(t, 1, 0, 0x000506e3, 0x00000800, 0x80202001, 0x078bfbff);
    expect_regs(t, 7, 0, 0, 2, 0, 0);
    expect_regs(t, 0xd, 5, 0x7, 0x2222, 0, 0); /* plain key: every subleaf */
    expect_regs(t, 0x80000002, 0, 0x65746e49, 0x2952286c, 0x6f655820, 0x2952286e);
    /* Nothing of the host's: its 0x8000001D is beyond this profile's
     * extended range (Intel: reads as the highest basic leaf), 7.1 is zeros. */
    expect_regs(t, 0x8000001d, 0, 0x7, 0x2222, 0, 0);
    expect_regs(t, 7, 1, 0, 0, 0, 0);
    /* KVM's leaves come from the host. */
    expect_regs(t, 0x40000000, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d);
    /* KVM's leaves, less the hypercall features (an Intel guest on an AMD host). */
    expect_regs(t, 0x40000001, 0, 0x01007efbu & ~(1u << 7 | 1u << 11 | 1u << 13), 0, 0, 0);

    /* Specialised: vCPU 3 of 4, Intel cache leaves, topology from "b". */
    assert_int_equal(cpuid_specialize(t, 4, 3, &f->vcpu), 0);
    expect_regs(&f->vcpu, 1, 0, 0x000506e3, 0x03040800, 0x80202001, 0x078bfbff | 1u << 28);
    assert_int_equal(reg(&f->vcpu, 4, 2, EAX), 0x163u | 3u << 14 | 3u << 26);
    expect_regs(&f->vcpu, 0xb, 1, 2, 4, 0x201, 3);
    for (unsigned i = 0; i < f->vcpu.count; i++) /* no 0x1F made up */
        assert_int_not_equal(f->vcpu.entries[i].function, 0x1f);

    /* The hypervisor bit is added when the profile leaves it out. */
    assert_int_equal(build_profile(f, "[cpuid.p]\nvendor = \"amd\"\n\"1\" = [1, 2, 1, 4]\n"), 0);
    expect_regs(&f->table, 1, 0, 1, 2, 1u | 1u << 31, 4);
}

static void test_made_up_heads(void **state)
{
    struct fixture *f = *state;
    /* No leaf 0 or 0x80000000: the maximum is the highest leaf listed. */
    assert_int_equal(build_profile(f, "[cpuid.p]\nvendor = \"amd\"\n"
                                      "\"1\" = [0x00a10f11, 0, 0x1, 0x1]\n"
                                      "\"7-0\" = [0, 0x2, 0, 0]\n"
                                      "\"80000008\" = [0x3030, 0, 0, 0]\n"),
                     0);
    expect_regs(&f->table, 0, 0, 7, 0x68747541, 0x444d4163, 0x69746e65);
    expect_regs(&f->table, 0x80000000, 0, 0x80000008, 0x68747541, 0x444d4163, 0x69746e65);
    /* Intel: 0x80000000 has no vendor string. */
    assert_int_equal(build_profile(f, "[cpuid.p]\nvendor = \"intel\"\n\"1\" = [1, 0, 0, 0]\n"), 0);
    expect_regs(&f->table, 0, 0, 1, 0x756e6547, 0x6c65746e, 0x49656e69);
    expect_regs(&f->table, 0x80000000, 0, 0x80000000, 0, 0, 0);
}

static void test_indexed_key_wins(void **state)
{
    struct fixture *f = *state;
    /* The plain key first in the file: the indexed one still wins for its subleaf. */
    assert_int_equal(build_profile(f, "[cpuid.p]\nvendor = \"intel\"\n"
                                      "\"1\" = [1, 0, 0, 0]\n"
                                      "\"d\" = [0x7, 0x1, 0, 0]\n"
                                      "\"d-1\" = [0x1, 0x9, 0, 0]\n"
                                      "\"d-0\" = [0x3, 0x8, 0x8, 0]\n"),
                     0);
    expect_regs(&f->table, 0xd, 0, 3, 8, 8, 0);
    expect_regs(&f->table, 0xd, 1, 1, 9, 0, 0);
    expect_regs(&f->table, 0xd, 2, 7, 1, 0, 0);
    expect_regs(&f->table, 0xd, 63, 7, 1, 0, 0);
    /* KVM answers with the first entry that matches: the indexed ones come first. */
    for (unsigned i = 0; i < f->table.count; i++) {
        const struct kvm_cpuid_entry2 *e = &f->table.entries[i];
        if (e->function != 0xd)
            continue;
        assert_true(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
        assert_int_equal(e->index, 0);
        assert_true(f->table.entries[i + 1].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
        assert_int_equal(f->table.entries[i + 1].index, 1);
        assert_false(f->table.entries[i + 2].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
        break;
    }
}

static void test_absent_leaves_intel(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(build_profile(f, INTEL_PROFILE), 0);
    const struct cpuid_table *t = &f->table;
    /* In range but absent: zeros. */
    expect_regs(t, 5, 0, 0, 0, 0, 0);
    expect_regs(t, 0x80000006, 0, 0, 0, 0, 0);
    /* Beyond the basic maximum (0xd): the highest basic leaf, same subleaf. */
    expect_regs(t, 0xe, 0, 0x7, 0x2222, 0, 0);
    expect_regs(t, 0x14, 1, 0x7, 0x2222, 0, 0);
    /* Beyond the extended maximum (0x80000008), too. */
    expect_regs(t, 0x80000009, 0, 0x7, 0x2222, 0, 0);
    expect_regs(t, 0xc0000000, 0, 0x7, 0x2222, 0, 0);
    /* And beyond KVM's (0x40000001). */
    expect_regs(t, 0x40000002, 0, 0x7, 0x2222, 0, 0);
    /* On this AMD host an Intel guest would use VMCALL: no hypercall
     * features (PV_UNHALT, PV_SEND_IPI, PV_SCHED_YIELD); the rest stay. */
    expect_regs(t, 0x40000001, 0, 0x01007efbu & ~(1u << 7 | 1u << 11 | 1u << 13), 0, 0, 0);
}

static void test_absent_leaves_amd(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(build_profile(f, "[cpuid.p]\nvendor = \"amd\"\n"
                                      "\"0\" = [0xd, 0, 0, 0]\n"
                                      "\"1\" = [0x00a10f11, 0, 0x1, 0x1]\n"
                                      "\"d\" = [0x7, 0x2222, 0, 0]\n"
                                      "\"80000000\" = [0x80000008, 0, 0, 0]\n"
                                      "\"80000008\" = [0x3030, 0, 0, 0]\n"),
                     0);
    const struct cpuid_table *t = &f->table;
    assert_int_equal(t->vendor, CPUID_VENDOR_AMD);
    /* The vendor string filled into both heads. */
    expect_regs(t, 0, 0, 0xd, 0x68747541, 0x444d4163, 0x69746e65);
    expect_regs(t, 0x80000000, 0, 0x80000008, 0x68747541, 0x444d4163, 0x69746e65);
    /* Absent, in range or not: zeros. */
    expect_regs(t, 5, 0, 0, 0, 0, 0);
    expect_regs(t, 0xe, 0, 0, 0, 0, 0);
    expect_regs(t, 0x80000009, 0, 0, 0, 0, 0);
    expect_regs(t, 0x40000002, 0, 0, 0, 0, 0);
    /* The host's own vendor: KVM's features as they are. */
    expect_regs(t, 0x40000001, 0, 0x01007efb, 0, 0, 0);
}

static void test_refusals(void **state)
{
    struct fixture *f = *state;
    /* A leaf 7 feature the fake host lacks (EBX bit 5; it has 1, 23, 24). */
    expect_refusal(f,
                   "[cpuid.p]\nvendor = \"amd\"\n\"1\" = [1, 0, 0, 0]\n"
                   "\"7-0\" = [0, 0x00000022, 0, 0]\n",
                   10, "cpuid.p.7-0",
                   "leaf 0x7 subleaf 0 EBX bit 5 (requested by the profile) is not available from "
                   "this host's KVM");
    /* Several bits of one register; a plain key checks subleaf 0. */
    expect_refusal(f,
                   "[cpuid.p]\nvendor = \"amd\"\n\"1\" = [1, 0, 0, 0]\n"
                   "\"7\" = [0, 0, 0x0000010d, 0]\n",
                   10, "cpuid.p.7",
                   "leaf 0x7 subleaf 0 ECX bits 0, 3 (requested by the profile) are not "
                   "available from this host's KVM");
    /* A plain key answers subleaf 1 too: its EAX is 7.1's there. */
    expect_refusal(f,
                   "[cpuid.p]\nvendor = \"amd\"\n\"1\" = [1, 0, 0, 0]\n"
                   "\"7\" = [0x1, 0, 0, 0]\n",
                   10, "cpuid.p.7",
                   "leaf 0x7 subleaf 1 EAX bit 0 (requested by the profile) is not available from "
                   "this host's KVM");
    /* Leaf 1: MONITOR (ECX bit 3). */
    expect_refusal(f, "[cpuid.p]\nvendor = \"intel\"\n\"1\" = [1, 0, 0x8, 0]\n", 9, "cpuid.p.1",
                   "leaf 0x1 ECX bit 3 (requested by the profile) is not available from this "
                   "host's KVM");
    /* A leaf the host does not list at all: nothing is available. */
    expect_refusal(f,
                   "[cpuid.p]\nvendor = \"amd\"\n\"1\" = [1, 0, 0, 0]\n"
                   "\"80000021\" = [0x1, 0, 0, 0]\n",
                   10, "cpuid.p.80000021",
                   "leaf 0x80000021 EAX bit 0 (requested by the profile) is not available from "
                   "this host's KVM");
    /* XCR0 components: 0xD.0 EAX. */
    expect_refusal(f,
                   "[cpuid.p]\nvendor = \"amd\"\n\"1\" = [1, 0, 0, 0]\n"
                   "\"d-0\" = [0x2e7, 0, 0, 0]\n",
                   10, "cpuid.p.d-0",
                   "leaf 0xd subleaf 0 EAX bit 9 (requested by the profile) is not available from "
                   "this host's KVM");
    /* TSC-deadline only with KVM_CAP_TSC_DEADLINE_TIMER. */
    const char *deadline = "[cpuid.p]\nvendor = \"intel\"\n\"1\" = [1, 0, 0x01000000, 0]\n";
    assert_int_equal(build_profile(f, deadline), 0);
    f->host.tsc_deadline = false;
    expect_refusal(f, deadline, 9, "cpuid.p.1",
                   "leaf 0x1 ECX bit 24 (requested by the profile) is not available from this "
                   "host's KVM");
    /* x2APIC only where the host has it. */
    f->supported->entries[1].ecx &= ~(1u << 21);
    expect_refusal(f, "[cpuid.p]\nvendor = \"intel\"\n\"1\" = [1, 0, 0x00200000, 0]\n", 9,
                   "cpuid.p.1",
                   "leaf 0x1 ECX bit 21 (requested by the profile) is not available from this "
                   "host's KVM");
    /* Exempt: OSXSAVE, hypervisor, HTT (the fake host has none of them but
     * the hypervisor bit), OSPKE. */
    f->supported->entries[1].ecx = 0;
    assert_int_equal(build_profile(f, "[cpuid.p]\nvendor = \"intel\"\n"
                                      "\"1\" = [1, 0, 0x88000000, 0x10000000]\n"
                                      "\"7-0\" = [0, 0, 0x10, 0]\n"),
                     0);
    /* Identity and information registers are taken as given. */
    assert_int_equal(build_profile(f, "[cpuid.p]\nvendor = \"intel\"\n"
                                      "\"1\" = [0xffffffff, 0xffffffff, 0, 0]\n"
                                      "\"7-0\" = [0xffffffff, 0, 0, 0]\n"
                                      "\"a\" = [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff]\n"
                                      "\"80000005\" = [0xffffffff, 1, 2, 3]\n"),
                     0);

    /* Conflicts within the profile. */
    expect_refusal(f,
                   "[cpuid.p]\nvendor = \"amd\"\n\"0\" = [1, 0x756e6547, 0x6c65746e, "
                   "0x49656e69]\n\"1\" = [1, 0, 0, 0]\n",
                   9, "cpuid.p.0",
                   "leaf 0x0 names vendor \"GenuineIntel\" but the profile's vendor is \"amd\"");
    expect_refusal(f,
                   "[cpuid.p]\nvendor = \"amd\"\n\"1\" = [1, 0, 0, 0]\n"
                   "\"80000000\" = [0x80000001, 1, 2, 3]\n",
                   10, "cpuid.p.80000000",
                   "leaf 0x80000000 names vendor \"????????????\" but the profile's vendor is "
                   "\"amd\"");
    expect_refusal(f,
                   "[cpuid.p]\nvendor = \"intel\"\n\"0\" = [1, 0, 0, 0]\n\"1\" = [1, 0, 0, 0]\n"
                   "\"7-0\" = [0, 0, 0, 0]\n",
                   11, "cpuid.p.7-0",
                   "leaf 0x7 is beyond the highest leaf 0x1 that leaf 0x0 gives, so a guest "
                   "would never see it");
    expect_refusal(f,
                   "[cpuid.p]\nvendor = \"intel\"\n\"1\" = [1, 0, 0, 0]\n"
                   "\"80000000\" = [0x80000004, 0, 0, 0]\n\"80000008\" = [0x3030, 0, 0, 0]\n",
                   11, "cpuid.p.80000008",
                   "leaf 0x80000008 is beyond the highest leaf 0x80000004 that leaf 0x80000000 "
                   "gives, so a guest would never see it");
    expect_refusal(f,
                   "[cpuid.p]\nvendor = \"intel\"\n\"1\" = [1, 0, 0, 0]\n"
                   "\"40000001\" = [0, 0, 0, 0]\n",
                   10, "cpuid.p.40000001",
                   "leaves 0x40000000-0x4fffffff are the hypervisor's (KVM's), not the profile's");
    expect_refusal(f,
                   "[cpuid.p]\nvendor = \"intel\"\n\"1\" = [1, 0, 0, 0]\n"
                   "\"c0000000\" = [0, 0, 0, 0]\n",
                   10, "cpuid.p.c0000000",
                   "leaf 0xc0000000 is neither basic (below 0x40000000) nor extended "
                   "(0x80000000-0x8000ffff)");
    expect_refusal(f, "[cpuid.p]\nvendor = \"intel\"\n\"7-0\" = [0, 0, 0, 0]\n", 7, "cpuid.p",
                   "the profile lists no leaf 1 (family, model, features), which every guest "
                   "reads");
}

/* The example profile of propolis-standalone's README (tests/configs/):
 * refused by the small fake host, naming every leaf 1 ECX bit it lacks;
 * taken as written by a host whose KVM gives all it asks. */
static void test_reference_example(void **state)
{
    struct fixture *f = *state;
    const char *file = __FILE__;
    const char *slash = strrchr(file, '/');
    char path[512];
    snprintf(path, sizeof(path), "%.*s%s../configs/cpuid-example.toml",
             slash ? (int)(slash - file) : 0, file, slash ? "/" : "");
    assert_int_equal(config_load(path, &f->cfg), 0);
    f->cfg_loaded = true;
    const struct config_cpuid_profile *p = config_cpuid_profile(&f->cfg);
    assert_non_null(p);

    assert_int_equal(cpuid_table_build(&f->table, &f->host, p, &f->err), -1);
    assert_string_equal(f->err.key, "cpuid.NAME.1");
    assert_int_equal(f->err.pos.line, 12);
    assert_string_equal(f->err.msg,
                        "leaf 0x1 ECX bits 1, 9, 12, 19, 20, 22, 23, 25, 26, 28, 29, 30 "
                        "(requested by the profile) are not available from this "
                        "host's KVM");

    /* A host that supports exactly what the profile lists (and KVM's
     * leaves); like KVM's list, indexed entries before plain ones. */
    struct kvm_cpuid2 *generous = calloc(1, sizeof(*generous) + 64 * sizeof(generous->entries[0]));
    assert_non_null(generous);
    for (size_t i = 0; i < 2 * p->leaf_count; i++) {
        const struct config_cpuid_leaf *l = &p->leaves[i % p->leaf_count];
        if (l->has_index != (i < p->leaf_count))
            continue;
        generous->entries[generous->nent++] = (struct kvm_cpuid_entry2){
            .function = l->func,
            .index = l->index,
            .flags = l->has_index ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0,
            .eax = l->regs[0],
            .ebx = l->regs[1],
            .ecx = l->regs[2],
            .edx = l->regs[3],
        };
    }
    generous->entries[generous->nent++] = fake_entries[13]; /* 0x40000001 */
    struct cpuid_host host = {.supported = generous};
    int rc = cpuid_table_build(&f->table, &host, p, &f->err);
    free(generous);
    if (rc != 0)
        print_error("refused: %s: %s\n", f->err.key, f->err.msg);
    assert_int_equal(rc, 0);
    const struct cpuid_table *t = &f->table;
    expect_regs(t, 0, 0, 0x10, 0x68747541, 0x444d4163, 0x69746e65);
    expect_regs(t, 1, 0, 0x830f10, 0x10800, 0xf6d83203, 0x178bfbff); /* hypervisor bit set */
    expect_regs(t, 7, 0, 0, 0x201401a9, 0, 0);                       /* "7-0" over "7" */
    expect_regs(t, 7, 1, 0, 0, 0, 0);
    expect_regs(t, 0xd, 2, 0x100, 0x240, 0, 0);
    expect_regs(t, 0xd, 3, 0, 0, 0, 0);
    expect_regs(t, 0x8000001d, 2, 0x143, 0x1c0003f, 0x3ff, 0x2);
    expect_regs(t, 0x8000001d, 4, 0, 0, 0, 0);
    expect_regs(t, 0x8000001f, 0, 0x1000f, 0x16f, 0x1fd, 0x1);
    expect_regs(t, 0x40000000, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d);
    expect_regs(t, 0x40000001, 0, 0x01007efb, 0, 0, 0);
    expect_regs(t, 0x80000021, 0, 0, 0, 0, 0); /* past 0x80000020 on AMD */
    uint32_t brand[12];
    for (unsigned i = 0; i < 3; i++)
        cpuid_lookup(t, 0x80000002 + i, 0, &brand[4 * i]);
    assert_memory_equal(brand, "AMD EPYC 7282 16-Core Processor ", 32);
    /* vCPU 1 of 2: AMD's leaves specialised, the rest as written. */
    assert_int_equal(cpuid_specialize(t, 2, 1, &f->vcpu), 0);
    expect_regs(&f->vcpu, 1, 0, 0x830f10, 0x01020800, 0xf6d83203, 0x178bfbff);
    expect_regs(&f->vcpu, 0x80000008, 0, 0x3030, 0x7, 0x1001, 0x10000);
    assert_int_equal(reg(&f->vcpu, 0x8000001d, 3, EAX), 0x163u | 1u << 14);
    assert_int_equal(reg(&f->vcpu, 0x8000001d, 2, EAX), 0x143);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_host_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_specialised, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topology_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profile_to_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_made_up_heads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indexed_key_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absent_leaves_intel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absent_leaves_amd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_example, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
