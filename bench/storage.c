/* Storage benchmark: our virtio-blk and NVMe against QEMU's virtio-blk-pci
 * and nvme at QEMU's best practice and at its defaults, a pair through
 * O_DIRECT (ours with direct = true, QEMU cache=none,aio=native; the file
 * must be on a file system with O_DIRECT), and optionally our VMM built
 * from an earlier revision (--vmm-before), on the same test guest
 * and the same page-cached file, in one invocation; and fio on the host on
 * a file of the same size, at the same queue depth, as the limit.
 *
 * The guest's `bench` command (guest/storage_bench.c) drives the device
 * with one polling driver at CPL3 on one vCPU: 4 KiB random reads and
 * writes at queue depth 32, 1 MiB sequential reads and writes at queue
 * depth 8, each for --ms after a 200 ms warm-up.
 *
 * What is measured, for each test of each VM run:
 * - throughput on the host's clock: the test's requests (warm-up and drain
 *   included) over the CLOCK_MONOTONIC time between the guest's "start"
 *   line and its result line on the console; the guest's own figure over
 *   its TSC window is kept as a cross-check (their ratio is printed);
 * - host CPU: utime + stime of every thread of the VMM process (vCPU
 *   threads counted apart: the polling guest keeps its vCPU busy in every
 *   VMM alike) over the same interval, per I/O and per GiB;
 * - exits: the guest counts its doorbell/notify MMIO writes (each one an
 *   exit to the VMM), per request and per second. KVM's own counters are
 *   not readable on this host: its kvm_exit tracepoint does not fire under
 *   the nested, paravirtual KVM, and debugfs kvm/PID-FD/exits refuses reads;
 * - data: every block the guest reads is checked whole; every run writes
 *   content unique to it (a seed per run); after the VM ends the whole file
 *   is read and checked, and the set of blocks holding this run's writes
 *   must equal the guest's record of what it wrote (a hash of its table).
 *   A run with any bad block, error or mismatch is reported and left out.
 * VM runs are in a random order within each round (seeded, printed), every
 * contestant once per device per round; figures are medians with the
 * interquartile range. Every VMM runs on the same CPUs (--cpus-allowed).
 * One JSON line per test per run goes to build/bench/storage.jsonl
 * (BENCH_OUT), the fio lines to storage-fio.jsonl.
 *
 * --nbd adds a pair on an NBD disk: nbdkit's file plugin serves the same
 * file on a UNIX socket (a new nbdkit per run, on the same CPUs), ours as
 * type = "nbd" against QEMU's NBD client (the nbd block driver, with an
 * iothread for virtio-blk). nbdkit's CPU time over each test is reported
 * on its own (server CPU-us per I/O), next to the VMM's.
 *
 * --crucible DS adds ours on a crucible disk (type = "crucible"): three
 * test downstairs (DS: build/crucible-ds) on this host, each serving a
 * fresh region filled like the file, started for each run in the run's
 * directory; QEMU has no crucible client. The bench then runs in a network
 * namespace of its own (loopback only). After the run the VMM gets
 * SIGTERM (its last flush), the three region copies must be identical,
 * and their blocks are checked as the file's are. The downstairs' CPU
 * time is the server column.
 *
 *   storage --vmm BIN [--vmm-before BIN] --guest ROM [--qemu BIN] [--runs N] [--ms MS]
 *           [--size-mib N] [--dir DIR] [--devices virtio-blk,nvme] [--seed N]
 *           [--cpus-allowed LIST] [--no-qemu-default] [--no-direct] [--no-fio] [--perf DIR]
 *           [--nbd] [--only-nbd] [--crucible DS] [--only-network]
 *           [--extra "KEY=VALUE ..."] (appended to the guest command)
 * BENCH_BLOCK_DEV_EXTRA="workers = 2" adds lines to our [block_dev.disk]. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#define MAX_RUNS 41
#define NTESTS 4
#define NDEVS 2
#define MIB (1024ull * 1024ull)
#define GIB (1024.0 * 1024.0 * 1024.0)

enum dev_kind { VIRTIO_BLK, NVME };
static const char *const dev_names[NDEVS] = {"virtio-blk", "nvme"};

struct test_info {
    const char *name, *fio_rw;
    bool seq, write;
    unsigned bs, qd;
};
static const struct test_info tests[NTESTS] = {
    {"randread4k", "randread", false, false, 4096, 32},
    {"randwrite4k", "randwrite", false, true, 4096, 32},
    {"seqread1m", "read", true, false, 1u << 20, 8},
    {"seqwrite1m", "write", true, true, 1u << 20, 8},
};

/* The contestants. */
/* The O_DIRECT pair: ours with `direct = true` against QEMU's cache=none,
 * aio=native (otherwise as qemu-best). */
enum contestant {
    C_OURS,
    C_BEFORE,
    C_QEMU_BEST,
    C_QEMU_DEFAULT,
    C_OURS_DIRECT,
    C_QEMU_DIRECT,
    C_OURS_NBD,
    C_QEMU_NBD,
    C_OURS_CRUCIBLE,
    NCONT
};
static const char *const cont_names[NCONT] = {"ours",         "before",      "qemu-best",
                                              "qemu-default", "ours-direct", "qemu-direct",
                                              "ours-nbd",     "qemu-nbd",    "ours-crucible"};
static bool is_ours(enum contestant who)
{
    return who == C_OURS || who == C_BEFORE || who == C_OURS_DIRECT || who == C_OURS_NBD ||
           who == C_OURS_CRUCIBLE;
}
static bool is_nbd(enum contestant who)
{
    return who == C_OURS_NBD || who == C_QEMU_NBD;
}
/* The counterpart of a QEMU contestant in the ratio columns. */
static enum contestant ours_for(enum contestant qemu)
{
    return qemu == C_QEMU_DIRECT ? C_OURS_DIRECT : qemu == C_QEMU_NBD ? C_OURS_NBD : C_OURS;
}

struct options {
    const char *vmm, *vmm_before, *guest, *qemu, *dir, *extra, *cpus_allowed, *perf_dir;
    const char *crucible_ds;
    int runs;
    unsigned ms, size_mib, cpus, mem_mib;
    uint64_t seed;
    bool dev_on[NDEVS], present[NCONT], fio;
};

/* Per device, contestant and test. */
struct cell {
    struct series rate;      /* host-timed IOPS or MiB/s */
    struct series guest;     /* the guest's own figure */
    struct series clock;     /* guest span / host interval */
    struct series cpu_us;    /* host CPU-us per I/O, all threads */
    struct series io_us;     /* the same without the vCPU threads */
    struct series cpu_gib;   /* host CPU-s per GiB */
    struct series kicks;     /* MMIO doorbell writes per request */
    struct series kicks_s;   /* the same per second of host time */
    struct series server_us; /* nbdkit's or the downstairs' CPU-us per I/O */
};
static struct cell cells[NDEVS][NCONT][NTESTS];
static int valid_runs[NDEVS][NCONT], bad_runs[NDEVS][NCONT];

struct fio_cell {
    struct series rate, cpu_us;
};
static struct fio_cell fio_cells[2][NTESTS]; /* page cache, O_DIRECT */

/* fio's buffered and O_DIRECT jobs each have their own copy of the file:
 * O_DIRECT writes drop the cached pages they cover, which left the
 * buffered jobs of the next round reading from the disk. */
static char file_path[PATH_MAX], fio_path[PATH_MAX], fio_direct_path[PATH_MAX];
static uint64_t fill_seed; /* the file's content, and each crucible region's */

/* ---- Block content (guest/storage_bench.c has the same) ---- */

#define SB_STEP 0x94D049BB133111EBULL
static uint64_t sb_base(uint64_t seed, uint64_t block)
{
    return (seed ^ (block * 0x9E3779B97F4A7C15ULL)) * 0xBF58476D1CE4E5B9ULL;
}

static void fill_block(uint64_t *w, uint64_t seed, uint64_t block)
{
    w[0] = seed;
    w[1] = block;
    uint64_t v = sb_base(seed, block) + 2 * SB_STEP;
    for (unsigned i = 2; i < 512; i++, v += SB_STEP)
        w[i] = v;
}

static bool block_ok(const uint64_t *w, uint64_t block)
{
    if (w[1] != block)
        return false;
    uint64_t v = sb_base(w[0], block) + 2 * SB_STEP;
    for (unsigned i = 2; i < 512; i++, v += SB_STEP)
        if (w[i] != v)
            return false;
    return true;
}

/* ---- The disk files ---- */

static void fill_file(const char *path, uint64_t size, uint64_t seed)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        die("%s: %s", path, strerror(errno));
    uint64_t *buf = aligned_alloc(4096, MIB);
    for (uint64_t off = 0; off < size; off += MIB) {
        for (unsigned b = 0; b < MIB / 4096; b++)
            fill_block(buf + b * 512, seed, off / 4096 + b);
        if (pwrite(fd, buf, MIB, (off_t)off) != (ssize_t)MIB)
            die("%s: write: %s", path, strerror(errno));
    }
    if (fdatasync(fd) < 0)
        die("%s: fdatasync: %s", path, strerror(errno));
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

/* Reads the whole file after a run: every block must be whole, and the
 * blocks holding this run's writes (seed + 1: random, seed + 3: sequential)
 * must be the ones the guest recorded (the same FNV-1a over a byte per
 * block). Returns false and says why otherwise. */
static bool check_file(const char *path, uint64_t seed, uint64_t want_hash, uint64_t want_written,
                       char *why, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, cap, "%.400s: %s", path, strerror(errno));
        return false;
    }
    uint64_t *buf = aligned_alloc(4096, MIB);
    uint64_t hash = 0xcbf29ce484222325ULL, written = 0, broken = 0, first_broken = 0, block = 0;
    ssize_t n;
    uint64_t off = 0;
    while ((n = pread(fd, buf, MIB, (off_t)off)) > 0) {
        for (ssize_t b = 0; b + 4096 <= n; b += 4096, block++) {
            const uint64_t *w = buf + b / 8;
            if (!block_ok(w, block) && broken++ == 0)
                first_broken = block;
            uint8_t mark = w[0] == seed + 1 ? 1 : w[0] == seed + 3 ? 3 : 0;
            written += mark != 0;
            hash = (hash ^ mark) * 0x100000001b3ULL;
        }
        off += (uint64_t)n;
    }
    free(buf);
    close(fd);
    if (broken) {
        snprintf(why, cap, "file check: %llu bad blocks (first: block %llu)",
                 (unsigned long long)broken, (unsigned long long)first_broken);
        return false;
    }
    if (hash != want_hash || written != want_written) {
        snprintf(why, cap,
                 "file check: %llu blocks hold this run's writes, the guest recorded %llu "
                 "(table hash %016llx, the guest's %016llx)",
                 (unsigned long long)written, (unsigned long long)want_written,
                 (unsigned long long)hash, (unsigned long long)want_hash);
        return false;
    }
    return true;
}

/* ---- Commands ---- */

/* The NBD server's socket, in the run's directory. */
#define NBD_SOCKET "nbd.sock"

struct command {
    char mem[16], cpus[16], drive[PATH_MAX + 96], device[128];
    const char *argv[ARGV_MAX + 16];
};

static void build_command(struct command *c, enum contestant who, enum dev_kind dev,
                          const struct options *o)
{
    snprintf(c->mem, sizeof(c->mem), "%u", o->mem_mib);
    snprintf(c->cpus, sizeof(c->cpus), "%u", o->cpus);
    bool best = who == C_QEMU_BEST || who == C_QEMU_DIRECT || who == C_QEMU_NBD;
    /* Our virtio-blk offers min(vCPUs, 4) queues. */
    unsigned queues = o->cpus < 4 ? o->cpus : 4;
    if (who == C_QEMU_NBD) /* relative: QEMU runs in the run's directory */
        snprintf(c->drive, sizeof(c->drive),
                 "file=nbd+unix:///?socket=" NBD_SOCKET ",if=none,id=d,format=raw,cache=writeback");
    else
        snprintf(c->drive, sizeof(c->drive), "file=%s,if=none,id=d,format=raw,%s", file_path,
                 who == C_QEMU_DIRECT ? "cache=none,aio=native"
                 : best               ? "cache=writeback,aio=io_uring"
                                      : "cache=writeback");
    if (dev == VIRTIO_BLK && best)
        snprintf(c->device, sizeof(c->device),
                 "virtio-blk-pci,drive=d,addr=4,iothread=io0,num-queues=%u", queues);
    else if (dev == VIRTIO_BLK)
        snprintf(c->device, sizeof(c->device), "virtio-blk-pci,drive=d,addr=4");
    else /* mdts=8: 1 MiB per command, as our controller (QEMU's default is 512 KiB);
            QEMU 7.2's nvme has no iothread option */
        snprintf(c->device, sizeof(c->device), "nvme,drive=d,serial=bench,addr=4,mdts=8");
    const char *qemu[] = {
        /* debug-threads names the vCPU threads "CPU N/KVM", so that their CPU
           time can be told from the I/O threads' */
        o->qemu, "-name", "sbench,debug-threads=on", "-M", "pc", "-enable-kvm", "-nodefaults",
        "-no-user-config", "-display", "none", "-m", c->mem, "-smp", c->cpus, "-bios", o->guest,
        "-serial", "unix:ttya,server=on,wait=on", "-drive", c->drive, "-device", c->device,
        best ? "-cpu" : NULL,
        /* plain host aborts QEMU 7.2 on this kind of host */
        "host,-arch-capabilities", dev == VIRTIO_BLK ? "-object" : NULL, "iothread,id=io0", NULL};
    /* QEMU's defaults: its argv ends before -cpu. */
    const char *vmm[] = {who == C_BEFORE ? o->vmm_before : o->vmm, "config.toml", NULL};
    copy_argv(c->argv, ARGV_MAX, is_ours(who) ? vmm : qemu);
}

/* The crucible disk: 16 MiB extents of 4 KiB blocks on three downstairs
 * at these ports (in the bench's own network namespace). */
#define CRUCIBLE_EXTENT_MIB 16
#define CRUCIBLE_EXTENT_BLOCKS (CRUCIBLE_EXTENT_MIB * 256)
#define CRUCIBLE_PORT 3810

/* Our config.toml (ours and before alike). Ours passes the host's CPUID
 * through by default, as QEMU's -cpu host does. */
static void config_text(char *out, size_t cap, enum dev_kind dev, enum contestant who,
                        const struct options *o)
{
    char disk[PATH_MAX + 64];
    if (who == C_OURS_NBD)
        snprintf(disk, sizeof(disk), "type = \"nbd\"\nuri = \"nbd+unix:///?socket=%s\"\n",
                 NBD_SOCKET);
    else if (who == C_OURS_CRUCIBLE)
        snprintf(disk, sizeof(disk),
                 "type = \"crucible\"\nblock_size = 4096\nblocks_per_extent = %u\n"
                 "extent_count = %u\ntargets = [\"127.0.0.1:%d\", \"127.0.0.1:%d\", "
                 "\"127.0.0.1:%d\"]\ngeneration = \"auto\"\n",
                 CRUCIBLE_EXTENT_BLOCKS, o->size_mib / CRUCIBLE_EXTENT_MIB, CRUCIBLE_PORT,
                 CRUCIBLE_PORT + 1, CRUCIBLE_PORT + 2);
    else
        snprintf(disk, sizeof(disk), "type = \"file\"\npath = \"%s\"\n%s", file_path,
                 who == C_OURS_DIRECT ? "direct = true\n" : "");
    snprintf(out, cap,
             "[main]\nname = \"sbench-%d\"\ncpus = %u\nbootrom = \"%s\"\nmemory = %u\n\n"
             "[block_dev.disk]\n%s%s\n"
             "[dev.disk0]\ndriver = \"%s\"\nblock_dev = \"disk\"\npci-path = \"0.4.0\"\n",
             (int)getpid(), o->cpus, o->guest, o->mem_mib, disk,
             getenv("BENCH_BLOCK_DEV_EXTRA") ? getenv("BENCH_BLOCK_DEV_EXTRA") : "",
             dev == VIRTIO_BLK ? "pci-virtio-block" : "pci-nvme");
}

/* nbdkit serving the bench file on NBD_SOCKET in the current directory. */
static const char *const *nbdkit_argv(void)
{
    static char file_arg[PATH_MAX + 8];
    static const char *argv[] = {"nbdkit", "-f", "-U", NBD_SOCKET, "file", file_arg, NULL};
    snprintf(file_arg, sizeof(file_arg), "file=%s", file_path);
    return argv;
}

/* --invalidate=0: fio drops the file's page cache before each job by
 * default, so its buffered figures were reads from the disk (62k IOPS, 553
 * MiB/s) where the VMMs read the page cache their file sits in. */
static void fio_command(char *out, size_t cap, const struct test_info *t, bool direct,
                        const struct options *o)
{
    snprintf(out, cap,
             "fio --name=host --filename=%s --ioengine=io_uring --direct=%d --invalidate=0 "
             "--rw=%s --bs=%u "
             "--iodepth=%u --iodepth_batch_submit=%u --numjobs=1 --size=%um --time_based "
             "--runtime=%ums --ramp_time=200ms --randrepeat=0 --cpus_allowed=%s "
             "--output-format=json",
             direct ? fio_direct_path : fio_path, direct, t->fio_rw, t->bs, t->qd, t->qd / 4,
             o->size_mib, o->ms, o->cpus_allowed);
}

static void set_affinity(const char *list)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    const char *p = list;
    while (*p) {
        char *end;
        long lo = strtol(p, &end, 10), hi = lo;
        if (end == p)
            break;
        if (*end == '-')
            hi = strtol(end + 1, &end, 10);
        for (long c = lo; c <= hi && c < CPU_SETSIZE; c++)
            CPU_SET((int)c, &set);
        p = *end == ',' ? end + 1 : end;
        if (*end != ',')
            break;
    }
    if (sched_setaffinity(0, sizeof(set), &set) < 0)
        fprintf(stderr, "bench: cpus %s: %s\n", list, strerror(errno));
}

/* Runs argv in dir on the benchmark's CPUs, output to dir/LOG. */
static pid_t spawn_in(const char *dir, const char *log_name, const char *const *argv,
                      const struct options *o)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    if (chdir(dir) < 0)
        _exit(127);
    set_affinity(o->cpus_allowed);
    int log = open(log_name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(log, 1);
    dup2(log, 2);
    execvp(argv[0], (char *const *)argv);
    _exit(127);
}

static pid_t launch(enum contestant who, enum dev_kind dev, const struct options *o,
                    const char *dir)
{
    struct command c;
    build_command(&c, who, dev, o);
    return spawn_in(dir, "vmm.log", c.argv, o);
}

/* The argv of downstairs i serving dir/dsI (a fresh region of the
 * file's content). */
static const char *const *crucible_argv(const struct options *o, int i)
{
    static char port[16], count[16], extent[16], seed[32], dir[16], ready[16];
    static const char *argv[24];
    snprintf(port, sizeof(port), "%d", CRUCIBLE_PORT + i);
    snprintf(count, sizeof(count), "%u", o->size_mib / CRUCIBLE_EXTENT_MIB);
    snprintf(extent, sizeof(extent), "%u", CRUCIBLE_EXTENT_BLOCKS);
    snprintf(seed, sizeof(seed), "%llu", (unsigned long long)fill_seed);
    snprintf(dir, sizeof(dir), "ds%d", i);
    snprintf(ready, sizeof(ready), "ds%d.ready", i);
    const char *v[] = {o->crucible_ds, "--dir",          dir,    "--port",
                       port,           "--block-size",   "4096", "--extent-size",
                       extent,         "--extent-count", count,  "--bench-fill",
                       seed,           "--ready-file",   ready,  NULL};
    memcpy(argv, v, sizeof(v));
    return argv;
}

static void print_commands(const struct options *o)
{
    printf("commands (each VM in a fresh directory holding its console socket ttya; every\n"
           "process pinned to CPUs %s):\n",
           o->cpus_allowed);
    for (int d = 0; d < NDEVS; d++) {
        if (!o->dev_on[d])
            continue;
        for (int k = 0; k < NCONT; k++) {
            if (!o->present[k])
                continue;
            struct command c;
            char prefix[48];
            build_command(&c, (enum contestant)k, (enum dev_kind)d, o);
            snprintf(prefix, sizeof(prefix), "  %s %-12s ", dev_names[d], cont_names[k]);
            print_command(prefix, c.argv);
        }
        char config[2 * PATH_MAX + 512];
        config_text(config, sizeof(config), (enum dev_kind)d, C_OURS, o);
        printf("  %s config.toml (ours%s):\n", dev_names[d],
               o->present[C_BEFORE] ? ", before" : "");
        print_indented("    ", config);
        if (o->present[C_OURS_DIRECT])
            printf("  %s config.toml of ours-direct: the same with direct = true\n", dev_names[d]);
        if (o->present[C_OURS_NBD]) {
            config_text(config, sizeof(config), (enum dev_kind)d, C_OURS_NBD, o);
            printf("  %s config.toml of ours-nbd:\n", dev_names[d]);
            print_indented("    ", config);
        }
    }
    if (o->present[C_OURS_CRUCIBLE]) {
        char config[2 * PATH_MAX + 512];
        config_text(config, sizeof(config), VIRTIO_BLK, C_OURS_CRUCIBLE, o);
        printf("  config.toml of ours-crucible (pci-nvme for NVMe):\n");
        print_indented("    ", config);
        for (int i = 0; i < 3; i++)
            print_command("  a downstairs (three per run, in the run's directory): ",
                          crucible_argv(o, i));
    }
    if (o->present[C_OURS_NBD] || o->present[C_QEMU_NBD]) {
        const char *const *argv = nbdkit_argv();
        print_command("  NBD server (ours-nbd, qemu-nbd; a new one per run, in the run's "
                      "directory): ",
                      argv);
    }
    if (o->fio) {
        printf("  host limit, per test (its own file of the same size and content):\n");
        for (int direct = 0; direct <= (int)o->present[C_OURS_DIRECT]; direct++)
            for (int t = 0; t < NTESTS; t++) {
                char cmd[PATH_MAX + 512];
                fio_command(cmd, sizeof(cmd), &tests[t], direct, o);
                printf("    %s\n", cmd);
            }
    }
}

/* Starts nbdkit in dir, pinned like the VMMs, and waits for its socket. */
static pid_t start_nbdkit(const char *dir, const struct options *o)
{
    pid_t pid = spawn_in(dir, "nbdkit.log", nbdkit_argv(), o);
    if (pid < 0)
        die("fork: %s", strerror(errno));
    char sock[PATH_MAX + 16];
    snprintf(sock, sizeof(sock), "%s/" NBD_SOCKET, dir);
    uint64_t deadline = now_ns() + 10ull * 1000000000ull;
    struct stat st;
    while (stat(sock, &st) != 0) {
        if (now_ns() > deadline || waitpid(pid, NULL, WNOHANG) == pid)
            die("nbdkit did not start (see %s/nbdkit.log)", dir);
        usleep(10000);
    }
    return pid;
}

/* Starts the three downstairs in dir and waits until they listen. */
static void start_downstairs(const char *dir, const struct options *o, pid_t pids[3])
{
    for (int i = 0; i < 3; i++) {
        char log[16];
        snprintf(log, sizeof(log), "ds%d.log", i);
        if ((pids[i] = spawn_in(dir, log, crucible_argv(o, i), o)) < 0)
            die("fork: %s", strerror(errno));
    }
    for (int i = 0; i < 3; i++) {
        char ready[PATH_MAX + 16];
        snprintf(ready, sizeof(ready), "%s/ds%d.ready", dir, i);
        uint64_t deadline = now_ns() + 120ull * 1000000000ull;
        struct stat st;
        while (stat(ready, &st) != 0) {
            if (now_ns() > deadline || waitpid(pids[i], NULL, WNOHANG) == pids[i])
                die("crucible downstairs %d did not start (see %s/ds%d.log)", i, dir, i);
            usleep(10000);
        }
    }
}

/* After a crucible run: the three copies' region files must be identical;
 * downstairs 0's extents, in order, become the image checked like the
 * file. Returns false with why filled. */
static bool crucible_image(const char *dir, const struct options *o, char *image, size_t image_cap,
                           char *why, size_t cap)
{
    snprintf(image, image_cap, "%s/crucible.img", dir);
    int out = open(image, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        snprintf(why, cap, "%.400s: %s", image, strerror(errno));
        return false;
    }
    uint8_t *a = malloc(MIB), *b = malloc(MIB);
    bool ok = true;
    for (unsigned e = 0; ok && e < o->size_mib / CRUCIBLE_EXTENT_MIB; e++) {
        int fd[3];
        for (int i = 0; i < 3; i++) {
            char path[PATH_MAX + 64];
            snprintf(path, sizeof(path), "%s/ds%d/extent-%04u", dir, i, e);
            fd[i] = open(path, O_RDONLY | O_CLOEXEC);
        }
        for (uint64_t off = 0; ok && off < (uint64_t)CRUCIBLE_EXTENT_MIB * MIB; off += MIB) {
            if (fd[0] < 0 || pread(fd[0], a, MIB, (off_t)off) != (ssize_t)MIB ||
                pwrite(out, a, MIB, (off_t)((uint64_t)e * CRUCIBLE_EXTENT_MIB * MIB + off)) !=
                    (ssize_t)MIB) {
                snprintf(why, cap, "extent %u of downstairs 0 unreadable", e);
                ok = false;
            }
            for (int i = 1; ok && i < 3; i++)
                if (fd[i] < 0 || pread(fd[i], b, MIB, (off_t)off) != (ssize_t)MIB ||
                    memcmp(a, b, MIB) != 0) {
                    snprintf(why, cap, "extent %u: downstairs %d differs from downstairs 0", e, i);
                    ok = false;
                }
        }
        for (int i = 0; i < 3; i++)
            if (fd[i] >= 0)
                close(fd[i]);
    }
    free(a);
    free(b);
    close(out);
    return ok;
}

/* ---- One VM run ---- */

/* --perf DIR: the first round's tests are profiled with perf record -g
 * (every thread of the VMM) into DIR/VMM-DEVICE-TEST.data. Profiling costs
 * CPU, so take profiles in an invocation of their own (--runs 1), not in
 * one whose figures are published. */
static pid_t perf_start(const char *dir, pid_t vmm, const char *name, enum dev_kind dev, int t)
{
    char out[PATH_MAX], target[16];
    snprintf(out, sizeof(out), "%s/%s-%s-%s.data", dir, name, dev_names[dev], tests[t].name);
    snprintf(target, sizeof(target), "%d", (int)vmm);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execlp("perf", "perf", "record", "-g", "-q", "-F", "999", "-o", out, "-p", target,
               (char *)NULL);
        _exit(127);
    }
    return pid < 0 ? 0 : pid;
}

/* Stops the profiler without waiting for it to write its data: the next
 * test has already begun in the guest, and its start line must be read on
 * time (a blocking wait here made every later test's host interval short).
 * The stopped profilers are reaped when the VM's run ends. */
static void perf_stop(pid_t *profiler, pid_t *stopped, unsigned *nstopped)
{
    if (*profiler > 0) {
        kill(*profiler, SIGINT);
        stopped[(*nstopped)++] = *profiler;
    }
    *profiler = 0;
}

/* What one test of one run gave. */
struct test_run {
    bool have, started;
    uint64_t t_start, t_end;
    struct proc_cpu cpu0, cpu1;
    double server0_s, server1_s; /* the servers' CPU time (NBD and crucible runs) */
    unsigned long long ops, us, bad, err, kicks, all_ops, span_us;
};

static unsigned long long field(const char *line, const char *key)
{
    const char *q = strstr(line, key);
    return q ? strtoull(q + strlen(key), NULL, 10) : 0;
}

static const char *after_dev(const char *line, enum dev_kind dev)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "bench %s ", dev_names[dev]);
    const char *p = strstr(line, prefix);
    return p ? p + strlen(prefix) : NULL;
}

static void record_json(const struct options *o, enum contestant who, enum dev_kind dev, int round,
                        uint64_t seed, int t, const struct test_run *r, bool valid, const char *why)
{
    double wall_s = (double)(r->t_end - r->t_start) / 1e9;
    raw_result("storage",
               "{\"commit\":\"%s\",\"time\":%lld,\"vmm\":\"%s\",\"device\":\"%s\",\"test\":\"%s\","
               "\"round\":%d,\"seed\":%llu,\"cpus\":%u,\"ms\":%u,\"size_mib\":%u,\"valid\":%s,"
               "\"problem\":\"%s\",\"ops\":%llu,\"guest_us\":%llu,\"all_ops\":%llu,"
               "\"span_us\":%llu,\"host_s\":%.6f,\"cpu_s\":%.3f,\"vcpu_s\":%.3f,"
               "\"kicks\":%llu,\"bad\":%llu,\"err\":%llu,\"server_cpu_s\":%.3f}",
               git_commit(), (long long)time(NULL), cont_names[who], dev_names[dev], tests[t].name,
               round, (unsigned long long)seed, o->cpus, o->ms, o->size_mib,
               valid ? "true" : "false", why ? why : "", r->ops, r->us, r->all_ops, r->span_us,
               wall_s, r->cpu1.total_s - r->cpu0.total_s, r->cpu1.vcpu_s - r->cpu0.vcpu_s, r->kicks,
               r->bad, r->err, r->server1_s - r->server0_s);
}

static double servers_cpu_s(const pid_t *pids, unsigned n)
{
    double total = 0;
    for (unsigned i = 0; i < n; i++) {
        struct proc_cpu c;
        if (proc_cpu_read(pids[i], &c))
            total += c.total_s;
    }
    return total;
}

static void run_vm(enum contestant who, enum dev_kind dev, const struct options *o, int round,
                   uint64_t seed)
{
    const char *name = cont_names[who];
    struct test_run runs[NTESTS];
    memset(runs, 0, sizeof(runs));
    char dir[] = "/tmp/pst-sbench-XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp: %s", strerror(errno));
    char path[PATH_MAX + 64];
    if (is_ours(who)) {
        static char config[2 * PATH_MAX + 512];
        snprintf(path, sizeof(path), "%s/config.toml", dir);
        FILE *cfg = fopen(path, "w");
        if (!cfg)
            die("%s: %s", path, strerror(errno));
        config_text(config, sizeof(config), dev, who, o);
        fputs(config, cfg);
        fclose(cfg);
    }
    /* Servers whose CPU time is the server column: nbdkit, or the three
     * downstairs. */
    pid_t servers[3] = {0, 0, 0};
    unsigned nservers = 0;
    if (is_nbd(who)) {
        servers[0] = start_nbdkit(dir, o);
        nservers = 1;
    } else if (who == C_OURS_CRUCIBLE) {
        start_downstairs(dir, o, servers);
        nservers = 3;
    }
    pid_t pid = launch(who, dev, o, dir);
    uint64_t deadline = now_ns() + 60ull * 1000000000ull;
    snprintf(path, sizeof(path), "%s/ttya", dir);
    struct console con = {.fd = connect_console(path, pid, deadline, 1000)};
    static char why[512];
    const char *failed = NULL;
    unsigned long long v_seed = 0, v_written = 0, v_hash = 0;
    bool verified = false;
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
    pid_t profiler = 0, stopped_profilers[NTESTS + 1];
    unsigned nstopped = 0;
    if (!failed) {
        char cmd[512], line[512];
        snprintf(cmd, sizeof(cmd), "bench %s 0:4 ms=%u seed=%llu%s%s\r", dev_names[dev], o->ms,
                 (unsigned long long)seed, o->extra ? " " : "", o->extra ? o->extra : "");
        console_say(&con, cmd);
        deadline = now_ns() + (60ull + 4ull * 3ull * (o->ms + 1000) / 1000) * 1000000000ull;
        failed = "bench did not finish";
        bool ended = false;
        while (!ended && console_next_line(&con, line, sizeof(line), deadline)) {
            uint64_t now = now_ns();
            const char *rest = after_dev(line, dev);
            if (!rest) {
                if (strstr(line, "bench FAIL") || strstr(line, "FAIL exception")) {
                    snprintf(why, sizeof(why), "%s", line);
                    failed = why;
                    break;
                }
                continue;
            }
            if (strncmp(rest, "done", 4) == 0) {
                failed = NULL;
                break;
            }
            if (strncmp(rest, "verify ", 7) == 0) {
                v_seed = field(rest, "seed=");
                v_written = field(rest, "written=");
                const char *h = strstr(rest, "table=");
                v_hash = h ? strtoull(h + 6, NULL, 16) : 0;
                verified = true;
                continue;
            }
            if (strncmp(rest, "disk ", 5) == 0 || strncmp(rest, "device ", 7) == 0) {
                if (round == 1)
                    printf("  %s %s: %s\n", name, dev_names[dev], rest);
                continue;
            }
            for (int t = 0; t < NTESTS; t++) {
                size_t n = strlen(tests[t].name);
                if (strncmp(rest, tests[t].name, n) != 0 || rest[n] != ' ')
                    continue;
                struct test_run *r = &runs[t];
                const char *what = rest + n + 1;
                if (strncmp(what, "start", 5) == 0) {
                    r->started = true;
                    if (o->perf_dir && round == 1 && !profiler && nstopped < NTESTS)
                        profiler = perf_start(o->perf_dir, pid, name, dev, t);
                    proc_cpu_read(pid, &r->cpu0);
                    r->server0_s = servers_cpu_s(servers, nservers);
                    r->t_start = now_ns();
                } else if (strncmp(what, "FAIL", 4) == 0) {
                    snprintf(why, sizeof(why), "%s: %s", tests[t].name, what);
                    failed = why;
                    ended = true;
                } else if (r->started) {
                    r->t_end = now;
                    proc_cpu_read(pid, &r->cpu1);
                    r->server1_s = servers_cpu_s(servers, nservers);
                    perf_stop(&profiler, stopped_profilers, &nstopped);
                    r->ops = field(what, "ops=");
                    r->us = field(what, " us=");
                    r->bad = field(what, "bad=");
                    r->err = field(what, "err=");
                    r->kicks = field(what, "kicks=");
                    r->all_ops = field(what, "all_ops=");
                    r->span_us = field(what, "span_us=");
                    r->have = r->ops && r->us && r->all_ops && r->t_end > r->t_start;
                }
            }
        }
    }
    perf_stop(&profiler, stopped_profilers, &nstopped);
    for (unsigned i = 0; i < nstopped; i++)
        waitpid(stopped_profilers[i], NULL, 0);
    /* A crucible disk acknowledges writes before the downstairs have
     * them: SIGTERM lets the VMM send them and its last flush. */
    kill(pid, who == C_OURS_CRUCIBLE ? SIGTERM : SIGKILL);
    waitpid(pid, NULL, 0);
    for (unsigned i = 0; i < nservers; i++) {
        kill(servers[i], SIGTERM);
        waitpid(servers[i], NULL, 0);
    }
    if (con.fd >= 0)
        close(con.fd);
    /* Is the run whole? */
    char problem[PATH_MAX + 1024] = "";
    if (failed)
        snprintf(problem, sizeof(problem), "%.500s (last line: %s)", failed,
                 con.last[0] ? con.last : "none");
    for (int t = 0; t < NTESTS && !problem[0]; t++) {
        if (!runs[t].have)
            snprintf(problem, sizeof(problem), "%s: no result", tests[t].name);
        else if (runs[t].bad || runs[t].err)
            snprintf(problem, sizeof(problem), "%s: %llu bad blocks, %llu errors", tests[t].name,
                     runs[t].bad, runs[t].err);
    }
    if (!problem[0] && (!verified || v_seed != seed))
        snprintf(problem, sizeof(problem), "no verify line for seed %llu",
                 (unsigned long long)seed);
    static char image[PATH_MAX + 32];
    snprintf(image, sizeof(image), "%s", file_path);
    if (!problem[0] && who == C_OURS_CRUCIBLE)
        crucible_image(dir, o, image, sizeof(image), problem, sizeof(problem));
    if (!problem[0])
        check_file(image, seed, v_hash, v_written, problem, sizeof(problem));
    bool valid = !problem[0];
    if (!valid) {
        printf("  EXCLUDED: %s %s round %d: %s\n", name, dev_names[dev], round, problem);
        bad_runs[dev][who]++;
    } else {
        valid_runs[dev][who]++;
    }
    for (int t = 0; t < NTESTS; t++) {
        struct test_run *r = &runs[t];
        if (!r->have)
            continue;
        record_json(o, who, dev, round, seed, t, r, valid, valid ? NULL : problem);
        if (!valid)
            continue;
        struct cell *c = &cells[dev][who][t];
        double wall_s = (double)(r->t_end - r->t_start) / 1e9;
        double bytes = (double)r->all_ops * tests[t].bs;
        double cpu = r->cpu1.total_s - r->cpu0.total_s;
        double vcpu = r->cpu1.vcpu_s - r->cpu0.vcpu_s;
        series_add(&c->rate, tests[t].seq ? bytes / MIB / wall_s : (double)r->all_ops / wall_s);
        series_add(&c->guest, tests[t].seq ? (double)r->ops * tests[t].bs / MIB / (r->us / 1e6)
                                           : (double)r->ops / (r->us / 1e6));
        series_add(&c->clock, (double)r->span_us / 1e6 / wall_s);
        series_add(&c->cpu_us, cpu * 1e6 / (double)r->all_ops);
        series_add(&c->io_us, (cpu - vcpu) * 1e6 / (double)r->all_ops);
        series_add(&c->cpu_gib, cpu / (bytes / GIB));
        series_add(&c->kicks, (double)r->kicks / (double)r->ops);
        series_add(&c->kicks_s, (double)r->kicks / (r->us / 1e6));
        if (nservers)
            series_add(&c->server_us, (r->server1_s - r->server0_s) * 1e6 / (double)r->all_ops);
        printf("  %s %s round %d: %s %.0f %s (guest %.0f), %.2f CPU-us/IO (%.2f without vCPU), "
               "%.3f kicks/op\n",
               name, dev_names[dev], round, tests[t].name, c->rate.v[c->rate.n - 1],
               tests[t].seq ? "MiB/s" : "IOPS", c->guest.v[c->guest.n - 1],
               c->cpu_us.v[c->cpu_us.n - 1], c->io_us.v[c->io_us.n - 1],
               c->kicks.v[c->kicks.n - 1]);
    }
    char rm[PATH_MAX + 16];
    snprintf(rm, sizeof(rm), "rm -rf %s", dir);
    if (system(rm) != 0)
        fprintf(stderr, "bench: could not remove %s\n", dir);
    settle_file();
}

/* ---- fio on the host ---- */

static void run_fio(const struct options *o, int t, bool direct, int round)
{
    char cmd[PATH_MAX + 512];
    fio_command(cmd, sizeof(cmd), &tests[t], direct, o);
    FILE *p = popen(cmd, "r");
    if (!p) {
        printf("  fio: %s\n", strerror(errno));
        return;
    }
    size_t cap = 1 << 20, len = 0;
    char *out = malloc(cap);
    size_t n;
    while ((n = fread(out + len, 1, cap - 1 - len, p)) > 0)
        len += n;
    out[len] = 0;
    int rc = pclose(p);
    /* fio may print notes before its JSON */
    char *json = strchr(out, '{');
    json_error_t err;
    json_t *root = json && rc == 0 ? json_loads(json, 0, &err) : NULL;
    json_t *job = root ? json_array_get(json_object_get(root, "jobs"), 0) : NULL;
    json_t *side = job ? json_object_get(job, tests[t].write ? "write" : "read") : NULL;
    if (!side) {
        printf("  fio %s: no result (exit %d)\n", tests[t].name, rc);
        free(out);
        json_decref(root);
        return;
    }
    double iops = json_number_value(json_object_get(side, "iops"));
    double bw = json_number_value(json_object_get(side, "bw_bytes"));
    double ios = json_number_value(json_object_get(side, "total_ios"));
    double runtime_ms = json_number_value(json_object_get(job, "job_runtime"));
    double cpu_pct = json_number_value(json_object_get(job, "usr_cpu")) +
                     json_number_value(json_object_get(job, "sys_cpu"));
    double cpu_s = cpu_pct / 100.0 * runtime_ms / 1000.0;
    double rate = tests[t].seq ? bw / MIB : iops;
    double cpu_us = ios > 0 ? cpu_s * 1e6 / ios : 0;
    series_add(&fio_cells[direct][t].rate, rate);
    series_add(&fio_cells[direct][t].cpu_us, cpu_us);
    raw_result("storage-fio",
               "{\"commit\":\"%s\",\"time\":%lld,\"test\":\"%s\",\"direct\":%s,\"round\":%d,"
               "\"iops\":%.1f,\"bw_bytes\":%.0f,\"total_ios\":%.0f,\"runtime_ms\":%.0f,"
               "\"cpu_s\":%.3f}",
               git_commit(), (long long)time(NULL), tests[t].name, direct ? "true" : "false", round,
               iops, bw, ios, runtime_ms, cpu_s);
    printf("  fio%s round %d: %s %.0f %s, %.2f CPU-us/IO\n", direct ? " direct" : "", round,
           tests[t].name, rate, tests[t].seq ? "MiB/s" : "IOPS", cpu_us);
    json_decref(root);
    free(out);
}

/* ---- Summary ---- */

static void fmt_iqr(char *out, size_t cap, const struct series *s, int decimals)
{
    double q1, med, q3;
    if (!quartiles(s->v, s->n, &q1, &med, &q3))
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%.*f [%.*f-%.*f]", decimals, med, decimals, q1, decimals, q3);
}

static double median_of(const struct series *s)
{
    double q1, med, q3;
    return quartiles(s->v, s->n, &q1, &med, &q3) ? med : 0;
}

typedef struct series *(*pick_fn)(struct cell *);
static struct series *pick_rate(struct cell *c)
{
    return &c->rate;
}
static struct series *pick_cpu(struct cell *c)
{
    return &c->cpu_us;
}
static struct series *pick_io(struct cell *c)
{
    return &c->io_us;
}
static struct series *pick_gib(struct cell *c)
{
    return &c->cpu_gib;
}
static struct series *pick_kicks(struct cell *c)
{
    return &c->kicks;
}
static struct series *pick_kicks_s(struct cell *c)
{
    return &c->kicks_s;
}
static struct series *pick_server(struct cell *c)
{
    return &c->server_us;
}
static struct series *pick_clock(struct cell *c)
{
    return &c->clock;
}

static void print_table(const struct options *o, const char *title, pick_fn pick, int decimals,
                        bool ratios, bool with_fio)
{
    printf("\n%s: median [interquartile range] over valid runs\n", title);
    printf("%-24s", "");
    for (int k = 0; k < NCONT; k++)
        if (o->present[k])
            printf(" %-24s", cont_names[k]);
    if (ratios) {
        for (int k = C_BEFORE; k <= C_QEMU_DEFAULT; k++)
            if (o->present[k])
                printf(" ours/%-12s", cont_names[k]);
        if (o->present[C_OURS_DIRECT])
            printf(" %-17s", "direct ours/qemu");
        if (o->present[C_OURS_NBD] && o->present[C_QEMU_NBD])
            printf(" %-17s", "nbd ours/qemu");
    }
    if (with_fio && o->fio)
        printf(" %-24s", "host fio");
    if (with_fio && o->fio && o->present[C_OURS_DIRECT])
        printf(" %-24s", "host fio direct");
    printf("\n");
    for (int d = 0; d < NDEVS; d++) {
        if (!o->dev_on[d])
            continue;
        for (int t = 0; t < NTESTS; t++) {
            char label[64], text[96];
            snprintf(label, sizeof(label), "%s %s", dev_names[d], tests[t].name);
            printf("%-24s", label);
            for (int k = 0; k < NCONT; k++) {
                if (!o->present[k])
                    continue;
                fmt_iqr(text, sizeof(text), pick(&cells[d][k][t]), decimals);
                printf(" %-24s", text);
            }
            if (ratios) {
                for (int k = C_BEFORE; k < NCONT; k++) {
                    if (!o->present[k] || k == C_OURS_DIRECT || k == C_OURS_NBD ||
                        k == C_OURS_CRUCIBLE)
                        continue;
                    enum contestant mine = ours_for((enum contestant)k);
                    if (!o->present[mine])
                        continue;
                    double ours = median_of(pick(&cells[d][mine][t]));
                    double theirs = median_of(pick(&cells[d][k][t]));
                    if (ours > 0 && theirs > 0)
                        snprintf(text, sizeof(text), "%.2f", ours / theirs);
                    else
                        snprintf(text, sizeof(text), "-");
                    printf(" %-17s", text);
                }
            }
            for (int direct = 0; with_fio && o->fio && direct <= (int)o->present[C_OURS_DIRECT];
                 direct++) {
                struct fio_cell *f = &fio_cells[direct][t];
                fmt_iqr(text, sizeof(text), pick == pick_rate ? &f->rate : &f->cpu_us, decimals);
                printf(" %-24s", text);
            }
            printf("\n");
        }
    }
}

/* The crucible downstairs listen on TCP: the bench moves into a network
 * namespace of its own first, loopback up, so nothing reaches the host's
 * network. */
static void enter_own_netns(void)
{
    if (unshare(CLONE_NEWNET) != 0)
        die("--crucible: cannot make a network namespace (run as root): %s", strerror(errno));
    if (system("ip link set lo up") != 0)
        die("--crucible: cannot bring up loopback in the bench's network namespace");
}

int main(int argc, char **argv)
{
    struct options o = {.qemu = "qemu-system-x86_64",
                        .dir = "/tmp",
                        .runs = 10,
                        .ms = 1000,
                        .size_mib = 1024,
                        .cpus = 1,
                        .mem_mib = 512,
                        .seed = 0,
                        .fio = true,
                        .dev_on = {true, true},
                        .present = {[C_OURS] = true,
                                    [C_QEMU_BEST] = true,
                                    [C_QEMU_DEFAULT] = true,
                                    [C_OURS_DIRECT] = true,
                                    [C_QEMU_DIRECT] = true}};
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
        {"seed", required_argument, NULL, 'S'},
        {"cpus-allowed", required_argument, NULL, 'c'},
        {"no-qemu-default", no_argument, NULL, 'Q'},
        {"no-fio", no_argument, NULL, 'F'},
        {"perf", required_argument, NULL, 'P'},
        {"no-direct", no_argument, NULL, 'N'},
        {"nbd", no_argument, NULL, 'B'},
        {"only-nbd", no_argument, NULL, 'O'},
        {"crucible", required_argument, NULL, 'C'},
        {"only-network", no_argument, NULL, 'W'},
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
            o.present[C_BEFORE] = true;
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
        case 'S':
            o.seed = strtoull(optarg, NULL, 0);
            break;
        case 'c':
            o.cpus_allowed = optarg;
            break;
        case 'Q':
            o.present[C_QEMU_DEFAULT] = false;
            break;
        case 'F':
            o.fio = false;
            break;
        case 'P':
            o.perf_dir = optarg;
            break;
        case 'N':
            o.present[C_OURS_DIRECT] = o.present[C_QEMU_DIRECT] = false;
            break;
        case 'B':
            o.present[C_OURS_NBD] = o.present[C_QEMU_NBD] = true;
            break;
        case 'C':
            o.crucible_ds = optarg;
            o.present[C_OURS_CRUCIBLE] = true;
            break;
        case 'W': /* ours on the file, NBD and crucible: the network disks */
            for (int k = 0; k < NCONT; k++)
                o.present[k] = k == C_OURS || k == C_OURS_NBD || k == C_QEMU_NBD ||
                               (k == C_OURS_CRUCIBLE && o.crucible_ds);
            o.fio = false;
            break;
        case 'O': /* the NBD pair and ours on the file, nothing else */
            for (int k = 0; k < NCONT; k++)
                o.present[k] = k == C_OURS || k == C_OURS_NBD || k == C_QEMU_NBD;
            o.fio = false;
            break;
        default:
            return 2;
        }
    }
    static char vmm_path[PATH_MAX], before_path[PATH_MAX], guest_path[PATH_MAX], cpus[64];
    if (o.vmm && realpath(o.vmm, vmm_path))
        o.vmm = vmm_path;
    if (o.vmm_before && realpath(o.vmm_before, before_path))
        o.vmm_before = before_path;
    if (o.guest && realpath(o.guest, guest_path))
        o.guest = guest_path;
    if (!o.vmm || !o.guest || o.runs < 1 || o.runs > MAX_RUNS || o.ms < 100 || o.ms > 60000 ||
        o.size_mib < 64 || o.size_mib > 48 * 1024 || (!o.dev_on[0] && !o.dev_on[1])) {
        fprintf(stderr,
                "usage: storage --vmm BIN [--vmm-before BIN] --guest ROM [--qemu BIN] "
                "[--runs N<=%d] [--ms 100..60000] [--size-mib 64..49152] [--dir DIR] "
                "[--devices virtio-blk,nvme] [--seed N] [--cpus-allowed LIST] "
                "[--no-qemu-default] [--no-direct] [--no-fio] [--perf DIR] [--nbd] [--only-nbd] "
                "[--crucible DS] [--only-network] [--extra \"KEY=VALUE ...\"]\n",
                MAX_RUNS);
        return 2;
    }
    if (access(o.vmm, X_OK) != 0 || (o.vmm_before && access(o.vmm_before, X_OK) != 0))
        die("%s: not an executable", access(o.vmm, X_OK) != 0 ? o.vmm : o.vmm_before);
    if (!o.cpus_allowed) {
        snprintf(cpus, sizeof(cpus), "0-%ld", sysconf(_SC_NPROCESSORS_ONLN) - 1);
        o.cpus_allowed = cpus;
    }
    static char ds_path[PATH_MAX];
    if (o.crucible_ds && realpath(o.crucible_ds, ds_path))
        o.crucible_ds = ds_path;
    if (o.present[C_OURS_CRUCIBLE]) {
        if (!o.crucible_ds || access(o.crucible_ds, X_OK) != 0)
            die("--crucible: %s is not an executable", o.crucible_ds ? o.crucible_ds : "(none)");
        if (o.size_mib % CRUCIBLE_EXTENT_MIB)
            die("--crucible needs --size-mib in whole %d MiB extents", CRUCIBLE_EXTENT_MIB);
        enter_own_netns();
    }
    if ((o.present[C_OURS_NBD] || o.present[C_QEMU_NBD]) &&
        system("nbdkit --version >/dev/null 2>&1") != 0)
        die("--nbd needs nbdkit (apt-get install nbdkit)");
    if (o.fio && system("fio --version >/dev/null 2>&1") != 0) {
        printf("storage: fio is not installed (apt-get install fio): no host limit\n");
        o.fio = false;
    }
    if (!o.seed)
        o.seed = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
    uint64_t rng = o.seed;
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    snprintf(file_path, sizeof(file_path), "%s/pst-storage-bench-%d.img", o.dir, (int)getpid());
    snprintf(fio_path, sizeof(fio_path), "%s/pst-storage-fio-%d.img", o.dir, (int)getpid());
    snprintf(fio_direct_path, sizeof(fio_direct_path), "%s/pst-storage-fio-direct-%d.img", o.dir,
             (int)getpid());
    uint64_t size = (uint64_t)o.size_mib * MIB;
    /* Seeds are multiples of 4, so that seed + 1 and seed + 3 (the guest's
     * writes) never equal another run's or the fill's. */
    fill_seed = (bench_random(&rng) % 2500000000ull) * 4 + 4;
    fill_file(file_path, size, fill_seed);
    if (o.fio) {
        fill_file(fio_path, size, fill_seed);
        if (o.present[C_OURS_DIRECT])
            fill_file(fio_direct_path, size, fill_seed);
    }

    printf("storage: commit %s; %u MiB page-cached file in %s; guest: %u vCPU, %u MiB, polling "
           "driver at CPL3; %u ms per test after 200 ms of warm-up; %d rounds, VMs in a random "
           "order each round (--seed %llu)\n",
           git_commit(), o.size_mib, o.dir, o.cpus, o.mem_mib, o.ms, o.runs,
           (unsigned long long)o.seed);
    printf("  random: 4 KiB, queue depth 32; sequential: 1 MiB, queue depth 8%s%s\n",
           o.extra ? "; guest options: " : "", o.extra ? o.extra : "");
    print_commands(&o);
    print_load("before");

    for (int r = 1; r <= o.runs; r++) {
        int order[NDEVS * NCONT + 2], n = 0;
        for (int d = 0; d < NDEVS; d++)
            for (int k = 0; k < NCONT; k++)
                if (o.dev_on[d] && o.present[k])
                    order[n++] = d * NCONT + k;
        if (o.fio)
            order[n++] = -1; /* the fio tests, as one entry */
        if (o.fio && o.present[C_OURS_DIRECT])
            order[n++] = -2; /* and with O_DIRECT */
        shuffle_ints(&rng, order, n);
        for (int i = 0; i < n; i++) {
            if (order[i] < 0) {
                for (int t = 0; t < NTESTS; t++)
                    run_fio(&o, t, order[i] == -2, r);
                continue;
            }
            uint64_t seed = (bench_random(&rng) % 2500000000ull) * 4 + 4;
            run_vm((enum contestant)(order[i] % NCONT), (enum dev_kind)(order[i] / NCONT), &o, r,
                   seed);
        }
        printf("  round %d done\n", r);
    }
    print_load("after");

    print_table(&o, "throughput on the host's clock (IOPS; MiB/s for 1 MiB)", pick_rate, 0, true,
                true);
    print_table(&o, "host CPU-us per I/O, all VMM threads (host fio: its own)", pick_cpu, 2, true,
                true);
    print_table(&o, "host CPU-us per I/O without the vCPU threads (the VMM's I/O work)", pick_io, 2,
                true, false);
    print_table(&o, "host CPU-s per GiB moved, all VMM threads", pick_gib, 2, true, false);
    print_table(&o, "MMIO doorbell/notify writes per request (guest count)", pick_kicks, 3, false,
                false);
    print_table(&o, "doorbell/notify exits per second (guest count over its window)", pick_kicks_s,
                0, false, false);
    if (o.present[C_OURS_NBD] || o.present[C_QEMU_NBD] || o.present[C_OURS_CRUCIBLE])
        print_table(&o,
                    "server CPU-us per I/O (nbdkit on the NBD runs; the three downstairs on "
                    "ours-crucible)",
                    pick_server, 2, true, false);
    print_table(&o, "guest span / host interval (clock cross-check, 1.00 = agree)", pick_clock, 3,
                false, false);
    printf("\nvalid runs (excluded):");
    for (int d = 0; d < NDEVS; d++)
        for (int k = 0; k < NCONT; k++)
            if (o.dev_on[d] && o.present[k])
                printf(" %s/%s %d (%d)", dev_names[d], cont_names[k], valid_runs[d][k],
                       bad_runs[d][k]);
    printf("\nraw results: %s/storage.jsonl, storage-fio.jsonl\n",
           getenv("BENCH_OUT") ? getenv("BENCH_OUT") : "build/bench");
    unlink(file_path);
    unlink(fio_path);
    unlink(fio_direct_path);
    return 0;
}
