/* ttyexpect: drives a guest console on a unix socket (./ttya) with a small
 * expect/send script, for tests where no scripting language is available
 * (inside the nested rig). Everything the guest prints is copied to stdout.
 *
 *   ttyexpect [--connect-timeout S] SOCKET STEP...
 *   STEP: expect:TEXT     wait (up to the step timeout) until TEXT appears
 *                         (same escapes as send)
 *         send:TEXT       send TEXT; \r \n \e \\ and \xHH escapes
 *         sleep:SECONDS   pause
 *         timeout:SECONDS per-step timeout from now on (default 60)
 *         idle:SECONDS    from now on, fail as soon as the guest has printed
 *                         nothing for SECONDS (0: never), whatever the step
 *                         timeout says: a silent guest is a stalled one
 *         fail:TEXT       from now on, fail as soon as TEXT appears (a kernel
 *                         panic or soft lockup: the outcome is known)
 *         eof             wait until the VMM closes the console
 * Exit status: 0 when every step succeeded, 1 on a timeout (the step is
 * named on stderr), 2 on usage or connection errors, 3 when the guest fell
 * silent for the idle limit, 4 when a fail: text appeared. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 65536

static char window[WINDOW + 1]; /* recent output, searched by expect */
static size_t window_len;
static double last_output; /* when the guest last printed (now_s) */
static double idle_limit;  /* 0: no limit */
#define MAX_FAIL_TEXTS 8
static const char *fail_texts[MAX_FAIL_TEXTS]; /* argv strings, no escapes */
static unsigned fail_count;
static char fail_tail[1024]; /* the end of earlier output: a text split across reads is seen */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_socket(const char *path, double timeout)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "ttyexpect: socket path too long\n");
        return -1;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    double deadline = now_s() + timeout;
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
            return fd;
        if (fd >= 0)
            close(fd);
        if (now_s() > deadline) {
            fprintf(stderr, "ttyexpect: cannot connect to %s: %s\n", path, strerror(errno));
            return -1;
        }
        usleep(20000);
    }
}

/* True if a fail: text appears in the output so far (checked on the new
 * bytes plus the tail of the earlier ones). */
static bool saw_fail_text(const char *buf, size_t n)
{
    static size_t tail_len;
    char scan[sizeof(fail_tail) + 4096];
    memcpy(scan, fail_tail, tail_len);
    memcpy(scan + tail_len, buf, n);
    size_t len = tail_len + n;
    for (unsigned f = 0; f < fail_count; f++) {
        size_t tl = strlen(fail_texts[f]);
        for (size_t i = 0; tl && i + tl <= len; i++)
            if (memcmp(scan + i, fail_texts[f], tl) == 0) {
                fprintf(stderr, "\nttyexpect: the guest printed \"%s\"\n", fail_texts[f]);
                return true;
            }
    }
    tail_len = len < sizeof(fail_tail) ? len : sizeof(fail_tail);
    memcpy(fail_tail, scan + len - tail_len, tail_len);
    return false;
}

/* Reads what is available within wait_s; returns -1 on EOF, -2 when a fail:
 * text appeared. */
static int pump(int fd, double wait_s)
{
    struct pollfd p = {fd, POLLIN, 0};
    int ms = wait_s <= 0 ? 0 : (int)(wait_s * 1000) + 1;
    if (poll(&p, 1, ms) <= 0)
        return 0;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0)
        return -1;
    fwrite(buf, 1, (size_t)n, stdout);
    fflush(stdout);
    last_output = now_s();
    if (fail_count && saw_fail_text(buf, (size_t)n))
        return -2;
    /* The window keeps the newest WINDOW bytes; reads are smaller than it. */
    if (window_len + (size_t)n > WINDOW) {
        size_t drop = window_len + (size_t)n - WINDOW;
        memmove(window, window + drop, window_len - drop);
        window_len -= drop;
    }
    memcpy(window + window_len, buf, (size_t)n);
    window_len += (size_t)n;
    window[window_len] = '\0';
    return 1;
}

/* How long to wait for output before the step deadline or the idle limit;
 * <= 0 means one of them has passed (idle_hit tells which). */
static double wait_left(double deadline, bool *idle_hit)
{
    double t = now_s(), left = deadline - t;
    *idle_hit = false;
    if (idle_limit > 0) {
        double idle_left = last_output + idle_limit - t;
        if (idle_left <= 0)
            *idle_hit = true;
        if (idle_left < left)
            left = idle_left;
    }
    return left;
}

static int fail_step(int step, const char *what, bool idle_hit)
{
    if (idle_hit) {
        fprintf(stderr, "\nttyexpect: step %d (%s): the guest printed nothing for %.0f s\n", step,
                what, idle_limit);
        return 3;
    }
    fprintf(stderr, "\nttyexpect: step %d failed: %s\n", step, what);
    return 1;
}

/* Finds text in the window (the output may contain NULs: search bytes). */
static char *find(const char *text)
{
    size_t tl = strlen(text);
    if (tl == 0 || tl > window_len)
        return tl == 0 ? window : NULL;
    for (size_t i = 0; i + tl <= window_len; i++)
        if (memcmp(window + i, text, tl) == 0)
            return window + i;
    return NULL;
}

static size_t unescape(const char *in, char *out)
{
    size_t n = 0;
    for (; *in; in++) {
        if (*in != '\\' || !in[1]) {
            out[n++] = *in;
            continue;
        }
        in++;
        switch (*in) {
        case 'r':
            out[n++] = '\r';
            break;
        case 'n':
            out[n++] = '\n';
            break;
        case 'e':
            out[n++] = 0x1b;
            break;
        case 'x':
            if (in[1] && in[2]) {
                char hex[3] = {in[1], in[2], 0};
                out[n++] = (char)strtol(hex, NULL, 16);
                in += 2;
            }
            break;
        default:
            out[n++] = *in;
            break;
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    double connect_timeout = 60, step_timeout = 60;
    int i = 1;
    if (i + 1 < argc && strcmp(argv[i], "--connect-timeout") == 0) {
        connect_timeout = atof(argv[i + 1]);
        i += 2;
    }
    if (i >= argc) {
        fprintf(stderr, "usage: ttyexpect [--connect-timeout S] SOCKET STEP...\n");
        return 2;
    }
    int fd = connect_socket(argv[i++], connect_timeout);
    if (fd < 0)
        return 2;
    last_output = now_s();
    for (; i < argc; i++) {
        const char *step = argv[i];
        if (strncmp(step, "expect:", 7) == 0) {
            double deadline = now_s() + step_timeout;
            char text[4096];
            text[unescape(step + 7, text)] = '\0';
            char *hit;
            bool idle_hit;
            while (!(hit = find(text))) {
                double left = wait_left(deadline, &idle_hit);
                int r = left <= 0 ? -1 : pump(fd, left);
                if (r == -2)
                    return 4;
                if (r < 0)
                    return fail_step(i, step, idle_hit);
            }
            /* Consume through the match so a later expect needs new output. */
            size_t consumed = (size_t)(hit - window) + strlen(text);
            memmove(window, window + consumed, window_len - consumed);
            window_len -= consumed;
            window[window_len] = '\0';
        } else if (strncmp(step, "send:", 5) == 0) {
            char buf[4096];
            size_t n = unescape(step + 5, buf);
            /* One byte at a time with a pause: firmware consoles poll slowly. */
            for (size_t k = 0; k < n; k++) {
                if (write(fd, buf + k, 1) != 1) {
                    fprintf(stderr, "ttyexpect: send failed: %s\n", strerror(errno));
                    return 1;
                }
                if (pump(fd, 0.02) == -2)
                    return 4;
            }
        } else if (strncmp(step, "sleep:", 6) == 0) {
            double end = now_s() + atof(step + 6);
            while (now_s() < end) {
                int r = pump(fd, end - now_s());
                if (r == -2)
                    return 4;
                if (r < 0)
                    break;
            }
        } else if (strncmp(step, "timeout:", 8) == 0) {
            step_timeout = atof(step + 8);
        } else if (strncmp(step, "idle:", 5) == 0) {
            idle_limit = atof(step + 5);
        } else if (strncmp(step, "fail:", 5) == 0) {
            if (fail_count == MAX_FAIL_TEXTS || strlen(step + 5) >= 1024) {
                fprintf(stderr, "ttyexpect: at most %d fail: texts of < 1024 bytes\n",
                        MAX_FAIL_TEXTS);
                return 2;
            }
            fail_texts[fail_count++] = step + 5;
        } else if (strcmp(step, "eof") == 0) {
            double deadline = now_s() + step_timeout;
            bool idle_hit;
            for (;;) {
                double left = wait_left(deadline, &idle_hit);
                if (left <= 0)
                    return fail_step(i, step, idle_hit);
                int r = pump(fd, left);
                if (r == -2)
                    return 4;
                if (r < 0)
                    break;
            }
        } else {
            fprintf(stderr, "ttyexpect: unknown step %s\n", step);
            return 2;
        }
    }
    return 0;
}
