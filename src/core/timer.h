/* Device timers: a timerfd watched by the main thread's event loop. The
 * callback runs on the main thread; devices lock their own state. Arming
 * and disarming are safe from any thread (vCPU register writes). */
#ifndef CORE_TIMER_H
#define CORE_TIMER_H

#include <stdint.h>

#include "core/io_loop.h"

struct vm_timer {
    int fd;
    struct io_loop *loop;
    struct io_watch watch;
    void (*fn)(void *opaque);
    void *opaque;
};

int vm_timer_init(struct vm_timer *t, struct io_loop *loop, void (*fn)(void *opaque),
                  void *opaque);
/* Fires after delay_ns, then every period_ns if non-zero. delay 0 disarms. */
void vm_timer_arm(struct vm_timer *t, uint64_t delay_ns, uint64_t period_ns);
void vm_timer_disarm(struct vm_timer *t);
void vm_timer_destroy(struct vm_timer *t);
/* CLOCK_MONOTONIC in ns. */
uint64_t vm_clock_ns(void);

/* The one time base of the device models: a source (CLOCK_MONOTONIC unless
 * a test substitutes one) plus an offset. The machine has one; a device
 * keeps a pointer to it and saves times read from it, so a restored VM
 * sets the offset once and every device's timers continue from where the
 * saved VM was. */
struct vm_clock {
    uint64_t (*source)(void *opaque);
    void *opaque;
    int64_t offset_ns;
};

/* A clock on CLOCK_MONOTONIC with no offset. */
void vm_clock_init(struct vm_clock *c);
uint64_t vm_clock_now(const struct vm_clock *c);
/* Moves the offset so that now reads `now_ns` (restore). */
void vm_clock_set(struct vm_clock *c, uint64_t now_ns);

#endif
