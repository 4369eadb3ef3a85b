/* QEMU's ramfb: a framebuffer in guest RAM that the guest firmware sets up
 * by writing a 28-byte big-endian configuration to the fw_cfg file
 * "etc/ramfb" (be64 address, then be32 fourcc, flags, width, height and
 * stride). OVMF's QemuRamfbDxe uses it for its GOP. This module decodes and
 * checks a configuration; the fw_cfg device keeps the current mode. */
#ifndef FIRMWARE_RAMFB_H
#define FIRMWARE_RAMFB_H

#include <stdbool.h>
#include <stdint.h>

struct guest_mem;

#define RAMFB_FILE "etc/ramfb"
#define RAMFB_CFG_SIZE 28
#define RAMFB_FOURCC_XRGB8888 0x34325258u /* DRM fourcc 'XR24' */
#define RAMFB_BYTES_PER_PIXEL 4
#define RAMFB_MIN_DIM 16
#define RAMFB_MAX_WIDTH 16000 /* QEMU's VBE limits */
#define RAMFB_MAX_HEIGHT 12000

struct ramfb_mode {
    uint64_t addr;
    uint32_t fourcc, flags, width, height, stride;
};

/* Decodes cfg; stride 0 means width * 4. Returns NULL if the mode is usable
 * (format XR24, sizes bounded, framebuffer wholly inside guest RAM), else a
 * reason. */
const char *ramfb_parse(const uint8_t cfg[RAMFB_CFG_SIZE], const struct guest_mem *mem,
                        struct ramfb_mode *out);
void ramfb_encode(const struct ramfb_mode *mode, uint8_t cfg[RAMFB_CFG_SIZE]);

#endif
