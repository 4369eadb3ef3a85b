#include "core/timer.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

static void timer_event(void *opaque, uint32_t events)
{
    struct vm_timer *t = opaque;
    uint64_t expirations;
    if (read(t->fd, &expirations, sizeof(expirations)) != sizeof(expirations))
        return; /* disarmed meanwhile */
    t->fn(t->opaque);
}

int vm_timer_init(struct vm_timer *t, struct io_loop *loop, void (*fn)(void *opaque),
                  void *opaque)
{
    t->loop = loop;
    t->fn = fn;
    t->opaque = opaque;
    io_watch_init(&t->watch);
    t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (t->fd < 0) {
        log_error("timerfd_create: %s", strerror(errno));
        return -1;
    }
    if (loop && io_loop_watch(loop, &t->watch, t->fd, EPOLLIN, timer_event, t) < 0) {
        close(t->fd);
        t->fd = -1;
        return -1;
    }
    return 0;
}

static struct timespec to_timespec(uint64_t ns)
{
    return (struct timespec){(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
}

void vm_timer_arm(struct vm_timer *t, uint64_t delay_ns, uint64_t period_ns)
{
    if (t->fd < 0)
        return;
    struct itimerspec spec = {.it_interval = to_timespec(period_ns),
                              .it_value = to_timespec(delay_ns)};
    timerfd_settime(t->fd, 0, &spec, NULL);
}

void vm_timer_disarm(struct vm_timer *t)
{
    vm_timer_arm(t, 0, 0);
}

void vm_timer_destroy(struct vm_timer *t)
{
    if (t->fd < 0)
        return;
    if (t->loop)
        io_loop_unwatch(t->loop, &t->watch);
    close(t->fd);
    t->fd = -1;
}

uint64_t vm_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t monotonic_source(void *opaque)
{
    return vm_clock_ns();
}

void vm_clock_init(struct vm_clock *c)
{
    *c = (struct vm_clock){.source = monotonic_source};
}

uint64_t vm_clock_now(const struct vm_clock *c)
{
    return c->source(c->opaque) + (uint64_t)c->offset_ns;
}

void vm_clock_set(struct vm_clock *c, uint64_t now_ns)
{
    c->offset_ns = (int64_t)(now_ns - c->source(c->opaque));
}
