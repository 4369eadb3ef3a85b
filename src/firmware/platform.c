#include "firmware/platform.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "config/config.h"
#include "firmware/acpi.h"
#include "firmware/bootorder.h"
#include "firmware/e820.h"
#include "firmware/fw_cfg.h"
#include "firmware/smbios.h"

#include "devices/hpet.h"
#include "devices/pc_layout.h"
#include "devices/pvpanic.h"
#include "devices/rtc.h"

#define GIB (1024ull * 1024 * 1024)
#define FOUR_GIB (4 * GIB)

/* Fixed addresses the chipset models do not own. */
#define PC_LAPIC_ADDR 0xfee00000u
#define PC_IOAPIC_ADDR 0xfec00000u
#define PC_IOAPIC_ID 0 /* KVM's IOAPIC resets to id 0 */
/* KVM's identity map and TSS pages (core/machine.c puts them here). */
#define PC_KVM_PRIVATE_BASE 0xfeffc000ull
#define PC_KVM_PRIVATE_SIZE 0x4000ull
#define PC_DEFAULT_PHYS_BITS 36 /* every x86-64 CPU has at least this */

static uint64_t align_up(uint64_t v, uint64_t align)
{
    return (v + align - 1) & ~(align - 1);
}

void platform_desc_defaults(struct platform_desc *d, unsigned cpus, uint64_t lowmem_size,
                            uint64_t highmem_size)
{
    memset(d, 0, sizeof(*d));
    d->cpus = cpus;
    d->lowmem_size = lowmem_size;
    d->highmem_size = highmem_size;
    d->reserved[d->reserved_count++] =
        (struct platform_range){PC_KVM_PRIVATE_BASE, PC_KVM_PRIVATE_SIZE};

    d->pm_base = PC_PM_BASE_DEFAULT;
    d->pm1a_evt_offset = PC_PM1_STS_OFFSET;
    d->pm1a_cnt_offset = PC_PM1_CNT_OFFSET;
    d->pm_tmr_offset = PC_PM_TMR_OFFSET;
    d->pm_timer_32bit = PC_PM_TIMER_BITS == 32;
    d->gpe0_base = PC_GPE0_BASE;
    d->gpe0_len = PC_GPE0_LEN;
    d->sci_irq = PC_SCI_IRQ;
    d->s5_slp_typ = PC_SLP_TYP_S5;
    d->smi_cmd = PC_SMI_CMD_PORT;
    d->acpi_enable = PC_ACPI_ENABLE;
    d->acpi_disable = PC_ACPI_DISABLE;
    d->reset_port = PC_RESET_CONTROL_PORT;
    d->reset_value = PC_RESET_VALUE;
    d->rtc_century = RTC_CENTURY;

    d->lapic_addr = PC_LAPIC_ADDR;
    d->ioapic_addr = PC_IOAPIC_ADDR;
    d->ioapic_id = PC_IOAPIC_ID;
    d->isa_level_irqs = (uint16_t)(1u << PC_SCI_IRQ);
    /* INTx reach IOAPIC pins 16-19 through the PIRQ swizzle; slot 0 is the
     * host bridge and has none. */
    for (unsigned slot = 1; slot < PLATFORM_PCI_SLOTS; slot++)
        for (unsigned pin = 0; pin < 4; pin++)
            d->prt_gsi[slot][pin] = (uint8_t)(PC_PCI_GSI_BASE + pc_pirq_for(slot, pin));

    /* Below 4 GiB: from the end of low RAM (or PC_PCI_MMIO32_BASE, if RAM
     * ends above it) to the IOAPIC; acpi.c leaves the ECAM out. */
    d->pci_mmio32_base = lowmem_size < PC_PCI_MMIO32_BASE ? lowmem_size : PC_PCI_MMIO32_BASE;
    d->pci_mmio32_size = PC_PCI_MMIO32_END - d->pci_mmio32_base;
    d->ecam_base = PC_ECAM_BASE;
    d->ecam_bus_end = PC_ECAM_BUS_COUNT - 1;
    platform_desc_set_phys_bits(d, PC_DEFAULT_PHYS_BITS);

    d->hpet = true;
    d->hpet_base = HPET_MMIO_BASE;
    /* Same bits as the device's capabilities register: revision 1, timer
     * count, 64-bit counter, legacy replacement, vendor 8086. */
    d->hpet_block_id =
        0x01u | ((HPET_NUM_TIMERS - 1u) << 8) | (1u << 13) | (1u << 15) | (0x8086u << 16);
    d->hpet_min_tick = (uint16_t)(HPET_MIN_PERIOD_NS / HPET_TICK_NS);
    d->com_mask = 0x0f;
    d->ps2_mouse = true;
    d->fw_cfg_port = FW_CFG_IO_BASE;
    snprintf(d->bootrom_version, sizeof(d->bootrom_version), "%s", CONFIG_DEFAULT_BOOTROM_VERSION);
}

void platform_desc_set_phys_bits(struct platform_desc *d, unsigned phys_bits)
{
    if (phys_bits < 36 || phys_bits > 52)
        phys_bits = PC_DEFAULT_PHYS_BITS;
    uint64_t ram_end = d->highmem_size ? FOUR_GIB + d->highmem_size : FOUR_GIB;
    uint64_t base = align_up(ram_end, GIB);
    uint64_t top = 1ull << phys_bits;
    d->pci_mmio64_base = base;
    d->pci_mmio64_size = base < top ? top - base : 0;
}

int platform_desc_from_config(struct platform_desc *d, const struct config *cfg,
                              platform_boot_kind_fn boot_kind)
{
    const char *version =
        cfg->main.bootrom_version ? cfg->main.bootrom_version : CONFIG_DEFAULT_BOOTROM_VERSION;
    if (strlen(version) > PLATFORM_STRING_MAX)
        log_warn("main.bootrom_version: longer than %d bytes; SMBIOS gets the first %d",
                 PLATFORM_STRING_MAX, PLATFORM_STRING_MAX);
    snprintf(d->bootrom_version, sizeof(d->bootrom_version), "%s", version);

    /* An ISA pvpanic needs its ACPI device for the guest driver to find it. */
    d->pvpanic_port = 0;
    for (size_t i = 0; i < cfg->device_count; i++)
        if (cfg->devices[i].driver == CONFIG_DRIVER_QEMU_PVPANIC &&
            cfg->devices[i].pvpanic.enable_isa)
            d->pvpanic_port = PVPANIC_PORT;

    /* The config layer refuses longer lists at their place in the file. */
    _Static_assert(CONFIG_MAX_BOOT_ORDER <= PLATFORM_MAX_BOOT_DEVICES,
                   "main.boot_order may list more devices than the platform holds");
    d->boot_count = 0;
    for (size_t i = 0; i < cfg->main.boot_order_count; i++) {
        const struct config_device *dev = &cfg->devices[cfg->main.boot_order_dev[i]];
        enum boot_device_kind kind = boot_kind(dev->driver);
        if (kind == BOOT_DEVICE_NONE) {
            log_error("main.boot_order: dev.%s (%s) cannot be a boot device", dev->name,
                      config_driver_name(dev->driver));
            return -1;
        }
        if (!dev->has_pci || dev->pci.bus != 0) {
            log_error("main.boot_order: dev.%s is not on PCI bus 0", dev->name);
            return -1;
        }
        if (d->boot_count >= PLATFORM_MAX_BOOT_DEVICES) {
            log_error("main.boot_order: more than %d entries", PLATFORM_MAX_BOOT_DEVICES);
            return -1;
        }
        d->boot[d->boot_count++] =
            (struct platform_boot_device){kind, dev->pci.bus, dev->pci.dev, dev->pci.func};
    }
    return 0;
}

void platform_desc_set_cpuid(struct platform_desc *d, const uint32_t leaf0[4],
                             const uint32_t leaf1[4], const uint32_t brand[3][4])
{
    char vendor[13];
    const uint32_t vendor_regs[3] = {leaf0[1], leaf0[3], leaf0[2]}; /* ebx, edx, ecx */
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < 4; i++)
            vendor[4 * r + i] = (char)(vendor_regs[r] >> (8 * i));
    vendor[12] = '\0';
    if (strcmp(vendor, "GenuineIntel") == 0)
        d->cpu_vendor = PLATFORM_CPU_VENDOR_INTEL;
    else if (strcmp(vendor, "AuthenticAMD") == 0)
        d->cpu_vendor = PLATFORM_CPU_VENDOR_AMD;
    else
        d->cpu_vendor = PLATFORM_CPU_VENDOR_UNKNOWN;
    d->cpuid1_eax = leaf1[0];
    d->cpuid1_edx = leaf1[3];
    memset(d->cpu_brand, 0, sizeof(d->cpu_brand));
    if (brand) {
        for (int l = 0; l < 3; l++)
            for (int r = 0; r < 4; r++)
                for (int i = 0; i < 4; i++) {
                    char c = (char)(brand[l][r] >> (8 * i));
                    /* Keep printable ASCII; SMBIOS strings end at the first NUL. */
                    d->cpu_brand[16 * l + 4 * r + i] = (c >= ' ' && c <= '~') ? c : '\0';
                }
    }
}

static bool prt_gsis_valid(const struct platform_desc *d)
{
    for (unsigned slot = 0; slot < PLATFORM_PCI_SLOTS; slot++)
        for (unsigned pin = 0; pin < 4; pin++)
            if (d->prt_gsi[slot][pin] && (d->prt_gsi[slot][pin] < 16 || d->prt_gsi[slot][pin] > 23))
                return false;
    return true;
}

int platform_desc_check(const struct platform_desc *d, char *why, unsigned whylen)
{
    const char *problem = NULL;
    uint64_t ecam_size = ((uint64_t)d->ecam_bus_end + 1) << 20;
    if (d->cpus == 0 || d->cpus > PLATFORM_MAX_CPUS)
        problem = "vCPU count out of range";
    else if (d->lowmem_size == 0 || d->lowmem_size > FOUR_GIB)
        problem = "low memory size out of range";
    else if (d->highmem_size > (1ull << 52))
        problem = "high memory size out of range";
    else if (d->sci_irq == 0 || d->sci_irq > 15 || d->pm_base == 0)
        problem = "bad ACPI PM block";
    else if (d->s5_slp_typ > 7)
        problem = "SLP_TYP is a 3-bit field";
    else if (!prt_gsis_valid(d))
        problem = "_PRT GSIs must be IOAPIC pins 16-23";
    else if (d->pci_mmio32_size &&
             (d->pci_mmio32_base > FOUR_GIB || d->pci_mmio32_size > FOUR_GIB - d->pci_mmio32_base))
        problem = "32-bit PCI window crosses 4 GiB";
    else if (d->pci_mmio64_size && d->pci_mmio64_base + d->pci_mmio64_size < d->pci_mmio64_base)
        problem = "64-bit PCI window wraps";
    else if (d->ecam_base && ((d->ecam_base & 0xfffff) || d->ecam_base + ecam_size > FOUR_GIB))
        problem = "ECAM must be 1 MiB aligned and below 4 GiB";
    else if (d->hpet && (d->hpet_base == 0 || d->hpet_base > FOUR_GIB - 0x400))
        problem = "HPET must be below 4 GiB";
    else if (d->reserved_count > PLATFORM_MAX_RESERVED || d->boot_count > PLATFORM_MAX_BOOT_DEVICES)
        problem = "too many reserved ranges or boot devices";
    if (problem) {
        snprintf(why, whylen, "%s", problem);
        return -1;
    }
    return 0;
}

static int add_blob(struct fw_cfg *fw, const char *name, struct bytebuf *blob)
{
    int ret = fw_cfg_add_file(fw, name, blob->data, blob->len);
    bytebuf_free(blob);
    return ret;
}

int fw_cfg_build(struct fw_cfg *fw, const struct platform_desc *d)
{
    char why[128];
    if (platform_desc_check(d, why, sizeof(why)) < 0) {
        log_error("firmware tables: %s", why);
        return -1;
    }
    uint8_t cpus[2], ram[8];
    le16_store(cpus, (uint16_t)d->cpus);
    le64_store(ram, d->lowmem_size + d->highmem_size);
    if (fw_cfg_add_bytes(fw, FW_CFG_NB_CPUS, cpus, sizeof(cpus)) < 0 ||
        fw_cfg_add_bytes(fw, FW_CFG_MAX_CPUS, cpus, sizeof(cpus)) < 0 ||
        fw_cfg_add_bytes(fw, FW_CFG_RAM_SIZE, ram, sizeof(ram)) < 0)
        return -1;
    if (d->has_uuid && fw_cfg_add_bytes(fw, FW_CFG_UUID, d->uuid, sizeof(d->uuid)) < 0)
        return -1;

    struct bytebuf e820;
    if (e820_build(d, &e820) < 0 || add_blob(fw, E820_FILE, &e820) < 0)
        return -1;

    struct acpi_blobs acpi;
    if (acpi_build(d, &acpi) < 0)
        return -1;
    int ret = add_blob(fw, ACPI_TABLES_FILE, &acpi.tables);
    ret |= add_blob(fw, ACPI_RSDP_FILE, &acpi.rsdp);
    ret |= add_blob(fw, ACPI_LOADER_FILE, &acpi.loader);
    if (ret < 0)
        return -1;

    struct bytebuf smbios_tables, smbios_anchor;
    if (smbios_build(d, &smbios_tables, &smbios_anchor) < 0)
        return -1;
    ret = add_blob(fw, SMBIOS_TABLES_FILE, &smbios_tables);
    ret |= add_blob(fw, SMBIOS_ANCHOR_FILE, &smbios_anchor);
    if (ret < 0)
        return -1;

    /* There is no VGA: SeaBIOS shows its screen on COM1 ("sercon"), as it
     * does under QEMU without a display. OVMF ignores the file. */
    uint8_t sercon[2];
    le16_store(sercon, 0x3f8);
    if (fw_cfg_add_file(fw, "etc/sercon-port", sercon, sizeof(sercon)) < 0)
        return -1;

    if (d->boot_count) {
        struct bytebuf order;
        if (bootorder_build(d->boot, d->boot_count, &order) < 0 ||
            add_blob(fw, BOOTORDER_FILE, &order) < 0)
            return -1;
    }
    return fw_cfg_add_ramfb(fw);
}
