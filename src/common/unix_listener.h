/* A listening UNIX stream socket at a path on the host (vsock's uds_path,
 * the control socket), made and removed without harming what else may be
 * there: a path that exists is refused unless it is a socket nobody
 * listens on (one an earlier run left behind); bind() creates the file
 * itself and follows no symlink; at close only the socket we made is
 * unlinked, not a file someone put at the path since. */
#ifndef COMMON_UNIX_LISTENER_H
#define COMMON_UNIX_LISTENER_H

#include <sys/types.h>

/* For unix_listener_open's mode: the file gets the process's umask. */
#define UNIX_LISTENER_UMASK ((mode_t)-1)

struct unix_listener {
    int fd; /* nonblocking, close-on-exec; -1: not open */
    char *path;
    dev_t dev; /* the socket file we created */
    ino_t ino;
};

void unix_listener_init(struct unix_listener *l);

/* Binds and listens at path, the file's permission bits being mode (or
 * UNIX_LISTENER_UMASK). Errors are logged as "WHAT PATH ...", what naming
 * the setting (e.g. "dev.v: uds_path", "--control"). Returns 0, or -1 with
 * l left closed. */
int unix_listener_open(struct unix_listener *l, const char *path, mode_t mode, const char *what);

/* Closes the socket and unlinks its file if it is still the one we made. */
void unix_listener_close(struct unix_listener *l);

#endif
