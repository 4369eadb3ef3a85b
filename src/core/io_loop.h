/* The one I/O loop type: an epoll loop whose watches belong to their
 * callers (embedded struct io_watch, no fixed cap). The main thread polls
 * its loop itself (io_loop_poll); every I/O worker (virtio queues, NVMe,
 * TAP and socket back ends) runs a loop on a thread of its own
 * (io_loop_start), which the loop's owner can pause, resume and stop: the
 * loop's control eventfd wakes the thread, which parks between callbacks.
 *
 * Watches are added and removed by the loop's own thread, or by another
 * thread while the loop is paused or not running (io_loop_unwatch pauses
 * a running loop itself). A callback may unwatch any watch, its own
 * included; a watch unwatched in the middle of a batch is not called. */
#ifndef CORE_IO_LOOP_H
#define CORE_IO_LOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct io_watch;
typedef void (*io_fn)(void *opaque, uint32_t events);

struct io_watch {
    int fd; /* -1 while not watched */
    io_fn fn;
    void *opaque;
};

#define IO_LOOP_BATCH 32 /* events taken per epoll_wait */

enum io_loop_state { IO_LOOP_RUNNING, IO_LOOP_PAUSING, IO_LOOP_PAUSED, IO_LOOP_STOPPING };

struct io_loop {
    const char *name;
    int epoll_fd;
    /* The batch being dispatched, so an unwatch can drop later entries. */
    struct epoll_event *batch;
    int batch_len, batch_next;

    /* Own thread (io_loop_start): state changes under lock, announced on
     * control_fd; the thread acknowledges on cond. */
    struct io_watch control;
    int control_fd;
    bool threaded;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    enum io_loop_state state;
    unsigned pause_depth; /* nested pauses from different owners */
};

void io_watch_init(struct io_watch *w);

/* Returns 0, or -1 (logged). name is kept (static or outliving the loop). */
int io_loop_init(struct io_loop *loop, const char *name);
/* Stops the loop's thread if it has one; watches must be gone already. */
void io_loop_destroy(struct io_loop *loop);

/* Watches fd for events (EPOLLIN, EPOLLOUT, ...) and calls fn(opaque,
 * events); w must stay valid until unwatched. Watching a watched w updates
 * its events. Returns 0, or -1 (logged). */
int io_loop_watch(struct io_loop *loop, struct io_watch *w, int fd, uint32_t events, io_fn fn,
                  void *opaque);
void io_loop_unwatch(struct io_loop *loop, struct io_watch *w);

/* Waits up to timeout_ms (-1: forever) and dispatches, on the caller's
 * thread. Returns the number of events, or -1 on error. */
int io_loop_poll(struct io_loop *loop, int timeout_ms);

/* Runs the loop on a new thread named after the loop. Returns 0 or -errno. */
int io_loop_start(struct io_loop *loop);
/* Returns once the loop's thread is parked between callbacks (no callback
 * runs until io_loop_resume). Pauses nest; a loop without a thread, or a
 * call from the loop's own thread, returns at once. */
void io_loop_pause(struct io_loop *loop);
void io_loop_resume(struct io_loop *loop);
/* Ends and joins the loop's thread (paused or not). */
void io_loop_stop(struct io_loop *loop);
/* True on the loop's own thread. */
bool io_loop_on_thread(const struct io_loop *loop);

#endif
