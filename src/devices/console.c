#include "devices/console.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"

static void wake(struct console *con)
{
    uint64_t one = 1;
    ssize_t r = write(con->wake_fd, &one, sizeof(one));
    (void)r; /* a full counter still wakes the loop */
}

static size_t backend_tx(void *opaque, const uint8_t *buf, size_t len)
{
    struct console *con = opaque;
    size_t taken;
    pthread_mutex_lock(&con->lock);
    if (!con->connected) {
        taken = len; /* nobody is listening: drop */
    } else {
        taken = CONSOLE_OUT_SIZE - con->out_len;
        if (taken > len)
            taken = len;
        for (size_t i = 0; i < taken; i++)
            con->out[(con->out_head + con->out_len + i) % CONSOLE_OUT_SIZE] = buf[i];
        con->out_len += taken;
        if (taken < len)
            con->out_blocked = true;
    }
    bool notify = con->connected && taken > 0;
    pthread_mutex_unlock(&con->lock);
    if (notify)
        wake(con);
    return taken;
}

static void backend_rx_space(void *opaque)
{
    wake(opaque);
}

struct uart_backend console_uart_backend(struct console *con)
{
    return (struct uart_backend){.tx = backend_tx, .rx_space = backend_rx_space, .opaque = con};
}

void console_attach_uart(struct console *con, struct uart16550 *uart)
{
    con->uart = uart;
}

static void client_events(void *opaque, uint32_t events);

static void arm_client(struct console *con)
{
    /* End of input (a half-close) is only watched for while input is: it
     * is seen as recv() returning 0. Watching it with the input buffer
     * full would report it on every wait, spinning the event loop for as
     * long as the guest does not read COM1. */
    uint32_t ev = 0;
    if (con->in_len < CONSOLE_IN_SIZE)
        ev |= EPOLLIN | EPOLLRDHUP;
    if (con->want_output)
        ev |= EPOLLOUT;
    io_loop_watch(con->loop, &con->client_watch, con->client_fd, ev, client_events, con);
}

static void drop_client(struct console *con)
{
    if (con->client_fd < 0)
        return;
    io_loop_unwatch(con->loop, &con->client_watch);
    close(con->client_fd);
    con->client_fd = -1;
    con->want_output = false;
    con->in_len = 0;
    pthread_mutex_lock(&con->lock);
    con->connected = false;
    con->out_len = 0;
    pthread_mutex_unlock(&con->lock);
    log_info("console: client disconnected");
    /* Whatever the UART still holds is now discarded. */
    if (con->uart)
        uart16550_tx_ready(con->uart);
}

/* Sends buffered output; returns false if the client went away. */
static bool flush_output(struct console *con)
{
    bool unblock = false;
    pthread_mutex_lock(&con->lock);
    while (con->out_len > 0) {
        size_t chunk = CONSOLE_OUT_SIZE - con->out_head;
        if (chunk > con->out_len)
            chunk = con->out_len;
        ssize_t n = send(con->client_fd, con->out + con->out_head, chunk, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            pthread_mutex_unlock(&con->lock);
            return false;
        }
        con->out_head = (con->out_head + (size_t)n) % CONSOLE_OUT_SIZE;
        con->out_len -= (size_t)n;
    }
    if (con->out_len == 0)
        con->out_head = 0;
    if (con->out_blocked && con->out_len < CONSOLE_OUT_SIZE) {
        con->out_blocked = false;
        unblock = true;
    }
    bool pending = con->out_len > 0;
    pthread_mutex_unlock(&con->lock);
    if (pending != con->want_output) {
        con->want_output = pending;
        arm_client(con);
    }
    if (unblock && con->uart)
        uart16550_tx_ready(con->uart);
    return true;
}

/* Moves buffered client input into the UART's receive FIFO. */
static void push_input(struct console *con)
{
    if (con->in_len == 0 || !con->uart)
        return;
    bool was_full = con->in_len == CONSOLE_IN_SIZE;
    size_t n = uart16550_receive(con->uart, con->in, con->in_len);
    memmove(con->in, con->in + n, con->in_len - n);
    con->in_len -= n;
    if (was_full && con->in_len < CONSOLE_IN_SIZE && con->client_fd >= 0)
        arm_client(con);
}

static void client_events(void *opaque, uint32_t events)
{
    struct console *con = opaque;
    if (events & EPOLLIN) {
        if (con->in_len < CONSOLE_IN_SIZE) {
            ssize_t n = recv(con->client_fd, con->in + con->in_len, CONSOLE_IN_SIZE - con->in_len,
                             MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                drop_client(con);
                return;
            }
            if (n > 0)
                con->in_len += (size_t)n;
            push_input(con);
            if (con->in_len == CONSOLE_IN_SIZE)
                arm_client(con); /* stop reading until the guest drains */
        }
    }
    if (events & (EPOLLHUP | EPOLLERR)) {
        drop_client(con);
        return;
    }
    if ((events & EPOLLOUT) && !flush_output(con))
        drop_client(con);
}

static void wake_event(void *opaque, uint32_t events)
{
    struct console *con = opaque;
    uint64_t count;
    ssize_t r = read(con->wake_fd, &count, sizeof(count));
    (void)r;
    push_input(con);
    if (con->client_fd >= 0 && !flush_output(con))
        drop_client(con);
}

static void listen_event(void *opaque, uint32_t events)
{
    struct console *con = opaque;
    int fd = accept4(con->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    drop_client(con); /* the newest client wins */
    con->client_fd = fd;
    pthread_mutex_lock(&con->lock);
    con->connected = true;
    pthread_mutex_unlock(&con->lock);
    arm_client(con);
    log_info("console: client connected on %s", con->path);
    if (con->on_connect)
        con->on_connect(con->on_connect_opaque);
}

void console_dump(struct console *con)
{
    pthread_mutex_lock(&con->lock);
    log_info("console: client %s, %zu bytes of output queued%s, %zu bytes of input waiting for "
             "the UART",
             con->connected ? "connected" : "absent", con->out_len,
             con->out_blocked ? " (UART told to wait)" : "", con->in_len);
    pthread_mutex_unlock(&con->lock);
}

int console_check_path(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISSOCK(st.st_mode)) {
        errno = EEXIST;
        return -1;
    }
    return 0;
}

int console_open(struct console *con, const char *path, struct io_loop *loop)
{
    con->loop = loop;
    io_watch_init(&con->listen_watch);
    io_watch_init(&con->client_watch);
    io_watch_init(&con->wake_watch);
    unix_listener_init(&con->listener);
    con->listen_fd = con->client_fd = con->wake_fd = -1;
    pthread_mutex_init(&con->lock, NULL);
    /* Only its owner may attach to the guest's console. */
    if (unix_listener_open(&con->listener, path, 0600, "console") < 0)
        return -1;
    con->listen_fd = con->listener.fd;
    con->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (con->wake_fd < 0) {
        log_error("console: %s", strerror(errno));
        return -1;
    }
    con->path = strdup(path);
    if (!con->path ||
        io_loop_watch(loop, &con->listen_watch, con->listen_fd, EPOLLIN, listen_event, con) < 0 ||
        io_loop_watch(loop, &con->wake_watch, con->wake_fd, EPOLLIN, wake_event, con) < 0)
        return -1;
    return 0;
}

void console_close(struct console *con)
{
    if (!con->loop)
        return; /* never opened */
    {
        drop_client(con);
        io_loop_unwatch(con->loop, &con->listen_watch);
        io_loop_unwatch(con->loop, &con->wake_watch);
    }
    unix_listener_close(&con->listener); /* unlinks the socket only if it is still ours */
    if (con->wake_fd >= 0)
        close(con->wake_fd);
    con->listen_fd = con->wake_fd = -1;
    free(con->path);
    con->path = NULL;
    pthread_mutex_destroy(&con->lock);
    con->loop = NULL;
}
