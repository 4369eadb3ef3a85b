/* Platform constants of the PC machine (i440FX + PIIX3 + PIIX4 PM), shared by
 * the chipset models and the ACPI/firmware tables that describe them. The
 * values follow QEMU's `pc` machine, which OVMF, SeaBIOS and Linux expect. */
#ifndef DEVICES_PC_LAYOUT_H
#define DEVICES_PC_LAYOUT_H

#include <stdint.h>

/* ---- PCI topology: bus 0, fixed chipset functions ---- */
#define PC_I440FX_DEVFN 0x00   /* 0.0.0 host bridge, 8086:1237 */
#define PC_PIIX3_DEVFN 0x08    /* 0.1.0 PCI-ISA bridge, 8086:7000 */
#define PC_PIIX4_PM_DEVFN 0x0b /* 0.1.3 power management, 8086:7113 rev 3 */

/* ---- Configuration access ---- */
#define PC_PCI_CONFIG_ADDRESS_PORT 0xcf8 /* mechanism #1, dword accesses only */
#define PC_PCI_CONFIG_DATA_PORT 0xcfc
#define PC_ECAM_BASE 0xe0000000ull /* MCFG: segment 0, buses 0-255 */
#define PC_ECAM_SIZE 0x10000000ull /* 256 MiB = 256 buses x 1 MiB */
#define PC_ECAM_BUS_COUNT 256

/* ---- Windows for BARs (the _CRS of \_SB.PCI0) ----
 * I/O: 0x0000-0x0CF7 and 0x0D00-0xFFFF are forwarded to PCI as in QEMU;
 * firmware (SeaBIOS, OVMF) places I/O BARs in 0xC000-0xFFFF.
 * 32-bit memory: from the top of low RAM (3 GiB) to the IOAPIC, minus the
 * ECAM window: [0xC0000000, 0xE0000000) and [0xF0000000, 0xFEC00000).
 * 64-bit memory: PC_PCI_MMIO64_SIZE bytes above all RAM; the base depends on
 * the RAM size, see pc_pci_mmio64_base(). The firmware must be told (or must
 * compute) the same window; OVMF aligns its 64-bit aperture to its size. */
#define PC_PCI_IO_BASE 0xc000
#define PC_PCI_IO_SIZE 0x4000
#define PC_PCI_MMIO32_BASE 0xc0000000ull
#define PC_PCI_MMIO32_END 0xfec00000ull /* exclusive; IOAPIC, HPET, LAPIC, ROM above */
#define PC_PCI_MMIO64_SIZE (32ull << 30)
#define PC_PCI_MMIO64_ALIGN (32ull << 30)

/* First address of the 64-bit window for RAM ending (exclusive) at ram_end. */
static inline uint64_t pc_pci_mmio64_base(uint64_t ram_end)
{
    uint64_t floor = ram_end > (4ull << 30) ? ram_end : (4ull << 30);
    return (floor + PC_PCI_MMIO64_ALIGN - 1) & ~(PC_PCI_MMIO64_ALIGN - 1);
}

/* ---- INTx routing ----
 * Swizzle (QEMU's pc): slot S, pin P (0 = INTA .. 3 = INTD) drives PIRQ
 * (S + P - 1) mod 4, i.e. slot 1 INTA -> PIRQA, slot 0 INTA -> PIRQD; see
 * pc_pirq_for(). SeaBIOS and OVMF compute INTERRUPT_LINE with this formula.
 *
 * Each PIRQ n is wired two ways at once (QEMU's ICH9 does the same):
 *  - ISA path: PIIX3 config 0x60 + n (PIRQRC[A-D]) names an ISA IRQ; bit 7
 *    set = disabled (reset value 0x80); IRQs 3-7, 9-12, 14, 15 accepted, the
 *    PIIX3-reserved 0-2, 8, 13 treated as disabled. That IRQ is driven on the
 *    PICs and the IOAPIC pin of the same number (KVM's default routing).
 *    Firmware writes PIRQA-D = 10, 10, 11, 11 (SeaBIOS and OVMF).
 *  - IOAPIC path: GSI PC_PCI_GSI_BASE + n (16-19), always.
 * All these lines are level-triggered and ACTIVE-HIGH. KVM's IOAPIC applies
 * the polarity the guest programs (it XORs the line with it), so the ACPI
 * tables must make the guest program active-high, or every line reads
 * inverted (an interrupt storm while idle). So either
 *  (a) QEMU pc: _PRT entries (S<<16 | 0xFFFF, P, LNKx, 0) with link devices
 *      LNKA-D over PRQ0-3 (byte fields at PCI config 0x60-0x63 of 0.1.0),
 *      _PRS/_CRS Interrupt(ResourceConsumer, Level, ActiveHigh, Shared)
 *      {5, 10, 11}, plus MADT overrides (flags 0x000D) for IRQ 5, 9, 10, 11;
 *  or (b) QEMU q35 style: _PRT entries naming link devices GSIA-GSID whose
 *      _PRS/_CRS is Interrupt(ResourceConsumer, Level, ActiveHigh, Shared)
 *      {16 + n}. NOT a bare GSI number in the _PRT: ACPI defines those as
 *      active-low.
 * IOAPIC pins 20-23 are free for other devices. */
#define PC_PCI_GSI_BASE 16
#define PC_PIRQ_COUNT 4
#define PC_PIRQ_ROUTE_DISABLED 0x80
#define PC_PIRQ_VALID_IRQ_MASK 0xdef8u /* IRQs 3-7, 9-12, 14, 15 */
#define PC_PIRQ_LINK_IRQ_MASK 0x0c20u  /* what _PRS offers: 5, 10, 11 */

static inline unsigned pc_pirq_for(unsigned slot, unsigned pin)
{
    return (slot + pin + 3) & 3; /* == (slot - 1 + pin) mod 4 */
}

/* ---- Interrupt-source bits for machine_set_irq(): unique per driver of
 * a shared ISA line (the COM ports use bits 0-3). ---- */
#define PC_IRQ_SOURCE_PIRQ(n) (1u << (16 + (n)))
#define PC_IRQ_SOURCE_SCI (1u << 20)
#define PC_IRQ_SOURCE_COM(n) (1u << (n)) /* COM1-COM4: n = 0..3 */
#define PC_IRQ_SOURCE_PS2_KBD (1u << 21)
#define PC_IRQ_SOURCE_PS2_AUX (1u << 22)
#define PC_IRQ_SOURCE_HPET(n) (1u << (24 + (n))) /* n < HPET_SOURCE_COUNT */

/* ---- PIIX4 power management (function 0.1.3) ----
 * PMBA (config 0x40, I/O, bits 15:6) and PMREGMISC bit 0 (config 0x80, PM
 * I/O enable) place the 64-byte PM block. Both are set at reset to
 * 0xB000/enabled so that code running before the firmware (and firmware
 * that checks PMIOSE first, as OVMF does) finds it; SeaBIOS and OVMF program
 * the same 0xB000. */
#define PC_PM_BASE_DEFAULT 0xb000
#define PC_PM_BLOCK_LEN 0x40
#define PC_PM1_STS_OFFSET 0x00 /* PM1a_EVT_BLK: status (W1C), 2 bytes */
#define PC_PM1_EN_OFFSET 0x02  /* PM1a_EVT_BLK + 2: enable, 2 bytes */
#define PC_PM1_CNT_OFFSET 0x04 /* PM1a_CNT_BLK, 2 bytes */
#define PC_PM_TMR_OFFSET 0x08  /* PM_TMR_BLK, 4 bytes */
#define PC_PM1_EVT_LEN 4
#define PC_PM1_CNT_LEN 2
#define PC_PM_TMR_LEN 4

#define PC_PM1_STS_TMR (1u << 0)
#define PC_PM1_STS_BM (1u << 4)
#define PC_PM1_STS_GBL (1u << 5)
#define PC_PM1_STS_PWRBTN (1u << 8)
#define PC_PM1_STS_RTC (1u << 10)
#define PC_PM1_STS_PWRBTNOR (1u << 11)
#define PC_PM1_STS_WAK (1u << 15)
#define PC_PM1_EN_TMR (1u << 0)
#define PC_PM1_EN_GBL (1u << 5)
#define PC_PM1_EN_PWRBTN (1u << 8)
#define PC_PM1_EN_RTC (1u << 10)
#define PC_PM1_CNT_SCI_EN (1u << 0)
#define PC_PM1_CNT_SLP_TYP_SHIFT 10
#define PC_PM1_CNT_SLP_TYP_MASK (7u << 10)
#define PC_PM1_CNT_SLP_EN (1u << 13)

/* SLP_TYP values (QEMU's piix4 convention): the DSDT declares
 * Name(_S5, Package() {0, 0}); no _S3 (suspend is not supported). Writing
 * SLP_EN with SLP_TYP 0 (S5) or 2 (S4, QEMU's s4_val) powers the VM off. */
#define PC_SLP_TYP_S5 0
#define PC_SLP_TYP_S4 2

/* ACPI PM timer: 3.579545 MHz, 24 bits (FADT flag TMR_VAL_EXT = 0). */
#define PC_PM_TIMER_HZ 3579545ull
#define PC_PM_TIMER_BITS 24

/* GPE0 block at QEMU's and propolis's fixed address (not relocated with
 * PMBA): 2 bytes status (W1C) then 2 bytes enable. No GPE is raised yet. */
#define PC_GPE0_BASE 0xafe0
#define PC_GPE0_LEN 4

/* SCI: ISA IRQ 9, level, active high (FADT SCI_INT = 9, MADT override). */
#define PC_SCI_IRQ 9

/* SMI command port (APM control, with status at +1). The PM function
 * implements QEMU's protocol: writing PC_ACPI_ENABLE sets SCI_EN, writing
 * PC_ACPI_DISABLE clears it; nothing else happens (no SMM). SCI_EN is clear
 * at reset, as in QEMU. The FADT should declare SMI_CMD = 0xB2, ACPI_ENABLE
 * = 0xF1, ACPI_DISABLE = 0xF0 (QEMU, propolis ACPI V0); SMI_CMD = 0 also
 * works because the SCI does not depend on SCI_EN (as in QEMU). */
#define PC_SMI_CMD_PORT 0xb2
#define PC_ACPI_ENABLE 0xf1
#define PC_ACPI_DISABLE 0xf0

/* ---- Reset ---- */
#define PC_RESET_CONTROL_PORT 0xcf9 /* FADT RESET_REG (I/O, 8 bits) */
#define PC_RESET_VALUE 0x06         /* FADT RESET_VALUE: hard reset + reset CPU */
#define PC_FAST_A20_PORT 0x92

#endif
