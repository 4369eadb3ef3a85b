#include "control/control.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/log.h"

static const char *const cmd_names[] = {
    [CONTROL_STATUS] = "status",     [CONTROL_PAUSE] = "pause", [CONTROL_RESUME] = "resume",
    [CONTROL_SNAPSHOT] = "snapshot", [CONTROL_RESET] = "reset", [CONTROL_HALT] = "halt",
};
#define KNOWN_COMMANDS "status, pause, resume, snapshot, reset, halt"

const char *control_cmd_name(enum control_cmd cmd)
{
    return (unsigned)cmd < ARRAY_LEN(cmd_names) ? cmd_names[cmd] : "?";
}

/* Replaces every byte that is not part of a well-formed UTF-8 sequence
 * with '?': a message quoting a client's bytes, cut short by a format's
 * precision, must still be a JSON string. */
static void utf8_clean(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        unsigned need = 0;
        uint32_t min = 0, cp = 0;
        if (*p < 0x80) {
            p++;
            continue;
        } else if ((*p & 0xe0) == 0xc0) {
            need = 1, min = 0x80, cp = *p & 0x1f;
        } else if ((*p & 0xf0) == 0xe0) {
            need = 2, min = 0x800, cp = *p & 0x0f;
        } else if ((*p & 0xf8) == 0xf0) {
            need = 3, min = 0x10000, cp = *p & 0x07;
        } else {
            *p++ = '?';
            continue;
        }
        unsigned k = 1;
        for (; k <= need && (p[k] & 0xc0) == 0x80; k++)
            cp = (cp << 6) | (p[k] & 0x3f);
        if (k <= need || cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            *p++ = '?';
            continue;
        }
        p += need + 1;
    }
}

static void set_err(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

static int lookup_cmd(const char *name, enum control_cmd *cmd)
{
    for (unsigned i = 0; i < ARRAY_LEN(cmd_names); i++)
        if (strcmp(name, cmd_names[i]) == 0) {
            *cmd = (enum control_cmd)i;
            return 0;
        }
    return -1;
}

int control_parse(const char *line, size_t len, struct control_request *req, char *err,
                  size_t err_size)
{
    req->cmd = CONTROL_STATUS;
    req->path = NULL;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len == 0) {
        set_err(err, err_size,
                "empty line; a request is a JSON object such as {\"cmd\":\"status\"}");
        return -1;
    }
    if (len > CONTROL_MAX_LINE) {
        set_err(err, err_size, "request longer than %d bytes", CONTROL_MAX_LINE);
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        set_err(err, err_size, "malformed JSON at byte %d: %s", jerr.position, jerr.text);
        return -1;
    }
    int r = -1;
    if (!json_is_object(root)) {
        set_err(err, err_size, "a request is a JSON object such as {\"cmd\":\"status\"}");
        goto out;
    }
    json_t *cmd = json_object_get(root, "cmd");
    if (!cmd) {
        set_err(err, err_size, "missing \"cmd\" (one of " KNOWN_COMMANDS ")");
        goto out;
    }
    if (!json_is_string(cmd)) {
        set_err(err, err_size, "\"cmd\" must be a string (one of " KNOWN_COMMANDS ")");
        goto out;
    }
    if (strlen(json_string_value(cmd)) != json_string_length(cmd) ||
        lookup_cmd(json_string_value(cmd), &req->cmd) < 0) {
        set_err(err, err_size, "unknown command \"%.64s\" (known: " KNOWN_COMMANDS ")",
                json_string_value(cmd));
        goto out;
    }
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value)
    {
        if (strcmp(key, "cmd") == 0)
            continue;
        if (req->cmd != CONTROL_SNAPSHOT || strcmp(key, "path") != 0) {
            set_err(err, err_size, "unknown field \"%.64s\" for %s", key,
                    control_cmd_name(req->cmd));
            goto out;
        }
        const char *path = json_string_value(value);
        if (!json_is_string(value) || json_string_length(value) == 0 ||
            strlen(path) != json_string_length(value)) {
            set_err(err, err_size, "snapshot \"path\" must be a non-empty string without NUL");
            goto out;
        }
        if (json_string_length(value) > CONTROL_MAX_PATH) {
            set_err(err, err_size, "snapshot \"path\" is longer than %d bytes", CONTROL_MAX_PATH);
            goto out;
        }
        if (!(req->path = strdup(path))) {
            set_err(err, err_size, "out of memory");
            goto out;
        }
    }
    r = 0;
out:
    if (r < 0) {
        utf8_clean(err);
        control_request_free(req);
    }
    json_decref(root);
    return r;
}

void control_request_free(struct control_request *req)
{
    free(req->path);
    req->path = NULL;
}

json_t *control_ok(void)
{
    return json_pack("{s:b}", "ok", 1);
}

json_t *control_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    utf8_clean(msg);
    return json_pack("{s:b,s:s}", "ok", 0, "error", msg);
}

char *control_answer_line(const json_t *answer, size_t *len)
{
    /* Compact: strings are escaped, so the only newline is the last. */
    char *text = json_dumps(answer, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (!line) {
        free(text);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    *len = n + 1;
    return line;
}

json_t *control_status_answer(const struct control_status *st)
{
    json_t *devices = json_array();
    for (unsigned i = 0; devices && i < st->device_count; i++) {
        const struct control_device_info *d = &st->devices[i];
        if (json_array_append_new(devices, json_pack("{s:s,s:s}", "name", d->name, "kind",
                                                     d->kind ? d->kind : "")) < 0) {
            json_decref(devices);
            devices = NULL;
        }
    }
    if (!devices)
        return NULL;
    json_t *a = json_pack("{s:b,s:s,s:s,s:I,s:i,s:I,s:i,s:o}", "ok", 1, "name", st->name, "state",
                          st->state, "uptime_ms", (json_int_t)st->uptime_ms, "vcpus",
                          (int)st->vcpus, "memory_mib", (json_int_t)st->memory_mib, "resets",
                          (int)st->resets, "devices", devices);
    if (a && st->has_pvpanic &&
        (json_object_set_new(a, "panics", json_integer((json_int_t)st->panics)) < 0 ||
         json_object_set_new(a, "crash_loads", json_integer((json_int_t)st->crash_loads)) < 0)) {
        json_decref(a);
        return NULL;
    }
    return a;
}

char *control_request_line(const char *command, const char *arg, char *err, size_t err_size)
{
    json_t *req = json_object();
    json_t *cmd = json_string(command);
    if (!req || !cmd || json_object_set_new(req, "cmd", cmd) < 0) {
        json_decref(req);
        set_err(err, err_size, "command \"%s\" is not valid UTF-8", command);
        return NULL;
    }
    if (arg) {
        json_t *path = strcmp(command, "snapshot") == 0 ? json_string(arg) : NULL;
        if (!path || json_object_set_new(req, "path", path) < 0) {
            json_decref(req);
            if (strcmp(command, "snapshot") == 0)
                set_err(err, err_size, "the path is not valid UTF-8");
            else
                set_err(err, err_size, "%s takes no argument", command);
            return NULL;
        }
    }
    size_t len;
    char *line = control_answer_line(req, &len);
    json_decref(req);
    if (!line)
        set_err(err, err_size, "out of memory");
    return line;
}

int control_answer_ok(const char *line, size_t len)
{
    json_t *a = json_loadb(line, len, 0, NULL);
    json_t *ok = json_object_get(a, "ok");
    int r = json_is_boolean(ok) ? json_is_true(ok) : -1;
    json_decref(a);
    return r;
}

/* ---- The server ---- */

static size_t out_pending(const struct control_client *c)
{
    return c->out_len - c->out_done;
}

static void client_close(struct control_client *c)
{
    io_loop_unwatch(c->server->loop, &c->watch);
    close(c->fd);
    c->fd = -1;
    free(c->in);
    free(c->out);
    c->in = c->out = NULL;
    c->in_len = c->out_len = c->out_done = c->out_cap = 0;
    c->closing = false;
}

/* Queues an answer (taking the reference); false when out of memory. */
static bool client_answer(struct control_client *c, json_t *answer)
{
    if (!answer)
        answer = control_error("internal error: no answer");
    size_t len = 0;
    char *line = answer ? control_answer_line(answer, &len) : NULL;
    json_decref(answer);
    if (!line)
        return false;
    if (c->out_done > 0 && c->out_len + len > c->out_cap) {
        /* What the client took makes room: the buffer stays bounded. */
        memmove(c->out, c->out + c->out_done, c->out_len - c->out_done);
        c->out_len -= c->out_done;
        c->out_done = 0;
    }
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        char *out = realloc(c->out, cap);
        if (!out) {
            free(line);
            return false;
        }
        c->out = out;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, line, len);
    c->out_len += len;
    free(line);
    return true;
}

static json_t *serve_line(struct control_server *s, const char *line, size_t len)
{
    struct control_request req;
    char err[512];
    if (control_parse(line, len, &req, err, sizeof(err)) < 0)
        return control_error("%s", err);
    json_t *answer = s->handle(s->opaque, &req);
    control_request_free(&req);
    return answer;
}

/* Answers the complete lines in the input while the client keeps up.
 * Returns false if the client must go (out of memory). */
static bool serve_lines(struct control_client *c)
{
    size_t start = 0;
    bool alive = true;
    while (alive && out_pending(c) < CONTROL_MAX_PENDING_OUT) {
        char *nl = memchr(c->in + start, '\n', c->in_len - start);
        if (!nl)
            break;
        size_t len = (size_t)(nl - (c->in + start));
        alive = client_answer(c, serve_line(c->server, c->in + start, len));
        start += len + 1;
    }
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
    if (alive && !memchr(c->in, '\n', c->in_len) && c->in_len > CONTROL_MAX_LINE) {
        alive = client_answer(
            c, control_error("request line longer than %d bytes; closing", CONTROL_MAX_LINE));
        c->in_len = 0;
        c->closing = true;
    }
    return alive;
}

/* Writes what it can; false if the client is gone. */
static bool client_flush(struct control_client *c)
{
    while (out_pending(c)) {
        ssize_t n = send(c->fd, c->out + c->out_done, out_pending(c), MSG_NOSIGNAL);
        if (n > 0) {
            c->out_done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    return true;
}

/* Reads and answers until the socket runs dry or the client has to take
 * its answers first; false if the client is gone. */
static bool client_read(struct control_client *c)
{
    for (;;) {
        if (!serve_lines(c))
            return false;
        if (c->closing || out_pending(c) >= CONTROL_MAX_PENDING_OUT)
            return true;
        ssize_t n = read(c->fd, c->in + c->in_len, CONTROL_MAX_LINE + 1 - c->in_len);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n == 0) {
            /* End of requests: a last line without its newline counts. */
            c->closing = true;
            if (c->in_len > 0 && !client_answer(c, serve_line(c->server, c->in, c->in_len)))
                return false;
            c->in_len = 0;
            return true;
        }
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
}

/* A close with unread input resets the connection, and the peer may then
 * miss the answer that says why: what was sent after the refused line
 * (within reason) is read and dropped first. */
static void discard_input(struct control_client *c)
{
    for (unsigned i = 0; i < 16; i++) {
        ssize_t n = read(c->fd, c->in, CONTROL_MAX_LINE + 1);
        if (n <= 0 && !(n < 0 && errno == EINTR))
            return;
    }
}

static void client_event(void *opaque, uint32_t events)
{
    struct control_client *c = opaque;
    bool alive = client_flush(c);
    if (alive && !c->closing && out_pending(c) < CONTROL_MAX_PENDING_OUT)
        alive = client_read(c);
    if (alive)
        alive = client_flush(c);
    if (!alive || (c->closing && !out_pending(c))) {
        if (alive)
            discard_input(c);
        client_close(c);
        return;
    }
    uint32_t want = (out_pending(c) ? EPOLLOUT : 0) |
                    (!c->closing && out_pending(c) < CONTROL_MAX_PENDING_OUT ? EPOLLIN : 0);
    if (io_loop_watch(c->server->loop, &c->watch, c->fd, want, client_event, c) < 0)
        client_close(c);
}

static void refuse_client(int fd)
{
    json_t *a = control_error("too many control clients (at most %d at once)", CONTROL_MAX_CLIENTS);
    size_t len = 0;
    char *line = a ? control_answer_line(a, &len) : NULL;
    if (line && send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("control: refusing a client: %s", strerror(errno));
    free(line);
    json_decref(a);
    close(fd);
}

static void listener_event(void *opaque, uint32_t events)
{
    struct control_server *s = opaque;
    for (unsigned n = 0; n < 64; n++) {
        int fd = accept4(s->listener.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_limited(&s->accept_log, LOG_WARNING, "control: accept on %s: %s",
                            s->listener.path, strerror(errno));
            return;
        }
        struct control_client *c = NULL;
        for (unsigned i = 0; i < CONTROL_MAX_CLIENTS && !c; i++)
            if (s->clients[i].fd < 0)
                c = &s->clients[i];
        if (!c) {
            refuse_client(fd);
            continue;
        }
        c->fd = fd;
        if (!(c->in = malloc(CONTROL_MAX_LINE + 1)) ||
            io_loop_watch(s->loop, &c->watch, fd, EPOLLIN, client_event, c) < 0) {
            client_close(c);
            continue;
        }
    }
}

void control_server_init(struct control_server *s)
{
    memset(s, 0, sizeof(*s));
    unix_listener_init(&s->listener);
    io_watch_init(&s->listen_watch);
    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        s->clients[i].server = s;
        s->clients[i].fd = -1;
        io_watch_init(&s->clients[i].watch);
    }
}

int control_server_open(struct control_server *s, const char *path, struct io_loop *loop,
                        control_handler handle, void *opaque)
{
    control_server_init(s);
    s->loop = loop;
    s->handle = handle;
    s->opaque = opaque;
    if (unix_listener_open(&s->listener, path, 0600, "--control") < 0)
        return -1;
    if (io_loop_watch(loop, &s->listen_watch, s->listener.fd, EPOLLIN, listener_event, s) < 0) {
        unix_listener_close(&s->listener);
        return -1;
    }
    log_info("control socket on %s", path);
    return 0;
}

void control_server_close(struct control_server *s)
{
    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
        if (s->clients[i].fd >= 0) {
            client_flush(&s->clients[i]); /* a last answer (halt's) if it fits */
            client_close(&s->clients[i]);
        }
    if (s->loop)
        io_loop_unwatch(s->loop, &s->listen_watch);
    unix_listener_close(&s->listener);
}

/* ---- The ctl client ---- */

#define CTL_ANSWER_TIMEOUT_S 600 /* a snapshot of a large guest takes a while */

static void ctl_usage(FILE *out)
{
    fprintf(out, "usage: propolis-standalone ctl PATH COMMAND [ARG]\n"
                 "COMMAND: " KNOWN_COMMANDS "; snapshot takes an optional PATH for the file\n"
                 "exit status: 0 ok, 1 an error answer, 2 no connection or no answer\n");
}

int control_ctl_main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        ctl_usage(stderr);
        return 2;
    }
    const char *path = argv[0];
    char err[256];
    char *request = control_request_line(argv[1], argc == 3 ? argv[2] : NULL, err, sizeof(err));
    if (!request) {
        fprintf(stderr, "ctl: %s\n", err);
        return 2;
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "ctl: %s is longer than a UNIX socket path can be\n", path);
        free(request);
        return 2;
    }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        fprintf(stderr, "ctl: cannot connect to %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        free(request);
        return 2;
    }
    struct timeval tv = {.tv_sec = CTL_ANSWER_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t len = strlen(request), done = 0;
    while (done < len) {
        ssize_t n = send(fd, request + done, len - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "ctl: sending to %s: %s\n", path, strerror(errno));
            close(fd);
            free(request);
            return 2;
        }
        done += (size_t)n;
    }
    free(request);
    /* One answer line; the server's answers are far shorter than this. */
    static char answer[1 << 20];
    size_t got = 0;
    while (got < sizeof(answer) && !memchr(answer, '\n', got)) {
        ssize_t n = read(fd, answer + got, sizeof(answer) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0)
                fprintf(stderr, "ctl: reading from %s: %s\n", path, strerror(errno));
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    char *nl = memchr(answer, '\n', got);
    int ok = nl ? control_answer_ok(answer, (size_t)(nl - answer)) : -1;
    if (ok < 0) {
        fprintf(stderr, "ctl: no answer from %s\n", path);
        return 2;
    }
    fwrite(answer, 1, (size_t)(nl - answer) + 1, stdout);
    return ok ? 0 : 1;
}
