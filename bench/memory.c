/* Memory benchmark: what a VM costs the host beyond its guest RAM, ours
 * against QEMU at its best practice, on the project's test guest.
 *
 * Single VM, two configurations: "bare" (no device) and "disk+nic" (one
 * virtio-blk disk on a small file and one virtio-net NIC on a TAP). The
 * guest passes its self-test and, with devices, drives both of them
 * briefly (the `bench virtio-blk` and `net bench tx` commands, see
 * guest/README.md), so that every device has set up its queues, buffers
 * and threads. --settle-ms later (QEMU frees memory late, through its
 * RCU thread, which then trims the heap: read at once, its figure swung by
 * 4.6 MiB from run to run), the VMM process's PSS, Private_Dirty, RSS and
 * Shared_Clean (smaps_rollup) are read, minus the guest RAM's share of
 * each (the mappings of /proc/PID/smaps at least the guest RAM's size),
 * and the guest RAM's own RSS apart. PSS splits each shared page among the
 * processes that map it, so QEMU's library text shared with nothing else
 * counts whole for one VM, which is what one VM costs the host. Ours and
 * QEMU alternate in a random order (seed printed), --rounds rounds;
 * median and interquartile range.
 *
 * Fleets: N small VMs (disk+nic) started at once, each in its own
 * directory and network namespace, driven through the self-test and the
 * device commands; the total PSS of all their VMM processes minus guest
 * RAM, divided by N, and the marginal cost of a VM,
 * (PSS_total(N_max) - PSS_total(N_min)) / (N_max - N_min).
 *
 * Every measurement is appended as a JSON line to $BENCH_OUT/memory.jsonl
 * (default build/bench). Never fails on figures; exits 1 when a VM cannot
 * be run (after killing every VM and removing every directory).
 *
 *   memory --vmm BIN --guest ROM [--qemu BIN] [--rounds N] [--fleets 1,10,50]
 *          [--memory-mib 64] [--cpus 1] [--seed S] [--settle-ms 1000]
 * MEMBENCH_TRACE=1 prints to stderr when each step was done. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
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
#include "virtio/virtio_blk.h" /* VIRTIO_BLK_DEFAULT_QUEUES: QEMU gets as many */

#define MAX_ROUNDS 51
#define MAX_FLEETS 8
#define MAX_FLEET_VMS 200
#define DISK_MIB 64 /* the guest's `bench` wants at least 64 MiB */
#define TAP_NAME "pstmem0"

enum config { BARE, DEVICES, NCONFIGS };
static const char *const config_names[NCONFIGS] = {"bare", "disk+nic"};

struct options {
    const char *vmm, *guest, *qemu;
    int rounds, nfleets, fleet_sizes[MAX_FLEETS];
    unsigned memory_mib, cpus, settle_ms;
    uint64_t seed;
};

/* Memory of one VMM process, KiB: the whole process less the guest RAM,
 * and the guest RAM's RSS. */
struct mem_sample {
    double pss, private_dirty, rss, shared_clean, guest_rss;
    double seconds; /* from the first start until every VM got through */
};

/* One running VM: its directory (config.toml, disk.img, the console
 * socket ttya, the VMM's output vmm.log), process and console. */
struct vm {
    char dir[64];
    pid_t pid;
    struct console con;
    const char *failed; /* why it did not get through, NULL while fine */
};

/* ---- Every VM and directory still alive, for the clean-up on any exit ---- */

static struct vm *live[MAX_FLEET_VMS];
static int nlive;

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[PATH_MAX];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                if (unlink(path) < 0 && errno == EISDIR)
                    remove_dir(path); /* run/, our VMM's instance records */
            }
        closedir(d);
    }
    if (rmdir(dir) < 0 && errno != ENOENT)
        fprintf(stderr, "bench: could not remove %s: %s\n", dir, strerror(errno));
}

static void vm_destroy(struct vm *vm)
{
    if (vm->pid > 0) {
        kill(vm->pid, SIGKILL);
        waitpid(vm->pid, NULL, 0);
        vm->pid = 0;
    }
    if (vm->con.fd >= 0)
        close(vm->con.fd);
    vm->con.fd = -1;
    if (vm->dir[0])
        remove_dir(vm->dir);
    vm->dir[0] = 0;
}

static void destroy_all(void)
{
    while (nlive > 0)
        vm_destroy(live[--nlive]);
}

static void on_signal(int sig)
{
    (void)sig;
    exit(1); /* runs destroy_all through atexit */
}

/* ---- Command lines ---- */

struct command {
    char mem[16], cpus[16], blk[96];
    const char *argv[ARGV_MAX];
};

static void build_command(struct command *c, enum vmm_kind kind, enum config cfg,
                          const struct options *o)
{
    snprintf(c->mem, sizeof(c->mem), "%u", o->memory_mib);
    snprintf(c->cpus, sizeof(c->cpus), "%u", o->cpus);
    snprintf(c->blk, sizeof(c->blk), "virtio-blk-pci,drive=d,iothread=io0,num-queues=%d,addr=4",
             VIRTIO_BLK_DEFAULT_QUEUES);
    int n = 0;
    if (kind != QEMU) {
        c->argv[n++] = o->vmm;
        c->argv[n++] = "config.toml";
        c->argv[n] = NULL;
        return;
    }
    const char *base[] = {o->qemu,       "-M",
                          "pc",          "-enable-kvm",
                          "-cpu",        "host,-arch-capabilities",
                          "-nodefaults", "-no-user-config",
                          "-display",    "none",
                          "-m",          c->mem,
                          "-smp",        c->cpus,
                          "-bios",       o->guest,
                          "-serial",     "unix:ttya,server=on,wait=on",
                          NULL};
    const char *devices[] = {
        "-object", "iothread,id=io0",
        "-drive",  "file=disk.img,if=none,id=d,format=raw,cache=writeback,aio=io_uring",
        "-device", c->blk,
        "-netdev", "tap,id=n0,ifname=" TAP_NAME ",script=no,downscript=no,vhost=off",
        "-device", "virtio-net-pci,netdev=n0,addr=5",
        NULL};
    for (int i = 0; base[i]; i++)
        c->argv[n++] = base[i];
    for (int i = 0; cfg == DEVICES && devices[i]; i++)
        c->argv[n++] = devices[i];
    c->argv[n] = NULL;
}

static void config_text(char *out, size_t cap, enum config cfg, const struct options *o, int index)
{
    int n = snprintf(out, cap,
                     "[main]\nname = \"membench-%d-%d\"\ncpus = %u\nbootrom = \"%s\"\n"
                     "memory = %u\n",
                     (int)getpid(), index, o->cpus, o->guest, o->memory_mib);
    if (cfg == DEVICES && n > 0 && (size_t)n < cap)
        snprintf(out + n, cap - (size_t)n,
                 "\n[block_dev.disk]\ntype = \"file\"\npath = \"disk.img\"\n"
                 "\n[dev.disk0]\ndriver = \"pci-virtio-block\"\nblock_dev = \"disk\"\n"
                 "pci-path = \"0.4.0\"\n"
                 "\n[dev.net0]\ndriver = \"pci-virtio-viona\"\nvnic = \"" TAP_NAME "\"\n"
                 "pci-path = \"0.5.0\"\n");
}

/* ---- One VM's life ---- */

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        die("%s: %s", path, strerror(errno));
}

/* Makes the VM's directory and starts its VMM; the NIC's TAP lives in a
 * network namespace of the VMM's own (the child unshares before exec, so
 * no TAP ever reaches the host's namespace). */
static void vm_start(struct vm *vm, enum vmm_kind kind, enum config cfg, const struct options *o,
                     int index)
{
    *vm = (struct vm){.con = {.fd = -1}};
    if (nlive == MAX_FLEET_VMS)
        die("too many VMs");
    live[nlive++] = vm;
    snprintf(vm->dir, sizeof(vm->dir), "/tmp/pst-membench-XXXXXX");
    if (!mkdtemp(vm->dir))
        die("mkdtemp: %s", strerror(errno));
    char config[PATH_MAX + 512];
    config_text(config, sizeof(config), cfg, o, index);
    write_file(vm->dir, "config.toml", config);
    if (cfg == DEVICES) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/disk.img", vm->dir);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        /* Allocated, reading as zeros: the guest's reads find no tags, which
         * it counts as bad blocks; this benchmark only needs the I/O. */
        if (fd < 0 || posix_fallocate(fd, 0, (off_t)DISK_MIB << 20) != 0)
            die("%s: %s", path, strerror(errno));
        close(fd);
    }
    struct command c;
    build_command(&c, kind, cfg, o);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL); /* ignored here, and SIG_IGN would survive exec */
        if (chdir(vm->dir) < 0 || (cfg == DEVICES && unshare(CLONE_NEWNET) < 0))
            _exit(127);
        /* Our VMM's instance record in the VM's directory, not in /run:
         * removed with it, even after SIGKILL. */
        char run[PATH_MAX];
        snprintf(run, sizeof(run), "%s/run", vm->dir);
        setenv("PROPOLIS_RUNTIME_DIR", run, 1);
        int log = open("vmm.log", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(log, 1);
        dup2(log, 2);
        execvp(c.argv[0], (char *const *)c.argv);
        _exit(127);
    }
    vm->pid = pid;
}

/* Reads console lines until one holds `ok`; a line holding FAIL, the end
 * of the console or the deadline marks the VM failed. */
static void vm_expect(struct vm *vm, const char *ok, uint64_t deadline)
{
    char line[512];
    if (vm->failed)
        return;
    while (console_next_line(&vm->con, line, sizeof(line), deadline)) {
        if (strstr(line, "FAIL")) {
            vm->failed = "the guest reported a failure";
            return;
        }
        if (strstr(line, ok))
            return;
    }
    vm->failed = "no answer from the guest";
}

static void vm_say(struct vm *vm, const char *text)
{
    if (!vm->failed)
        console_say(&vm->con, text);
}

static void trace(int n, const char *what, uint64_t t0)
{
    if (getenv("MEMBENCH_TRACE"))
        fprintf(stderr, "bench: %d VM(s): %s after %.2f s\n", n, what,
                (double)(now_ns() - t0) / 1e9);
}

/* Drives all VMs through the self-test, one step at a time across the
 * fleet so that they progress together; then, with devices, each guest
 * drives its disk and NIC, as many guests at a time as the host has CPUs:
 * the guests' drivers poll, and fifty polling vCPUs on two host CPUs would
 * starve the device threads they wait for (an idle guest halts and costs
 * nothing). True if every VM got through. */
static bool drive(struct vm *vms, int n, enum config cfg, const struct options *o)
{
    uint64_t t0 = now_ns(), deadline = t0 + (60ull + 2ull * (uint64_t)n) * 1000000000ull;
    char path[PATH_MAX], params[96];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/ttya", vms[i].dir);
        vms[i].con.fd = connect_console(path, vms[i].pid, deadline, 1000);
        if (vms[i].con.fd < 0)
            vms[i].failed = "no console (the VMM did not start)";
    }
    snprintf(params, sizeof(params), "cpus=%u mem=%u lowmem=%u\r", o->cpus, o->memory_mib,
             o->memory_mib);
    const struct {
        const char *expect, *then;
    } self_test[] = {
        {"testguest: ready", params},
        {"testguest: echo?", "memory\r"},
        {"testguest: irq?", "Z"},
        {"testguest: PASS", NULL},
    };
    for (size_t s = 0; s < sizeof(self_test) / sizeof(self_test[0]); s++) {
        for (int i = 0; i < n; i++) {
            vm_expect(&vms[i], self_test[s].expect, deadline);
            if (self_test[s].then)
                vm_say(&vms[i], self_test[s].then);
        }
        trace(n, self_test[s].expect, t0);
    }
    const int window = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? (int)sysconf(_SC_NPROCESSORS_ONLN) : 1;
    for (int first = 0; cfg == DEVICES && first < n; first += window) {
        int end = first + window < n ? first + window : n;
        for (int i = first; i < end; i++)
            vm_say(&vms[i], "bench virtio-blk 0:4 ms=20 warm=0\r");
        for (int i = first; i < end; i++) {
            vm_expect(&vms[i], "testguest: bench virtio-blk done", deadline);
            vm_say(&vms[i], "net bench tx 0:5 ms=20\r");
        }
        for (int i = first; i < end; i++)
            vm_expect(&vms[i], "testguest: net bench tx frames=", deadline);
    }
    if (cfg == DEVICES)
        trace(n, "devices driven", t0);
    bool ok = true;
    for (int i = 0; i < n; i++)
        ok = ok && !vms[i].failed;
    return ok;
}

/* The guest RAM's share of the process: the mappings of smaps at least
 * guest_bytes large. */
static bool read_guest_ram(pid_t pid, uint64_t guest_bytes, struct mem_sample *g)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    *g = (struct mem_sample){0};
    bool guest = false;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long lo, hi, kib;
        if (sscanf(line, "%llx-%llx ", &lo, &hi) == 2) { /* a mapping's header line */
            guest = hi - lo >= guest_bytes;
            continue;
        }
        if (!guest)
            continue;
        if (sscanf(line, "Rss: %llu kB", &kib) == 1)
            g->rss += (double)kib;
        else if (sscanf(line, "Pss: %llu kB", &kib) == 1)
            g->pss += (double)kib;
        else if (sscanf(line, "Private_Dirty: %llu kB", &kib) == 1)
            g->private_dirty += (double)kib;
        else if (sscanf(line, "Shared_Clean: %llu kB", &kib) == 1)
            g->shared_clean += (double)kib;
    }
    fclose(f);
    return true;
}

static bool read_vmm_memory(pid_t pid, const struct options *o, struct mem_sample *s)
{
    struct proc_mem all;
    struct mem_sample guest;
    if (!proc_mem_read(pid, &all) || !read_guest_ram(pid, (uint64_t)o->memory_mib << 20, &guest))
        return false;
    *s = (struct mem_sample){
        .pss = all.pss_kib - guest.pss,
        .private_dirty = all.private_dirty_kib - guest.private_dirty,
        .rss = all.rss_kib - guest.rss,
        .shared_clean = all.shared_clean_kib - guest.shared_clean,
        .guest_rss = guest.rss,
    };
    return true;
}

static void print_vm_log(const struct vm *vm, const char *who)
{
    char path[PATH_MAX], line[512];
    snprintf(path, sizeof(path), "%s/vmm.log", vm->dir);
    fprintf(stderr, "bench: %s: %s (last console line: \"%s\")\n", who, vm->failed, vm->con.last);
    FILE *f = fopen(path, "r");
    for (int i = 0; f && i < 20 && fgets(line, sizeof(line), f); i++)
        fprintf(stderr, "  vmm.log: %s", line);
    if (f)
        fclose(f);
}

static void record(enum vmm_kind kind, enum config cfg, int round, int n_vms,
                   const struct mem_sample *m, const struct options *o)
{
    raw_result("memory",
               "{\"vmm\":\"%s\",\"config\":\"%s\",\"round\":%d,\"n_vms\":%d,\"pss_kib\":%.0f,"
               "\"private_dirty_kib\":%.0f,\"rss_kib\":%.0f,\"shared_clean_kib\":%.0f,"
               "\"guest_ram_rss_kib\":%.0f,\"settle_ms\":%u,\"unix_time\":%lld,\"commit\":\"%s\"}",
               vmm_kind_names[kind], config_names[cfg], round, n_vms, m->pss, m->private_dirty,
               m->rss, m->shared_clean, m->guest_rss, o->settle_ms, (long long)time(NULL),
               git_commit());
}

/* MEMBENCH_SMAPS=DIR keeps each VM's /proc/PID/smaps there (named
 * VMM-CONFIG-N-INDEX-PID), to see where the memory goes. */
static void keep_smaps(const struct vm *vm, enum vmm_kind kind, enum config cfg, int n, int index)
{
    const char *dir = getenv("MEMBENCH_SMAPS");
    if (!dir)
        return;
    char from[64], to[PATH_MAX], buf[65536];
    snprintf(from, sizeof(from), "/proc/%d/smaps", (int)vm->pid);
    snprintf(to, sizeof(to), "%s/%s-%s-%d-%d-%d", dir, vmm_kind_names[kind], config_names[cfg], n,
             index, (int)vm->pid);
    FILE *in = fopen(from, "r"), *out = fopen(to, "w");
    size_t len;
    while (in && out && (len = fread(buf, 1, sizeof(buf), in)) > 0)
        fwrite(buf, 1, len, out);
    if (in)
        fclose(in);
    if (out)
        fclose(out);
}

/* Starts n VMs at once, drives them all, and sums their memory (totals of
 * the whole fleet). Exits 1 if any VM could not be run. */
static void run_fleet(enum vmm_kind kind, enum config cfg, int n, const struct options *o,
                      struct mem_sample *total)
{
    struct vm *vms = calloc((size_t)n, sizeof(*vms));
    if (!vms)
        die("out of memory");
    uint64_t t0 = now_ns();
    for (int i = 0; i < n; i++)
        vm_start(&vms[i], kind, cfg, o, i);
    bool ok = drive(vms, n, cfg, o);
    *total = (struct mem_sample){.seconds = (double)(now_ns() - t0) / 1e9};
    /* Steady state, not start-up: QEMU frees memory through its RCU
     * thread and trims its heap only afterwards. */
    if (ok)
        usleep(o->settle_ms * 1000);
    for (int i = 0; ok && i < n; i++) {
        struct mem_sample m;
        if (!read_vmm_memory(vms[i].pid, o, &m)) {
            vms[i].failed = "its memory could not be read (did it exit?)";
            ok = false;
            break;
        }
        keep_smaps(&vms[i], kind, cfg, n, i);
        total->pss += m.pss;
        total->private_dirty += m.private_dirty;
        total->rss += m.rss;
        total->shared_clean += m.shared_clean;
        total->guest_rss += m.guest_rss;
    }
    if (!ok) {
        for (int i = 0; i < n; i++)
            if (vms[i].failed) {
                char who[96];
                snprintf(who, sizeof(who), "%s %s VM %d of %d", vmm_kind_names[kind],
                         config_names[cfg], i + 1, n);
                print_vm_log(&vms[i], who);
                break;
            }
        exit(1);
    }
    /* Newest first, so that nlive falls back to what it was. */
    for (int i = n - 1; i >= 0; i--) {
        vm_destroy(&vms[i]);
        nlive--;
    }
    free(vms);
}

/* ---- Output ---- */

static void print_setup(const struct options *o)
{
    printf("commands (each VM in a fresh directory holding config.toml, disk.img (%d MiB, "
           "allocated), the console socket ttya; with devices the VMM runs in a network "
           "namespace of its own):\n",
           DISK_MIB);
    for (int cfg = 0; cfg < NCONFIGS; cfg++) {
        struct command c;
        char prefix[80];
        build_command(&c, QEMU, (enum config)cfg, o);
        snprintf(prefix, sizeof(prefix), "  qemu %-9s ", config_names[cfg]);
        print_command(prefix, c.argv);
        build_command(&c, OURS, (enum config)cfg, o);
        snprintf(prefix, sizeof(prefix), "  ours %-9s PROPOLIS_RUNTIME_DIR=DIR/run ",
                 config_names[cfg]);
        print_command(prefix, c.argv);
        char config[PATH_MAX + 512];
        config_text(config, sizeof(config), (enum config)cfg, o, 0);
        printf("  ours %s config.toml (name: membench-PID-INDEX):\n", config_names[cfg]);
        print_indented("    ", config);
    }
    printf("guest: parameter line \"cpus=%u mem=%u lowmem=%u\", self-test to PASS; with devices "
           "then \"bench virtio-blk 0:4 ms=20 warm=0\" and \"net bench tx 0:5 ms=20\" (as many "
           "guests at a time as the host has CPUs); memory read when every guest is idle in its "
           "command loop and %u ms later\n",
           o->cpus, o->memory_mib, o->memory_mib, o->settle_ms);
}

static void print_quartiles(const double *v, int n)
{
    double q1, med, q3;
    if (!quartiles(v, n, &q1, &med, &q3)) {
        printf(" %22s", "-");
        return;
    }
    char text[48];
    snprintf(text, sizeof(text), "%.0f [%.0f..%.0f]", med, q1, q3);
    printf(" %22s", text);
}

static double median_of(const double *v, int n)
{
    double q1, med, q3;
    return quartiles(v, n, &q1, &med, &q3) ? med : 0;
}

static void print_ratio(double ours, double qemu)
{
    if (qemu > 0)
        printf(" %9.2f\n", ours / qemu);
    else
        printf(" %9s\n", "-");
}

/* ---- main ---- */

static int parse_fleets(const char *text, struct options *o)
{
    o->nfleets = 0;
    for (const char *p = text; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > MAX_FLEET_VMS || o->nfleets == MAX_FLEETS)
            return -1;
        o->fleet_sizes[o->nfleets++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    for (int i = 1; i < o->nfleets; i++)
        if (o->fleet_sizes[i] <= o->fleet_sizes[i - 1])
            return -1;
    return o->nfleets > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct options o = {
        .qemu = "qemu-system-x86_64", .rounds = 5, .memory_mib = 64, .cpus = 1, .settle_ms = 1000};
    bool seeded = false, fleets_bad = parse_fleets("1,10,50", &o) < 0;
    static const struct option opts[] = {
        {"vmm", required_argument, NULL, 'v'},       {"guest", required_argument, NULL, 'g'},
        {"qemu", required_argument, NULL, 'q'},      {"rounds", required_argument, NULL, 'r'},
        {"fleets", required_argument, NULL, 'f'},    {"memory-mib", required_argument, NULL, 'm'},
        {"cpus", required_argument, NULL, 'c'},      {"seed", required_argument, NULL, 's'},
        {"settle-ms", required_argument, NULL, 'w'}, {NULL, 0, NULL, 0},
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
        case 'r':
            o.rounds = atoi(optarg);
            break;
        case 'f':
            fleets_bad = parse_fleets(optarg, &o) < 0;
            break;
        case 'm':
            o.memory_mib = (unsigned)atoi(optarg);
            break;
        case 'c':
            o.cpus = (unsigned)atoi(optarg);
            break;
        case 'w':
            o.settle_ms = (unsigned)atoi(optarg);
            break;
        case 's':
            o.seed = strtoull(optarg, NULL, 0);
            seeded = true;
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
    /* 64 MiB: the guest's device commands use its RAM up to 48 MiB. */
    if (!o.vmm || !o.guest || o.rounds < 1 || o.rounds > MAX_ROUNDS || fleets_bad ||
        o.memory_mib < 64 || o.memory_mib > 4096 || o.cpus < 1 || o.cpus > 64 ||
        o.settle_ms > 60000) {
        fprintf(stderr,
                "usage: memory --vmm BIN --guest ROM [--qemu BIN] [--rounds N<=%d] "
                "[--fleets N1,N2,... ascending, each <=%d] [--memory-mib M>=64] "
                "[--cpus N] [--seed S] [--settle-ms MS<=60000]\n",
                MAX_ROUNDS, MAX_FLEET_VMS);
        return 2;
    }
    if (access(o.vmm, X_OK) != 0)
        die("%s: not an executable", o.vmm);
    if (!seeded)
        o.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    atexit(destroy_all);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("memory: VMM process memory beyond guest RAM, ours and qemu, %u vCPU(s), %u MiB "
           "guest RAM, %d rounds of single VMs, fleets of",
           o.cpus, o.memory_mib, o.rounds);
    for (int i = 0; i < o.nfleets; i++)
        printf("%s%d", i ? "," : " ", o.fleet_sizes[i]);
    printf(" VMs (disk+nic); order shuffled with --seed %llu; commit %s\n",
           (unsigned long long)o.seed, git_commit());
    print_setup(&o);
    print_load("at start");
    uint64_t t0 = now_ns();

    const bool present[NKINDS] = {[OURS] = true, [QEMU] = true};
    static struct mem_sample single[NCONFIGS][NKINDS][MAX_ROUNDS];
    for (int round = 0; round < o.rounds; round++) {
        for (int j = 0; j < NCONFIGS; j++) {
            enum config cfg = (enum config)((round + j) % NCONFIGS);
            enum vmm_kind order[NKINDS];
            int count = shuffled_order(&o.seed, present, order);
            for (int k = 0; k < count; k++) {
                struct mem_sample *m = &single[cfg][order[k]][round];
                run_fleet(order[k], cfg, 1, &o, m);
                record(order[k], cfg, round, 1, m, &o);
            }
        }
    }
    static struct mem_sample fleet[MAX_FLEETS][NKINDS];
    for (int f = 0; f < o.nfleets; f++) {
        enum vmm_kind order[NKINDS];
        int count = shuffled_order(&o.seed, present, order);
        for (int k = 0; k < count; k++) {
            run_fleet(order[k], DEVICES, o.fleet_sizes[f], &o, &fleet[f][order[k]]);
            record(order[k], DEVICES, 0, o.fleet_sizes[f], &fleet[f][order[k]], &o);
        }
    }

    printf("%.0f s in all\n", (double)(now_ns() - t0) / 1e9);
    print_load("at end");
    printf("\nKiB, VMM process minus guest RAM; single VM: median [q1..q3] of %d rounds\n",
           o.rounds);
    printf("%-42s %22s %22s %9s\n", "", "ours", "qemu", "ours/qemu");
    static const char *const figure_names[] = {"PSS", "Private_Dirty", "RSS", "Shared_Clean",
                                               "guest RAM RSS"};
    double med[NCONFIGS][NKINDS][5];
    for (int cfg = 0; cfg < NCONFIGS; cfg++) {
        for (int fig = 0; fig < 5; fig++) {
            char label[64];
            snprintf(label, sizeof(label), "1 VM %s %s", config_names[cfg], figure_names[fig]);
            printf("%-42s", label);
            for (int k = 0; k < NKINDS; k++) {
                if (!present[k])
                    continue;
                double v[MAX_ROUNDS];
                for (int r = 0; r < o.rounds; r++) {
                    const struct mem_sample *m = &single[cfg][k][r];
                    const double all[5] = {m->pss, m->private_dirty, m->rss, m->shared_clean,
                                           m->guest_rss};
                    v[r] = all[fig];
                }
                print_quartiles(v, o.rounds);
                med[cfg][k][fig] = median_of(v, o.rounds);
            }
            print_ratio(med[cfg][OURS][fig], med[cfg][QEMU][fig]);
        }
    }
    for (int fig = 0; fig < 2; fig++) {
        char label[64];
        snprintf(label, sizeof(label), "disk+nic cost %s (median diff)", figure_names[fig]);
        printf("%-42s", label);
        for (int k = 0; k < NKINDS; k++)
            if (present[k])
                printf(" %22.0f", med[DEVICES][k][fig] - med[BARE][k][fig]);
        print_ratio(med[DEVICES][OURS][fig] - med[BARE][OURS][fig],
                    med[DEVICES][QEMU][fig] - med[BARE][QEMU][fig]);
    }
    for (int f = 0; f < o.nfleets; f++) {
        int n = o.fleet_sizes[f];
        for (int fig = 0; fig < 2; fig++) {
            char label[64];
            snprintf(label, sizeof(label), "%d VM%s %s total/N", n, n == 1 ? "" : "s",
                     figure_names[fig]);
            printf("%-42s", label);
            double per[NKINDS] = {0};
            for (int k = 0; k < NKINDS; k++) {
                if (!present[k])
                    continue;
                per[k] = (fig ? fleet[f][k].private_dirty : fleet[f][k].pss) / n;
                printf(" %22.0f", per[k]);
            }
            print_ratio(per[OURS], per[QEMU]);
        }
    }
    for (int f = 0; f < o.nfleets; f++) {
        char label[64];
        snprintf(label, sizeof(label), "%d VM%s: all through, s", o.fleet_sizes[f],
                 o.fleet_sizes[f] == 1 ? "" : "s");
        printf("%-42s", label);
        for (int k = 0; k < NKINDS; k++)
            if (present[k])
                printf(" %22.1f", fleet[f][k].seconds);
        print_ratio(fleet[f][OURS].seconds, fleet[f][QEMU].seconds);
    }
    if (o.nfleets > 1) {
        int lo = o.fleet_sizes[0], hi = o.fleet_sizes[o.nfleets - 1];
        char label[64];
        snprintf(label, sizeof(label), "marginal PSS per VM (%d->%d)", lo, hi);
        printf("%-42s", label);
        double marginal[NKINDS] = {0};
        for (int k = 0; k < NKINDS; k++) {
            if (!present[k])
                continue;
            marginal[k] = (fleet[o.nfleets - 1][k].pss - fleet[0][k].pss) / (hi - lo);
            printf(" %22.0f", marginal[k]);
        }
        print_ratio(marginal[OURS], marginal[QEMU]);
    }
    return 0;
}
