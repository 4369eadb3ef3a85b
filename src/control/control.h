/* The control socket (--control PATH): a UNIX stream socket, mode 0600,
 * on which clients send one JSON object per line and get one JSON object
 * per line back, in order:
 *
 *   {"cmd":"status"}                 {"ok":true,"state":...,"devices":[...],...}
 *   {"cmd":"pause"} / {"cmd":"resume"}
 *   {"cmd":"snapshot"}               {"ok":true,"path":"NAME-<unix-ms>.tar"}
 *   {"cmd":"snapshot","path":"P"}    written to P (refused if P exists)
 *   {"cmd":"reset"} / {"cmd":"halt"}
 *
 * A failure is {"ok":false,"error":"message"}: a line that is not a JSON
 * object, an unknown command or field, a field of the wrong type, a
 * command the VM cannot do now. A line longer than CONTROL_MAX_LINE is
 * answered with an error and its connection closed. Up to
 * CONTROL_MAX_CLIENTS clients at once; more are refused (closed at once).
 *
 * This file has the protocol as functions of their inputs (parse a line,
 * build answers), the server that runs it on the main thread's io_loop,
 * and the `propolis-standalone ctl` client. What each command does to the
 * VM is the caller's (main.c's handler). README "Control socket". */
#ifndef CONTROL_CONTROL_H
#define CONTROL_CONTROL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "common/unix_listener.h"
#include "core/io_loop.h"

#define CONTROL_MAX_LINE (64 * 1024) /* bytes in a request, its newline excluded */
#define CONTROL_MAX_CLIENTS 16
#define CONTROL_MAX_PATH 4095                /* a snapshot path's bytes */
#define CONTROL_MAX_PENDING_OUT (256 * 1024) /* answers not yet taken by a client */

enum control_cmd {
    CONTROL_STATUS,
    CONTROL_PAUSE,
    CONTROL_RESUME,
    CONTROL_SNAPSHOT,
    CONTROL_RESET,
    CONTROL_HALT,
};

struct control_request {
    enum control_cmd cmd;
    char *path; /* snapshot's "path", or NULL; owned */
};

/* The command's name in the protocol ("status", ...). */
const char *control_cmd_name(enum control_cmd cmd);

/* Parses one request line (len bytes, no newline; a trailing '\r' is
 * allowed). Returns 0 with req filled (free it with
 * control_request_free), or -1 with the reason in err. */
int control_parse(const char *line, size_t len, struct control_request *req, char *err,
                  size_t err_size);
void control_request_free(struct control_request *req);

/* Answers. control_ok returns {"ok":true} to add fields to, control_error
 * {"ok":false,"error":message}; NULL only when out of memory. */
json_t *control_ok(void);
json_t *control_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The answer as one line with its newline (malloc'd), or NULL. */
char *control_answer_line(const json_t *answer, size_t *len);

/* What status reports. */
struct control_device_info {
    const char *name, *kind;
};
struct control_status {
    const char *name;  /* [main].name */
    const char *state; /* "waiting", "running", "paused", "halting" */
    uint64_t uptime_ms;
    unsigned vcpus;
    uint64_t memory_mib;
    unsigned resets;
    const struct control_device_info *devices;
    unsigned device_count;
    bool has_pvpanic;
    uint64_t panics, crash_loads;
};
/* {"ok":true,"name":..,"state":..,"uptime_ms":..,"vcpus":..,"memory_mib":..,
 *  "resets":..,"devices":[{"name":..,"kind":..},...]} and, with a pvpanic
 * device, "panics" and "crash_loads". */
json_t *control_status_answer(const struct control_status *st);

/* The ctl client's request line for COMMAND [ARG] (with its newline,
 * malloc'd), or NULL with the reason in err. */
char *control_request_line(const char *command, const char *arg, char *err, size_t err_size);
/* Whether an answer line says ok: 1 ok, 0 an error answer, -1 not an answer. */
int control_answer_ok(const char *line, size_t len);

/* ---- The server, on the main thread's loop ---- */

struct control_server;
/* Runs req and returns the answer (a reference the server takes over);
 * NULL is answered as an internal error. */
typedef json_t *(*control_handler)(void *opaque, const struct control_request *req);

struct control_client {
    struct control_server *server;
    int fd; /* -1: slot free */
    struct io_watch watch;
    char *in; /* CONTROL_MAX_LINE + 1 bytes */
    size_t in_len;
    char *out;
    size_t out_len, out_done, out_cap;
    bool closing; /* close once out is written */
};

struct control_server {
    struct unix_listener listener;
    struct io_loop *loop;
    struct io_watch listen_watch;
    control_handler handle;
    void *opaque;
    struct log_ratelimit accept_log; /* accept can fail in a loop (no fds left) */
    struct control_client clients[CONTROL_MAX_CLIENTS];
};

/* Creates the socket at path (common/unix_listener.h: an existing path is
 * refused unless it is a stale socket) and serves it on loop. Returns 0,
 * or -1 (logged). */
int control_server_open(struct control_server *s, const char *path, struct io_loop *loop,
                        control_handler handle, void *opaque);
/* Closes every client and the socket (unlinking it if still ours). Safe
 * on a server that never opened (after control_server_init). */
void control_server_close(struct control_server *s);
void control_server_init(struct control_server *s);

/* `propolis-standalone ctl PATH COMMAND [ARG]`: sends the request, prints
 * the answer. Returns 0 (ok), 1 (error answer), 2 (no connection, no
 * answer, or a bad command line). */
int control_ctl_main(int argc, char **argv);

#endif
