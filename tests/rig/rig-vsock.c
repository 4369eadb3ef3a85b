/* rig-vsock: stream ends for rig tests and benchmarks (built static; in the
 * test guest and, with --bin build/rig/rig-vsock, in L1).
 *   rig-vsock send ADDR FILE   connect (or accept one), write FILE, close
 *                              our sending side, wait for the peer to close
 *   rig-vsock recv ADDR        connect (or accept one), copy to stdout until
 *                              the peer closes
 * Both print "rig-vsock: sent|received bytes=N secs=S" on stderr, timed
 * from the connection to the peer's close. ADDR is one of
 *   vsock:CID:PORT  listen-vsock:PORT  tcp:IPV4:PORT  listen-tcp:PORT
 *   uds:PATH:PORT   a host-side UNIX socket of our VMM's vsock device:
 *                   writes "CONNECT PORT\n", expects "OK ...\n" first
 * The older forms stay: "read CID PORT" (recv vsock:CID:PORT) and
 * "serve PORT FILE" (send listen-vsock:PORT FILE).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static int fail(const char *what)
{
    fprintf(stderr, "rig-vsock: %s: %s\n", what, strerror(errno));
    return -1;
}

static int accept_one(int family, const struct sockaddr *a, socklen_t len)
{
    int ls = socket(family, SOCK_STREAM, 0), one = 1;
    if (ls < 0)
        return fail("socket");
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(ls, a, len) < 0 || listen(ls, 1) < 0)
        return fail("listen");
    int fd = accept(ls, NULL, NULL);
    close(ls);
    return fd < 0 ? fail("accept") : fd;
}

static int connect_to(int family, const struct sockaddr *a, socklen_t len)
{
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return fail("socket");
    if (connect(fd, a, len) < 0) {
        fail("connect");
        close(fd);
        return -1;
    }
    return fd;
}

/* The UNIX-socket handshake, one byte at a time so no stream data is
 * read past the reply line. */
static int uds_handshake(int fd, unsigned port)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
    if (write(fd, line, (size_t)n) != n)
        return fail("write CONNECT");
    size_t got = 0;
    while (got < sizeof(line) - 1) {
        ssize_t r = read(fd, line + got, 1);
        if (r <= 0) {
            fprintf(stderr, "rig-vsock: no reply to CONNECT %u (%s)\n", port,
                    r == 0 ? "closed" : strerror(errno));
            return -1;
        }
        if (line[got++] == '\n')
            break;
    }
    line[got] = 0;
    if (strncmp(line, "OK ", 3) != 0) {
        fprintf(stderr, "rig-vsock: CONNECT %u answered '%s'\n", port, line);
        return -1;
    }
    return 0;
}

static int open_addr(const char *spec)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", spec);
    char *kind = buf, *rest = strchr(buf, ':');
    if (!rest)
        goto bad;
    *rest++ = 0;
    char *last = strrchr(rest, ':');
    unsigned port = (unsigned)strtoul(last ? last + 1 : rest, NULL, 0);
    if (last)
        *last = 0;
    if (strcmp(kind, "vsock") == 0 && last) {
        struct sockaddr_vm a = {.svm_family = AF_VSOCK,
                                .svm_cid = (unsigned)strtoul(rest, NULL, 0),
                                .svm_port = port};
        return connect_to(AF_VSOCK, (struct sockaddr *)&a, sizeof(a));
    }
    if (strcmp(kind, "listen-vsock") == 0 && !last) {
        struct sockaddr_vm a = {
            .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
        return accept_one(AF_VSOCK, (struct sockaddr *)&a, sizeof(a));
    }
    if (strcmp(kind, "tcp") == 0 && last) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        if (inet_pton(AF_INET, rest, &a.sin_addr) != 1)
            goto bad;
        return connect_to(AF_INET, (struct sockaddr *)&a, sizeof(a));
    }
    if (strcmp(kind, "listen-tcp") == 0 && !last) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        return accept_one(AF_INET, (struct sockaddr *)&a, sizeof(a));
    }
    if (strcmp(kind, "uds") == 0 && last) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", rest);
        int fd = connect_to(AF_UNIX, (struct sockaddr *)&a, sizeof(a));
        if (fd >= 0 && uds_handshake(fd, port) < 0) {
            close(fd);
            return -1;
        }
        return fd;
    }
bad:
    fprintf(stderr, "rig-vsock: bad address '%s'\n", spec);
    return -1;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return fail("write");
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static char buf[1 << 16];

static int send_file(const char *spec, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(path), 1;
    int fd = open_addr(spec);
    if (fd < 0)
        return 1;
    double t0 = now();
    unsigned long long total = 0;
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        if (write_all(fd, buf, n) < 0)
            return 1;
        total += n;
    }
    /* Done sending; the peer's close says it has everything. */
    shutdown(fd, SHUT_WR);
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    fprintf(stderr, "rig-vsock: sent bytes=%llu secs=%.3f\n", total, now() - t0);
    close(fd);
    return 0;
}

static int recv_stream(const char *spec)
{
    int fd = open_addr(spec);
    if (fd < 0)
        return 1;
    double t0 = now();
    unsigned long long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail("read"), 1;
        }
        if (write_all(STDOUT_FILENO, buf, (size_t)n) < 0)
            return 1;
        total += (unsigned long long)n;
    }
    fprintf(stderr, "rig-vsock: received bytes=%llu secs=%.3f\n", total, now() - t0);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    char spec[64];
    if (argc == 4 && strcmp(argv[1], "send") == 0)
        return send_file(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "recv") == 0)
        return recv_stream(argv[2]);
    if (argc == 4 && strcmp(argv[1], "serve") == 0) {
        snprintf(spec, sizeof(spec), "listen-vsock:%s", argv[2]);
        return send_file(spec, argv[3]);
    }
    if (argc == 4 && strcmp(argv[1], "read") == 0) {
        snprintf(spec, sizeof(spec), "vsock:%s:%s", argv[2], argv[3]);
        return recv_stream(spec);
    }
    fprintf(stderr, "usage: rig-vsock send ADDR FILE | recv ADDR | read CID PORT | serve PORT FILE\n"
                    "ADDR: vsock:CID:PORT listen-vsock:PORT tcp:IPV4:PORT listen-tcp:PORT "
                    "uds:PATH:PORT\n");
    return 2;
}
