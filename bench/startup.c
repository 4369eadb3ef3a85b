/* Start-up and memory benchmark: ours against QEMU on the same test guest,
 * and optionally against our VMM built from an earlier revision (--vmm-before,
 * see bench/build-before.sh), all in one invocation.
 *
 * For each run it measures the time from exec to the guest's first
 * instruction (the guest's first act is writing 'S' to the debug port, which
 * both VMMs send to a FIFO we read), then drives the guest through its
 * self-test and reads the VMM's memory overhead: process RSS minus the RSS
 * of the guest-RAM mappings. Runs are interleaved, the contestants' order
 * rotating from run to run, so that a change in the host's load during the
 * benchmark weighs on all alike. Prints the exact commands, figures and
 * ratios; never fails on time.
 *
 * --nic: each contestant also has a virtio-net NIC on a TAP it creates
 * (ours: the spec's pci-virtio-viona at 0.5.0; QEMU: virtio-net-pci on a tap
 * netdev), each run in a network namespace of its own (the child unshares
 * before exec, so no TAP reaches the host's namespace); ours takes the
 * userspace path where /dev/vhost-net is absent, and QEMU runs vhost=off
 * to match. */
#include <errno.h>

#include "bench_util.h"
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
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
    const char *vmm, *vmm_before, *guest, *qemu;
    int runs;
    unsigned cpus, memory_mib;
    bool nic;
};

#define BENCH_TAP "pstbench0"

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

/* One contestant's exact command line, run in a directory of its own that
 * holds config.toml (ours and before), the console socket ttya and the
 * debug-port FIFO debug.out. */
struct command {
    char cpus[16], mem[16];
    const char *argv[ARGV_MAX];
};

static void build_command(struct command *c, enum vmm_kind kind, const struct options *o)
{
    snprintf(c->cpus, sizeof(c->cpus), "%u", o->cpus);
    snprintf(c->mem, sizeof(c->mem), "%u", o->memory_mib);
    const char *qemu[] = {o->qemu,
                          "-M",
                          "pc",
                          "-enable-kvm",
                          "-nodefaults",
                          "-no-user-config",
                          "-display",
                          "none",
                          "-m",
                          c->mem,
                          "-smp",
                          c->cpus,
                          "-bios",
                          o->guest,
                          "-serial",
                          "unix:ttya,server=on,wait=on",
                          "-chardev",
                          "file,id=dbg,path=debug.out",
                          "-device",
                          "isa-debugcon,iobase=0x402,chardev=dbg",
                          o->nic ? "-netdev" : NULL, /* without a NIC the list ends here */
                          "tap,id=n0,ifname=" BENCH_TAP ",script=no,downscript=no,vhost=off",
                          "-device",
                          "virtio-net-pci,netdev=n0,addr=5",
                          NULL};
    const char *vmm[] = {kind == OURS ? o->vmm : o->vmm_before, "config.toml", NULL};
    copy_argv(c->argv, ARGV_MAX, kind == QEMU ? qemu : vmm);
}

static void config_text(char *out, size_t cap, const struct options *o)
{
    int n = snprintf(out, cap,
                     "[main]\nname = \"bench-%d\"\ncpus = %u\nbootrom = \"%s\"\nmemory = %u\n",
                     (int)getpid(), o->cpus, o->guest, o->memory_mib);
    if (o->nic && n > 0 && (size_t)n < cap)
        snprintf(out + n, cap - (size_t)n,
                 "\n[dev.net0]\ndriver = \"pci-virtio-viona\"\nvnic = \"" BENCH_TAP
                 "\"\npci-path = \"0.5.0\"\n");
}

static pid_t launch(enum vmm_kind kind, const struct options *o, const char *dir)
{
    struct command c;
    build_command(&c, kind, o);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    if (chdir(dir) < 0 || (o->nic && unshare(CLONE_NEWNET) < 0))
        _exit(127);
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execvp(c.argv[0], (char *const *)c.argv);
    _exit(127);
}

static bool run_once(enum vmm_kind kind, const struct options *o, struct sample *s)
{
    char dir[] = "/tmp/pst-bench-XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp: %s", strerror(errno));
    char path[600], config[PATH_MAX + 256];
    snprintf(path, sizeof(path), "%s/config.toml", dir);
    FILE *cfg = fopen(path, "w");
    if (!cfg)
        die("%s: %s", path, strerror(errno));
    config_text(config, sizeof(config), o);
    fputs(config, cfg);
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

/* Every run measures each contestant once, in an order that rotates. */
static void measure(const struct options *o, const bool present[NKINDS], struct summary sum[NKINDS])
{
    static double startup[NKINDS][MAX_RUNS], overhead[NKINDS][MAX_RUNS], rss[NKINDS][MAX_RUNS];
    int n[NKINDS] = {0};
    for (int i = 0; i < o->runs; i++) {
        enum vmm_kind order[NKINDS];
        int count = run_order(i, present, order);
        for (int j = 0; j < count; j++) {
            enum vmm_kind k = order[j];
            struct sample s;
            if (!run_once(k, o, &s)) {
                fprintf(stderr, "bench: %s run %d did not complete\n", vmm_kind_names[k], i);
                continue;
            }
            raw_result("startup",
                       "{\"commit\":\"%s\",\"time\":%lld,\"vmm\":\"%s\",\"nic\":%s,"
                       "\"run\":%d,\"cpus\":%u,\"memory_mib\":%u,\"startup_ms\":%.3f,"
                       "\"overhead_kib\":%.0f,\"rss_kib\":%.0f}",
                       git_commit(), (long long)time(NULL), vmm_kind_names[k],
                       o->nic ? "true" : "false", i + 1, o->cpus, o->memory_mib, s.startup_ms,
                       s.overhead_kib, s.rss_kib);
            startup[k][n[k]] = s.startup_ms;
            overhead[k][n[k]] = s.overhead_kib;
            rss[k][n[k]] = s.rss_kib;
            n[k]++;
        }
    }
    for (int k = 0; k < NKINDS; k++) {
        sum[k] = (struct summary){.ok = n[k] > 0};
        if (!sum[k].ok)
            continue;
        sum[k].startup_med = median(startup[k], n[k]); /* sorts them */
        sum[k].startup_min = startup[k][0];
        sum[k].startup_max = startup[k][n[k] - 1];
        sum[k].overhead_med = median(overhead[k], n[k]);
        sum[k].rss_med = median(rss[k], n[k]);
    }
}

/* One table row: each contestant's figure ("-" if none), then, when
 * ratio_decimals >= 0, ours over each other one and the target. */
static void print_row(const char *label, const double v[NKINDS], const struct summary sum[NKINDS],
                      const bool present[NKINDS], int decimals, int ratio_decimals,
                      const char *target)
{
    printf("%-28s", label);
    for (int k = 0; k < NKINDS; k++) {
        if (!present[k])
            continue;
        if (sum[k].ok)
            printf(" %12.*f", decimals, v[k]);
        else
            printf(" %12s", "-");
    }
    bool any = false;
    for (int k = BEFORE; ratio_decimals >= 0 && k < NKINDS; k++) {
        if (!present[k] || !sum[OURS].ok || !sum[k].ok || v[k] <= 0)
            continue;
        printf("%sours/%s %.*f", any ? ", " : "   ratio ", vmm_kind_names[k], ratio_decimals,
               v[OURS] / v[k]);
        any = true;
    }
    if (any && target)
        printf(" %s", target);
    printf("\n");
}

static void print_commands(const struct options *o, const bool present[NKINDS])
{
    printf("commands (each run in a fresh directory: console socket ttya, debug FIFO "
           "debug.out):\n");
    for (int k = 0; k < NKINDS; k++) {
        if (!present[k])
            continue;
        struct command c;
        char prefix[32];
        build_command(&c, (enum vmm_kind)k, o);
        snprintf(prefix, sizeof(prefix), "  %-7s ", vmm_kind_names[k]);
        print_command(prefix, c.argv);
    }
    char config[PATH_MAX + 256];
    config_text(config, sizeof(config), o);
    printf("  config.toml (%s):\n", present[BEFORE] ? "ours and before" : "ours");
    print_indented("    ", config);
}

int main(int argc, char **argv)
{
    struct options o = {.qemu = "qemu-system-x86_64", .runs = 21, .cpus = 2, .memory_mib = 256};
    static const struct option opts[] = {
        {"vmm", required_argument, NULL, 'v'},
        {"vmm-before", required_argument, NULL, 'b'},
        {"guest", required_argument, NULL, 'g'},
        {"qemu", required_argument, NULL, 'q'},
        {"runs", required_argument, NULL, 'n'},
        {"nic", no_argument, NULL, 'N'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'v':
            o.vmm = optarg;
            break;
        case 'b':
            o.vmm_before = optarg;
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
        case 'N':
            o.nic = true;
            break;
        default:
            return 2;
        }
    }
    static char vmm_path[PATH_MAX], before_path[PATH_MAX], guest_path[PATH_MAX];
    if (o.vmm && realpath(o.vmm, vmm_path))
        o.vmm = vmm_path;
    if (o.vmm_before && realpath(o.vmm_before, before_path))
        o.vmm_before = before_path;
    if (o.guest && realpath(o.guest, guest_path))
        o.guest = guest_path;
    if (!o.vmm || !o.guest || o.runs < 1 || o.runs > MAX_RUNS) {
        fprintf(stderr, "usage: startup --vmm BIN [--vmm-before BIN] --guest ROM [--qemu BIN] "
                        "[--runs N<=101] [--nic]\n");
        return 2;
    }
    if (access(o.vmm, X_OK) != 0 || (o.vmm_before && access(o.vmm_before, X_OK) != 0))
        die("%s: not an executable", access(o.vmm, X_OK) != 0 ? o.vmm : o.vmm_before);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const bool present[NKINDS] = {[OURS] = true, [BEFORE] = o.vmm_before != NULL, [QEMU] = true};
    printf("start-up and memory%s: %u vCPUs, %u MiB, %d runs each, %s interleaved in rotating "
           "order, test guest %s\n",
           o.nic ? ", one NIC on a TAP (each run in its own network namespace)" : "", o.cpus,
           o.memory_mib, o.runs, present[BEFORE] ? "ours, before and qemu" : "ours and qemu",
           o.guest);
    print_commands(&o, present);
    struct summary sum[NKINDS];
    measure(&o, present, sum);

    printf("%-28s", "");
    for (int k = 0; k < NKINDS; k++)
        if (present[k])
            printf(" %12s", vmm_kind_names[k]);
    printf("\n");
    for (int k = 0; k < NKINDS; k++)
        if (present[k] && !sum[k].ok)
            printf("%s: no run completed%s\n", vmm_kind_names[k],
                   k == QEMU ? " (is qemu-system-x86 installed and /dev/kvm usable?)" : "");
    double v[NKINDS];
    for (int k = 0; k < NKINDS; k++)
        v[k] = sum[k].startup_med;
    print_row("exec->first insn median ms", v, sum, present, 2, 2, "(target <= 5 ms)");
    printf("%-28s", "exec->first insn min..max");
    for (int k = 0; k < NKINDS; k++) {
        if (!present[k])
            continue;
        if (sum[k].ok)
            printf(" %5.2f..%-6.2f", sum[k].startup_min, sum[k].startup_max);
        else
            printf(" %12s", "-");
    }
    printf("\n");
    for (int k = 0; k < NKINDS; k++)
        v[k] = sum[k].overhead_med;
    print_row("VMM overhead KiB (median)", v, sum, present, 0, 3, "(target <= 2048 KiB)");
    for (int k = 0; k < NKINDS; k++)
        v[k] = sum[k].rss_med;
    print_row("process RSS KiB (median)", v, sum, present, 0, -1, NULL);
    return 0;
}
