/* SMBIOS 3.0 tables as QEMU hands them to firmware: the structure table in
 * "etc/smbios/smbios-tables" (ending with type 127) and a 24-byte `_SM3_`
 * entry point in "etc/smbios/smbios-anchor" whose table address the
 * firmware fills in (OVMF checks that its maximum size equals the table
 * file's size). Types 0, 1, 4, 16, 17, 19, 32, 127 with propolis' values. */
#ifndef FIRMWARE_SMBIOS_H
#define FIRMWARE_SMBIOS_H

#include "firmware/bytebuf.h"
#include "firmware/platform.h"

#define SMBIOS_TABLES_FILE "etc/smbios/smbios-tables"
#define SMBIOS_ANCHOR_FILE "etc/smbios/smbios-anchor"
#define SMBIOS3_ANCHOR_SIZE 24

/* Structure handles, as propolis numbers them. */
#define SMBIOS_HANDLE_TYPE0 0x0000
#define SMBIOS_HANDLE_TYPE1 0x0100
#define SMBIOS_HANDLE_TYPE4 0x0300
#define SMBIOS_HANDLE_TYPE16 0x1600
#define SMBIOS_HANDLE_TYPE17 0x1700
#define SMBIOS_HANDLE_TYPE19 0x1300
#define SMBIOS_HANDLE_TYPE32 0x3200
#define SMBIOS_HANDLE_TYPE127 0x7f00

/* Returns 0, or -1 (logged). */
int smbios_build(const struct platform_desc *d, struct bytebuf *tables, struct bytebuf *anchor);

#endif
