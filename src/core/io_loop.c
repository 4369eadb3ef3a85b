#include "core/io_loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/thread.h"

void io_watch_init(struct io_watch *w)
{
    *w = (struct io_watch){.fd = -1};
}

int io_loop_init(struct io_loop *loop, const char *name)
{
    memset(loop, 0, sizeof(*loop));
    loop->name = name;
    loop->control_fd = -1;
    io_watch_init(&loop->control);
    loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epoll_fd < 0) {
        log_error("%s: epoll_create1: %s", name, strerror(errno));
        return -1;
    }
    pthread_mutex_init(&loop->lock, NULL);
    pthread_cond_init(&loop->cond, NULL);
    return 0;
}

void io_loop_destroy(struct io_loop *loop)
{
    if (loop->epoll_fd < 0)
        return;
    io_loop_stop(loop);
    if (loop->control.fd >= 0)
        io_loop_unwatch(loop, &loop->control);
    if (loop->control_fd >= 0)
        close(loop->control_fd);
    close(loop->epoll_fd);
    loop->epoll_fd = -1;
    pthread_mutex_destroy(&loop->lock);
    pthread_cond_destroy(&loop->cond);
}

bool io_loop_on_thread(const struct io_loop *loop)
{
    return loop->threaded && pthread_equal(pthread_self(), loop->thread);
}

int io_loop_watch(struct io_loop *loop, struct io_watch *w, int fd, uint32_t events, io_fn fn,
                  void *opaque)
{
    int op = EPOLL_CTL_ADD;
    if (w->fd >= 0) {
        if (w->fd != fd) {
            log_error("%s: a watch moved to another descriptor without an unwatch", loop->name);
            return -1;
        }
        op = EPOLL_CTL_MOD;
    }
    w->fn = fn;
    w->opaque = opaque;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(loop->epoll_fd, op, fd, &ev) < 0) {
        log_error("%s: epoll_ctl: %s", loop->name, strerror(errno));
        return -1;
    }
    w->fd = fd;
    return 0;
}

/* Drops w from the part of the current batch not yet dispatched. */
static void scrub_batch(struct io_loop *loop, const struct io_watch *w)
{
    if (!loop->batch)
        return;
    for (int i = loop->batch_next; i < loop->batch_len; i++)
        if (loop->batch[i].data.ptr == w)
            loop->batch[i].data.ptr = NULL;
}

void io_loop_unwatch(struct io_loop *loop, struct io_watch *w)
{
    if (w->fd < 0)
        return;
    /* Another thread must not free a watch the loop's thread may be about
     * to call: park that thread first. */
    bool pause = loop->threaded && !io_loop_on_thread(loop);
    if (pause)
        io_loop_pause(loop);
    epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, w->fd, NULL);
    scrub_batch(loop, w);
    w->fd = -1;
    w->fn = NULL;
    if (pause)
        io_loop_resume(loop);
}

int io_loop_poll(struct io_loop *loop, int timeout_ms)
{
    struct epoll_event events[IO_LOOP_BATCH];
    int n = epoll_wait(loop->epoll_fd, events, IO_LOOP_BATCH, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    loop->batch = events;
    loop->batch_len = n;
    for (int i = 0; i < n; i++) {
        loop->batch_next = i + 1;
        struct io_watch *w = events[i].data.ptr;
        if (w && w->fn)
            w->fn(w->opaque, events[i].events);
    }
    loop->batch = NULL;
    loop->batch_len = loop->batch_next = 0;
    return n;
}

static void control_event(void *opaque, uint32_t events)
{
    struct io_loop *loop = opaque;
    uint64_t count;
    /* Only wakes the thread: the state is read under the lock. */
    if (read(loop->control_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        log_warn("%s: control read: %s", loop->name, strerror(errno));
}

static void notify_thread(struct io_loop *loop)
{
    uint64_t one = 1;
    if (write(loop->control_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("%s: control write: %s", loop->name, strerror(errno));
}

static void *loop_main(void *arg)
{
    struct io_loop *loop = arg;
    for (;;) {
        pthread_mutex_lock(&loop->lock);
        while (loop->state == IO_LOOP_PAUSING || loop->state == IO_LOOP_PAUSED) {
            if (loop->state == IO_LOOP_PAUSING) {
                loop->state = IO_LOOP_PAUSED;
                pthread_cond_broadcast(&loop->cond);
            }
            pthread_cond_wait(&loop->cond, &loop->lock);
        }
        bool stop = loop->state == IO_LOOP_STOPPING;
        pthread_mutex_unlock(&loop->lock);
        if (stop)
            break;
        if (io_loop_poll(loop, -1) < 0) {
            log_error("%s: epoll_wait: %s; I/O loop ends", loop->name, strerror(errno));
            break;
        }
    }
    return NULL;
}

int io_loop_start(struct io_loop *loop)
{
    if (loop->control_fd < 0) {
        loop->control_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (loop->control_fd < 0) {
            int err = errno;
            log_error("%s: eventfd: %s", loop->name, strerror(err));
            return -err;
        }
        if (io_loop_watch(loop, &loop->control, loop->control_fd, EPOLLIN, control_event, loop) <
            0)
            return -EINVAL;
    }
    loop->state = IO_LOOP_RUNNING;
    loop->pause_depth = 0;
    int err = thread_start(&loop->thread, loop->name, THREAD_DEVICE_IO, 0, loop_main, loop);
    if (err) {
        log_error("%s: cannot start its thread: %s", loop->name, strerror(-err));
        return err;
    }
    loop->threaded = true;
    return 0;
}

void io_loop_pause(struct io_loop *loop)
{
    if (!loop->threaded || io_loop_on_thread(loop))
        return;
    pthread_mutex_lock(&loop->lock);
    if (loop->pause_depth++ == 0 && loop->state == IO_LOOP_RUNNING) {
        loop->state = IO_LOOP_PAUSING;
        notify_thread(loop);
    }
    while (loop->state == IO_LOOP_PAUSING)
        pthread_cond_wait(&loop->cond, &loop->lock);
    pthread_mutex_unlock(&loop->lock);
}

void io_loop_resume(struct io_loop *loop)
{
    if (!loop->threaded || io_loop_on_thread(loop))
        return;
    pthread_mutex_lock(&loop->lock);
    if (loop->pause_depth > 0 && --loop->pause_depth == 0 && loop->state == IO_LOOP_PAUSED) {
        loop->state = IO_LOOP_RUNNING;
        pthread_cond_broadcast(&loop->cond);
    }
    pthread_mutex_unlock(&loop->lock);
}

void io_loop_stop(struct io_loop *loop)
{
    if (!loop->threaded)
        return;
    pthread_mutex_lock(&loop->lock);
    loop->state = IO_LOOP_STOPPING;
    pthread_cond_broadcast(&loop->cond);
    notify_thread(loop);
    pthread_mutex_unlock(&loop->lock);
    pthread_join(loop->thread, NULL);
    loop->threaded = false;
}
