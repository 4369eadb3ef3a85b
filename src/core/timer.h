/* Device timers: a timerfd watched by the main thread's event loop. The
 * callback runs on the main thread; devices lock their own state. Arming
 * and disarming are safe from any thread (vCPU register writes). */
#ifndef CORE_TIMER_H
#define CORE_TIMER_H

#include <stdint.h>

#include "core/event_loop.h"

struct vm_timer {
    int fd;
    struct event_loop *loop;
    void (*fn)(void *opaque);
    void *opaque;
};

int vm_timer_init(struct vm_timer *t, struct event_loop *loop, void (*fn)(void *opaque),
                  void *opaque);
/* Fires after delay_ns, then every period_ns if non-zero. delay 0 disarms. */
void vm_timer_arm(struct vm_timer *t, uint64_t delay_ns, uint64_t period_ns);
void vm_timer_disarm(struct vm_timer *t);
void vm_timer_destroy(struct vm_timer *t);
/* CLOCK_MONOTONIC in ns, the time base device models use. */
uint64_t vm_clock_ns(void);

#endif
