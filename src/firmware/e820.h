/* The "etc/e820" fw_cfg file: the guest-physical memory map as packed
 * 20-byte entries (le64 address, le64 length, le32 type). OVMF and SeaBIOS
 * take RAM from it instead of the CMOS. */
#ifndef FIRMWARE_E820_H
#define FIRMWARE_E820_H

#include "firmware/bytebuf.h"
#include "firmware/platform.h"

#define E820_FILE "etc/e820"
#define E820_ENTRY_SIZE 20
#define E820_RAM 1
#define E820_RESERVED 2

/* RAM below 4 GiB, RAM above 4 GiB, then the reserved ranges, in address
 * order. Returns 0, or -1 on overlapping ranges or OOM. */
int e820_build(const struct platform_desc *d, struct bytebuf *out);

#endif
