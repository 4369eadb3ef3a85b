#include "firmware/acpi.h"

#include <stdio.h>
#include <string.h>

#include "common/bytes.h"
#include "common/log.h"
#include "firmware/aml.h"
#include "firmware/fw_cfg.h"
#include "firmware/table_loader.h"

#define OEM_ID "OXIDE "
#define OEM_TABLE_ID "PROPOLIS"
#define OEM_REVISION 1
#define CREATOR_ID "OXDE"
#define CREATOR_REVISION 1

/* Generic Address Structure address space ids. */
#define GAS_SYSTEM_MEMORY 0
#define GAS_SYSTEM_IO 1
#define GAS_ACCESS_BYTE 1

/* MADT structure types and flags. */
#define MADT_PCAT_COMPAT 1u
#define MADT_LOCAL_APIC 0
#define MADT_IO_APIC 1
#define MADT_INTERRUPT_OVERRIDE 2
#define MADT_LOCAL_APIC_NMI 4
#define MADT_LAPIC_ENABLED 1u
#define MPS_INTI_ACTIVE_HIGH 0x1
#define MPS_INTI_LEVEL 0xc
#define ACPI_ALL_PROCESSORS 0xff

struct acpi_builder {
    const struct platform_desc *d;
    struct bytebuf *tables, *loader;
};

static size_t table_begin(struct acpi_builder *b, const char signature[4], uint8_t revision)
{
    struct bytebuf *t = b->tables;
    size_t at = bytebuf_append(t, signature, 4);
    bytebuf_le32(t, 0); /* length, set by table_end */
    bytebuf_u8(t, revision);
    bytebuf_u8(t, 0); /* checksum: computed by the firmware from the loader script */
    bytebuf_append(t, OEM_ID, 6);
    bytebuf_append(t, OEM_TABLE_ID, 8);
    bytebuf_le32(t, OEM_REVISION);
    bytebuf_append(t, CREATOR_ID, 4);
    bytebuf_le32(t, CREATOR_REVISION);
    return at;
}

/* Sets the length and asks for the checksum; call after the table's
 * pointers, since the loader patches them before summing. */
static void table_end(struct acpi_builder *b, size_t at)
{
    struct bytebuf *t = b->tables;
    if (t->failed)
        return;
    uint32_t len = (uint32_t)(t->len - at);
    le32_store(t->data + at + 4, len);
    loader_add_checksum(b->loader, ACPI_TABLES_FILE, (uint32_t)at + 9, (uint32_t)at, len);
}

/* A size-byte pointer at tables+field to tables+target. */
static void table_pointer(struct acpi_builder *b, size_t field, unsigned size, size_t target)
{
    struct bytebuf *t = b->tables;
    if (t->failed || field + size > t->len)
        return;
    le_store(t->data + field, size, target);
    loader_add_pointer(b->loader, ACPI_TABLES_FILE, ACPI_TABLES_FILE, (uint32_t)field,
                       (uint8_t)size);
}

static void gas(uint8_t *p, uint8_t space, uint8_t bit_width, uint8_t access, uint64_t address)
{
    p[0] = space;
    p[1] = bit_width;
    p[2] = 0; /* bit offset */
    p[3] = access;
    le64_store(p + 4, address);
}

/* ---- FACS ---- */

static size_t build_facs(struct acpi_builder *b)
{
    size_t at = bytebuf_zeros(b->tables, ACPI_FACS_SIZE);
    if (b->tables->failed)
        return at;
    uint8_t *p = b->tables->data + at;
    memcpy(p, "FACS", 4);
    le32_store(p + 4, ACPI_FACS_SIZE);
    p[32] = 2; /* version */
    return at;
}

/* ---- DSDT ---- */

static const struct {
    uint16_t port;
    uint8_t irq;
} com_ports[PLATFORM_COM_PORTS] = {{0x3f8, 4}, {0x2f8, 3}, {0x3e8, 4}, {0x2e8, 3}};

static void dsdt_isa_devices(struct aml *a, const struct platform_desc *d)
{
    struct bytebuf r = {0};

    aml_device_open(a, "KBD");
    aml_name_eisaid(a, "_HID", "PNP0303");
    aml_name_integer(a, "_STA", 0x0f);
    res_io(&r, 0x60, 0x60, 1, 1);
    res_io(&r, 0x64, 0x64, 1, 1);
    res_irq_noflags(&r, 1u << 1);
    aml_name_begin(a, "_CRS");
    aml_resource_template(a, &r);
    aml_close(a);
    bytebuf_free(&r);

    if (d->ps2_mouse) {
        aml_device_open(a, "MOU");
        aml_name_eisaid(a, "_HID", "PNP0F13");
        aml_name_integer(a, "_STA", 0x0f);
        res_irq_noflags(&r, 1u << 12);
        aml_name_begin(a, "_CRS");
        aml_resource_template(a, &r);
        aml_close(a);
        bytebuf_free(&r);
    }

    aml_device_open(a, "RTC");
    aml_name_eisaid(a, "_HID", "PNP0B00");
    res_io(&r, 0x70, 0x70, 1, 2);
    res_irq_noflags(&r, 1u << 8);
    aml_name_begin(a, "_CRS");
    aml_resource_template(a, &r);
    aml_close(a);
    bytebuf_free(&r);

    for (unsigned i = 0; i < PLATFORM_COM_PORTS; i++) {
        if (!(d->com_mask & (1u << i)))
            continue;
        char name[8];
        snprintf(name, sizeof(name), "COM%u", (i + 1) & 7);
        aml_device_open(a, name);
        aml_name_eisaid(a, "_HID", "PNP0501");
        aml_name_integer(a, "_UID", i + 1);
        aml_name_integer(a, "_STA", 0x0f);
        res_io(&r, com_ports[i].port, com_ports[i].port, 1, 8);
        res_irq_noflags(&r, (uint16_t)(1u << com_ports[i].irq));
        aml_name_begin(a, "_CRS");
        aml_resource_template(a, &r);
        aml_close(a);
        bytebuf_free(&r);
    }

    if (d->pvpanic_port) {
        aml_device_open(a, "PEVT");
        aml_name_str(a, "_HID", "QEMU0001");
        aml_name_integer(a, "_STA", 0x0f);
        res_io(&r, d->pvpanic_port, d->pvpanic_port, 1, 1);
        aml_name_begin(a, "_CRS");
        aml_resource_template(a, &r);
        aml_close(a);
        bytebuf_free(&r);
    }
}

/* Adds [lo, hi] to the template unless it is empty. */
static void crs_mmio32(struct bytebuf *r, uint64_t lo, uint64_t hi)
{
    if (lo <= hi && hi <= 0xffffffffu)
        res_dword_memory(r, false, (uint32_t)lo, (uint32_t)hi);
}

static void dsdt_pci_crs(struct aml *a, const struct platform_desc *d)
{
    struct bytebuf r = {0};
    res_word_bus_number(&r, 0, d->ecam_base ? d->ecam_bus_end : 0xff);
    res_io(&r, 0xcf8, 0xcf8, 1, 8);
    res_word_io(&r, 0x0000, 0x0cf7);
    res_word_io(&r, 0x0d00, 0xffff);
    res_dword_memory(&r, true, 0x000a0000, 0x000bffff); /* legacy VGA window */
    if (d->pci_mmio32_size) {
        uint64_t lo = d->pci_mmio32_base, hi = d->pci_mmio32_base + d->pci_mmio32_size - 1;
        uint64_t ecam_size = ((uint64_t)d->ecam_bus_end + 1) << 20;
        if (d->ecam_base && d->ecam_base <= hi && d->ecam_base + ecam_size - 1 >= lo) {
            /* ECAM is a motherboard resource, never part of a bridge window. */
            if (d->ecam_base > lo)
                crs_mmio32(&r, lo, d->ecam_base - 1);
            crs_mmio32(&r, d->ecam_base + ecam_size, hi);
        } else {
            crs_mmio32(&r, lo, hi);
        }
    }
    if (d->pci_mmio64_size)
        res_qword_memory(&r, true, d->pci_mmio64_base, d->pci_mmio64_base + d->pci_mmio64_size - 1);
    aml_name_begin(a, "_CRS");
    aml_resource_template(a, &r);
    bytebuf_free(&r);
}

static void gsi_link_name(uint8_t gsi, char name[16])
{
    snprintf(name, 16, "\\_SB.GSI%c", 'A' + (gsi - 16) % 8);
}

/* One PCI interrupt link device per IOAPIC pin the _PRT uses: a fixed,
 * level-triggered, active-high, shareable interrupt (as QEMU's q35 GSIx). */
static void dsdt_gsi_links(struct aml *a, const struct platform_desc *d)
{
    unsigned used = 0;
    for (unsigned slot = 0; slot < PLATFORM_PCI_SLOTS; slot++)
        for (unsigned pin = 0; pin < 4; pin++)
            if (d->prt_gsi[slot][pin])
                used |= 1u << (d->prt_gsi[slot][pin] - 16);
    for (uint8_t gsi = 16; gsi < 24; gsi++) {
        if (!(used & (1u << (gsi - 16))))
            continue;
        char path[16];
        gsi_link_name(gsi, path);
        struct bytebuf r = {0};
        res_interrupt(&r, true, true, true, gsi);
        aml_device_open(a, path + 5); /* inside \_SB: the last segment */
        aml_name_eisaid(a, "_HID", "PNP0C0F");
        aml_name_integer(a, "_UID", gsi - 16u);
        aml_name_begin(a, "_PRS");
        aml_resource_template(a, &r);
        aml_name_begin(a, "_CRS");
        aml_resource_template(a, &r);
        aml_method_open(a, "_SRS", 1, false); /* the routing is fixed */
        aml_close(a);
        aml_close(a);
        bytebuf_free(&r);
    }
}

static void dsdt_pci_prt(struct aml *a, const struct platform_desc *d)
{
    unsigned count = 0;
    for (unsigned slot = 0; slot < PLATFORM_PCI_SLOTS; slot++)
        for (unsigned pin = 0; pin < 4; pin++)
            count += d->prt_gsi[slot][pin] != 0;
    aml_name_begin(a, "_PRT");
    aml_package_open(a, count);
    for (unsigned slot = 0; slot < PLATFORM_PCI_SLOTS; slot++) {
        for (unsigned pin = 0; pin < 4; pin++) {
            if (!d->prt_gsi[slot][pin])
                continue;
            /* { address (all functions of the slot), pin, link device, index 0 } */
            char link[16];
            gsi_link_name(d->prt_gsi[slot][pin], link);
            aml_package_open(a, 4);
            aml_integer(a, ((uint64_t)slot << 16) | 0xffff);
            aml_integer(a, pin);
            aml_name_string(a, link);
            aml_integer(a, 0);
            aml_close(a);
        }
    }
    aml_close(a);
}

static void dsdt_body(struct aml *a, const struct platform_desc *d)
{
    struct bytebuf r = {0};
    aml_scope_open(a, "\\_SB");
    dsdt_gsi_links(a, d);

    aml_device_open(a, "PCI0");
    aml_name_eisaid(a, "_HID", "PNP0A03");
    aml_name_integer(a, "_UID", 0);
    aml_name_integer(a, "_SEG", 0);
    aml_name_integer(a, "_BBN", 0);
    dsdt_pci_crs(a, d);
    dsdt_pci_prt(a, d);

    aml_device_open(a, "ISA");
    aml_name_integer(a, "_ADR", 0x00010000); /* the PIIX3 at 0.1.0 */
    dsdt_isa_devices(a, d);
    aml_close(a);

    if (d->fw_cfg_port) {
        aml_device_open(a, "FWCF");
        aml_name_str(a, "_HID", "QEMU0002");
        aml_name_integer(a, "_STA", 0x0b);
        res_io(&r, d->fw_cfg_port, d->fw_cfg_port, 1, FW_CFG_ACPI_IO_COUNT);
        aml_name_begin(a, "_CRS");
        aml_resource_template(a, &r);
        aml_close(a);
        bytebuf_free(&r);
    }
    aml_close(a); /* PCI0 */

    if (d->hpet) {
        aml_device_open(a, "HPET");
        aml_name_eisaid(a, "_HID", "PNP0103");
        aml_name_integer(a, "_UID", 0);
        aml_name_integer(a, "_STA", 0x0f);
        res_memory32_fixed(&r, false, (uint32_t)d->hpet_base, 0x400);
        aml_name_begin(a, "_CRS");
        aml_resource_template(a, &r);
        aml_close(a);
        bytebuf_free(&r);
    }

    if (d->ecam_base) {
        /* PCI Firmware Spec 3.2, 4.1.2: ECAM is reserved by a PNP0C02 device. */
        aml_device_open(a, "MRES");
        aml_name_eisaid(a, "_HID", "PNP0C02");
        aml_name_integer(a, "_UID", 0);
        res_memory32_fixed(&r, true, (uint32_t)d->ecam_base,
                           (uint32_t)(((uint64_t)d->ecam_bus_end + 1) << 20));
        aml_name_begin(a, "_CRS");
        aml_resource_template(a, &r);
        aml_close(a);
        bytebuf_free(&r);
    }

    /* Processor devices matching the MADT's processor UIDs. */
    for (unsigned i = 0; i < d->cpus; i++) {
        char name[8];
        snprintf(name, sizeof(name), "C%03X", i & 0xfff);
        aml_device_open(a, name);
        aml_name_str(a, "_HID", "ACPI0007");
        aml_name_integer(a, "_UID", i);
        aml_close(a);
    }
    aml_close(a); /* \_SB */

    /* \_S5: the SLP_TYP values for PM1a_CNT and PM1b_CNT. */
    aml_name_begin(a, "\\_S5");
    aml_package_open(a, 4);
    aml_integer(a, d->s5_slp_typ);
    aml_integer(a, d->s5_slp_typ);
    aml_integer(a, 0);
    aml_integer(a, 0);
    aml_close(a);
}

int acpi_build_dsdt_aml(const struct platform_desc *d, struct bytebuf *out)
{
    struct aml a;
    aml_init(&a);
    dsdt_body(&a, d);
    if (!aml_finish(&a)) {
        aml_free(&a);
        log_error("ACPI: DSDT generation failed");
        return -1;
    }
    *out = a.buf;
    return 0;
}

static size_t build_dsdt(struct acpi_builder *b)
{
    struct bytebuf aml = {0};
    if (acpi_build_dsdt_aml(b->d, &aml) < 0) {
        b->tables->failed = true;
        return 0;
    }
    size_t at = table_begin(b, "DSDT", 2); /* revision 2: 64-bit integers */
    bytebuf_append(b->tables, aml.data, aml.len);
    bytebuf_free(&aml);
    table_end(b, at);
    return at;
}

/* ---- FADT ---- */

static size_t build_fadt(struct acpi_builder *b, size_t facs, size_t dsdt)
{
    const struct platform_desc *d = b->d;
    size_t at = table_begin(b, "FACP", 6);
    bytebuf_zeros(b->tables, ACPI_FADT_SIZE - ACPI_HEADER_SIZE);
    if (b->tables->failed)
        return at;
    uint8_t *p = b->tables->data + at;
    uint16_t pm1a_evt = (uint16_t)(d->pm_base + d->pm1a_evt_offset);
    uint16_t pm1a_cnt = (uint16_t)(d->pm_base + d->pm1a_cnt_offset);
    uint16_t pm_tmr = (uint16_t)(d->pm_base + d->pm_tmr_offset);

    le16_store(p + FADT_SCI_INT, d->sci_irq);
    le32_store(p + FADT_SMI_CMD, d->smi_cmd);
    if (d->smi_cmd) {
        p[52] = d->acpi_enable;
        p[53] = d->acpi_disable;
    }
    le32_store(p + FADT_PM1A_EVT_BLK, pm1a_evt);
    le32_store(p + FADT_PM1A_CNT_BLK, pm1a_cnt);
    le32_store(p + FADT_PM_TMR_BLK, pm_tmr);
    p[FADT_PM1_EVT_LEN] = 4;
    p[FADT_PM1_CNT_LEN] = 2;
    p[FADT_PM_TMR_LEN] = 4;
    if (d->gpe0_base) {
        le32_store(p + FADT_GPE0_BLK, d->gpe0_base);
        p[FADT_GPE0_BLK_LEN] = d->gpe0_len;
        gas(p + 220, GAS_SYSTEM_IO, (uint8_t)(d->gpe0_len * 8), GAS_ACCESS_BYTE, d->gpe0_base);
    }
    le16_store(p + 96, 101);  /* P_LVL2_LAT > 100: no C2 */
    le16_store(p + 98, 1001); /* P_LVL3_LAT > 1000: no C3 */
    p[FADT_CENTURY] = d->rtc_century;
    le16_store(p + FADT_IAPC_BOOT_ARCH, (uint16_t)(IAPC_LEGACY_DEVICES | IAPC_8042 |
                                                   (d->vga_present ? 0 : IAPC_VGA_NOT_PRESENT)));
    uint32_t flags = FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON;
    if (d->pm_timer_32bit)
        flags |= FADT_F_TMR_VAL_EXT;
    if (d->reset_port) {
        flags |= FADT_F_RESET_REG_SUP;
        gas(p + FADT_RESET_REG, GAS_SYSTEM_IO, 8, GAS_ACCESS_BYTE, d->reset_port);
        p[FADT_RESET_VALUE] = d->reset_value;
    }
    le32_store(p + FADT_FLAGS, flags);
    p[131] = 0; /* FADT minor version: ACPI 6.0 */
    gas(p + FADT_X_PM1A_EVT_BLK, GAS_SYSTEM_IO, 32, 0, pm1a_evt);
    gas(p + FADT_X_PM1A_CNT_BLK, GAS_SYSTEM_IO, 16, 0, pm1a_cnt);
    gas(p + FADT_X_PM_TMR_BLK, GAS_SYSTEM_IO, 32, 0, pm_tmr);

    /* FIRMWARE_CTRL, DSDT and X_DSDT; X_FIRMWARE_CTRL stays 0 (the FACS is
     * below 4 GiB, and both may not be set). */
    table_pointer(b, at + FADT_FIRMWARE_CTRL, 4, facs);
    table_pointer(b, at + FADT_DSDT, 4, dsdt);
    table_pointer(b, at + FADT_X_DSDT, 8, dsdt);
    table_end(b, at);
    return at;
}

/* ---- MADT ---- */

static void madt_override(struct bytebuf *t, uint8_t irq, uint32_t gsi, uint16_t flags)
{
    bytebuf_u8(t, MADT_INTERRUPT_OVERRIDE);
    bytebuf_u8(t, 10);
    bytebuf_u8(t, 0); /* bus: ISA */
    bytebuf_u8(t, irq);
    bytebuf_le32(t, gsi);
    bytebuf_le16(t, flags);
}

static size_t build_madt(struct acpi_builder *b)
{
    const struct platform_desc *d = b->d;
    struct bytebuf *t = b->tables;
    size_t at = table_begin(b, "APIC", 3);
    bytebuf_le32(t, d->lapic_addr);
    bytebuf_le32(t, MADT_PCAT_COMPAT);
    for (unsigned i = 0; i < d->cpus; i++) {
        bytebuf_u8(t, MADT_LOCAL_APIC);
        bytebuf_u8(t, 8);
        bytebuf_u8(t, (uint8_t)i); /* ACPI processor UID */
        bytebuf_u8(t, (uint8_t)i); /* APIC id */
        bytebuf_le32(t, MADT_LAPIC_ENABLED);
    }
    bytebuf_u8(t, MADT_IO_APIC);
    bytebuf_u8(t, 12);
    bytebuf_u8(t, d->ioapic_id);
    bytebuf_u8(t, 0);
    bytebuf_le32(t, d->ioapic_addr);
    bytebuf_le32(t, 0); /* GSI base */
    /* The PIT's IRQ0 arrives on IOAPIC pin 2 (conforming polarity/trigger). */
    madt_override(t, 0, 2, 0);
    for (unsigned irq = 1; irq < 16; irq++)
        if (d->isa_level_irqs & (1u << irq))
            madt_override(t, (uint8_t)irq, irq, MPS_INTI_ACTIVE_HIGH | MPS_INTI_LEVEL);
    bytebuf_u8(t, MADT_LOCAL_APIC_NMI);
    bytebuf_u8(t, 6);
    bytebuf_u8(t, ACPI_ALL_PROCESSORS);
    bytebuf_le16(t, 0);
    bytebuf_u8(t, 1); /* LINT1 */
    table_end(b, at);
    return at;
}

/* ---- HPET, MCFG, XSDT, RSDP ---- */

static size_t build_hpet(struct acpi_builder *b)
{
    const struct platform_desc *d = b->d;
    struct bytebuf *t = b->tables;
    size_t at = table_begin(b, "HPET", 1);
    bytebuf_le32(t, d->hpet_block_id);
    uint8_t address[12];
    gas(address, GAS_SYSTEM_MEMORY, 64, 0, d->hpet_base);
    bytebuf_append(t, address, sizeof(address));
    bytebuf_u8(t, 0);                  /* HPET number */
    bytebuf_le16(t, d->hpet_min_tick); /* shortest periodic period */
    bytebuf_u8(t, 0);                  /* page protection */
    table_end(b, at);
    return at;
}

static size_t build_mcfg(struct acpi_builder *b)
{
    const struct platform_desc *d = b->d;
    struct bytebuf *t = b->tables;
    size_t at = table_begin(b, "MCFG", 1);
    bytebuf_zeros(t, 8);
    bytebuf_le64(t, d->ecam_base);
    bytebuf_le16(t, 0); /* segment */
    bytebuf_u8(t, 0);   /* start bus */
    bytebuf_u8(t, d->ecam_bus_end);
    bytebuf_le32(t, 0);
    table_end(b, at);
    return at;
}

static size_t build_xsdt(struct acpi_builder *b, const size_t *entries, unsigned count)
{
    size_t at = table_begin(b, "XSDT", 1);
    size_t first = bytebuf_zeros(b->tables, 8 * (size_t)count);
    for (unsigned i = 0; i < count; i++)
        table_pointer(b, first + 8 * (size_t)i, 8, entries[i]);
    table_end(b, at);
    return at;
}

static void build_rsdp(struct acpi_builder *b, struct bytebuf *rsdp, size_t xsdt)
{
    bytebuf_zeros(rsdp, ACPI_RSDP_SIZE);
    if (rsdp->failed)
        return;
    uint8_t *p = rsdp->data;
    memcpy(p, "RSD PTR ", 8);
    memcpy(p + 9, OEM_ID, 6);
    p[15] = 2; /* revision: ACPI 2.0+, XSDT */
    le32_store(p + 20, ACPI_RSDP_SIZE);
    le64_store(p + 24, xsdt);
    loader_allocate(b->loader, ACPI_RSDP_FILE, 16, LOADER_ZONE_FSEG);
    loader_add_pointer(b->loader, ACPI_RSDP_FILE, ACPI_TABLES_FILE, 24, 8);
    loader_add_checksum(b->loader, ACPI_RSDP_FILE, 8, 0, 20);
    loader_add_checksum(b->loader, ACPI_RSDP_FILE, 32, 0, ACPI_RSDP_SIZE);
}

int acpi_build(const struct platform_desc *d, struct acpi_blobs *out)
{
    char why[128];
    memset(out, 0, sizeof(*out));
    if (platform_desc_check(d, why, sizeof(why)) < 0) {
        log_error("ACPI: %s", why);
        return -1;
    }
    struct acpi_builder b = {d, &out->tables, &out->loader};
    loader_allocate(b.loader, ACPI_TABLES_FILE, 64, LOADER_ZONE_HIGH);

    size_t facs = build_facs(&b); /* at offset 0: the blob is 64-byte aligned */
    size_t dsdt = build_dsdt(&b);
    size_t xsdt_entries[4];
    unsigned count = 0;
    xsdt_entries[count++] = build_fadt(&b, facs, dsdt);
    xsdt_entries[count++] = build_madt(&b);
    if (d->hpet)
        xsdt_entries[count++] = build_hpet(&b);
    if (d->ecam_base)
        xsdt_entries[count++] = build_mcfg(&b);
    size_t xsdt = build_xsdt(&b, xsdt_entries, count);
    build_rsdp(&b, &out->rsdp, xsdt);

    if (out->tables.failed || out->rsdp.failed || out->loader.failed) {
        log_error("ACPI: table generation failed");
        acpi_blobs_free(out);
        return -1;
    }
    return 0;
}

int acpi_rebuild_tables(const struct platform_desc *d, uint8_t *tables, size_t size)
{
    struct acpi_blobs blobs;
    if (acpi_build(d, &blobs) < 0)
        return -1;
    int ret = -1;
    if (blobs.tables.len != size)
        log_error("ACPI: rebuilt tables are %zu bytes, not the %zu the firmware was told",
                  blobs.tables.len, size);
    else {
        memcpy(tables, blobs.tables.data, size);
        ret = 0;
    }
    acpi_blobs_free(&blobs);
    return ret;
}

void acpi_blobs_free(struct acpi_blobs *b)
{
    bytebuf_free(&b->tables);
    bytebuf_free(&b->rsdp);
    bytebuf_free(&b->loader);
}
