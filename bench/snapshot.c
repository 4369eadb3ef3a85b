/* Snapshot benchmark: our `-s` (SIGINT writes NAME-<ms>.tar) and `-r FILE`
 * against QEMU's `migrate "exec:cat > FILE"` of a stopped VM and
 * `-incoming "exec:cat FILE"`, on the same test guest, the same RAM sizes,
 * in the same invocation.
 *
 * Each VM boots the test guest (1 vCPU), which fills its RAM from 64 MiB
 * to the end (all of highmem too) with a pattern of its own (`mem fill
 * SEED`, guest/mem_pattern.c: every 8-byte word derived from its address,
 * no zero page), so neither side can skip or share pages. Then:
 *
 *   save:    ours: SIGINT to `VMM -s config.toml`, until the tar is in
 *            place (the VMM writes it, fsyncs it and renames it);
 *            QEMU: QMP `stop`, `migrate` to `exec:cat > FILE`, polling
 *            `query-migrate` until "completed", then fdatasync of FILE
 *            (so both count the data on disk).
 *   restore: from exec of the VMM until the guest answers `ping` on its
 *            serial console (ours: `VMM -r FILE`, which resumes when the
 *            console client connects; QEMU: `-incoming "exec:cat FILE"`,
 *            polling QMP `query-status` every 2 ms until the migration is
 *            in, then `cont`: the stream says the source was stopped, as
 *            `virsh save` leaves it, and `virsh restore` sends `cont` too),
 *            pinging every 10 ms.
 *   verify:  the restored guest runs `mem check SEED` (every word), which
 *            must say "mem check ok"; a run that fails it is left out.
 *
 * Also: the file's size and the blocks allocated on disk, the restoring
 * VMM's peak RSS (VmHWM) when the guest first answers, and the VMM
 * process's CPU time for the save (ours: from SIGINT to exit; QEMU: from
 * `stop` to "completed", without its `cat` child) and for the restore
 * (from exec to the answer). Each run measures each contestant once per
 * size, alternating which goes first; the table shows medians with
 * min..max. The files are read back from the page cache (just written).
 *
 *   snapshot --vmm BIN --guest ROM [--qemu BIN] [--runs N] [--sizes 1024,4096]
 *            [--dir DIR] [--qemu-cpu MODEL] */
#include <errno.h>

#include "bench_util.h"
#include <dirent.h>
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 21
#define MAX_SIZES 4
#define SEC 1000000000ull
#define MIB (1024.0 * 1024.0)
#define VM_NAME "sbench"

enum metric {
    M_SAVE_S,
    M_RESTORE_S,
    M_FILE_MIB,
    M_ALLOC_MIB,
    M_RSS_MIB,
    M_SAVE_CPU,
    M_RESTORE_CPU,
    NMETRICS
};
static const char *const metric_names[NMETRICS] = {
    "save s",     "restore s (to ping)", "file MiB", "file MiB on disk", "restore peak RSS MiB",
    "save CPU-s", "restore CPU-s"};

struct cell {
    struct series m[NMETRICS];
    char note[240];
};

struct options {
    const char *vmm, *guest, *qemu, *qemu_cpu, *dir;
    int runs, nsizes;
    unsigned sizes[MAX_SIZES];
};

static struct cell cells[MAX_SIZES][NKINDS];

static void note(struct cell *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->note, sizeof(c->note), fmt, ap);
    va_end(ap);
}

/* ---- /proc ---- */

static double proc_cpu_s(pid_t pid)
{
    char dir[32];
    snprintf(dir, sizeof(dir), "/proc/%d", (int)pid);
    return stat_cpu_s(dir);
}

/* A "Key:   N kB" line of /proc/PID/status in MiB; -1 if absent. */
static double proc_status_mib(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    double v = -1;
    size_t k = strlen(key);
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, key, k) == 0 && line[k] == ':')
            v = strtod(line + k + 1, NULL) / 1024.0;
    if (f)
        fclose(f);
    return v;
}

/* ---- Commands ---- */

struct command {
    char mem[16], incoming[PATH_MAX + 32];
    const char *argv[ARGV_MAX];
};

/* QEMU as bench/net.c runs it, with a QMP socket; incoming: the file to
 * restore from, or NULL. */
static void build_command(struct command *c, enum vmm_kind kind, const struct options *o,
                          unsigned mem_mib, const char *incoming)
{
    if (mem_mib)
        snprintf(c->mem, sizeof(c->mem), "%u", mem_mib);
    else
        snprintf(c->mem, sizeof(c->mem), "SIZE");
    snprintf(c->incoming, sizeof(c->incoming), "exec:cat %s", incoming ? incoming : "FILE");
    const char *qemu[] = {o->qemu,
                          "-name",
                          VM_NAME ",debug-threads=on",
                          "-M",
                          "pc",
                          "-enable-kvm",
                          "-cpu",
                          o->qemu_cpu,
                          "-nodefaults",
                          "-no-user-config",
                          "-display",
                          "none",
                          "-m",
                          c->mem,
                          "-smp",
                          "1",
                          "-bios",
                          o->guest,
                          "-serial",
                          "unix:ttya,server=on,wait=on",
                          "-qmp",
                          "unix:qmp.sock,server=on,wait=off",
                          incoming ? "-incoming" : NULL,
                          c->incoming,
                          NULL};
    const char *save[] = {o->vmm, "-s", "config.toml", NULL};
    const char *restore[] = {o->vmm, "-r", incoming ? incoming : "FILE", NULL};
    copy_argv(c->argv, ARGV_MAX, kind == QEMU ? qemu : incoming ? restore : save);
}

static void config_text(char *out, size_t cap, const struct options *o, unsigned mem_mib)
{
    snprintf(out, cap, "[main]\nname = \"%s\"\ncpus = 1\nbootrom = \"%s\"\nmemory = %u\n", VM_NAME,
             o->guest, mem_mib);
}

static pid_t launch(const struct command *c, const char *dir, const char *log_name)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    if (chdir(dir) < 0)
        _exit(127);
    int log = open(log_name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(log, 1);
    dup2(log, 2);
    char rt[PATH_MAX];
    snprintf(rt, sizeof(rt), "%s/run", dir);
    mkdir(rt, 0700);
    setenv("PROPOLIS_RUNTIME_DIR", rt, 1);
    execvp(c->argv[0], (char *const *)c->argv);
    _exit(127);
}

static void print_commands(const struct options *o)
{
    printf("commands (each VM in a fresh directory holding the console socket ttya, the "
           "snapshot file and, for QEMU, qmp.sock; SIZE in MiB):\n");
    struct command c;
    build_command(&c, OURS, o, 0, NULL);
    print_command("  ours save     ", c.argv);
    build_command(&c, OURS, o, 0, "sbench-MS.tar");
    print_command("  ours restore  ", c.argv);
    build_command(&c, QEMU, o, 0, NULL);
    print_command("  qemu save     ", c.argv);
    build_command(&c, QEMU, o, 0, "FILE");
    print_command("  qemu restore  ", c.argv);
    char config[PATH_MAX + 256];
    config_text(config, sizeof(config), o, 0);
    printf("  config.toml (ours; memory = SIZE, here 0):\n");
    print_indented("    ", config);
    printf("  guest: `cpus=1 mem=SIZE`, self-test, `mem fill SEED`; after the restore `ping` "
           "every 10 ms until `pong`, then `mem check SEED`\n"
           "  ours save: SIGINT, until sbench-MS.tar exists (written, fsynced, renamed)\n"
           "  qemu save: QMP migrate-set-parameters max-bandwidth=1 TiB/s (no throttle; "
           "before timing), then timed: stop; migrate uri=\"exec:cat > FILE\"; query-migrate "
           "every 2 ms until completed; fdatasync(FILE)\n"
           "  qemu restore: QMP query-status every 2 ms until paused (the migration is in), "
           "then cont\n");
}

/* ---- The guest ---- */

struct vm {
    enum vmm_kind kind;
    pid_t pid;
    struct console con;
    int qmp;
    char qbuf[65536];
    size_t qlen;
};

static bool boot_guest(struct vm *vm, unsigned mem_mib, uint64_t deadline, char *why, size_t cap)
{
    char line[128];
    if (!console_expect(&vm->con, "testguest: ready", deadline)) {
        snprintf(why, cap, "no 'ready'");
        return false;
    }
    snprintf(line, sizeof(line), "cpus=1 mem=%u\r", mem_mib);
    console_say(&vm->con, line);
    if (!console_expect(&vm->con, "testguest: echo?", deadline)) {
        snprintf(why, cap, "no 'echo?'");
        return false;
    }
    console_say(&vm->con, "snap\r");
    if (!console_expect(&vm->con, "testguest: irq?", deadline)) {
        snprintf(why, cap, "no 'irq?'");
        return false;
    }
    console_say(&vm->con, "Z");
    if (!console_expect(&vm->con, "testguest: PASS", deadline)) {
        snprintf(why, cap, "self-test did not PASS (last: %.100s)", vm->con.last);
        return false;
    }
    return true;
}

/* Sends a guest command and waits for the line starting with "testguest: "
 * + ok_prefix (true) or containing "FAIL" (false; why gets the line). */
static bool guest_command(struct vm *vm, const char *cmd, const char *ok_prefix, uint64_t deadline,
                          char *out, size_t out_cap, char *why, size_t cap)
{
    char line[512], want[64];
    snprintf(line, sizeof(line), "%s\r", cmd);
    snprintf(want, sizeof(want), "testguest: %s", ok_prefix);
    console_say(&vm->con, line);
    while (console_next_line(&vm->con, line, sizeof(line), deadline)) {
        if (strstr(line, want)) {
            snprintf(out, out_cap, "%s", strstr(line, want) + 11);
            return true;
        }
        if (strstr(line, "FAIL")) {
            snprintf(why, cap, "'%s': %.160s", cmd, line);
            return false;
        }
    }
    snprintf(why, cap, "'%s': no '%s' (last: %.100s)", cmd, ok_prefix, vm->con.last);
    return false;
}

/* Pings every 10 ms until the guest answers; the time of the answer. */
static bool await_pong(struct vm *vm, uint64_t deadline, uint64_t *when)
{
    char line[512];
    for (;;) {
        console_say(&vm->con, "ping\r");
        uint64_t next = now_ns() + 10000000ull;
        while (console_next_line(&vm->con, line, sizeof(line), next))
            if (strstr(line, "testguest: pong")) {
                *when = now_ns();
                return true;
            }
        if (now_ns() > deadline || waitpid(vm->pid, NULL, WNOHANG) == vm->pid)
            return false;
    }
}

/* Lets the late pongs arrive and drops them. */
static void drain(struct vm *vm)
{
    char line[512];
    console_say(&vm->con, "\r");
    uint64_t end = now_ns() + 300000000ull;
    while (console_next_line(&vm->con, line, sizeof(line), end))
        ;
}

/* ---- QMP ---- */

static bool qmp_connect(struct vm *vm, const char *dir, uint64_t deadline)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/qmp.sock", dir);
    vm->qmp = connect_console(path, vm->pid, deadline, 1000);
    return vm->qmp >= 0;
}

/* The next QMP line (a reply or an event) into out; false at the deadline. */
static bool qmp_line(struct vm *vm, char *out, size_t cap, uint64_t deadline)
{
    for (;;) {
        char *nl = memchr(vm->qbuf, '\n', vm->qlen);
        if (nl) {
            size_t n = (size_t)(nl - vm->qbuf);
            snprintf(out, cap, "%.*s", (int)n, vm->qbuf);
            memmove(vm->qbuf, nl + 1, vm->qlen - n - 1);
            vm->qlen -= n + 1;
            return true;
        }
        if (vm->qlen == sizeof(vm->qbuf))
            vm->qlen = 0;
        struct pollfd p = {vm->qmp, POLLIN, 0};
        uint64_t t = now_ns();
        if (t >= deadline || poll(&p, 1, (int)((deadline - t) / 1000000) + 1) <= 0)
            return false;
        ssize_t n = read(vm->qmp, vm->qbuf + vm->qlen, sizeof(vm->qbuf) - vm->qlen);
        if (n <= 0)
            return false;
        vm->qlen += (size_t)n;
    }
}

/* Sends one command and returns its reply line ("return" or "error"),
 * skipping events. */
static bool qmp(struct vm *vm, const char *cmd, char *reply, size_t cap, uint64_t deadline)
{
    if (write(vm->qmp, cmd, strlen(cmd)) < 0 || write(vm->qmp, "\n", 1) < 0)
        return false;
    while (qmp_line(vm, reply, cap, deadline))
        if (strstr(reply, "\"return\"") || strstr(reply, "\"error\""))
            return strstr(reply, "\"return\"") != NULL;
    return false;
}

/* An incoming QEMU keeps the source's run state: paused, since the save
 * stopped it (as `virsh save` does). Waits until the migration is in, then
 * `cont` (what `virsh restore` does). */
static bool qemu_continue(struct vm *vm, const char *dir, uint64_t deadline, char *why, size_t cap)
{
    char reply[4096];
    if (!qmp_connect(vm, dir, deadline) || !qmp_line(vm, reply, sizeof(reply), deadline) ||
        !qmp(vm, "{\"execute\":\"qmp_capabilities\"}", reply, sizeof(reply), deadline)) {
        snprintf(why, cap, "QMP after restore failed");
        return false;
    }
    for (;;) {
        if (!qmp(vm, "{\"execute\":\"query-status\"}", reply, sizeof(reply), deadline)) {
            snprintf(why, cap, "query-status failed");
            return false;
        }
        if (strstr(reply, "\"status\": \"running\""))
            return true;
        if (strstr(reply, "\"status\": \"paused\""))
            break;
        if (strstr(reply, "\"status\": \"inmigrate\"") == NULL || now_ns() > deadline) {
            snprintf(why, cap, "incoming migration: %.200s", reply);
            return false;
        }
        usleep(2000);
    }
    if (!qmp(vm, "{\"execute\":\"cont\"}", reply, sizeof(reply), deadline)) {
        snprintf(why, cap, "cont: %.200s", reply);
        return false;
    }
    return true;
}

/* ---- One size, one contestant ---- */

static void stop_vm(struct vm *vm)
{
    if (vm->pid > 0) {
        kill(vm->pid, SIGKILL);
        waitpid(vm->pid, NULL, 0);
        vm->pid = 0;
    }
    if (vm->con.fd >= 0)
        close(vm->con.fd);
    vm->con.fd = -1;
    if (vm->qmp >= 0)
        close(vm->qmp);
    vm->qmp = -1;
    vm->qlen = 0;
}

/* The snapshot our VMM wrote in dir (not the .partial one), or false. */
static bool find_tar(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool found = false;
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, VM_NAME "-", strlen(VM_NAME) + 1) == 0 && strlen(e->d_name) > 4 &&
            strcmp(e->d_name + strlen(e->d_name) - 4, ".tar") == 0) {
            snprintf(out, cap, "%s/%s", dir, e->d_name);
            found = true;
        }
    if (d)
        closedir(d);
    return found;
}

static void show_log(const char *dir, const char *name)
{
    char cmd[PATH_MAX + 96];
    snprintf(cmd, sizeof(cmd), "tail -n 5 %s/%s | sed 's/^/    log: /' >&2", dir, name);
    if (system(cmd) != 0)
        fprintf(stderr, "bench: no log\n");
}

static void run_one(enum vmm_kind kind, const struct options *o, int si, int run)
{
    unsigned mem_mib = o->sizes[si];
    const char *who = vmm_kind_names[kind];
    struct cell *cell = &cells[si][kind];
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/pst-sbench-XXXXXX", o->dir);
    if (!mkdtemp(dir))
        die("mkdtemp %s: %s", dir, strerror(errno));
    char path[PATH_MAX + 64], file[PATH_MAX + 64], why[320] = "", out[256];
    unsigned seed = 1000u * (unsigned)run + (unsigned)si + 7u * (unsigned)kind + 1u;
    snprintf(file, sizeof(file), "%s/vm.mig", dir);
    if (kind == OURS) {
        char config[PATH_MAX + 256];
        snprintf(path, sizeof(path), "%s/config.toml", dir);
        FILE *cfg = fopen(path, "w");
        if (!cfg)
            die("%s: %s", path, strerror(errno));
        config_text(config, sizeof(config), o, mem_mib);
        fputs(config, cfg);
        fclose(cfg);
    }
    struct vm vm = {.kind = kind, .qmp = -1, .con = {.fd = -1}};
    struct command c;
    double save_s = 0, save_cpu = 0, restore_s = 0, restore_cpu = 0, rss = 0;
    struct stat st = {0};
    const char *failed = NULL;
    char cmd[64];

    /* Boot and dirty the RAM. */
    build_command(&c, kind, o, mem_mib, NULL);
    vm.pid = launch(&c, dir, "save.log");
    uint64_t deadline = now_ns() + 120 * SEC;
    snprintf(path, sizeof(path), "%s/ttya", dir);
    vm.con = (struct console){.fd = connect_console(path, vm.pid, deadline, 1000)};
    if (vm.con.fd < 0)
        failed = "no console";
    else if (!boot_guest(&vm, mem_mib, deadline, why, sizeof(why)))
        failed = why;
    snprintf(cmd, sizeof(cmd), "mem fill %u", seed);
    if (!failed &&
        !guest_command(&vm, cmd, "mem fill done", deadline, out, sizeof(out), why, sizeof(why)))
        failed = why;
    if (!failed && run == 1)
        printf("    %s %u MiB guest: %s\n", who, mem_mib, out);
    if (!failed && kind == QEMU) {
        char reply[4096];
        if (!qmp_connect(&vm, dir, deadline) || !qmp_line(&vm, reply, sizeof(reply), deadline) ||
            !qmp(&vm, "{\"execute\":\"qmp_capabilities\"}", reply, sizeof(reply), deadline) ||
            !qmp(&vm,
                 "{\"execute\":\"migrate-set-parameters\",\"arguments\":"
                 "{\"max-bandwidth\":1099511627776}}",
                 reply, sizeof(reply), deadline))
            failed = "QMP set-up failed";
    }
    usleep(300000); /* the guest idles in hlt */

    /* Save. */
    if (!failed && kind == OURS) {
        double cpu0 = proc_cpu_s(vm.pid);
        uint64_t t0 = now_ns();
        kill(vm.pid, SIGINT);
        while (!find_tar(dir, file, sizeof(file))) {
            if (now_ns() > t0 + 300 * SEC || waitpid(vm.pid, NULL, WNOHANG) == vm.pid) {
                failed = "no snapshot file";
                vm.pid = 0;
                break;
            }
            usleep(500);
        }
        save_s = (double)(now_ns() - t0) / 1e9;
        int status;
        struct rusage ru;
        if (!failed && wait4(vm.pid, &status, 0, &ru) == vm.pid) {
            save_cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6 - cpu0;
            vm.pid = 0;
        }
    } else if (!failed) {
        char reply[4096], q[PATH_MAX + 160];
        double cpu0 = proc_cpu_s(vm.pid);
        uint64_t t0 = now_ns();
        snprintf(q, sizeof(q),
                 "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:cat > %s\"}}", file);
        if (!qmp(&vm, "{\"execute\":\"stop\"}", reply, sizeof(reply), t0 + 30 * SEC) ||
            !qmp(&vm, q, reply, sizeof(reply), t0 + 30 * SEC)) {
            snprintf(why, sizeof(why), "migrate refused: %.200s", reply);
            failed = why;
        }
        while (!failed) {
            if (!qmp(&vm, "{\"execute\":\"query-migrate\"}", reply, sizeof(reply),
                     t0 + 300 * SEC)) {
                failed = "query-migrate failed";
            } else if (strstr(reply, "\"completed\"")) {
                break;
            } else if (strstr(reply, "\"failed\"") || now_ns() > t0 + 300 * SEC) {
                snprintf(why, sizeof(why), "migration: %.200s", reply);
                failed = why;
            }
            usleep(2000);
        }
        if (!failed) {
            save_cpu = proc_cpu_s(vm.pid) - cpu0;
            int fd = open(file, O_RDONLY | O_CLOEXEC);
            if (fd < 0 || fdatasync(fd) < 0)
                failed = "the migration file does not sync";
            if (fd >= 0)
                close(fd);
            save_s = (double)(now_ns() - t0) / 1e9;
        }
    }
    if (!failed && stat(file, &st) != 0)
        failed = "no snapshot file";
    stop_vm(&vm);

    /* Restore. */
    if (!failed) {
        if (kind == OURS) {
            snprintf(path, sizeof(path), "%s/ttya", dir);
            unlink(path); /* the old VMM's socket */
        }
        build_command(&c, kind, o, mem_mib, file);
        uint64_t t0 = now_ns(), answered = 0;
        deadline = t0 + 300 * SEC;
        vm.pid = launch(&c, dir, "restore.log");
        snprintf(path, sizeof(path), "%s/ttya", dir);
        vm.con = (struct console){.fd = connect_console(path, vm.pid, deadline, 200)};
        if (vm.con.fd < 0) {
            failed = "no console after restore";
        } else if (kind == QEMU && !qemu_continue(&vm, dir, deadline, why, sizeof(why))) {
            failed = why;
        } else if (!await_pong(&vm, deadline, &answered)) {
            failed = "no pong after restore";
        } else {
            restore_s = (double)(answered - t0) / 1e9;
            restore_cpu = proc_cpu_s(vm.pid);
            rss = proc_status_mib(vm.pid, "VmHWM");
            drain(&vm);
            snprintf(cmd, sizeof(cmd), "mem check %u", seed);
            if (!guest_command(&vm, cmd, "mem check ok", now_ns() + 120 * SEC, out, sizeof(out),
                               why, sizeof(why)))
                failed = why;
            else if (run == 1)
                printf("    %s %u MiB restored guest: %s\n", who, mem_mib, out);
        }
    }
    if (failed) {
        fprintf(stderr, "bench: %s %u MiB run %d failed: %s (last line: %s)\n", who, mem_mib, run,
                failed, vm.con.last[0] ? vm.con.last : "none");
        show_log(dir, "save.log");
        show_log(dir, "restore.log");
        note(cell, "%s run %d: %s", who, run, failed);
        printf("  %s %u MiB run %d: FAILED, left out: %s\n", who, mem_mib, run, failed);
    } else {
        struct series *m = cell->m;
        raw_result("snapshot",
                   "{\"commit\":\"%s\",\"time\":%lld,\"vmm\":\"%s\",\"memory_mib\":%u,"
                   "\"run\":%d,\"save_s\":%.4f,\"restore_s\":%.4f,\"file_bytes\":%lld,"
                   "\"allocated_bytes\":%lld,\"restore_rss_mib\":%.1f,\"save_cpu_s\":%.3f,"
                   "\"restore_cpu_s\":%.3f}",
                   git_commit(), (long long)time(NULL), who, mem_mib, run, save_s, restore_s,
                   (long long)st.st_size, (long long)st.st_blocks * 512, rss, save_cpu,
                   restore_cpu);
        series_add(&m[M_SAVE_S], save_s);
        series_add(&m[M_RESTORE_S], restore_s);
        series_add(&m[M_FILE_MIB], (double)st.st_size / MIB);
        series_add(&m[M_ALLOC_MIB], (double)st.st_blocks * 512.0 / MIB);
        series_add(&m[M_RSS_MIB], rss);
        series_add(&m[M_SAVE_CPU], save_cpu);
        series_add(&m[M_RESTORE_CPU], restore_cpu);
        printf("  %s %u MiB run %d: save %.2f s (CPU %.2f s), file %.0f MiB (%.0f MiB on disk), "
               "restore %.2f s (CPU %.2f s, peak RSS %.0f MiB), data checked\n",
               who, mem_mib, run, save_s, save_cpu, (double)st.st_size / MIB,
               (double)st.st_blocks * 512.0 / MIB, restore_s, restore_cpu, rss);
    }
    stop_vm(&vm);
    char rm[PATH_MAX + 16];
    snprintf(rm, sizeof(rm), "rm -rf %s", dir);
    if (system(rm) != 0)
        fprintf(stderr, "bench: could not remove %s\n", dir);
}

/* ---- Summary ---- */

static bool summarize(const struct series *s, double *med, double *lo, double *hi)
{
    return summarize_values(s->v, s->n, med, lo, hi);
}

static void print_host(const struct options *o)
{
    char model[160] = "?", line[256], qver[160] = "?", cmd[PATH_MAX + 32];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "model name", 10) == 0) {
            const char *p = strchr(line, ':');
            snprintf(model, sizeof(model), "%.150s", p ? p + 2 : line);
            model[strcspn(model, "\n")] = 0;
            break;
        }
    if (f)
        fclose(f);
    snprintf(cmd, sizeof(cmd), "%s --version 2>/dev/null", o->qemu);
    FILE *q = popen(cmd, "r");
    if (q) {
        if (!fgets(qver, sizeof(qver), q))
            snprintf(qver, sizeof(qver), "?");
        pclose(q);
    }
    qver[strcspn(qver, "\n")] = 0;
    struct utsname u;
    printf("  host: %s, %ld CPUs; kernel %s; %s; files in %s\n", model,
           sysconf(_SC_NPROCESSORS_ONLN), uname(&u) == 0 ? u.release : "?", qver, o->dir);
}

static bool parse_sizes(const char *arg, struct options *o)
{
    o->nsizes = 0;
    const char *p = arg;
    while (*p) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || v < 128 || v > 65536 || o->nsizes == MAX_SIZES)
            return false;
        o->sizes[o->nsizes++] = (unsigned)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return false;
    }
    return o->nsizes > 0;
}

int main(int argc, char **argv)
{
    struct options o = {.qemu = "qemu-system-x86_64",
                        .qemu_cpu = "host,-arch-capabilities",
                        .dir = "/var/tmp",
                        .runs = 3,
                        .nsizes = 2,
                        .sizes = {1024, 4096}};
    static const struct option opts[] = {
        {"vmm", required_argument, NULL, 'v'},      {"guest", required_argument, NULL, 'g'},
        {"qemu", required_argument, NULL, 'q'},     {"runs", required_argument, NULL, 'n'},
        {"sizes", required_argument, NULL, 's'},    {"dir", required_argument, NULL, 'd'},
        {"qemu-cpu", required_argument, NULL, 'c'}, {NULL, 0, NULL, 0},
    };
    int c;
    bool bad = false;
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
        case 's':
            bad |= !parse_sizes(optarg, &o);
            break;
        case 'd':
            o.dir = optarg;
            break;
        case 'c':
            o.qemu_cpu = optarg;
            break;
        default:
            return 2;
        }
    }
    static char vmm_path[PATH_MAX], guest_path[PATH_MAX], dir_path[PATH_MAX];
    if (o.vmm && realpath(o.vmm, vmm_path))
        o.vmm = vmm_path;
    if (o.guest && realpath(o.guest, guest_path))
        o.guest = guest_path;
    if (realpath(o.dir, dir_path))
        o.dir = dir_path;
    if (bad || !o.vmm || !o.guest || o.runs < 1 || o.runs > MAX_RUNS) {
        fprintf(stderr,
                "usage: snapshot --vmm BIN --guest ROM [--qemu BIN] [--runs N<=%d] "
                "[--sizes MIB,MIB (128..65536, up to %d)] [--dir DIR] [--qemu-cpu MODEL]\n",
                MAX_RUNS, MAX_SIZES);
        return 2;
    }
    if (access(o.vmm, X_OK) != 0)
        die("%s: not an executable", o.vmm);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const bool present[NKINDS] = {[OURS] = true, [QEMU] = true};

    printf("snapshot: save and restore of the test guest (1 vCPU) with its RAM from 64 MiB up "
           "filled with a non-zero pattern; sizes");
    for (int s = 0; s < o.nsizes; s++)
        printf(" %u", o.sizes[s]);
    printf(" MiB; %d runs, ours and QEMU alternating\n", o.runs);
    print_host(&o);
    print_commands(&o);
    print_load("before");
    for (int r = 0; r < o.runs; r++) {
        for (int s = 0; s < o.nsizes; s++) {
            enum vmm_kind order[NKINDS];
            int count = run_order(r + s, present, order);
            for (int i = 0; i < count; i++)
                run_one(order[i], &o, s, r + 1);
        }
        printf("  run %d done\n", r + 1);
    }
    print_load("after");

    printf("\n%-34s %-30s %-30s ours/qemu\n", "median (min..max) n=runs kept", "ours", "qemu");
    for (int s = 0; s < o.nsizes; s++) {
        for (int m = 0; m < NMETRICS; m++) {
            char label[80], text[NKINDS][96];
            double med[NKINDS] = {0}, lo, hi;
            bool have[NKINDS] = {false};
            snprintf(label, sizeof(label), "%u MiB %s", o.sizes[s], metric_names[m]);
            for (int k = 0; k < NKINDS; k++) {
                snprintf(text[k], sizeof(text[k]), "-");
                if (!present[k])
                    continue;
                have[k] = summarize(&cells[s][k].m[m], &med[k], &lo, &hi);
                int prec = m == M_FILE_MIB || m == M_ALLOC_MIB || m == M_RSS_MIB ? 0 : 2;
                if (have[k])
                    snprintf(text[k], sizeof(text[k]), "%.*f (%.*f..%.*f) n=%d", prec, med[k], prec,
                             lo, prec, hi, cells[s][k].m[m].n);
            }
            char ratio[32] = "-";
            if (have[OURS] && have[QEMU] && med[QEMU] > 0)
                snprintf(ratio, sizeof(ratio), "%.2f", med[OURS] / med[QEMU]);
            printf("%-34s %-30s %-30s %s\n", label, text[OURS], text[QEMU], ratio);
        }
    }
    printf("lower is better everywhere; data: every restored guest's `mem check` passed in the "
           "runs kept\n");
    bool notes = false;
    for (int s = 0; s < o.nsizes; s++)
        for (int k = 0; k < NKINDS; k++)
            if (cells[s][k].note[0]) {
                if (!notes)
                    printf("problems and notes:\n");
                notes = true;
                printf("  %u MiB: %s\n", o.sizes[s], cells[s][k].note);
            }
    return 0;
}
