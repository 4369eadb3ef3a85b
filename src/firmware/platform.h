/* Everything the firmware-facing generators need to know about the machine,
 * as plain values: main fills a platform_desc (platform_desc_defaults() gives
 * the PC layout, platform_desc_from_config() the configured parts), then
 * fw_cfg_build() turns it into the fw_cfg items the firmware reads: the E820
 * map, ACPI tables with their table-loader script, SMBIOS, bootorder and the
 * ramfb configuration file. Generation is pure (no KVM, no guest memory). */
#ifndef FIRMWARE_PLATFORM_H
#define FIRMWARE_PLATFORM_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

struct fw_cfg;

#define PLATFORM_MAX_CPUS 255
#define PLATFORM_MAX_RESERVED 8
#define PLATFORM_MAX_BOOT_DEVICES 32
#define PLATFORM_PCI_SLOTS 32
#define PLATFORM_COM_PORTS 4
#define PLATFORM_STRING_MAX 64 /* SMBIOS strings; EDK2 rejects longer ones */

/* What a boot_order entry is, for its OpenFirmware device path. */
enum boot_device_kind {
    BOOT_DEVICE_VIRTIO_BLOCK, /* /pci@i0cf8/scsi@D/disk@0,0 */
    BOOT_DEVICE_NVME,         /* /pci@i0cf8/pci8086,5845@D/namespace@1,0 */
    BOOT_DEVICE_NIC,          /* /pci@i0cf8/ethernet@D */
    BOOT_DEVICE_PCI,          /* /pci@i0cf8/device@D */
    BOOT_DEVICE_NONE,         /* cannot be in main.boot_order */
};

/* The boot kind of a [dev.*] driver: the wiring's driver table answers. */
typedef enum boot_device_kind (*platform_boot_kind_fn)(enum config_driver driver);

struct platform_boot_device {
    enum boot_device_kind kind;
    uint8_t bus, dev, func;
};

enum platform_cpu_vendor {
    PLATFORM_CPU_VENDOR_UNKNOWN,
    PLATFORM_CPU_VENDOR_INTEL,
    PLATFORM_CPU_VENDOR_AMD,
};

struct platform_range {
    uint64_t base, size;
};

struct platform_desc {
    /* ---- machine shape ---- */
    unsigned cpus;         /* 1..255; vCPU i has APIC id i */
    uint64_t lowmem_size;  /* RAM at guest physical 0 (<= 3 GiB) */
    uint64_t highmem_size; /* RAM at 4 GiB */
    uint64_t bootrom_size; /* for SMBIOS type 0 ROM size; 0 = unknown */
    /* Reserved ranges reported in etc/e820 (e.g. KVM's TSS/identity map). */
    struct platform_range reserved[PLATFORM_MAX_RESERVED];
    unsigned reserved_count;

    /* ---- ACPI fixed hardware: the PIIX4-style PM function ---- */
    uint16_t pm_base;        /* PM1a_EVT at pm_base+pm1a_evt_offset, etc. */
    uint8_t pm1a_evt_offset; /* 4 bytes: PM1_STS, PM1_EN */
    uint8_t pm1a_cnt_offset; /* 2 bytes */
    uint8_t pm_tmr_offset;   /* 4 bytes */
    bool pm_timer_32bit;     /* FADT TMR_VAL_EXT */
    uint16_t gpe0_base;      /* 0: no GPE block */
    uint8_t gpe0_len;        /* bytes, even */
    uint8_t sci_irq;         /* ISA IRQ of the SCI */
    uint8_t s5_slp_typ;      /* SLP_TYP value the PM1a_CNT decodes as S5 */
    uint16_t smi_cmd;        /* 0: ACPI always enabled (SCI_EN reads 1) */
    uint8_t acpi_enable, acpi_disable;
    uint16_t reset_port; /* FADT RESET_REG (system I/O), e.g. 0xcf9 */
    uint8_t reset_value;
    uint8_t rtc_century; /* CMOS index of the century byte */

    /* ---- interrupts ---- */
    uint32_t lapic_addr, ioapic_addr;
    uint8_t ioapic_id;
    uint16_t isa_level_irqs; /* bit n: ISA IRQ n is level/active-high (MADT override) */
    /* _PRT: the IOAPIC pin (16-23) each device slot's INTA..INTD drives; 0 =
     * not routed. Each pin is described by a PNP0C0F link device GSIx whose
     * only resource is Interrupt(Level, ActiveHigh, Shared) {pin}: a bare
     * GSI number in the _PRT would mean active-low. */
    uint8_t prt_gsi[PLATFORM_PCI_SLOTS][4];

    /* ---- PCI host bridge ---- */
    uint64_t pci_mmio32_base, pci_mmio32_size; /* below 4 GiB; ECAM is carved out */
    uint64_t pci_mmio64_base, pci_mmio64_size; /* size 0: no 64-bit window */
    uint64_t ecam_base;                        /* 0: no ECAM, no MCFG */
    uint8_t ecam_bus_end;                      /* buses 0..ecam_bus_end */

    /* ---- fixed legacy devices ---- */
    bool hpet;
    uint64_t hpet_base;
    uint32_t hpet_block_id; /* HPET general capabilities low dword */
    uint16_t hpet_min_tick; /* shortest periodic period, in counter ticks */
    uint8_t com_mask;       /* bit i: COM(i+1) at its standard port and IRQ */
    bool ps2_mouse;
    bool vga_present;      /* else FADT says "VGA not present" */
    uint16_t pvpanic_port; /* 0: no ISA pvpanic (QEMU0001) */
    uint16_t fw_cfg_port;  /* 0: do not describe fw_cfg (QEMU0002) */

    /* ---- identity: SMBIOS ---- */
    char bootrom_version[PLATFORM_STRING_MAX + 1];
    enum platform_cpu_vendor cpu_vendor;
    uint32_t cpuid1_eax, cpuid1_edx; /* processor id */
    char cpu_brand[49];              /* CPUID 0x80000002..4 */
    bool has_uuid;
    uint8_t uuid[16]; /* RFC 4122 byte order */

    /* ---- boot ---- */
    struct platform_boot_device boot[PLATFORM_MAX_BOOT_DEVICES];
    unsigned boot_count; /* 0: no bootorder file */
};

/* The PC layout this VMM builds (src/devices/pc_layout.h and the device
 * headers): PIIX4 PM block at 0xb000 with GPE0 at 0xafe0, SCI on IRQ 9,
 * SMI_CMD 0xb2, S5 = SLP_TYP 0, 0xcf9 reset, HPET, PS/2 keyboard and mouse,
 * four COM ports, INTx of slot S pin P on GSI 16 + (S + P - 1) % 4, ECAM,
 * PCI windows around the RAM layout (64-bit window for 36 physical address
 * bits until platform_desc_set_phys_bits says more). cpus and memory sizes
 * are taken as given. */
void platform_desc_defaults(struct platform_desc *d, unsigned cpus, uint64_t lowmem_size,
                            uint64_t highmem_size);

/* Sets the 64-bit PCI window to [above RAM, 2^phys_bits) (what firmware may
 * pick from), given the guest's physical address width (CPUID 0x80000008). */
void platform_desc_set_phys_bits(struct platform_desc *d, unsigned phys_bits);

/* Copies [main].bootrom_version and boot_order from the configuration, and
 * describes an ISA pvpanic (enable_isa) to ACPI. Returns 0, or -1 (logged)
 * if a boot device cannot be expressed. */
int platform_desc_from_config(struct platform_desc *d, const struct config *cfg,
                              platform_boot_kind_fn boot_kind);

/* Raw CPUID leaf 0 (vendor), 1 and 0x80000002..4 into the SMBIOS fields. */
void platform_desc_set_cpuid(struct platform_desc *d, const uint32_t leaf0[4],
                             const uint32_t leaf1[4], const uint32_t brand[3][4]);

/* Checks the values the generators rely on; -1 with a reason if unusable. */
int platform_desc_check(const struct platform_desc *d, char *why, unsigned whylen);

/* Adds every generated item to fw: etc/e820, the ACPI tables, RSDP and
 * table-loader, both SMBIOS files, bootorder, etc/ramfb, and the CPU count
 * and RAM size items.
 * Returns 0, or -1 (logged). */
int fw_cfg_build(struct fw_cfg *fw, const struct platform_desc *d);

#endif
