/* The instance record (core/instance.h) against another local user and
 * against processes that are not ours: a records directory someone else
 * made, opened up or replaced by a symlink is refused; a record that is a
 * symlink is never followed; a lock held by something other than a
 * propolis-standalone of this name (a `sleep`, ours or another user's, or
 * one whose record names someone else) is never signalled; a stale pid,
 * since reused by an unrelated process, is not killed; the legitimate
 * take-over (same executable, the record names it) still stops the owner.
 * The other user is uid 65534 (nobody), reached with setresuid: these tests
 * need root, which CI has. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/instance.h"
#include "stderr_capture.h"
#include "support/prereq.h"

#define OTHER_UID 65534 /* nobody */
#define MAX_CHILDREN 8

struct fixture {
    char base[64];    /* like /tmp: mode 01777, so the other user can create in it */
    char run[96];     /* PROPOLIS_RUNTIME_DIR */
    char record[128]; /* run/vm.pid */
    char victim[96];  /* a file of ours another user would like us to overwrite */
    pid_t children[MAX_CHILDREN];
    unsigned nchildren;
};

static void require_root(void)
{
    if (geteuid() != 0)
        prerequisite_missing("root, to act as another user (uid %d) with setresuid", OTHER_UID);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->base, sizeof(f->base), "/tmp/pst-instance-XXXXXX");
    assert_non_null(mkdtemp(f->base));
    assert_int_equal(chmod(f->base, 01777), 0);
    snprintf(f->run, sizeof(f->run), "%s/run", f->base);
    snprintf(f->record, sizeof(f->record), "%s/vm.pid", f->run);
    snprintf(f->victim, sizeof(f->victim), "%s/victim", f->base);
    int fd = open(f->victim, O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "precious\n", 9), 9);
    close(fd);
    setenv("PROPOLIS_RUNTIME_DIR", f->run, 1);
    unsetenv("XDG_RUNTIME_DIR");
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
    for (unsigned i = 0; i < f->nchildren; i++) {
        kill(f->children[i], SIGKILL);
        waitpid(f->children[i], NULL, 0);
    }
    nftw(f->base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    unsetenv("PROPOLIS_RUNTIME_DIR");
    free(f);
    return 0;
}

static void become_other_user(void)
{
    if (setresgid(OTHER_UID, OTHER_UID, OTHER_UID) < 0 ||
        setresuid(OTHER_UID, OTHER_UID, OTHER_UID) < 0)
        _exit(100);
}

/* Runs fn as the other user in a child; asserts it succeeded. */
static void as_other_user(int (*fn)(struct fixture *f), struct fixture *f)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        become_other_user();
        _exit(fn(f) == 0 ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Without reaping it: the teardown's kill must never reach a reused pid. */
static bool alive(pid_t pid)
{
    siginfo_t info = {0};
    return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == 0;
}

/* Read in a child: a close() in this process of any descriptor of the
 * record would drop the POSIX lock instance_acquire holds here. */
static char *read_text(const char *path)
{
    static char buf[256];
    int pipe_fds[2];
    assert_int_equal(pipe(pipe_fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pipe_fds[0]);
        int fd = open(path, O_RDONLY | O_NOFOLLOW);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        _exit(n >= 0 && write(pipe_fds[1], buf, (size_t)n) == n ? 0 : 1);
    }
    close(pipe_fds[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(pipe_fds[0], buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    close(pipe_fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    buf[len] = '\0';
    return buf;
}

static void write_record(int fd, pid_t pid)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "%d\n", (int)pid);
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(pwrite(fd, text, (size_t)n, 0), n);
}

static void assert_record_names(struct fixture *f, pid_t pid)
{
    char want[32];
    snprintf(want, sizeof(want), "%d\n", (int)pid);
    assert_string_equal(read_text(f->record), want);
}

static void assert_victim_untouched(struct fixture *f)
{
    struct stat st;
    assert_int_equal(lstat(f->victim, &st), 0);
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_string_equal(read_text(f->victim), "precious\n");
}

static pid_t spawn_sleep(struct fixture *f)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execlp("sleep", "sleep", "60", (char *)NULL);
        _exit(127);
    }
    f->children[f->nchildren++] = pid;
    return pid;
}

enum holder_kind {
    HOLDER_SLEEP,        /* locks, then becomes `sleep` (exec keeps the lock) */
    HOLDER_SAME_PROGRAM, /* locks and stays this very executable */
};

/* A child holding the POSIX record lock on the record (as uid), with
 * recorded (0: its own pid) written in it. Returns once the lock is held
 * and, for HOLDER_SLEEP, the exec is done. */
static pid_t spawn_lock_holder(struct fixture *f, enum holder_kind kind, uid_t uid, pid_t recorded)
{
    mkdir(f->run, 0700);
    int fd = open(f->record, O_RDWR | O_CREAT | O_NOFOLLOW, 0600); /* no CLOEXEC: kept by exec */
    assert_true(fd >= 0);
    int ready[2];
    assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        if (uid != 0)
            become_other_user();
        /* The record lock, plus the flock the record used to take: so the
         * old code meets the same holder and its failures show. */
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fcntl(fd, F_SETLK, &fl) < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
            _exit(101);
        char text[32];
        int n = snprintf(text, sizeof(text), "%d\n", (int)(recorded ? recorded : getpid()));
        if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)n, 0) != n)
            _exit(102);
        if (kind == HOLDER_SLEEP) {
            execlp("sleep", "sleep", "60", (char *)NULL); /* closes ready[1]: the parent goes on */
            _exit(127);
        }
        if (write(ready[1], "x", 1) != 1)
            _exit(103);
        for (;;)
            pause();
    }
    close(ready[1]);
    close(fd); /* the parent holds no lock on it, so nothing is released */
    char byte;
    ssize_t n = read(ready[0], &byte, 1); /* 1: locked; 0: exec'd (or died) */
    close(ready[0]);
    assert_true(n >= 0);
    assert_true(alive(pid));
    f->children[f->nchildren++] = pid;
    return pid;
}

/* ---- the directory's path ---- */

static void test_record_dir_rule(void **state)
{
    require_root();
    char dir[512];
    unsetenv("PROPOLIS_RUNTIME_DIR");
    assert_int_equal(instance_record_dir(dir, sizeof(dir)), 0);
    assert_string_equal(dir, "/run/propolis-standalone");
    setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
    assert_int_equal(instance_record_dir(dir, sizeof(dir)), 0);
    assert_string_equal(dir, "/run/user/1000/propolis-standalone");
    unsetenv("XDG_RUNTIME_DIR");
    /* Not root, no XDG_RUNTIME_DIR: the shared /tmp, which is why the
     * directory is checked before use. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        become_other_user();
        char d[512];
        _exit(instance_record_dir(d, sizeof(d)) == 0 &&
                      strcmp(d, "/tmp/propolis-standalone-65534") == 0
                  ? 0
                  : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(instance_record_dir(dir, 10), -1); /* does not fit */
}

/* ---- a directory of ours: the record, its lock, its removal ---- */

static void test_acquire_makes_private_dir_and_release_removes_record(void **state)
{
    require_root();
    struct fixture *f = *state;
    struct instance inst;
    assert_int_equal(instance_acquire(&inst, "vm"), 0);
    struct stat st;
    assert_int_equal(lstat(f->run, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(st.st_uid, geteuid());
    assert_record_names(f, getpid());
    /* A POSIX record lock: another process's F_GETLK names us. */
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(f->record, O_RDWR);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        _exit(fd >= 0 && fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type == F_WRLCK && fl.l_pid == parent
                  ? 0
                  : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    instance_release(&inst);
    assert_int_equal(lstat(f->record, &st), -1);
    assert_int_equal(errno, ENOENT);
}

/* instance_acquire(inst, "vm") with its stderr captured: asserts that it
 * returns want (0, or -1 for a refusal); returns what it printed. */
static char *acquire_captured(struct instance *inst, int want)
{
    capture_stderr();
    int r = instance_acquire(inst, "vm");
    char *err = captured_stderr();
    assert_int_equal(r, want);
    return err;
}

/* A refusal whose message names path and says why; returns the message. */
static char *assert_acquire_refused(const char *path, const char *why)
{
    struct instance inst;
    char *err = acquire_captured(&inst, -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, why));
    return err;
}

/* ---- (c) the directory: another user's, opened up, or a symlink ---- */

static int make_run_dir_0700(struct fixture *f)
{
    return mkdir(f->run, 0700);
}

static void test_dir_made_by_another_user_refused(void **state)
{
    require_root();
    struct fixture *f = *state;
    as_other_user(make_run_dir_0700, f);
    assert_acquire_refused(f->run, "belongs to uid 65534, not to us");
    struct stat st;
    assert_int_equal(lstat(f->record, &st), -1); /* nothing made in it */
}

/* (a) the reproduced attack: another user's directory holding vm.pid as a
 * symlink to a file of ours. */
static int make_run_dir_with_symlinked_record(struct fixture *f)
{
    if (mkdir(f->run, 0777) < 0 || chmod(f->run, 0777) < 0)
        return -1;
    return symlink(f->victim, f->record);
}

static void test_symlinked_record_in_another_users_dir_refused(void **state)
{
    require_root();
    struct fixture *f = *state;
    as_other_user(make_run_dir_with_symlinked_record, f);
    assert_acquire_refused(f->run, "refusing to use it");
    assert_victim_untouched(f);
    struct stat st;
    assert_int_equal(lstat(f->record, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
}

static void test_dir_open_to_others_refused(void **state)
{
    require_root();
    struct fixture *f = *state;
    static const mode_t modes[] = {0777, 0750, 0701, 0770};
    for (unsigned i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        rmdir(f->run);
        assert_int_equal(mkdir(f->run, 0700), 0);
        assert_int_equal(chmod(f->run, modes[i]), 0);
        char want[32];
        snprintf(want, sizeof(want), "has mode %04o", (unsigned)modes[i]);
        char *err = assert_acquire_refused(f->run, want);
        assert_non_null(strstr(err, "it must be 0700"));
        struct stat st;
        assert_int_equal(lstat(f->record, &st), -1);
    }
    /* Once it is 0700, it is used. */
    assert_int_equal(chmod(f->run, 0700), 0);
    struct instance inst;
    assert_int_equal(instance_acquire(&inst, "vm"), 0);
    instance_release(&inst);
}

static void test_dir_symlink_or_file_refused(void **state)
{
    require_root();
    struct fixture *f = *state;
    char real[128], real_record[160];
    snprintf(real, sizeof(real), "%s/real", f->base);
    snprintf(real_record, sizeof(real_record), "%s/vm.pid", real);
    assert_int_equal(mkdir(real, 0700), 0);
    assert_int_equal(symlink(real, f->run), 0);
    assert_acquire_refused(f->run, "is a symbolic link; refusing to follow it");
    struct stat st;
    assert_int_equal(lstat(real_record, &st), -1); /* nothing made through it */
    unlink(f->run);

    int fd = open(f->run, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_acquire_refused(f->run, "is not a directory");
}

/* ---- (a) the record itself a symlink, in a directory of ours ---- */

static void test_symlinked_record_refused(void **state)
{
    require_root();
    struct fixture *f = *state;
    assert_int_equal(mkdir(f->run, 0700), 0);
    assert_int_equal(symlink(f->victim, f->record), 0);
    assert_acquire_refused(f->record, "is a symbolic link; refusing to follow it");
    assert_victim_untouched(f);
    /* Dangling, so that following it would create the target. */
    char target[128];
    snprintf(target, sizeof(target), "%s/created", f->base);
    unlink(f->record);
    assert_int_equal(symlink(target, f->record), 0);
    struct instance inst;
    acquire_captured(&inst, -1);
    struct stat st;
    assert_int_equal(lstat(target, &st), -1);
}

/* ---- (b) a lock held by something that is not a propolis-standalone ---- */

static void assert_holder_refused(struct fixture *f, pid_t holder, const char *needle)
{
    time_t start = time(NULL);
    char who[32];
    snprintf(who, sizeof(who), "pid %d", (int)holder);
    char *err = assert_acquire_refused(f->record, who);
    assert_non_null(strstr(err, needle));
    assert_non_null(strstr(err, "refusing to signal it"));
    assert_null(strstr(err, "stopping it"));
    assert_true(time(NULL) - start < 5); /* refused, not waited on */
    usleep(100 * 1000);                  /* a signal sent would have landed */
    assert_true(alive(holder));
}

static void test_foreign_lock_holder_not_signalled(void **state)
{
    require_root();
    struct fixture *f = *state;
    pid_t holder = spawn_lock_holder(f, HOLDER_SLEEP, 0, 0);
    assert_holder_refused(f, holder, "not propolis-standalone");
    assert_record_names(f, holder);
}

static void test_other_users_lock_holder_not_signalled(void **state)
{
    require_root();
    struct fixture *f = *state;
    pid_t holder = spawn_lock_holder(f, HOLDER_SLEEP, OTHER_UID, 0);
    assert_holder_refused(f, holder, "not propolis-standalone");
    assert_record_names(f, holder);
}

/* A propolis-standalone (here: this same executable) holding the lock on a
 * record that names another process is not proven to be this instance. */
static void test_holder_whose_record_names_another_not_signalled(void **state)
{
    require_root();
    struct fixture *f = *state;
    pid_t bystander = spawn_sleep(f);
    pid_t holder = spawn_lock_holder(f, HOLDER_SAME_PROGRAM, 0, bystander);
    char needle[48];
    snprintf(needle, sizeof(needle), "but names pid %d", (int)bystander);
    assert_holder_refused(f, holder, needle);
    assert_true(alive(bystander));
}

/* ---- (d) a stale record whose pid now belongs to someone else ---- */

static void test_stale_pid_reused_not_killed(void **state)
{
    require_root();
    struct fixture *f = *state;
    pid_t reused = spawn_sleep(f);
    assert_int_equal(mkdir(f->run, 0700), 0);
    int fd = open(f->record, O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0);
    write_record(fd, reused); /* nobody holds the lock: the owner died */
    close(fd);
    struct instance inst;
    char *err = acquire_captured(&inst, 0);
    assert_null(strstr(err, "stopping it"));
    usleep(100 * 1000);
    assert_true(alive(reused));
    assert_record_names(f, getpid());
    instance_release(&inst);
}

/* ---- the legitimate take-over still works ---- */

static void test_live_owner_of_the_name_is_stopped(void **state)
{
    require_root();
    struct fixture *f = *state;
    pid_t owner = spawn_lock_holder(f, HOLDER_SAME_PROGRAM, 0, 0);
    struct instance inst;
    char *err = acquire_captured(&inst, 0);
    char want[64];
    snprintf(want, sizeof(want), "instance vm is running as pid %d: stopping it", (int)owner);
    assert_non_null(strstr(err, want));
    int status;
    assert_int_equal(waitpid(owner, &status, 0), owner);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGTERM);
    f->nchildren--; /* reaped */
    assert_record_names(f, getpid());
    instance_release(&inst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_record_dir_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acquire_makes_private_dir_and_release_removes_record,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir_made_by_another_user_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinked_record_in_another_users_dir_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dir_open_to_others_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir_symlink_or_file_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinked_record_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_lock_holder_not_signalled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_users_lock_holder_not_signalled, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_holder_whose_record_names_another_not_signalled, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stale_pid_reused_not_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_owner_of_the_name_is_stopped, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
