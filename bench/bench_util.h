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

#endif
