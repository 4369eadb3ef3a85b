/* fw_cfg: the port and DMA interfaces against a fake guest memory, the items
 * fw_cfg_build() produces (read back the way firmware reads them), e820,
 * bootorder paths, the ramfb file, and a hostile guest: every selector,
 * every port and access size, reads past the end, DMA descriptors and
 * buffers outside RAM, overflowing or huge, writes to read-only items. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "core/guest_mem.h"
#include "firmware/acpi.h"
#include "firmware/bootorder.h"
#include "firmware/e820.h"
#include "firmware/fw_cfg.h"
#include "firmware/platform.h"
#include "firmware/smbios.h"
#include "firmware/table_loader.h"

#include "support/fake_mem.h"
#include "support/state.h"

#define GIB (1024ull * 1024 * 1024)
#define RAM_SIZE (2u << 20)        /* guest RAM at 0 */
#define HIGH_RAM_BASE (4ull << 30) /* a little RAM at 4 GiB too */
#define HIGH_RAM_SIZE (64u << 10)
#define ROM_BASE 0xffff0000ull /* read-only, like the bootrom */
#define ROM_SIZE (64u << 10)
#define DESC 0x1000 /* where tests put DMA descriptors */
#define BUF 0x10000 /* and DMA buffers */

struct env {
    uint8_t *ram, *high, *rom; /* regions of fake_mem */
    struct fw_cfg fw;
};

static struct env *env;

static int setup(void **state)
{
    env = calloc(1, sizeof(*env));
    env->ram = fake_mem_add(0, RAM_SIZE, false, 0);
    env->high = fake_mem_add(HIGH_RAM_BASE, HIGH_RAM_SIZE, false, 0);
    env->rom = fake_mem_add(ROM_BASE, ROM_SIZE, true, 0);
    assert_int_equal(fw_cfg_init(&env->fw, &fake_mem), 0);
    log_set_level(LOG_CRITICAL); /* guest mistakes are logged; keep the output short */
    return 0;
}

static int teardown(void **state)
{
    env->fw.dev.ops->destroy(&env->fw.dev);
    fake_mem_free();
    free(env);
    log_set_level(LOG_INFO);
    return 0;
}

/* ---- guest-side helpers, as firmware drives the ports ---- */

static void select_item(uint16_t key)
{
    fw_cfg_io_ops.write(&env->fw, 0, 2, key);
}

static uint8_t read_byte(void)
{
    return (uint8_t)fw_cfg_io_ops.read(&env->fw, 1, 1);
}

static void read_bytes(uint16_t key, void *out, size_t len)
{
    select_item(key);
    for (size_t i = 0; i < len; i++)
        ((uint8_t *)out)[i] = read_byte();
}

/* Starts a DMA transfer: the descriptor address, big-endian, high then low. */
static void kick_dma(uint64_t desc)
{
    fw_cfg_dma_ops.write(&env->fw, 0, 4, __builtin_bswap32((uint32_t)(desc >> 32)));
    fw_cfg_dma_ops.write(&env->fw, 4, 4, __builtin_bswap32((uint32_t)desc));
}

static void put_desc(uint64_t at, uint32_t control, uint32_t length, uint64_t addr)
{
    uint8_t d[16];
    put_be32(d, control);
    put_be32(d + 4, length);
    put_be64(d + 8, addr);
    assert_true(guest_mem_write(&fake_mem, at, d, sizeof(d)));
}

static uint32_t desc_control(uint64_t at)
{
    uint8_t c[4];
    assert_true(guest_mem_read(&fake_mem, at, c, sizeof(c)));
    return get_be32(c);
}

/* A full DMA operation; returns the control word the device left. */
static uint32_t dma(uint32_t control, uint32_t length, uint64_t addr)
{
    put_desc(DESC, control, length, addr);
    kick_dma(DESC);
    return desc_control(DESC);
}

static uint32_t dma_select(uint16_t key, uint32_t op, uint32_t length, uint64_t addr)
{
    return dma(((uint32_t)key << 16) | FW_CFG_DMA_SELECT | op, length, addr);
}

/* Finds a file through the directory, as OVMF's QemuFwCfgFindFile does. */
static bool find_file(const char *name, uint16_t *key, uint32_t *size)
{
    uint8_t count_be[4];
    read_bytes(FW_CFG_FILE_DIR, count_be, 4);
    uint32_t count = get_be32(count_be);
    for (uint32_t i = 0; i < count; i++) {
        uint8_t e[FW_CFG_DIR_ENTRY_SIZE];
        for (size_t j = 0; j < sizeof(e); j++)
            e[j] = read_byte();
        if (strcmp((const char *)e + 8, name) == 0) {
            *size = get_be32(e);
            *key = get_be16(e + 4);
            return true;
        }
    }
    return false;
}

/* Reads a whole file by DMA into a fresh allocation. */
static uint8_t *dma_read_file(const char *name, uint32_t *size)
{
    uint16_t key;
    assert_true(find_file(name, &key, size));
    assert_true(*size <= RAM_SIZE - BUF);
    assert_int_equal(dma_select(key, FW_CFG_DMA_READ, *size, BUF), 0);
    uint8_t *copy = malloc(*size ? *size : 1);
    memcpy(copy, env->ram + BUF, *size);
    return copy;
}

static void build_into(struct fw_cfg *fw, unsigned cpus, uint64_t ram)
{
    struct platform_desc d;
    uint64_t low = ram < 3 * GIB ? ram : 3 * GIB;
    platform_desc_defaults(&d, cpus, low, ram - low);
    assert_int_equal(fw_cfg_build(fw, &d), 0);
}

static void build_default(unsigned cpus, uint64_t ram)
{
    build_into(&env->fw, cpus, ram);
}

/* ---- the basics ---- */

static void test_signature_and_id(void **state)
{
    char sig[5] = {0};
    read_bytes(FW_CFG_SIGNATURE, sig, 4);
    assert_string_equal(sig, "QEMU");
    uint8_t id[4];
    read_bytes(FW_CFG_ID, id, 4);
    assert_int_equal(le32_load(id), FW_CFG_ID_TRADITIONAL | FW_CFG_ID_DMA);
    /* The signature is selected after init (and reset), as in QEMU. */
    fw_cfg_io_ops.write(&env->fw, 0, 2, FW_CFG_SIGNATURE);
    env->fw.dev.ops->reset(&env->fw.dev);
    assert_int_equal(read_byte(), 'Q');
    /* The DMA register reads "QEMU CFG" in memory order at any width. */
    assert_int_equal(fw_cfg_dma_ops.read(&env->fw, 0, 4), 0x554d4551); /* "QEMU" */
    assert_int_equal(fw_cfg_dma_ops.read(&env->fw, 4, 4), 0x47464320); /* " CFG" */
    assert_int_equal(fw_cfg_dma_ops.read(&env->fw, 0, 8), 0x47464320554d4551ull);
    assert_int_equal(fw_cfg_dma_ops.read(&env->fw, 7, 1), 'G');
}

static void test_reads_past_the_end_are_zero(void **state)
{
    select_item(FW_CFG_SIGNATURE);
    for (int i = 0; i < 4; i++)
        read_byte();
    for (int i = 0; i < 100; i++)
        assert_int_equal(read_byte(), 0);
    select_item(0x1234); /* missing */
    for (int i = 0; i < 16; i++)
        assert_int_equal(read_byte(), 0);
}

static void test_every_selector(void **state)
{
    build_default(2, GIB);
    /* All 65536 keys: bounded work, no crash, missing ones read zero. */
    unsigned present = 0;
    for (uint32_t key = 0; key <= 0xffff; key++) {
        select_item((uint16_t)key);
        uint8_t first = read_byte();
        read_byte();
        if (env->fw.cur_item >= 0)
            present++;
        else
            assert_int_equal(first, 0);
    }
    /* signature, id, dir, nb_cpus, max_cpus, ram_size + 9 files */
    assert_int_equal(present, 6 + 8); /* the files include etc/sercon-port */
    /* DMA selection of every key too. */
    for (uint32_t key = 0; key <= 0xffff; key += 0x101)
        assert_int_equal(dma_select((uint16_t)key, FW_CFG_DMA_READ, 8, BUF), 0);
}

static void test_every_port_and_size(void **state)
{
    build_default(1, GIB);
    static const unsigned sizes[] = {1, 2, 4, 8};
    for (unsigned off = 0; off < FW_CFG_IO_COUNT; off++)
        for (unsigned s = 0; s < 4; s++) {
            fw_cfg_io_ops.read(&env->fw, off, sizes[s]);
            fw_cfg_io_ops.write(&env->fw, off, sizes[s], 0x19);
        }
    for (unsigned off = 0; off < FW_CFG_DMA_COUNT; off++)
        for (unsigned s = 0; s < 4; s++) {
            fw_cfg_dma_ops.read(&env->fw, off, sizes[s]);
            /* Values that, if taken as an address, point nowhere. */
            fw_cfg_dma_ops.write(&env->fw, off, sizes[s], 0xdeadbeefcafef00dull);
        }
    /* Byte writes do not select, and 2-byte reads return nothing. */
    select_item(FW_CFG_SIGNATURE);
    fw_cfg_io_ops.write(&env->fw, 0, 1, FW_CFG_ID);
    fw_cfg_io_ops.write(&env->fw, 1, 1, 0x55);
    assert_int_equal(fw_cfg_io_ops.read(&env->fw, 0, 2), 0);
    assert_int_equal(read_byte(), 'Q');
    /* A byte read of the selector port reads data too, as in QEMU. */
    assert_int_equal(fw_cfg_io_ops.read(&env->fw, 0, 1), 'E');
}

static void test_file_directory(void **state)
{
    build_default(3, 2 * GIB);
    uint8_t count_be[4];
    read_bytes(FW_CFG_FILE_DIR, count_be, 4);
    uint32_t count = get_be32(count_be);
    assert_int_equal(count, 8);
    char prev[FW_CFG_FILE_NAME_SIZE] = "";
    for (uint32_t i = 0; i < count; i++) {
        uint8_t e[FW_CFG_DIR_ENTRY_SIZE];
        for (size_t j = 0; j < sizeof(e); j++)
            e[j] = read_byte();
        const char *name = (const char *)e + 8;
        assert_int_equal(get_be16(e + 4), FW_CFG_FILE_FIRST + i); /* in name order */
        assert_int_equal(get_be16(e + 6), 0);
        assert_true(strcmp(prev, name) < 0);
        assert_int_equal(fw_cfg_file_selector(&env->fw, name), FW_CFG_FILE_FIRST + i);
        strcpy(prev, name);
    }
    static const char *const names[] = {
        "etc/acpi/rsdp",    "etc/acpi/tables",          "etc/e820",
        "etc/ramfb",        "etc/smbios/smbios-anchor", "etc/smbios/smbios-tables",
        "etc/table-loader",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        uint16_t key;
        uint32_t size;
        assert_true(find_file(names[i], &key, &size));
    }
    uint16_t key;
    uint32_t size;
    assert_false(find_file("bootorder", &key, &size)); /* none configured */
    assert_true(find_file("etc/ramfb", &key, &size));
    assert_int_equal(size, RAMFB_CFG_SIZE);
    assert_int_equal(fw_cfg_file_selector(&env->fw, "nope"), FW_CFG_INVALID);

    /* The legacy CPU count and RAM size items. */
    uint8_t v[8];
    read_bytes(FW_CFG_NB_CPUS, v, 2);
    assert_int_equal(le16_load(v), 3);
    read_bytes(FW_CFG_MAX_CPUS, v, 2);
    assert_int_equal(le16_load(v), 3);
    read_bytes(FW_CFG_RAM_SIZE, v, 8);
    assert_int_equal(le64_load(v), 2 * GIB);
}

/* The refresh hook: counts calls and writes the count into the item. */
static unsigned refreshes;

static void count_refresh(void *opaque, uint8_t *data, uint32_t size)
{
    assert_ptr_equal(opaque, &refreshes);
    assert_int_equal(size, 4);
    refreshes++;
    le32_store(data, refreshes);
}

static void test_refresh_on_select(void **state)
{
    refreshes = 0;
    assert_int_equal(fw_cfg_add_file(&env->fw, "opt/live", "\0\0\0\0", 4), 0);
    assert_int_equal(fw_cfg_set_refresh(&env->fw, "opt/live", count_refresh, &refreshes), 0);
    assert_int_equal(fw_cfg_set_refresh(&env->fw, "opt/none", count_refresh, &refreshes), -1);
    uint16_t key = fw_cfg_file_selector(&env->fw, "opt/live");
    uint8_t v[4];
    /* Each selection, through the port or by DMA, sees fresh bytes. */
    read_bytes(key, v, 4);
    assert_int_equal(le32_load(v), 1);
    read_bytes(key, v, 4);
    assert_int_equal(le32_load(v), 2);
    assert_int_equal(dma_select(key, FW_CFG_DMA_READ, 4, BUF), 0);
    assert_int_equal(le32_load(env->ram + BUF), 3);
    /* Reading on without selecting again does not refresh. */
    select_item(key);
    assert_int_equal(read_byte(), 4);
    assert_int_equal(dma(FW_CFG_DMA_READ, 3, BUF), 0);
    assert_int_equal(refreshes, 4);
    /* Other items do not call it. */
    read_bytes(FW_CFG_SIGNATURE, v, 4);
    assert_int_equal(refreshes, 4);
}

/* A snapshot taken part way through a refreshed item: the restored fw_cfg
 * keeps the selection and offset, and fw_cfg_refresh_selected (what the
 * VMM calls once the whole machine is loaded) rebuilds that item, so the
 * guest reads on in fresh bytes. Loading alone does not refresh. */
static void test_refresh_selected_after_restore(void **state)
{
    build_default(2, GIB);
    uint8_t zeros[4] = {0};
    assert_int_equal(fw_cfg_add_file(&env->fw, "opt/live", zeros, 4), 0);
    assert_int_equal(fw_cfg_set_refresh(&env->fw, "opt/live", count_refresh, &refreshes), 0);
    uint16_t key = fw_cfg_file_selector(&env->fw, "opt/live");
    refreshes = 0;
    select_item(key);
    assert_int_equal(read_byte(), 1);
    assert_int_equal(refreshes, 1);

    struct fw_cfg b;
    assert_int_equal(fw_cfg_init(&b, &fake_mem), 0);
    build_into(&b, 2, GIB);
    assert_int_equal(fw_cfg_add_file(&b, "opt/live", zeros, 4), 0);
    assert_int_equal(fw_cfg_set_refresh(&b, "opt/live", count_refresh, &refreshes), 0);
    struct snap_buf saved = {0};
    char err[512] = "";
    state_save(&env->fw.dev, &saved);
    assert_int_equal(state_load(&b.dev, saved.data, saved.len, err, sizeof(err)), 0);
    snap_buf_free(&saved);
    assert_int_equal(refreshes, 1);
    fw_cfg_refresh_selected(&b);
    assert_int_equal(refreshes, 2);
    /* The guest's next byte is the second of the rebuilt item. */
    uint8_t v[4];
    le32_store(v, 2);
    assert_int_equal(fw_cfg_io_ops.read(&b, 1, 1), v[1]);

    /* Nothing selected, or an item with no refresh: nothing is called. */
    b.cur_item = -1;
    fw_cfg_refresh_selected(&b);
    fw_cfg_io_ops.write(&b, 0, 2, FW_CFG_SIGNATURE);
    fw_cfg_refresh_selected(&b);
    assert_int_equal(refreshes, 2);
    b.dev.ops->destroy(&b.dev);
}

static void test_adding_items(void **state)
{
    assert_int_equal(fw_cfg_add_file(&env->fw, "opt/x", "ab", 2), 0);
    assert_int_equal(fw_cfg_add_file(&env->fw, "opt/x", "cd", 2), -1); /* duplicate */
    assert_int_equal(fw_cfg_add_file(&env->fw, "", "ab", 2), -1);
    assert_int_equal(fw_cfg_add_file(&env->fw, "has space", "ab", 2), -1);
    char long_name[80];
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_int_equal(fw_cfg_add_file(&env->fw, long_name, "ab", 2), -1);
    assert_int_equal(fw_cfg_add_bytes(&env->fw, FW_CFG_SIGNATURE, "x", 1), -1);
    assert_int_equal(fw_cfg_add_bytes(&env->fw, FW_CFG_FILE_DIR, "x", 1), -1);
    assert_int_equal(fw_cfg_add_bytes(&env->fw, 0x0100, "x", 1), -1); /* a file selector */
    assert_int_equal(fw_cfg_add_bytes(&env->fw, 0x8000, "x", 1), 0);  /* arch-local */
    assert_int_equal(fw_cfg_add_file(&env->fw, "opt/empty", NULL, 0), 0);
    unsigned added = 0;
    char name[32];
    for (int i = 0; i < FW_CFG_MAX_ITEMS; i++) {
        snprintf(name, sizeof(name), "opt/f%02d", i);
        if (fw_cfg_add_file(&env->fw, name, "z", 1) == 0)
            added++;
    }
    assert_int_equal(env->fw.item_count, FW_CFG_MAX_ITEMS);
    assert_true(added < FW_CFG_MAX_ITEMS);
    /* Adding a file renumbers (name order); a selection follows the key. */
    uint16_t key;
    uint32_t size;
    assert_true(find_file("opt/x", &key, &size));
    assert_int_equal(size, 2);
    assert_int_equal(dma_select(key, FW_CFG_DMA_READ, 2, BUF), 0);
    assert_memory_equal(env->ram + BUF, "ab", 2);
}

/* ---- DMA ---- */

static void test_dma_read_and_skip(void **state)
{
    memset(env->ram + BUF, 0xaa, 16);
    assert_int_equal(dma_select(FW_CFG_SIGNATURE, FW_CFG_DMA_READ, 4, BUF), 0);
    assert_memory_equal(env->ram + BUF, "QEMU", 4);
    assert_int_equal(env->ram[BUF + 4], 0xaa);

    /* Past the end: the rest is zero-filled, success. */
    memset(env->ram + BUF, 0xaa, 16);
    assert_int_equal(dma_select(FW_CFG_SIGNATURE, FW_CFG_DMA_READ, 16, BUF), 0);
    static const uint8_t padded[16] = {'Q', 'E', 'M', 'U'};
    assert_memory_equal(env->ram + BUF, padded, 16);

    /* Skip then read continues where the skip left off. */
    assert_int_equal(dma_select(FW_CFG_SIGNATURE, FW_CFG_DMA_SKIP, 2, 0), 0);
    assert_int_equal(dma(FW_CFG_DMA_READ, 2, BUF), 0);
    assert_memory_equal(env->ram + BUF, "MU", 2);
    /* Skipping far past the end clamps; the next read is all zeros. */
    assert_int_equal(dma_select(FW_CFG_ID, FW_CFG_DMA_SKIP, 0xffffffffu, 0), 0);
    memset(env->ram + BUF, 0xaa, 4);
    assert_int_equal(dma(FW_CFG_DMA_READ, 4, BUF), 0);
    assert_int_equal(le32_load(env->ram + BUF), 0);
    /* Select alone (no operation) succeeds and moves the data port. */
    assert_int_equal(dma_select(FW_CFG_ID, 0, 0, 0), 0);
    assert_int_equal(read_byte(), FW_CFG_ID_TRADITIONAL | FW_CFG_ID_DMA);
    /* Missing items read as zeros. */
    memset(env->ram + BUF, 0xaa, 8);
    assert_int_equal(dma_select(0x7777, FW_CFG_DMA_READ, 8, BUF), 0);
    assert_int_equal(le64_load(env->ram + BUF), 0);
    /* A length of zero touches nothing, even at a bad address. */
    assert_int_equal(dma_select(FW_CFG_ID, FW_CFG_DMA_READ, 0, 0xfffffffffffff000ull), 0);

    /* A descriptor and buffer in RAM above 4 GiB; one 64-bit register write. */
    uint8_t d[16];
    put_be32(d, ((uint32_t)FW_CFG_SIGNATURE << 16) | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ);
    put_be32(d + 4, 4);
    put_be64(d + 8, HIGH_RAM_BASE + 0x100);
    memcpy(env->high, d, sizeof(d));
    fw_cfg_dma_ops.write(&env->fw, 0, 8, __builtin_bswap64(HIGH_RAM_BASE));
    assert_int_equal(get_be32(env->high), 0);
    assert_memory_equal(env->high + 0x100, "QEMU", 4);
}

static void test_dma_bad_buffers(void **state)
{
    /* Each of these: error bit, nothing written anywhere, device still works. */
    static const struct {
        uint32_t length;
        uint64_t addr;
    } bad[] = {
        {4, RAM_SIZE},               /* just past RAM */
        {8, RAM_SIZE - 4},           /* straddling the end */
        {16, 0xfffffffffffffff8ull}, /* address + length overflows */
        {0xffffffffu, BUF},          /* huge */
        {4, 0x80000000ull},          /* a hole */
        {4, ROM_BASE},               /* read-only memory */
        {16, HIGH_RAM_BASE + HIGH_RAM_SIZE - 8},
    };
    uint8_t *snapshot = malloc(RAM_SIZE);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint32_t control = ((uint32_t)FW_CFG_SIGNATURE << 16) | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ;
        put_desc(DESC, control, bad[i].length, bad[i].addr);
        memcpy(snapshot, env->ram, RAM_SIZE);
        kick_dma(DESC);
        assert_int_equal(desc_control(DESC), FW_CFG_DMA_ERROR);
        put_be32(snapshot + DESC, FW_CFG_DMA_ERROR); /* the only change */
        assert_memory_equal(env->ram, snapshot, RAM_SIZE);
    }
    free(snapshot);
    for (size_t i = 0; i < ROM_SIZE; i++)
        assert_int_equal(env->rom[i], 0);
    assert_int_equal(dma_select(FW_CFG_SIGNATURE, FW_CFG_DMA_READ, 4, BUF), 0);
    assert_memory_equal(env->ram + BUF, "QEMU", 4);
}

static void test_dma_bad_descriptors(void **state)
{
    uint8_t *snapshot = malloc(RAM_SIZE);
    memcpy(snapshot, env->ram, RAM_SIZE);
    /* Descriptors outside RAM, straddling its end, wrapping: ignored. */
    static const uint64_t where[] = {RAM_SIZE, RAM_SIZE - 8, 0xfffffffffffffff8ull, 0x80000000ull,
                                     HIGH_RAM_BASE + HIGH_RAM_SIZE - 4};
    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++)
        kick_dma(where[i]);
    assert_memory_equal(env->ram, snapshot, RAM_SIZE);
    free(snapshot);

    /* A descriptor in read-only memory is read but cannot be completed. */
    put_be32(env->rom, ((uint32_t)FW_CFG_SIGNATURE << 16) | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ);
    put_be32(env->rom + 4, 4);
    put_be64(env->rom + 8, BUF);
    memset(env->ram + BUF, 0, 4);
    kick_dma(ROM_BASE);
    assert_memory_equal(env->ram + BUF, "QEMU", 4);
    assert_int_equal(get_be32(env->rom), ((uint32_t)FW_CFG_SIGNATURE << 16) | 0x0a);

    /* A descriptor whose buffer overlaps it: completion is written last. */
    put_desc(BUF, ((uint32_t)FW_CFG_ID << 16) | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 16, BUF);
    kick_dma(BUF);
    assert_int_equal(desc_control(BUF), 0);
    assert_int_equal(env->ram[BUF + 4], 0);

    /* The high half is consumed by each transfer. */
    fw_cfg_dma_ops.write(&env->fw, 0, 4, __builtin_bswap32(2));
    put_desc(DESC, ((uint32_t)FW_CFG_ID << 16) | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 4, BUF);
    fw_cfg_dma_ops.write(&env->fw, 4, 4, __builtin_bswap32(DESC)); /* 0x2_0000_1000: no RAM */
    assert_int_equal(desc_control(DESC),
                     ((uint32_t)FW_CFG_ID << 16) | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ);
    fw_cfg_dma_ops.write(&env->fw, 4, 4, __builtin_bswap32(DESC));
    assert_int_equal(desc_control(DESC), 0);
}

static void test_dma_writes(void **state)
{
    build_default(1, GIB);
    /* Read-only items refuse writes and keep their contents. */
    memcpy(env->ram + BUF, "EVIL", 4);
    assert_int_equal(dma_select(FW_CFG_SIGNATURE, FW_CFG_DMA_WRITE, 4, BUF), FW_CFG_DMA_ERROR);
    uint16_t key;
    uint32_t size;
    assert_true(find_file("etc/acpi/tables", &key, &size));
    assert_int_equal(dma_select(key, FW_CFG_DMA_WRITE, 4, BUF), FW_CFG_DMA_ERROR);
    assert_int_equal(dma_select(0x4321, FW_CFG_DMA_WRITE, 4, BUF), FW_CFG_DMA_ERROR);
    char sig[5] = {0};
    read_bytes(FW_CFG_SIGNATURE, sig, 4);
    assert_string_equal(sig, "QEMU");
    /* Legacy data-port writes are ignored. */
    select_item(FW_CFG_SIGNATURE);
    fw_cfg_io_ops.write(&env->fw, 1, 1, 'X');
    assert_int_equal(read_byte(), 'Q');

    assert_true(find_file("etc/ramfb", &key, &size));
    /* Past the end of the writable file, from outside RAM: refused. */
    assert_int_equal(dma_select(key, FW_CFG_DMA_WRITE, RAMFB_CFG_SIZE + 1, BUF), FW_CFG_DMA_ERROR);
    assert_int_equal(dma_select(key, FW_CFG_DMA_WRITE, 4, RAM_SIZE), FW_CFG_DMA_ERROR);
    assert_int_equal(dma_select(key, FW_CFG_DMA_SKIP, RAMFB_CFG_SIZE, 0), 0);
    assert_int_equal(dma(FW_CFG_DMA_WRITE, 1, BUF), FW_CFG_DMA_ERROR);
    assert_int_equal(dma(FW_CFG_DMA_WRITE, 0, BUF), 0);
    struct ramfb_mode mode;
    assert_false(fw_cfg_ramfb_mode(&env->fw, &mode));
}

static void write_ramfb(uint16_t key, const struct ramfb_mode *m, uint32_t expect)
{
    ramfb_encode(m, env->ram + BUF);
    assert_int_equal(dma_select(key, FW_CFG_DMA_WRITE, RAMFB_CFG_SIZE, BUF), expect);
}

static void test_ramfb(void **state)
{
    build_default(1, GIB);
    uint16_t key;
    uint32_t size;
    assert_true(find_file("etc/ramfb", &key, &size));
    struct ramfb_mode good = {.addr = 0x40000,
                              .fourcc = RAMFB_FOURCC_XRGB8888,
                              .width = 320,
                              .height = 200,
                              .stride = 320 * 4};
    write_ramfb(key, &good, 0);
    struct ramfb_mode got;
    assert_true(fw_cfg_ramfb_mode(&env->fw, &got));
    assert_int_equal(got.addr, 0x40000);
    assert_int_equal(got.width, 320);
    assert_int_equal(got.height, 200);
    assert_int_equal(got.stride, 1280);
    /* Reads return what the guest wrote. */
    assert_int_equal(dma_select(key, FW_CFG_DMA_READ, RAMFB_CFG_SIZE, BUF + 0x100), 0);
    assert_memory_equal(env->ram + BUF + 0x100, env->ram + BUF, RAMFB_CFG_SIZE);

    /* Rejected modes leave the current one in place (the write itself succeeds). */
    struct ramfb_mode bad[] = {good, good, good, good, good, good, good};
    bad[0].fourcc = 0x34325241;          /* AR24 */
    bad[1].width = 8;                    /* too small */
    bad[2].height = 20000;               /* too large */
    bad[3].stride = 100;                 /* shorter than a row */
    bad[4].addr = RAM_SIZE - 1000;       /* runs off the end of RAM */
    bad[5].addr = ROM_BASE;              /* not RAM */
    bad[6].addr = 0xfffffffffffff000ull; /* wraps */
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_ramfb(key, &bad[i], 0);
        assert_true(fw_cfg_ramfb_mode(&env->fw, &got));
        assert_int_equal(got.addr, 0x40000);
        assert_int_equal(got.width, 320);
    }

    /* Stride 0 means width * 4; a config may arrive in two writes. */
    struct ramfb_mode second = {.addr = HIGH_RAM_BASE,
                                .fourcc = RAMFB_FOURCC_XRGB8888,
                                .width = 16,
                                .height = 16,
                                .stride = 0};
    ramfb_encode(&second, env->ram + BUF);
    assert_int_equal(dma_select(key, FW_CFG_DMA_WRITE, 14, BUF), 0);
    assert_true(fw_cfg_ramfb_mode(&env->fw, &got));
    assert_int_equal(got.addr, 0x40000); /* not applied yet */
    assert_int_equal(dma(FW_CFG_DMA_WRITE, 14, BUF + 14), 0);
    assert_true(fw_cfg_ramfb_mode(&env->fw, &got));
    assert_int_equal(got.addr, HIGH_RAM_BASE);
    assert_int_equal(got.stride, 64);

    /* A reset forgets the mode and the written bytes. */
    env->fw.dev.ops->reset(&env->fw.dev);
    assert_false(fw_cfg_ramfb_mode(&env->fw, &got));
    memset(env->ram + BUF, 0xaa, RAMFB_CFG_SIZE);
    assert_int_equal(dma_select(key, FW_CFG_DMA_READ, RAMFB_CFG_SIZE, BUF), 0);
    for (unsigned i = 0; i < RAMFB_CFG_SIZE; i++)
        assert_int_equal(env->ram[BUF + i], 0);
}

/* ---- state ---- */

/* A guest mid-way through reconfiguring ramfb: one mode adopted, half of
 * the next written (ramfb selected at offset 14), and the high half of a
 * DMA descriptor address (in RAM above 4 GiB) written. A fresh fw_cfg built
 * from the same config takes the state; the guest finishes the transfer
 * there and the new mode is adopted. A state from another configuration's
 * item set is refused. */
static void test_state_roundtrip_and_refusals(void **state)
{
    build_default(2, GIB);
    uint16_t key;
    uint32_t size;
    assert_true(find_file("etc/ramfb", &key, &size));
    struct ramfb_mode good = {.addr = 0x40000,
                              .fourcc = RAMFB_FOURCC_XRGB8888,
                              .width = 320,
                              .height = 200,
                              .stride = 320 * 4};
    write_ramfb(key, &good, 0);
    struct ramfb_mode second = {.addr = HIGH_RAM_BASE,
                                .fourcc = RAMFB_FOURCC_XRGB8888,
                                .width = 16,
                                .height = 16,
                                .stride = 0};
    ramfb_encode(&second, env->ram + BUF);
    assert_int_equal(dma_select(key, FW_CFG_DMA_WRITE, 14, BUF), 0);
    const uint64_t desc = HIGH_RAM_BASE + 0x100;
    fw_cfg_dma_ops.write(&env->fw, 0, 4, __builtin_bswap32((uint32_t)(desc >> 32)));

    struct fw_cfg b;
    assert_int_equal(fw_cfg_init(&b, &fake_mem), 0);
    build_into(&b, 2, GIB);
    assert_state_roundtrip(&env->fw.dev, &b.dev);
    struct ramfb_mode got;
    assert_true(fw_cfg_ramfb_mode(&b, &got));
    assert_int_equal(got.addr, 0x40000);
    assert_int_equal(got.width, 320);
    /* The low half starts the transfer the saved guest had begun. */
    uint8_t d[16];
    put_be32(d, FW_CFG_DMA_WRITE);
    put_be32(d + 4, 14);
    put_be64(d + 8, BUF + 14);
    assert_true(guest_mem_write(&fake_mem, desc, d, sizeof(d)));
    fw_cfg_dma_ops.write(&b, 4, 4, __builtin_bswap32((uint32_t)desc));
    assert_int_equal(desc_control(desc), 0);
    assert_true(fw_cfg_ramfb_mode(&b, &got));
    assert_int_equal(got.addr, HIGH_RAM_BASE);
    assert_int_equal(got.stride, 64);

    assert_state_refusals(&env->fw.dev, &b.dev);
    const uint32_t far = 1000, more_items = env->fw.item_count + 1;
    const uint64_t other_layout = 0x1234;
    uint8_t bad_mode[RAMFB_CFG_SIZE];
    struct ramfb_mode off_ram = good;
    off_ram.addr = RAM_SIZE - 1000; /* runs off the end of RAM */
    ramfb_encode(&off_ram, bad_mode);
    assert_state_field_refused(&env->fw.dev, &b.dev, "offset", &far, 4);
    assert_state_field_refused(&env->fw.dev, &b.dev, "item_count", &more_items, 4);
    assert_state_field_refused(&env->fw.dev, &b.dev, "layout", &other_layout, 8);
    assert_state_field_refused(&env->fw.dev, &b.dev, "ramfb_mode", bad_mode, sizeof(bad_mode));
    b.dev.ops->destroy(&b.dev);

    /* Another configuration: other table sizes. */
    struct fw_cfg other;
    assert_int_equal(fw_cfg_init(&other, &fake_mem), 0);
    build_into(&other, 4, 2 * GIB);
    struct snap_buf saved = {0};
    char err[512] = "";
    state_save(&env->fw.dev, &saved);
    assert_int_not_equal(state_load(&other.dev, saved.data, saved.len, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "fw_cfg"));
    assert_true(strstr(err, "layout") || strstr(err, "item_count"));
    snap_buf_free(&saved);
    other.dev.ops->destroy(&other.dev);
}

/* ---- what firmware gets ---- */

static void test_firmware_view_of_acpi(void **state)
{
    struct platform_desc d;
    platform_desc_defaults(&d, 4, GIB, 0);
    assert_int_equal(fw_cfg_build(&env->fw, &d), 0);
    uint32_t tables_size, rsdp_size, loader_size;
    uint8_t *tables = dma_read_file(ACPI_TABLES_FILE, &tables_size);
    uint8_t *rsdp = dma_read_file(ACPI_RSDP_FILE, &rsdp_size);
    uint8_t *loader = dma_read_file(ACPI_LOADER_FILE, &loader_size);
    /* Same bytes as the generator's. */
    struct acpi_blobs b;
    assert_int_equal(acpi_build(&d, &b), 0);
    assert_int_equal(tables_size, b.tables.len);
    assert_memory_equal(tables, b.tables.data, tables_size);
    assert_int_equal(rsdp_size, b.rsdp.len);
    assert_int_equal(loader_size, b.loader.len);
    acpi_blobs_free(&b);
    /* The firmware's loader run succeeds and leaves valid checksums. */
    struct loader_file files[2] = {{ACPI_TABLES_FILE, tables, tables_size, 0x3ff00000, 0},
                                   {ACPI_RSDP_FILE, rsdp, rsdp_size, 0xf0000, 0}};
    char why[128];
    assert_int_equal(loader_execute(loader, loader_size, files, 2, why, sizeof(why)), 0);
    assert_int_equal(byte_sum(rsdp, rsdp_size), 0);
    for (size_t off = 0; off < tables_size;) {
        uint32_t len = le32_load(tables + off + 4);
        if (memcmp(tables + off, "FACS", 4) != 0)
            assert_int_equal(byte_sum(tables + off, len), 0);
        off += len;
    }
    free(tables);
    free(rsdp);
    free(loader);

    uint32_t anchor_size, smbios_size;
    uint8_t *anchor = dma_read_file(SMBIOS_ANCHOR_FILE, &anchor_size);
    uint8_t *smbios = dma_read_file(SMBIOS_TABLES_FILE, &smbios_size);
    assert_int_equal(anchor_size, SMBIOS3_ANCHOR_SIZE);
    assert_int_equal(le32_load(anchor + 12), smbios_size);
    assert_int_equal(smbios[smbios_size - 6], 127);
    free(anchor);
    free(smbios);
}

static void test_e820(void **state)
{
    struct platform_desc d;
    platform_desc_defaults(&d, 1, 3 * GIB, 5 * GIB);
    struct bytebuf e;
    assert_int_equal(e820_build(&d, &e), 0);
    assert_int_equal(e.len, 3 * E820_ENTRY_SIZE);
    /* Address order: low RAM, KVM's reserved pages, high RAM. */
    assert_int_equal(le64_load(e.data), 0);
    assert_int_equal(le64_load(e.data + 8), 3 * GIB);
    assert_int_equal(le32_load(e.data + 16), E820_RAM);
    assert_int_equal(le64_load(e.data + 20), 0xfeffc000ull);
    assert_int_equal(le64_load(e.data + 28), 0x4000);
    assert_int_equal(le32_load(e.data + 36), E820_RESERVED);
    assert_int_equal(le64_load(e.data + 40), 4 * GIB);
    assert_int_equal(le64_load(e.data + 48), 5 * GIB);
    assert_int_equal(le32_load(e.data + 56), E820_RAM);
    bytebuf_free(&e);

    /* No high RAM: no entry for it. Overlaps and empty ranges are refused. */
    platform_desc_defaults(&d, 1, GIB, 0);
    assert_int_equal(e820_build(&d, &e), 0);
    assert_int_equal(e.len, 2 * E820_ENTRY_SIZE);
    bytebuf_free(&e);
    d.reserved[d.reserved_count++] = (struct platform_range){GIB - 4096, 8192};
    assert_int_equal(e820_build(&d, &e), -1);
    d.reserved[d.reserved_count - 1] = (struct platform_range){2 * GIB, 0};
    assert_int_equal(e820_build(&d, &e), -1);
    d.reserved[d.reserved_count - 1] = (struct platform_range){~0ull - 10, 100};
    assert_int_equal(e820_build(&d, &e), -1);

    /* The fw_cfg file carries the same bytes. */
    build_default(1, 2 * GIB);
    uint32_t size;
    uint8_t *file = dma_read_file(E820_FILE, &size);
    assert_int_equal(size, 2 * E820_ENTRY_SIZE);
    assert_int_equal(le64_load(file + 8), 2 * GIB);
    free(file);
}

static void test_bootorder_paths(void **state)
{
    static const struct {
        struct platform_boot_device dev;
        const char *path;
    } cases[] = {
        {{BOOT_DEVICE_VIRTIO_BLOCK, 0, 4, 0}, "/pci@i0cf8/scsi@4/disk@0,0"},
        {{BOOT_DEVICE_VIRTIO_BLOCK, 0, 0x1f, 3}, "/pci@i0cf8/scsi@1f,3/disk@0,0"},
        {{BOOT_DEVICE_NVME, 0, 5, 0}, "/pci@i0cf8/pci8086,5845@5/namespace@1,0"},
        {{BOOT_DEVICE_NVME, 0, 0x10, 1}, "/pci@i0cf8/pci8086,5845@10,1/namespace@1,0"},
        {{BOOT_DEVICE_NIC, 0, 6, 0}, "/pci@i0cf8/ethernet@6"},
        {{BOOT_DEVICE_PCI, 0, 7, 2}, "/pci@i0cf8/device@7,2"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[BOOTORDER_PATH_MAX];
        int n = bootorder_path(&cases[i].dev, path, sizeof(path));
        assert_int_equal(n, (int)strlen(cases[i].path));
        assert_string_equal(path, cases[i].path);
    }
    char path[BOOTORDER_PATH_MAX];
    struct platform_boot_device bus1 = {BOOT_DEVICE_NVME, 1, 4, 0};
    struct platform_boot_device slot32 = {BOOT_DEVICE_NVME, 0, 32, 0};
    struct platform_boot_device func8 = {BOOT_DEVICE_NVME, 0, 3, 8};
    struct platform_boot_device kind = {(enum boot_device_kind)99, 0, 3, 0};
    assert_int_equal(bootorder_path(&bus1, path, sizeof(path)), -1);
    assert_int_equal(bootorder_path(&slot32, path, sizeof(path)), -1);
    assert_int_equal(bootorder_path(&func8, path, sizeof(path)), -1);
    assert_int_equal(bootorder_path(&kind, path, sizeof(path)), -1);
    char tiny[8];
    assert_int_equal(bootorder_path(&cases[0].dev, tiny, sizeof(tiny)), -1);

    struct platform_boot_device two[2] = {cases[2].dev, cases[0].dev};
    struct bytebuf b;
    assert_int_equal(bootorder_build(two, 2, &b), 0);
    static const char want[] =
        "/pci@i0cf8/pci8086,5845@5/namespace@1,0\n/pci@i0cf8/scsi@4/disk@0,0\nHALT";
    assert_int_equal(b.len, sizeof(want)); /* with the NUL */
    assert_memory_equal(b.data, want, sizeof(want));
    bytebuf_free(&b);
    two[1] = bus1;
    assert_int_equal(bootorder_build(two, 2, &b), -1);
}

/* The wiring's driver table decides which drivers boot, and as what. */
static enum boot_device_kind test_boot_kind(enum config_driver driver)
{
    switch (driver) {
    case CONFIG_DRIVER_VIRTIO_BLOCK:
        return BOOT_DEVICE_VIRTIO_BLOCK;
    case CONFIG_DRIVER_NVME:
        return BOOT_DEVICE_NVME;
    case CONFIG_DRIVER_VIRTIO_VIONA:
        return BOOT_DEVICE_NIC;
    default:
        return BOOT_DEVICE_NONE;
    }
}

static void test_config_to_firmware(void **state)
{
    static const char text[] = "[main]\n"
                               "name = \"vm\"\n"
                               "cpus = 2\n"
                               "bootrom = \"/dev/null\"\n"
                               "bootrom_version = \"v9.9\"\n"
                               "memory = 1024\n"
                               "boot_order = [\"disk\", \"nvme0\", \"net0\"]\n"
                               "[block_dev.d]\n"
                               "type = \"mem-async\"\n"
                               "size = 1048576\n"
                               "[dev.disk]\n"
                               "driver = \"pci-virtio-block\"\n"
                               "block_dev = \"d\"\n"
                               "pci-path = \"0.4.0\"\n"
                               "[dev.nvme0]\n"
                               "driver = \"pci-nvme\"\n"
                               "block_dev = \"d\"\n"
                               "pci-path = \"0.5.0\"\n"
                               "[dev.net0]\n"
                               "driver = \"pci-virtio-viona\"\n"
                               "vnic = \"tap0\"\n"
                               "pci-path = \"0.6.1\"\n";
    struct config cfg;
    assert_int_equal(config_parse("t.toml", text, strlen(text), &cfg), 0);
    struct platform_desc d;
    platform_desc_defaults(&d, cfg.main.cpus, cfg.main.memory_mib << 20, 0);
    assert_int_equal(platform_desc_from_config(&d, &cfg, test_boot_kind), 0);
    assert_string_equal(d.bootrom_version, "v9.9");
    assert_int_equal(d.boot_count, 3);
    assert_int_equal(fw_cfg_build(&env->fw, &d), 0);
    uint32_t size;
    char *order = (char *)dma_read_file(BOOTORDER_FILE, &size);
    static const char want[] = "/pci@i0cf8/scsi@4/disk@0,0\n"
                               "/pci@i0cf8/pci8086,5845@5/namespace@1,0\n"
                               "/pci@i0cf8/ethernet@6,1\n"
                               "HALT";
    assert_int_equal(size, sizeof(want));
    assert_memory_equal(order, want, sizeof(want));
    free(order);
    config_free(&cfg);

    /* A pvpanic device cannot be booted from (as in propolis). */
    static const char pvpanic[] = "[main]\n"
                                  "name = \"vm\"\n"
                                  "cpus = 1\n"
                                  "bootrom = \"/dev/null\"\n"
                                  "memory = 512\n"
                                  "boot_order = [\"p\"]\n"
                                  "[dev.p]\n"
                                  "driver = \"qemu-pvpanic\"\n"
                                  "pci-path = \"0.7.0\"\n";
    assert_int_equal(config_parse("t.toml", pvpanic, strlen(pvpanic), &cfg), 0);
    platform_desc_defaults(&d, 1, 512 << 20, 0);
    assert_int_equal(platform_desc_from_config(&d, &cfg, test_boot_kind), -1);
    config_free(&cfg);

    /* An ISA pvpanic gets its QEMU0001 device; the version defaults. */
    static const char isa[] = "[main]\n"
                              "name = \"vm\"\n"
                              "cpus = 1\n"
                              "bootrom = \"/dev/null\"\n"
                              "memory = 512\n"
                              "[dev.p]\n"
                              "driver = \"qemu-pvpanic\"\n"
                              "enable_isa = true\n";
    assert_int_equal(config_parse("t.toml", isa, strlen(isa), &cfg), 0);
    platform_desc_defaults(&d, 1, 512 << 20, 0);
    assert_int_equal(platform_desc_from_config(&d, &cfg, test_boot_kind), 0);
    assert_int_equal(d.pvpanic_port, 0x505);
    assert_int_equal(d.boot_count, 0);
    assert_string_equal(d.bootrom_version, CONFIG_DEFAULT_BOOTROM_VERSION);
    config_free(&cfg);
}

/* Two vCPU threads racing: DMA with select is atomic; ports never crash. */
struct racer {
    uint64_t desc, buf;
    unsigned iterations;
    unsigned good;
};

static void *dma_racer(void *arg)
{
    struct racer *r = arg;
    for (unsigned i = 0; i < r->iterations; i++) {
        uint8_t d[16];
        put_be32(d, ((uint32_t)FW_CFG_SIGNATURE << 16) | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ);
        put_be32(d + 4, 4);
        put_be64(d + 8, r->buf);
        memcpy(env->ram + r->desc, d, sizeof(d));
        memset(env->ram + r->buf, 0, 4);
        fw_cfg_dma_ops.write(&env->fw, 0, 8, __builtin_bswap64(r->desc));
        if (get_be32(env->ram + r->desc) == 0 && memcmp(env->ram + r->buf, "QEMU", 4) == 0)
            r->good++;
    }
    return NULL;
}

static void *port_racer(void *arg)
{
    struct racer *r = arg;
    for (unsigned i = 0; i < r->iterations; i++) {
        fw_cfg_io_ops.write(&env->fw, 0, 2, i & 0x3f);
        fw_cfg_io_ops.read(&env->fw, 1, 1);
        fw_cfg_dma_ops.write(&env->fw, 0, 4, 0x12345678); /* a stray high half */
    }
    return NULL;
}

static void test_concurrent_access(void **state)
{
    build_default(2, GIB);
    struct racer a = {0x2000, 0x3000, 2000, 0}, b = {0x4000, 0x5000, 2000, 0}, c = {0, 0, 5000, 0};
    pthread_t ta, tb, tc;
    assert_int_equal(pthread_create(&ta, NULL, dma_racer, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, dma_racer, &b), 0);
    assert_int_equal(pthread_create(&tc, NULL, port_racer, &c), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_join(tc, NULL);
    /* A 64-bit register write replaces any half-written address. */
    assert_int_equal(a.good, a.iterations);
    assert_int_equal(b.good, b.iterations);
}

static void test_bad_platform_is_refused(void **state)
{
    struct platform_desc d;
    platform_desc_defaults(&d, 0, GIB, 0);
    assert_int_equal(fw_cfg_build(&env->fw, &d), -1);
    platform_desc_defaults(&d, 1, GIB, 0);
    d.prt_gsi[3][0] = 9; /* must be an IOAPIC pin 16-23 */
    assert_int_equal(fw_cfg_build(&env->fw, &d), -1);
    platform_desc_defaults(&d, 1, GIB, 0);
    d.boot_count = 1;
    d.boot[0] = (struct platform_boot_device){BOOT_DEVICE_NIC, 2, 1, 0};
    assert_int_equal(fw_cfg_build(&env->fw, &d), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_signature_and_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_past_the_end_are_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_selector, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_port_and_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adding_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dma_read_and_skip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dma_bad_buffers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dma_bad_descriptors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dma_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ramfb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_roundtrip_and_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_firmware_view_of_acpi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_e820, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bootorder_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_to_firmware, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_platform_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_on_select, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_selected_after_restore, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
