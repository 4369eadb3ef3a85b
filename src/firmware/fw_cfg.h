/* QEMU's firmware configuration device (docs/specs/fw_cfg.rst), x86 I/O
 * port flavour: a 16-bit selector at 0x510, a byte-wide data port at 0x511
 * (reads advance through the selected item; past its end they read 0), and
 * the DMA interface at 0x514: an 8-byte big-endian address register (written
 * as two 32-bit halves, high then low, or as one 64-bit write) whose low
 * half starts a transfer described by a guest-memory control structure
 * { be32 control, be32 length, be64 address }. Reads of 0x514 return the
 * "QEMU CFG" signature.
 *
 * Items are legacy (fixed selectors) or files (named, listed in the file
 * directory item 0x19, selectors from 0x20 in name order as QEMU assigns
 * them). Only "etc/ramfb" is guest-writable. Every guest address goes
 * through guest_mem; every guest mistake is logged (rate-limited) and at
 * most sets the DMA error bit. */
#ifndef FIRMWARE_FW_CFG_H
#define FIRMWARE_FW_CFG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "core/bus.h"
#include "devices/device.h"
#include "firmware/ramfb.h"

struct guest_mem;

#define FW_CFG_IO_BASE 0x510
#define FW_CFG_IO_COUNT 2 /* selector (16-bit) + data (8-bit) */
#define FW_CFG_DMA_BASE 0x514
#define FW_CFG_DMA_COUNT 8
#define FW_CFG_ACPI_IO_COUNT 12 /* 0x510..0x51b, as described to the guest */

/* Legacy selectors. */
#define FW_CFG_SIGNATURE 0x0000
#define FW_CFG_ID 0x0001
#define FW_CFG_UUID 0x0002
#define FW_CFG_RAM_SIZE 0x0003
#define FW_CFG_NB_CPUS 0x0005
#define FW_CFG_MAX_CPUS 0x000f
#define FW_CFG_FILE_DIR 0x0019
#define FW_CFG_FILE_FIRST 0x0020
#define FW_CFG_INVALID 0xffff

#define FW_CFG_ID_TRADITIONAL 0x01
#define FW_CFG_ID_DMA 0x02

/* DMA control bits. */
#define FW_CFG_DMA_ERROR 0x01
#define FW_CFG_DMA_READ 0x02
#define FW_CFG_DMA_SKIP 0x04
#define FW_CFG_DMA_SELECT 0x08
#define FW_CFG_DMA_WRITE 0x10
#define FW_CFG_DMA_DESC_SIZE 16

#define FW_CFG_FILE_NAME_SIZE 56
#define FW_CFG_DIR_ENTRY_SIZE 64
#define FW_CFG_MAX_ITEMS 64
#define FW_CFG_MAX_ITEM_SIZE (16u * 1024 * 1024)

/* Called with the device's lock held when the guest selects an item: the
 * owner may rewrite the item's bytes in place. The size stays what the
 * file directory told the guest. It may take other devices' locks (the
 * ACPI tables' refresh takes the PM function's PCI lock); nothing may
 * take this lock while holding those. */
typedef void (*fw_cfg_refresh_fn)(void *opaque, uint8_t *data, uint32_t size);

struct fw_cfg_item {
    uint16_t selector;
    bool is_file;
    char name[FW_CFG_FILE_NAME_SIZE]; /* files only */
    uint8_t *data;
    uint32_t size;
    bool writable;
    fw_cfg_refresh_fn refresh;
    void *refresh_opaque;
};

struct fw_cfg {
    struct device dev;
    const struct guest_mem *mem;
    pthread_mutex_t lock;

    struct fw_cfg_item items[FW_CFG_MAX_ITEMS];
    unsigned item_count;

    /* Guest-visible state. */
    uint16_t cur_selector;
    int cur_item; /* index into items, or -1 for a missing selector */
    uint32_t cur_offset;
    uint32_t dma_addr_high;

    bool ramfb_valid;
    struct ramfb_mode ramfb;
    unsigned ramfb_changes;

    struct log_ratelimit guest_log;
};

/* Creates the device with the signature, ID (DMA supported) and file
 * directory items. mem is the guest memory DMA goes through. */
int fw_cfg_init(struct fw_cfg *fw, const struct guest_mem *mem);

/* Adds a copy of data under a legacy selector (below 0x20 or 0x8000-0x8fff)
 * or a named file. Returns 0, or -1 (logged) on a duplicate, a bad name,
 * too many items or too much data. */
int fw_cfg_add_bytes(struct fw_cfg *fw, uint16_t selector, const void *data, size_t len);
int fw_cfg_add_file(struct fw_cfg *fw, const char *name, const void *data, size_t len);
/* The writable "etc/ramfb" file. */
int fw_cfg_add_ramfb(struct fw_cfg *fw);

/* The framebuffer mode the guest configured; false if none (or since reset). */
bool fw_cfg_ramfb_mode(struct fw_cfg *fw, struct ramfb_mode *out);
/* Has refresh called whenever the guest selects the named file (port or
 * DMA select), as QEMU builds its ACPI tables when the firmware reads
 * them. Returns -1 (logged) if there is no such file. */
int fw_cfg_set_refresh(struct fw_cfg *fw, const char *name, fw_cfg_refresh_fn refresh,
                       void *opaque);
/* Calls the refresh of the selected item, if it has one: after a snapshot
 * is loaded, so that a guest restored part way through reading the item
 * reads on in bytes built for the restored machine (the loaded selection
 * does not count as selecting it again). */
void fw_cfg_refresh_selected(struct fw_cfg *fw);
/* Selector of a file, or FW_CFG_INVALID. */
uint16_t fw_cfg_file_selector(struct fw_cfg *fw, const char *name);

/* Bus handlers: fw_cfg_io_ops at FW_CFG_IO_BASE (FW_CFG_IO_COUNT ports),
 * fw_cfg_dma_ops at FW_CFG_DMA_BASE (FW_CFG_DMA_COUNT ports); opaque is
 * the struct fw_cfg. */
extern const struct io_ops fw_cfg_io_ops;
extern const struct io_ops fw_cfg_dma_ops;

#endif
