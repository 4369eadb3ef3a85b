#include "core/instance.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proc_info.h"

#define PROPOLIS_EXE_NAME "propolis-standalone"
#define STOP_WAIT_MS 10000
#define KILL_WAIT_MS 5000
/* A new owner writes its pid right after it takes the lock. */
#define RECORD_WRITE_WAIT_MS 1000
#define ACQUIRE_ATTEMPTS 5

int instance_record_dir(char *buf, size_t len)
{
    const char *dir = getenv("PROPOLIS_RUNTIME_DIR");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;
    if (dir && *dir)
        n = snprintf(buf, len, "%s", dir);
    else if (xdg && *xdg)
        n = snprintf(buf, len, "%s/propolis-standalone", xdg);
    else if (geteuid() == 0)
        n = snprintf(buf, len, "/run/propolis-standalone");
    else
        n = snprintf(buf, len, "/tmp/propolis-standalone-%u", (unsigned)geteuid());
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* The directory, created if absent, opened without following a symlink and
 * accepted only if it is ours alone: anyone else able to write there could
 * plant a symlink as a record, or a record naming a process to kill. */
static int open_record_dir(const char *dir)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        log_error("instance records: cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (lstat(dir, &st) == 0 && S_ISLNK(st.st_mode))
            log_error("instance records: %s is a symbolic link; refusing to follow it (it must be "
                      "a directory of ours with mode 0700)",
                      dir);
        else if (err == ENOTDIR)
            log_error("instance records: %s is not a directory", dir);
        else
            log_error("instance records: %s: %s", dir, strerror(err));
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        log_error("instance records: %s: %s", dir, strerror(errno));
        close(fd);
        return -1;
    }
    if (st.st_uid != geteuid()) {
        log_error("instance records: %s belongs to uid %u, not to us (uid %u); refusing to use "
                  "it: another user may have made it",
                  dir, (unsigned)st.st_uid, (unsigned)geteuid());
        close(fd);
        return -1;
    }
    if (st.st_mode & 077) {
        log_error("instance records: %s has mode %04o; refusing to use it: it must be 0700, as "
                  "others could change our records there",
                  dir, (unsigned)(st.st_mode & 07777));
        close(fd);
        return -1;
    }
    return fd;
}

static int open_record(int dir_fd, const char *file, const char *path)
{
    int fd = openat(dir_fd, file, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == ELOOP)
            log_error("instance record %s is a symbolic link; refusing to follow it", path);
        else
            log_error("instance record %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        log_error("instance record %s is not a regular file of ours; refusing to use it", path);
        close(fd);
        return -1;
    }
    return fd;
}

static pid_t read_owner(int fd)
{
    char text[32] = {0};
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    if (n <= 0)
        return 0;
    char *end;
    long pid = strtol(text, &end, 10);
    return pid > 0 && pid <= INT_MAX && (*end == '\n' || *end == '\0') ? (pid_t)pid : 0;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct flock whole_file(short type)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    return fl;
}

/* A POSIX record lock (not flock, not an OFD lock): F_GETLK then names the
 * process holding it. */
static bool try_lock(int fd)
{
    struct flock fl = whole_file(F_WRLCK);
    return fcntl(fd, F_SETLK, &fl) == 0;
}

/* The holder of the record's lock as the kernel reports it: 0 none, -1 one
 * we cannot name (an OFD lock reports -1, a holder outside our pid
 * namespace 0), else its pid. */
static pid_t lock_holder(int fd)
{
    struct flock fl = whole_file(F_WRLCK);
    if (fcntl(fd, F_GETLK, &fl) < 0)
        return -1;
    if (fl.l_type == F_UNLCK)
        return 0;
    return fl.l_pid > 0 ? fl.l_pid : -1;
}

/* Waits up to timeout_ms for the current holder to release the lock. */
static bool wait_for_lock(int fd, unsigned timeout_ms)
{
    for (unsigned waited = 0; waited < timeout_ms; waited += 10) {
        if (try_lock(fd))
            return true;
        sleep_ms(10);
    }
    return try_lock(fd);
}

static int pidfd_of(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* Whether pid runs propolis-standalone: the same executable file as ours,
 * or one of that name (another build of it). Otherwise why says what. */
static bool runs_propolis(pid_t pid, char *why, size_t len)
{
    char link[64], exe[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(link, exe, sizeof(exe) - 1);
    if (n < 0) {
        snprintf(why, len, "its executable cannot be read (%s)", strerror(errno));
        return false;
    }
    exe[n] = '\0';
    struct stat theirs, ours;
    if (stat(link, &theirs) == 0 && stat("/proc/self/exe", &ours) == 0 &&
        theirs.st_dev == ours.st_dev && theirs.st_ino == ours.st_ino)
        return true;
    static const char deleted[] = " (deleted)"; /* rebuilt while it runs */
    size_t exe_len = (size_t)n;
    if (exe_len > sizeof(deleted) - 1 &&
        strcmp(exe + exe_len - (sizeof(deleted) - 1), deleted) == 0)
        exe[exe_len - (sizeof(deleted) - 1)] = '\0';
    const char *base = strrchr(exe, '/');
    if (strcmp(base ? base + 1 : exe, PROPOLIS_EXE_NAME) == 0)
        return true;
    proc_sanitize(exe);
    snprintf(why, len, "it runs %s, not %s", exe, PROPOLIS_EXE_NAME);
    return false;
}

/* Whether the record names holder; waits a moment for a holder that has
 * just taken the lock to write its pid. */
static bool record_names(int fd, pid_t holder, pid_t *recorded)
{
    for (unsigned waited = 0;; waited += 10) {
        *recorded = read_owner(fd);
        if (*recorded == holder || waited >= RECORD_WRITE_WAIT_MS)
            return *recorded == holder;
        sleep_ms(10);
    }
}

/* The record is locked: stops its holder if it is a live propolis-standalone
 * of this name. 1: we hold the lock now; 0: the holder went away meanwhile
 * (try again); -1: refused (logged), nothing signalled. */
static int take_over(int fd, const char *name, const char *path)
{
    pid_t holder = lock_holder(fd);
    if (holder == 0)
        return try_lock(fd) ? 1 : 0;
    if (holder < 0) {
        log_error("instance %s: the record %s is locked by a process we cannot name (in another "
                  "pid namespace, or by an open file description lock); refusing to take it over",
                  name, path);
        return -1;
    }
    int pidfd = pidfd_of(holder);
    if (pidfd < 0) {
        if (errno == ESRCH)
            return 0;
        log_error("instance %s: pid %d holds the record %s but cannot be pinned (pidfd_open: %s); "
                  "refusing to signal it",
                  name, (int)holder, path, strerror(errno));
        return -1;
    }
    /* The pidfd pins one process. If the lock's holder still has that pid
     * while the process lives, they are the same: a pid is not reused
     * before its process is gone. */
    if (lock_holder(fd) != holder || pidfd_signal(pidfd, 0) < 0) {
        close(pidfd);
        return 0;
    }
    char who[320], why[PATH_MAX + 64];
    proc_describe(holder, who, sizeof(who));
    pid_t recorded;
    if (!runs_propolis(holder, why, sizeof(why))) {
        log_error("instance %s: the record %s is locked by %s, and %s; refusing to signal it", name,
                  path, who, why);
        close(pidfd);
        return -1;
    }
    if (!record_names(fd, holder, &recorded)) {
        log_error("instance %s: the record %s is locked by %s but names pid %d; refusing to signal "
                  "it",
                  name, path, who, (int)recorded);
        close(pidfd);
        return -1;
    }
    log_info("instance %s is running as pid %d: stopping it", name, (int)holder);
    pidfd_signal(pidfd, SIGTERM);
    bool locked = wait_for_lock(fd, STOP_WAIT_MS);
    if (!locked) {
        log_warn("instance %s (pid %d) did not stop; killing it", name, (int)holder);
        pidfd_signal(pidfd, SIGKILL);
        locked = wait_for_lock(fd, KILL_WAIT_MS);
    }
    close(pidfd);
    if (!locked) {
        log_error("instance %s: cannot take over the record %s", name, path);
        return -1;
    }
    return 1;
}

/* Whether the locked file is still the one linked as the record (the
 * previous owner unlinks it on exit, while still holding the lock). */
static bool still_linked(int dir_fd, const char *file, int fd)
{
    struct stat held, linked;
    return fstat(fd, &held) == 0 && fstatat(dir_fd, file, &linked, AT_SYMLINK_NOFOLLOW) == 0 &&
           held.st_ino == linked.st_ino && held.st_dev == linked.st_dev;
}

int instance_acquire(struct instance *inst, const char *name)
{
    char dir[512], file[NAME_MAX + 1], path[sizeof(dir) + sizeof(file)];
    inst->fd = inst->dir_fd = -1;
    inst->path = inst->file = NULL;
    if (instance_record_dir(dir, sizeof(dir)) < 0) {
        log_error("instance records: the directory's path is too long");
        return -1;
    }
    int n = snprintf(file, sizeof(file), "%s.pid", name);
    if (n < 0 || (size_t)n >= sizeof(file)) {
        log_error("instance %s: the name is too long for a file name", name);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int dir_fd = open_record_dir(dir);
    if (dir_fd < 0)
        return -1;
    bool refused = false; /* logged already */
    for (int attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
        int fd = open_record(dir_fd, file, path);
        if (fd < 0) {
            refused = true;
            break;
        }
        int locked = try_lock(fd) ? 1 : take_over(fd, name, path);
        if (locked < 0) {
            close(fd);
            refused = true;
            break;
        }
        if (locked == 0 || !still_linked(dir_fd, file, fd)) {
            close(fd); /* lock the file now linked */
            continue;
        }
        pid_t stale = read_owner(fd);
        if (stale > 0 && stale != getpid())
            log_info("instance %s: took over the record of pid %d", name, (int)stale);
        char text[32];
        n = snprintf(text, sizeof(text), "%d\n", (int)getpid());
        inst->path = strdup(path);
        inst->file = strdup(file);
        const char *failure = NULL;
        if (!inst->path || !inst->file)
            failure = "out of memory";
        else if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)n, 0) != n)
            failure = strerror(errno);
        if (failure) {
            log_error("instance record %s: %s", path, failure);
            close(fd);
            free(inst->path);
            free(inst->file);
            inst->path = inst->file = NULL;
            refused = true;
            break;
        }
        inst->fd = fd;
        inst->dir_fd = dir_fd;
        return 0;
    }
    if (!refused)
        log_error("instance %s: the record %s keeps changing", name, path);
    close(dir_fd);
    return -1;
}

void instance_release(struct instance *inst)
{
    if (inst->fd < 0)
        return;
    /* Unlinked while still locked, so a successor never locks a file that
     * is going away; only if it still is our file. */
    if (still_linked(inst->dir_fd, inst->file, inst->fd))
        unlinkat(inst->dir_fd, inst->file, 0);
    close(inst->fd);
    close(inst->dir_fd);
    free(inst->path);
    free(inst->file);
    inst->fd = inst->dir_fd = -1;
    inst->path = inst->file = NULL;
}
