/* COM1 on a unix socket (./ttya): one client at a time; a new client
 * replaces the old. Guest output is held in a bounded buffer while a client
 * is slow (the guest then sees THR busy) and dropped when nobody listens. */
#ifndef DEVICES_CONSOLE_H
#define DEVICES_CONSOLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/unix_listener.h"
#include "core/io_loop.h"
#include "devices/uart16550.h"

#define CONSOLE_OUT_SIZE 65536
#define CONSOLE_IN_SIZE 4096

struct console {
    struct uart16550 *uart;
    struct io_loop *loop;
    struct io_watch listen_watch, client_watch, wake_watch;
    char *path;
    struct unix_listener listener; /* mode 0600; a live socket at the path is refused */
    int listen_fd;                 /* listener.fd */
    int client_fd;
    int wake_fd;      /* eventfd: vCPU side produced output or freed input room */
    bool want_output; /* EPOLLOUT armed on the client */
    void (*on_connect)(void *opaque);
    void *on_connect_opaque;

    pthread_mutex_t lock; /* guards out[] and connected */
    bool connected;
    uint8_t out[CONSOLE_OUT_SIZE];
    size_t out_head, out_len;
    bool out_blocked; /* the UART was refused: tell it when room appears */

    uint8_t in[CONSOLE_IN_SIZE]; /* main thread only */
    size_t in_len;
};

/* Logs the connection and buffer state (main thread; state dump). */
void console_dump(struct console *con);
/* Checks that path is absent or a stale socket; no side effects. */
int console_check_path(const char *path);
/* Binds the socket (common/unix_listener.h: a socket another VM listens on
 * is refused, naming it; a stale one is replaced) and registers with the
 * loop. */
int console_open(struct console *con, const char *path, struct io_loop *loop);
void console_attach_uart(struct console *con, struct uart16550 *uart);
/* Backend for the COM1 UART; opaque must be the console. */
struct uart_backend console_uart_backend(struct console *con);
void console_close(struct console *con);

#endif
