/* acpiread: the ACPI tables read through fw_cfg's data port in two parts,
 * so that a snapshot can fall between them, as it can while firmware
 * loads them.
 *   acpiread start   moves the PIIX4 PM block to 0x6000 (PMBA), selects
 *                    etc/acpi/tables and reads the first 36 bytes
 *   acpiread rest    reads on without selecting again and prints the
 *                    FADT's PM1a event and control blocks, which must
 *                    follow the moved PM block
 * Long mode only (placed in the ROM's lower half). The tables are kept at
 * ACPIREAD_ADDR, so a restored guest still has the first part. */
#include <stdbool.h>
#include <stdint.h>

#include "acpiread.h"
#include "cpu.h"
#include "layout.h"
#include "pci.h"
#include "text.h"

#define FW_CFG_SELECTOR 0x510
#define FW_CFG_DATA 0x511
#define FW_CFG_FILE_DIR 0x0019
#define FIRST_PART 36 /* one table header */

struct acpiread_state {
    uint32_t size, read;
    uint8_t blob[ACPIREAD_SIZE - 8];
};

static struct acpiread_state *state(void)
{
    return (struct acpiread_state *)(uintptr_t)ACPIREAD_ADDR;
}

static void fw_cfg_select(uint16_t key)
{
    __asm__ volatile("outw %w0, %w1" ::"a"(key), "Nd"((uint16_t)FW_CFG_SELECTOR));
}

static uint32_t fw_cfg_be(unsigned bytes)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < bytes; i++)
        v = v << 8 | inb(FW_CFG_DATA);
    return v;
}

static uint32_t le32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The whole of a equals b. */
static bool name_is(const char *a, const char *b)
{
    const char *rest;
    return word_is(a, b, &rest) && !*rest;
}

static void start(struct acpiread_state *st, void (*say)(const char *))
{
    outl(0xCF8, 0x80000000u | PIIX4_PM_DEVFN << 8 | PIIX4_PM_PMBA);
    outl(0xCFC, PM_BASE_MOVED | 1);
    fw_cfg_select(FW_CFG_FILE_DIR);
    uint32_t count = fw_cfg_be(4);
    uint16_t key = 0;
    st->size = st->read = 0;
    for (uint32_t i = 0; i < count && i < 4096; i++) {
        uint32_t size = fw_cfg_be(4);
        uint16_t select = (uint16_t)fw_cfg_be(2);
        fw_cfg_be(2); /* reserved */
        char name[56];
        for (unsigned c = 0; c < sizeof(name); c++)
            name[c] = (char)inb(FW_CFG_DATA);
        name[sizeof(name) - 1] = 0;
        if (name_is(name, "etc/acpi/tables")) {
            key = select;
            st->size = size;
        }
    }
    if (!key || st->size < FIRST_PART || st->size > sizeof(st->blob)) {
        say("acpiread FAIL no usable etc/acpi/tables");
        return;
    }
    fw_cfg_select(key);
    for (; st->read < FIRST_PART; st->read++)
        st->blob[st->read] = inb(FW_CFG_DATA);
    struct out_line l = {0};
    ln_str(&l, "acpiread started: pm block 0x");
    ln_hex(&l, PM_BASE_MOVED, 4);
    ln_str(&l, ", ");
    ln_dec(&l, st->read);
    ln_str(&l, " of ");
    ln_dec(&l, st->size);
    ln_str(&l, " bytes read");
    say(l.buf);
}

static void rest(struct acpiread_state *st, void (*say)(const char *))
{
    if (st->read != FIRST_PART || st->size > sizeof(st->blob)) {
        say("acpiread FAIL not started");
        return;
    }
    for (; st->read < st->size; st->read++)
        st->blob[st->read] = inb(FW_CFG_DATA);
    /* The tables lie back to back, each with its length at offset 4. */
    for (uint32_t at = 0; at + 8 <= st->size;) {
        const uint8_t *t = st->blob + at;
        uint32_t len = le32_at(t + 4);
        if (len < 8 || len > st->size - at)
            break;
        if (t[0] == 'F' && t[1] == 'A' && t[2] == 'C' && t[3] == 'P' && len >= 68) {
            struct out_line l = {0};
            ln_str(&l, "acpiread fadt pm1a_evt 0x");
            ln_hex(&l, le32_at(t + 56), 4);
            ln_str(&l, " pm1a_cnt 0x");
            ln_hex(&l, le32_at(t + 64), 4);
            say(l.buf);
            st->read = 0;
            return;
        }
        at += len;
    }
    say("acpiread FAIL no FADT in the tables");
}

void acpiread(const char *args, void (*say)(const char *))
{
    if (name_is(args, "start"))
        start(state(), say);
    else if (name_is(args, "rest"))
        rest(state(), say);
    else
        say("acpiread FAIL usage: acpiread start|rest");
}
