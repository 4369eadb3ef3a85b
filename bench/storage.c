/* Storage benchmark: our virtio-blk and NVMe against QEMU's virtio-blk-pci
 * and nvme (and optionally against our VMM built from an earlier revision,
 * --vmm-before, see bench/build-before.sh), on the same test guest and the
 * same page-cached file, in the same invocation; and the host's own
 * sequential throughput on that file.
 *
 * The guest's `bench` command (guest/storage_bench.c) drives the device
 * with a polling driver at CPL3: 4 KiB random reads and writes at queue
 * depth 32, 1 MiB sequential reads and writes at queue depth 8. The file
 * is filled so that every 4 KiB block starts with a tag the guest checks
 * on every read (writes store the same tags).
 *
 * Host "dd": one thread, 1 MiB pread/pwrite at queue depth 1 over the same
 * file (what `dd bs=1M` does), for the same time.
 *
 * Every run measures each contestant once, the order rotating from run to
 * run so that each takes each position (bench_util's run_order); the table
 * shows the median over runs with min..max, ratios ours/before and
 * ours/QEMU, and sequential figures against the host. Prints the exact
 * commands and configs, and figures; never fails on them.
 *
 *   storage --vmm BIN [--vmm-before BIN] --guest ROM [--qemu BIN] [--runs N] [--ms MS]
 *           [--size-mib N] [--dir DIR] [--devices virtio-blk,nvme]
 *           [--extra "KEY=VALUE ..."] (appended to the guest command)
 * BENCH_BLOCK_DEV_EXTRA="workers = 2" adds lines to our [block_dev.disk]. */
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

#define MAX_RUNS 21
#define NTESTS 4
#define NDEVS 2
#define MIB (1024ull * 1024ull)

enum dev_kind { VIRTIO_BLK, NVME };

static const char *const dev_names[NDEVS] = {"virtio-blk", "nvme"};
static const char *const test_names[NTESTS] = {"randread4k", "randwrite4k", "seqread1m",
                                               "seqwrite1m"};
static const bool test_seq[NTESTS] = {false, false, true, true};

struct options {
    const char *vmm, *vmm_before, *guest, *qemu, *dir, *extra;
    int runs;
    unsigned ms, size_mib, cpus, mem_mib;
    bool dev_on[NDEVS];
};

/* One test's figure in one run: IOPS for random, MiB/s for sequential. */
struct cell {
    int n;
    double v[MAX_RUNS];
    char note[160]; /* the last failure or data problem seen */
};

static struct cell cells[NDEVS][NKINDS][NTESTS];
static char file_path[PATH_MAX];

static uint64_t tag(uint64_t block)
{
    return 0x53544f5242454e43ULL ^ (block * 0x9E3779B97F4A7C15ULL);
}

static void set_tags(uint8_t *buf, size_t len, uint64_t off)
{
    for (size_t p = 0; p < len; p += 4096) {
        uint64_t t = tag((off + p) / 4096);
        memcpy(buf + p, &t, sizeof(t));
    }
}

/* ---- The disk file ---- */

static void create_file(const struct options *o)
{
    snprintf(file_path, sizeof(file_path), "%s/pst-storage-bench-%d.img", o->dir, (int)getpid());
    int fd = open(file_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        die("%s: %s", file_path, strerror(errno));
    uint8_t *buf = calloc(1, MIB);
    for (uint64_t off = 0; off < (uint64_t)o->size_mib * MIB; off += MIB) {
        set_tags(buf, MIB, off);
        if (pwrite(fd, buf, MIB, (off_t)off) != (ssize_t)MIB)
            die("%s: write: %s", file_path, strerror(errno));
    }
    if (fdatasync(fd) < 0)
        die("%s: fdatasync: %s", file_path, strerror(errno));
    /* Pull it all into the page cache. */
    for (uint64_t off = 0; off < (uint64_t)o->size_mib * MIB; off += MIB)
        if (pread(fd, buf, MIB, (off_t)off) != (ssize_t)MIB)
            die("%s: read: %s", file_path, strerror(errno));
    free(buf);
    close(fd);
}

static void settle_file(void)
{
    int fd = open(file_path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        (void)fdatasync(fd); /* write back what the last VM dirtied, outside any timing */
        close(fd);
    }
}

/* Host sequential throughput: 1 MiB pread or pwrite, queue depth 1, for ms. */
static double host_seq(const struct options *o, bool write)
{
    int fd = open(file_path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        die("%s: %s", file_path, strerror(errno));
    uint8_t *buf = aligned_alloc(4096, MIB);
    memset(buf, 0, MIB);
    uint64_t size = (uint64_t)o->size_mib * MIB, off = 0, bytes = 0;
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)o->ms * 1000000ull, t;
    do {
        ssize_t n;
        if (write) {
            set_tags(buf, MIB, off);
            n = pwrite(fd, buf, MIB, (off_t)off);
        } else {
            n = pread(fd, buf, MIB, (off_t)off);
        }
        if (n != (ssize_t)MIB)
            die("%s: %s: %s", file_path, write ? "write" : "read",
                n < 0 ? strerror(errno) : "short");
        bytes += MIB;
        off = off + MIB >= size ? 0 : off + MIB;
        t = now_ns();
    } while (t < end);
    free(buf);
    close(fd);
    settle_file();
    return (double)bytes / MIB / ((double)(t - t0) / 1e9);
}

/* ---- Console ---- */

/* ---- One VM run ---- */

/* One contestant's exact command line, run in a directory of its own that
 * holds config.toml (ours and before) and the console socket ttya. */
struct command {
    char mem[16], cpus[16], drive[PATH_MAX + 64];
    const char *argv[ARGV_MAX];
};

static void build_command(struct command *c, enum vmm_kind kind, enum dev_kind dev,
                          const struct options *o)
{
    snprintf(c->mem, sizeof(c->mem), "%u", o->mem_mib);
    snprintf(c->cpus, sizeof(c->cpus), "%u", o->cpus);
    snprintf(c->drive, sizeof(c->drive), "file=%s,if=none,id=d,format=raw,cache=writeback",
             file_path);
    /* mdts=8: 1 MiB per command, as our controller (QEMU's default is 512 KiB). */
    const char *device = dev == VIRTIO_BLK ? "virtio-blk-pci,drive=d,addr=4"
                                           : "nvme,drive=d,serial=bench,addr=4,mdts=8";
    const char *qemu[] = {o->qemu,       "-M",
                          "pc",          "-enable-kvm",
                          "-nodefaults", "-no-user-config",
                          "-display",    "none",
                          "-m",          c->mem,
                          "-smp",        c->cpus,
                          "-bios",       o->guest,
                          "-serial",     "unix:ttya,server=on,wait=on",
                          "-drive",      c->drive,
                          "-device",     device,
                          NULL};
    const char *vmm[] = {kind == OURS ? o->vmm : o->vmm_before, "config.toml", NULL};
    copy_argv(c->argv, ARGV_MAX, kind == QEMU ? qemu : vmm);
}

/* Our config.toml (ours and before alike). */
static void config_text(char *out, size_t cap, enum dev_kind dev, const struct options *o)
{
    snprintf(out, cap,
             "[main]\nname = \"sbench-%d\"\ncpus = %u\nbootrom = \"%s\"\nmemory = %u\n\n"
             "[block_dev.disk]\ntype = \"file\"\npath = \"%s\"\n%s\n"
             "[dev.disk0]\ndriver = \"%s\"\nblock_dev = \"disk\"\npci-path = \"0.4.0\"\n",
             (int)getpid(), o->cpus, o->guest, o->mem_mib, file_path,
             getenv("BENCH_BLOCK_DEV_EXTRA") ? getenv("BENCH_BLOCK_DEV_EXTRA") : "",
             dev == VIRTIO_BLK ? "pci-virtio-block" : "pci-nvme");
}

static pid_t launch(enum vmm_kind kind, enum dev_kind dev, const struct options *o, const char *dir)
{
    struct command c;
    build_command(&c, kind, dev, o);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    if (chdir(dir) < 0)
        _exit(127);
    int log = open("vmm.log", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(log, 1);
    dup2(log, 2);
    execvp(c.argv[0], (char *const *)c.argv);
    _exit(127);
}

static void print_commands(const struct options *o, const bool present[NKINDS])
{
    printf("commands (each run in a fresh directory: console socket ttya):\n");
    for (int d = 0; d < NDEVS; d++) {
        if (!o->dev_on[d])
            continue;
        for (int k = 0; k < NKINDS; k++) {
            if (!present[k])
                continue;
            struct command c;
            char prefix[48];
            build_command(&c, (enum vmm_kind)k, (enum dev_kind)d, o);
            snprintf(prefix, sizeof(prefix), "  %s %-7s ", dev_names[d], vmm_kind_names[k]);
            print_command(prefix, c.argv);
        }
        char config[2 * PATH_MAX + 512];
        config_text(config, sizeof(config), (enum dev_kind)d, o);
        printf("  %s config.toml (%s):\n", dev_names[d],
               present[BEFORE] ? "ours and before" : "ours");
        print_indented("    ", config);
    }
}

static void note(struct cell *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->note, sizeof(c->note), fmt, ap);
    va_end(ap);
}

/* Parses "testguest: bench DEV TEST qd=.. bs=.. ops=.. us=.. ... bad=.. err=..". */
static void record(struct cell *row, const char *line, const char *dev, const char *who, int run)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "bench %s ", dev);
    const char *p = strstr(line, prefix);
    if (!p)
        return;
    p += strlen(prefix);
    for (int t = 0; t < NTESTS; t++) {
        size_t n = strlen(test_names[t]);
        if (strncmp(p, test_names[t], n) != 0 || p[n] != ' ')
            continue;
        struct cell *c = &row[t];
        const char *rest = p + n + 1;
        if (strncmp(rest, "FAIL", 4) == 0) {
            note(c, "%s run %d: %s", who, run, rest);
            return;
        }
        unsigned long long bs = 0, ops = 0, us = 0, bad = 0, err = 0;
        const char *q;
        if ((q = strstr(rest, "bs=")))
            bs = strtoull(q + 3, NULL, 10);
        if ((q = strstr(rest, "ops=")))
            ops = strtoull(q + 4, NULL, 10);
        if ((q = strstr(rest, " us=")))
            us = strtoull(q + 4, NULL, 10);
        if ((q = strstr(rest, "bad=")))
            bad = strtoull(q + 4, NULL, 10);
        if ((q = strstr(rest, "err=")))
            err = strtoull(q + 4, NULL, 10);
        if (!us || !ops) {
            note(c, "%s run %d: nothing completed (%s)", who, run, rest);
            return;
        }
        if (bad || err)
            note(c, "%s run %d: %llu bad blocks, %llu errors", who, run, bad, err);
        double v = test_seq[t] ? (double)ops * (double)bs / MIB / ((double)us / 1e6)
                               : (double)ops / ((double)us / 1e6);
        if (c->n < MAX_RUNS)
            c->v[c->n++] = v;
        return;
    }
}

static void run_vm(enum vmm_kind kind, enum dev_kind dev, const struct options *o, int run)
{
    const char *who = vmm_kind_names[kind];
    struct cell *row = cells[dev][kind];
    char dir[] = "/tmp/pst-sbench-XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp: %s", strerror(errno));
    char path[PATH_MAX + 64];
    if (kind != QEMU) {
        static char config[2 * PATH_MAX + 512];
        snprintf(path, sizeof(path), "%s/config.toml", dir);
        FILE *cfg = fopen(path, "w");
        if (!cfg)
            die("%s: %s", path, strerror(errno));
        config_text(config, sizeof(config), dev, o);
        fputs(config, cfg);
        fclose(cfg);
    }
    uint64_t t0 = now_ns();
    pid_t pid = launch(kind, dev, o, dir);
    uint64_t deadline = t0 + 60ull * 1000000000ull;
    snprintf(path, sizeof(path), "%s/ttya", dir);
    struct console con = {.fd = connect_console(path, pid, deadline, 1000)};
    const char *failed = NULL;
    if (con.fd < 0) {
        failed = "no console";
    } else {
        char line[128];
        if (!console_expect(&con, "testguest: ready", deadline))
            failed = "no 'ready'";
        snprintf(line, sizeof(line), "cpus=%u mem=%u\r", o->cpus, o->mem_mib);
        console_say(&con, line);
        if (!failed && !console_expect(&con, "testguest: echo?", deadline))
            failed = "no 'echo?'";
        console_say(&con, "storage\r");
        if (!failed && !console_expect(&con, "testguest: irq?", deadline))
            failed = "no 'irq?'";
        console_say(&con, "Z");
        if (!failed && !console_expect(&con, "testguest: PASS", deadline))
            failed = "self-test did not PASS";
    }
    if (!failed) {
        char cmd[512], line[512], done[64], devfail[64];
        static char why[512];
        snprintf(cmd, sizeof(cmd), "bench %s 0:4 ms=%u%s%s\r", dev_names[dev], o->ms,
                 o->extra ? " " : "", o->extra ? o->extra : "");
        console_say(&con, cmd);
        snprintf(done, sizeof(done), "bench %s done", dev_names[dev]);
        snprintf(devfail, sizeof(devfail), "bench %s FAIL", dev_names[dev]);
        /* Four tests of warm-up + ms each, with a generous margin. */
        deadline = now_ns() + (60ull + 4ull * 3ull * (o->ms + 1000) / 1000) * 1000000000ull;
        failed = "bench did not finish";
        while (console_next_line(&con, line, sizeof(line), deadline)) {
            if (strstr(line, "bench ") && strstr(line, " disk "))
                printf("  %s %d: %s %s\n", who, run, dev_names[dev], strstr(line, "disk "));
            if (strstr(line, done)) {
                failed = NULL;
                break;
            }
            if (strstr(line, devfail) || strstr(line, "bench FAIL") ||
                strstr(line, "FAIL exception")) {
                snprintf(why, sizeof(why), "%s",
                         line + (strncmp(line, "testguest: ", 11) == 0 ? 11 : 0));
                failed = why;
                break;
            }
            if (strstr(line, "bench ")) {
                const char *b = strstr(line, "bench ") + 6;
                if (strncmp(b, dev_names[dev], strlen(dev_names[dev])) == 0 &&
                    !strstr(b, " device ") && !strstr(b, " disk "))
                    printf("  %s %d: %s\n", who, run, b);
            }
            record(row, line, dev_names[dev], who, run);
        }
    }
    if (failed) {
        fprintf(stderr, "bench: %s %s run %d did not complete: %s (last line: %s)\n", who,
                dev_names[dev], run, failed, con.last[0] ? con.last : "none");
        for (int t = 0; t < NTESTS; t++)
            if (!row[t].note[0])
                note(&row[t], "%s run %d: %s", who, run, failed);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (con.fd >= 0)
        close(con.fd);
    char rm[PATH_MAX + 16];
    snprintf(rm, sizeof(rm), "rm -rf %s", dir);
    if (system(rm) != 0)
        fprintf(stderr, "bench: could not remove %s\n", dir);
    settle_file();
}

/* ---- Summary ---- */

static bool summarize(struct cell *c, double *med, double *lo, double *hi)
{
    return summarize_values(c->v, c->n, med, lo, hi);
}

static const char *pct(char *out, size_t cap, double fraction)
{
    snprintf(out, cap, "%.0f%%", 100 * fraction);
    return out;
}

static void fmt_cell(char *out, size_t cap, struct cell *c)
{
    double med, lo, hi;
    if (!summarize(c, &med, &lo, &hi))
        snprintf(out, cap, "%s", "-");
    else
        snprintf(out, cap, "%.0f (%.0f..%.0f)", med, lo, hi);
}

int main(int argc, char **argv)
{
    struct options o = {.qemu = "qemu-system-x86_64",
                        .dir = "/tmp",
                        .runs = 3,
                        .ms = 2000,
                        .size_mib = 1024,
                        .cpus = 1,
                        .mem_mib = 512,
                        .dev_on = {true, true}};
    static const struct option opts[] = {
        {"vmm", required_argument, NULL, 'v'},
        {"vmm-before", required_argument, NULL, 'b'},
        {"guest", required_argument, NULL, 'g'},
        {"qemu", required_argument, NULL, 'q'},
        {"runs", required_argument, NULL, 'n'},
        {"ms", required_argument, NULL, 'm'},
        {"size-mib", required_argument, NULL, 's'},
        {"dir", required_argument, NULL, 'd'},
        {"devices", required_argument, NULL, 'D'},
        {"extra", required_argument, NULL, 'x'},
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
        case 'm':
            o.ms = (unsigned)atoi(optarg);
            break;
        case 's':
            o.size_mib = (unsigned)atoi(optarg);
            break;
        case 'd':
            o.dir = optarg;
            break;
        case 'D':
            o.dev_on[VIRTIO_BLK] = strstr(optarg, "virtio-blk") != NULL;
            o.dev_on[NVME] = strstr(optarg, "nvme") != NULL;
            break;
        case 'x':
            o.extra = optarg;
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
    if (!o.vmm || !o.guest || o.runs < 1 || o.runs > MAX_RUNS || o.ms < 100 || o.ms > 60000 ||
        o.size_mib < 64 || (!o.dev_on[0] && !o.dev_on[1])) {
        fprintf(stderr,
                "usage: storage --vmm BIN [--vmm-before BIN] --guest ROM [--qemu BIN] "
                "[--runs N<=%d] "
                "[--ms 100..60000] [--size-mib N>=64] [--dir DIR] "
                "[--devices virtio-blk,nvme] [--extra \"KEY=VALUE ...\"]\n",
                MAX_RUNS);
        return 2;
    }
    if (access(o.vmm, X_OK) != 0 || (o.vmm_before && access(o.vmm_before, X_OK) != 0))
        die("%s: not an executable", access(o.vmm, X_OK) != 0 ? o.vmm : o.vmm_before);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const bool present[NKINDS] = {[OURS] = true, [BEFORE] = o.vmm_before != NULL, [QEMU] = true};

    create_file(&o);
    printf("storage: %u MiB page-cached file in %s; guest: %u vCPU, %u MiB, polling driver at "
           "CPL3; %u ms per test (after 200 ms warm-up), %d runs, %s\n",
           o.size_mib, o.dir, o.cpus, o.mem_mib, o.ms, o.runs,
           present[BEFORE] ? "ours, before and QEMU in rotating order"
                           : "ours and QEMU alternating");
    printf("  random: 4 KiB, queue depth 32; sequential: 1 MiB, queue depth 8%s%s\n",
           o.extra ? "; guest options: " : "", o.extra ? o.extra : "");
    print_commands(&o, present);
    print_load("before");

    double dd[2][MAX_RUNS];
    for (int r = 0; r < o.runs; r++) {
        dd[0][r] = host_seq(&o, false);
        dd[1][r] = host_seq(&o, true);
        for (int d = 0; d < NDEVS; d++) {
            if (!o.dev_on[d])
                continue;
            enum vmm_kind order[NKINDS];
            int count = run_order(r, present, order);
            for (int i = 0; i < count; i++)
                run_vm(order[i], (enum dev_kind)d, &o, r + 1);
        }
        printf("  run %d done\n", r + 1);
    }
    print_load("after");
    struct cell ddc[2] = {{.n = 0}};
    for (int w = 0; w < 2; w++) {
        ddc[w].n = o.runs;
        memcpy(ddc[w].v, dd[w], sizeof(double) * (size_t)o.runs);
    }

    printf("\n%-30s", "median (min..max)");
    for (int k = 0; k < NKINDS; k++)
        if (present[k])
            printf(" %-26s", vmm_kind_names[k]);
    if (present[BEFORE])
        printf(" %-11s", "ours/before");
    printf(" %-9s vs host dd (ours%s, qemu)\n", "ours/qemu", present[BEFORE] ? ", before" : "");
    for (int d = 0; d < NDEVS; d++) {
        if (!o.dev_on[d])
            continue;
        for (int t = 0; t < NTESTS; t++) {
            char label[64], text[64];
            snprintf(label, sizeof(label), "%s %s %s", dev_names[d], test_names[t],
                     test_seq[t] ? "MiB/s" : "IOPS");
            printf("%-30s", label);
            double med[NKINDS], md, lo, hi;
            bool have[NKINDS];
            for (int k = 0; k < NKINDS; k++) {
                have[k] = present[k] && summarize(&cells[d][k][t], &med[k], &lo, &hi);
                if (!present[k])
                    continue;
                fmt_cell(text, sizeof(text), &cells[d][k][t]);
                printf(" %-26s", text);
            }
            for (int k = BEFORE; k < NKINDS; k++) {
                if (!present[k])
                    continue;
                snprintf(text, sizeof(text), "-");
                if (have[OURS] && have[k] && med[k] > 0)
                    snprintf(text, sizeof(text), "%.2f", med[OURS] / med[k]);
                printf(" %-*s", k == BEFORE ? 11 : 9, text);
            }
            if (test_seq[t] && summarize(&ddc[t == 3], &md, &lo, &hi) && md > 0) {
                printf(" ");
                const char *sep = "";
                for (int k = 0; k < NKINDS; k++) {
                    if (!present[k])
                        continue;
                    printf("%s%s", sep, have[k] ? pct(text, sizeof(text), med[k] / md) : "-");
                    sep = ", ";
                }
            }
            printf("\n");
        }
    }
    char a[64], b[64];
    fmt_cell(a, sizeof(a), &ddc[0]);
    fmt_cell(b, sizeof(b), &ddc[1]);
    printf("%-30s %s\n", "host dd read MiB/s", a);
    printf("%-30s %s\n", "host dd write MiB/s", b);
    printf("targets: ours >= qemu on every line; sequential >= 70%% of host dd\n");
    bool notes = false;
    for (int d = 0; d < NDEVS; d++)
        for (int k = 0; k < NKINDS; k++)
            for (int t = 0; t < NTESTS; t++)
                if (cells[d][k][t].note[0]) {
                    if (!notes)
                        printf("problems:\n");
                    notes = true;
                    printf("  %s %s: %s\n", dev_names[d], test_names[t], cells[d][k][t].note);
                }
    unlink(file_path);
    return 0;
}
