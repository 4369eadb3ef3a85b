/* The ACPI and SMBIOS generators (src/firmware): a platform description is
 * derived from the input, either field by field from the PC defaults (CPU
 * count, memory sizes, PM and GPE blocks, IRQs, _PRT pins, windows, HPET,
 * COM ports, strings, UUID, boot devices) or from the input as a
 * configuration file (config_parse, platform_desc_from_config). Whatever
 * platform_desc_check accepts, acpi_build, the DSDT alone, smbios_build
 * and e820 must build, with the SMBIOS anchor sized as its table. */
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "config/config.h"
#include "firmware/acpi.h"
#include "firmware/e820.h"
#include "firmware/platform.h"
#include "firmware/smbios.h"

#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_logs_init();
    return 0;
}

static enum boot_device_kind boot_kind(enum config_driver driver)
{
    return (enum boot_device_kind)((unsigned)driver % (BOOT_DEVICE_NONE + 1));
}

static void fi_string(struct fuzz_in *in, char *out, size_t cap)
{
    size_t len = fi_u8(in) % cap;
    fi_bytes(in, out, len);
    out[len] = '\0';
}

static void desc_from_bytes(struct platform_desc *d, struct fuzz_in *in)
{
    uint8_t shape = fi_u8(in);
    unsigned cpus = shape & 1 ? fi_u8(in) : 1 + fi_u8(in) % 8;
    uint64_t low = (uint64_t)(fi_u16(in) % 3073) << 20;
    uint64_t high = shape & 2 ? (uint64_t)fi_u16(in) << 20 : 0;
    platform_desc_defaults(d, cpus, low, high);
    if (shape & 4)
        platform_desc_set_phys_bits(d, fi_u8(in));
    while (fi_more(in)) {
        switch (fi_u8(in) % 16) {
        case 0: /* memory above 4 GiB (reserved ranges are the VMM's own, not varied) */
            d->highmem_size = (uint64_t)fi_u16(in) << 20;
            break;
        case 1:
            d->pm_base = fi_u16(in);
            d->pm1a_evt_offset = fi_u8(in);
            d->pm1a_cnt_offset = fi_u8(in);
            d->pm_tmr_offset = fi_u8(in);
            d->pm_timer_32bit = fi_u8(in) & 1;
            break;
        case 2:
            d->gpe0_base = fi_u16(in);
            d->gpe0_len = fi_u8(in);
            break;
        case 3:
            d->sci_irq = fi_u8(in);
            d->s5_slp_typ = fi_u8(in);
            d->smi_cmd = fi_u16(in);
            d->acpi_enable = fi_u8(in);
            d->acpi_disable = fi_u8(in);
            break;
        case 4:
            d->reset_port = fi_u16(in);
            d->reset_value = fi_u8(in);
            d->rtc_century = fi_u8(in);
            break;
        case 5:
            d->lapic_addr = fi_u32(in);
            d->ioapic_addr = fi_u32(in);
            d->ioapic_id = fi_u8(in);
            d->isa_level_irqs = fi_u16(in);
            break;
        case 6: {
            unsigned slot = fi_u8(in) % PLATFORM_PCI_SLOTS;
            for (unsigned p = 0; p < 4; p++)
                d->prt_gsi[slot][p] = fi_u8(in);
            break;
        }
        case 7:
            d->pci_mmio32_base = fi_u32(in);
            d->pci_mmio32_size = fi_u32(in);
            break;
        case 8:
            d->pci_mmio64_base = fi_u64(in);
            d->pci_mmio64_size = fi_u64(in);
            break;
        case 9:
            d->ecam_base = (uint64_t)fi_u16(in) << 20;
            d->ecam_bus_end = fi_u8(in);
            break;
        case 10:
            d->hpet = fi_u8(in) & 1;
            d->hpet_base = fi_u64(in);
            d->hpet_block_id = fi_u32(in);
            d->hpet_min_tick = fi_u16(in);
            break;
        case 11:
            d->com_mask = fi_u8(in);
            d->ps2_mouse = fi_u8(in) & 1;
            d->vga_present = fi_u8(in) & 1;
            d->pvpanic_port = fi_u16(in);
            d->fw_cfg_port = fi_u16(in);
            break;
        case 12:
            fi_string(in, d->bootrom_version, sizeof(d->bootrom_version));
            break;
        case 13: {
            d->cpu_vendor = (enum platform_cpu_vendor)(fi_u8(in) % 3);
            d->cpuid1_eax = fi_u32(in);
            d->cpuid1_edx = fi_u32(in);
            fi_string(in, d->cpu_brand, sizeof(d->cpu_brand));
            break;
        }
        case 14:
            d->has_uuid = true;
            fi_bytes(in, d->uuid, sizeof(d->uuid));
            break;
        default:
            if (d->boot_count < PLATFORM_MAX_BOOT_DEVICES) {
                struct platform_boot_device *b = &d->boot[d->boot_count++];
                b->kind = (enum boot_device_kind)(fi_u8(in) % (BOOT_DEVICE_NONE + 1));
                b->bus = fi_u8(in);
                b->dev = fi_u8(in);
                b->func = fi_u8(in);
            }
            break;
        }
    }
}

static void build_all(const struct platform_desc *d)
{
    char why[256];
    if (platform_desc_check(d, why, sizeof(why)) < 0)
        return;
    struct acpi_blobs acpi;
    memset(&acpi, 0, sizeof(acpi));
    if (acpi_build(d, &acpi) < 0)
        abort(); /* a checked description the generator refuses */
    acpi_blobs_free(&acpi);
    struct bytebuf dsdt = {0};
    if (acpi_build_dsdt_aml(d, &dsdt) < 0)
        abort();
    bytebuf_free(&dsdt);
    struct bytebuf tables = {0}, anchor = {0};
    if (smbios_build(d, &tables, &anchor) < 0)
        abort();
    if (anchor.len != SMBIOS3_ANCHOR_SIZE || tables.len == 0 ||
        le32_load(anchor.data + 12) != tables.len)
        abort(); /* OVMF refuses a maximum size other than the table's */
    bytebuf_free(&tables);
    bytebuf_free(&anchor);
    struct bytebuf e820 = {0};
    if (e820_build(d, &e820) < 0)
        abort();
    bytebuf_free(&e820);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct platform_desc d;
    if (size > 0 && data[0] == '#') {
        /* A configuration file (a TOML comment first). */
        struct config cfg;
        memset(&cfg, 0, sizeof(cfg));
        char *text = malloc(size);
        if (!text)
            return 0;
        memcpy(text, data, size);
        if (config_parse("fuzz.toml", text, size, &cfg) == 0) {
            platform_desc_defaults(&d, cfg.main.cpus, 64ull << 20, 0);
            if (platform_desc_from_config(&d, &cfg, boot_kind) == 0)
                build_all(&d);
            config_free(&cfg);
        }
        free(text);
        return 0;
    }
    desc_from_bytes(&d, &in);
    build_all(&d);
    return 0;
}
