/* Port-I/O and MMIO buses: devices claim address ranges; the vCPU exit
 * handler dispatches accesses. An access no device claims is logged
 * (rate-limited) and reads as all-ones. */
#ifndef CORE_BUS_H
#define CORE_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/bytes.h"
#include "common/log.h"

struct io_ops {
    /* offset is relative to the range base; size is 1, 2, 4 or 8. */
    uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
    void (*write)(void *opaque, uint64_t offset, unsigned size, uint64_t value);
};

struct bus_range {
    uint64_t base, len;
    const struct io_ops *ops;
    void *opaque;
    const char *owner;
};

struct bus {
    const char *name;         /* "pio" or "mmio", for messages */
    pthread_rwlock_t lock;    /* ranges move when firmware programs PCI BARs */
    struct bus_range *ranges; /* sorted by base, non-overlapping */
    unsigned count, capacity;
    struct log_ratelimit unclaimed_log;
};

void bus_init(struct bus *bus, const char *name);
void bus_destroy(struct bus *bus);

/* Claims [base, base+len). Fails (false, logged) on overlap or len 0. */
bool bus_register(struct bus *bus, uint64_t base, uint64_t len, const struct io_ops *ops,
                  void *opaque, const char *owner);
/* Releases the range registered at exactly base by opaque. */
bool bus_unregister(struct bus *bus, uint64_t base, void *opaque);

/* Dispatch one access of size 1, 2, 4 or 8 bytes. */
uint64_t bus_read(struct bus *bus, uint64_t addr, unsigned size);
void bus_write(struct bus *bus, uint64_t addr, unsigned size, uint64_t value);

#endif
