#include "core/instance.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

static int runtime_dir(char *buf, size_t len)
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
    if (n < 0 || (size_t)n >= len)
        return -1;
    if (mkdir(buf, 0700) < 0 && errno != EEXIST) {
        log_error("instance record: cannot create %s: %s", buf, strerror(errno));
        return -1;
    }
    return 0;
}

static pid_t read_owner(int fd)
{
    char text[32] = {0};
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    if (n <= 0)
        return 0;
    long pid = strtol(text, NULL, 10);
    return pid > 0 ? (pid_t)pid : 0;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits up to timeout_ms for the current owner to release the lock. */
static bool wait_for_lock(int fd, unsigned timeout_ms)
{
    for (unsigned waited = 0; waited < timeout_ms; waited += 10) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return true;
        sleep_ms(10);
    }
    return flock(fd, LOCK_EX | LOCK_NB) == 0;
}

/* Locks path; stops a live owner first. The lock must be on the inode that
 * is still linked at path (the previous owner unlinks it on exit). */
int instance_acquire(struct instance *inst, const char *name)
{
    char dir[512], path[600];
    inst->fd = -1;
    inst->path = NULL;
    if (runtime_dir(dir, sizeof(dir)) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/%s.pid", dir, name);
    for (int attempt = 0; attempt < 5; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            log_error("instance record %s: %s", path, strerror(errno));
            return -1;
        }
        bool locked = flock(fd, LOCK_EX | LOCK_NB) == 0;
        if (!locked) {
            pid_t owner = read_owner(fd);
            if (owner > 0 && owner != getpid()) {
                log_info("instance %s is running as pid %d: stopping it", name, (int)owner);
                kill(owner, SIGTERM);
                locked = wait_for_lock(fd, 10000);
                if (!locked) {
                    log_warn("instance %s (pid %d) did not stop; killing it", name, (int)owner);
                    kill(owner, SIGKILL);
                    locked = wait_for_lock(fd, 5000);
                }
            } else {
                locked = wait_for_lock(fd, 2000);
            }
        }
        if (!locked) {
            close(fd);
            log_error("instance %s: cannot take over the record %s", name, path);
            return -1;
        }
        struct stat held, linked;
        if (fstat(fd, &held) == 0 && stat(path, &linked) == 0 && held.st_ino == linked.st_ino &&
            held.st_dev == linked.st_dev) {
            pid_t stale = read_owner(fd);
            if (stale > 0 && stale != getpid())
                log_info("instance %s: took over the record of pid %d", name, (int)stale);
            char text[32];
            int n = snprintf(text, sizeof(text), "%d\n", (int)getpid());
            if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)n, 0) != n) {
                log_error("instance record %s: %s", path, strerror(errno));
                close(fd);
                return -1;
            }
            inst->fd = fd;
            inst->path = strdup(path);
            return 0;
        }
        close(fd); /* the owner unlinked it meanwhile: lock the new file */
    }
    log_error("instance %s: the record %s keeps changing", name, path);
    return -1;
}

void instance_release(struct instance *inst)
{
    if (inst->fd < 0)
        return;
    if (inst->path)
        unlink(inst->path); /* while still locked, so a successor never sees it half-gone */
    close(inst->fd);
    free(inst->path);
    inst->fd = -1;
    inst->path = NULL;
}
