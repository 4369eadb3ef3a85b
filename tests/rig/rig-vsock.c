/* rig-vsock: vsock ends for rig tests (built static).
 *   rig-vsock read CID PORT    connect to CID:PORT, copy everything to stdout
 *                              (the test guest's vsock-read action)
 *   rig-vsock serve PORT FILE  accept one connection on PORT, send FILE, close
 *                              (the host end, run in L1 beside the VMM)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static int serve(unsigned port, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return 1;
    }
    int ls = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1) < 0) {
        fprintf(stderr, "listen on vsock port %u: %s\n", port, strerror(errno));
        return 1;
    }
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) {
        fprintf(stderr, "accept: %s\n", strerror(errno));
        return 1;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, n - off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                fprintf(stderr, "write: %s\n", strerror(errno));
                return 1;
            }
            off += (size_t)w;
        }
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "serve") == 0)
        return serve((unsigned)strtoul(argv[2], NULL, 0), argv[3]);
    if (argc != 4 || strcmp(argv[1], "read") != 0) {
        fprintf(stderr, "usage: rig-vsock read CID PORT | rig-vsock serve PORT FILE\n");
        return 2;
    }
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd < 0) {
        fprintf(stderr, "socket: %s\n", strerror(errno));
        return 1;
    }
    struct sockaddr_vm a = {.svm_family = AF_VSOCK};
    a.svm_cid = (unsigned)strtoul(argv[2], NULL, 0);
    a.svm_port = (unsigned)strtoul(argv[3], NULL, 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        fprintf(stderr, "connect: %s\n", strerror(errno));
        return 1;
    }
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "read: %s\n", strerror(errno));
            return 1;
        }
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
            return 1;
    }
}
