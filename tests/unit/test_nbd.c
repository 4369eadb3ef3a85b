/* The nbd back end (block/nbd.c) against servers no one here wrote:
 * nbdkit (memory and file plugins; error and blocksize-policy filters;
 * read-only; TLS with a pre-shared key) and qemu-nbd, over UNIX sockets
 * and TCP (in a network namespace of the test's own, so no address of the
 * host is used). Round trips through scattered buffers, requests split at
 * the server's maximum, flush, trim and zeroes, server errors, the server
 * killed and restarted mid-I/O (requests wait and complete), the server
 * gone for longer than reconnect_timeout (EIO, then recovery), and
 * connection errors reported at the uri key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "stderr_capture.h"
#include "support/block_req.h"
#include "support/prereq.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "block/block.h"
#include "common/log.h"
#include "common/sandbox.h"
#include "config/config.h"

#define MIB (1024ull * 1024)

static char tmpdir[64];
static char sock_path[128];

/* ---- servers ---- */

struct server {
    pid_t pid;
};

static bool have_program(const char *name)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

/* True once a client can connect to the UNIX socket path or to
 * 127.0.0.1:port (port != 0). */
static bool can_connect(const char *path, unsigned port)
{
    int fd = socket(port ? AF_INET : AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int rc;
    if (port) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    } else {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
        rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    }
    close(fd);
    return rc == 0;
}

/* Starts argv (a NULL-terminated server command line) and waits until it
 * accepts connections on path or port. */
static struct server server_start(const char *const *argv, const char *path, unsigned port)
{
    if (path)
        unlink(path);
    struct server s;
    s.pid = fork();
    assert_true(s.pid >= 0);
    if (s.pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, STDOUT_FILENO);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        if (can_connect(path, port))
            return s;
        int status;
        if (waitpid(s.pid, &status, WNOHANG) == s.pid)
            fail_msg("%s exited before listening (status %d)", argv[0], status);
        usleep(10000);
    }
    fail_msg("%s did not listen within 5 s", argv[0]);
    return s;
}

static void server_kill(struct server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

/* nbdkit serving on sock_path: args after the plugin's are appended. */
static struct server nbdkit(const char *a1, const char *a2, const char *a3, const char *a4,
                            const char *a5)
{
    const char *argv[16] = {"nbdkit", "-f", "--exit-with-parent", "-U", sock_path};
    unsigned n = 5;
    const char *extra[] = {a1, a2, a3, a4, a5};
    for (unsigned i = 0; i < 5 && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return server_start(argv, sock_path, 0);
}

/* ---- the disk ---- */

static char uri_buf[512];

static struct config_block_dev nbd_cfg(const char *uri)
{
    struct config_block_dev c;
    memset(&c, 0, sizeof(c));
    c.name = (char *)"t0";
    c.type = CONFIG_BLOCK_NBD;
    c.source = "vm.toml";
    c.nbd.uri = (char *)uri;
    c.nbd.uri_pos = (struct config_pos){7, 7};
    c.nbd.reconnect_timeout = CONFIG_DEFAULT_NBD_RECONNECT_TIMEOUT;
    return c;
}

static const char *unix_uri(void)
{
    snprintf(uri_buf, sizeof(uri_buf), "nbd+unix:///?socket=%s", sock_path);
    return uri_buf;
}

static struct block_backend *open_unix(void)
{
    struct config_block_dev c = nbd_cfg(unix_uri());
    struct block_backend *be = block_backend_open(&c);
    assert_non_null(be);
    return be;
}

/* ---- requests (support/block_req.h) ---- */

static void fill(uint8_t *buf, uint64_t len, uint64_t pos, unsigned seed)
{
    for (uint64_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(((pos + i) * 2654435761u) >> 13) ^ (uint8_t)(seed * 37 + 1);
}

static bool all_zero(const uint8_t *buf, uint64_t len)
{
    for (uint64_t i = 0; i < len; i++)
        if (buf[i])
            return false;
    return true;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- set-up ---- */

/* Brings up lo in the test's own network namespace. */
static void loopback_up(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    assert_int_equal(ioctl(fd, SIOCGIFFLAGS, &ifr), 0);
    ifr.ifr_flags |= IFF_UP;
    assert_int_equal(ioctl(fd, SIOCSIFFLAGS, &ifr), 0);
    close(fd);
}

static bool own_netns;

static int group_setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_nbd.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(sock_path, sizeof(sock_path), "%s/nbd.sock", tmpdir);
    /* TCP only inside a network namespace of our own. */
    own_netns = unshare(CLONE_NEWNET) == 0;
    if (own_netns)
        loopback_up();
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void need_nbdkit(void)
{
    if (!have_program("nbdkit"))
        prerequisite_missing("nbdkit is not installed (Debian: nbdkit)");
}

/* ---- tests ---- */

static void test_roundtrip_scattered(void **state)
{
    need_nbdkit();
    struct server s = nbdkit("memory", "8M", NULL, NULL, NULL);
    struct block_backend *be = open_unix();
    assert_int_equal(be->info.size, 8 * MIB);
    assert_int_equal(be->info.block_size, 512);
    assert_false(be->info.read_only);
    assert_true(be->info.can_discard);
    assert_true(be->info.can_write_zeroes);

    static const size_t lens[] = {512, 1536, 4096, 100, 412, 8192, 3584, 1, 511};
    size_t total = 0;
    struct iovec iov[9];
    uint8_t *bufs[9];
    for (unsigned i = 0; i < 9; i++) {
        bufs[i] = malloc(lens[i]);
        fill(bufs[i], lens[i], total, 1);
        iov[i] = (struct iovec){bufs[i], lens[i]};
        total += lens[i];
    }
    assert_int_equal(total % 512, 0);
    assert_int_equal(block_req_iov(be, BLOCK_OP_WRITE, 3 * 4096, total, iov, 9), 0);
    uint8_t *back = malloc(total), *want = malloc(total);
    fill(want, total, 0, 1);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 3 * 4096, back, total), 0);
    assert_memory_equal(back, want, total);
    /* Read back scattered too. */
    memset(back, 0, total);
    for (unsigned i = 0, at = 0; i < 9; at += (unsigned)lens[i], i++)
        iov[i] = (struct iovec){back + at, lens[i]};
    assert_int_equal(block_req_iov(be, BLOCK_OP_READ, 3 * 4096, total, iov, 9), 0);
    assert_memory_equal(back, want, total);
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    /* Out of range: refused before the server sees it. */
    uint8_t b[512];
    assert_int_equal(block_req(be, BLOCK_OP_READ, 8 * MIB, b, 512), -EINVAL);
    block_backend_destroy(be);
    for (unsigned i = 0; i < 9; i++)
        free(bufs[i]);
    free(back);
    free(want);
    server_kill(&s);
}

static void test_zero_trim(void **state)
{
    need_nbdkit();
    struct server s = nbdkit("memory", "4M", NULL, NULL, NULL);
    struct block_backend *be = open_unix();
    uint8_t *buf = malloc(MIB), *back = malloc(MIB);
    fill(buf, MIB, 0, 2);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, buf, MIB), 0);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE_ZEROES, 4096, NULL, 8192), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, back, MIB), 0);
    assert_memory_equal(back, buf, 4096);
    assert_true(all_zero(back + 4096, 8192));
    assert_memory_equal(back + 12288, buf + 12288, MIB - 12288);
    /* nbdkit's memory plugin reads trimmed blocks as zeroes. */
    assert_int_equal(block_req(be, BLOCK_OP_DISCARD, 65536, NULL, 65536), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 65536, back, 65536), 0);
    assert_true(all_zero(back, 65536));
    block_backend_destroy(be);
    free(buf);
    free(back);
    server_kill(&s);
}

/* The server allows at most 64 KiB a request and errors on more: a 3 MiB
 * write and read (scattered) arrive whole. Without a limit, a 40 MiB one
 * is split at our 32 MiB. */
static void test_split_requests(void **state)
{
    need_nbdkit();
    struct server s = nbdkit("--filter=blocksize-policy", "memory", "8M", "blocksize-maximum=65536",
                             "blocksize-error-policy=error");
    struct block_backend *be = open_unix();
    uint64_t len = 3 * MIB;
    uint8_t *buf = malloc(len), *back = malloc(len);
    fill(buf, len, 0, 3);
    struct iovec iov[2] = {{buf, 4096}, {buf + 4096, len - 4096}};
    assert_int_equal(block_req_iov(be, BLOCK_OP_WRITE, MIB, len, iov, 2), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, MIB, back, len), 0);
    assert_memory_equal(back, buf, len);
    block_backend_destroy(be);
    server_kill(&s);
    free(buf);
    free(back);

    s = nbdkit("memory", "64M", NULL, NULL, NULL);
    be = open_unix();
    len = 40 * MIB;
    buf = malloc(len);
    back = malloc(len);
    fill(buf, len, 0, 4);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 4096, buf, len), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 4096, back, len), 0);
    assert_memory_equal(back, buf, len);
    block_backend_destroy(be);
    server_kill(&s);
    free(buf);
    free(back);
}

/* A server whose minimum block is 512 bytes and which errors on anything
 * else: scattered pieces that are not whole blocks go through a bounce
 * buffer, whole ones (and host-contiguous runs of them) go as they are. */
static void test_unaligned_pieces(void **state)
{
    need_nbdkit();
    struct server s = nbdkit("--filter=blocksize-policy", "memory", "64M", "blocksize-minimum=512",
                             "blocksize-error-policy=error");
    struct block_backend *be = open_unix();
    static uint8_t data[4096], back[4096];
    fill(data, sizeof(data), 0, 11);
    /* 100 + 412 + 1024 + 511 + 1 bytes, in separate places. */
    static const size_t lens[] = {100, 412, 1024, 511, 1};
    static uint8_t pieces[5][2048];
    struct iovec iov[5];
    size_t at = 0;
    for (unsigned i = 0; i < 5; i++) {
        memcpy(pieces[i], data + at, lens[i]);
        iov[i] = (struct iovec){pieces[i], lens[i]};
        at += lens[i];
    }
    assert_int_equal(block_req_iov(be, BLOCK_OP_WRITE, 8192, at, iov, 5), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 8192, back, at), 0);
    assert_memory_equal(back, data, at);
    memset(pieces, 0, sizeof(pieces));
    assert_int_equal(block_req_iov(be, BLOCK_OP_READ, 8192, at, iov, 5), 0);
    for (unsigned i = 0, off = 0; i < 5; off += (unsigned)lens[i], i++)
        assert_memory_equal(pieces[i], data + off, lens[i]);
    /* Whole blocks: two pieces of one buffer, contiguous, then a third. */
    struct iovec whole[3] = {{data, 512}, {data + 512, 1024}, {pieces[0], 512}};
    memcpy(pieces[0], data + 1536, 512);
    assert_int_equal(block_req_iov(be, BLOCK_OP_WRITE, 0, 2048, whole, 3), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, back, 2048), 0);
    assert_memory_equal(back, data, 2048);

    /* Bounce buffers hold at most 16 MiB at once: eight 3 MiB requests
     * at the same time all complete (some wait for room), and one of
     * 20 MiB is refused. */
    enum { N = 8, LEN = 3 << 20 };
    uint8_t *big = malloc((size_t)N * LEN), *got = malloc((size_t)N * LEN);
    fill(big, (uint64_t)N * LEN, 0, 12);
    struct pending_req reqs[N];
    struct iovec parts[N][2];
    for (unsigned i = 0; i < N; i++) {
        uint8_t *p = big + (size_t)i * LEN;
        /* Two pieces, not host-contiguous, the first not a whole block. */
        parts[i][0] = (struct iovec){got + (size_t)i * LEN, 100};
        parts[i][1] = (struct iovec){p + 100, LEN - 100};
        memcpy(got + (size_t)i * LEN, p, 100);
        block_req_start_iov(&reqs[i], be, BLOCK_OP_WRITE, (uint64_t)i * LEN, LEN, parts[i], 2);
    }
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(block_req_wait(&reqs[i]), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, got, (uint64_t)N * LEN), 0);
    assert_memory_equal(got, big, (size_t)N * LEN);
    struct iovec huge[2] = {{big, 100}, {got, (20 << 20) - 100}}; /* not contiguous */
    capture_stderr();
    assert_int_equal(block_req_iov(be, BLOCK_OP_WRITE, 0, 20 << 20, huge, 2), -EINVAL);
    char *out = captured_stderr();
    assert_non_null(strstr(out, "write of 20971520 bytes in pieces that are not whole 512-byte "
                                "blocks: over the 16 MiB"));
    free(big);
    free(got);
    block_backend_destroy(be);
    server_kill(&s);
}

static void test_read_only(void **state)
{
    need_nbdkit();
    /* A read-only export makes a read-only disk. */
    struct server s = nbdkit("-r", "memory", "1M", NULL, NULL);
    struct block_backend *be = open_unix();
    assert_true(be->info.read_only);
    assert_false(be->info.can_discard);
    uint8_t b[4096] = {1};
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, b, sizeof(b)), -EROFS);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, b, sizeof(b)), 0);
    assert_true(all_zero(b, sizeof(b)));
    block_backend_destroy(be);
    server_kill(&s);
    /* read_only = true on a writable export. */
    s = nbdkit("memory", "1M", NULL, NULL, NULL);
    struct config_block_dev c = nbd_cfg(unix_uri());
    c.read_only = true;
    be = block_backend_open(&c);
    assert_non_null(be);
    assert_true(be->info.read_only);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, b, sizeof(b)), -EROFS);
    assert_int_equal(block_req(be, BLOCK_OP_DISCARD, 0, NULL, sizeof(b)), -EROFS);
    block_backend_destroy(be);
    server_kill(&s);
}

/* Errors the server returns reach the device as errors: EIO on every
 * read, ENOSPC on every write; the connection stays up. */
static void test_server_errors(void **state)
{
    need_nbdkit();
    struct server s =
        nbdkit("--filter=error", "memory", "1M", "error-pread=EIO", "error-pread-rate=100%");
    struct block_backend *be = open_unix();
    uint8_t b[4096];
    memset(b, 7, sizeof(b));
    capture_stderr();
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, b, sizeof(b)), -EIO);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, b, sizeof(b)), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 4096, b, sizeof(b)), -EIO);
    char *out = captured_stderr();
    assert_non_null(strstr(out, "block_dev.t0: read of 4096 bytes at offset 0 failed"));
    block_backend_destroy(be);
    server_kill(&s);

    s = nbdkit("--filter=error", "memory", "1M", "error-pwrite=ENOSPC", "error-pwrite-rate=100%");
    be = open_unix();
    capture_stderr();
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, b, sizeof(b)), -ENOSPC);
    captured_stderr();
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, b, sizeof(b)), 0);
    assert_true(all_zero(b, sizeof(b)));
    block_backend_destroy(be);
    server_kill(&s);
}

/* A server answering ESHUTDOWN is going away: the disk reconnects and
 * sends the request again; one that answers so for reconnect_timeout gets
 * the request failed (EIO), and the disk goes on (reads still work). */
static void test_server_shutting_down(void **state)
{
    need_nbdkit();
    struct server s = nbdkit("--filter=error", "memory", "1M", "error-pwrite=ESHUTDOWN",
                             "error-pwrite-rate=100%");
    struct config_block_dev c = nbd_cfg(unix_uri());
    c.nbd.reconnect_timeout = 1;
    struct block_backend *be = block_backend_open(&c);
    assert_non_null(be);
    uint8_t b[4096];
    memset(b, 5, sizeof(b));
    capture_stderr();
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, b, sizeof(b)), -EIO);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, b, sizeof(b)), 0);
    char *out = captured_stderr();
    assert_non_null(strstr(out, "lost the NBD server (the server is shutting down (ESHUTDOWN))"));
    assert_non_null(strstr(out, "reconnected to the NBD server"));
    assert_true(all_zero(b, sizeof(b)));
    block_backend_destroy(be);
    server_kill(&s);
}

/* Requests in flight and new ones while the server is gone wait; after
 * a restart on the same file they complete and the data is there. */
static void test_reconnect(void **state)
{
    need_nbdkit();
    char file[160];
    snprintf(file, sizeof(file), "%s/disk.img", tmpdir);
    block_test_file(file, 16 * MIB);
    char file_arg[200];
    snprintf(file_arg, sizeof(file_arg), "file=%s", file);
    /* Each write takes the first server 300 ms, so the first half are in
     * flight (sent, not answered) when it dies. */
    struct server s = nbdkit("--filter=delay", "file", file_arg, "delay-write=300ms", NULL);
    struct block_backend *be = open_unix();
    enum { N = 64 };
    static uint8_t bufs[N][65536];
    struct pending_req reqs[N];
    for (unsigned i = 0; i < N; i++)
        fill(bufs[i], sizeof(bufs[i]), i * 65536ull, 5);

    capture_stderr();
    /* Half the writes go out, then the server dies under them. */
    for (unsigned i = 0; i < N / 2; i++)
        block_req_start(&reqs[i], be, BLOCK_OP_WRITE, i * 65536ull, bufs[i], 65536);
    usleep(100000);
    server_kill(&s);
    for (unsigned i = N / 2; i < N; i++)
        block_req_start(&reqs[i], be, BLOCK_OP_WRITE, i * 65536ull, bufs[i], 65536);
    usleep(300000);
    s = nbdkit("file", file_arg, NULL, NULL, NULL);
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(block_req_wait(&reqs[i]), 0);
    struct pending_req flush;
    block_req_start(&flush, be, BLOCK_OP_FLUSH, 0, NULL, 0);
    assert_int_equal(block_req_wait(&flush), 0);
    char *out = captured_stderr();
    assert_non_null(strstr(out, "block_dev.t0: lost the NBD server"));
    assert_non_null(strstr(out, "block_dev.t0: reconnected to the NBD server after"));

    /* The file holds every write. */
    uint8_t *back = malloc(N * 65536);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    assert_int_equal(pread(fd, back, N * 65536, 0), N * 65536);
    close(fd);
    for (unsigned i = 0; i < N; i++)
        assert_memory_equal(back + i * 65536, bufs[i], 65536);
    /* And reads through the new connection see them. */
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, back, N * 65536), 0);
    for (unsigned i = 0; i < N; i++)
        assert_memory_equal(back + i * 65536, bufs[i], 65536);
    free(back);
    block_backend_destroy(be);
    server_kill(&s);
}

/* With the server gone for longer than reconnect_timeout, waiting
 * requests fail with EIO, as do new ones; once it is back, I/O works. */
static void test_reconnect_timeout(void **state)
{
    need_nbdkit();
    struct server s = nbdkit("memory", "1M", NULL, NULL, NULL);
    struct config_block_dev c = nbd_cfg(unix_uri());
    c.nbd.reconnect_timeout = 0.5;
    struct block_backend *be = block_backend_open(&c);
    assert_non_null(be);
    uint8_t b[4096];
    memset(b, 9, sizeof(b));
    capture_stderr();
    server_kill(&s);
    int64_t t0 = now_ms();
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, b, sizeof(b)), -EIO);
    int64_t waited = now_ms() - t0;
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, b, sizeof(b)), -EIO);
    s = nbdkit("memory", "1M", NULL, NULL, NULL);
    /* The next attempt is at most 2 s away. */
    int rc = -EIO;
    for (int i = 0; i < 50 && rc != 0; i++) {
        rc = block_req(be, BLOCK_OP_WRITE, 0, b, sizeof(b));
        if (rc)
            usleep(100000);
    }
    assert_int_equal(rc, 0);
    char *out = captured_stderr();
    assert_non_null(strstr(out, "has not come back within 0.5 s; failing I/O until it does"));
    assert_non_null(strstr(out, "reconnected to the NBD server"));
    /* Not a timing check: the failure came after the wait, not at once. */
    assert_true(waited >= 400);
    block_backend_destroy(be);
    server_kill(&s);
}

/* No server, or a URI libnbd rejects: an error at the uri key. */
static void test_connect_errors(void **state)
{
    unlink(sock_path);
    struct config_block_dev c = nbd_cfg(unix_uri());
    capture_stderr();
    assert_null(block_backend_open(&c));
    char *out = captured_stderr();
    assert_non_null(strstr(out, "vm.toml:7:7: block_dev.t0.uri: cannot connect to nbd+unix:///"));
    c = nbd_cfg("nbd://[::1");
    capture_stderr();
    assert_null(block_backend_open(&c));
    out = captured_stderr();
    assert_non_null(strstr(out, "vm.toml:7:7: block_dev.t0.uri: cannot connect to nbd://[::1"));
}

/* TCP, in the test's own network namespace. */
static void test_tcp(void **state)
{
    need_nbdkit();
    if (!own_netns)
        prerequisite_missing("cannot make a network namespace (not root?)");
    const char *argv[] = {
        "nbdkit", "-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", "10809", "memory",
        "2M",     NULL};
    struct server s = server_start(argv, NULL, 10809);
    struct config_block_dev c = nbd_cfg("nbd://127.0.0.1:10809/");
    struct block_backend *be = block_backend_open(&c);
    assert_non_null(be);
    assert_int_equal(be->info.size, 2 * MIB);
    uint8_t *buf = malloc(MIB), *back = malloc(MIB);
    fill(buf, MIB, 0, 6);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, MIB, buf, MIB), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, MIB, back, MIB), 0);
    assert_memory_equal(back, buf, MIB);
    block_backend_destroy(be);
    server_kill(&s);
    free(buf);
    free(back);
}

/* TLS with a pre-shared key: the disk works, and a client without the
 * key is refused at the uri key. */
static void test_tls_psk(void **state)
{
    need_nbdkit();
    char psk[160], psk_arg[200], uri[400];
    snprintf(psk, sizeof(psk), "%s/keys.psk", tmpdir);
    FILE *f = fopen(psk, "w");
    assert_non_null(f);
    fprintf(f, "alice:8c2e7f6a1b5d4c3e9f0a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e\n");
    fclose(f);
    snprintf(psk_arg, sizeof(psk_arg), "--tls-psk=%s", psk);
    struct server s = nbdkit("--tls=require", psk_arg, "memory", "1M", NULL);
    snprintf(uri, sizeof(uri), "nbds+unix://alice@/?socket=%s&tls-psk-file=%s", sock_path, psk);
    struct config_block_dev c = nbd_cfg(uri);
    struct block_backend *be = block_backend_open(&c);
    assert_non_null(be);
    uint8_t b[8192], back[8192];
    fill(b, sizeof(b), 0, 7);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, b, sizeof(b)), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, back, sizeof(back)), 0);
    assert_memory_equal(back, b, sizeof(b));
    block_backend_destroy(be);
    /* Without TLS the server refuses the client. */
    c = nbd_cfg(unix_uri());
    capture_stderr();
    assert_null(block_backend_open(&c));
    char *out = captured_stderr();
    assert_non_null(strstr(out, "block_dev.t0.uri: cannot connect"));
    server_kill(&s);
}

/* qemu-nbd serving a raw file: writes land in the file. */
static void test_qemu_nbd(void **state)
{
    if (!have_program("qemu-nbd"))
        prerequisite_missing("qemu-nbd is not installed (Debian: qemu-utils)");
    char file[160];
    snprintf(file, sizeof(file), "%s/q.img", tmpdir);
    block_test_file(file, 4 * MIB);
    const char *argv[] = {"qemu-nbd", "-k",           sock_path, "-f", "raw",
                          "-t",       "--cache=none", file,      NULL};
    struct server s = server_start(argv, sock_path, 0);
    struct block_backend *be = open_unix();
    assert_int_equal(be->info.size, 4 * MIB);
    uint8_t *buf = malloc(MIB), *back = malloc(MIB);
    fill(buf, MIB, 0, 8);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 2 * MIB, buf, MIB), 0);
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    assert_int_equal(pread(fd, back, MIB, 2 * MIB), (ssize_t)MIB);
    close(fd);
    assert_memory_equal(back, buf, MIB);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE_ZEROES, 2 * MIB, NULL, 4096), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 2 * MIB, back, MIB), 0);
    assert_true(all_zero(back, 4096));
    assert_memory_equal(back + 4096, buf + 4096, MIB - 4096);
    block_backend_destroy(be);
    server_kill(&s);
    free(buf);
    free(back);
}

/* Under the seccomp filters, as in the VMM (the disk opened before the
 * main thread enters its filter; the disk's thread in net-block): the
 * parent kills the server and starts it again between two writes, so the
 * disk's thread reconnects under its filter. A forbidden system call ends
 * the child with SANDBOX_EXIT_CODE. */
static int ready_pipe[2];
static const char *child_uri;
static const char *child_hosts; /* a file to mount over /etc/hosts first, or NULL */

static int child_sandboxed_reconnect(void)
{
    /* A name of the test's own, in a mount namespace of the child's. */
    if (child_hosts &&
        (unshare(CLONE_NEWNS) < 0 || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
         mount(child_hosts, "/etc/hosts", NULL, MS_BIND, NULL) < 0))
        return 6;
    if (sandbox_init() < 0)
        return 1;
    struct config_block_dev c = nbd_cfg(child_uri);
    struct block_backend *be = block_backend_open(&c);
    if (!be || sandbox_enter_main() < 0)
        return 2;
    static uint8_t a[65536], b[65536], back[65536];
    fill(a, sizeof(a), 0, 9);
    fill(b, sizeof(b), 0, 10);
    if (block_req(be, BLOCK_OP_WRITE, 0, a, sizeof(a)) != 0)
        return 3;
    char one = 1;
    if (write(ready_pipe[1], &one, 1) != 1)
        return 4;
    usleep(100000); /* the parent kills the server */
    if (block_req(be, BLOCK_OP_WRITE, 65536, b, sizeof(b)) != 0 ||
        block_req(be, BLOCK_OP_READ, 0, back, sizeof(back)) != 0 || memcmp(back, a, sizeof(a)) ||
        block_req(be, BLOCK_OP_READ, 65536, back, sizeof(back)) != 0 || memcmp(back, b, sizeof(b)))
        return 5;
    block_backend_destroy(be);
    fprintf(stderr, "child: all I/O done\n");
    return 0;
}

/* Runs the child against the server argv starts (listening on port, or
 * on sock_path when port is 0), killed and restarted once. */
static void sandboxed_reconnect(const char *const *argv, unsigned port)
{
    struct server s = server_start(argv, port ? NULL : sock_path, port);
    int err_pipe[2];
    assert_int_equal(pipe(ready_pipe), 0);
    assert_int_equal(pipe(err_pipe), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready_pipe[0]);
        close(err_pipe[0]);
        dup2(err_pipe[1], STDERR_FILENO);
        _exit(child_sandboxed_reconnect());
    }
    close(ready_pipe[1]);
    close(err_pipe[1]);
    char one;
    bool ready = read(ready_pipe[0], &one, 1) == 1;
    close(ready_pipe[0]);
    server_kill(&s);
    usleep(300000);
    s = server_start(argv, port ? NULL : sock_path, port);
    static char err[16384];
    size_t len = 0;
    ssize_t n;
    while ((n = read(err_pipe[0], err + len, sizeof(err) - 1 - len)) > 0)
        len += (size_t)n;
    err[len] = '\0';
    close(err_pipe[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    server_kill(&s);
    if (!ready || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child status 0x%x, stderr:\n%s", status, err);
    assert_non_null(strstr(err, "sandbox: seccomp filters installed"));
    assert_non_null(strstr(err, "block_dev.t0: lost the NBD server"));
    assert_non_null(strstr(err, "block_dev.t0: reconnected to the NBD server"));
    assert_non_null(strstr(err, "child: all I/O done"));
}

/* TCP by a host name with two addresses (the first refuses): glibc sorts
 * them, asking netlink, which the filter answers with an error. */
static void test_sandboxed_reconnect(void **state)
{
    need_nbdkit();
    if (!own_netns)
        prerequisite_missing("cannot make a network namespace (not root?)");
    char file[160], file_arg[200], hosts[160];
    snprintf(file, sizeof(file), "%s/sandboxed.img", tmpdir);
    block_test_file(file, 4 * MIB);
    snprintf(file_arg, sizeof(file_arg), "file=%s", file);
    snprintf(hosts, sizeof(hosts), "%s/hosts", tmpdir);
    FILE *f = fopen(hosts, "w");
    assert_non_null(f);
    fprintf(f, "127.0.0.2 nbd-multi.test\n127.0.0.1 nbd-multi.test\n");
    fclose(f);
    child_uri = "nbd://nbd-multi.test:10810/";
    child_hosts = hosts;
    const char *argv[] = {"nbdkit", "-f", "-i", "127.0.0.1", "-p", "10810", "file", file_arg, NULL};
    sandboxed_reconnect(argv, 10810);
    child_hosts = NULL;
}

/* TLS with X.509 certificates (a CA and a server certificate made with
 * openssl), over a UNIX socket. */
static void test_sandboxed_reconnect_x509(void **state)
{
    need_nbdkit();
    if (!have_program("openssl"))
        prerequisite_missing("openssl is not installed");
    char pki[160], cmd[2048], file[160], file_arg[200], certs_arg[200], uri[512];
    snprintf(pki, sizeof(pki), "%s/pki", tmpdir);
    snprintf(cmd, sizeof(cmd),
             "set -e; mkdir -p %1$s; cd %1$s; "
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca "
             "-keyout ca-key.pem -out ca-cert.pem 2>/dev/null; "
             "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server-key.pem "
             "-out server.csr 2>/dev/null; "
             "printf 'subjectAltName=DNS:localhost\\n' > ext; "
             "openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem "
             "-CAcreateserial -days 2 -extfile ext -out server-cert.pem 2>/dev/null",
             pki);
    assert_int_equal(system(cmd), 0);
    snprintf(file, sizeof(file), "%s/x509.img", tmpdir);
    block_test_file(file, 4 * MIB);
    snprintf(file_arg, sizeof(file_arg), "file=%s", file);
    snprintf(certs_arg, sizeof(certs_arg), "--tls-certificates=%s", pki);
    snprintf(uri, sizeof(uri), "nbds+unix:///?socket=%s&tls-certificates=%s", sock_path, pki);
    child_uri = uri;
    const char *argv[] = {"nbdkit",  "-f",   "--tls=require", certs_arg, "-U",
                          sock_path, "file", file_arg,        NULL};
    sandboxed_reconnect(argv, 0);
}

int main(void)
{
    log_set_level(LOG_INFO);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_scattered),
        cmocka_unit_test(test_zero_trim),
        cmocka_unit_test(test_split_requests),
        cmocka_unit_test(test_unaligned_pieces),
        cmocka_unit_test(test_read_only),
        cmocka_unit_test(test_server_errors),
        cmocka_unit_test(test_server_shutting_down),
        cmocka_unit_test(test_reconnect),
        cmocka_unit_test(test_reconnect_timeout),
        cmocka_unit_test(test_connect_errors),
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_tls_psk),
        cmocka_unit_test(test_qemu_nbd),
        cmocka_unit_test(test_sandboxed_reconnect),
        cmocka_unit_test(test_sandboxed_reconnect_x509),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
