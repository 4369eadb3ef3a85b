/* ACPI tables for the PC platform, delivered QEMU-style: every table but
 * the RSDP concatenated in "etc/acpi/tables" (FACS first, for its 64-byte
 * alignment), the RSDP in "etc/acpi/rsdp", and an "etc/table-loader" script
 * that makes the firmware place both, patch the pointers between tables and
 * compute every checksum. In the blobs, pointers hold offsets into their
 * target file and checksum bytes are zero, as the loader protocol wants. */
#ifndef FIRMWARE_ACPI_H
#define FIRMWARE_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "firmware/bytebuf.h"
#include "firmware/platform.h"

#define ACPI_TABLES_FILE "etc/acpi/tables"
#define ACPI_RSDP_FILE "etc/acpi/rsdp"
#define ACPI_LOADER_FILE "etc/table-loader"

#define ACPI_HEADER_SIZE 36
#define ACPI_RSDP_SIZE 36
#define ACPI_FACS_SIZE 64
#define ACPI_FADT_SIZE 276 /* revision 6 */

/* FADT field offsets (ACPI 6.4, table 5.9). */
#define FADT_FIRMWARE_CTRL 36
#define FADT_DSDT 40
#define FADT_SCI_INT 46
#define FADT_SMI_CMD 48
#define FADT_PM1A_EVT_BLK 56
#define FADT_PM1A_CNT_BLK 64
#define FADT_PM_TMR_BLK 76
#define FADT_GPE0_BLK 80
#define FADT_PM1_EVT_LEN 88
#define FADT_PM1_CNT_LEN 89
#define FADT_PM_TMR_LEN 91
#define FADT_GPE0_BLK_LEN 92
#define FADT_CENTURY 108
#define FADT_IAPC_BOOT_ARCH 109
#define FADT_FLAGS 112
#define FADT_RESET_REG 116
#define FADT_RESET_VALUE 128
#define FADT_X_DSDT 140
#define FADT_X_PM1A_EVT_BLK 148
#define FADT_X_PM1A_CNT_BLK 172
#define FADT_X_PM_TMR_BLK 208

/* FADT flags and IA-PC boot architecture flags we use. */
#define FADT_F_WBINVD (1u << 0)
#define FADT_F_PROC_C1 (1u << 2)
#define FADT_F_SLP_BUTTON (1u << 5)
#define FADT_F_TMR_VAL_EXT (1u << 8)
#define FADT_F_RESET_REG_SUP (1u << 10)
#define IAPC_LEGACY_DEVICES (1u << 0)
#define IAPC_8042 (1u << 1)
#define IAPC_VGA_NOT_PRESENT (1u << 2)

struct acpi_blobs {
    struct bytebuf tables, rsdp, loader;
};

/* Builds all three blobs. Returns 0, or -1 (logged) on bad input or OOM. */
int acpi_build(const struct platform_desc *d, struct acpi_blobs *out);
/* Builds the tables blob again into tables, which holds the size bytes a
 * first build gave (the loader and RSDP refer to offsets in it, so only
 * values may change, e.g. the PM block's ports). Returns 0, or -1 (logged)
 * if the build fails or its size differs. */
int acpi_rebuild_tables(const struct platform_desc *d, uint8_t *tables, size_t size);
/* The DSDT's AML body alone (after its header), for tests. */
int acpi_build_dsdt_aml(const struct platform_desc *d, struct bytebuf *out);
void acpi_blobs_free(struct acpi_blobs *b);

#endif
