#include "bench_util.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

int connect_console(const char *path, pid_t pid, uint64_t deadline, unsigned poll_us)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        return -1;
    memcpy(addr.sun_path, path, strlen(path) + 1);
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
            return fd;
        close(fd);
        if (now_ns() > deadline || waitpid(pid, NULL, WNOHANG) == pid)
            return -1;
        usleep(poll_us);
    }
}

bool console_next_line(struct console *c, char *out, size_t cap, uint64_t deadline)
{
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            size_t k = n;
            while (k && (c->buf[k - 1] == '\r'))
                k--;
            if (k >= cap)
                k = cap - 1;
            memcpy(out, c->buf, k);
            out[k] = 0;
            snprintf(c->last, sizeof(c->last), "%s", out);
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return true;
        }
        if (c->len == sizeof(c->buf))
            c->len = 0; /* an overlong line: drop it */
        struct pollfd p = {c->fd, POLLIN, 0};
        uint64_t t = now_ns();
        if (t >= deadline || poll(&p, 1, (int)((deadline - t) / 1000000) + 1) <= 0)
            return false;
        ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
        if (n <= 0)
            return false;
        c->len += (size_t)n;
    }
}

bool console_expect(struct console *c, const char *needle, uint64_t deadline)
{
    char line[512];
    while (console_next_line(c, line, sizeof(line), deadline))
        if (strstr(line, needle))
            return true;
    return false;
}

void console_say(struct console *c, const char *text)
{
    if (write(c->fd, text, strlen(text)) < 0)
        fprintf(stderr, "bench: console write: %s\n", strerror(errno));
}

int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

const char *const vmm_kind_names[NKINDS] = {"ours", "before", "qemu"};

int run_order(int run, const bool present[NKINDS], enum vmm_kind order[NKINDS])
{
    enum vmm_kind list[NKINDS];
    int n = 0;
    for (int k = 0; k < NKINDS; k++)
        if (present[k])
            list[n++] = (enum vmm_kind)k;
    if (n == 0)
        return 0;
    /* Rotating puts each contestant in each position once every n runs.
     * With an odd n rotation alone always has the same one follow each
     * other one, so every second block of n runs rotates the reversed list:
     * what one VM leaves behind (page cache, CPU clocks) then precedes each
     * contestant equally often too. With two, this is plain alternation. */
    bool reversed = n % 2 == 1 && (run / n) % 2 == 1;
    for (int i = 0; i < n; i++) {
        int at = (i + run) % n;
        order[i] = list[reversed ? n - 1 - at : at];
    }
    return n;
}

void print_command(const char *prefix, const char *const *argv)
{
    fputs(prefix, stdout);
    for (int i = 0; argv[i]; i++) {
        const char *a = argv[i];
        bool plain = a[0] != 0 && strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                            "0123456789_-+=.,:/@%") == strlen(a);
        fputs(i ? " " : "", stdout);
        if (plain) {
            fputs(a, stdout);
            continue;
        }
        putchar('\'');
        for (; *a; a++) {
            if (*a == '\'')
                fputs("'\\''", stdout); /* close, escaped quote, reopen */
            else
                putchar(*a);
        }
        putchar('\'');
    }
    putchar('\n');
}

void print_indented(const char *indent, const char *text)
{
    while (*text) {
        size_t n = strcspn(text, "\n");
        printf("%s%.*s\n", n ? indent : "", (int)n, text);
        text += n + (text[n] == '\n');
    }
}

void copy_argv(const char **out, size_t cap, const char *const *from)
{
    size_t n = 0;
    while (from[n] && n + 1 < cap) {
        out[n] = from[n];
        n++;
    }
    out[n] = NULL;
}

bool summarize_values(const double *v, int n, double *med, double *lo, double *hi)
{
    if (n <= 0)
        return false;
    double *sorted = malloc(sizeof(double) * (size_t)n);
    if (!sorted)
        die("out of memory");
    memcpy(sorted, v, sizeof(double) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(double), cmp_double);
    *med = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    *lo = sorted[0];
    *hi = sorted[n - 1];
    free(sorted);
    return true;
}

void print_load(const char *when)
{
    char buf[128] = "";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(buf, sizeof(buf), f))
            buf[0] = 0;
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = 0;
    printf("  host load average %s: %s (%ld CPUs online)\n", when, buf[0] ? buf : "?",
           sysconf(_SC_NPROCESSORS_ONLN));
}
