#include "bench_util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
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

/* A sorted copy of n > 0 values, for the caller to free. */
static double *sorted_copy(const double *v, int n)
{
    double *sorted = malloc(sizeof(double) * (size_t)n);
    if (!sorted)
        die("out of memory");
    memcpy(sorted, v, sizeof(double) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(double), cmp_double);
    return sorted;
}

bool summarize_values(const double *v, int n, double *med, double *lo, double *hi)
{
    if (n <= 0)
        return false;
    double *sorted = sorted_copy(v, n);
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

bool quartiles(const double *v, int n, double *q1, double *med, double *q3)
{
    if (n <= 0)
        return false;
    double *sorted = sorted_copy(v, n);
    double at[3] = {0.25, 0.5, 0.75}, *out[3] = {q1, med, q3};
    for (int i = 0; i < 3; i++) {
        double pos = at[i] * (n - 1);
        int lo = (int)pos;
        int hi = lo + 1 < n ? lo + 1 : lo;
        *out[i] = sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }
    free(sorted);
    return true;
}

static uint64_t xorshift(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

uint64_t bench_random(uint64_t *rng)
{
    return xorshift(rng);
}

void shuffle_ints(uint64_t *rng, int *items, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(xorshift(rng) % (uint64_t)(i + 1));
        int t = items[i];
        items[i] = items[j];
        items[j] = t;
    }
}

int shuffled_order(uint64_t *rng, const bool present[NKINDS], enum vmm_kind order[NKINDS])
{
    int list[NKINDS], n = 0;
    for (int k = 0; k < NKINDS; k++)
        if (present[k])
            list[n++] = k;
    shuffle_ints(rng, list, n);
    for (int i = 0; i < n; i++)
        order[i] = (enum vmm_kind)list[i];
    return n;
}

static bool use_schedstat = true;

/* One thread's (or process's) run time in seconds: /proc/.../schedstat's
 * first field (ns), else utime + stime from stat (clock ticks). */
double stat_cpu_s(const char *dir)
{
    char path[PATH_MAX], buf[1024];
    snprintf(path, sizeof(path), "%s/stat", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* "TID (COMM) S ...": COMM may hold spaces and parentheses, so the
     * fields start after the last ')'; utime and stime are the 12th and
     * 13th after the state. */
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double task_cpu(const char *dir)
{
    char path[PATH_MAX];
    if (use_schedstat) {
        snprintf(path, sizeof(path), "%s/schedstat", dir);
        FILE *f = fopen(path, "r");
        unsigned long long ns;
        if (f && fscanf(f, "%llu", &ns) == 1) {
            fclose(f);
            return (double)ns / 1e9;
        }
        if (f)
            fclose(f);
        use_schedstat = false;
    }
    double secs = stat_cpu_s(dir);
    return secs < 0 ? 0 : secs;
}

static void read_comm(const char *dir, char *out, size_t cap)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/comm", dir);
    FILE *f = fopen(path, "r");
    out[0] = 0;
    if (f) {
        if (!fgets(out, (int)cap, f))
            out[0] = 0;
        fclose(f);
    }
    out[strcspn(out, "\n")] = 0;
}

static bool is_vcpu_thread(const char *comm)
{
    unsigned n;
    return (strncmp(comm, "vcpu", 4) == 0) ||     /* ours: vcpuN */
           (sscanf(comm, "CPU %u/KVM", &n) == 1); /* QEMU */
}

bool proc_cpu_read(pid_t pid, struct proc_cpu *out)
{
    *out = (struct proc_cpu){0};
    char dir[64], sub[PATH_MAX], comm[64], want[32];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
        double secs = task_cpu(sub);
        read_comm(sub, comm, sizeof(comm));
        out->total_s += secs;
        out->threads++;
        if (is_vcpu_thread(comm))
            out->vcpu_s += secs;
        if (strncmp(comm, "vhost-", 6) == 0)
            out->vhost_s += secs; /* Linux >= 6.4: vhost workers are threads of the owner */
    }
    closedir(d);
    /* Older kernels: vhost workers are kernel threads named vhost-PID. */
    snprintf(want, sizeof(want), "vhost-%d", (int)pid);
    d = opendir("/proc");
    while (d && (e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(sub, sizeof(sub), "/proc/%s", e->d_name);
        read_comm(sub, comm, sizeof(comm));
        if (strcmp(comm, want) != 0 || atoi(e->d_name) == (int)pid)
            continue;
        char tasks[PATH_MAX];
        snprintf(tasks, sizeof(tasks), "/proc/%d/task/%s", (int)pid, e->d_name);
        if (access(tasks, F_OK) == 0)
            continue; /* already counted as a thread */
        double secs = task_cpu(sub);
        out->total_s += secs;
        out->vhost_s += secs;
    }
    if (d)
        closedir(d);
    return out->threads > 0;
}

bool proc_cpu_precise(void)
{
    return use_schedstat;
}

void series_add(struct series *s, double v)
{
    if (s->n < SERIES_MAX)
        s->v[s->n++] = v;
}

bool proc_mem_read(pid_t pid, struct proc_mem *out)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    *out = (struct proc_mem){0};
    int seen = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long kib;
        if (sscanf(line, "Pss: %llu kB", &kib) == 1) {
            out->pss_kib = (double)kib;
            seen++;
        } else if (sscanf(line, "Private_Dirty: %llu kB", &kib) == 1) {
            out->private_dirty_kib = (double)kib;
            seen++;
        } else if (sscanf(line, "Rss: %llu kB", &kib) == 1) {
            out->rss_kib = (double)kib;
            seen++;
        } else if (sscanf(line, "Shared_Clean: %llu kB", &kib) == 1) {
            out->shared_clean_kib = (double)kib;
        }
    }
    fclose(f);
    return seen == 3;
}

void raw_result(const char *name, const char *fmt, ...)
{
    const char *dir = getenv("BENCH_OUT") ? getenv("BENCH_OUT") : "build/bench";
    char path[4096];
    snprintf(path, sizeof(path), "%s", dir);
    /* mkdir -p, one level at a time */
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        (void)mkdir(path, 0755);
        *p = '/';
    }
    (void)mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/%s.jsonl", dir, name);
    FILE *f = fopen(path, "a");
    if (!f) {
        fprintf(stderr, "bench: %s: %s (raw result not kept)\n", path, strerror(errno));
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

const char *git_commit(void)
{
    static char commit[48];
    if (commit[0])
        return commit;
    snprintf(commit, sizeof(commit), "unknown");
    FILE *p = popen("git describe --always --dirty=-dirty --abbrev=12 2>/dev/null", "r");
    if (p) {
        char buf[48];
        if (fgets(buf, sizeof(buf), p) && buf[0] != '\n') {
            buf[strcspn(buf, "\n")] = 0;
            snprintf(commit, sizeof(commit), "%s", buf);
        }
        pclose(p);
    }
    return commit;
}
