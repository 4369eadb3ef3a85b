#include "common/unix_listener.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proc_info.h"

#define LISTEN_BACKLOG 128
#define TEMP_NAME_ATTEMPTS 100
#define DIAG_BUFFER_SIZE 32768

void unix_listener_init(struct unix_listener *l)
{
    l->fd = -1;
    l->dir_fd = -1;
    l->path = NULL;
    l->name = NULL;
    l->dev = 0;
    l->ino = 0;
}

/* A hidden name of ours for a socket file on its way in or out; the caller
 * tries the next one when it is taken. */
static void temp_name(char *buf, size_t len)
{
    static _Atomic unsigned counter;
    snprintf(buf, len, ".pst-%d-%u", (int)getpid(), atomic_fetch_add(&counter, 1));
}

static bool same_file(const struct stat *a, dev_t dev, ino_t ino)
{
    return a->st_dev == dev && a->st_ino == ino;
}

/* sock_diag reports the kernel's dev_t (major << 20 | minor). */
static bool kernel_dev_matches(uint32_t kdev, dev_t dev)
{
    return major(dev) == (kdev >> 20) && minor(dev) == (kdev & 0xfffff);
}

enum liveness { LIVE_UNKNOWN = -1, LIVE_NO = 0, LIVE_YES = 1 };

/* Asks the kernel whether a listening UNIX socket of this network namespace
 * is bound to the file dev:ino; on LIVE_YES *sock_ino is that socket's
 * inode. LIVE_UNKNOWN: the kernel could not be asked. */
static enum liveness diag_listener(dev_t dev, ino_t ino, uint32_t *sock_ino)
{
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (s < 0)
        return LIVE_UNKNOWN;
    struct {
        struct nlmsghdr nlh;
        struct unix_diag_req req;
    } msg = {
        .nlh = {.nlmsg_len = sizeof(msg),
                .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
                .nlmsg_seq = 1},
        .req = {.sdiag_family = AF_UNIX,
                .udiag_states = 1u << TCP_LISTEN,
                .udiag_show = UDIAG_SHOW_VFS},
    };
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(s, &msg, sizeof(msg), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        close(s);
        return LIVE_UNKNOWN;
    }
    char *buf = malloc(DIAG_BUFFER_SIZE); /* malloc's alignment suits nlmsghdr */
    if (!buf) {
        close(s);
        return LIVE_UNKNOWN;
    }
    enum liveness result = LIVE_UNKNOWN;
    bool found = false, done = false;
    while (!done) {
        ssize_t n = recv(s, buf, DIAG_BUFFER_SIZE, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        int left = (int)n;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left);
             h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_type == NLMSG_DONE) {
                result = found ? LIVE_YES : LIVE_NO;
                done = true;
                break;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                done = true;
                break;
            }
            if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
                h->nlmsg_len < NLMSG_LENGTH(sizeof(struct unix_diag_msg)))
                continue;
            struct unix_diag_msg *m = NLMSG_DATA(h);
            int attr_len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
            for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, attr_len);
                 a = RTA_NEXT(a, attr_len)) {
                struct unix_diag_vfs vfs;
                if (a->rta_type != UNIX_DIAG_VFS || RTA_PAYLOAD(a) < sizeof(vfs))
                    continue;
                memcpy(&vfs, RTA_DATA(a), sizeof(vfs));
                /* The kernel's inode field is 32 bits: a collision can only
                 * make us refuse, never replace a live socket. */
                if (!found && vfs.udiag_vfs_ino == (uint32_t)ino &&
                    kernel_dev_matches(vfs.udiag_vfs_dev, dev)) {
                    found = true;
                    *sock_ino = m->udiag_ino;
                }
            }
        }
    }
    free(buf);
    close(s);
    return result;
}

/* The process that has the socket sock_ino open (among those /proc lets us
 * inspect), or 0. */
static pid_t socket_owner(uint32_t sock_ino)
{
    char want[32];
    snprintf(want, sizeof(want), "socket:[%u]", sock_ino);
    DIR *proc = opendir("/proc");
    if (!proc)
        return 0;
    pid_t owner = 0;
    struct dirent *e;
    while (!owner && (e = readdir(proc))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char fd_dir[64];
        snprintf(fd_dir, sizeof(fd_dir), "/proc/%ld/fd", pid);
        DIR *fds = opendir(fd_dir);
        if (!fds)
            continue; /* gone, or another user's */
        struct dirent *f;
        while ((f = readdir(fds))) {
            char link[64];
            ssize_t n = readlinkat(dirfd(fds), f->d_name, link, sizeof(link) - 1);
            if (n <= 0)
                continue;
            link[n] = '\0';
            if (strcmp(link, want) == 0) {
                owner = (pid_t)pid;
                break;
            }
        }
        closedir(fds);
    }
    closedir(proc);
    return owner;
}

/* Connects to the socket (nonblocking, so a full backlog cannot hang us):
 * for a socket the kernel's table does not show, e.g. one listening in
 * another network namespace. On LIVE_YES *pid is the listener's, if known. */
static enum liveness connect_probe(const char *path, pid_t *pid)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strcpy(addr.sun_path, path); /* the caller checked the length */
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0)
        return LIVE_UNKNOWN;
    enum liveness result = LIVE_UNKNOWN;
    if (connect(s, (const struct sockaddr *)&addr, sizeof(addr)) == 0) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
            *pid = cred.pid;
        result = LIVE_YES;
    } else if (errno == EAGAIN) {
        result = LIVE_YES; /* its backlog is full: someone listens */
    } else if (errno == ECONNREFUSED) {
        result = LIVE_NO;
    }
    int err = errno;
    close(s);
    errno = err;
    return result;
}

/* What is at the path: nothing (0), a stale socket, its identity in *stale
 * (1), or something not to be replaced (-1, logged). */
static int check_existing(const struct unix_listener *l, const char *what, struct stat *stale)
{
    struct stat st;
    if (fstatat(l->dir_fd, l->name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0;
        log_error("%s %s: %s", what, l->path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        log_error("%s %s exists and is not a socket; refusing to replace it", what, l->path);
        return -1;
    }
    pid_t pid = 0;
    uint32_t sock_ino = 0;
    enum liveness live = diag_listener(st.st_dev, st.st_ino, &sock_ino);
    if (live == LIVE_YES) {
        pid = socket_owner(sock_ino);
    } else {
        live = connect_probe(l->path, &pid);
        struct stat again;
        /* The probe went by path: it must have reached the file we looked at. */
        if (live == LIVE_NO && (fstatat(l->dir_fd, l->name, &again, AT_SYMLINK_NOFOLLOW) < 0 ||
                                !same_file(&again, st.st_dev, st.st_ino))) {
            log_error("%s %s changed while we probed it; refusing to replace it", what, l->path);
            return -1;
        }
    }
    if (live == LIVE_YES) {
        char who[320];
        if (pid > 0)
            proc_describe(pid, who, sizeof(who));
        else
            snprintf(who, sizeof(who), "a process we cannot see");
        log_error("%s %s is a socket someone listens on; refusing to replace it (listening: %s)",
                  what, l->path, who);
        return -1;
    }
    if (live == LIVE_UNKNOWN) {
        log_error("%s %s is a socket that could not be probed (%s); refusing to replace it", what,
                  l->path, strerror(errno));
        return -1;
    }
    *stale = st;
    return 1;
}

/* Binds fd to a fresh temporary name in the directory; its name in temp
 * and its identity in l->dev/ino. */
static int bind_temp(struct unix_listener *l, int fd, const char *dir, mode_t mode, char *temp,
                     size_t temp_len, const char *what)
{
    for (unsigned attempt = 0; attempt < TEMP_NAME_ATTEMPTS; attempt++) {
        temp_name(temp, temp_len);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        int n = snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/%s", dir, temp);
        if (n < 0 || (size_t)n >= sizeof(addr.sun_path)) /* a long directory: via our handle */
            snprintf(addr.sun_path, sizeof(addr.sun_path), "/proc/self/fd/%d/%s", l->dir_fd, temp);
        /* bind() creates the file with the umask's bits; a narrower umask
         * for that one call means the file is never more open than mode.
         * Another thread creating a file meanwhile only gets fewer
         * permissions. */
        mode_t old_umask = 0;
        if (mode != UNIX_LISTENER_UMASK)
            old_umask = umask(~mode & 0777);
        int r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
        int bind_errno = errno;
        if (mode != UNIX_LISTENER_UMASK)
            umask(old_umask);
        if (r == 0) {
            struct stat st;
            if (fstatat(l->dir_fd, temp, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode)) {
                log_error("%s %s: the socket bound as %s/%s is not there", what, l->path, dir,
                          temp);
                return -1;
            }
            l->dev = st.st_dev;
            l->ino = st.st_ino;
            return 0;
        }
        if (bind_errno != EADDRINUSE) {
            log_error("%s %s: bind: %s", what, l->path, strerror(bind_errno));
            return -1;
        }
    }
    log_error("%s %s: no free temporary name in its directory", what, l->path);
    return -1;
}

/* Unlinks temp if it still is our socket (a failed exchange may have left
 * someone else's file there). */
static void drop_temp(const struct unix_listener *l, const char *temp)
{
    struct stat st;
    if (fstatat(l->dir_fd, temp, &st, AT_SYMLINK_NOFOLLOW) == 0 && same_file(&st, l->dev, l->ino))
        unlinkat(l->dir_fd, temp, 0);
}

/* Moves the listening socket from temp to the path: onto nothing, or in
 * exchange for the stale socket found there. */
static int put_in_place(struct unix_listener *l, const char *temp, const struct stat *stale,
                        const char *what)
{
    if (!stale) {
        if (renameat2(l->dir_fd, temp, l->dir_fd, l->name, RENAME_NOREPLACE) == 0)
            return 0;
        /* A file system without RENAME_NOREPLACE: a hard link refuses to
         * replace too. */
        if ((errno == EINVAL || errno == ENOSYS) &&
            linkat(l->dir_fd, temp, l->dir_fd, l->name, 0) == 0) {
            unlinkat(l->dir_fd, temp, 0);
            return 0;
        }
        if (errno == EEXIST)
            log_error("%s %s appeared while we made our socket; refusing to replace it", what,
                      l->path);
        else
            log_error("%s %s: %s", what, l->path, strerror(errno));
        return -1;
    }
    if (renameat2(l->dir_fd, temp, l->dir_fd, l->name, RENAME_EXCHANGE) == 0) {
        struct stat out;
        if (fstatat(l->dir_fd, temp, &out, AT_SYMLINK_NOFOLLOW) == 0 &&
            same_file(&out, stale->st_dev, stale->st_ino)) {
            unlinkat(l->dir_fd, temp, 0); /* the stale socket, now under our temporary name */
            return 0;
        }
        if (renameat2(l->dir_fd, temp, l->dir_fd, l->name, RENAME_EXCHANGE) == 0)
            log_error("%s %s changed while we replaced it; refusing to replace it", what, l->path);
        else
            log_error("%s %s changed while we replaced it, and could not be put back (it is now "
                      "%s in the same directory): %s",
                      what, l->path, temp, strerror(errno));
        return -1;
    }
    if (errno != EINVAL && errno != ENOSYS) {
        log_error("%s %s: %s", what, l->path, strerror(errno));
        return -1;
    }
    /* No RENAME_EXCHANGE on this file system: look once more, then rename
     * over it (a window of a few instructions remains). */
    struct stat now;
    if (fstatat(l->dir_fd, l->name, &now, AT_SYMLINK_NOFOLLOW) < 0 ||
        !same_file(&now, stale->st_dev, stale->st_ino)) {
        log_error("%s %s changed while we replaced it; refusing to replace it", what, l->path);
        return -1;
    }
    if (renameat(l->dir_fd, temp, l->dir_fd, l->name) < 0) {
        log_error("%s %s: %s", what, l->path, strerror(errno));
        return -1;
    }
    return 0;
}

int unix_listener_open(struct unix_listener *l, const char *path, mode_t mode, const char *what)
{
    unix_listener_init(l);
    struct sockaddr_un addr;
    if (strlen(path) >= sizeof(addr.sun_path)) {
        log_error("%s %s is longer than a UNIX socket path can be (%zu bytes)", what, path,
                  sizeof(addr.sun_path) - 1);
        return -1;
    }
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        log_error("%s %s names a directory, not a socket file", what, path);
        return -1;
    }
    char dir[sizeof(addr.sun_path)];
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    l->dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (l->dir_fd < 0) {
        log_error("%s %s: directory %s: %s", what, path, dir, strerror(errno));
        return -1;
    }
    l->path = strdup(path);
    l->name = strdup(name);
    if (!l->path || !l->name) {
        log_error("%s %s: out of memory", what, path);
        unix_listener_close(l);
        return -1;
    }
    struct stat stale = {0};
    int existing = check_existing(l, what, &stale);
    if (existing < 0) {
        unix_listener_close(l);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("%s %s: socket: %s", what, path, strerror(errno));
        unix_listener_close(l);
        return -1;
    }
    char temp[64];
    if (bind_temp(l, fd, dir, mode, temp, sizeof(temp), what) < 0) {
        close(fd);
        unix_listener_close(l);
        return -1;
    }
    /* Listening before it appears at the path: nobody finds it refusing. */
    bool placed = false;
    if (listen(fd, LISTEN_BACKLOG) < 0)
        log_error("%s %s: listen: %s", what, path, strerror(errno));
    else
        placed = put_in_place(l, temp, existing ? &stale : NULL, what) == 0;
    if (!placed) {
        drop_temp(l, temp);
        close(fd);
        unix_listener_close(l);
        return -1;
    }
    l->fd = fd;
    return 0;
}

/* Unlinks our socket file and never a file someone put at the path since:
 * whatever is there is moved aside to a name of ours in one step, looked
 * at, and put back if it is not ours. */
static void remove_ours(const struct unix_listener *l)
{
    char temp[64];
    bool moved = false;
    for (unsigned attempt = 0; attempt < TEMP_NAME_ATTEMPTS && !moved; attempt++) {
        temp_name(temp, sizeof(temp));
        if (renameat2(l->dir_fd, l->name, l->dir_fd, temp, RENAME_NOREPLACE) == 0) {
            moved = true;
        } else if (errno == EINVAL || errno == ENOSYS) {
            /* A file system without RENAME_NOREPLACE: look, then unlink. */
            struct stat st;
            if (fstatat(l->dir_fd, l->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISSOCK(st.st_mode) && same_file(&st, l->dev, l->ino))
                unlinkat(l->dir_fd, l->name, 0);
            return;
        } else if (errno != EEXIST) {
            return; /* gone already, or not ours to move (a sticky directory) */
        }
    }
    if (!moved)
        return;
    struct stat st;
    if (fstatat(l->dir_fd, temp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode) &&
        same_file(&st, l->dev, l->ino)) {
        unlinkat(l->dir_fd, temp, 0);
        return;
    }
    if (renameat2(l->dir_fd, temp, l->dir_fd, l->name, RENAME_NOREPLACE) < 0)
        log_warn("%s: the file there is no longer our socket, and it could not be put back from "
                 "%s in the same directory: %s",
                 l->path, temp, strerror(errno));
}

void unix_listener_close(struct unix_listener *l)
{
    if (l->fd >= 0) {
        if (l->dir_fd >= 0 && l->name)
            remove_ours(l);
        close(l->fd);
    }
    if (l->dir_fd >= 0)
        close(l->dir_fd);
    free(l->path);
    free(l->name);
    unix_listener_init(l);
}
