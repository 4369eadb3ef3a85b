/* QEMU's ISA pvpanic device (port 0x505, [dev.*] driver = "qemu-pvpanic"
 * with enable_isa): the guest reads the events it may report and writes the
 * one that happened. A panic is logged as an error and counted; the guest
 * keeps running (propolis records it, it does not stop the VM). */
#ifndef DEVICES_PVPANIC_H
#define DEVICES_PVPANIC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/log.h"
#include "core/bus.h"
#include "devices/device.h"

#define PVPANIC_PORT 0x505
#define PVPANIC_PANICKED 0x01     /* guest panicked; the host should act */
#define PVPANIC_CRASH_LOADED 0x02 /* guest panicked and loaded a crash kernel */
#define PVPANIC_EVENTS (PVPANIC_PANICKED | PVPANIC_CRASH_LOADED)

struct pvpanic {
    struct device dev;
    pthread_mutex_t lock;
    /* Optional: told of every reported event (called with the device locked). */
    void (*on_event)(void *opaque, uint8_t events);
    void *on_event_opaque;
    uint64_t panics;      /* PANICKED reports since start */
    uint64_t crash_loads; /* CRASH_LOADED reports since start */
    struct log_ratelimit event_log;
    struct log_ratelimit bad_access_log;
};

extern const struct io_ops pvpanic_io_ops;

void pvpanic_init(struct pvpanic *pv, const char *name);
/* Counts survive guest resets: they describe the VM's run. */
uint64_t pvpanic_panic_count(struct pvpanic *pv);
uint64_t pvpanic_crash_loaded_count(struct pvpanic *pv);

#endif
