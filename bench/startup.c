/* Start-up and memory benchmark: ours against QEMU on the same test guest.
 *
 * For each run it measures the time from exec to the guest's first
 * instruction (the guest's first act is writing 'S' to the debug port, which
 * both VMMs send to a FIFO we read), then drives the guest through its
 * self-test and reads the VMM's memory overhead: process RSS minus the RSS
 * of the guest-RAM mappings. Prints figures and ratios; never fails on time. */
#include <errno.h>

#include "bench_util.h"
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 101

struct options {
    const char *vmm, *guest, *qemu;
    int runs;
    unsigned cpus, memory_mib;
};

struct sample {
    double startup_ms;
    double overhead_kib;
    double rss_kib;
};

/* RSS of the whole process and of mappings at least guest_bytes large
 * (the guest RAM), from /proc/PID/smaps. */
static void read_rss(pid_t pid, uint64_t guest_bytes, double *total_kib, double *guest_kib)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        die("%s: %s", path, strerror(errno));
    uint64_t map_size = 0;
    *total_kib = *guest_kib = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long lo, hi, kib;
        if (sscanf(line, "%llx-%llx ", &lo, &hi) == 2) { /* a mapping's header line */
            map_size = hi - lo;
            continue;
        }
        if (sscanf(line, "Rss: %llu kB", &kib) == 1) {
            *total_kib += (double)kib;
            if (map_size >= guest_bytes)
                *guest_kib += (double)kib;
        }
    }
    fclose(f);
}

enum vmm_kind { OURS, QEMU };

static pid_t launch(enum vmm_kind kind, const struct options *o, const char *dir)
{
    char cpus[16], mem[16];
    snprintf(cpus, sizeof(cpus), "%u", o->cpus);
    snprintf(mem, sizeof(mem), "%u", o->memory_mib);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    if (chdir(dir) < 0)
        _exit(127);
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    if (kind == OURS) {
        execl(o->vmm, o->vmm, "config.toml", (char *)NULL);
    } else {
        execlp(o->qemu, o->qemu, "-M", "pc", "-enable-kvm", "-nodefaults", "-no-user-config",
               "-display", "none", "-m", mem, "-smp", cpus, "-bios", o->guest, "-serial",
               "unix:ttya,server=on,wait=on", "-chardev", "file,id=dbg,path=debug.out", "-device",
               "isa-debugcon,iobase=0x402,chardev=dbg", (char *)NULL);
    }
    _exit(127);
}

static bool run_once(enum vmm_kind kind, const struct options *o, struct sample *s)
{
    char dir[] = "/tmp/pst-bench-XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp: %s", strerror(errno));
    char path[600];
    snprintf(path, sizeof(path), "%s/config.toml", dir);
    FILE *cfg = fopen(path, "w");
    fprintf(cfg, "[main]\nname = \"bench-%d\"\ncpus = %u\nbootrom = \"%s\"\nmemory = %u\n",
            (int)getpid(), o->cpus, o->guest, o->memory_mib);
    fclose(cfg);
    snprintf(path, sizeof(path), "%s/debug.out", dir);
    if (mkfifo(path, 0600) < 0)
        die("mkfifo: %s", strerror(errno));
    int dbg = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

    uint64_t t0 = now_ns();
    pid_t pid = launch(kind, o, dir);
    uint64_t deadline = t0 + 30ull * 1000000000ull;
    snprintf(path, sizeof(path), "%s/ttya", dir);
    struct console con = {.fd = connect_console(path, pid, deadline, 20)};
    bool ok = false;
    if (con.fd >= 0) {
        /* The first byte on the debug FIFO is the guest's first instruction. */
        for (;;) {
            char c;
            struct pollfd p = {dbg, POLLIN, 0};
            poll(&p, 1, 100);
            if (read(dbg, &c, 1) == 1 && c == 'S') {
                s->startup_ms = (double)(now_ns() - t0) / 1e6;
                ok = true;
                break;
            }
            if (now_ns() > deadline)
                break;
        }
    }
    if (ok) {
        char line[128];
        ok = console_expect(&con, "testguest: ready", deadline);
        snprintf(line, sizeof(line), "cpus=%u mem=%u lowmem=%u\r", o->cpus, o->memory_mib,
                 o->memory_mib);
        console_say(&con, line);
        ok = ok && console_expect(&con, "testguest: echo?", deadline);
        console_say(&con, "bench\r");
        ok = ok && console_expect(&con, "testguest: irq?", deadline);
        console_say(&con, "Z");
        ok = ok && console_expect(&con, "testguest: PASS", deadline);
        if (ok) {
            double guest_kib;
            read_rss(pid, (uint64_t)o->memory_mib * 1024 * 1024 / 2, &s->rss_kib, &guest_kib);
            s->overhead_kib = s->rss_kib - guest_kib;
        }
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (con.fd >= 0)
        close(con.fd);
    close(dbg);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench: could not remove %s\n", dir);
    return ok;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct summary {
    bool ok;
    double startup_med, startup_min, startup_max, overhead_med, rss_med;
};

static struct summary measure(enum vmm_kind kind, const struct options *o)
{
    static struct sample samples[MAX_RUNS];
    double startup[MAX_RUNS], overhead[MAX_RUNS], rss[MAX_RUNS];
    struct summary sum = {0};
    int n = 0;
    for (int i = 0; i < o->runs; i++) {
        if (!run_once(kind, o, &samples[n])) {
            fprintf(stderr, "bench: %s run %d did not complete\n", kind == OURS ? "ours" : "qemu",
                    i);
            continue;
        }
        startup[n] = samples[n].startup_ms;
        overhead[n] = samples[n].overhead_kib;
        rss[n] = samples[n].rss_kib;
        n++;
    }
    if (n == 0)
        return sum;
    sum.ok = true;
    sum.startup_med = median(startup, n);
    sum.startup_min = startup[0];
    sum.startup_max = startup[n - 1];
    sum.overhead_med = median(overhead, n);
    sum.rss_med = median(rss, n);
    return sum;
}

int main(int argc, char **argv)
{
    struct options o = {.qemu = "qemu-system-x86_64", .runs = 21, .cpus = 2, .memory_mib = 256};
    static const struct option opts[] = {
        {"vmm", required_argument, NULL, 'v'},
        {"guest", required_argument, NULL, 'g'},
        {"qemu", required_argument, NULL, 'q'},
        {"runs", required_argument, NULL, 'n'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'v':
            o.vmm = optarg;
            break;
        case 'g':
            o.guest = optarg;
            break;
        case 'q':
            o.qemu = optarg;
            break;
        case 'n':
            o.runs = atoi(optarg);
            break;
        default:
            return 2;
        }
    }
    static char vmm_path[PATH_MAX], guest_path[PATH_MAX];
    if (o.vmm && realpath(o.vmm, vmm_path))
        o.vmm = vmm_path;
    if (o.guest && realpath(o.guest, guest_path))
        o.guest = guest_path;
    if (!o.vmm || !o.guest || o.runs < 1 || o.runs > MAX_RUNS) {
        fprintf(stderr, "usage: startup --vmm BIN --guest ROM [--qemu BIN] [--runs N<=101]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    printf("start-up and memory: %u vCPUs, %u MiB, %d runs each, test guest %s\n", o.cpus,
           o.memory_mib, o.runs, o.guest);
    struct summary ours = measure(OURS, &o);
    struct summary qemu = measure(QEMU, &o);
    printf("%-28s %12s %12s\n", "", "ours", "qemu");
    if (!ours.ok)
        printf("ours: no run completed\n");
    if (!qemu.ok)
        printf("qemu: no run completed (is qemu-system-x86 installed and /dev/kvm usable?)\n");
    if (!ours.ok || !qemu.ok)
        return 0;
    printf("%-28s %12.2f %12.2f   ratio ours/qemu %.2f (target <= 5 ms)\n",
           "exec->first insn median ms", ours.startup_med, qemu.startup_med,
           ours.startup_med / qemu.startup_med);
    printf("%-28s %5.2f..%-6.2f %5.2f..%-6.2f\n", "exec->first insn min..max", ours.startup_min,
           ours.startup_max, qemu.startup_min, qemu.startup_max);
    printf("%-28s %12.0f %12.0f   ratio ours/qemu %.3f (target <= 2048 KiB)\n",
           "VMM overhead KiB (median)", ours.overhead_med, qemu.overhead_med,
           ours.overhead_med / qemu.overhead_med);
    printf("%-28s %12.0f %12.0f\n", "process RSS KiB (median)", ours.rss_med, qemu.rss_med);
    return 0;
}
