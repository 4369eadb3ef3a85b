#include "common/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/log.h"

/* The filters: one per thread class, then these two. */
enum {
    FILTER_MAIN = THREAD_CLASS_COUNT,
    FILTER_SPAWNER,
    FILTER_COUNT,
};

static const char *const filter_names[FILTER_COUNT] = {
    [THREAD_VCPU] = "vcpu",   [THREAD_DEVICE_IO] = "device-io",
    [THREAD_BLOCK] = "block", [THREAD_NET_BLOCK] = "net-block",
    [FILTER_MAIN] = "main",   [FILTER_SPAWNER] = "spawner",
};

/* ioctl families by their type byte (_IOC_TYPE). */
#define IOCTL_KVM 0xAE
#define IOCTL_VHOST 0xAF
#define IOCTL_TUN 'T'     /* TUNSET*, and the terminal and FIONBIO requests */
#define IOCTL_SOCKET 0x89 /* SIOCGIFINDEX, SIOCGIFFLAGS, SIOCETHTOOL */
#define IOCTL_BLOCK 0x12  /* BLKGETSIZE64 */

static bool sandbox_on;
static struct sock_fprog filters[FILTER_COUNT];

/* Violation reports run in a signal handler: names resolved beforehand. */
#define SYSCALL_NAME_COUNT 512
static char syscall_names[SYSCALL_NAME_COUNT][24];
static uint32_t native_arch; /* AUDIT_ARCH_* of this build */
static _Thread_local char thread_name[16];
static _Thread_local int thread_filter = -1;

/* ---- Rules ---- */

static int allow(scmp_filter_ctx ctx, int nr, unsigned argc, const struct scmp_arg_cmp *args)
{
    int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, argc, args);
    if (rc < 0 && rc != -EEXIST) {
        char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
        log_error("sandbox: cannot add a rule for %s: %s", name ? name : "?", strerror(-rc));
        free(name);
        return -1;
    }
    return 0;
}

static int allow_list(scmp_filter_ctx ctx, const int *nrs, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (allow(ctx, nrs[i], 0, NULL) < 0)
            return -1;
    return 0;
}

#define ALLOW_LIST(ctx, list) allow_list(ctx, list, ARRAY_LEN(list))

/* ioctl requests of the given families only. */
static int allow_ioctls(scmp_filter_ctx ctx, const int *types, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        struct scmp_arg_cmp cmp = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, (unsigned)types[i] << 8);
        if (allow(ctx, SCMP_SYS(ioctl), 1, &cmp) < 0)
            return -1;
    }
    return 0;
}

/* socket() in the given address families only. */
static int allow_sockets(scmp_filter_ctx ctx, const int *domains, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        struct scmp_arg_cmp cmp = SCMP_A0(SCMP_CMP_EQ, (unsigned)domains[i]);
        if (allow(ctx, SCMP_SYS(socket), 1, &cmp) < 0)
            return -1;
    }
    return 0;
}

/* What every thread does: memory, locks, time, its own signals, logging to
 * stderr, ending. No executable mappings. */
static int add_base(scmp_filter_ctx ctx)
{
    static const int base[] = {
        SCMP_SYS(read),
        SCMP_SYS(write),
        SCMP_SYS(readv),
        SCMP_SYS(writev),
        SCMP_SYS(close),
        SCMP_SYS(futex),
        SCMP_SYS(exit),
        SCMP_SYS(exit_group),
        SCMP_SYS(rt_sigreturn),
        SCMP_SYS(rt_sigprocmask),
        SCMP_SYS(sigaltstack),
        SCMP_SYS(madvise),
        SCMP_SYS(munmap),
        SCMP_SYS(mremap),
        SCMP_SYS(brk),
        SCMP_SYS(clock_gettime),
        SCMP_SYS(clock_nanosleep),
        SCMP_SYS(nanosleep),
        SCMP_SYS(gettimeofday),
        SCMP_SYS(sched_yield),
        SCMP_SYS(getpid),
        SCMP_SYS(gettid),
        SCMP_SYS(tgkill),
        SCMP_SYS(set_robust_list),
        SCMP_SYS(rseq),
        SCMP_SYS(restart_syscall),
        SCMP_SYS(getrandom),
        SCMP_SYS(sched_getaffinity),
        SCMP_SYS(fstat),
        SCMP_SYS(newfstatat),
        SCMP_SYS(time),    /* without the vDSO */
        SCMP_SYS(sysinfo), /* glibc's qsort sizes its buffer by the RAM */
    };
#ifdef __SANITIZE_ADDRESS__
    /* A sanitizer's report, on whichever thread finds the error, names the
     * binary, reads the memory map and debug information, and probes
     * memory through a pipe. */
    static const int report[] = {SCMP_SYS(readlink),   SCMP_SYS(openat), SCMP_SYS(open),
                                 SCMP_SYS(getdents64), SCMP_SYS(lseek),  SCMP_SYS(pread64),
                                 SCMP_SYS(pipe2),      SCMP_SYS(pipe)};
    if (ALLOW_LIST(ctx, report) < 0)
        return -1;
#endif
    struct scmp_arg_cmp no_exec = SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);
    struct scmp_arg_cmp tcgets = SCMP_A1(SCMP_CMP_EQ, TCGETS);
    if (ALLOW_LIST(ctx, base) < 0 || allow(ctx, SCMP_SYS(mmap), 1, &no_exec) < 0 ||
        allow(ctx, SCMP_SYS(mprotect), 1, &no_exec) < 0 ||
        allow(ctx, SCMP_SYS(ioctl), 1, &tcgets) < 0) /* isatty(stderr) */
        return -1;
    return 0;
}

/* Waiting on and changing I/O loops, eventfds and timers. */
static const int loop_calls[] = {
    SCMP_SYS(epoll_wait),      SCMP_SYS(epoll_pwait),
    SCMP_SYS(epoll_ctl),       SCMP_SYS(epoll_create1),
    SCMP_SYS(eventfd2),        SCMP_SYS(timerfd_settime),
    SCMP_SYS(timerfd_gettime), SCMP_SYS(timerfd_create),
    SCMP_SYS(fcntl),           SCMP_SYS(poll),
    SCMP_SYS(ppoll),
};

/* Positioned file I/O and its flushes (block back ends, debug.out). */
static const int file_io_calls[] = {
    SCMP_SYS(pread64),   SCMP_SYS(pwrite64),  SCMP_SYS(preadv),          SCMP_SYS(pwritev),
    SCMP_SYS(preadv2),   SCMP_SYS(pwritev2),  SCMP_SYS(lseek),           SCMP_SYS(fsync),
    SCMP_SYS(fdatasync), SCMP_SYS(fallocate), SCMP_SYS(sync_file_range),
};

/* Connected sockets: console and control clients, vsock proxies, netlink. */
static const int socket_io_calls[] = {
    SCMP_SYS(sendmsg),     SCMP_SYS(recvmsg),    SCMP_SYS(sendto),     SCMP_SYS(recvfrom),
    SCMP_SYS(shutdown),    SCMP_SYS(getsockopt), SCMP_SYS(setsockopt), SCMP_SYS(getsockname),
    SCMP_SYS(getpeername), SCMP_SYS(accept4),    SCMP_SYS(accept),     SCMP_SYS(connect),
};

static const int device_ioctls[] = {IOCTL_KVM, IOCTL_VHOST, IOCTL_TUN, IOCTL_SOCKET};

/* A vCPU: KVM_RUN and the device models it runs, which program KVM
 * (routes, irqfds, ioeventfds on BAR moves), vhost-net and the TAP on a
 * driver's writes, arm timers and start or pause device loops. */
static int add_vcpu(scmp_filter_ctx ctx)
{
    static const int own[] = {
        SCMP_SYS(sched_setaffinity), /* cpu_binding */
        /* A device reset drops its host connections (vsock). */
        SCMP_SYS(shutdown),
        SCMP_SYS(sendmsg),
        SCMP_SYS(sendto),
        SCMP_SYS(recvfrom),
        SCMP_SYS(recvmsg),
    };
    if (add_base(ctx) < 0 || ALLOW_LIST(ctx, own) < 0 || ALLOW_LIST(ctx, loop_calls) < 0 ||
        ALLOW_LIST(ctx, file_io_calls) < 0 ||
        allow_ioctls(ctx, device_ioctls, ARRAY_LEN(device_ioctls)) < 0)
        return -1;
    return 0;
}

/* A device's I/O loop: guest memory, TAP queues, vsock connections to the
 * mapped host addresses, interrupts through KVM, block requests done in
 * place. */
static int add_device_io(scmp_filter_ctx ctx)
{
    static const int domains[] = {AF_UNIX, AF_INET, AF_INET6};
    if (add_base(ctx) < 0 || ALLOW_LIST(ctx, loop_calls) < 0 ||
        ALLOW_LIST(ctx, file_io_calls) < 0 || ALLOW_LIST(ctx, socket_io_calls) < 0 ||
        allow_sockets(ctx, domains, ARRAY_LEN(domains)) < 0 ||
        allow_ioctls(ctx, device_ioctls, ARRAY_LEN(device_ioctls)) < 0)
        return -1;
    return 0;
}

/* A block back end's worker: file I/O, its own io_uring, and the
 * completions it runs, which interrupt the guest (KVM_IRQ_LINE,
 * KVM_SIGNAL_MSI) or wake a device loop. */
static int add_block(scmp_filter_ctx ctx)
{
    static const int uring[] = {SCMP_SYS(io_uring_setup), SCMP_SYS(io_uring_enter),
                                SCMP_SYS(io_uring_register)};
    static const int ioctls[] = {IOCTL_BLOCK, IOCTL_KVM};
    if (add_base(ctx) < 0 || ALLOW_LIST(ctx, file_io_calls) < 0 || ALLOW_LIST(ctx, uring) < 0 ||
        ALLOW_LIST(ctx, loop_calls) < 0 || allow_ioctls(ctx, ioctls, ARRAY_LEN(ioctls)) < 0)
        return -1;
    return 0;
}

/* A network disk's connection (block/nbd.c): its socket, reconnecting
 * (libnbd resolves the host again and, for TLS, reads the system's trust
 * store, so read-only opens), and completions, which interrupt the guest
 * or wake a device loop. */
static int add_net_block(scmp_filter_ctx ctx)
{
    static const int domains[] = {AF_UNIX, AF_INET, AF_INET6, AF_VSOCK};
    static const int ioctls[] = {IOCTL_KVM, IOCTL_TUN /* FIONBIO */};
    /* sendmmsg: glibc's resolver sends its A and AAAA queries at once;
     * access: libnbd checks the TLS certificate files it will read. */
    static const int own[] = {SCMP_SYS(socketpair), SCMP_SYS(sendmmsg),  SCMP_SYS(uname),
                              SCMP_SYS(getuid),     SCMP_SYS(geteuid),   SCMP_SYS(lseek),
                              SCMP_SYS(statx),      SCMP_SYS(stat),      SCMP_SYS(access),
                              SCMP_SYS(faccessat),  SCMP_SYS(faccessat2)};
    struct scmp_arg_cmp read_only =
        SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND, O_RDONLY);
    if (add_base(ctx) < 0 || ALLOW_LIST(ctx, loop_calls) < 0 ||
        ALLOW_LIST(ctx, socket_io_calls) < 0 || ALLOW_LIST(ctx, own) < 0 ||
        allow_sockets(ctx, domains, ARRAY_LEN(domains)) < 0 ||
        allow(ctx, SCMP_SYS(openat), 1, &read_only) < 0 ||
        allow_ioctls(ctx, ioctls, ARRAY_LEN(ioctls)) < 0)
        return -1;
    /* glibc's getaddrinfo asks netlink for the host's addresses to sort
     * several results; without it, it keeps their order. */
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                              SCMP_A0(SCMP_CMP_EQ, AF_NETLINK));
    if (rc < 0) {
        log_error("sandbox: cannot add the netlink rule: %s", strerror(-rc));
        return -1;
    }
    return 0;
}

/* The main thread after set-up: its loop (console, control socket,
 * signals, TAP link events), snapshots (new files, machine state), resets,
 * halting and tearing down (unlinking its sockets and instance record). */
static int add_main(scmp_filter_ctx ctx)
{
    static const int files[] = {
        SCMP_SYS(openat),     SCMP_SYS(unlink),    SCMP_SYS(unlinkat),   SCMP_SYS(rename),
        SCMP_SYS(renameat),   SCMP_SYS(renameat2), SCMP_SYS(linkat),     SCMP_SYS(ftruncate),
        SCMP_SYS(fchmod),     SCMP_SYS(statx),     SCMP_SYS(stat),       SCMP_SYS(lstat),
        SCMP_SYS(getdents64), SCMP_SYS(readlink),  SCMP_SYS(readlinkat), SCMP_SYS(getcwd),
        SCMP_SYS(flock),      SCMP_SYS(umask),     SCMP_SYS(dup),        SCMP_SYS(dup3),
        SCMP_SYS(bind),       SCMP_SYS(listen),    SCMP_SYS(signalfd4),  SCMP_SYS(pipe2),
        SCMP_SYS(getuid),     SCMP_SYS(geteuid),   SCMP_SYS(uname),      SCMP_SYS(fsync),
        SCMP_SYS(msync),      SCMP_SYS(mincore),
    };
    static const int domains[] = {AF_UNIX, AF_NETLINK, AF_INET, AF_INET6};
    static const int ioctls[] = {IOCTL_KVM, IOCTL_VHOST, IOCTL_TUN, IOCTL_SOCKET, IOCTL_BLOCK};
#ifdef __SANITIZE_ADDRESS__
    /* The leak check at exit stops the threads from a tracer task it
     * clones off the main thread, which then ptraces them. */
    static const int leak_check[] = {
        SCMP_SYS(prctl),        SCMP_SYS(clone), SCMP_SYS(ptrace), SCMP_SYS(wait4),
        SCMP_SYS(rt_sigaction), SCMP_SYS(kill),  SCMP_SYS(open),   SCMP_SYS(getdents),
        SCMP_SYS(waitid),       SCMP_SYS(pipe),  SCMP_SYS(exit),   SCMP_SYS(getppid),
    };
    if (ALLOW_LIST(ctx, leak_check) < 0)
        return -1;
#endif
    if (add_base(ctx) < 0 || ALLOW_LIST(ctx, loop_calls) < 0 ||
        ALLOW_LIST(ctx, file_io_calls) < 0 || ALLOW_LIST(ctx, socket_io_calls) < 0 ||
        ALLOW_LIST(ctx, files) < 0 || allow_sockets(ctx, domains, ARRAY_LEN(domains)) < 0 ||
        allow_ioctls(ctx, ioctls, ARRAY_LEN(ioctls)) < 0)
        return -1;
    return 0;
}

/* The spawner creates threads (clone with CLONE_THREAD; clone3, whose flags
 * a filter cannot see, answers ENOSYS so that libc falls back to clone),
 * which name themselves and enter their own filter under this one: it is
 * the union of the classes' lists plus that. */
static int add_spawner(scmp_filter_ctx ctx)
{
    struct scmp_arg_cmp thread = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD);
    struct scmp_arg_cmp set_name = SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME);
    struct scmp_arg_cmp no_new_privs = SCMP_A0(SCMP_CMP_EQ, PR_SET_NO_NEW_PRIVS);
    struct scmp_arg_cmp set_filter = SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER);
    if (add_vcpu(ctx) < 0 || add_device_io(ctx) < 0 || add_block(ctx) < 0 ||
        add_net_block(ctx) < 0 || allow(ctx, SCMP_SYS(clone), 1, &thread) < 0 ||
        allow(ctx, SCMP_SYS(prctl), 1, &set_name) < 0 ||
        allow(ctx, SCMP_SYS(prctl), 1, &no_new_privs) < 0 ||
        allow(ctx, SCMP_SYS(seccomp), 1, &set_filter) < 0)
        return -1;
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (rc < 0) {
        log_error("sandbox: cannot add the clone3 rule: %s", strerror(-rc));
        return -1;
    }
    return 0;
}

static int (*const filter_rules[FILTER_COUNT])(scmp_filter_ctx) = {
    [THREAD_VCPU] = add_vcpu,   [THREAD_DEVICE_IO] = add_device_io,
    [THREAD_BLOCK] = add_block, [THREAD_NET_BLOCK] = add_net_block,
    [FILTER_MAIN] = add_main,   [FILTER_SPAWNER] = add_spawner,
};

/* ---- Compiling and entering filters ---- */

/* The filter as BPF, compiled once: a thread enters it with one system
 * call, without libseccomp's allocations. */
static int compile(unsigned index, struct sock_fprog *out)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
    if (!ctx) {
        log_error("sandbox: seccomp_init failed");
        return -1;
    }
    int rc = -1, fd = -1;
    if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRAP) < 0 ||
        seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) < 0 || filter_rules[index](ctx) < 0)
        goto out;
    /* Most frequent first on the hot paths. */
    seccomp_syscall_priority(ctx, SCMP_SYS(ioctl), 255);
    seccomp_syscall_priority(ctx, SCMP_SYS(epoll_wait), 254);
    seccomp_syscall_priority(ctx, SCMP_SYS(io_uring_enter), 254);
    fd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
    struct stat st;
    if (fd < 0 || seccomp_export_bpf(ctx, fd) < 0 || fstat(fd, &st) < 0 || st.st_size <= 0 ||
        st.st_size % (off_t)sizeof(struct sock_filter) != 0) {
        log_error("sandbox: cannot compile the %s filter", filter_names[index]);
        goto out;
    }
    struct sock_filter *prog = malloc((size_t)st.st_size);
    if (!prog || pread(fd, prog, (size_t)st.st_size, 0) != st.st_size) {
        free(prog);
        log_error("sandbox: cannot read back the %s filter", filter_names[index]);
        goto out;
    }
    out->filter = prog;
    out->len = (unsigned short)((size_t)st.st_size / sizeof(struct sock_filter));
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    return rc;
}

static int enter_filter(int index, const char *name)
{
    snprintf(thread_name, sizeof(thread_name), "%s", name);
    sigset_t sys;
    sigemptyset(&sys);
    sigaddset(&sys, SIGSYS);
    /* A blocked SIGSYS would kill without the report. */
    pthread_sigmask(SIG_UNBLOCK, &sys, NULL);
    if (!sandbox_on)
        return 0;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filters[index]) < 0)
        return -errno;
    thread_filter = index;
    return 0;
}

int sandbox_enter_thread(enum thread_class cls, const char *name)
{
    return enter_filter((int)cls, name);
}

static int enter_spawner(void)
{
    int rc = enter_filter(FILTER_SPAWNER, "spawner");
    if (rc < 0)
        log_error("sandbox: cannot enter the spawner filter: %s", strerror(-rc));
    return rc;
}

/* ---- Violations ---- */

static size_t put_str(char *buf, size_t at, size_t cap, const char *s)
{
    while (*s && at < cap)
        buf[at++] = *s++;
    return at;
}

static size_t put_uint(char *buf, size_t at, size_t cap, unsigned long v, unsigned min_digits)
{
    char digits[24];
    unsigned n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < sizeof(digits));
    while (n < min_digits && n < sizeof(digits))
        digits[n++] = '0';
    while (n && at < cap)
        buf[at++] = digits[--n];
    return at;
}

static size_t put_hex(char *buf, size_t at, size_t cap, unsigned long v)
{
    char digits[16];
    unsigned n = 0;
    do {
        digits[n++] = "0123456789abcdef"[v & 0xf];
        v >>= 4;
    } while (v && n < sizeof(digits));
    while (n && at < cap)
        buf[at++] = digits[--n];
    return at;
}

/* Async-signal-safe: formats into a stack buffer, one write, _exit. */
static void on_sigsys(int sig, siginfo_t *info, void *ucontext)
{
    char line[256];
    size_t cap = sizeof(line) - 1, n = 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long day_s = (unsigned long)ts.tv_sec % 86400;
    n = put_uint(line, n, cap, day_s / 3600, 2);
    n = put_str(line, n, cap, ":");
    n = put_uint(line, n, cap, day_s / 60 % 60, 2);
    n = put_str(line, n, cap, ":");
    n = put_uint(line, n, cap, day_s % 60, 2);
    n = put_str(line, n, cap, ".");
    n = put_uint(line, n, cap, (unsigned long)ts.tv_nsec / 1000000, 3);
    n = put_str(line, n, cap, " CRIT sandbox: thread ");
    n = put_str(line, n, cap, thread_name[0] ? thread_name : "?");
    n = put_str(line, n, cap, " (");
    n = put_str(line, n, cap, thread_filter >= 0 ? filter_names[thread_filter] : "no");
    n = put_str(line, n, cap, " filter) made the forbidden system call ");
    int nr = info->si_syscall;
    bool native = info->si_arch == native_arch;
    if (native && nr >= 0 && nr < SYSCALL_NAME_COUNT && syscall_names[nr][0])
        n = put_str(line, n, cap, syscall_names[nr]);
    else
        n = put_str(line, n, cap, native ? "unknown" : "of another ABI");
    n = put_str(line, n, cap, " (");
    n = put_uint(line, n, cap, (unsigned long)(unsigned)nr, 1);
#ifdef __x86_64__
    /* The first arguments tell an ioctl's request or a socket's family. */
    const greg_t *regs = ((const ucontext_t *)ucontext)->uc_mcontext.gregs;
    const greg_t args[3] = {regs[REG_RDI], regs[REG_RSI], regs[REG_RDX]};
    n = put_str(line, n, cap, ", arguments");
    for (unsigned i = 0; i < ARRAY_LEN(args); i++) {
        n = put_str(line, n, cap, " 0x");
        n = put_hex(line, n, cap, (unsigned long)args[i]);
    }
#endif
    n = put_str(line, n, cap, "); ending the process");
    line[n++] = '\n';
    ssize_t unused = write(STDERR_FILENO, line, n);
    (void)unused;
    (void)sig;
    (void)ucontext;
    _exit(SANDBOX_EXIT_CODE);
}

int sandbox_init(void)
{
    if (sandbox_on)
        return 0;
    native_arch = seccomp_arch_native();
    for (int nr = 0; nr < SYSCALL_NAME_COUNT; nr++) {
        char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
        if (name)
            snprintf(syscall_names[nr], sizeof(syscall_names[nr]), "%s", name);
        free(name);
    }
    for (unsigned i = 0; i < FILTER_COUNT; i++)
        if (!filters[i].filter && compile(i, &filters[i]) < 0)
            return -1;
    /* glibc's malloc counts the CPUs (opening /sys) when a thread first
     * needs a ninth arena; a filtered thread cannot open: fix the limit
     * now, at glibc's default of eight arenas per CPU. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    mallopt(M_ARENA_MAX, (int)(8 * (cpus > 0 ? cpus : 2)));
    /* Shrinking a thread arena's heap makes glibc read
     * /proc/sys/vm/overcommit_memory the first time (a vCPU freeing memory
     * on a guest reboot did, and was killed). Those heaps are at most 64 MiB,
     * so with the trim threshold at 64 MiB they are never shrunk; the main
     * arena trims without that file, and big blocks are mmap'd and unmapped
     * as before. */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigfillset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) < 0) {
        log_error("sandbox: sigaction(SIGSYS): %s", strerror(errno));
        return -1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        log_error("sandbox: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
        return -1;
    }
    sandbox_on = true;
    int rc = thread_spawner_start(enter_spawner);
    if (rc < 0) {
        sandbox_on = false;
        log_error("sandbox: cannot start the spawner thread: %s", strerror(-rc));
        return -1;
    }
    return 0;
}

int sandbox_enter_main(void)
{
    if (!sandbox_on)
        return 0;
    int rc = enter_filter(FILTER_MAIN, "main");
    if (rc < 0) {
        log_error("sandbox: cannot enter the main thread's filter: %s", strerror(-rc));
        return -1;
    }
    log_info("sandbox: seccomp filters installed: main, spawner, vcpu, device-io, block, "
             "net-block (--no-seccomp turns them off)");
    return 0;
}
