/* A listening UNIX stream socket at a path on the host (the console's
 * ./ttya, vsock's uds_path, the control socket), made and removed without
 * harming what else may be there:
 * - a path that exists is refused unless it is a socket nobody listens on
 *   (one an earlier run left behind). Whether someone listens is asked of
 *   the kernel (sock_diag) first, so a live owner's accept loop never sees
 *   a probe (a console would hand its client over to it); only a socket the
 *   kernel does not list (another network namespace) is probed by
 *   connecting. A refusal names the process listening, when we can see it;
 * - the socket is bound under a temporary name in the same directory, with
 *   its mode set by a narrowed umask, and listening before it is moved to
 *   the path in one step: renameat2 NOREPLACE onto nothing, or EXCHANGE
 *   with the stale socket, which is unlinked only once it is seen to be the
 *   very socket found stale (anything else is swapped back);
 * - at close only the socket we made is unlinked: the file at the path is
 *   first moved aside atomically, looked at, and put back if it is not ours.
 * No step follows a symlink at the path. */
#ifndef COMMON_UNIX_LISTENER_H
#define COMMON_UNIX_LISTENER_H

#include <sys/types.h>

/* For unix_listener_open's mode: the file gets the process's umask. */
#define UNIX_LISTENER_UMASK ((mode_t)-1)

struct unix_listener {
    int fd;     /* nonblocking, close-on-exec; -1: not open */
    int dir_fd; /* O_PATH: the directory holding the socket file */
    char *path;
    char *name; /* the path's last component, in dir_fd */
    dev_t dev;  /* the socket file we created */
    ino_t ino;
};

void unix_listener_init(struct unix_listener *l);

/* Binds and listens at path, the file's permission bits being mode (or
 * UNIX_LISTENER_UMASK). Errors are logged as "WHAT PATH ...", what naming
 * the setting (e.g. "dev.v: uds_path", "--control", "console"). Returns 0,
 * or -1 with l left closed and nothing at path touched. */
int unix_listener_open(struct unix_listener *l, const char *path, mode_t mode, const char *what);

/* Closes the socket and unlinks its file if it is still the one we made. */
void unix_listener_close(struct unix_listener *l);

#endif
