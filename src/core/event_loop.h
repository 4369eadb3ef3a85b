/* A small epoll loop run by the main thread: console socket, signals and
 * requests from vCPU threads all arrive here. */
#ifndef CORE_EVENT_LOOP_H
#define CORE_EVENT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

typedef void (*event_fn)(void *opaque, uint32_t events);

#define EVENT_LOOP_MAX_WATCHES 64

struct event_watch {
    int fd;
    event_fn fn;
    void *opaque;
};

struct event_loop {
    int epoll_fd;
    struct event_watch watches[EVENT_LOOP_MAX_WATCHES];
};

int event_loop_init(struct event_loop *loop);
void event_loop_destroy(struct event_loop *loop);
/* Watches fd for events (EPOLLIN/EPOLLOUT...); re-adding an fd updates it. */
int event_loop_watch(struct event_loop *loop, int fd, uint32_t events, event_fn fn, void *opaque);
void event_loop_unwatch(struct event_loop *loop, int fd);
/* Waits up to timeout_ms (-1: forever) and dispatches. Returns -1 on error. */
int event_loop_poll(struct event_loop *loop, int timeout_ms);

#endif
