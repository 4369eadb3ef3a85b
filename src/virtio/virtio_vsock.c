#include "virtio/virtio_vsock.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/iov.h"
#include "common/unix_listener.h"
#include "virtio/vsock_packet.h"

#define F(bit) (1ull << (bit))
#define RXQ 0
#define TXQ 1
#define EVQ 2
#define NUM_QUEUES 3
#define CONFIG_SIZE 8             /* le64 guest_cid */
#define CHAIN_MAX_BUFS 256        /* buffers in one chain */
#define BATCH_PACKETS 256         /* packets per wake-up before the loop looks around */
#define RST_QUEUE_MAX 256         /* RSTs owed to the guest for packets without a connection */
#define LINE_MAX_LEN 32           /* "CONNECT 4294967295\n" fits */
#define HASH_BUCKETS 1024         /* connection table */
#define BUF_MIN 4096              /* first allocation of a connection's buffer */
#define BUF_ALLOC_MAX (64u << 20) /* the largest per-connection buf_alloc taken */
#define EPHEMERAL_FIRST 49152     /* host ports for host-initiated connections */

/* What a connection owes the guest, sent in this order. */
enum {
    PEND_REQUEST = 1,
    PEND_RESPONSE = 2,
    PEND_CREDIT = 4,
    PEND_RST = 8,
};

enum conn_state {
    CONN_HANDSHAKE,        /* a host client; its CONNECT line not read yet */
    CONN_GUEST_CONNECTING, /* host-initiated: REQUEST sent, waiting for RESPONSE */
    CONN_HOST_CONNECTING,  /* guest-initiated: connect() to the mapping in progress */
    CONN_ESTABLISHED,
    CONN_DEAD, /* out of the table; freed by the rx loop after its RST (if owed) */
};

struct vsock;

struct conn {
    struct vsock *vs;
    struct conn *all_prev, *all_next; /* every connection of the device */
    struct conn *hash_next;
    struct conn *work_next; /* the rx loop's work queue */
    bool queued;
    enum conn_state state;
    bool hashed;
    char line[LINE_MAX_LEN]; /* a host client's CONNECT line so far */
    unsigned line_len;
    int fd;
    struct io_watch watch;
    uint32_t watched; /* the events asked of the loop (0: not watched) */
    uint32_t host_port, guest_port;
    unsigned pending; /* PEND_* */

    /* Guest to host. */
    uint8_t *buf; /* data the host socket has not taken yet */
    uint32_t buf_start, buf_len, buf_cap;
    uint32_t ok_left;      /* of buf_len, the "OK <port>" line in front (no guest data) */
    uint32_t rx_cnt;       /* payload received from the guest */
    uint32_t fwd_cnt;      /* of it, written to the host */
    uint32_t fwd_cnt_sent; /* fwd_cnt as the guest last heard it */

    /* Host to guest. */
    uint32_t tx_cnt; /* payload sent to the guest */
    uint32_t peer_buf_alloc, peer_fwd_cnt;
    bool readable; /* the socket polled readable and was not read dry */

    bool guest_shut_rcv, guest_shut_send; /* SHUTDOWN flags from the guest */
    bool host_wr_shut;                    /* shutdown(SHUT_WR) done */
    bool host_eof;                        /* read 0: SHUTDOWN SEND sent */
    const char *dead_why;                 /* for the log when a RST goes out */
    /* Until established: when the connection gives up waiting (a host
     * client's CONNECT line, the guest's RESPONSE, our connect()), so a
     * silent peer cannot hold a slot under the cap for ever. 0: none. */
    uint64_t deadline_ms;
};

struct vsock {
    struct virtio_device vdev;
    uint64_t guest_cid;
    struct virtio_vsock_mapping *mappings;
    size_t mapping_count;
    unsigned max_conns;
    uint64_t max_buffered;
    uint32_t buf_alloc;

    /* The listener (host-initiated connections). */
    struct unix_listener listener; /* fd -1 without a uds_path */
    struct io_watch listen_watch;
    /* Periodic: ends connections past their deadline_ms. */
    int timer_fd;
    struct io_watch timer_watch;
    unsigned connect_timeout_ms;

    pthread_mutex_t lock; /* everything below */
    bool active;          /* the rx queue runs: connections may exist */
    struct conn *all;
    struct conn *buckets[HASH_BUCKETS];
    struct conn *work_head, *work_tail;
    unsigned nconns;
    uint64_t buffered; /* sum of the connections' buffer capacities */
    uint32_t next_port;
    struct vsock_hdr rst_queue[RST_QUEUE_MAX];
    unsigned rst_head, rst_count;

    _Atomic bool event_reset_pending;

    uint64_t conns_total, refused, malformed, credit_lies, resets_sent, rx_bytes, tx_bytes;

    struct iovec rx_iov[CHAIN_MAX_BUFS]; /* rx loop only */
    struct iovec tx_iov[CHAIN_MAX_BUFS]; /* tx loop only */
    struct iovec ev_iov[CHAIN_MAX_BUFS]; /* event loop only */
};

static struct vsock *vs_of(struct virtio_device *vdev)
{
    return container_of(vdev, struct vsock, vdev);
}

static void stats_locked(struct vsock *vs, struct virtio_vsock_stats *out);

/* ---- The connection table (vs->lock held) ---- */

static unsigned bucket_of(uint32_t host_port, uint32_t guest_port)
{
    uint32_t h = host_port * 0x9e3779b1u ^ guest_port * 0x85ebca6bu;
    return (h ^ (h >> 16)) % HASH_BUCKETS;
}

static struct conn *conn_find(struct vsock *vs, uint32_t host_port, uint32_t guest_port)
{
    for (struct conn *c = vs->buckets[bucket_of(host_port, guest_port)]; c; c = c->hash_next)
        if (c->host_port == host_port && c->guest_port == guest_port)
            return c;
    return NULL;
}

static void conn_hash(struct vsock *vs, struct conn *c)
{
    unsigned b = bucket_of(c->host_port, c->guest_port);
    c->hash_next = vs->buckets[b];
    vs->buckets[b] = c;
    c->hashed = true;
}

static void conn_unhash(struct vsock *vs, struct conn *c)
{
    if (!c->hashed)
        return;
    for (struct conn **pp = &vs->buckets[bucket_of(c->host_port, c->guest_port)]; *pp;
         pp = &(*pp)->hash_next) {
        if (*pp == c) {
            *pp = c->hash_next;
            break;
        }
    }
    c->hashed = false;
}

/* The rx loop looks at the connection next time it runs. */
static void conn_enqueue(struct vsock *vs, struct conn *c)
{
    if (c->queued)
        return;
    c->queued = true;
    c->work_next = NULL;
    if (vs->work_tail)
        vs->work_tail->work_next = c;
    else
        vs->work_head = c;
    vs->work_tail = c;
}

static struct conn *work_pop(struct vsock *vs)
{
    struct conn *c = vs->work_head;
    if (c) {
        vs->work_head = c->work_next;
        if (!vs->work_head)
            vs->work_tail = NULL;
        c->queued = false;
        c->work_next = NULL;
    }
    return c;
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static struct conn *conn_new(struct vsock *vs, int fd, enum conn_state state)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->vs = vs;
    c->fd = fd;
    c->state = state;
    c->deadline_ms = now_ms() + vs->connect_timeout_ms;
    io_watch_init(&c->watch);
    c->all_next = vs->all;
    if (vs->all)
        vs->all->all_prev = c;
    vs->all = c;
    vs->nconns++;
    return c;
}

/* Takes c off the work queue wherever it is on it. */
static void work_remove(struct vsock *vs, struct conn *c)
{
    if (!c->queued)
        return;
    struct conn *prev = NULL;
    for (struct conn *w = vs->work_head; w; prev = w, w = w->work_next) {
        if (w != c)
            continue;
        if (prev)
            prev->work_next = c->work_next;
        else
            vs->work_head = c->work_next;
        if (vs->work_tail == c)
            vs->work_tail = prev;
        break;
    }
    c->queued = false;
    c->work_next = NULL;
}

/* rx loop (or with the loop paused): the connection's last breath. */
static void conn_free(struct vsock *vs, struct conn *c)
{
    work_remove(vs, c);
    if (c->watch.fd >= 0)
        io_loop_unwatch(virtio_queue_loop(&vs->vdev, RXQ), &c->watch);
    conn_unhash(vs, c);
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else
        vs->all = c->all_next;
    if (c->all_next)
        c->all_next->all_prev = c->all_prev;
    if (c->fd >= 0)
        close(c->fd);
    vs->buffered -= c->buf_cap;
    free(c->buf);
    vs->nconns--;
    free(c);
}

/* The guest said RST (or the connection never reached it): closed
 * without a word to the guest. */
static void conn_drop(struct vsock *vs, struct conn *c)
{
    conn_unhash(vs, c);
    c->state = CONN_DEAD;
    c->pending = 0;
    conn_enqueue(vs, c);
}

/* Ends the connection with a RST to the guest. */
static void conn_reset(struct vsock *vs, struct conn *c, const char *why)
{
    if (c->state == CONN_HANDSHAKE) {
        conn_drop(vs, c); /* the guest never heard of it */
        return;
    }
    conn_unhash(vs, c);
    c->state = CONN_DEAD;
    c->pending = PEND_RST;
    c->dead_why = why;
    conn_enqueue(vs, c);
}

/* A RST for a packet that names no connection (the reply's ports are the
 * packet's, swapped). */
static void rst_answer(struct vsock *vs, const struct vsock_hdr *h)
{
    if (h->op == VSOCK_OP_RST)
        return;
    if (vs->rst_count == RST_QUEUE_MAX) {
        log_limited(&vs->vdev.dev_log, LOG_WARNING,
                    "%s: %u RSTs owed to the guest already; the one for port %" PRIu32
                    " -> %" PRIu32 " is dropped",
                    vs->vdev.name, RST_QUEUE_MAX, h->src_port, h->dst_port);
        return;
    }
    vs->rst_queue[(vs->rst_head + vs->rst_count++) % RST_QUEUE_MAX] = (struct vsock_hdr){
        .src_cid = h->dst_cid,
        .dst_cid = vs->guest_cid,
        .src_port = h->dst_port,
        .dst_port = h->src_port,
        .type = VSOCK_TYPE_STREAM,
        .op = VSOCK_OP_RST,
    };
}

/* The guest's credit for data from us. */
static uint32_t peer_credit(const struct conn *c)
{
    uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
    return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static bool wants_read(const struct conn *c)
{
    return c->state == CONN_ESTABLISHED && !c->host_eof && !c->guest_shut_rcv;
}

/* What the rx loop could send the guest for the connection now. */
static bool has_output(const struct conn *c)
{
    return c->pending || (wants_read(c) && c->readable && peer_credit(c) > 0);
}

/* The events the loop should watch for. */
static uint32_t conn_events(const struct conn *c)
{
    switch (c->state) {
    case CONN_HANDSHAKE:
        return EPOLLIN;
    case CONN_HOST_CONNECTING:
        return EPOLLOUT;
    case CONN_ESTABLISHED:
        return (wants_read(c) && !c->readable ? EPOLLIN : 0) | (c->buf_len ? EPOLLOUT : 0);
    default:
        return 0;
    }
}

static void conn_event(void *opaque, uint32_t events);

/* rx loop: watch what the connection waits for; nothing (a hung-up socket
 * would report EPOLLHUP forever) when it waits for the guest. */
static void conn_sync_watch(struct vsock *vs, struct conn *c)
{
    struct io_loop *loop = virtio_queue_loop(&vs->vdev, RXQ);
    uint32_t want = c->fd >= 0 ? conn_events(c) : 0;
    if (want == c->watched)
        return;
    if (!want) {
        io_loop_unwatch(loop, &c->watch);
    } else if (io_loop_watch(loop, &c->watch, c->fd, want, conn_event, c) < 0) {
        conn_reset(vs, c, "the I/O loop cannot watch its socket");
        want = 0;
    }
    c->watched = want;
}

/* Buffers guest data the host socket did not take. Returns false past the
 * device's cap on buffered bytes. */
static bool conn_buffer(struct vsock *vs, struct conn *c, const struct iovec *iov, unsigned cnt,
                        size_t skip, uint32_t len)
{
    uint32_t need = c->buf_len + len, max = vs->buf_alloc + LINE_MAX_LEN;
    if (need > max)
        return false; /* the credit check came first: never */
    if (need > c->buf_cap) {
        uint32_t cap = c->buf_cap ? c->buf_cap : BUF_MIN;
        while (cap < need)
            cap *= 2;
        if (cap > max)
            cap = max;
        if (vs->buffered - c->buf_cap + cap > vs->max_buffered)
            return false;
        uint8_t *nb = malloc(cap);
        if (!nb)
            return false;
        if (c->buf_len)
            memcpy(nb, c->buf + c->buf_start, c->buf_len);
        free(c->buf);
        vs->buffered += cap - c->buf_cap;
        c->buf = nb;
        c->buf_cap = cap;
        c->buf_start = 0;
    } else if (c->buf_start + need > c->buf_cap) {
        memmove(c->buf, c->buf + c->buf_start, c->buf_len);
        c->buf_start = 0;
    }
    iov_to_buf(iov, cnt, skip, c->buf + c->buf_start + c->buf_len, len);
    c->buf_len += len;
    return true;
}

static ssize_t send_iov(int fd, struct iovec *iov, unsigned cnt)
{
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = cnt};
    ssize_t n;
    do
        n = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
}

/* Both ways finished: the guest gets its RST and the socket is closed. */
static void conn_check_done(struct vsock *vs, struct conn *c)
{
    if (c->state != CONN_ESTABLISHED || c->buf_len)
        return;
    if (c->guest_shut_send && !c->host_wr_shut) {
        shutdown(c->fd, SHUT_WR);
        c->host_wr_shut = true;
    }
    if ((c->guest_shut_send && c->guest_shut_rcv) || (c->guest_shut_send && c->host_eof))
        conn_reset(vs, c, NULL);
}

/* Counts bytes the host took; a credit update when the guest has heard
 * of less than a quarter of the buffer being freed. */
static void conn_forwarded(struct vsock *vs, struct conn *c, uint32_t n)
{
    c->fwd_cnt += n;
    if (c->fwd_cnt - c->fwd_cnt_sent >= vs->buf_alloc / 4 && !(c->pending & PEND_CREDIT)) {
        c->pending |= PEND_CREDIT;
        conn_enqueue(vs, c);
    }
}

/* Writes what is buffered. Returns false if the connection was reset. */
static bool conn_flush(struct vsock *vs, struct conn *c)
{
    while (c->buf_len) {
        struct iovec iov = {c->buf + c->buf_start, c->buf_len};
        ssize_t n = send_iov(c->fd, &iov, 1);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            log_limited(&vs->vdev.dev_log, LOG_DEBUG, "%s: host port %" PRIu32 " write: %s",
                        vs->vdev.name, c->host_port, n < 0 ? strerror(errno) : "no progress");
            conn_reset(vs, c, NULL);
            return false;
        }
        c->buf_start += (uint32_t)n;
        c->buf_len -= (uint32_t)n;
        /* The "OK" line of a host-initiated connection is no guest data. */
        uint32_t ok = (uint32_t)n < c->ok_left ? (uint32_t)n : c->ok_left;
        c->ok_left -= ok;
        if ((uint32_t)n > ok)
            conn_forwarded(vs, c, (uint32_t)n - ok);
    }
    if (!c->buf_len) {
        /* Idle connections keep no memory. */
        vs->buffered -= c->buf_cap;
        free(c->buf);
        c->buf = NULL;
        c->buf_cap = c->buf_start = 0;
    }
    conn_check_done(vs, c);
    return true;
}

/* ---- Packets from the guest (tx loop, vs->lock held) ---- */

static const struct virtio_vsock_mapping *mapping_of(struct vsock *vs, uint32_t port)
{
    for (size_t i = 0; i < vs->mapping_count; i++)
        if (vs->mappings[i].port == port)
            return &vs->mappings[i];
    return NULL;
}

/* who: the refused connection, for the log. */
static bool at_conn_cap(struct vsock *vs, const char *who)
{
    if (vs->nconns < vs->max_conns)
        return false;
    vs->refused++;
    log_limited(&vs->vdev.dev_log, LOG_WARNING, "%s: %u connections open (the cap); %s refused",
                vs->vdev.name, vs->max_conns, who);
    return true;
}

/* A guest REQUEST: connect to the mapping (the RESPONSE waits for the
 * connect to complete). */
static void guest_request(struct vsock *vs, const struct vsock_hdr *h)
{
    struct conn *old = conn_find(vs, h->dst_port, h->src_port);
    if (old) {
        conn_reset(vs, old, "a second REQUEST for an open connection");
        return;
    }
    const struct virtio_vsock_mapping *m = mapping_of(vs, h->dst_port);
    if (!m) {
        log_limited(&vs->vdev.dev_log, LOG_DEBUG,
                    "%s: guest port %" PRIu32 " asked for host port %" PRIu32
                    ", which is not mapped: RST",
                    vs->vdev.name, h->src_port, h->dst_port);
        rst_answer(vs, h);
        return;
    }
    char who[64];
    snprintf(who, sizeof(who), "a guest connection to port %" PRIu32, h->dst_port);
    if (!vs->active || at_conn_cap(vs, who)) {
        rst_answer(vs, h);
        return;
    }
    int fd = socket(m->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || (connect(fd, (const struct sockaddr *)&m->addr, m->addr_len) < 0 &&
                   errno != EINPROGRESS && errno != EAGAIN)) {
        log_limited(&vs->vdev.dev_log, LOG_INFO,
                    "%s: guest connection to port %" PRIu32 ": connect: %s; RST", vs->vdev.name,
                    h->dst_port, strerror(errno));
        if (fd >= 0)
            close(fd);
        rst_answer(vs, h);
        return;
    }
    /* A UNIX socket whose backlog is full says EAGAIN: waiting for EPOLLOUT
     * then tells connected from refused, as for TCP. */
    struct conn *c = conn_new(vs, fd, CONN_HOST_CONNECTING);
    if (!c) {
        close(fd);
        rst_answer(vs, h);
        return;
    }
    c->host_port = h->dst_port;
    c->guest_port = h->src_port;
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    conn_hash(vs, c);
    conn_enqueue(vs, c);
}

/* The guest's data for a connection: straight to the host socket, what it
 * does not take into the buffer. */
static void guest_rw(struct vsock *vs, struct conn *c, const struct vsock_hdr *h,
                     struct virtq_chain *ch)
{
    if (c->state != CONN_ESTABLISHED || c->guest_shut_send) {
        conn_reset(vs, c, "data before RESPONSE or after SHUTDOWN");
        return;
    }
    if (h->len == 0)
        return;
    /* What the guest may have outstanding is our buf_alloc: anything
     * beyond is a lie about its credit. */
    if ((uint64_t)(c->rx_cnt - c->fwd_cnt) + h->len > vs->buf_alloc) {
        vs->credit_lies++;
        log_limited(&vs->vdev.dev_log, LOG_WARNING,
                    "%s: guest port %" PRIu32 " sent %" PRIu32 " bytes with %" PRIu32
                    " of its %" PRIu32 "-byte credit used: RST",
                    vs->vdev.name, c->guest_port, h->len, c->rx_cnt - c->fwd_cnt, vs->buf_alloc);
        conn_reset(vs, c, "sent past its credit");
        return;
    }
    c->rx_cnt += h->len;
    vs->tx_bytes += h->len;
    uint32_t done = 0;
    if (!c->buf_len) {
        unsigned cnt = ch->nout;
        struct iovec *iov = iov_skip(ch->iov, &cnt, VSOCK_HDR_SIZE);
        /* Only len bytes of the chain are payload. */
        uint32_t left = h->len;
        unsigned used = 0;
        while (used < cnt && left) {
            if (iov[used].iov_len > left)
                iov[used].iov_len = left;
            left -= (uint32_t)iov[used].iov_len;
            used++;
        }
        ssize_t n = send_iov(c->fd, iov, used);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            log_limited(&vs->vdev.dev_log, LOG_DEBUG, "%s: host port %" PRIu32 " write: %s",
                        vs->vdev.name, c->host_port, strerror(errno));
            conn_reset(vs, c, NULL);
            return;
        }
        done = n > 0 ? (uint32_t)n : 0;
        /* iov_skip shortened the chain's iovecs in place: copy from the
         * trimmed ones. */
        if (done < h->len && !conn_buffer(vs, c, iov, used, done, h->len - done))
            goto over_cap;
        if (done)
            conn_forwarded(vs, c, done);
    } else if (!conn_buffer(vs, c, ch->iov, ch->nout, VSOCK_HDR_SIZE, h->len)) {
        goto over_cap;
    }
    if (c->buf_len)
        conn_enqueue(vs, c); /* watch for EPOLLOUT */
    return;
over_cap:
    vs->refused++;
    log_limited(&vs->vdev.dev_log, LOG_WARNING,
                "%s: %" PRIu64 " bytes buffered for the host (the cap is %" PRIu64
                "); guest port %" PRIu32 " is reset",
                vs->vdev.name, vs->buffered, vs->max_buffered, c->guest_port);
    conn_reset(vs, c, "the device's buffer cap");
}

static void guest_shutdown(struct vsock *vs, struct conn *c, uint32_t flags)
{
    if (c->state != CONN_ESTABLISHED) {
        conn_reset(vs, c, "SHUTDOWN before RESPONSE");
        return;
    }
    if ((flags & VSOCK_SHUTDOWN_RCV) && !c->guest_shut_rcv) {
        c->guest_shut_rcv = true;
        shutdown(c->fd, SHUT_RD);
        conn_enqueue(vs, c); /* stop watching for input */
    }
    if (flags & VSOCK_SHUTDOWN_SEND)
        c->guest_shut_send = true;
    conn_check_done(vs, c);
}

static void guest_packet(struct vsock *vs, struct virtq_chain *ch)
{
    uint8_t raw[VSOCK_HDR_SIZE];
    struct vsock_hdr h = {0};
    size_t have = ch->nin ? 0 : iov_to_buf(ch->iov, ch->nout, 0, raw, sizeof(raw));
    enum vsock_pkt_error err = vsock_packet_parse(raw, have, ch->out_bytes, vs->guest_cid, &h);
    if (err) {
        vs->malformed++;
        log_limited(&vs->vdev.dev_log, LOG_WARNING,
                    "%s: packet %u refused: %s (op %u, port %" PRIu32 " -> %" PRIu32
                    ", len %" PRIu32 ", chain %llu bytes)",
                    vs->vdev.name, ch->head,
                    ch->nin ? "device-writable buffers in a tx chain" : vsock_pkt_error_str(err),
                    h.op, h.src_port, h.dst_port, h.len, (unsigned long long)ch->out_bytes);
        if (vsock_pkt_error_answered(err, &h)) {
            struct conn *c =
                h.dst_cid == VSOCK_HOST_CID ? conn_find(vs, h.dst_port, h.src_port) : NULL;
            if (c)
                conn_reset(vs, c, "a malformed packet");
            else
                rst_answer(vs, &h);
        }
        return;
    }
    if (h.op == VSOCK_OP_REQUEST) {
        guest_request(vs, &h);
        return;
    }
    struct conn *c = conn_find(vs, h.dst_port, h.src_port);
    if (!c) {
        rst_answer(vs, &h);
        return;
    }
    if (h.op == VSOCK_OP_RST) {
        conn_drop(vs, c);
        return;
    }
    uint32_t credit_before = peer_credit(c);
    c->peer_buf_alloc = h.buf_alloc;
    c->peer_fwd_cnt = h.fwd_cnt;
    if (!credit_before && peer_credit(c) && c->readable)
        conn_enqueue(vs, c); /* reading resumes */
    switch (h.op) {
    case VSOCK_OP_RESPONSE: {
        if (c->state != CONN_GUEST_CONNECTING || (c->pending & PEND_REQUEST)) {
            conn_reset(vs, c, "an unexpected RESPONSE");
            return;
        }
        c->state = CONN_ESTABLISHED;
        c->deadline_ms = 0;
        vs->conns_total++;
        char ok[LINE_MAX_LEN];
        int n = snprintf(ok, sizeof(ok), "OK %" PRIu32 "\n", c->host_port);
        struct iovec iov = {ok, (size_t)n};
        if (!conn_buffer(vs, c, &iov, 1, 0, (uint32_t)n)) {
            conn_reset(vs, c, "the device's buffer cap");
            return;
        }
        c->ok_left = (uint32_t)n;
        if (conn_flush(vs, c))
            conn_enqueue(vs, c);
        return;
    }
    case VSOCK_OP_SHUTDOWN:
        guest_shutdown(vs, c, h.flags);
        return;
    case VSOCK_OP_RW:
        guest_rw(vs, c, &h, ch);
        return;
    case VSOCK_OP_CREDIT_UPDATE:
        return;
    case VSOCK_OP_CREDIT_REQUEST:
        c->pending |= PEND_CREDIT;
        conn_enqueue(vs, c);
        return;
    default:
        conn_reset(vs, c, "an op not valid on a connection");
        return;
    }
}

static void tx_process(struct vsock *vs)
{
    struct virtio_device *vdev = &vs->vdev;
    struct virtq *vq = virtio_queue_ring(vdev, TXQ);
    bool irq = false;
    unsigned packets = 0;
    for (;;) {
        virtq_disable_notify(vq);
        for (;;) {
            if (!virtio_queue_running(vdev, TXQ))
                goto out;
            if (packets == BATCH_PACKETS) {
                virtio_queue_kick(vdev, TXQ); /* the rest after the loop looked around */
                goto out;
            }
            struct virtq_chain c = {.iov = vs->tx_iov, .iov_cap = CHAIN_MAX_BUFS};
            enum virtq_pop_result res = virtq_pop(vq, &c);
            if (res == VIRTQ_EMPTY)
                break;
            if (res == VIRTQ_ERROR) {
                virtio_device_needs_reset(vdev, "malformed virtqueue (see above)");
                goto out;
            }
            pthread_mutex_lock(&vs->lock);
            guest_packet(vs, &c);
            bool work = vs->active && (vs->work_head || vs->rst_count);
            pthread_mutex_unlock(&vs->lock);
            if (work)
                virtio_queue_kick(vdev, RXQ);
            irq |= virtq_push(vq, c.head, 0);
            packets++;
        }
        if (!virtq_enable_notify(vq))
            break;
    }
out:
    if (irq)
        virtio_queue_interrupt(vdev, TXQ);
}

/* ---- Host sockets (rx loop) ---- */

static void rx_run(struct vsock *vs);

/* A host client's "CONNECT <port>\n": REQUEST to the guest. Returns false
 * when the client is to be closed. */
static bool handshake(struct vsock *vs, struct conn *c)
{
    /* Peeked, then taken up to the newline: bytes after it are the
     * stream's. */
    char line[LINE_MAX_LEN + 1];
    size_t room = LINE_MAX_LEN - c->line_len;
    ssize_t n = recv(c->fd, c->line + c->line_len, room, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return true;
    if (n <= 0)
        return false;
    char *nl = memchr(c->line + c->line_len, '\n', (size_t)n);
    size_t take = nl ? (size_t)(nl - (c->line + c->line_len)) + 1 : (size_t)n;
    if (recv(c->fd, c->line + c->line_len, take, MSG_DONTWAIT) != (ssize_t)take)
        return false;
    c->line_len += (unsigned)take;
    if (!nl)
        return c->line_len < LINE_MAX_LEN; /* wait for the rest of the line */
    memcpy(line, c->line, c->line_len);
    line[c->line_len - 1] = '\0';
    char *end = NULL;
    if (strncmp(line, "CONNECT ", 8) != 0 || line[8] < '0' || line[8] > '9')
        goto bad;
    errno = 0;
    unsigned long long port = strtoull(line + 8, &end, 10);
    if (errno || port > UINT32_MAX || (*end != '\0' && strcmp(end, "\r") != 0))
        goto bad;
    if (!vs->active) {
        log_limited(&vs->vdev.dev_log, LOG_INFO,
                    "%s: host client for guest port %llu closed: the guest's driver is not "
                    "running",
                    vs->vdev.name, port);
        return false;
    }
    /* An ephemeral host port no connection to that guest port uses. */
    uint32_t hp = vs->next_port;
    for (unsigned tries = 0;; tries++) {
        if (hp < EPHEMERAL_FIRST)
            hp = EPHEMERAL_FIRST;
        if (!conn_find(vs, hp, (uint32_t)port) && !mapping_of(vs, hp))
            break;
        if (tries > vs->max_conns + vs->mapping_count)
            return false;
        hp++;
    }
    vs->next_port = hp + 1;
    c->host_port = hp;
    c->guest_port = (uint32_t)port;
    c->state = CONN_GUEST_CONNECTING;
    c->deadline_ms = now_ms() + vs->connect_timeout_ms;
    c->pending |= PEND_REQUEST;
    conn_hash(vs, c);
    conn_enqueue(vs, c);
    return true;
bad:
    log_limited(&vs->vdev.dev_log, LOG_INFO,
                "%s: host client closed: it sent \"%.*s\", not \"CONNECT <port>\"", vs->vdev.name,
                (int)strcspn(line, "\r"), line);
    return false;
}

static void conn_event(void *opaque, uint32_t events)
{
    struct conn *c = opaque;
    struct vsock *vs = c->vs;
    pthread_mutex_lock(&vs->lock);
    switch (c->state) {
    case CONN_HANDSHAKE:
        if (!handshake(vs, c))
            conn_drop(vs, c);
        break;
    case CONN_HOST_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            log_limited(&vs->vdev.dev_log, LOG_INFO,
                        "%s: guest connection to port %" PRIu32 ": connect: %s; RST", vs->vdev.name,
                        c->host_port, strerror(err));
            conn_reset(vs, c, NULL);
        } else {
            c->state = CONN_ESTABLISHED;
            c->deadline_ms = 0;
            c->pending |= PEND_RESPONSE;
            vs->conns_total++;
        }
        break;
    }
    case CONN_ESTABLISHED:
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            c->readable = true;
        if ((events & (EPOLLOUT | EPOLLERR)) && c->buf_len)
            conn_flush(vs, c);
        break;
    default:
        break;
    }
    conn_enqueue(vs, c);
    pthread_mutex_unlock(&vs->lock);
    rx_run(vs);
}

static void listener_event(void *opaque, uint32_t events)
{
    struct vsock *vs = opaque;
    pthread_mutex_lock(&vs->lock);
    for (unsigned i = 0; i < 64; i++) {
        int fd = accept4(vs->listener.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_limited(&vs->vdev.dev_log, LOG_WARNING, "%s: accept on %s: %s", vs->vdev.name,
                            vs->listener.path, strerror(errno));
            break;
        }
        struct conn *c = NULL;
        if (!vs->active || at_conn_cap(vs, "a host client") ||
            !(c = conn_new(vs, fd, CONN_HANDSHAKE))) {
            close(fd);
            continue;
        }
        conn_enqueue(vs, c);
    }
    pthread_mutex_unlock(&vs->lock);
    rx_run(vs);
}

/* rx loop, every tick: connections still not established at their
 * deadline end (a host client closed, the guest sent a RST). */
static void timer_event(void *opaque, uint32_t events)
{
    struct vsock *vs = opaque;
    uint64_t ticks;
    if (read(vs->timer_fd, &ticks, sizeof(ticks)) != sizeof(ticks))
        return;
    uint64_t now = now_ms();
    unsigned ended = 0;
    pthread_mutex_lock(&vs->lock);
    for (struct conn *c = vs->all; c; c = c->all_next) {
        if (!c->deadline_ms || now < c->deadline_ms || c->state == CONN_ESTABLISHED ||
            c->state == CONN_DEAD)
            continue;
        c->deadline_ms = 0;
        ended++;
        conn_reset(vs, c, NULL);
    }
    pthread_mutex_unlock(&vs->lock);
    if (ended)
        log_limited(&vs->vdev.dev_log, LOG_INFO,
                    "%s: %u connections not established within %u ms closed", vs->vdev.name, ended,
                    vs->connect_timeout_ms);
    rx_run(vs);
}

/* ---- Packets to the guest (rx loop) ---- */

static struct vsock_hdr conn_hdr(struct vsock *vs, struct conn *c, uint16_t op)
{
    c->fwd_cnt_sent = c->fwd_cnt;
    return (struct vsock_hdr){
        .src_cid = VSOCK_HOST_CID,
        .dst_cid = vs->guest_cid,
        .src_port = c->host_port,
        .dst_port = c->guest_port,
        .type = VSOCK_TYPE_STREAM,
        .op = op,
        .buf_alloc = vs->buf_alloc,
        .fwd_cnt = c->fwd_cnt,
    };
}

static void put_hdr(struct virtq_chain *ch, const struct vsock_hdr *h)
{
    uint8_t raw[VSOCK_HDR_SIZE];
    vsock_hdr_encode(h, raw);
    iov_from_buf(ch->iov + ch->nout, ch->nin, 0, raw, sizeof(raw));
}

enum fill { FILL_PACKET, FILL_NOTHING, FILL_NO_ROOM, FILL_FREED };

/* One packet of the connection's into the chain. Returns FILL_PACKET with
 * *len set, FILL_NOTHING (the chain is unused: nothing to read),
 * FILL_NO_ROOM (unused: no room for data after the header) or FILL_FREED
 * (a RST went out and the connection is gone). */
static enum fill conn_fill(struct vsock *vs, struct conn *c, struct virtq_chain *ch, uint32_t *len)
{
    struct vsock_hdr h;
    *len = VSOCK_HDR_SIZE;
    if (c->pending & PEND_REQUEST) {
        c->pending &= ~PEND_REQUEST;
        h = conn_hdr(vs, c, VSOCK_OP_REQUEST);
    } else if (c->pending & PEND_RESPONSE) {
        c->pending &= ~PEND_RESPONSE;
        h = conn_hdr(vs, c, VSOCK_OP_RESPONSE);
    } else if (c->pending & PEND_RST) {
        h = conn_hdr(vs, c, VSOCK_OP_RST);
        put_hdr(ch, &h);
        vs->resets_sent++;
        if (c->dead_why)
            log_limited(&vs->vdev.dev_log, LOG_INFO,
                        "%s: connection guest port %" PRIu32 " <-> host port %" PRIu32 " reset: %s",
                        vs->vdev.name, c->guest_port, c->host_port, c->dead_why);
        conn_free(vs, c);
        return FILL_FREED;
    } else if (c->pending & PEND_CREDIT) {
        c->pending &= ~PEND_CREDIT;
        h = conn_hdr(vs, c, VSOCK_OP_CREDIT_UPDATE);
    } else {
        uint64_t room = ch->in_bytes - VSOCK_HDR_SIZE;
        uint32_t want = peer_credit(c);
        if (want > room)
            want = (uint32_t)room;
        if (want > VSOCK_MAX_PAYLOAD)
            want = VSOCK_MAX_PAYLOAD;
        if (want == 0)
            return FILL_NO_ROOM; /* has_output: there is credit */
        struct iovec iov[CHAIN_MAX_BUFS];
        unsigned cnt = ch->nin;
        memcpy(iov, ch->iov + ch->nout, cnt * sizeof(iov[0]));
        struct iovec *data = iov_skip(iov, &cnt, VSOCK_HDR_SIZE);
        uint32_t left = want;
        unsigned used = 0;
        while (used < cnt && left) {
            if (data[used].iov_len > left)
                data[used].iov_len = left;
            left -= (uint32_t)data[used].iov_len;
            used++;
        }
        struct msghdr m = {.msg_iov = data, .msg_iovlen = used};
        ssize_t n;
        do
            n = recvmsg(c->fd, &m, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->readable = false;
            return FILL_NOTHING;
        }
        if (n < 0) {
            log_limited(&vs->vdev.dev_log, LOG_DEBUG, "%s: host port %" PRIu32 " read: %s",
                        vs->vdev.name, c->host_port, strerror(errno));
            conn_reset(vs, c, NULL);
            return conn_fill(vs, c, ch, len);
        }
        if (n == 0) {
            c->host_eof = true;
            c->readable = false;
            h = conn_hdr(vs, c, VSOCK_OP_SHUTDOWN);
            h.flags = VSOCK_SHUTDOWN_SEND;
            conn_check_done(vs, c);
        } else {
            h = conn_hdr(vs, c, VSOCK_OP_RW);
            h.len = (uint32_t)n;
            c->tx_cnt += (uint32_t)n;
            vs->rx_bytes += (uint64_t)n;
            *len += (uint32_t)n;
        }
    }
    put_hdr(ch, &h);
    return FILL_PACKET;
}

static bool chain_usable(struct vsock *vs, const struct virtq_chain *ch)
{
    if (ch->nout == 0 && ch->in_bytes >= VSOCK_HDR_SIZE)
        return true;
    log_limited(&vs->vdev.dev_log, LOG_WARNING,
                "%s: rx chain %u has %u device-readable buffers and %llu writable bytes (a "
                "writable 44-byte header at least needed)",
                vs->vdev.name, ch->head, ch->nout, (unsigned long long)ch->in_bytes);
    virtio_device_needs_reset(&vs->vdev, "unusable receive buffer");
    return false;
}

/* Dead connections freed and watches brought up to date, for when the rx
 * queue cannot take packets. */
static void work_without_ring(struct vsock *vs)
{
    unsigned n = 0;
    for (struct conn *c = vs->work_head; c; c = c->work_next)
        n++;
    /* Those still owing the guest a packet go back, once each. */
    while (n--) {
        struct conn *c = work_pop(vs);
        if (c->state == CONN_DEAD && !(c->pending & PEND_RST && vs->active)) {
            conn_free(vs, c);
            continue;
        }
        conn_sync_watch(vs, c);
        if (has_output(c))
            conn_enqueue(vs, c);
    }
}

/* The rx queue's notify: RSTs owed, then each connection's packets, round
 * robin, until the guest's buffers or the work run out. */
static void rx_process(struct vsock *vs)
{
    struct virtio_device *vdev = &vs->vdev;
    struct virtq *vq = virtio_queue_ring(vdev, RXQ);
    bool irq = false, broken = false;
    unsigned packets = 0;
    pthread_mutex_lock(&vs->lock);
    virtq_disable_notify(vq);
    for (;;) {
        if (!virtio_queue_running(vdev, RXQ))
            break;
        if (packets == BATCH_PACKETS) {
            virtio_queue_kick(vdev, RXQ);
            break;
        }
        /* Connections with nothing for the guest only need their watch. */
        struct conn *c = vs->work_head;
        while (!vs->rst_count && c && !has_output(c)) {
            work_pop(vs);
            if (c->state == CONN_DEAD)
                conn_free(vs, c);
            else
                conn_sync_watch(vs, c);
            c = vs->work_head;
        }
        if (!vs->rst_count && !c)
            break;
        struct virtq_chain ch = {.iov = vs->rx_iov, .iov_cap = CHAIN_MAX_BUFS};
        enum virtq_pop_result res = virtq_pop(vq, &ch);
        if (res == VIRTQ_EMPTY) {
            if (virtq_enable_notify(vq)) {
                virtq_disable_notify(vq);
                continue;
            }
            break; /* the guest's next rx kick resumes */
        }
        if (res == VIRTQ_ERROR) {
            virtio_device_needs_reset(vdev, "malformed virtqueue (see above)");
            broken = true;
            break;
        }
        if (!chain_usable(vs, &ch)) {
            broken = true;
            break;
        }
        if (vs->rst_count) {
            put_hdr(&ch, &vs->rst_queue[vs->rst_head]);
            vs->rst_head = (vs->rst_head + 1) % RST_QUEUE_MAX;
            vs->rst_count--;
            vs->resets_sent++;
            irq |= virtq_push(vq, ch.head, VSOCK_HDR_SIZE);
            packets++;
            continue;
        }
        work_pop(vs);
        uint32_t len = 0;
        enum fill f = conn_fill(vs, c, &ch, &len);
        if (f == FILL_NO_ROOM) {
            /* A header-only buffer: data waits for the next kick. */
            virtio_queue_unpop(vdev, RXQ, 1);
            conn_enqueue(vs, c);
            break;
        }
        if (f == FILL_NOTHING) {
            virtio_queue_unpop(vdev, RXQ, 1);
        } else {
            irq |= virtq_push(vq, ch.head, len);
            packets++;
        }
        if (f != FILL_FREED) {
            if (has_output(c) || c->state == CONN_DEAD)
                conn_enqueue(vs, c); /* round robin */
            else
                conn_sync_watch(vs, c);
        }
    }
    if (!broken)
        virtq_enable_notify(vq);
    pthread_mutex_unlock(&vs->lock);
    if (irq)
        virtio_queue_interrupt(vdev, RXQ);
}

/* After a socket event: the rx queue takes what there is for the guest,
 * or without a running queue, the watches are brought up to date. */
static void rx_run(struct vsock *vs)
{
    if (virtio_queue_running(&vs->vdev, RXQ) && virtio_queue_process(&vs->vdev, RXQ))
        return;
    pthread_mutex_lock(&vs->lock);
    work_without_ring(vs);
    pthread_mutex_unlock(&vs->lock);
}

/* ---- Event queue ---- */

static void event_process(struct vsock *vs)
{
    struct virtio_device *vdev = &vs->vdev;
    struct virtq *vq = virtio_queue_ring(vdev, EVQ);
    if (!atomic_load(&vs->event_reset_pending))
        return;
    struct virtq_chain ch = {.iov = vs->ev_iov, .iov_cap = CHAIN_MAX_BUFS};
    enum virtq_pop_result res = virtq_pop(vq, &ch);
    if (res == VIRTQ_EMPTY)
        return; /* sent when the driver posts a buffer */
    if (res == VIRTQ_ERROR) {
        virtio_device_needs_reset(vdev, "malformed virtqueue (see above)");
        return;
    }
    if (ch.nout || ch.in_bytes < 4) {
        log_limited(&vdev->dev_log, LOG_WARNING,
                    "%s: event chain %u has %u device-readable buffers and %llu writable bytes "
                    "(4 writable needed)",
                    vdev->name, ch.head, ch.nout, (unsigned long long)ch.in_bytes);
        virtio_device_needs_reset(vdev, "unusable event buffer");
        return;
    }
    uint8_t id[4];
    le32_store(id, VSOCK_EVENT_TRANSPORT_RESET);
    iov_from_buf(ch.iov, ch.nin, 0, id, sizeof(id));
    atomic_store(&vs->event_reset_pending, false);
    log_info("%s: TRANSPORT_RESET sent to the guest (its connections were not restored)",
             vdev->name);
    virtio_queue_complete(vdev, EVQ, ch.head, sizeof(id));
}

/* ---- Device ops ---- */

static void vsock_queue_notify(struct virtio_device *vdev, unsigned queue)
{
    struct vsock *vs = vs_of(vdev);
    switch (queue) {
    case RXQ:
        rx_process(vs);
        return;
    case TXQ:
        tx_process(vs);
        return;
    default:
        event_process(vs);
        return;
    }
}

/* Every connection closed (their host sockets with them), the RSTs owed
 * forgotten; the rx loop parked meanwhile. */
static void drop_all(struct vsock *vs)
{
    struct io_loop *loop = virtio_queue_loop(&vs->vdev, RXQ);
    io_loop_pause(loop);
    pthread_mutex_lock(&vs->lock);
    vs->active = false;
    if (vs->listen_watch.fd >= 0)
        io_loop_unwatch(loop, &vs->listen_watch);
    if (vs->timer_watch.fd >= 0)
        io_loop_unwatch(loop, &vs->timer_watch);
    while (work_pop(vs))
        ;
    unsigned closed = 0;
    while (vs->all) {
        closed += vs->all->state != CONN_DEAD;
        conn_free(vs, vs->all);
    }
    vs->rst_head = vs->rst_count = 0;
    pthread_mutex_unlock(&vs->lock);
    io_loop_resume(loop);
    if (closed)
        log_info("%s: device reset: %u connections closed", vs->vdev.name, closed);
}

static int vsock_activate(struct virtio_device *vdev, unsigned queue)
{
    struct vsock *vs = vs_of(vdev);
    if (queue != RXQ)
        return 0;
    struct io_loop *loop = virtio_queue_loop(vdev, RXQ);
    int err = 0;
    io_loop_pause(loop);
    pthread_mutex_lock(&vs->lock);
    vs->active = true;
    if (vs->listener.fd >= 0 && vs->listen_watch.fd < 0)
        err = io_loop_watch(loop, &vs->listen_watch, vs->listener.fd, EPOLLIN, listener_event, vs);
    if (!err && vs->timer_watch.fd < 0)
        err = io_loop_watch(loop, &vs->timer_watch, vs->timer_fd, EPOLLIN, timer_event, vs);
    pthread_mutex_unlock(&vs->lock);
    io_loop_resume(loop);
    return err;
}

static void vsock_quiesce(struct virtio_device *vdev, unsigned queue)
{
    if (queue == RXQ)
        drop_all(vs_of(vdev));
}

static void vsock_reset(struct virtio_device *vdev)
{
    struct vsock *vs = vs_of(vdev);
    drop_all(vs);
    atomic_store(&vs->event_reset_pending, false);
}

static void vsock_describe_queue(struct virtio_device *vdev, unsigned queue, char *buf, size_t cap)
{
    struct vsock *vs = vs_of(vdev);
    struct virtio_vsock_stats st;
    /* A dump must not wait on a busy device. */
    if (pthread_mutex_trylock(&vs->lock) != 0) {
        snprintf(buf, cap, "busy (the connection table is in use)");
        return;
    }
    stats_locked(vs, &st);
    pthread_mutex_unlock(&vs->lock);
    if (queue == RXQ)
        snprintf(buf, cap, "rx; %llu connections open, %llu bytes to the guest",
                 (unsigned long long)st.conns_open, (unsigned long long)st.rx_bytes);
    else if (queue == TXQ)
        snprintf(buf, cap, "tx; %llu bytes from the guest, %llu buffered, %llu malformed",
                 (unsigned long long)st.tx_bytes, (unsigned long long)st.buffered,
                 (unsigned long long)st.malformed);
    else
        snprintf(buf, cap, "event; transport reset %s",
                 atomic_load(&vs->event_reset_pending) ? "pending" : "not pending");
}

/* The CID only: connections are not saved, and the guest hears of that
 * through the TRANSPORT_RESET event after a load. */
static int vsock_state(struct virtio_device *vdev, struct snap *s)
{
    struct vsock *vs = vs_of(vdev);
    uint64_t cid = vs->guest_cid;
    snap_u64(s, "guest_cid", &cid);
    snap_check(s, cid == vs->guest_cid, "guest_cid",
               "another device (its guest CID differs from this one's)");
    if (snap_loading(s) && !snap_error(s)) {
        atomic_store(&vs->event_reset_pending, true);
        virtio_queue_kick(vdev, EVQ);
    }
    return snap_error(s);
}

static void vsock_destroy(struct virtio_device *vdev)
{
    struct vsock *vs = vs_of(vdev);
    unix_listener_close(&vs->listener);
    if (vs->timer_fd >= 0)
        close(vs->timer_fd);
    pthread_mutex_destroy(&vs->lock);
    free(vs->mappings);
    free(vs);
}

static const struct virtio_device_ops vsock_ops = {
    .kind = "vsock",
    .activate = vsock_activate,
    .queue_notify = vsock_queue_notify,
    .quiesce = vsock_quiesce,
    .reset = vsock_reset,
    .state = vsock_state,
    .describe_queue = vsock_describe_queue,
    .destroy = vsock_destroy,
};

/* ---- Setup ---- */

struct virtio_device *virtio_vsock_create(const struct virtio_vsock_params *p)
{
    const char *name = p->name ? p->name : "virtio-vsock";
    uint16_t qs = p->queue_size ? p->queue_size : VIRTIO_VSOCK_QUEUE_SIZE;
    if (!p->mem || p->guest_cid < 3 || p->guest_cid > 0xfffffffeull || (qs & (qs - 1)) ||
        qs > VIRTQ_MAX_SIZE || (p->mapping_count && !p->mappings) ||
        (p->buf_alloc && (p->buf_alloc < BUF_MIN || p->buf_alloc > BUF_ALLOC_MAX))) {
        log_error("%s: invalid virtio-vsock parameters (guest CID %llu)", name,
                  (unsigned long long)p->guest_cid);
        return NULL;
    }
    for (size_t i = 0; i < p->mapping_count; i++) {
        sa_family_t fam = p->mappings[i].addr.ss_family;
        if ((fam != AF_INET && fam != AF_INET6 && fam != AF_UNIX) ||
            p->mappings[i].addr_len > sizeof(p->mappings[i].addr)) {
            log_error("%s: port mapping %zu has no usable address", name, i);
            return NULL;
        }
    }
    struct vsock *vs = calloc(1, sizeof(*vs));
    if (!vs || !(vs->mappings = calloc(p->mapping_count + 1, sizeof(*vs->mappings)))) {
        log_error("%s: out of memory", name);
        if (vs)
            free(vs->mappings);
        free(vs);
        return NULL;
    }
    if (p->mapping_count)
        memcpy(vs->mappings, p->mappings, p->mapping_count * sizeof(*vs->mappings));
    vs->mapping_count = p->mapping_count;
    vs->guest_cid = p->guest_cid;
    vs->max_conns = p->max_conns ? p->max_conns : VIRTIO_VSOCK_MAX_CONNS;
    vs->max_buffered = p->max_buffered ? p->max_buffered : VIRTIO_VSOCK_MAX_BUFFERED;
    vs->buf_alloc = p->buf_alloc ? p->buf_alloc : VIRTIO_VSOCK_BUF_ALLOC;
    vs->next_port = EPHEMERAL_FIRST;
    vs->connect_timeout_ms =
        p->connect_timeout_ms ? p->connect_timeout_ms : VIRTIO_VSOCK_CONNECT_TIMEOUT_MS;
    unix_listener_init(&vs->listener);
    io_watch_init(&vs->listen_watch);
    io_watch_init(&vs->timer_watch);
    pthread_mutex_init(&vs->lock, NULL);
    /* Ticks at a quarter of the timeout (at most 1 s): a connection ends
     * at most a tick after its deadline. */
    unsigned tick_ms = vs->connect_timeout_ms / 4 < 1000 ? vs->connect_timeout_ms / 4 : 1000;
    if (tick_ms == 0)
        tick_ms = 1;
    struct itimerspec tick = {
        .it_interval = {tick_ms / 1000, (long)(tick_ms % 1000) * 1000000},
        .it_value = {tick_ms / 1000, (long)(tick_ms % 1000) * 1000000},
    };
    vs->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (vs->timer_fd < 0 || timerfd_settime(vs->timer_fd, 0, &tick, NULL) < 0) {
        log_error("%s: timerfd: %s", name, strerror(errno));
        vs->vdev.ops = &vsock_ops;
        vsock_destroy(&vs->vdev);
        return NULL;
    }
    char what[128];
    snprintf(what, sizeof(what), "%s: uds_path", name);
    if (p->uds_path &&
        unix_listener_open(&vs->listener, p->uds_path, UNIX_LISTENER_UMASK, what) < 0) {
        vsock_destroy(&vs->vdev);
        return NULL;
    }
    struct virtio_device_params vdp = {
        .name = name,
        .device_type = VIRTIO_ID_VSOCK,
        .num_queues = NUM_QUEUES,
        .queue_size = qs,
        .features = F(VSOCK_F_STREAM),
        .config_size = CONFIG_SIZE,
        .ops = &vsock_ops,
        .mem = p->mem,
    };
    if (virtio_device_init(&vs->vdev, &vdp) < 0) {
        vs->vdev.ops = &vsock_ops; /* init cleared it: destroy through our op */
        vsock_destroy(&vs->vdev);
        return NULL;
    }
    le64_store(vs->vdev.config, vs->guest_cid);
    return &vs->vdev;
}

void virtio_vsock_get_stats(struct virtio_device *vdev, struct virtio_vsock_stats *out)
{
    struct vsock *vs = vs_of(vdev);
    pthread_mutex_lock(&vs->lock);
    stats_locked(vs, out);
    pthread_mutex_unlock(&vs->lock);
}

static void stats_locked(struct vsock *vs, struct virtio_vsock_stats *out)
{
    *out = (struct virtio_vsock_stats){
        .conns_open = vs->nconns,
        .conns_total = vs->conns_total,
        .refused = vs->refused,
        .malformed = vs->malformed,
        .credit_lies = vs->credit_lies,
        .resets_sent = vs->resets_sent,
        .rx_bytes = vs->rx_bytes,
        .tx_bytes = vs->tx_bytes,
        .buffered = vs->buffered,
    };
}
