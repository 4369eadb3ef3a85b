/* QEMU's debug console port (0x402: guest bytes to a file, reads 0xE9 so
 * firmware detects it) and the POST code port 0x80 (logged at debug level). */
#ifndef DEVICES_DEBUG_PORT_H
#define DEVICES_DEBUG_PORT_H

#include <stdatomic.h>
#include <stdint.h>

#include "common/log.h"
#include "core/bus.h"
#include "devices/device.h"

#define DEBUG_PORT_ADDR 0x402
#define POST_PORT_ADDR 0x80

/* ./debug.out stops growing here: the guest decides how much it writes. */
#define DEBUG_PORT_MAX_BYTES (64ull << 20)

struct debug_port {
    struct device dev;
    int fd;             /* -1: output discarded */
    uint64_t max_bytes; /* DEBUG_PORT_MAX_BYTES */
    _Atomic uint64_t written;
};

struct post_port {
    struct device dev;
    _Atomic uint8_t last_code;
    struct log_ratelimit log; /* Linux writes port 0x80 for I/O delays */
};

extern const struct io_ops debug_port_io_ops;
extern const struct io_ops post_port_io_ops;

/* Opens path for the guest's debug output: created, or emptied if it is a
 * regular file; a symlink there is refused (logged), its target untouched. */
int debug_port_init(struct debug_port *dp, const char *path);
void post_port_init(struct post_port *pp);

#endif
