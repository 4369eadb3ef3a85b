/* The control socket (src/control): the input is what a client sends. It
 * goes through a real server on a UNIX socket, driven on this thread with
 * io_loop_poll, in chunks (so lines arrive split), and every answer line
 * must be a JSON answer. The input as one line goes to control_parse too,
 * and an input "COMMAND\0ARG" to the ctl client's control_request_line,
 * whose lines the parser must accept. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "control/control.h"
#include "core/io_loop.h"

#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct io_loop loop;
static struct control_server server;
static struct sockaddr_un addr;

static json_t *handle(void *opaque, const struct control_request *req)
{
    static const struct control_device_info devices[] = {{"com1", "uart16550"},
                                                         {"dev.disk", "virtio-pci-blk"}};
    struct control_status st = {.name = "fuzz",
                                .state = "running",
                                .uptime_ms = 1,
                                .vcpus = 1,
                                .memory_mib = 64,
                                .devices = devices,
                                .device_count = 2,
                                .has_pvpanic = true};
    switch (req->cmd) {
    case CONTROL_STATUS:
        return control_status_answer(&st);
    case CONTROL_SNAPSHOT: {
        json_t *a = control_ok();
        if (a && req->path)
            json_object_set_new(a, "path", json_string(req->path));
        return a;
    }
    case CONTROL_HALT:
        return control_error("halt refused by %s", "the fuzzer");
    default:
        return control_ok();
    }
}

static void cleanup(void)
{
    control_server_close(&server);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_logs_init();
    if (io_loop_init(&loop, "fuzz") < 0)
        abort();
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof(addr.sun_path), "/tmp/fuzz-control-%d.sock", (int)getpid());
    control_server_init(&server);
    if (control_server_open(&server, addr.sun_path, &loop, handle, NULL) < 0)
        abort();
    atexit(cleanup);
    return 0;
}

/* Reads what the server answered so far into buf (dropping what does not
 * fit); returns false at end of stream. */
static bool take_answers(int fd, char *buf, size_t cap, size_t *len)
{
    for (;;) {
        char tmp[4096];
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n > 0) {
            size_t room = cap - *len;
            size_t take = (size_t)n < room ? (size_t)n : room;
            memcpy(buf + *len, tmp, take);
            *len += take;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
}

static void check_answers(const char *buf, size_t len, bool complete)
{
    size_t start = 0;
    while (start < len) {
        const char *nl = memchr(buf + start, '\n', len - start);
        if (!nl) {
            if (complete)
                abort(); /* every answer ends with a newline */
            return;
        }
        size_t l = (size_t)(nl - (buf + start));
        if (control_answer_ok(buf + start, l) < 0)
            abort(); /* not an answer */
        start += l + 1;
    }
}

static void through_server(const uint8_t *data, size_t size)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
        abort();
    io_loop_poll(&loop, 0); /* accept */
    static char answers[1 << 20];
    size_t alen = 0;
    size_t chunk = size ? 1u + data[0] % 97u * 8u : 1;
    size_t off = 0;
    bool open = true;
    for (unsigned rounds = 0; off < size && open && rounds < 100000; rounds++) {
        size_t n = size - off < chunk ? size - off : chunk;
        ssize_t w = send(fd, data + off, n, MSG_NOSIGNAL);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            open = false; /* the server closed on us (an over-long line) */
        io_loop_poll(&loop, 0);
        open = take_answers(fd, answers, sizeof(answers), &alen) && open;
    }
    shutdown(fd, SHUT_WR);
    for (unsigned rounds = 0; open && rounds < 100000; rounds++) {
        io_loop_poll(&loop, 0);
        open = take_answers(fd, answers, sizeof(answers), &alen);
    }
    if (open)
        abort(); /* the server never finished with the client */
    check_answers(answers, alen, alen < sizeof(answers));
    close(fd);
}

static void client_line(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul)
        return;
    size_t clen = (size_t)(nul - data);
    char *command = strndup((const char *)data, clen);
    char *arg = strndup((const char *)nul + 1, size - clen - 1);
    if (!command || !arg)
        abort();
    char err[512];
    const char *use_arg = arg[0] ? arg : NULL;
    char *line = control_request_line(command, use_arg, err, sizeof(err));
    if (line) {
        struct control_request req;
        size_t len = strlen(line);
        int r = control_parse(line, len - 1, &req, err, sizeof(err));
        bool known = false;
        for (int c = CONTROL_STATUS; c <= CONTROL_HALT; c++)
            known |= strcmp(command, control_cmd_name((enum control_cmd)c)) == 0;
        bool path_ok = !use_arg || strlen(arg) <= CONTROL_MAX_PATH;
        if (known && path_ok && r < 0)
            abort(); /* the client built a line the server refuses */
        if (r == 0) {
            if (strcmp(control_cmd_name(req.cmd), command) != 0)
                abort();
            if (use_arg && (!req.path || strcmp(req.path, arg) != 0))
                abort();
            control_request_free(&req);
        }
        free(line);
    }
    free(command);
    free(arg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size ? size : 1);
    if (!line)
        return 0;
    memcpy(line, data, size);
    struct control_request req;
    char err[512];
    if (control_parse(line, size, &req, err, sizeof(err)) == 0)
        control_request_free(&req);
    else if (!memchr(err, '\0', sizeof(err)))
        abort();
    free(line);
    client_line(data, size);
    through_server(data, size);
    return 0;
}
