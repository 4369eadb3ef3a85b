/* The "bootorder" fw_cfg file: one OpenFirmware device path per line, in
 * [main].boot_order order, in the forms OVMF's QemuBootOrderLib translates
 * (TranslatePciOfwNodes), then "HALT" (strict: nothing else) and a NUL, as
 * propolis writes it. */
#ifndef FIRMWARE_BOOTORDER_H
#define FIRMWARE_BOOTORDER_H

#include <stddef.h>

#include "firmware/bytebuf.h"
#include "firmware/platform.h"

#define BOOTORDER_FILE "bootorder"
#define BOOTORDER_PATH_MAX 80

/* Writes the path of one device; returns its length, or -1 if the device
 * cannot be named (not on bus 0, slot or function out of range). */
int bootorder_path(const struct platform_boot_device *dev, char *out, size_t outlen);

int bootorder_build(const struct platform_boot_device *devs, unsigned count, struct bytebuf *out);

#endif
