#include "common/unix_listener.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"

#define LISTEN_BACKLOG 128

void unix_listener_init(struct unix_listener *l)
{
    l->fd = -1;
    l->path = NULL;
    l->dev = 0;
    l->ino = 0;
}

/* An existing path is replaced only when it is a socket that refuses a
 * connection: nobody listens there any more. */
static int check_existing(const struct sockaddr_un *addr, const char *path, const char *what)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        log_error("%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        log_error("%s %s exists and is not a socket; refusing to replace it", what, path);
        return -1;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live = probe >= 0 && connect(probe, (const struct sockaddr *)addr, sizeof(*addr)) == 0;
    bool stale = !live && errno == ECONNREFUSED;
    if (probe >= 0)
        close(probe);
    if (!stale) {
        log_error("%s %s is a socket %s; refusing to replace it", what, path,
                  live ? "someone listens on" : "that could not be probed");
        return -1;
    }
    unlink(path);
    return 0;
}

int unix_listener_open(struct unix_listener *l, const char *path, mode_t mode, const char *what)
{
    unix_listener_init(l);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        log_error("%s %s is longer than a UNIX socket path can be (%zu bytes)", what, path,
                  sizeof(addr.sun_path) - 1);
        return -1;
    }
    strcpy(addr.sun_path, path);
    if (check_existing(&addr, path, what) < 0)
        return -1;
    if (!(l->path = strdup(path))) {
        log_error("%s %s: out of memory", what, path);
        return -1;
    }
    l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0) {
        log_error("%s %s: socket: %s", what, path, strerror(errno));
        unix_listener_close(l);
        return -1;
    }
    /* bind() creates the file with the umask's bits; a narrower umask for
     * that one call means the file is never more open than mode, which a
     * chmod afterwards could not promise. Another thread creating a file
     * meanwhile only gets fewer permissions. */
    mode_t old_umask = 0;
    if (mode != UNIX_LISTENER_UMASK)
        old_umask = umask(~mode & 0777);
    int r = bind(l->fd, (struct sockaddr *)&addr, sizeof(addr));
    int bind_errno = errno;
    if (mode != UNIX_LISTENER_UMASK)
        umask(old_umask);
    struct stat st;
    if (r < 0 || lstat(path, &st) < 0) {
        log_error("%s %s: %s", what, path, strerror(r < 0 ? bind_errno : errno));
        close(l->fd);
        l->fd = -1;
        unix_listener_close(l);
        return -1;
    }
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    if (listen(l->fd, LISTEN_BACKLOG) < 0) {
        log_error("%s %s: listen: %s", what, path, strerror(errno));
        unix_listener_close(l);
        return -1;
    }
    return 0;
}

void unix_listener_close(struct unix_listener *l)
{
    if (l->fd >= 0) {
        struct stat st;
        /* Only the socket we made: not a file someone put there since. */
        if (l->path && lstat(l->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == l->dev &&
            st.st_ino == l->ino)
            unlink(l->path);
        close(l->fd);
        l->fd = -1;
    }
    free(l->path);
    l->path = NULL;
}
