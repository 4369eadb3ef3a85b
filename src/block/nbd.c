/* nbd: a disk on an NBD server (our extension), through libnbd's
 * asynchronous API.
 *
 * libnbd is loaded with dlopen when the first such disk is opened, so a VM
 * without one maps neither it nor its TLS and XML libraries. The first
 * connection is made at open, in the main thread, so a wrong URI or an
 * absent server is a start-up error. Then one thread per disk owns the
 * connection: devices queue requests to it through a mutex and an eventfd;
 * it issues them (from and into the guest's buffers, host-contiguous
 * pieces joined, split at the server's maximum request size; through a
 * bounce buffer only for pieces that are not whole blocks of the server's
 * minimum), polls the socket and
 * completes requests from libnbd's completion callbacks.
 *
 * When the connection is lost, requests in flight and those that arrive
 * meanwhile wait; the thread reconnects with back-off (100 ms doubling to
 * 2 s) and issues them again (reads, writes, trims and zeroes may be
 * repeated without harm). If the server is not back within
 * reconnect_timeout, the waiting requests fail with EIO, as do new ones,
 * until it returns. A flush after a reconnect covers the writes the new
 * connection carried; the server's own guarantees decide what happened to
 * writes it acknowledged but never flushed before it went away. */
#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/block_internal.h"
#include "common/dynlib.h"
#include "common/log.h"
#include "common/thread.h"
#include "config/config.h"
#include "core/timer.h"

/* ---- libnbd, loaded on first use ---- */

#define NBD_FUNCTIONS(X)                                                                           \
    X(nbd_create)                                                                                  \
    X(nbd_close)                                                                                   \
    X(nbd_get_error)                                                                               \
    X(nbd_set_uri_allow_local_file)                                                                \
    X(nbd_set_pread_initialize)                                                                    \
    X(nbd_aio_connect_uri)                                                                         \
    X(nbd_aio_is_ready)                                                                            \
    X(nbd_aio_is_dead)                                                                             \
    X(nbd_aio_is_closed)                                                                           \
    X(nbd_aio_get_fd)                                                                              \
    X(nbd_aio_get_direction)                                                                       \
    X(nbd_aio_notify_read)                                                                         \
    X(nbd_aio_notify_write)                                                                        \
    X(nbd_aio_pread_structured)                                                                    \
    X(nbd_aio_pwrite)                                                                              \
    X(nbd_aio_flush)                                                                               \
    X(nbd_aio_trim)                                                                                \
    X(nbd_aio_zero)                                                                                \
    X(nbd_get_size)                                                                                \
    X(nbd_get_block_size)                                                                          \
    X(nbd_is_read_only)                                                                            \
    X(nbd_can_flush)                                                                               \
    X(nbd_can_trim)                                                                                \
    X(nbd_can_zero)

static struct {
#define NBD_POINTER(f) __typeof__(f) *f;
    NBD_FUNCTIONS(NBD_POINTER)
#undef NBD_POINTER
} lib;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static char lib_error[256]; /* empty once loaded */

static void lib_load(void)
{
    static const struct dynlib_symbol symbols[] = {
#define NBD_SYMBOL(f) {#f, (void **)&lib.f},
        NBD_FUNCTIONS(NBD_SYMBOL)
#undef NBD_SYMBOL
    };
    if (dynlib_load("libnbd.so.0", "libnbd0", symbols, sizeof(symbols) / sizeof(symbols[0]),
                    lib_error, sizeof(lib_error)))
        lib_error[0] = '\0';
}

static const char *lib_ready(void)
{
    pthread_once(&lib_once, lib_load);
    return lib_error[0] ? lib_error : NULL;
}

/* ---- the back end ---- */

/* libnbd refuses requests over 64 MiB; servers may advertise less. */
#define NBD_MAX_REQUEST (32u << 20)
#define NBD_CONNECT_DEADLINE_NS (5 * 1000000000ll)
#define NBD_BACKOFF_MIN_NS (100 * 1000000ll)
#define NBD_BACKOFF_MAX_NS (2000 * 1000000ll)
/* Bounce buffers (requests whose pieces are not whole blocks, which no
 * usual driver sends) hold at most this much at a time: more waits, and a
 * larger request is refused, so a guest cannot make us allocate without
 * bound. */
#define NBD_BOUNCE_BUDGET (16u << 20)

/* Commands without data (trim, write-zeroes) cover at most this much. */
#define NBD_MAX_RANGE (1u << 30)

/* block_request.backend_private words. In incoming and waiting a request's
 * BLK_PRIV_NEXT links the queue; one refused at submit carries its status
 * (blk_set_kind) and is completed as the thread takes it. With commands on
 * the connection it is on the issued list instead, through these: */
enum {
    NBD_PRIV_ISSUED_NEXT = 0, /* (the queue link's word: not in a queue then) */
    NBD_PRIV_SEEN = 1,        /* bytes the server's read replies delivered */
    NBD_PRIV_ISSUED_PREV = 2,
    NBD_PRIV_BOUNCE = 3, /* malloc'ed copy of a scattered buffer, or NULL */
    NBD_PRIV_PARTS = 4,  /* commands of this request still in flight */
    NBD_PRIV_ERROR = 5,  /* first error (positive errno) of a part, 0 */
    NBD_PRIV_RETRY = 6,  /* a part was lost with the connection: issue again */
    NBD_PRIV_OWNER = 7,  /* the struct nbd_backend, for libnbd's callback */
};

struct nbd_backend {
    struct block_backend be;
    char *name;
    char *uri;
    double timeout_s;
    struct blk_tracker tracker;
    struct log_ratelimit ratelimit;
    uint64_t server_size; /* as first seen: a different size on reconnect is refused */
    uint32_t max_request;
    uint32_t min_block; /* the server's minimum block size (1 if it names none) */
    bool can_flush;
    bool server_read_only, server_flush; /* as first seen: a reconnect must agree */
    uint64_t bounce_bytes;               /* in use (the thread's) */

    /* Shared with submitters. */
    pthread_mutex_t lock;
    struct blk_queue incoming;
    bool stop;
    int wake_fd;

    /* The thread's own. */
    pthread_t thread;
    struct nbd_handle *h;              /* NULL while disconnected */
    struct blk_queue waiting;          /* to issue once connected */
    struct block_request *issued_head; /* requests with commands in flight */
    unsigned issued;
    /* When the connection was first lost without a command succeeding
     * since (0: I/O is going through); reconnect_timeout counts from it. */
    int64_t lost_at_ns;
    bool reconnect_wanted; /* the server answered ESHUTDOWN: let it go */
    int64_t next_attempt_ns;
    int64_t backoff_ns;
    unsigned attempts; /* failed reconnects since the loss */
    bool failing;      /* reconnect_timeout passed: requests fail until the server returns */
};

/* The project's monotonic clock, signed for the deadline arithmetic. */
static int64_t now_ns(void)
{
    return (int64_t)vm_clock_ns();
}

/* libnbd's last error on this thread, for a connection that failed. */
static const char *connection_why(void)
{
    const char *e = lib.nbd_get_error();
    return e && *e ? e : "the server closed the connection";
}

/* Connects h to uri within deadline_ns (monotonic). Returns 0, or -1 with
 * why filled. */
static int connect_until(struct nbd_handle *h, const char *uri, int64_t deadline_ns, char *why,
                         size_t why_size)
{
    if (lib.nbd_aio_connect_uri(h, uri) < 0)
        goto api_failed;
    while (!lib.nbd_aio_is_ready(h)) {
        if (lib.nbd_aio_is_dead(h) || lib.nbd_aio_is_closed(h)) {
            /* No call failed: libnbd's last error is an older one. */
            snprintf(why, why_size, "the connection ended during the handshake");
            return -1;
        }
        int64_t left = deadline_ns - now_ns();
        if (left <= 0) {
            snprintf(why, why_size, "no answer within %lld s",
                     (long long)(NBD_CONNECT_DEADLINE_NS / 1000000000ll));
            return -1;
        }
        unsigned dir = lib.nbd_aio_get_direction(h);
        struct pollfd pfd = {.fd = lib.nbd_aio_get_fd(h),
                             .events = (short)((dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
                                               (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0))};
        if (pfd.fd < 0)
            goto api_failed;
        int n = poll(&pfd, 1, (int)(left / 1000000 + 1));
        if (n < 0 && errno != EINTR) {
            snprintf(why, why_size, "poll: %s", strerror(errno));
            return -1;
        }
        if (n <= 0)
            continue;
        if ((pfd.revents & (POLLIN | POLLHUP | POLLERR)) && lib.nbd_aio_notify_read(h) < 0)
            goto api_failed;
        if ((pfd.revents & POLLOUT) && lib.nbd_aio_notify_write(h) < 0)
            goto api_failed;
    }
    return 0;
api_failed:
    snprintf(why, why_size, "%s", connection_why());
    return -1;
}

/* A server that goes silent (no reset, no close) is declared lost within
 * about 30 s: keepalive probes when idle, and a limit on how long sent
 * data may stay unacknowledged. */
static void tcp_liveness(int fd)
{
    int domain = 0;
    socklen_t len = sizeof(domain);
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
        (domain != AF_INET && domain != AF_INET6))
        return;
    int on = 1, idle = 10, interval = 5, count = 3;
    unsigned user_timeout_ms = 30000;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms));
}

/* A new connection within the connect deadline, or NULL with why filled. */
static struct nbd_handle *open_connection(const char *uri, char *why, size_t why_size)
{
    struct nbd_handle *h = lib.nbd_create();
    if (!h) {
        snprintf(why, why_size, "%s", lib.nbd_get_error());
        return NULL;
    }
    /* The config's owner names the URI: its tls-psk-file and
     * tls-certificates parameters may name local files, as path does. */
    lib.nbd_set_uri_allow_local_file(h, true);
    /* Reads land in guest memory only from a successful reply, which fills
     * the buffer: libnbd need not zero it first (a memset per read). */
    lib.nbd_set_pread_initialize(h, false);
    if (connect_until(h, uri, now_ns() + NBD_CONNECT_DEADLINE_NS, why, why_size) < 0) {
        lib.nbd_close(h);
        return NULL;
    }
    tcp_liveness(lib.nbd_aio_get_fd(h));
    return h;
}

static void complete(struct nbd_backend *nb, struct block_request *req, int status)
{
    if (req->backend_private[NBD_PRIV_BOUNCE]) {
        free((void *)(uintptr_t)req->backend_private[NBD_PRIV_BOUNCE]);
        req->backend_private[NBD_PRIV_BOUNCE] = 0;
        nb->bounce_bytes -= req->len;
    }
    if (status < 0 && status != -EROFS && status != -EINVAL && status != -EOPNOTSUPP)
        log_limited(&nb->ratelimit, LOG_ERROR,
                    "block_dev.%s: %s of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s",
                    nb->name, block_op_name(req->op), req->len, req->offset, strerror(-status));
    blk_finish(&nb->tracker, req, status);
}

/* A server's error as a block status. */
static int block_status(int err)
{
    switch (err) {
    case EPERM:
    case EROFS:
        return -EROFS;
    case ENOSPC:
    case EDQUOT:
        return -ENOSPC;
    case ENOTSUP:
        return -EOPNOTSUPP;
    default:
        return -EIO;
    }
}

/* Errors that mean the connection, not the request, failed. */
static bool connection_error(int err)
{
    return err == ENOTCONN || err == ESHUTDOWN || err == ECONNRESET || err == EPIPE;
}

static struct block_request *priv_req(const struct block_request *req, int word)
{
    return (struct block_request *)(uintptr_t)req->backend_private[word];
}

static void issued_add(struct nbd_backend *nb, struct block_request *req)
{
    req->backend_private[NBD_PRIV_ISSUED_PREV] = 0;
    req->backend_private[NBD_PRIV_ISSUED_NEXT] = (uint64_t)(uintptr_t)nb->issued_head;
    if (nb->issued_head)
        nb->issued_head->backend_private[NBD_PRIV_ISSUED_PREV] = (uint64_t)(uintptr_t)req;
    nb->issued_head = req;
    nb->issued++;
}

static void issued_remove(struct nbd_backend *nb, struct block_request *req)
{
    struct block_request *prev = priv_req(req, NBD_PRIV_ISSUED_PREV);
    struct block_request *next = priv_req(req, NBD_PRIV_ISSUED_NEXT);
    if (prev)
        prev->backend_private[NBD_PRIV_ISSUED_NEXT] = (uint64_t)(uintptr_t)next;
    else
        nb->issued_head = next;
    if (next)
        next->backend_private[NBD_PRIV_ISSUED_PREV] = (uint64_t)(uintptr_t)prev;
    nb->issued--;
}

static bool stalled(const struct nbd_backend *nb, int64_t now)
{
    return nb->lost_at_ns && now - nb->lost_at_ns >= (int64_t)(nb->timeout_s * 1e9);
}

/* One command of req ended (err: 0 or a positive errno). The last one
 * completes req, or queues it again when the connection took a part. */
static void part_finished(struct nbd_backend *nb, struct block_request *req, int err)
{
    if (err == ESHUTDOWN) {
        /* The server is going away: reconnect, unless that has been going
         * on for reconnect_timeout without a command succeeding. */
        nb->reconnect_wanted = true;
        if (stalled(nb, now_ns()))
            err = EIO;
    }
    if (err) {
        if (connection_error(err))
            req->backend_private[NBD_PRIV_RETRY] = 1;
        else if (!req->backend_private[NBD_PRIV_ERROR])
            req->backend_private[NBD_PRIV_ERROR] = (uint64_t)err;
    }
    if (--req->backend_private[NBD_PRIV_PARTS] > 0)
        return;
    issued_remove(nb, req);
    if (req->backend_private[NBD_PRIV_RETRY] && !req->backend_private[NBD_PRIV_ERROR]) {
        blk_queue_push(&nb->waiting, req);
        return;
    }
    err = (int)req->backend_private[NBD_PRIV_ERROR];
    if (!err && req->op == BLOCK_OP_READ && req->backend_private[NBD_PRIV_SEEN] != req->len) {
        /* A structured reply may end without all its data: what the guest
         * would get is not what the disk holds. */
        log_limited(&nb->ratelimit, LOG_ERROR,
                    "block_dev.%s: the server's replies to a read of %" PRIu64
                    " bytes held %" PRIu64,
                    nb->name, req->len, req->backend_private[NBD_PRIV_SEEN]);
        err = EIO;
    }
    if (!err)
        nb->lost_at_ns = 0; /* I/O goes through */
    void *bounce = (void *)(uintptr_t)req->backend_private[NBD_PRIV_BOUNCE];
    if (!err && req->op == BLOCK_OP_READ && bounce)
        blk_iov_copy(req, 0, bounce, req->len, true);
    complete(nb, req, err ? block_status(err) : 0);
}

/* libnbd's chunk callback of a read: counts what the replies delivered
 * (data, or a hole libnbd zeroes). */
static int part_chunk(void *opaque, const void *subbuf, size_t count, uint64_t offset,
                      unsigned status, int *error)
{
    struct block_request *req = opaque;
    if (status == LIBNBD_READ_DATA || status == LIBNBD_READ_HOLE)
        req->backend_private[NBD_PRIV_SEEN] += count;
    return 0;
}

/* libnbd's completion callback; runs on the disk's thread inside a libnbd
 * call, so it calls no libnbd function. */
static int part_done(void *opaque, int *error)
{
    struct block_request *req = opaque;
    part_finished((struct nbd_backend *)(uintptr_t)req->backend_private[NBD_PRIV_OWNER], req,
                  *error);
    return 1; /* retire the command */
}

/* Sends one command of req: [off, off+len) from or into buf. Returns 0,
 * or -1 when the connection failed (req then waits for the next one). */
static int send_part(struct nbd_backend *nb, struct block_request *req, uint8_t *buf, uint64_t len,
                     uint64_t off)
{
    nbd_completion_callback cb = {.callback = part_done, .user_data = req};
    int64_t cookie = -1;
    req->backend_private[NBD_PRIV_PARTS]++;
    switch (req->op) {
    case BLOCK_OP_READ:
        cookie = lib.nbd_aio_pread_structured(
            nb->h, buf, len, off, (nbd_chunk_callback){.callback = part_chunk, .user_data = req},
            cb, 0);
        break;
    case BLOCK_OP_WRITE:
        cookie = lib.nbd_aio_pwrite(nb->h, buf, len, off, cb, 0);
        break;
    case BLOCK_OP_FLUSH:
        cookie = lib.nbd_aio_flush(nb->h, cb, 0);
        break;
    case BLOCK_OP_DISCARD:
        cookie = lib.nbd_aio_trim(nb->h, len, off, cb, 0);
        break;
    case BLOCK_OP_WRITE_ZEROES:
        cookie = lib.nbd_aio_zero(nb->h, len, off, cb, 0);
        break;
    }
    if (cookie >= 0)
        return 0;
    /* Not issued, so its callback will not run. */
    if (lib.nbd_aio_is_dead(nb->h) || lib.nbd_aio_is_closed(nb->h)) {
        part_finished(nb, req, ENOTCONN);
        return -1;
    }
    log_limited(&nb->ratelimit, LOG_ERROR, "block_dev.%s: %s refused by libnbd: %s", nb->name,
                block_op_name(req->op), lib.nbd_get_error());
    part_finished(nb, req, EIO);
    return 0;
}

/* Sends [off, off+len) from or into buf in commands of at most the
 * server's maximum. */
static int send_range(struct nbd_backend *nb, struct block_request *req, uint8_t *buf, uint64_t len,
                      uint64_t off)
{
    /* The server's maximum is about payloads; commands without one go in
     * larger pieces (whole blocks). */
    uint32_t bs = nb->be.info.block_size;
    uint64_t max = buf ? nb->max_request : NBD_MAX_RANGE / bs * bs;
    for (uint64_t done = 0; done < len;) {
        uint64_t n = len - done < max ? len - done : max;
        if (send_part(nb, req, buf ? buf + done : NULL, n, off + done) < 0)
            return -1;
        done += n;
    }
    return 0;
}

/* The guest's buffers can be sent as they are when every run of
 * host-contiguous pieces is a whole number of the server's minimum block. */
static bool pieces_aligned(const struct nbd_backend *nb, const struct block_request *req)
{
    uint64_t run = 0;
    for (unsigned i = 0; i < req->iovcnt; i++) {
        run += req->iov[i].iov_len;
        bool joins = i + 1 < req->iovcnt && (uint8_t *)req->iov[i].iov_base + req->iov[i].iov_len ==
                                                (uint8_t *)req->iov[i + 1].iov_base;
        if (!joins) {
            if (run % nb->min_block)
                return false;
            run = 0;
        }
    }
    return true;
}

/* Issues every command of req on the connection: data straight from or
 * into the guest's buffers (host-contiguous pieces joined), through a
 * bounce buffer only when a piece is not whole blocks. Returns 0; 1 when
 * req must wait for bounce-buffer room (not issued); -1 when the
 * connection failed while issuing (req then waits for the next one). */
static int issue(struct nbd_backend *nb, struct block_request *req)
{
    req->backend_private[NBD_PRIV_ERROR] = 0;
    req->backend_private[NBD_PRIV_RETRY] = 0;
    req->backend_private[NBD_PRIV_SEEN] = 0;
    req->backend_private[NBD_PRIV_OWNER] = (uint64_t)(uintptr_t)nb;
    bool data = req->op == BLOCK_OP_READ || req->op == BLOCK_OP_WRITE;
    uint8_t *bounce = (uint8_t *)(uintptr_t)req->backend_private[NBD_PRIV_BOUNCE];
    if (data && req->len > 0 && !bounce && !pieces_aligned(nb, req)) {
        if (req->len > NBD_BOUNCE_BUDGET) {
            log_limited(&nb->ratelimit, LOG_ERROR,
                        "block_dev.%s: %s of %" PRIu64 " bytes in pieces that are not whole "
                        "%" PRIu32 "-byte blocks: over the %u MiB such a request may have",
                        nb->name, block_op_name(req->op), req->len, nb->min_block,
                        NBD_BOUNCE_BUDGET >> 20);
            complete(nb, req, -EINVAL);
            return 0;
        }
        if (nb->bounce_bytes + req->len > NBD_BOUNCE_BUDGET)
            return 1;
        /* Zeroed: nothing of the heap can reach the guest. */
        if (!(bounce = calloc(1, req->len))) {
            complete(nb, req, -ENOMEM);
            return 0;
        }
        req->backend_private[NBD_PRIV_BOUNCE] = (uint64_t)(uintptr_t)bounce;
        nb->bounce_bytes += req->len;
        if (req->op == BLOCK_OP_WRITE)
            blk_iov_copy(req, 0, bounce, req->len, false);
    }
    /* This function's own count, so no callback finishes req early. */
    req->backend_private[NBD_PRIV_PARTS] = 1;
    issued_add(nb, req);
    int rc = 0;
    if (req->op == BLOCK_OP_FLUSH) {
        rc = send_part(nb, req, NULL, 0, 0);
    } else if (!data || bounce) {
        rc = send_range(nb, req, bounce, req->len, req->offset);
    } else {
        uint64_t off = req->offset;
        for (unsigned i = 0; i < req->iovcnt && rc == 0;) {
            uint8_t *base = req->iov[i].iov_base;
            uint64_t len = req->iov[i].iov_len;
            for (i++; i < req->iovcnt && (uint8_t *)req->iov[i].iov_base == base + len; i++)
                len += req->iov[i].iov_len;
            if (len)
                rc = send_range(nb, req, base, len, off);
            off += len;
        }
    }
    part_finished(nb, req, 0);
    return rc;
}

/* ---- the disk's thread ---- */

/* Ends the connection; requests it carried wait for the next one. */
static void disconnect(struct nbd_backend *nb, const char *why)
{
    log_warn("block_dev.%s: lost the NBD server (%s); I/O waits up to %g s while reconnecting",
             nb->name, why, nb->timeout_s);
    /* A dead handle has already failed its commands with ENOTCONN (they
     * are waiting again); closing one that is not drops the rest without
     * a word, so those requests are taken back here. */
    lib.nbd_close(nb->h);
    nb->h = NULL;
    nb->reconnect_wanted = false;
    while (nb->issued_head) {
        struct block_request *req = nb->issued_head;
        issued_remove(nb, req);
        blk_queue_push(&nb->waiting, req);
    }
    int64_t now = now_ns();
    /* Time counts from the first loss until a command succeeds again. */
    if (!nb->lost_at_ns) {
        nb->lost_at_ns = now;
        nb->backoff_ns = NBD_BACKOFF_MIN_NS;
        nb->attempts = 0;
    }
    nb->next_attempt_ns = now + (nb->attempts ? nb->backoff_ns : 0);
}

static void try_reconnect(struct nbd_backend *nb)
{
    char why[512];
    struct nbd_handle *h = open_connection(nb->uri, why, sizeof(why));
    if (h && (uint64_t)lib.nbd_get_size(h) != nb->server_size) {
        snprintf(why, sizeof(why), "the export's size is now %" PRId64 " bytes, not %" PRIu64,
                 lib.nbd_get_size(h), nb->server_size);
        lib.nbd_close(h);
        h = NULL;
    }
    if (h && ((lib.nbd_is_read_only(h) == 1) != nb->server_read_only ||
              (lib.nbd_can_flush(h) == 1) != nb->server_flush ||
              lib.nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM) > (int64_t)nb->min_block)) {
        snprintf(why, sizeof(why),
                 "the export is not what it was (read-only, flush or minimum block size)");
        lib.nbd_close(h);
        h = NULL;
    }
    if (!h) {
        /* The first few failures, then one a minute (attempts 2 s apart). */
        if (++nb->attempts <= 3 || nb->attempts % 30 == 0)
            log_warn("block_dev.%s: reconnecting (attempt %u): %s", nb->name, nb->attempts, why);
        nb->next_attempt_ns = now_ns() + nb->backoff_ns;
        nb->backoff_ns =
            nb->backoff_ns * 2 > NBD_BACKOFF_MAX_NS ? NBD_BACKOFF_MAX_NS : nb->backoff_ns * 2;
        return;
    }
    nb->h = h;
    nb->failing = false;
    log_info("block_dev.%s: reconnected to the NBD server after %.1f s", nb->name,
             (double)(now_ns() - nb->lost_at_ns) / 1e9);
    /* lost_at_ns stays until a command succeeds: a server that takes
     * connections but fails every command still times out. */
}

static void *nbd_main(void *arg)
{
    struct nbd_backend *nb = arg;
    for (;;) {
        pthread_mutex_lock(&nb->lock);
        struct blk_queue taken = nb->incoming;
        nb->incoming = (struct blk_queue){0};
        bool stop = nb->stop;
        pthread_mutex_unlock(&nb->lock);
        /* Refused at submit: completed now, outside the lock (a device may
         * submit again from its completion). */
        for (struct block_request *req; (req = blk_queue_pop(&taken));) {
            if (blk_kind(req) == BLK_KIND_STATUS)
                complete(nb, req, blk_preset_status(req));
            else
                blk_queue_push(&nb->waiting, req);
        }
        if (stop && !nb->waiting.head && nb->issued == 0)
            break;

        int64_t now = now_ns();
        if (!nb->h && now >= nb->next_attempt_ns)
            try_reconnect(nb);
        if (!nb->h && nb->waiting.head && stalled(nb, now)) {
            if (!nb->failing)
                log_error("block_dev.%s: the NBD server has not come back within %g s; "
                          "failing I/O until it does",
                          nb->name, nb->timeout_s);
            nb->failing = true;
            for (struct block_request *req; (req = blk_queue_pop(&nb->waiting));)
                complete(nb, req, -EIO);
        }
        /* Each waiting request once per round; one waiting for
         * bounce-buffer room (freed by completions) waits for the poll. */
        bool issued_any = false;
        for (unsigned n = nb->waiting.len; nb->h && n > 0; n--) {
            struct block_request *req = blk_queue_pop(&nb->waiting);
            issued_any = true;
            int rc = issue(nb, req);
            if (rc < 0)
                disconnect(nb, connection_why());
            if (rc == 1)
                blk_queue_push(&nb->waiting, req);
        }
        /* The connection can die inside a libnbd call that still queued
         * its command, and a server answering ESHUTDOWN is going away:
         * either way nothing more will come on this socket. */
        if (nb->h && issued_any &&
            (lib.nbd_aio_is_dead(nb->h) || lib.nbd_aio_is_closed(nb->h) ||
             lib.nbd_aio_get_fd(nb->h) < 0))
            disconnect(nb, connection_why());
        else if (nb->h && nb->reconnect_wanted)
            disconnect(nb, "the server is shutting down (ESHUTDOWN)");

        struct pollfd pfd[2] = {{.fd = nb->wake_fd, .events = POLLIN}, {.fd = -1}};
        int timeout_ms = -1;
        if (nb->h) {
            unsigned dir = lib.nbd_aio_get_direction(nb->h);
            pfd[1].fd = lib.nbd_aio_get_fd(nb->h);
            pfd[1].events = (short)((dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
                                    (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0));
        } else {
            int64_t wait_ns = nb->next_attempt_ns - now_ns();
            if (nb->waiting.head && !nb->failing && nb->lost_at_ns) {
                int64_t give_up = nb->lost_at_ns + (int64_t)(nb->timeout_s * 1e9) - now_ns();
                wait_ns = give_up < wait_ns ? give_up : wait_ns;
            }
            timeout_ms = wait_ns > 0 ? (int)(wait_ns / 1000000 + 1) : 0;
        }
        if (poll(pfd, 2, timeout_ms) < 0 && errno != EINTR) {
            log_error("block_dev.%s: poll: %s", nb->name, strerror(errno));
            usleep(10000);
            continue;
        }
        if (pfd[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(nb->wake_fd, &v, sizeof(v));
            (void)r;
        }
        if (nb->h && pfd[1].revents) {
            /* After a read the direction libnbd wants may have changed:
             * write only if it still asks to. */
            int rc = 0;
            if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))
                rc = lib.nbd_aio_notify_read(nb->h);
            if (rc == 0 && (pfd[1].revents & POLLOUT) &&
                (lib.nbd_aio_get_direction(nb->h) & LIBNBD_AIO_DIRECTION_WRITE))
                rc = lib.nbd_aio_notify_write(nb->h);
            if (rc < 0 || lib.nbd_aio_is_dead(nb->h) || lib.nbd_aio_is_closed(nb->h))
                disconnect(nb, connection_why());
        }
    }
    return NULL;
}

/* ---- block_backend_ops ---- */

static int nbd_submit(struct block_backend *be, struct block_request *req)
{
    struct nbd_backend *nb = (struct nbd_backend *)be;
    int rc = blk_check_request(be, req);
    if (rc == 0 && req->op == BLOCK_OP_FLUSH && !nb->can_flush)
        blk_set_kind(req, BLK_KIND_STATUS, 0); /* the server keeps no cache to flush */
    else if (rc == 0 && ((req->op == BLOCK_OP_DISCARD && !be->info.can_discard) ||
                         (req->op == BLOCK_OP_WRITE_ZEROES && !be->info.can_write_zeroes)))
        blk_set_kind(req, BLK_KIND_STATUS, -EOPNOTSUPP);
    else
        blk_set_kind(req, rc ? BLK_KIND_STATUS : BLK_KIND_IO, rc);
    req->backend_private[NBD_PRIV_BOUNCE] = 0;
    blk_handoff(&nb->tracker, &nb->lock, &nb->incoming, nb->wake_fd, req);
    return 0;
}

static void nbd_drain(struct block_backend *be)
{
    blk_tracker_drain(&((struct nbd_backend *)be)->tracker);
}

static void free_backend(struct nbd_backend *nb)
{
    if (nb->h)
        lib.nbd_close(nb->h);
    if (nb->wake_fd >= 0)
        close(nb->wake_fd);
    pthread_mutex_destroy(&nb->lock);
    blk_tracker_destroy(&nb->tracker);
    free(nb->uri);
    free(nb->name);
    free(nb);
}

static void nbd_destroy(struct block_backend *be)
{
    struct nbd_backend *nb = (struct nbd_backend *)be;
    blk_tracker_drain(&nb->tracker);
    pthread_mutex_lock(&nb->lock);
    nb->stop = true;
    pthread_mutex_unlock(&nb->lock);
    blk_wake(nb->wake_fd);
    pthread_join(nb->thread, NULL);
    free_backend(nb);
}

static const struct block_backend_ops nbd_ops = {
    .submit = nbd_submit,
    .drain = nbd_drain,
    .destroy = nbd_destroy,
};

struct block_backend *block_nbd_open(const struct config_block_dev *cfg)
{
    const char *err = lib_ready();
    if (err) {
        blk_config_error(cfg, "uri", cfg->nbd.uri_pos, "%s", err);
        return NULL;
    }
    struct nbd_backend *nb = calloc(1, sizeof(*nb));
    if (!nb || !(nb->name = strdup(cfg->name)) || !(nb->uri = strdup(cfg->nbd.uri))) {
        if (nb)
            free(nb->name);
        free(nb);
        log_error("block_dev.%s: out of memory", cfg->name);
        return NULL;
    }
    nb->timeout_s = cfg->nbd.reconnect_timeout;
    nb->wake_fd = -1;
    pthread_mutex_init(&nb->lock, NULL);
    blk_tracker_init(&nb->tracker);

    char why[512];
    if (!(nb->h = open_connection(nb->uri, why, sizeof(why)))) {
        blk_config_error(cfg, "uri", cfg->nbd.uri_pos, "cannot connect to %s: %s", nb->uri, why);
        goto fail;
    }
    int64_t size = lib.nbd_get_size(nb->h);
    int64_t min_block = lib.nbd_get_block_size(nb->h, LIBNBD_SIZE_MINIMUM);
    int64_t max_block = lib.nbd_get_block_size(nb->h, LIBNBD_SIZE_MAXIMUM);
    uint32_t bs = config_block_size(cfg);
    if (size < 0) {
        blk_config_error(cfg, "uri", cfg->nbd.uri_pos, "cannot get the export's size: %s",
                         lib.nbd_get_error());
        goto fail;
    }
    if (min_block > (int64_t)bs) {
        blk_config_error(cfg, "uri", cfg->nbd.uri_pos,
                         "the server's minimum block size is %" PRId64
                         " bytes, more than the disk's "
                         "block size (%" PRIu32 "; set block_size)",
                         min_block, bs);
        goto fail;
    }
    if ((uint64_t)size < bs) {
        blk_config_error(cfg, "uri", cfg->nbd.uri_pos,
                         "the export holds %" PRId64 " bytes, less than one block of %" PRIu32,
                         size, bs);
        goto fail;
    }
    if ((uint64_t)size % bs)
        log_warn("block_dev.%s: the export's %" PRId64 " bytes are not a whole number of "
                 "%" PRIu32 "-byte blocks; the guest sees %" PRIu64,
                 cfg->name, size, bs, (uint64_t)size / bs * bs);
    nb->server_size = (uint64_t)size;
    nb->max_request = NBD_MAX_REQUEST;
    if (max_block > 0 && max_block < (int64_t)nb->max_request)
        nb->max_request = (uint32_t)max_block / bs * bs;
    if (nb->max_request < bs)
        nb->max_request = bs;
    nb->min_block = min_block > 1 ? (uint32_t)min_block : 1;
    bool server_ro = lib.nbd_is_read_only(nb->h) == 1;
    nb->server_read_only = server_ro;
    nb->server_flush = lib.nbd_can_flush(nb->h) == 1;
    bool ro = cfg->read_only || server_ro;
    if (server_ro && !cfg->read_only)
        log_info("block_dev.%s: the server exports %s read-only; so is the disk", cfg->name,
                 nb->uri);
    nb->can_flush = lib.nbd_can_flush(nb->h) == 1 && !cfg->skip_flush;
    nb->be.ops = &nbd_ops;
    nb->be.name = nb->name;
    nb->be.info = (struct block_info){
        .size = (uint64_t)size / bs * bs,
        .block_size = bs,
        .read_only = ro,
        .can_discard = !ro && lib.nbd_can_trim(nb->h) == 1,
        .can_write_zeroes = !ro && lib.nbd_can_zero(nb->h) == 1,
        .volatile_cache = nb->can_flush,
        .workers = 1,
    };
    if ((nb->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        log_error("block_dev.%s: eventfd: %s", cfg->name, strerror(errno));
        goto fail;
    }
    char tname[16];
    snprintf(tname, sizeof(tname), "nbd-%s", cfg->name);
    int rc = thread_start(&nb->thread, tname, THREAD_NET_BLOCK, 0, nbd_main, nb);
    if (rc < 0) {
        log_error("block_dev.%s: cannot start its thread: %s", cfg->name, strerror(-rc));
        goto fail;
    }
    log_debug("block_dev.%s: nbd %s, %" PRIu64 " bytes, block size %" PRIu32 "%s%s%s%s", cfg->name,
              nb->uri, nb->be.info.size, bs, ro ? ", read-only" : "",
              nb->can_flush ? ", flush" : "", nb->be.info.can_discard ? ", trim" : "",
              nb->be.info.can_write_zeroes ? ", zero" : "");
    return &nb->be;
fail:
    free_backend(nb);
    return NULL;
}
