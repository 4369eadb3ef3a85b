/* ACPI generation: the AML encoder, every table's layout and checksum after
 * the table-loader script has run as OVMF runs it, and ACPICA's iasl
 * disassembling and recompiling every table (tests/acpi/check.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "firmware/acpi.h"
#include "firmware/aml.h"
#include "firmware/table_loader.h"
#include "support/prereq.h"

#define GIB (1024ull * 1024 * 1024)
#define TABLES_ADDR 0x7ff00000ull /* where the "firmware" places the blobs */
#define RSDP_ADDR 0x000f5a00ull

/* ---- helpers ---- */

static void expect_bytes(const struct aml *a, const uint8_t *want, size_t len)
{
    assert_true(aml_finish((struct aml *)a));
    assert_int_equal(a->buf.len, len);
    assert_memory_equal(a->buf.data, want, len);
}

/* Decodes a PkgLength; returns its byte count and the encoded total. */
static unsigned decode_pkg_length(const uint8_t *p, size_t *total)
{
    unsigned n = (p[0] >> 6) + 1;
    if (n == 1) {
        *total = p[0] & 0x3f;
        return 1;
    }
    size_t v = p[0] & 0x0f;
    for (unsigned i = 1; i < n; i++)
        v |= (size_t)p[i] << (4 + 8 * (i - 1));
    *total = v;
    return n;
}

static bool find_bytes(const uint8_t *hay, size_t len, const void *needle, size_t nlen)
{
    for (size_t i = 0; i + nlen <= len; i++)
        if (memcmp(hay + i, needle, nlen) == 0)
            return true;
    return false;
}

/* The blobs after the loader script ran, as the guest sees them. */
struct placed {
    struct acpi_blobs blobs;
    uint8_t *tables, *rsdp;
    size_t tables_len;
};

/* Runs the loader script over blobs already built into p->blobs. */
static int run_loader(struct placed *p)
{
    p->tables = p->blobs.tables.data;
    p->tables_len = p->blobs.tables.len;
    p->rsdp = p->blobs.rsdp.data;
    struct loader_file files[2] = {
        {ACPI_TABLES_FILE, p->tables, p->tables_len, TABLES_ADDR, 0},
        {ACPI_RSDP_FILE, p->rsdp, p->blobs.rsdp.len, RSDP_ADDR, 0},
    };
    char why[160];
    int ret = loader_execute(p->blobs.loader.data, p->blobs.loader.len, files, 2, why, sizeof(why));
    if (ret < 0)
        fprintf(stderr, "loader: %s\n", why);
    return ret;
}

static int place(const struct platform_desc *d, struct placed *p)
{
    memset(p, 0, sizeof(*p));
    if (acpi_build(d, &p->blobs) < 0)
        return -1;
    return run_loader(p);
}

/* The table at a guest address inside the placed tables blob. */
static const uint8_t *table_at(const struct placed *p, uint64_t addr)
{
    assert_true(addr >= TABLES_ADDR && addr - TABLES_ADDR + 8 <= p->tables_len);
    const uint8_t *t = p->tables + (addr - TABLES_ADDR);
    assert_true(addr - TABLES_ADDR + le32_load(t + 4) <= p->tables_len);
    return t;
}

static const uint8_t *find_table(const struct placed *p, const char *sig)
{
    const uint8_t *xsdt = table_at(p, le64_load(p->rsdp + 24));
    uint32_t n = (le32_load(xsdt + 4) - ACPI_HEADER_SIZE) / 8;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *t = table_at(p, le64_load(xsdt + ACPI_HEADER_SIZE + 8 * i));
        if (memcmp(t, sig, 4) == 0)
            return t;
    }
    return NULL;
}

static void defaults(struct platform_desc *d, unsigned cpus, uint64_t ram)
{
    uint64_t low = ram < 3 * GIB ? ram : 3 * GIB;
    platform_desc_defaults(d, cpus, low, ram - low);
}

/* ---- AML encoder ---- */

static void test_pkg_length_boundaries(void **state)
{
    static const size_t contents[] = {
        0, 1, 62, 63, 64, 4093, 4094, 100000, (1u << 20) - 4, (1u << 20) - 3, (1u << 28) - 5};
    static const unsigned sizes[] = {1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4};
    for (size_t i = 0; i < sizeof(contents) / sizeof(contents[0]); i++) {
        uint8_t enc[4];
        unsigned n = aml_pkg_length_encode(contents[i], enc);
        assert_int_equal(n, sizes[i]);
        size_t total;
        assert_int_equal(decode_pkg_length(enc, &total), n);
        assert_int_equal(total, contents[i] + n);
    }
    uint8_t enc[4];
    assert_int_equal(aml_pkg_length_encode(1u << 28, enc), 0);
}

static void test_integer_prefixes(void **state)
{
    static const struct {
        uint64_t value;
        uint8_t bytes[9];
        size_t len;
    } cases[] = {
        {0, {0x00}, 1},
        {1, {0x01}, 1},
        {2, {0x0a, 0x02}, 2},
        {0xff, {0x0a, 0xff}, 2},
        {0x100, {0x0b, 0x00, 0x01}, 3},
        {0xffff, {0x0b, 0xff, 0xff}, 3},
        {0x10000, {0x0c, 0x00, 0x00, 0x01, 0x00}, 5},
        {0xffffffff, {0x0c, 0xff, 0xff, 0xff, 0xff}, 5},
        {0x100000000ull, {0x0e, 0, 0, 0, 0, 1, 0, 0, 0}, 9},
        {~0ull, {0x0e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct aml a;
        aml_init(&a);
        aml_integer(&a, cases[i].value);
        expect_bytes(&a, cases[i].bytes, cases[i].len);
        aml_free(&a);
    }
}

static void test_name_strings(void **state)
{
    static const struct {
        const char *path;
        const char *bytes;
        size_t len;
    } good[] = {
        {"_HID", "_HID", 4},
        {"PCI", "PCI_", 4},
        {"\\_SB", "\\_SB_", 5},
        {"\\_SB.PCI0", "\\\x2e_SB_PCI0", 10},
        {"\\_SB.PCI0.ISA", "\\\x2f\x03_SB_PCI0ISA_", 15},
        {"^^FOO", "^^FOO_", 6},
        {"A.B",
         "\x2e"
         "A___B___",
         9},
        {"", "\x00", 1},
        {"\\", "\\\x00", 2},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct aml a;
        aml_init(&a);
        aml_name_string(&a, good[i].path);
        expect_bytes(&a, (const uint8_t *)good[i].bytes, good[i].len);
        aml_free(&a);
    }
    static const char *const bad[] = {"pci0", "TOOLONG", "1ABC", "A..B", "A.", ".A", "A-B", "\\^A"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct aml a;
        aml_init(&a);
        aml_name_string(&a, bad[i]);
        assert_false(aml_finish(&a));
        aml_free(&a);
    }
}

static void test_strings_and_eisaid(void **state)
{
    assert_int_equal(aml_eisaid_value("PNP0A03"), 0x030ad041);
    assert_int_equal(aml_eisaid_value("PNP0501"), 0x0105d041);
    assert_int_equal(aml_eisaid_value("PNP0C02"), 0x020cd041);
    assert_int_equal(aml_eisaid_value("pnp0a03"), 0);
    assert_int_equal(aml_eisaid_value("PNP0A0"), 0);
    assert_int_equal(aml_eisaid_value("PNP0A0G"), 0);

    struct aml a;
    aml_init(&a);
    aml_name_eisaid(&a, "_HID", "PNP0A03");
    aml_name_str(&a, "_HID", "ACPI0007");
    static const uint8_t want[] = {0x08, '_',  'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a,
                                   0x03, 0x08, '_', 'H', 'I', 'D',  0x0d, 'A',  'C',
                                   'P',  'I',  '0', '0', '0', '7',  0x00};
    expect_bytes(&a, want, sizeof(want));
    aml_free(&a);

    aml_init(&a);
    aml_eisaid(&a, "bogus");
    assert_false(aml_finish(&a));
    aml_free(&a);
    aml_init(&a);
    aml_string(&a, "caf\xc3\xa9"); /* AML strings are 7-bit ASCII */
    assert_false(aml_finish(&a));
    aml_free(&a);
}

static void test_blocks(void **state)
{
    struct aml a;
    aml_init(&a);
    aml_scope_open(&a, "\\_SB");
    aml_device_open(&a, "DEV");
    aml_name_integer(&a, "_UID", 5);
    aml_close(&a);
    aml_close(&a);
    static const uint8_t want[] = {0x10, 0x14, '\\', '_',  'S', 'B', '_', 0x5b, 0x82, 0x0c, 'D',
                                   'E',  'V',  '_',  0x08, '_', 'U', 'I', 'D',  0x0a, 0x05};
    expect_bytes(&a, want, sizeof(want));
    aml_free(&a);

    /* A buffer's size term precedes its bytes, inside the PkgLength. */
    aml_init(&a);
    aml_buffer_open(&a);
    aml_bytes(&a, "xyz", 3);
    aml_close(&a);
    static const uint8_t buffer[] = {0x11, 0x06, 0x0a, 0x03, 'x', 'y', 'z'};
    expect_bytes(&a, buffer, sizeof(buffer));
    aml_free(&a);

    /* Methods carry their flags byte; packages their element count. */
    aml_init(&a);
    aml_method_open(&a, "_STA", 0, false);
    aml_return_integer(&a, 0x0f);
    aml_close(&a);
    aml_package_open(&a, 2);
    aml_integer(&a, 0);
    aml_integer(&a, 1);
    aml_close(&a);
    static const uint8_t method[] = {0x14, 0x09, '_',  'S',  'T',  'A',  0x00, 0xa4,
                                     0x0a, 0x0f, 0x12, 0x04, 0x02, 0x00, 0x01};
    expect_bytes(&a, method, sizeof(method));
    aml_free(&a);
}

static void test_large_block_length(void **state)
{
    /* A scope big enough for 2- and 3-byte PkgLengths decodes back exactly. */
    for (unsigned count = 10; count <= 20000; count *= 10) {
        struct aml a;
        aml_init(&a);
        aml_scope_open(&a, "\\_SB");
        for (unsigned i = 0; i < count; i++)
            aml_name_integer(&a, "_UID", i);
        aml_close(&a);
        assert_true(aml_finish(&a));
        size_t total;
        unsigned n = decode_pkg_length(a.buf.data + 1, &total);
        assert_int_equal(total, a.buf.len - 1);
        assert_int_equal(a.buf.data[1 + n], '\\');
        aml_free(&a);
    }
}

static void test_misuse_fails(void **state)
{
    struct aml a;
    aml_init(&a);
    aml_close(&a); /* nothing open */
    assert_false(aml_finish(&a));
    aml_free(&a);

    aml_init(&a);
    aml_scope_open(&a, "\\_SB"); /* never closed */
    assert_false(aml_finish(&a));
    aml_free(&a);

    aml_init(&a);
    for (int i = 0; i < AML_MAX_DEPTH + 2; i++)
        aml_scope_open(&a, "ABCD");
    for (int i = 0; i < AML_MAX_DEPTH + 2; i++)
        aml_close(&a);
    assert_false(aml_finish(&a));
    aml_free(&a);

    aml_init(&a);
    aml_package_open(&a, 256);
    aml_close(&a);
    assert_false(aml_finish(&a));
    aml_free(&a);

    aml_init(&a);
    aml_method_open(&a, "MTHD", 8, false);
    aml_close(&a);
    assert_false(aml_finish(&a));
    aml_free(&a);
}

static void test_resource_template(void **state)
{
    struct bytebuf r = {0};
    res_io(&r, 0x3f8, 0x3f8, 1, 8);
    res_irq_noflags(&r, 1u << 4);
    res_memory32_fixed(&r, true, 0xfed00000, 0x400);
    res_interrupt(&r, false, false, false, 20); /* edge, active-low, exclusive */
    res_word_bus_number(&r, 0, 0xff);
    res_word_io(&r, 0x0d00, 0xffff);
    res_dword_memory(&r, false, 0xc0000000, 0xdfffffff);
    res_qword_memory(&r, true, 0x100000000ull, 0xfffffffffull);
    assert_int_equal(r.len, 8 + 3 + 12 + 9 + 16 + 16 + 26 + 46);
    static const uint8_t irq20[] = {0x89, 0x06, 0x00, 0x07, 0x01, 20, 0, 0, 0};
    assert_memory_equal(r.data + 23, irq20, sizeof(irq20));
    /* Lengths are max - min + 1. */
    assert_int_equal(le16_load(r.data + 32 + 14), 0x100);
    assert_int_equal(le32_load(r.data + 32 + 16 + 16 + 22), 0x20000000);
    assert_int_equal(le64_load(r.data + 32 + 16 + 16 + 26 + 38), 0xf00000000ull);

    struct aml a;
    aml_init(&a);
    aml_resource_template(&a, &r);
    assert_true(aml_finish(&a));
    /* Buffer: 0x11, PkgLength (2 bytes here), BufferSize as a byte, then
     * the descriptors and an EndTag whose checksum zeroes the sum. */
    size_t total;
    unsigned n = decode_pkg_length(a.buf.data + 1, &total);
    assert_int_equal(n, 2);
    assert_int_equal(total, a.buf.len - 1);
    const uint8_t *body = a.buf.data + 1 + n + 2;
    size_t body_len = a.buf.len - (1 + n + 2);
    assert_int_equal(a.buf.data[1 + n], 0x0a);
    assert_int_equal(a.buf.data[2 + n], body_len);
    assert_int_equal(body[body_len - 2], 0x79);
    assert_int_equal(byte_sum(body, body_len), 0);
    aml_free(&a);
    bytebuf_free(&r);
}

/* ---- tables ---- */

static void check_header(const uint8_t *t, const char *sig)
{
    assert_memory_equal(t, sig, 4);
    assert_true(le32_load(t + 4) >= ACPI_HEADER_SIZE);
    assert_int_equal(byte_sum(t, le32_load(t + 4)), 0);
    assert_memory_equal(t + 10, "OXIDE ", 6);
}

static void check_machine(unsigned cpus, uint64_t ram, bool hpet, bool ecam)
{
    struct platform_desc d;
    defaults(&d, cpus, ram);
    d.hpet = hpet;
    if (!ecam)
        d.ecam_base = 0;
    struct placed p;
    assert_int_equal(place(&d, &p), 0);

    /* RSDP: revision 2, both checksums, XSDT inside the tables blob. */
    assert_memory_equal(p.rsdp, "RSD PTR ", 8);
    assert_int_equal(p.rsdp[15], 2);
    assert_int_equal(le32_load(p.rsdp + 20), ACPI_RSDP_SIZE);
    assert_int_equal(byte_sum(p.rsdp, 20), 0);
    assert_int_equal(byte_sum(p.rsdp, ACPI_RSDP_SIZE), 0);
    const uint8_t *xsdt = table_at(&p, le64_load(p.rsdp + 24));
    check_header(xsdt, "XSDT");
    unsigned entries = (le32_load(xsdt + 4) - ACPI_HEADER_SIZE) / 8;
    assert_int_equal(entries, 2 + hpet + ecam);

    const uint8_t *fadt = find_table(&p, "FACP");
    assert_non_null(fadt);
    check_header(fadt, "FACP");
    assert_int_equal(le32_load(fadt + 4), ACPI_FADT_SIZE);
    uint32_t facs_addr = le32_load(fadt + FADT_FIRMWARE_CTRL);
    assert_int_equal(facs_addr % 64, 0);
    const uint8_t *facs = table_at(&p, facs_addr);
    assert_memory_equal(facs, "FACS", 4);
    assert_int_equal(le32_load(facs + 4), ACPI_FACS_SIZE);
    assert_int_equal(le32_load(fadt + FADT_DSDT), le64_load(fadt + FADT_X_DSDT));
    const uint8_t *dsdt = table_at(&p, le64_load(fadt + FADT_X_DSDT));
    check_header(dsdt, "DSDT");
    assert_int_equal(dsdt[8], 2);

    const uint8_t *madt = find_table(&p, "APIC");
    assert_non_null(madt);
    check_header(madt, "APIC");
    const uint8_t *h = find_table(&p, "HPET");
    assert_true((h != NULL) == hpet);
    if (h)
        check_header(h, "HPET");
    const uint8_t *mcfg = find_table(&p, "MCFG");
    assert_true((mcfg != NULL) == ecam);
    if (mcfg) {
        check_header(mcfg, "MCFG");
        assert_int_equal(le64_load(mcfg + 44), 0xe0000000ull);
        assert_int_equal(mcfg[54], 0);
        assert_int_equal(mcfg[55], 255);
    }
    /* The DSDT only reserves ECAM when there is one. */
    uint32_t dsdt_len = le32_load(dsdt + 4);
    assert_true(find_bytes(dsdt, dsdt_len, "MRES", 4) == ecam);
    assert_true(find_bytes(dsdt, dsdt_len, "HPET", 4) == hpet);
    acpi_blobs_free(&p.blobs);
}

static void test_tables_link_up(void **state)
{
    check_machine(1, 128ull << 20, true, true);
    check_machine(4, 4 * GIB, true, true);
    check_machine(255, 64 * GIB, true, true);
    check_machine(2, 3 * GIB, false, false);
    check_machine(3, 1 * GIB, true, false);
}

static void test_blob_checksums_are_zero(void **state)
{
    /* OVMF sums ranges including the checksum byte, so it must start at 0. */
    struct platform_desc d;
    defaults(&d, 4, 2 * GIB);
    struct acpi_blobs b;
    assert_int_equal(acpi_build(&d, &b), 0);
    size_t off = 0, tables = 0;
    while (off < b.tables.len) {
        uint32_t len = le32_load(b.tables.data + off + 4);
        assert_true(len > 0 && off + len <= b.tables.len);
        if (memcmp(b.tables.data + off, "FACS", 4) != 0)
            assert_int_equal(b.tables.data[off + 9], 0);
        off += len;
        tables++;
    }
    assert_int_equal(off, b.tables.len);
    assert_int_equal(tables, 7);
    assert_int_equal(b.rsdp.data[8], 0);
    assert_int_equal(b.rsdp.data[32], 0);
    /* FACS first, for the blob's 64-byte alignment. */
    assert_memory_equal(b.tables.data, "FACS", 4);
    acpi_blobs_free(&b);
}

static void test_loader_script_shape(void **state)
{
    struct platform_desc d;
    defaults(&d, 2, GIB);
    struct acpi_blobs b;
    assert_int_equal(acpi_build(&d, &b), 0);
    const uint8_t *s = b.loader.data;
    size_t n = b.loader.len / LOADER_ENTRY_SIZE;
    assert_int_equal(b.loader.len % LOADER_ENTRY_SIZE, 0);
    /* First: allocate the tables (HIGH, 64); later the RSDP (FSEG, 16). */
    assert_int_equal(le32_load(s), LOADER_ALLOCATE);
    assert_string_equal((const char *)s + 4, ACPI_TABLES_FILE);
    assert_int_equal(le32_load(s + 4 + 56), 64);
    assert_int_equal(s[4 + 60], LOADER_ZONE_HIGH);
    unsigned allocs = 0, pointers = 0, checksums = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = s + i * LOADER_ENTRY_SIZE;
        switch (le32_load(e)) {
        case LOADER_ALLOCATE:
            allocs++;
            if (strcmp((const char *)e + 4, ACPI_RSDP_FILE) == 0) {
                assert_int_equal(le32_load(e + 4 + 56), 16);
                assert_int_equal(e[4 + 60], LOADER_ZONE_FSEG);
            }
            break;
        case LOADER_ADD_POINTER:
            pointers++;
            assert_int_equal(e[4 + 56 - 1], 0);
            assert_int_equal(e[4 + 112 - 1], 0);
            break;
        case LOADER_ADD_CHECKSUM:
            checksums++;
            break;
        default:
            fail_msg("unexpected command %u", le32_load(e));
        }
    }
    assert_int_equal(allocs, 2);
    /* FADT: FACS, DSDT, X_DSDT; XSDT: 4 tables; RSDP: XSDT. */
    assert_int_equal(pointers, 3 + 4 + 1);
    /* DSDT, FADT, MADT, HPET, MCFG, XSDT, RSDP twice. */
    assert_int_equal(checksums, 8);
    acpi_blobs_free(&b);
}

static void test_loader_executor_rejects(void **state)
{
    uint8_t blob[64] = {0}, other[16] = {0};
    struct loader_file files[2] = {{"a", blob, sizeof(blob), 0x1000, 0},
                                   {"b", other, sizeof(other), 0x2000, 0}};
    char why[128];
    struct bytebuf s = {0};

    loader_add_pointer(&s, "a", "b", 0, 4); /* before any allocate */
    assert_int_equal(loader_execute(s.data, s.len, files, 2, why, sizeof(why)), -1);
    bytebuf_free(&s);

    loader_allocate(&s, "a", 64, LOADER_ZONE_HIGH);
    loader_allocate(&s, "b", 16, LOADER_ZONE_HIGH);
    blob[0] = 16; /* pointer value past the end of b */
    loader_add_pointer(&s, "a", "b", 0, 4);
    assert_int_equal(loader_execute(s.data, s.len, files, 2, why, sizeof(why)), -1);
    blob[0] = 15;
    assert_int_equal(loader_execute(s.data, s.len, files, 2, why, sizeof(why)), 0);
    assert_int_equal(le32_load(blob), 0x2000 + 15);
    bytebuf_free(&s);

    loader_allocate(&s, "a", 128, LOADER_ZONE_HIGH); /* 0x1000 is aligned... */
    files[0].addr = 0x1040;                          /* ...this is not */
    assert_int_equal(loader_execute(s.data, s.len, files, 2, why, sizeof(why)), -1);
    files[0].addr = 0x1000;
    bytebuf_free(&s);

    loader_allocate(&s, "a", 64, LOADER_ZONE_HIGH);
    loader_add_checksum(&s, "a", 64, 0, 10); /* result offset out of range */
    assert_int_equal(loader_execute(s.data, s.len, files, 2, why, sizeof(why)), -1);
    bytebuf_free(&s);

    loader_allocate(&s, "zzz", 64, LOADER_ZONE_HIGH);
    assert_int_equal(loader_execute(s.data, s.len, files, 2, why, sizeof(why)), -1);
    assert_int_equal(loader_execute(s.data, 100, files, 2, why, sizeof(why)), -1);
    bytebuf_free(&s);

    char long_name[80];
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    loader_allocate(&s, long_name, 64, LOADER_ZONE_HIGH);
    assert_true(s.failed);
    bytebuf_free(&s);
}

static void test_madt(void **state)
{
    struct platform_desc d;
    defaults(&d, 7, GIB);
    d.isa_level_irqs |= 1u << 10;
    struct placed p;
    assert_int_equal(place(&d, &p), 0);
    const uint8_t *m = find_table(&p, "APIC");
    assert_int_equal(le32_load(m + 36), 0xfee00000u);
    assert_int_equal(le32_load(m + 40), 1); /* PCAT_COMPAT */
    const uint8_t *e = m + 44, *end = m + le32_load(m + 4);
    unsigned lapics = 0, ioapics = 0, nmis = 0;
    bool irq0 = false, irq9 = false, irq10 = false;
    while (e < end) {
        assert_true(e[1] >= 2 && e + e[1] <= end);
        switch (e[0]) {
        case 0:
            assert_int_equal(e[1], 8);
            assert_int_equal(e[2], lapics); /* processor UID */
            assert_int_equal(e[3], lapics); /* APIC id */
            assert_int_equal(le32_load(e + 4), 1);
            lapics++;
            break;
        case 1:
            assert_int_equal(e[1], 12);
            assert_int_equal(le32_load(e + 4), 0xfec00000u);
            assert_int_equal(le32_load(e + 8), 0);
            ioapics++;
            break;
        case 2:
            assert_int_equal(e[1], 10);
            if (e[3] == 0) {
                assert_int_equal(le32_load(e + 4), 2);
                assert_int_equal(le16_load(e + 8), 0);
                irq0 = true;
            } else {
                assert_int_equal(le32_load(e + 4), e[3]);
                assert_int_equal(le16_load(e + 8), 0x000d); /* level, active high */
                irq9 |= e[3] == 9;
                irq10 |= e[3] == 10;
            }
            break;
        case 4:
            assert_int_equal(e[2], 0xff);
            assert_int_equal(e[5], 1); /* LINT1 */
            nmis++;
            break;
        default:
            fail_msg("unexpected MADT entry %u", e[0]);
        }
        e += e[1];
    }
    assert_int_equal(lapics, 7);
    assert_int_equal(ioapics, 1);
    assert_int_equal(nmis, 1);
    assert_true(irq0 && irq9 && irq10);
    acpi_blobs_free(&p.blobs);
}

/* SeaBIOS moves the PM block (to 0x600) before it reads the tables: the
 * blob rebuilt for the new base keeps its size, so the loader script made
 * for the first build still places it, and the FADT names the new ports. */
static void test_tables_rebuilt_for_a_moved_pm_block(void **state)
{
    struct platform_desc d;
    defaults(&d, 2, GIB);
    struct placed p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(acpi_build(&d, &p.blobs), 0);
    d.pm_base = 0x600;
    assert_int_equal(acpi_rebuild_tables(&d, p.blobs.tables.data, p.blobs.tables.len), 0);
    assert_int_equal(run_loader(&p), 0);
    const uint8_t *f = find_table(&p, "FACP");
    check_header(f, "FACP");
    assert_int_equal(le32_load(f + FADT_PM1A_EVT_BLK), 0x600);
    assert_int_equal(le32_load(f + FADT_PM1A_CNT_BLK), 0x604);
    assert_int_equal(le32_load(f + FADT_PM_TMR_BLK), 0x608);
    assert_int_equal(le64_load(f + FADT_X_PM1A_EVT_BLK + 4), 0x600);
    assert_int_equal(le64_load(f + FADT_X_PM1A_CNT_BLK + 4), 0x604);
    assert_int_equal(le64_load(f + FADT_X_PM_TMR_BLK + 4), 0x608);
    assert_int_equal(le32_load(f + FADT_GPE0_BLK), 0xafe0); /* GPE0 does not move */

    /* A blob of another size is refused and left as it was. */
    uint8_t *copy = malloc(p.blobs.tables.len);
    memcpy(copy, p.blobs.tables.data, p.blobs.tables.len);
    d.pm_base = 0xb000;
    assert_int_equal(acpi_rebuild_tables(&d, p.blobs.tables.data, p.blobs.tables.len - 1), -1);
    assert_memory_equal(copy, p.blobs.tables.data, p.blobs.tables.len);
    free(copy);
    acpi_blobs_free(&p.blobs);
}

static void test_fadt_fields(void **state)
{
    struct platform_desc d;
    defaults(&d, 1, GIB);
    struct placed p;
    assert_int_equal(place(&d, &p), 0);
    const uint8_t *f = find_table(&p, "FACP");
    assert_int_equal(f[8], 6);
    assert_int_equal(le16_load(f + FADT_SCI_INT), 9);
    /* QEMU's and propolis' APM protocol: write 0xf1 to 0xb2 to set SCI_EN. */
    assert_int_equal(le32_load(f + FADT_SMI_CMD), 0xb2);
    assert_int_equal(f[52], 0xf1);
    assert_int_equal(f[53], 0xf0);
    assert_int_equal(le32_load(f + FADT_PM1A_EVT_BLK), 0xb000);
    assert_int_equal(le32_load(f + FADT_PM1A_CNT_BLK), 0xb004);
    assert_int_equal(le32_load(f + FADT_PM_TMR_BLK), 0xb008);
    assert_int_equal(f[FADT_PM1_EVT_LEN], 4);
    assert_int_equal(f[FADT_PM1_CNT_LEN], 2);
    assert_int_equal(f[FADT_PM_TMR_LEN], 4);
    assert_int_equal(le32_load(f + FADT_GPE0_BLK), 0xafe0);
    assert_int_equal(f[FADT_GPE0_BLK_LEN], 4);
    assert_int_equal(f[FADT_CENTURY], 0x32);
    assert_int_equal(le16_load(f + FADT_IAPC_BOOT_ARCH),
                     IAPC_LEGACY_DEVICES | IAPC_8042 | IAPC_VGA_NOT_PRESENT);
    /* A 24-bit PM timer: no TMR_VAL_EXT. */
    uint32_t flags = le32_load(f + FADT_FLAGS);
    assert_int_equal(flags,
                     FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON | FADT_F_RESET_REG_SUP);
    /* RESET_REG: system I/O, 8 bits, port 0xcf9, value 6. */
    assert_int_equal(f[FADT_RESET_REG], 1);
    assert_int_equal(f[FADT_RESET_REG + 1], 8);
    assert_int_equal(le64_load(f + FADT_RESET_REG + 4), 0xcf9);
    assert_int_equal(f[FADT_RESET_VALUE], 0x06);
    /* The X_ blocks repeat the legacy ones with bit widths. */
    assert_int_equal(f[FADT_X_PM1A_EVT_BLK], 1);
    assert_int_equal(f[FADT_X_PM1A_EVT_BLK + 1], 32);
    assert_int_equal(le64_load(f + FADT_X_PM1A_EVT_BLK + 4), 0xb000);
    assert_int_equal(f[FADT_X_PM1A_CNT_BLK + 1], 16);
    assert_int_equal(le64_load(f + FADT_X_PM1A_CNT_BLK + 4), 0xb004);
    assert_int_equal(le64_load(f + FADT_X_PM_TMR_BLK + 4), 0xb008);
    acpi_blobs_free(&p.blobs);

    /* ACPI always on (SMI_CMD 0), no GPE block, a 32-bit timer, VGA. */
    d.smi_cmd = 0;
    d.gpe0_base = 0;
    d.pm_timer_32bit = true;
    d.vga_present = true;
    assert_int_equal(place(&d, &p), 0);
    f = find_table(&p, "FACP");
    assert_int_equal(le32_load(f + FADT_SMI_CMD), 0);
    assert_int_equal(f[52], 0);
    assert_int_equal(f[53], 0);
    assert_int_equal(le32_load(f + FADT_GPE0_BLK), 0);
    assert_int_equal(f[FADT_GPE0_BLK_LEN], 0);
    assert_true(le32_load(f + FADT_FLAGS) & FADT_F_TMR_VAL_EXT);
    assert_int_equal(le16_load(f + FADT_IAPC_BOOT_ARCH) & IAPC_VGA_NOT_PRESENT, 0);
    acpi_blobs_free(&p.blobs);
}

static void test_dsdt_contents(void **state)
{
    struct platform_desc d;
    defaults(&d, 3, 2 * GIB);
    d.s5_slp_typ = 5;
    d.com_mask = 0x05; /* COM1 and COM3 only */
    d.pvpanic_port = 0x505;
    struct bytebuf aml;
    assert_int_equal(acpi_build_dsdt_aml(&d, &aml), 0);
    static const char *const present[] = {
        "PCI0", "_PRT",     "GSIA", "GSID",     "ISA_", "KBD_", "MOU_", "RTC_", "COM1", "COM3",
        "PEVT", "QEMU0001", "FWCF", "QEMU0002", "HPET", "MRES", "C000", "C002", "_S5_", "ACPI0007"};
    for (size_t i = 0; i < sizeof(present) / sizeof(present[0]); i++)
        assert_true(find_bytes(aml.data, aml.len, present[i], strlen(present[i])));
    assert_false(find_bytes(aml.data, aml.len, "COM2", 4));
    assert_false(find_bytes(aml.data, aml.len, "COM4", 4));
    assert_false(find_bytes(aml.data, aml.len, "C003", 4));
    /* \_S5 = Package (4) { 5, 5, 0, 0 } closes the table. */
    static const uint8_t s5[] = {0x08, '\\', '_',  'S',  '5',  '_',  0x12, 0x08,
                                 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00};
    assert_true(aml.len > sizeof(s5));
    assert_memory_equal(aml.data + aml.len - sizeof(s5), s5, sizeof(s5));
    /* _PRT: 31 slots x 4 pins through PIRQ (slot + pin - 1) % 4. Slot 5,
     * pin C: PIRQC, GSI 18, link device \_SB.GSIC. */
    static const uint8_t entry[] = {0x12, 0x14, 0x04, 0x0c, 0xff, 0xff, 0x05,
                                    0x00, 0x0a, 0x02, '\\', 0x2e, '_',  'S',
                                    'B',  '_',  'G',  'S',  'I',  'C',  0x00};
    assert_true(find_bytes(aml.data, aml.len, entry, sizeof(entry)));
    /* GSIC: Interrupt (ResourceConsumer, Level, ActiveHigh, Shared) {18}. */
    static const uint8_t irq18[] = {0x89, 0x06, 0x00, 0x09, 0x01, 0x12, 0x00, 0x00, 0x00};
    assert_true(find_bytes(aml.data, aml.len, irq18, sizeof(irq18)));
    static const uint8_t pnp0c0f[] = {0x0c, 0x41, 0xd0, 0x0c, 0x0f};
    assert_true(find_bytes(aml.data, aml.len, pnp0c0f, sizeof(pnp0c0f)));
    assert_false(find_bytes(aml.data, aml.len, "GSIE", 4)); /* pins 20-23 unused */
    static const uint8_t prt_head[] = {'_', 'P', 'R', 'T', 0x12};
    assert_true(find_bytes(aml.data, aml.len, prt_head, sizeof(prt_head)));
    bytebuf_free(&aml);

    /* No slot routed: an empty _PRT, still valid. */
    memset(d.prt_gsi, 0, sizeof(d.prt_gsi));
    assert_int_equal(acpi_build_dsdt_aml(&d, &aml), 0);
    bytebuf_free(&aml);
}

static void test_pci_windows(void **state)
{
    /* The 32-bit window skips ECAM: [lowmem, ECAM) and [ECAM end, IOAPIC). */
    struct platform_desc d;
    defaults(&d, 1, 3 * GIB);
    struct bytebuf aml;
    assert_int_equal(acpi_build_dsdt_aml(&d, &aml), 0);
    uint8_t below[8], above[8];
    le32_store(below, 0xc0000000u);
    le32_store(below + 4, 0xdfffffffu);
    le32_store(above, 0xf0000000u);
    le32_store(above + 4, 0xfebfffffu);
    assert_true(find_bytes(aml.data, aml.len, below, 8));
    assert_true(find_bytes(aml.data, aml.len, above, 8));
    bytebuf_free(&aml);

    /* 64-bit window: above RAM (1 GiB aligned) up to 2^phys_bits. */
    defaults(&d, 1, 3 * GIB + 1536ull * 1024 * 1024);
    platform_desc_set_phys_bits(&d, 40);
    assert_int_equal(d.pci_mmio64_base, 6 * GIB);
    assert_int_equal(d.pci_mmio64_base + d.pci_mmio64_size, 1ull << 40);
    assert_int_equal(acpi_build_dsdt_aml(&d, &aml), 0);
    uint8_t window[16];
    le64_store(window, 6 * GIB);
    le64_store(window + 8, (1ull << 40) - 1);
    assert_true(find_bytes(aml.data, aml.len, window, 16));
    bytebuf_free(&aml);
    platform_desc_set_phys_bits(&d, 7); /* nonsense: falls back to 36 bits */
    assert_int_equal(d.pci_mmio64_base + d.pci_mmio64_size, 1ull << 36);
}

static void test_bad_descriptions(void **state)
{
    struct platform_desc d;
    struct acpi_blobs b;
    defaults(&d, 0, GIB);
    assert_int_equal(acpi_build(&d, &b), -1);
    defaults(&d, 256, GIB);
    assert_int_equal(acpi_build(&d, &b), -1);
    defaults(&d, 1, GIB);
    d.ecam_base = 0xe0001000;
    assert_int_equal(acpi_build(&d, &b), -1);
    defaults(&d, 1, GIB);
    d.sci_irq = 16;
    assert_int_equal(acpi_build(&d, &b), -1);
    defaults(&d, 1, GIB);
    d.s5_slp_typ = 8;
    assert_int_equal(acpi_build(&d, &b), -1);
    defaults(&d, 1, GIB);
    d.pci_mmio32_base = 0xf0000000;
    d.pci_mmio32_size = 0x20000000;
    assert_int_equal(acpi_build(&d, &b), -1);
}

/* ---- iasl ---- */

static const char *check_script(void)
{
    const char *env = getenv("ACPI_CHECK_SCRIPT");
    if (env && *env)
        return env;
    return access("tests/acpi/check.sh", X_OK) == 0 ? "tests/acpi/check.sh" : NULL;
}

static void write_file(const char *dir, const char *name, const uint8_t *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Writes every placed table as SIG.dat and runs the check script. */
static int iasl_check(const struct platform_desc *d, const char *label)
{
    struct placed p;
    assert_int_equal(place(d, &p), 0);
    char dir[] = "/tmp/acpi-check-XXXXXX";
    assert_non_null(mkdtemp(dir));
    size_t off = 0;
    while (off < p.tables_len) {
        uint32_t len = le32_load(p.tables + off + 4);
        char name[16];
        snprintf(name, sizeof(name), "%c%c%c%c.dat", p.tables[off] | 0x20, p.tables[off + 1] | 0x20,
                 p.tables[off + 2] | 0x20, p.tables[off + 3] | 0x20);
        write_file(dir, name, p.tables + off, len);
        off += len;
    }
    acpi_blobs_free(&p.blobs);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s %s > %s/check.log 2>&1", check_script(), dir, dir);
    int status = system(cmd);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    snprintf(cmd, sizeof(cmd), "cat %s/check.log", dir);
    if (code != 0 && code != 77) {
        fprintf(stderr, "iasl check of the %s machine failed; tables kept in %s\n", label, dir);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log)\n");
    } else {
        printf("  %s machine: ", label);
        fflush(stdout);
        if (system(cmd) != 0)
            printf("(no log)\n");
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    return code;
}

static void test_iasl_disassembles_every_table(void **state)
{
    const char *script = check_script();
    if (!script || system("command -v iasl >/dev/null 2>&1") != 0) {
        prerequisite_missing("iasl (acpica-tools) or tests/acpi/check.sh not available; run from "
                             "the repository root with acpica-tools installed");
    }
    struct platform_desc d;
    defaults(&d, 1, 256ull << 20);
    assert_int_equal(iasl_check(&d, "1-vCPU 256 MiB"), 0);
    defaults(&d, 4, 8 * GIB);
    platform_desc_set_phys_bits(&d, 46);
    d.pvpanic_port = 0x505;
    assert_int_equal(iasl_check(&d, "4-vCPU 8 GiB pvpanic"), 0);
    defaults(&d, 255, 3 * GIB);
    d.hpet = false;
    d.ecam_base = 0;
    d.com_mask = 1;
    d.ps2_mouse = false;
    d.smi_cmd = 0;
    d.gpe0_base = 0;
    d.pm_timer_32bit = true;
    assert_int_equal(iasl_check(&d, "255-vCPU no-HPET no-ECAM"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pkg_length_boundaries),
        cmocka_unit_test(test_integer_prefixes),
        cmocka_unit_test(test_name_strings),
        cmocka_unit_test(test_strings_and_eisaid),
        cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_large_block_length),
        cmocka_unit_test(test_misuse_fails),
        cmocka_unit_test(test_resource_template),
        cmocka_unit_test(test_tables_link_up),
        cmocka_unit_test(test_blob_checksums_are_zero),
        cmocka_unit_test(test_loader_script_shape),
        cmocka_unit_test(test_loader_executor_rejects),
        cmocka_unit_test(test_madt),
        cmocka_unit_test(test_fadt_fields),
        cmocka_unit_test(test_tables_rebuilt_for_a_moved_pm_block),
        cmocka_unit_test(test_dsdt_contents),
        cmocka_unit_test(test_pci_windows),
        cmocka_unit_test(test_bad_descriptions),
        cmocka_unit_test(test_iasl_disassembles_every_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
