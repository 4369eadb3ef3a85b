/* The control socket's protocol and server: requests parsed strictly,
 * every malformed line answered with a JSON error (never a crash), answers
 * in order, a too-long line ends its connection, at most
 * CONTROL_MAX_CLIENTS at once, a socket of mode 0600 made and removed
 * safely (common/unix_listener.h), and the ctl client's requests. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "control/control.h"
#include "stderr_capture.h"

/* ---- Parsing ---- */

static void parse_ok(const char *line, enum control_cmd cmd, const char *path)
{
    struct control_request req;
    char err[256] = "";
    if (control_parse(line, strlen(line), &req, err, sizeof(err)) < 0)
        fail_msg("%s refused: %s", line, err);
    assert_int_equal(req.cmd, cmd);
    if (path)
        assert_string_equal(req.path, path);
    else
        assert_null(req.path);
    control_request_free(&req);
}

/* The line is refused, err contains needle, and the error answer is one
 * line of JSON that says so. */
static void parse_refused_len(const char *line, size_t len, const char *needle)
{
    struct control_request req;
    char err[512] = "";
    assert_int_equal(control_parse(line, len, &req, err, sizeof(err)), -1);
    assert_null(req.path);
    assert_true(err[0] != '\0');
    if (needle && !strstr(err, needle))
        fail_msg("error \"%s\" lacks \"%s\"", err, needle);
    json_t *a = control_error("%s", err);
    assert_non_null(a);
    size_t n = 0;
    char *text = control_answer_line(a, &n);
    json_decref(a);
    assert_non_null(text);
    assert_int_equal(n, strlen(text));
    assert_true(n >= 2 && text[n - 1] == '\n');
    assert_null(memchr(text, '\n', n - 1));
    assert_int_equal(control_answer_ok(text, n - 1), 0);
    json_t *back = json_loadb(text, n - 1, 0, NULL);
    assert_non_null(back);
    assert_string_equal(json_string_value(json_object_get(back, "error")), err);
    json_decref(back);
    free(text);
}

static void parse_refused(const char *line, const char *needle)
{
    parse_refused_len(line, strlen(line), needle);
}

static void test_parse_commands(void **state)
{
    parse_ok("{\"cmd\":\"status\"}", CONTROL_STATUS, NULL);
    parse_ok(" { \"cmd\" : \"pause\" } ", CONTROL_PAUSE, NULL);
    parse_ok("{\"cmd\":\"resume\"}\r", CONTROL_RESUME, NULL);
    parse_ok("{\"cmd\":\"snapshot\"}", CONTROL_SNAPSHOT, NULL);
    parse_ok("{\"path\":\"/tmp/a b.tar\",\"cmd\":\"snapshot\"}", CONTROL_SNAPSHOT, "/tmp/a b.tar");
    parse_ok("{\"cmd\":\"reset\"}", CONTROL_RESET, NULL);
    parse_ok("{\"cmd\":\"halt\"}", CONTROL_HALT, NULL);
    assert_string_equal(control_cmd_name(CONTROL_SNAPSHOT), "snapshot");
}

static void test_parse_refusals(void **state)
{
    parse_refused("", "empty line");
    parse_refused("\r", "empty line");
    parse_refused("status", "malformed JSON");
    parse_refused("{\"cmd\":\"status\"", "malformed JSON");
    parse_refused("{\"cmd\":\"status\"} {}", "malformed JSON");
    parse_refused("[\"status\"]", "JSON object");
    parse_refused("\"status\"", "JSON object");
    parse_refused("null", "JSON object");
    parse_refused("{}", "missing \"cmd\"");
    parse_refused("{\"cmd\":5}", "\"cmd\" must be a string");
    parse_refused("{\"cmd\":null}", "\"cmd\" must be a string");
    parse_refused("{\"cmd\":\"Status\"}", "unknown command \"Status\"");
    parse_refused("{\"cmd\":\"\"}", "unknown command");
    parse_refused("{\"cmd\":\"status\",\"cmd\":\"halt\"}", "malformed JSON");
    parse_refused("{\"cmd\":\"status\",\"verbose\":true}", "unknown field \"verbose\" for status");
    parse_refused("{\"cmd\":\"halt\",\"path\":\"x\"}", "unknown field \"path\" for halt");
    parse_refused("{\"cmd\":\"snapshot\",\"path\":5}", "non-empty string");
    parse_refused("{\"cmd\":\"snapshot\",\"path\":\"\"}", "non-empty string");
    parse_refused("{\"cmd\":\"snapshot\",\"path\":\"a\\u0000b\"}", NULL);
    parse_refused("{\"cmd\":\"stat\\u0000us\"}", NULL);
    parse_refused_len("{\"cmd\":\"status\"}\0", 17, NULL);
    parse_refused("{\"cmd\":\"\xff\xfe\"}", "malformed JSON"); /* not UTF-8 */

    /* A path longer than the cap. */
    size_t long_len = CONTROL_MAX_PATH + 1;
    char *line = malloc(long_len + 64);
    assert_non_null(line);
    int n = sprintf(line, "{\"cmd\":\"snapshot\",\"path\":\"");
    memset(line + n, 'a', long_len);
    strcpy(line + n + long_len, "\"}");
    parse_refused(line, "longer than");
    free(line);

    /* A request longer than a line may be. */
    size_t big = CONTROL_MAX_LINE + 1;
    line = malloc(big + 1);
    assert_non_null(line);
    memset(line, ' ', big);
    memcpy(line, "{\"cmd\":\"status\"}", 16);
    line[big] = '\0';
    parse_refused(line, "longer than");
    free(line);
}

/* The command named in an error is cut at 64 bytes, possibly inside a
 * UTF-8 sequence: the answer must still be JSON. */
static void test_error_quoting_stays_utf8(void **state)
{
    char line[512];
    char name[300] = "";
    strcat(name, "x");
    for (int i = 0; i < 60; i++)
        strcat(name, "\xc3\xa9"); /* é */
    snprintf(line, sizeof(line), "{\"cmd\":\"%s\"}", name);
    parse_refused(line, "unknown command");
    json_t *a = control_error("bad bytes \xff\xc3 and \xe2\x82");
    assert_non_null(a);
    assert_string_equal(json_string_value(json_object_get(a, "error")), "bad bytes ?? and ??");
    json_decref(a);
}

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* One of several kinds of malformed line, never a valid request. */
static size_t malformed_line(char *buf, size_t cap, unsigned i)
{
    static const char *const valid[] = {
        "{\"cmd\":\"status\"}",
        "{\"cmd\":\"snapshot\",\"path\":\"/tmp/x.tar\"}",
        "{\"cmd\":\"halt\"}",
    };
    const char *v = valid[i % 3];
    size_t len = 0;
    switch (i % 6) {
    case 0: /* random bytes, none a newline, not starting an object */
        len = 1 + next_random() % 300;
        for (size_t k = 0; k < len; k++) {
            buf[k] = (char)(next_random() & 0xff);
            if (buf[k] == '\n' ||
                (k == 0 && (buf[k] == '{' || buf[k] == ' ' || buf[k] == '\t' || buf[k] == '\r')))
                buf[k] = '#';
        }
        break;
    case 1: /* a valid request cut short */
        len = next_random() % strlen(v);
        memcpy(buf, v, len);
        break;
    case 2: /* nested far deeper than the parser goes */
        len = 3000 + next_random() % 4000;
        memset(buf, next_random() & 1 ? '[' : '{', len);
        break;
    case 3: /* a request with a stray field of a random kind */
        len = (size_t)snprintf(buf, cap, "{\"cmd\":\"status\",\"f%u\":%u}", next_random() % 1000,
                               next_random());
        break;
    case 4: { /* a valid request with a byte replaced by one JSON refuses there */
        len = strlen(v);
        memcpy(buf, v, len);
        static const char bad[] = {'\x01', '}', ',', '\x7f'};
        size_t at = next_random() % 7; /* within {"cmd": */
        buf[at] = bad[next_random() % sizeof(bad)];
        break;
    }
    default: /* an unknown command, random letters */
        len = (size_t)snprintf(buf, cap, "{\"cmd\":\"");
        for (unsigned k = 0, n = 1 + next_random() % 20; k < n; k++)
            buf[len++] = (char)('A' + next_random() % 26);
        len += (size_t)snprintf(buf + len, cap - len, "\"}");
        break;
    }
    assert_true(len < cap);
    return len;
}

static void test_thousand_malformed_lines(void **state)
{
    static char buf[8192];
    for (unsigned i = 0; i < 1000; i++) {
        size_t len = malformed_line(buf, sizeof(buf), i);
        parse_refused_len(buf, len, NULL);
    }
}

/* ---- Answers and the ctl client's side ---- */

static void test_status_answer(void **state)
{
    struct control_device_info devs[] = {{"com1", "uart16550"}, {"dev.p", "pvpanic"}};
    struct control_status st = {
        .name = "vm1",
        .state = "paused",
        .uptime_ms = 12345,
        .vcpus = 4,
        .memory_mib = 1024,
        .resets = 2,
        .devices = devs,
        .device_count = 2,
        .has_pvpanic = true,
        .panics = 3,
        .crash_loads = 1,
    };
    json_t *a = control_status_answer(&st);
    assert_non_null(a);
    size_t n;
    char *line = control_answer_line(a, &n);
    json_decref(a);
    assert_string_equal(line,
                        "{\"ok\":true,\"name\":\"vm1\",\"state\":\"paused\",\"uptime_ms\":12345,"
                        "\"vcpus\":4,\"memory_mib\":1024,\"resets\":2,\"devices\":[{\"name\":"
                        "\"com1\",\"kind\":\"uart16550\"},{\"name\":\"dev.p\",\"kind\":"
                        "\"pvpanic\"}],\"panics\":3,\"crash_loads\":1}\n");
    assert_int_equal(control_answer_ok(line, n - 1), 1);
    free(line);
    st.has_pvpanic = false;
    st.device_count = 0;
    a = control_status_answer(&st);
    assert_null(json_object_get(a, "panics"));
    assert_int_equal(json_array_size(json_object_get(a, "devices")), 0);
    json_decref(a);
}

static void test_ctl_request_lines(void **state)
{
    char err[256];
    char *line = control_request_line("status", NULL, err, sizeof(err));
    assert_string_equal(line, "{\"cmd\":\"status\"}\n");
    free(line);
    line = control_request_line("snapshot", "my \"snap\".tar", err, sizeof(err));
    assert_string_equal(line, "{\"cmd\":\"snapshot\",\"path\":\"my \\\"snap\\\".tar\"}\n");
    struct control_request req;
    assert_int_equal(control_parse(line, strlen(line) - 1, &req, err, sizeof(err)), 0);
    assert_string_equal(req.path, "my \"snap\".tar");
    control_request_free(&req);
    free(line);
    /* Unknown commands go to the server, which refuses them. */
    line = control_request_line("frobnicate", NULL, err, sizeof(err));
    assert_string_equal(line, "{\"cmd\":\"frobnicate\"}\n");
    free(line);
    assert_null(control_request_line("pause", "x", err, sizeof(err)));
    assert_string_equal(err, "pause takes no argument");
    assert_null(control_request_line("\xff", NULL, err, sizeof(err)));
    assert_int_equal(control_answer_ok("{\"ok\":false,\"error\":\"x\"}", 24), 0);
    assert_int_equal(control_answer_ok("{\"ok\":1}", 8), -1);
    assert_int_equal(control_answer_ok("garbage", 7), -1);
}

/* ---- The server on a loop driven by the test ---- */

struct fixture {
    char dir[64], path[128];
    struct io_loop loop;
    struct control_server server;
    unsigned handled;
};

static json_t *echo_handler(void *opaque, const struct control_request *req)
{
    struct fixture *f = opaque;
    f->handled++;
    json_t *a = control_ok();
    json_object_set_new(a, "cmd", json_string(control_cmd_name(req->cmd)));
    if (req->path)
        json_object_set_new(a, "path", json_string(req->path));
    return a;
}

static int server_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/test_control.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/ctl.sock", f->dir);
    assert_int_equal(io_loop_init(&f->loop, "test"), 0);
    control_server_init(&f->server);
    *state = f;
    return 0;
}

static int server_teardown(void **state)
{
    struct fixture *f = *state;
    control_server_close(&f->server);
    io_loop_destroy(&f->loop);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int connect_to(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Runs the server until nothing happens for 20 ms. */
static void pump(struct fixture *f)
{
    while (io_loop_poll(&f->loop, 20) > 0)
        ;
}

/* Reads what the server sent to fd so far (the loop pumped in between);
 * *eof set once the server closed. Returns the bytes, NUL-terminated. */
static char *drain(struct fixture *f, int fd, size_t *len, bool *eof)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    *eof = false;
    for (int idle = 0; idle < 3;) {
        pump(f);
        ssize_t r = read(fd, buf + n, cap - n);
        if (r > 0) {
            n += (size_t)r;
            idle = 0;
            if (n == cap) {
                cap *= 2;
                buf = realloc(buf, cap + 1);
                assert_non_null(buf);
            }
            continue;
        }
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
            *eof = true;
            break;
        }
        idle++;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void send_all(struct fixture *f, int fd, const char *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = send(fd, data + done, len - done, MSG_NOSIGNAL);
        if (r > 0)
            done += (size_t)r;
        else
            pump(f);
    }
}

static unsigned count_lines(const char *text, const char *needle)
{
    unsigned n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_server_answers_in_order(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(control_server_open(&f->server, f->path, &f->loop, echo_handler, f), 0);
    struct stat st;
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);

    int fd = connect_to(f->path);
    assert_true(fd >= 0);
    const char req[] = "{\"cmd\":\"pause\"}\nnot json\n{\"cmd\":\"snapshot\",\"path\":\"p\"}\r\n"
                       "\n{\"cmd\":\"resume\"}"; /* the last without newline: sent at EOF */
    send_all(f, fd, req, sizeof(req) - 1);
    size_t n;
    bool eof;
    char *out = drain(f, fd, &n, &eof);
    assert_false(eof);
    assert_string_equal(out, "{\"ok\":true,\"cmd\":\"pause\"}\n"
                             "{\"ok\":false,\"error\":\"malformed JSON at byte 3: invalid token "
                             "near 'not'\"}\n"
                             "{\"ok\":true,\"cmd\":\"snapshot\",\"path\":\"p\"}\n"
                             "{\"ok\":false,\"error\":\"empty line; a request is a JSON object "
                             "such as {\\\"cmd\\\":\\\"status\\\"}\"}\n");
    free(out);
    shutdown(fd, SHUT_WR);
    out = drain(f, fd, &n, &eof);
    assert_string_equal(out, "{\"ok\":true,\"cmd\":\"resume\"}\n");
    assert_true(eof);
    free(out);
    close(fd);
    assert_int_equal(f->handled, 3);
}

/* A thousand malformed lines in one stream: a thousand error answers, and
 * the connection still serves a good request after them. */
static void test_server_thousand_malformed_lines(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(control_server_open(&f->server, f->path, &f->loop, echo_handler, f), 0);
    int fd = connect_to(f->path);
    assert_true(fd >= 0);
    static char buf[8192];
    for (unsigned i = 0; i < 1000; i++) {
        size_t len = malformed_line(buf, sizeof(buf) - 1, i);
        buf[len++] = '\n';
        send_all(f, fd, buf, len);
    }
    send_all(f, fd, "{\"cmd\":\"status\"}\n", 17);
    size_t n;
    bool eof;
    char *out = drain(f, fd, &n, &eof);
    assert_false(eof);
    assert_int_equal(count_lines(out, "\n"), 1001);
    assert_int_equal(count_lines(out, "{\"ok\":false,\"error\":"), 1000);
    assert_non_null(strstr(out, "{\"ok\":true,\"cmd\":\"status\"}\n"));
    assert_int_equal(f->handled, 1);
    free(out);
    close(fd);
}

/* A client that sends without reading: the server stops reading it once
 * its answers back up (its buffer stays bounded), and every answer
 * arrives once the client reads. */
static void test_server_backpressure(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(control_server_open(&f->server, f->path, &f->loop, echo_handler, f), 0);
    int fd = connect_to(f->path);
    assert_true(fd >= 0);
    const char req[] = "{\"cmd\":\"status\"}\n";
    const size_t req_len = sizeof(req) - 1, lines = 40000, total = lines * req_len;
    char *blast = malloc(total);
    assert_non_null(blast);
    for (size_t i = 0; i < lines; i++)
        memcpy(blast + i * req_len, req, req_len);
    size_t sent = 0, got = 0, answers = 0;
    for (int idle = 0; idle < 5 && sent < total;) {
        ssize_t r = send(fd, blast + sent, total - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0)
            sent += (size_t)r, idle = 0;
        else
            idle++;
        pump(f);
    }
    assert_true(f->server.clients[0].out_cap <= 2 * CONTROL_MAX_PENDING_OUT);
    char chunk[65536];
    for (int idle = 0; answers < lines && idle < 100;) {
        if (sent < total) {
            ssize_t r = send(fd, blast + sent, total - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (r > 0)
                sent += (size_t)r;
        }
        pump(f);
        ssize_t k = read(fd, chunk, sizeof(chunk));
        if (k <= 0) {
            idle++;
            continue;
        }
        idle = 0;
        got += (size_t)k;
        for (ssize_t j = 0; j < k; j++)
            answers += chunk[j] == '\n';
    }
    assert_int_equal(answers, lines);
    assert_int_equal(got, lines * strlen("{\"ok\":true,\"cmd\":\"status\"}\n"));
    assert_true(f->server.clients[0].out_cap <= 2 * CONTROL_MAX_PENDING_OUT);
    free(blast);
    close(fd);
}

static void test_server_long_line_closes(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(control_server_open(&f->server, f->path, &f->loop, echo_handler, f), 0);
    int fd = connect_to(f->path);
    assert_true(fd >= 0);
    /* Exactly CONTROL_MAX_LINE bytes is still a line. */
    char *line = malloc(CONTROL_MAX_LINE + 2);
    assert_non_null(line);
    memset(line, ' ', CONTROL_MAX_LINE);
    memcpy(line, "{\"cmd\":\"status\"}", 16);
    line[CONTROL_MAX_LINE] = '\n';
    send_all(f, fd, line, CONTROL_MAX_LINE + 1);
    size_t n;
    bool eof;
    char *out = drain(f, fd, &n, &eof);
    assert_string_equal(out, "{\"ok\":true,\"cmd\":\"status\"}\n");
    assert_false(eof);
    free(out);
    /* One byte more: refused, and the connection ends. */
    memset(line, 'x', CONTROL_MAX_LINE + 2);
    send_all(f, fd, line, CONTROL_MAX_LINE + 2);
    out = drain(f, fd, &n, &eof);
    assert_string_equal(out, "{\"ok\":false,\"error\":\"request line longer than 65536 bytes; "
                             "closing\"}\n");
    assert_true(eof);
    free(out);
    free(line);
    close(fd);
    /* The server still serves others. */
    fd = connect_to(f->path);
    assert_true(fd >= 0);
    send_all(f, fd, "{\"cmd\":\"halt\"}\n", 15);
    out = drain(f, fd, &n, &eof);
    assert_string_equal(out, "{\"ok\":true,\"cmd\":\"halt\"}\n");
    free(out);
    close(fd);
}

static void test_server_client_cap(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(control_server_open(&f->server, f->path, &f->loop, echo_handler, f), 0);
    int fds[CONTROL_MAX_CLIENTS + 1];
    for (unsigned i = 0; i <= CONTROL_MAX_CLIENTS; i++) {
        fds[i] = connect_to(f->path);
        assert_true(fds[i] >= 0);
        pump(f);
    }
    size_t n;
    bool eof;
    char *out = drain(f, fds[CONTROL_MAX_CLIENTS], &n, &eof);
    assert_string_equal(out, "{\"ok\":false,\"error\":\"too many control clients (at most 16 at "
                             "once)\"}\n");
    assert_true(eof);
    free(out);
    close(fds[CONTROL_MAX_CLIENTS]);
    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        send_all(f, fds[i], "{\"cmd\":\"status\"}\n", 17);
        out = drain(f, fds[i], &n, &eof);
        assert_string_equal(out, "{\"ok\":true,\"cmd\":\"status\"}\n");
        free(out);
    }
    /* A slot freed is taken again. */
    close(fds[0]);
    pump(f);
    fds[0] = connect_to(f->path);
    send_all(f, fds[0], "{\"cmd\":\"reset\"}\n", 16);
    out = drain(f, fds[0], &n, &eof);
    assert_string_equal(out, "{\"ok\":true,\"cmd\":\"reset\"}\n");
    free(out);
    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
        close(fds[i]);
    pump(f);
}

/* What is at the path decides: a file, a symlink or a live socket is
 * refused and left alone; a stale socket is replaced; at close the file
 * is removed only if it is still ours. */
static void test_socket_path_safety(void **state)
{
    struct fixture *f = *state;
    char target[160];
    snprintf(target, sizeof(target), "%s/target", f->dir);
    int fd = open(f->path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    capture_stderr();
    assert_int_equal(control_server_open(&f->server, f->path, &f->loop, echo_handler, f), -1);
    assert_non_null(
        strstr(captured_stderr(), "exists and is not a socket; refusing to replace it"));
    struct stat st;
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    unlink(f->path);

    assert_int_equal(symlink(target, f->path), 0);
    capture_stderr();
    assert_int_equal(control_server_open(&f->server, f->path, &f->loop, echo_handler, f), -1);
    assert_non_null(strstr(captured_stderr(), "exists and is not a socket"));
    assert_int_equal(lstat(target, &st), -1); /* nothing made through the link */
    unlink(f->path);

    /* A live socket (another listener) is refused. */
    struct unix_listener other;
    assert_int_equal(unix_listener_open(&other, f->path, 0600, "test"), 0);
    capture_stderr();
    assert_int_equal(control_server_open(&f->server, f->path, &f->loop, echo_handler, f), -1);
    assert_non_null(strstr(captured_stderr(), "is a socket someone listens on"));
    /* Closed without unlinking: a stale socket, which is replaced. */
    close(other.fd);
    other.fd = -1;
    unix_listener_close(&other);
    assert_int_equal(lstat(f->path, &st), 0);
    assert_int_equal(control_server_open(&f->server, f->path, &f->loop, echo_handler, f), 0);
    fd = connect_to(f->path);
    assert_true(fd >= 0);
    send_all(f, fd, "{\"cmd\":\"pause\"}\n", 16);
    size_t n;
    bool eof;
    char *out = drain(f, fd, &n, &eof);
    assert_string_equal(out, "{\"ok\":true,\"cmd\":\"pause\"}\n");
    free(out);
    close(fd);
    control_server_close(&f->server);
    assert_int_equal(lstat(f->path, &st), -1);

    /* Someone replaced our socket with a file: close leaves it. */
    assert_int_equal(control_server_open(&f->server, f->path, &f->loop, echo_handler, f), 0);
    unlink(f->path);
    fd = open(f->path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    control_server_close(&f->server);
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISREG(st.st_mode));

    /* Too long for sun_path. */
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    capture_stderr();
    assert_int_equal(control_server_open(&f->server, longpath, &f->loop, echo_handler, f), -1);
    assert_non_null(strstr(captured_stderr(), "longer than a UNIX socket path can be"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_commands),
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_error_quoting_stays_utf8),
        cmocka_unit_test(test_thousand_malformed_lines),
        cmocka_unit_test(test_status_answer),
        cmocka_unit_test(test_ctl_request_lines),
        cmocka_unit_test_setup_teardown(test_server_answers_in_order, server_setup,
                                        server_teardown),
        cmocka_unit_test_setup_teardown(test_server_thousand_malformed_lines, server_setup,
                                        server_teardown),
        cmocka_unit_test_setup_teardown(test_server_backpressure, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(test_server_long_line_closes, server_setup,
                                        server_teardown),
        cmocka_unit_test_setup_teardown(test_server_client_cap, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(test_socket_path_safety, server_setup, server_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
