#include "core/event_loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/log.h"

int event_loop_init(struct event_loop *loop)
{
    memset(loop, 0, sizeof(*loop));
    for (unsigned i = 0; i < EVENT_LOOP_MAX_WATCHES; i++)
        loop->watches[i].fd = -1;
    loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    return loop->epoll_fd < 0 ? -1 : 0;
}

void event_loop_destroy(struct event_loop *loop)
{
    if (loop->epoll_fd >= 0)
        close(loop->epoll_fd);
    loop->epoll_fd = -1;
}

static struct event_watch *find_watch(struct event_loop *loop, int fd)
{
    for (unsigned i = 0; i < EVENT_LOOP_MAX_WATCHES; i++)
        if (loop->watches[i].fd == fd)
            return &loop->watches[i];
    return NULL;
}

int event_loop_watch(struct event_loop *loop, int fd, uint32_t events, event_fn fn, void *opaque)
{
    struct event_watch *w = find_watch(loop, fd);
    int op = EPOLL_CTL_MOD;
    if (!w) {
        w = find_watch(loop, -1);
        if (!w) {
            log_error("event loop: too many watched descriptors");
            return -1;
        }
        op = EPOLL_CTL_ADD;
    }
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(loop->epoll_fd, op, fd, &ev) < 0) {
        log_error("event loop: epoll_ctl: %s", strerror(errno));
        return -1;
    }
    *w = (struct event_watch){fd, fn, opaque};
    return 0;
}

void event_loop_unwatch(struct event_loop *loop, int fd)
{
    struct event_watch *w = find_watch(loop, fd);
    if (!w)
        return;
    epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
    w->fd = -1;
    w->fn = NULL;
}

int event_loop_poll(struct event_loop *loop, int timeout_ms)
{
    struct epoll_event events[EVENT_LOOP_MAX_WATCHES];
    int n = epoll_wait(loop->epoll_fd, events, EVENT_LOOP_MAX_WATCHES, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        struct event_watch *w = events[i].data.ptr;
        /* A callback may have unwatched a later descriptor in this batch. */
        if (w->fd >= 0 && w->fn)
            w->fn(w->opaque, events[i].events);
    }
    return n;
}
