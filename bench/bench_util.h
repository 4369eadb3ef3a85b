/* Helpers shared by the benchmark drivers: time, the guest console over a
 * unix socket, and small statistics. */
#ifndef BENCH_BENCH_UTIL_H
#define BENCH_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

uint64_t now_ns(void);
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Connects to the VMM's console socket, retrying every poll_us until the
 * deadline or until pid exits; -1 on failure. */
int connect_console(const char *path, pid_t pid, uint64_t deadline, unsigned poll_us);

struct console {
    int fd;
    char buf[8192];
    size_t len;
    char last[256]; /* the last complete line, for messages */
};

/* Next complete line (without CR/LF) into out; false on timeout or EOF. */
bool console_next_line(struct console *c, char *out, size_t cap, uint64_t deadline);
/* Reads lines until one contains needle; false on timeout or EOF. */
bool console_expect(struct console *c, const char *needle, uint64_t deadline);
void console_say(struct console *c, const char *text);

int cmp_double(const void *a, const void *b);
/* Median, minimum and maximum of n values (false when n is 0). */
bool summarize_values(const double *v, int n, double *med, double *lo, double *hi);
/* The host's load average and online CPUs, as context for the figures:
 * other work on the host moves them a lot. */
void print_load(const char *when);

/* The contestants: our VMM, optionally our VMM built from an earlier
 * revision (--vmm-before), and QEMU. */
enum vmm_kind { OURS, BEFORE, QEMU, NKINDS };
extern const char *const vmm_kind_names[NKINDS];

/* The order in which run number `run` (from 0) measures the contestants
 * marked in present[]; returns how many it wrote to order[]. */
int run_order(int run, const bool present[NKINDS], enum vmm_kind order[NKINDS]);

/* Prints prefix, then argv as a shell command line one can paste. */
void print_command(const char *prefix, const char *const *argv);
/* Copies a NULL-terminated argv into out (cap entries, NULL-terminated,
 * cut short if longer). */
#define ARGV_MAX 32
void copy_argv(const char **out, size_t cap, const char *const *from);
/* Prints text line by line, each line after indent. */
void print_indented(const char *indent, const char *text);

/* Quartiles of n values by linear interpolation (false when n is 0). */
bool quartiles(const double *v, int n, double *q1, double *med, double *q3);

/* A random order of the contestants marked in present[] (Fisher-Yates over
 * *rng, an xorshift state the caller seeds and prints); returns the count. */
int shuffled_order(uint64_t *rng, const bool present[NKINDS], enum vmm_kind order[NKINDS]);
/* Shuffles items in place (Fisher-Yates over *rng). */
void shuffle_ints(uint64_t *rng, int *items, int n);
/* The next value of the xorshift generator *rng. */
uint64_t bench_random(uint64_t *rng);

/* Host CPU time of a process's threads in seconds (schedstat, else
 * utime + stime), with the vCPU threads (ours "vcpuN", QEMU "CPU N/KVM")
 * and vhost workers also counted apart: a polling guest keeps its vCPU
 * busy in every VMM alike, so the VMM's own work is the rest. */
struct proc_cpu {
    double total_s, vcpu_s, vhost_s;
    int threads;
};
bool proc_cpu_read(pid_t pid, struct proc_cpu *out);
/* utime + stime in seconds from DIR/stat (a /proc/PID directory: the whole
 * process, exited threads included; /proc/PID/task/TID: one thread); -1 if
 * unreadable. */
double stat_cpu_s(const char *dir);
/* False once schedstat was missing and tick-resolution times were used. */
bool proc_cpu_precise(void);

/* A benchmark figure over runs. */
#define SERIES_MAX 101
struct series {
    int n;
    double v[SERIES_MAX];
};
void series_add(struct series *s, double v);

/* PSS, private dirty and RSS of a process in KiB, from smaps_rollup. */
struct proc_mem {
    double pss_kib, private_dirty_kib, rss_kib, shared_clean_kib;
};
bool proc_mem_read(pid_t pid, struct proc_mem *out);

/* Appends one line (a JSON object the caller formats) to
 * $BENCH_OUT/NAME.jsonl, BENCH_OUT defaulting to build/bench; every
 * benchmark keeps its raw per-run results there. */
void raw_result(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The git commit the benchmark's tree is at, "-dirty" when it has changes
 * ("unknown" outside git). */
const char *git_commit(void);

#endif
