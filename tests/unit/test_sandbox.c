/* The seccomp sandbox: a forbidden system call from a thread of a class
 * ends the process with one log line naming the call and the thread; the
 * work a class does still runs under its filter; a thread started from a
 * filtered thread gets its own class's filter, not its creator's; the
 * io_uring rings of the block back end refuse opcodes they do not use.
 * Each sandboxed case runs in a forked child (filters cannot be undone). */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/file_internal.h"
#include "common/sandbox.h"
#include "common/thread.h"

/* How a child ended and what it wrote to stderr. */
struct child_result {
    int status;
    char err[8192];
};

/* Runs body in a child whose stderr is captured; body returns the child's
 * exit code unless the sandbox ends it first. */
static void run_child(int (*body)(void), struct child_result *out)
{
    int pipe_fds[2];
    assert_int_equal(pipe(pipe_fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pipe_fds[0]);
        dup2(pipe_fds[1], STDERR_FILENO);
        _exit(body());
    }
    close(pipe_fds[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(pipe_fds[0], out->err + len, sizeof(out->err) - 1 - len)) > 0)
        len += (size_t)n;
    out->err[len] = '\0';
    close(pipe_fds[0]);
    assert_int_equal(waitpid(pid, &out->status, 0), pid);
}

static void assert_ended_by_sandbox(const struct child_result *r, const char *report)
{
    if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != SANDBOX_EXIT_CODE ||
        !strstr(r->err, report))
        fail_msg("want exit %d and \"%s\"; got status 0x%x, stderr:\n%s", SANDBOX_EXIT_CODE, report,
                 r->status, r->err);
    /* One line, and the call it names did not go on to run. */
    assert_null(strstr(r->err, "survived"));
}

/* ---- A device I/O thread ---- */

/* What a device loop does: epoll on an eventfd, written and read. Writes
 * "work ok" to stderr when all of it ran. */
static int device_work(void)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ep < 0 || efd < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN};
    uint64_t one = 1, got = 0;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) < 0 || write(efd, &one, sizeof(one)) != 8 ||
        epoll_wait(ep, &ev, 1, 1000) != 1 || read(efd, &got, sizeof(got)) != 8 || got != 1)
        return -1;
    int unix_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (unix_fd < 0)
        return -1;
    close(unix_fd);
    close(efd);
    close(ep);
    static const char ok[] = "work ok\n";
    return write(STDERR_FILENO, ok, sizeof(ok) - 1) == sizeof(ok) - 1 ? 0 : -1;
}

static void *device_forbidden(void *arg)
{
    if (device_work() < 0)
        return NULL;
    /* A packet socket: no class opens one. */
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    fprintf(stderr, "survived: socket returned %d\n", fd);
    return NULL;
}

static int start_and_join(enum thread_class cls, const char *name, void *(*fn)(void *))
{
    pthread_t t;
    if (thread_start(&t, name, cls, 0, fn, NULL) < 0)
        return 2;
    pthread_join(t, NULL);
    return 3; /* the thread came back: the sandbox did not end us */
}

static int child_device_forbidden(void)
{
    if (sandbox_init() < 0)
        return 1;
    return start_and_join(THREAD_DEVICE_IO, "dev-test", device_forbidden);
}

static void test_forbidden_call_from_device_thread_ends_process(void **state)
{
    struct child_result r;
    run_child(child_device_forbidden, &r);
    assert_ended_by_sandbox(
        &r, "sandbox: thread dev-test (device-io filter) made the forbidden system call socket "
            "(41, arguments 0x11 0x3 0x0); ending the process"); /* AF_PACKET, SOCK_RAW */
    assert_non_null(strstr(r.err, "work ok"));
}

/* ---- The same work with the sandbox off (no filter at all) ---- */

static int child_device_unsandboxed(void)
{
    return start_and_join(THREAD_DEVICE_IO, "dev-free", device_forbidden) == 3 ? 0 : 1;
}

static void test_without_sandbox_nothing_is_filtered(void **state)
{
    struct child_result r;
    run_child(child_device_unsandboxed, &r);
    assert_true(WIFEXITED(r.status));
    assert_int_equal(WEXITSTATUS(r.status), 0);
    assert_non_null(strstr(r.err, "survived"));
    assert_null(strstr(r.err, "sandbox:"));
}

/* ---- A thread started by a filtered thread ---- */

static void *device_allowed(void *arg)
{
    int *rc = arg;
    *rc = device_work();
    return NULL;
}

/* A vCPU (no sockets in its list) starts a device loop thread, which must
 * get the device filter (sockets allowed), not the vCPU's; then the vCPU
 * tries a socket itself. */
static void *vcpu_starts_device(void *arg)
{
    pthread_t t;
    int rc = -1;
    if (thread_start(&t, "dev-child", THREAD_DEVICE_IO, 0, device_allowed, &rc) < 0)
        return NULL;
    pthread_join(t, NULL);
    if (rc != 0)
        return NULL;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    fprintf(stderr, "survived: socket returned %d\n", fd);
    return NULL;
}

static int child_vcpu_starts_device(void)
{
    if (sandbox_init() < 0)
        return 1;
    return start_and_join(THREAD_VCPU, "vcpu-test", vcpu_starts_device);
}

static void test_thread_started_from_filtered_thread_gets_its_class(void **state)
{
    struct child_result r;
    run_child(child_vcpu_starts_device, &r);
    assert_non_null(strstr(r.err, "work ok"));
    assert_ended_by_sandbox(&r, "sandbox: thread vcpu-test (vcpu filter) made the forbidden "
                                "system call socket (41, arguments 0x1 ");
}

/* ---- The main thread ---- */

static int child_main_execs(void)
{
    if (sandbox_init() < 0 || sandbox_enter_main() < 0)
        return 1;
    char *argv[] = {"/bin/true", NULL};
    execv(argv[0], argv);
    fprintf(stderr, "survived: execv: %s\n", strerror(errno));
    return 4;
}

static void test_main_filter_forbids_exec(void **state)
{
    struct child_result r;
    run_child(child_main_execs, &r);
    assert_non_null(strstr(r.err, "sandbox: seccomp filters installed"));
    assert_ended_by_sandbox(&r, "sandbox: thread main (main filter) made the forbidden system "
                                "call execve (59, arguments 0x");
}

/* ---- A sanitizer's report from a filtered thread ---- */

#ifdef __SANITIZE_ADDRESS__
static volatile size_t overflow_size = 8;

static void *device_overflows(void *arg)
{
    size_t n = overflow_size;
    volatile char *p = malloc(n);
    p[n] = 1; /* one past the end */
    free((void *)p);
    return NULL;
}

static int child_device_overflows(void)
{
    if (sandbox_init() < 0)
        return 1;
    return start_and_join(THREAD_DEVICE_IO, "dev-asan", device_overflows);
}

/* The sanitizer build's filters leave room for its report (binary name,
 * memory map, debug information), so a memory error found on a device
 * thread is reported in full rather than cut short by the sandbox. */
static void test_sanitizer_report_survives_the_filter(void **state)
{
    struct child_result r;
    run_child(child_device_overflows, &r);
    if (!strstr(r.err, "SUMMARY: AddressSanitizer: heap-buffer-overflow") ||
        !strstr(r.err, "device_overflows") || strstr(r.err, "forbidden system call"))
        fail_msg("status 0x%x, stderr:\n%s", r.status, r.err);
}
#endif

/* ---- io_uring rings of the block back end ---- */

/* Submits one SQE and returns its CQE's result. */
static int submit_one(struct io_uring *ring, struct io_uring_sqe *prepared)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe)
        return -ENOSPC;
    *sqe = *prepared;
    struct io_uring_cqe *cqe;
    if (io_uring_submit(ring) != 1 || io_uring_wait_cqe(ring, &cqe) < 0)
        return -EIO;
    int res = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    return res;
}

/* A read of the pipe p (holding "abc") runs; an OPENAT is refused with
 * -EACCES. 0 or a distinct code. */
static int ring_check(const int p[2])
{
    struct io_uring ring;
    int rc = file_uring_ring_setup(&ring);
    if (rc < 0)
        return rc == -EOPNOTSUPP || rc == -EINVAL || rc == -ENOSYS ? 77 : 10;
    char buf[3];
    struct io_uring_sqe sqe;
    memset(&sqe, 0, sizeof(sqe));
    io_uring_prep_read(&sqe, p[0], buf, sizeof(buf), 0);
    if (submit_one(&ring, &sqe) != 3 || memcmp(buf, "abc", 3) != 0)
        return 12;
    memset(&sqe, 0, sizeof(sqe));
    io_uring_prep_openat(&sqe, AT_FDCWD, "/", O_RDONLY | O_DIRECTORY, 0);
    int res = submit_one(&ring, &sqe);
    if (res != -EACCES) {
        fprintf(stderr, "openat on a restricted ring: %d\n", res);
        if (res >= 0)
            close(res);
        return 13;
    }
    io_uring_queue_exit(&ring);
    return 0;
}

static int ring_pipe[2];
static int ring_rc;

static void *block_ring_thread(void *arg)
{
    ring_rc = ring_check(ring_pipe);
    return NULL;
}

static int fill_ring_pipe(void)
{
    return pipe(ring_pipe) == 0 && write(ring_pipe[1], "abc", 3) == 3 ? 0 : -1;
}

static int child_block_ring(void)
{
    if (sandbox_init() < 0 || fill_ring_pipe() < 0)
        return 1;
    pthread_t t;
    ring_rc = 20;
    if (thread_start(&t, "blk-test", THREAD_BLOCK, 0, block_ring_thread, NULL) < 0)
        return 2;
    pthread_join(t, NULL);
    return ring_rc;
}

static void test_restricted_ring_refuses_unused_opcode(void **state)
{
    assert_int_equal(fill_ring_pipe(), 0);
    int rc = ring_check(ring_pipe);
    close(ring_pipe[0]);
    close(ring_pipe[1]);
    if (rc == 77 && !getenv("CI"))
        skip(); /* no io_uring on this kernel: the back end uses threads (CI has it) */
    assert_int_equal(rc, 0);
    /* The same from a block thread under its filter. */
    struct child_result r;
    run_child(child_block_ring, &r);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
        fail_msg("status 0x%x, stderr:\n%s", r.status, r.err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forbidden_call_from_device_thread_ends_process),
        cmocka_unit_test(test_without_sandbox_nothing_is_filtered),
        cmocka_unit_test(test_thread_started_from_filtered_thread_gets_its_class),
        cmocka_unit_test(test_main_filter_forbids_exec),
        cmocka_unit_test(test_restricted_ring_refuses_unused_opcode),
#ifdef __SANITIZE_ADDRESS__
        cmocka_unit_test(test_sanitizer_report_survives_the_filter),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
