/* The I/O loop: owned watches without a cap, dispatch on the caller's
 * thread or a thread of its own, pause parks the thread, stop joins it, and
 * a watch removed in the middle of a batch is not called. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/io_loop.h"

struct counter {
    int fd;
    _Atomic int calls;
    struct io_watch watch;
    struct io_loop *loop;
    struct counter *victim; /* unwatched by this one's callback */
};

static void count_event(void *opaque, uint32_t events)
{
    struct counter *c = opaque;
    uint64_t v;
    if (read(c->fd, &v, sizeof(v)) < 0)
        return;
    atomic_fetch_add(&c->calls, 1);
    if (c->victim)
        io_loop_unwatch(c->loop, &c->victim->watch);
}

static void signal_fd(int fd)
{
    uint64_t one = 1;
    assert_int_equal(write(fd, &one, sizeof(one)), sizeof(one));
}

static void counter_open(struct counter *c, struct io_loop *loop)
{
    memset(c, 0, sizeof(*c));
    c->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(c->fd >= 0);
    c->loop = loop;
    io_watch_init(&c->watch);
    assert_int_equal(io_loop_watch(loop, &c->watch, c->fd, EPOLLIN, count_event, c), 0);
}

static void counter_close(struct counter *c)
{
    io_loop_unwatch(c->loop, &c->watch);
    close(c->fd);
}

/* Waits up to 5 s for the counter to reach want. */
static bool wait_calls(struct counter *c, int want)
{
    for (int i = 0; i < 5000; i++) {
        if (atomic_load(&c->calls) >= want)
            return true;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    return false;
}

static void test_many_watches_without_a_cap(void **state)
{
    enum { N = 300 };
    static struct counter counters[N];
    struct io_loop loop;
    assert_int_equal(io_loop_init(&loop, "test"), 0);
    for (int i = 0; i < N; i++)
        counter_open(&counters[i], &loop);
    for (int i = 0; i < N; i++)
        signal_fd(counters[i].fd);
    int seen = 0;
    while (seen < N) {
        int n = io_loop_poll(&loop, 1000);
        assert_true(n > 0);
        seen += n;
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(counters[i].calls, 1);
        counter_close(&counters[i]);
    }
    io_loop_destroy(&loop);
}

static void test_unwatched_in_batch_is_not_called(void **state)
{
    struct io_loop loop;
    struct counter a, b;
    assert_int_equal(io_loop_init(&loop, "test"), 0);
    counter_open(&a, &loop);
    counter_open(&b, &loop);
    a.victim = &b;
    b.victim = &a;
    signal_fd(a.fd);
    signal_fd(b.fd);
    assert_int_equal(io_loop_poll(&loop, 1000), 2);
    /* Whichever ran first removed the other before its turn. */
    assert_int_equal(a.calls + b.calls, 1);
    assert_true((a.watch.fd < 0) != (b.watch.fd < 0));
    counter_close(&a);
    counter_close(&b);
    io_loop_destroy(&loop);
}

/* The console's pattern: a listener's callback drops the old client
 * (unwatch, close) and watches the new one with the same io_watch, and the
 * new descriptor takes the old one's number. The old client's hang-up in
 * the same batch must not reach the new client. */
struct swap_console {
    struct io_loop *loop;
    int listen_fd; /* an eventfd standing in for the listener */
    int client_fd, client_peer;
    struct io_watch listener, client;
    int client_generation; /* bumped when the listener swaps the client */
    int hup_seen[2];       /* hang-ups delivered per generation */
    int swaps;
};

static void swap_client_events(void *opaque, uint32_t events)
{
    struct swap_console *c = opaque;
    if (events & (EPOLLHUP | EPOLLRDHUP))
        c->hup_seen[c->client_generation]++;
}

static void swap_listener_event(void *opaque, uint32_t events)
{
    struct swap_console *c = opaque;
    uint64_t v;
    assert_int_equal(read(c->listen_fd, &v, sizeof(v)), sizeof(v));
    int old_fd = c->client_fd;
    io_loop_unwatch(c->loop, &c->client);
    close(c->client_fd);
    int pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    /* The lowest free number is the one just closed. */
    assert_int_equal(pair[0], old_fd);
    close(c->client_peer);
    c->client_fd = pair[0];
    c->client_peer = pair[1];
    c->client_generation = 1;
    c->swaps++;
    assert_int_equal(io_loop_watch(c->loop, &c->client, c->client_fd, EPOLLIN | EPOLLRDHUP,
                                   swap_client_events, c),
                     0);
}

static void run_client_swap(bool listener_first)
{
    struct io_loop loop;
    struct swap_console c = {.loop = &loop};
    assert_int_equal(io_loop_init(&loop, "test"), 0);
    io_watch_init(&c.listener);
    io_watch_init(&c.client);
    c.listen_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    c.client_fd = pair[0];
    c.client_peer = pair[1];
    assert_int_equal(
        io_loop_watch(&loop, &c.client, c.client_fd, EPOLLIN | EPOLLRDHUP, swap_client_events, &c),
        0);
    assert_int_equal(
        io_loop_watch(&loop, &c.listener, c.listen_fd, EPOLLIN, swap_listener_event, &c), 0);
    /* epoll reports ready descriptors in the order they became ready. */
    if (listener_first)
        signal_fd(c.listen_fd);
    shutdown(c.client_peer, SHUT_RDWR); /* the old client hangs up */
    if (!listener_first)
        signal_fd(c.listen_fd);
    assert_int_equal(io_loop_poll(&loop, 1000), 2);
    assert_int_equal(c.swaps, 1);
    assert_int_equal(c.hup_seen[1], 0);
    assert_int_equal(c.hup_seen[0], listener_first ? 0 : 1);
    /* The new client is watched and live: nothing more is pending. */
    assert_int_equal(io_loop_poll(&loop, 0), 0);
    assert_int_equal(c.hup_seen[1], 0);
    shutdown(c.client_peer, SHUT_RDWR);
    assert_int_equal(io_loop_poll(&loop, 1000), 1);
    assert_int_equal(c.hup_seen[1], 1);
    io_loop_unwatch(&loop, &c.client);
    io_loop_unwatch(&loop, &c.listener);
    close(c.client_fd);
    close(c.client_peer);
    close(c.listen_fd);
    io_loop_destroy(&loop);
}

static void test_replaced_client_gets_no_old_hangup(void **state)
{
    run_client_swap(true);
    run_client_swap(false);
}

static void test_thread_pause_resume_stop(void **state)
{
    struct io_loop loop;
    struct counter c;
    assert_int_equal(io_loop_init(&loop, "test-loop"), 0);
    counter_open(&c, &loop);
    assert_int_equal(io_loop_start(&loop), 0);
    signal_fd(c.fd);
    assert_true(wait_calls(&c, 1));

    io_loop_pause(&loop);
    io_loop_pause(&loop); /* nested: a second owner */
    signal_fd(c.fd);
    nanosleep(&(struct timespec){0, 50000000}, NULL);
    assert_int_equal(c.calls, 1); /* parked: nothing dispatched */
    io_loop_resume(&loop);
    nanosleep(&(struct timespec){0, 50000000}, NULL);
    assert_int_equal(c.calls, 1); /* still held by the other owner */
    io_loop_resume(&loop);
    assert_true(wait_calls(&c, 2));

    /* Unwatch from another thread while the loop runs, then stop. */
    counter_close(&c);
    io_loop_stop(&loop);
    assert_false(loop.threaded);
    io_loop_destroy(&loop);
}

static void test_stop_while_paused(void **state)
{
    struct io_loop loop;
    assert_int_equal(io_loop_init(&loop, "test-loop"), 0);
    assert_int_equal(io_loop_start(&loop), 0);
    io_loop_pause(&loop);
    io_loop_stop(&loop);
    io_loop_destroy(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_watches_without_a_cap),
        cmocka_unit_test(test_unwatched_in_batch_is_not_called),
        cmocka_unit_test(test_replaced_client_gets_no_old_hangup),
        cmocka_unit_test(test_thread_pause_resume_stop),
        cmocka_unit_test(test_stop_while_paused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
