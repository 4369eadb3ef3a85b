/* QEMU's "etc/table-loader" linker/loader script: 128-byte commands telling
 * the firmware to allocate fw_cfg files in guest memory, patch pointers
 * between them and fix up checksums (OVMF's AcpiPlatformDxe and SeaBIOS's
 * romfile_loader run it). Checksum fields must be zero in the blobs: OVMF
 * sums the range including the checksum byte. */
#ifndef FIRMWARE_TABLE_LOADER_H
#define FIRMWARE_TABLE_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "firmware/bytebuf.h"

#define LOADER_FILE_NAME_SIZE 56 /* NUL-terminated, like fw_cfg file names */
#define LOADER_ENTRY_SIZE 128

enum loader_command {
    LOADER_ALLOCATE = 1,
    LOADER_ADD_POINTER = 2,
    LOADER_ADD_CHECKSUM = 3,
    LOADER_WRITE_POINTER = 4,
};

enum loader_zone {
    LOADER_ZONE_HIGH = 1, /* anywhere in 32-bit RAM */
    LOADER_ZONE_FSEG = 2, /* the BIOS F-segment, for the RSDP */
};

void loader_allocate(struct bytebuf *script, const char *file, uint32_t align,
                     enum loader_zone zone);
/* The size-byte little-endian value at dest_file+offset (an offset into
 * src_file) gets src_file's address added. */
void loader_add_pointer(struct bytebuf *script, const char *dest_file, const char *src_file,
                        uint32_t offset, uint8_t size);
/* The byte at file+result_offset makes [start, start+length) sum to zero. */
void loader_add_checksum(struct bytebuf *script, const char *file, uint32_t result_offset,
                         uint32_t start, uint32_t length);

/* Runs a script the way OVMF does, on blobs the caller has copied and
 * "placed" at addr (each file's alignment is checked against addr). For tests
 * and self-checks. Returns 0, or -1 with a reason in why. */
struct loader_file {
    const char *name;
    uint8_t *data;
    size_t size;
    uint64_t addr;
    int allocated; /* set by the executor */
};
int loader_execute(const uint8_t *script, size_t len, struct loader_file *files, size_t nfiles,
                   char *why, size_t whylen);

#endif
