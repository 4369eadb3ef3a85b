/* The shared UNIX listener (common/unix_listener.h), as ./ttya, the control
 * socket and vsock's uds_path use it: the socket's mode does not depend on
 * the umask; a socket another process listens on is refused with an error
 * naming that process, and that process never sees a connection (a console
 * would give its client up); one listening in another network namespace
 * (invisible to sock_diag) is refused too; a stale socket is replaced;
 * files, symlinks and directories are left alone; no temporary name is left
 * behind; at close only our own socket is unlinked. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/unix_listener.h"
#include "stderr_capture.h"
#include "support/prereq.h"

struct fixture {
    char dir[64];
    char path[96];
    pid_t child;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/pst-listener-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/ttya", f->dir);
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->child > 0) {
        kill(f->child, SIGKILL);
        waitpid(f->child, NULL, 0);
    }
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static int connect_to(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Only the names the test made: nothing temporary left. */
static void assert_dir_holds_only(struct fixture *f, const char *name)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "test \"$(ls -A %s)\" = \"%s\"", f->dir, name);
    assert_int_equal(system(cmd), 0);
}

static void test_mode_does_not_follow_the_umask(void **state)
{
    struct fixture *f = *state;
    struct unix_listener l;
    mode_t old = umask(0);
    int r = unix_listener_open(&l, f->path, 0600, "console");
    umask(old);
    assert_int_equal(r, 0);
    struct stat st;
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(umask(old), old); /* restored */
    assert_dir_holds_only(f, "ttya");
    int fd = connect_to(f->path);
    assert_true(fd >= 0);
    close(fd);
    unix_listener_close(&l);
    assert_int_equal(lstat(f->path, &st), -1);
    assert_dir_holds_only(f, "");
}

/* A child listening at the path (in a new network namespace if asked). It
 * reports over the pipe whether anyone connected to it before it was
 * told to look. */
static pid_t spawn_listener(struct fixture *f, bool other_netns, int *report)
{
    int ready[2], look[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(look), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(look[1]);
        char status = 'x';
        if (other_netns && unshare(CLONE_NEWNET) < 0) {
            status = 'n';
            if (write(ready[1], &status, 1) != 1)
                _exit(1);
            _exit(0);
        }
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", f->path);
        if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(s, 4) < 0)
            _exit(2);
        status = 'r';
        if (write(ready[1], &status, 1) != 1)
            _exit(3);
        if (read(look[0], &status, 1) != 1)
            _exit(4);
        int c = accept(s, NULL, NULL);
        status = c >= 0 ? 'c' : 'q'; /* c: someone connected; q: quiet */
        if (write(ready[1], &status, 1) != 1)
            _exit(5);
        _exit(0);
    }
    close(ready[1]);
    close(look[0]);
    char status;
    assert_int_equal(read(ready[0], &status, 1), 1);
    if (status == 'n') {
        waitpid(pid, NULL, 0);
        close(ready[0]);
        close(look[1]);
        return 0;
    }
    assert_int_equal(status, 'r');
    f->child = pid;
    report[0] = ready[0];
    report[1] = look[1];
    return pid;
}

/* Asks the child whether it saw a connection; reaps it. */
static char child_saw(struct fixture *f, int *report)
{
    char status = 'x';
    assert_int_equal(write(report[1], "?", 1), 1);
    assert_int_equal(read(report[0], &status, 1), 1);
    close(report[0]);
    close(report[1]);
    int wstatus;
    assert_int_equal(waitpid(f->child, &wstatus, 0), f->child);
    f->child = 0;
    return status;
}

static void test_live_socket_refused_naming_its_owner_untouched(void **state)
{
    struct fixture *f = *state;
    int report[2];
    pid_t owner = spawn_listener(f, false, report);
    struct stat before, after;
    assert_int_equal(lstat(f->path, &before), 0);
    struct unix_listener l;
    capture_stderr();
    int r = unix_listener_open(&l, f->path, 0600, "console");
    char *err = captured_stderr();
    assert_int_equal(r, -1);
    char want[64];
    snprintf(want, sizeof(want), "(listening: pid %d: ", (int)owner);
    assert_non_null(strstr(err, "console"));
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "is a socket someone listens on; refusing to replace it"));
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "test_unix_listener")); /* its command line */
    assert_int_equal(lstat(f->path, &after), 0);
    assert_true(before.st_ino == after.st_ino && before.st_dev == after.st_dev);
    assert_dir_holds_only(f, "ttya");
    /* Asked of the kernel, not by connecting: the owner saw nobody. */
    assert_int_equal(child_saw(f, report), 'q');
}

/* sock_diag lists one network namespace; a socket file is reachable from
 * all: the probe then connects, and still refuses. */
static void test_live_socket_of_another_netns_refused(void **state)
{
    struct fixture *f = *state;
    int report[2];
    pid_t owner = spawn_listener(f, true, report);
    if (!owner)
        prerequisite_missing("cannot make a network namespace (needs root)");
    struct unix_listener l;
    capture_stderr();
    int r = unix_listener_open(&l, f->path, 0600, "console");
    char *err = captured_stderr();
    assert_int_equal(r, -1);
    assert_non_null(strstr(err, "is a socket someone listens on; refusing to replace it"));
    char want[64];
    snprintf(want, sizeof(want), "(listening: pid %d: ", (int)owner);
    assert_non_null(strstr(err, want)); /* from SO_PEERCRED */
    assert_dir_holds_only(f, "ttya");
    assert_int_equal(child_saw(f, report), 'c');
}

static void test_stale_socket_replaced(void **state)
{
    struct fixture *f = *state;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", f->path);
    assert_int_equal(bind(s, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(s, 1), 0);
    close(s); /* what a killed VM leaves */
    struct stat stale, now;
    assert_int_equal(lstat(f->path, &stale), 0);
    struct unix_listener l;
    assert_int_equal(unix_listener_open(&l, f->path, 0600, "console"), 0);
    assert_int_equal(lstat(f->path, &now), 0);
    assert_true(S_ISSOCK(now.st_mode));
    assert_true(now.st_ino != stale.st_ino);
    assert_dir_holds_only(f, "ttya");
    int fd = connect_to(f->path);
    assert_true(fd >= 0);
    close(fd);
    unix_listener_close(&l);
    assert_dir_holds_only(f, "");
}

static void test_files_links_and_directories_left_alone(void **state)
{
    struct fixture *f = *state;
    char target[128];
    snprintf(target, sizeof(target), "%s/target", f->dir);
    struct unix_listener l;
    int r;
    char *err;

    int fd = open(f->path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "precious", 8), 8);
    close(fd);
    capture_stderr();
    r = unix_listener_open(&l, f->path, 0600, "console");
    err = captured_stderr();
    assert_int_equal(r, -1);
    assert_non_null(strstr(err, "exists and is not a socket; refusing to replace it"));
    struct stat st;
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISREG(st.st_mode) && st.st_size == 8);
    assert_dir_holds_only(f, "ttya");
    unlink(f->path);

    assert_int_equal(symlink(target, f->path), 0); /* dangling: bind would create target */
    capture_stderr();
    r = unix_listener_open(&l, f->path, 0600, "console");
    err = captured_stderr();
    assert_int_equal(r, -1);
    assert_non_null(strstr(err, "exists and is not a socket"));
    assert_int_equal(lstat(target, &st), -1);
    assert_dir_holds_only(f, "ttya");
    unlink(f->path);

    assert_int_equal(mkdir(f->path, 0700), 0);
    capture_stderr();
    r = unix_listener_open(&l, f->path, 0600, "console");
    err = captured_stderr();
    assert_int_equal(r, -1);
    assert_non_null(strstr(err, "exists and is not a socket"));
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    rmdir(f->path);
}

/* Close unlinks our socket only: one put there since is moved back. */
static void test_close_removes_only_our_socket(void **state)
{
    struct fixture *f = *state;
    struct unix_listener l;
    assert_int_equal(unix_listener_open(&l, f->path, 0600, "console"), 0);
    unlink(f->path);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", f->path);
    assert_int_equal(bind(s, (struct sockaddr *)&addr, sizeof(addr)), 0);
    struct stat theirs, st;
    assert_int_equal(lstat(f->path, &theirs), 0);
    unix_listener_close(&l);
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(st.st_ino == theirs.st_ino);
    assert_dir_holds_only(f, "ttya");
    close(s);
    unlink(f->path);

    assert_int_equal(unix_listener_open(&l, f->path, 0600, "console"), 0);
    unix_listener_close(&l);
    assert_int_equal(lstat(f->path, &st), -1);
    assert_dir_holds_only(f, "");
}

/* A directory so long that it and a temporary name do not fit in sun_path,
 * while the path itself does: the socket is bound through /proc/self/fd. */
static void test_long_directory(void **state)
{
    struct fixture *f = *state;
    char dir[128], path[140];
    int n = snprintf(dir, sizeof(dir), "%s/", f->dir);
    memset(dir + n, 'd', 100 - (size_t)n);
    dir[100] = '\0';
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof(path), "%s/s", dir);
    assert_true(strlen(path) < sizeof(((struct sockaddr_un *)0)->sun_path));
    struct unix_listener l;
    assert_int_equal(unix_listener_open(&l, path, 0600, "console"), 0);
    int fd = connect_to(path);
    assert_true(fd >= 0);
    close(fd);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "test \"$(ls -A %s)\" = s", dir);
    assert_int_equal(system(cmd), 0);
    unix_listener_close(&l);
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A %s)\"", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mode_does_not_follow_the_umask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_socket_refused_naming_its_owner_untouched, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_live_socket_of_another_netns_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_socket_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_links_and_directories_left_alone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_removes_only_our_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_directory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
