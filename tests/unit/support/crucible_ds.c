/* The test Downstairs (crucible_ds.h). */
#include "support/crucible_ds.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "block/crucible/blocks.h"

#define MAX_CONNS 8

/* Per block in the .meta file, after the extent header. */
struct slot {
    uint8_t state; /* 0 never written, 1 plain, 2 encrypted */
    uint8_t pad[7];
    uint64_t hash;
    uint8_t nonce[12], tag[16];
};

struct extent_header {
    uint64_t gen, flush;
    uint8_t dirty;
    uint8_t pad[7];
};

struct extent {
    int data_fd, meta_fd;
    struct extent_header h;
    bool in_flush_set; /* written since the last flush that covered it */
};

enum conn_state { C_OPEN, C_CONNECTED, C_PROMOTED, C_RUNNING };

struct conn {
    int fd;
    SSL *ssl;
    enum conn_state state;
    struct crucible_uuid upstairs_id, session_id;
    uint64_t generation;
    uint8_t *buf;
    size_t len, cap;
};

struct crucible_ds {
    struct crucible_ds_config cfg;
    int listen_fd, stop_pipe[2];
    uint16_t port;
    pthread_t thread;
    pthread_mutex_t lock;
    struct extent *extents;
    struct conn conns[MAX_CONNS];
    int active; /* index of the promoted read-write session, or -1 */
    SSL_CTX *tls;
    bool fail_writes;
    bool stalled;
    unsigned junk_sent;
};

static void die_msg(const char *what)
{
    fprintf(stderr, "crucible_ds: %s: %s\n", what, strerror(errno));
}

/* ---- region files ---- */

static int open_extent(struct crucible_ds *ds, uint32_t i)
{
    char path[512];
    struct extent *e = &ds->extents[i];
    snprintf(path, sizeof(path), "%s/extent-%04u", ds->cfg.dir, i);
    e->data_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    snprintf(path, sizeof(path), "%s/extent-%04u.meta", ds->cfg.dir, i);
    e->meta_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (e->data_fd < 0 || e->meta_fd < 0)
        return -1;
    off_t data_len = (off_t)(ds->cfg.extent_size * ds->cfg.block_size);
    off_t meta_len =
        (off_t)(sizeof(struct extent_header) + ds->cfg.extent_size * sizeof(struct slot));
    if (ftruncate(e->data_fd, data_len) < 0)
        return -1;
    struct stat st;
    if (fstat(e->meta_fd, &st) < 0)
        return -1;
    if (st.st_size < meta_len && ftruncate(e->meta_fd, meta_len) < 0)
        return -1;
    if (pread(e->meta_fd, &e->h, sizeof(e->h), 0) != sizeof(e->h))
        return -1;
    e->in_flush_set = e->h.dirty;
    return 0;
}

static int write_header(struct extent *e)
{
    struct extent_header h = e->h;
    return pwrite(e->meta_fd, &h, sizeof(h), 0) == sizeof(h) ? 0 : -1;
}

static off_t slot_off(uint64_t block)
{
    return (off_t)(sizeof(struct extent_header) + block * sizeof(struct slot));
}

/* ---- sending ---- */

static void send_msg(struct conn *c, const struct crucible_msg *m)
{
    struct crucible_buf out = {0};
    if (crucible_encode_frame(&out, m) == 0) {
        size_t off = 0;
        while (off < out.len) {
            ssize_t n = c->ssl ? SSL_write(c->ssl, out.bytes + off, (int)(out.len - off))
                               : send(c->fd, out.bytes + off, out.len - off, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
    }
    crucible_buf_free(&out);
}

static void close_conn(struct crucible_ds *ds, int i)
{
    struct conn *c = &ds->conns[i];
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    *c = (struct conn){.fd = -1};
    if (ds->active == i)
        ds->active = -1;
}

/* ---- I/O ---- */

static bool range_ok(const struct crucible_ds *ds, uint64_t start, uint64_t count)
{
    uint64_t total = ds->cfg.extent_size * ds->cfg.extent_count;
    return start <= total && count <= total - start;
}

/* Applies a Write (unwritten_only: WriteUnwritten) block by block. 0 or a
 * CrucibleError kind. */
static int do_write(struct crucible_ds *ds, const struct crucible_msg *m, bool unwritten_only)
{
    uint32_t bs = ds->cfg.block_size;
    if (ds->fail_writes)
        return CE_IO_ERROR;
    if (!range_ok(ds, m->start, m->context_count) || m->data_len != m->context_count * bs)
        return CE_OFFSET_INVALID;
    for (uint64_t i = 0; i < m->context_count; i++)
        if (!crucible_block_hash_ok(&m->contexts[i], m->data + i * bs, bs))
            return CE_HASH_MISMATCH;
    /* Extent by extent: the run's contexts in one write, then its data in
     * one (block by block only for write-unwritten). */
    for (uint64_t i = 0; i < m->context_count;) {
        uint64_t block = m->start + i;
        struct extent *e = &ds->extents[block / ds->cfg.extent_size];
        uint64_t in = block % ds->cfg.extent_size;
        uint64_t n = ds->cfg.extent_size - in;
        n = n < m->context_count - i ? n : m->context_count - i;
        struct slot *slots = calloc(n, sizeof(*slots));
        if (!slots || pread(e->meta_fd, slots, n * sizeof(*slots), slot_off(in)) !=
                          (ssize_t)(n * sizeof(*slots))) {
            free(slots);
            return CE_IO_ERROR;
        }
        /* Write-unwritten leaves blocks that hold data alone. */
        bool *store = calloc(n, sizeof(*store));
        if (!store) {
            free(slots);
            return CE_IO_ERROR;
        }
        bool any = false, all = true;
        for (uint64_t k = 0; k < n; k++) {
            store[k] = !(unwritten_only && slots[k].state);
            all = all && store[k];
            if (!store[k])
                continue;
            const struct crucible_block_context *bc = &m->contexts[i + k];
            slots[k] = (struct slot){.state = bc->encrypted ? 2 : 1, .hash = bc->hash};
            memcpy(slots[k].nonce, bc->nonce, sizeof(slots[k].nonce));
            memcpy(slots[k].tag, bc->tag, sizeof(slots[k].tag));
            any = true;
        }
        int rc = 0;
        if (any && !e->h.dirty) {
            e->h.dirty = 1;
            rc = write_header(e);
        }
        if (any)
            e->in_flush_set = true;
        /* Contexts before data, as crucible writes them. */
        if (rc == 0 && any &&
            pwrite(e->meta_fd, slots, n * sizeof(*slots), slot_off(in)) !=
                (ssize_t)(n * sizeof(*slots)))
            rc = -1;
        if (rc == 0 && all) {
            if (pwrite(e->data_fd, m->data + i * bs, n * bs, (off_t)(in * bs)) != (ssize_t)(n * bs))
                rc = -1;
        } else {
            for (uint64_t k = 0; rc == 0 && k < n; k++)
                if (store[k] && pwrite(e->data_fd, m->data + (i + k) * bs, bs,
                                       (off_t)((in + k) * bs)) != (ssize_t)bs)
                    rc = -1;
        }
        free(store);
        free(slots);
        if (rc < 0)
            return CE_IO_ERROR;
        i += n;
    }
    return 0;
}

static void do_read(struct crucible_ds *ds, struct conn *c, const struct crucible_msg *m)
{
    uint32_t bs = ds->cfg.block_size;
    struct crucible_msg r = {.type = CM_READ_RESPONSE,
                             .upstairs_id = m->upstairs_id,
                             .session_id = m->session_id,
                             .job_id = m->job_id};
    uint8_t *data = NULL;
    struct crucible_read_context *rc = NULL;
    if (!range_ok(ds, m->start, m->count) || m->count > (64u << 20) / bs) {
        r.error.kind = CE_OFFSET_INVALID;
    } else {
        data = calloc(m->count ? m->count : 1, bs);
        rc = calloc(m->count ? m->count : 1, sizeof(*rc));
        r.result_ok = data && rc;
        /* Extent by extent: its contexts in one read, its data in one. */
        for (uint64_t i = 0; r.result_ok && i < m->count;) {
            uint64_t block = m->start + i;
            struct extent *e = &ds->extents[block / ds->cfg.extent_size];
            uint64_t in = block % ds->cfg.extent_size;
            uint64_t n = ds->cfg.extent_size - in;
            n = n < m->count - i ? n : m->count - i;
            struct slot *slots = calloc(n, sizeof(*slots));
            if (!slots ||
                pread(e->meta_fd, slots, n * sizeof(*slots), slot_off(in)) !=
                    (ssize_t)(n * sizeof(*slots)) ||
                pread(e->data_fd, data + i * bs, n * bs, (off_t)(in * bs)) != (ssize_t)(n * bs)) {
                free(slots);
                r.result_ok = false;
                r.error.kind = CE_IO_ERROR;
                break;
            }
            for (uint64_t k = 0; k < n; k++) {
                const struct slot *sl = &slots[k];
                struct crucible_block_context bc = {.hash = sl->hash, .encrypted = sl->state == 2};
                memcpy(bc.nonce, sl->nonce, sizeof(bc.nonce));
                memcpy(bc.tag, sl->tag, sizeof(bc.tag));
                rc[i + k] = crucible_read_context_of(sl->state ? &bc : NULL);
                if (ds->cfg.corrupt_reads)
                    data[(i + k) * bs] ^= 0x5a; /* now matches neither its hash nor zeroes */
            }
            free(slots);
            i += n;
        }
        r.read_contexts = rc;
        r.read_context_count = r.result_ok ? m->count : 0;
        r.data = data;
        r.data_len = r.result_ok ? m->count * bs : 0;
    }
    send_msg(c, &r);
    free(data);
    free(rc);
}

static int do_flush(struct crucible_ds *ds, const struct crucible_msg *m)
{
    if (m->has_extent_limit && m->extent_limit > ds->cfg.extent_count)
        return CE_INVALID_EXTENT;
    for (uint32_t i = 0; i < ds->cfg.extent_count; i++) {
        struct extent *e = &ds->extents[i];
        if (!e->in_flush_set || (m->has_extent_limit && i > m->extent_limit))
            continue;
        e->in_flush_set = false;
        if (!e->h.dirty)
            continue; /* clean extents keep their numbers */
        if (fdatasync(e->data_fd) < 0 || fdatasync(e->meta_fd) < 0)
            return CE_IO_ERROR;
        e->h.flush = m->flush_number;
        e->h.gen = m->gen_number;
        e->h.dirty = 0;
        if (write_header(e) < 0 || fdatasync(e->meta_fd) < 0)
            return CE_IO_ERROR;
    }
    return 0;
}

/* An ack of type t for m's job: Ok, or Err(kind). */
static void ack(struct conn *c, uint32_t t, const struct crucible_msg *m, int kind)
{
    struct crucible_msg a = {.type = t,
                             .upstairs_id = m->upstairs_id,
                             .session_id = m->session_id,
                             .job_id = m->job_id,
                             .result_ok = kind == 0};
    a.error.kind = (uint32_t)kind;
    send_msg(c, &a);
}

static bool same_uuid(const struct crucible_uuid *a, const struct crucible_uuid *b)
{
    return memcmp(a->b, b->b, 16) == 0;
}

/* A hostile downstairs' answer before the real one: an ack of a job never
 * sent, a read reply whose counts lie, a frame of random bytes, a frame
 * claiming 4 GiB, a message only an upstairs sends, in turn. */
static void send_junk(struct crucible_ds *ds, struct conn *c, const struct crucible_msg *m)
{
    uint8_t raw[64];
    switch (ds->junk_sent++ % 5) {
    case 0:
        send_msg(c, &(struct crucible_msg){.type = CM_WRITE_ACK,
                                           .upstairs_id = m->upstairs_id,
                                           .session_id = m->session_id,
                                           .job_id = m->job_id + 100000,
                                           .result_ok = true});
        break;
    case 1: {
        uint8_t data[16] = {0};
        send_msg(c, &(struct crucible_msg){.type = CM_READ_RESPONSE,
                                           .upstairs_id = m->upstairs_id,
                                           .session_id = m->session_id,
                                           .job_id = m->job_id,
                                           .result_ok = true,
                                           .data = data,
                                           .data_len = sizeof(data)});
        break;
    }
    case 2:
        for (size_t i = 0; i < sizeof(raw); i++)
            raw[i] = (uint8_t)(ds->junk_sent * 131 + i * 17);
        raw[0] = sizeof(raw);
        raw[1] = raw[2] = raw[3] = 0;
        (void)!send(c->fd, raw, sizeof(raw), MSG_NOSIGNAL);
        break;
    case 3:
        raw[0] = 0xf0;
        raw[1] = raw[2] = raw[3] = 0xff;
        (void)!send(c->fd, raw, 4, MSG_NOSIGNAL);
        break;
    default:
        send_msg(c, &(struct crucible_msg){.type = CM_HERE_I_AM, .version = 13});
        break;
    }
}

/* ---- negotiation and dispatch: false closes the connection ---- */

static bool promote(struct crucible_ds *ds, int i)
{
    struct conn *c = &ds->conns[i];
    if (c->generation < ds->cfg.min_generation)
        return false;
    if (ds->cfg.read_only)
        return true;
    if (ds->active >= 0 && ds->active != i) {
        struct conn *old = &ds->conns[ds->active];
        bool same = old->generation == c->generation &&
                    same_uuid(&old->upstairs_id, &c->upstairs_id) &&
                    same_uuid(&old->session_id, &c->session_id);
        if (c->generation < old->generation || (c->generation == old->generation && !same))
            return false; /* refused: no message, the connection drops */
        struct crucible_msg bye = {.type = CM_YOU_ARE_NO_LONGER_ACTIVE,
                                   .upstairs_id = c->upstairs_id,
                                   .session_id = c->session_id,
                                   .generation = c->generation};
        send_msg(old, &bye);
        close_conn(ds, ds->active);
    }
    ds->active = i;
    return true;
}

static bool handle(struct crucible_ds *ds, int i, const struct crucible_msg *m)
{
    struct conn *c = &ds->conns[i];
    if (m->type == CM_RUOK) {
        send_msg(c, &(struct crucible_msg){.type = CM_IMOK});
        return true;
    }
    switch (c->state) {
    case C_OPEN: {
        if (m->type != CM_HERE_I_AM)
            return m->type != CM_PROMOTE_TO_ACTIVE && m->type != CM_REGION_INFO_PLEASE;
        bool version_ok = m->version == CRUCIBLE_MESSAGE_VERSION;
        for (uint64_t k = 0; k < m->alternate_version_count; k++)
            version_ok = version_ok || m->alternate_versions[k] == CRUCIBLE_MESSAGE_VERSION;
        struct crucible_msg r = {0};
        if (!version_ok) {
            r.type = CM_VERSION_MISMATCH;
            r.version = CRUCIBLE_MESSAGE_VERSION;
        } else if (m->read_only != ds->cfg.read_only) {
            r.type = CM_READ_ONLY_MISMATCH;
            r.expected = ds->cfg.read_only;
        } else if (m->encrypted != ds->cfg.encrypted) {
            r.type = CM_ENCRYPTED_MISMATCH;
            r.expected = ds->cfg.encrypted;
        }
        if (r.type || !version_ok) {
            send_msg(c, &r);
            return false;
        }
        c->upstairs_id = m->upstairs_id;
        c->session_id = m->session_id;
        c->generation = m->generation;
        c->state = C_CONNECTED;
        r.type = CM_YES_ITS_ME;
        r.version = CRUCIBLE_MESSAGE_VERSION;
        r.repair_addr = (struct crucible_sockaddr){.addr = {127, 0, 0, 1}, .port = 1};
        send_msg(c, &r);
        return true;
    }
    case C_CONNECTED:
        if (m->type != CM_PROMOTE_TO_ACTIVE)
            return m->type != CM_HERE_I_AM && m->type != CM_REGION_INFO_PLEASE;
        if (!same_uuid(&m->upstairs_id, &c->upstairs_id) ||
            !same_uuid(&m->session_id, &c->session_id)) {
            send_msg(
                c, &(struct crucible_msg){.type = CM_UUID_MISMATCH, .expected_id = c->upstairs_id});
            return false;
        }
        c->generation = m->generation;
        if (!promote(ds, i))
            return false;
        c->state = C_PROMOTED;
        send_msg(c, &(struct crucible_msg){.type = CM_YOU_ARE_NOW_ACTIVE,
                                           .upstairs_id = m->upstairs_id,
                                           .session_id = m->session_id,
                                           .generation = m->generation});
        return true;
    case C_PROMOTED:
        if (m->type == CM_REGION_INFO_PLEASE) {
            struct crucible_msg r = {.type = CM_REGION_INFO};
            r.region.block_size = ds->cfg.block_size;
            r.region.extent_size = ds->cfg.extent_size;
            r.region.extent_shift = (uint32_t)__builtin_ctz(ds->cfg.block_size);
            r.region.extent_count = ds->cfg.extent_count;
            r.region.uuid = ds->cfg.region_uuid;
            r.region.encrypted = ds->cfg.encrypted;
            r.region.database_read_version = r.region.database_write_version = 1;
            send_msg(c, &r);
            return true;
        }
        if (m->type == CM_LAST_FLUSH) {
            c->state = C_RUNNING;
            return true;
        }
        if (m->type == CM_EXTENT_VERSIONS_PLEASE) {
            uint32_t n = ds->cfg.extent_count;
            uint64_t *gens = calloc(n, sizeof(*gens)), *flushes = calloc(n, sizeof(*flushes));
            bool *dirty = calloc(n, sizeof(*dirty));
            for (uint32_t k = 0; gens && flushes && dirty && k < n; k++) {
                gens[k] = ds->extents[k].h.gen;
                flushes[k] = ds->extents[k].h.flush;
                dirty[k] = ds->extents[k].h.dirty;
            }
            struct crucible_msg r = {.type = CM_EXTENT_VERSIONS,
                                     .gen_numbers = gens,
                                     .flush_numbers = flushes,
                                     .dirty_bits = dirty,
                                     .gen_number_count = n,
                                     .flush_number_count = n,
                                     .dirty_bit_count = n};
            if (gens && flushes && dirty)
                send_msg(c, &r);
            free(gens);
            free(flushes);
            free(dirty);
            c->state = C_RUNNING;
            return true;
        }
        return m->type != CM_HERE_I_AM && m->type != CM_PROMOTE_TO_ACTIVE;
    case C_RUNNING:
        break;
    }
    /* Running: I/O of this session only. */
    bool io = m->type == CM_WRITE || m->type == CM_WRITE_UNWRITTEN || m->type == CM_READ_REQUEST ||
              m->type == CM_FLUSH || m->type == CM_BARRIER;
    if (!io)
        return false; /* "unexpected frame" */
    if (!same_uuid(&m->upstairs_id, &c->upstairs_id) ||
        !same_uuid(&m->session_id, &c->session_id)) {
        send_msg(c,
                 &(struct crucible_msg){.type = CM_UUID_MISMATCH, .expected_id = c->upstairs_id});
        return true;
    }
    if (ds->cfg.read_only && (m->type == CM_WRITE || m->type == CM_WRITE_UNWRITTEN))
        return false;
    if (ds->cfg.lag_ms)
        usleep(ds->cfg.lag_ms * 1000u);
    if (ds->cfg.hostile)
        send_junk(ds, c, m);
    switch (m->type) {
    case CM_WRITE:
        ack(c, CM_WRITE_ACK, m, do_write(ds, m, false));
        break;
    case CM_WRITE_UNWRITTEN:
        ack(c, CM_WRITE_UNWRITTEN_ACK, m, do_write(ds, m, true));
        break;
    case CM_READ_REQUEST:
        do_read(ds, c, m);
        break;
    case CM_FLUSH:
        ack(c, CM_FLUSH_ACK, m, do_flush(ds, m));
        break;
    default: /* CM_BARRIER */
        ack(c, CM_BARRIER_ACK, m, 0);
        break;
    }
    return true;
}

/* Reads what the socket has and handles every whole frame. */
static bool receive(struct crucible_ds *ds, int i)
{
    struct conn *c = &ds->conns[i];
    if (c->cap - c->len < 65536) {
        size_t cap = c->cap ? c->cap * 2 : 131072;
        uint8_t *b = realloc(c->buf, cap);
        if (!b)
            return false;
        c->buf = b;
        c->cap = cap;
    }
    ssize_t n = c->ssl ? SSL_read(c->ssl, c->buf + c->len, (int)(c->cap - c->len))
                       : recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n <= 0)
        return false;
    c->len += (size_t)n;
    while (c->len >= 4) {
        uint32_t flen = crucible_frame_length(c->buf);
        if (!flen)
            return false;
        if (c->len < flen)
            break;
        struct crucible_msg m;
        char why[256];
        if (crucible_decode(c->buf + 4, flen - 4, &m, why, sizeof(why)) < 0) {
            fprintf(stderr, "crucible_ds: bad frame: %s\n", why);
            return false;
        }
        bool keep = handle(ds, i, &m);
        crucible_msg_free(&m);
        if (!keep || ds->conns[i].fd < 0)
            return false;
        memmove(c->buf, c->buf + flen, c->len - flen);
        c->len -= flen;
    }
    return true;
}

/* The TLS handshake of a new connection, blocking for at most 5 s. */
static bool tls_accept(struct crucible_ds *ds, struct conn *c)
{
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (!(c->ssl = SSL_new(ds->tls)) || SSL_set_fd(c->ssl, c->fd) != 1 || SSL_accept(c->ssl) != 1) {
        fprintf(stderr, "crucible_ds: TLS handshake failed: %s\n",
                ERR_error_string(ERR_get_error(), NULL));
        return false;
    }
    tv.tv_sec = 0;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return true;
}

static void *serve(void *arg)
{
    struct crucible_ds *ds = arg;
    for (;;) {
        struct pollfd pfd[MAX_CONNS + 2];
        int idx[MAX_CONNS + 2];
        int n = 0;
        pfd[n++] = (struct pollfd){.fd = ds->stop_pipe[0], .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = ds->listen_fd, .events = POLLIN};
        for (int i = 0; i < MAX_CONNS; i++)
            if (ds->conns[i].fd >= 0) {
                idx[n] = i;
                pfd[n++] = (struct pollfd){.fd = ds->conns[i].fd, .events = POLLIN};
            }
        pthread_mutex_lock(&ds->lock);
        bool stalled = ds->stalled;
        pthread_mutex_unlock(&ds->lock);
        if (stalled)
            n = 1; /* nothing but the stop pipe */
        if (poll(pfd, (nfds_t)n, stalled ? 20 : -1) < 0 && errno != EINTR)
            break;
        if (pfd[0].revents)
            break;
        if (stalled)
            continue;
        pthread_mutex_lock(&ds->lock);
        if (pfd[1].revents & POLLIN) {
            int fd = accept4(ds->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            int slot = -1;
            for (int i = 0; fd >= 0 && i < MAX_CONNS && slot < 0; i++)
                if (ds->conns[i].fd < 0)
                    slot = i;
            if (slot < 0 && fd >= 0)
                close(fd);
            else if (fd >= 0) {
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                ds->conns[slot] = (struct conn){.fd = fd, .state = C_OPEN};
                if (ds->tls && !tls_accept(ds, &ds->conns[slot]))
                    close_conn(ds, slot);
            }
        }
        for (int k = 2; k < n; k++) {
            if (!pfd[k].revents || ds->conns[idx[k]].fd != pfd[k].fd)
                continue;
            /* TLS may hold decrypted bytes the socket no longer shows. */
            bool more;
            do {
                if (!receive(ds, idx[k])) {
                    close_conn(ds, idx[k]);
                    break;
                }
                more = ds->conns[idx[k]].ssl && SSL_pending(ds->conns[idx[k]].ssl) > 0;
            } while (more);
        }
        pthread_mutex_unlock(&ds->lock);
    }
    return NULL;
}

struct crucible_ds *crucible_ds_start(const struct crucible_ds_config *cfg, uint16_t port)
{
    /* OpenSSL writes without MSG_NOSIGNAL: a closed peer must give EPIPE,
     * not end the test. */
    signal(SIGPIPE, SIG_IGN);
    struct crucible_ds *ds = calloc(1, sizeof(*ds));
    if (!ds)
        return NULL;
    ds->cfg = *cfg;
    ds->active = -1;
    for (int i = 0; i < MAX_CONNS; i++)
        ds->conns[i].fd = -1;
    pthread_mutex_init(&ds->lock, NULL);
    mkdir(cfg->dir, 0700);
    ds->extents = calloc(cfg->extent_count, sizeof(*ds->extents));
    for (uint32_t i = 0; ds->extents && i < cfg->extent_count; i++)
        if (open_extent(ds, i) < 0) {
            die_msg("region files");
            return NULL;
        }
    if (cfg->tls_cert) {
        ds->tls = SSL_CTX_new(TLS_server_method());
        if (!ds->tls || SSL_CTX_use_certificate_chain_file(ds->tls, cfg->tls_cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ds->tls, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_load_verify_locations(ds->tls, cfg->tls_root, NULL) != 1) {
            fprintf(stderr, "crucible_ds: TLS set-up: %s\n",
                    ERR_error_string(ERR_get_error(), NULL));
            return NULL;
        }
        SSL_CTX_set_verify(ds->tls, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    ds->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(ds->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    socklen_t alen = sizeof(a);
    if (bind(ds->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ds->listen_fd, 8) < 0 ||
        getsockname(ds->listen_fd, (struct sockaddr *)&a, &alen) < 0 ||
        pipe2(ds->stop_pipe, O_CLOEXEC) < 0) {
        die_msg("listen");
        return NULL;
    }
    ds->port = ntohs(a.sin_port);
    if (pthread_create(&ds->thread, NULL, serve, ds) != 0) {
        die_msg("thread");
        return NULL;
    }
    return ds;
}

uint16_t crucible_ds_port(const struct crucible_ds *ds)
{
    return ds->port;
}

void crucible_ds_stop(struct crucible_ds *ds)
{
    if (!ds)
        return;
    char x = 1;
    if (write(ds->stop_pipe[1], &x, 1) != 1)
        die_msg("stop");
    pthread_join(ds->thread, NULL);
    for (int i = 0; i < MAX_CONNS; i++)
        if (ds->conns[i].fd >= 0)
            close_conn(ds, i);
    for (uint32_t i = 0; i < ds->cfg.extent_count; i++) {
        close(ds->extents[i].data_fd);
        close(ds->extents[i].meta_fd);
    }
    free(ds->extents);
    close(ds->listen_fd);
    if (ds->tls)
        SSL_CTX_free(ds->tls);
    close(ds->stop_pipe[0]);
    close(ds->stop_pipe[1]);
    pthread_mutex_destroy(&ds->lock);
    free(ds);
}

void crucible_ds_extent_meta(struct crucible_ds *ds, uint32_t extent, uint64_t *gen,
                             uint64_t *flush, bool *dirty)
{
    pthread_mutex_lock(&ds->lock);
    *gen = ds->extents[extent].h.gen;
    *flush = ds->extents[extent].h.flush;
    *dirty = ds->extents[extent].h.dirty;
    pthread_mutex_unlock(&ds->lock);
}

void crucible_ds_set_extent_meta(struct crucible_ds *ds, uint32_t extent, uint64_t gen,
                                 uint64_t flush, bool dirty)
{
    pthread_mutex_lock(&ds->lock);
    struct extent *e = &ds->extents[extent];
    e->h.gen = gen;
    e->h.flush = flush;
    e->h.dirty = dirty;
    e->in_flush_set = dirty;
    if (write_header(e) < 0)
        die_msg("extent header");
    pthread_mutex_unlock(&ds->lock);
}

int crucible_ds_store(struct crucible_ds *ds, uint64_t block, const uint8_t *data, uint64_t count)
{
    uint32_t bs = ds->cfg.block_size;
    if (ds->cfg.encrypted || !range_ok(ds, block, count))
        return -1;
    int rc = 0;
    pthread_mutex_lock(&ds->lock);
    for (uint64_t i = 0; i < count && rc == 0; i++) {
        uint64_t b = block + i;
        struct extent *e = &ds->extents[b / ds->cfg.extent_size];
        uint64_t in = b % ds->cfg.extent_size;
        struct slot s = {.state = 1, .hash = crucible_hash_plain(data + i * bs, bs)};
        if (pwrite(e->meta_fd, &s, sizeof(s), slot_off(in)) != sizeof(s) ||
            pwrite(e->data_fd, data + i * bs, bs, (off_t)(in * bs)) != (ssize_t)bs)
            rc = -1;
    }
    pthread_mutex_unlock(&ds->lock);
    return rc;
}

void crucible_ds_set_lag(struct crucible_ds *ds, unsigned lag_ms)
{
    pthread_mutex_lock(&ds->lock);
    ds->cfg.lag_ms = lag_ms;
    pthread_mutex_unlock(&ds->lock);
}

void crucible_ds_fail_writes(struct crucible_ds *ds, bool fail)
{
    pthread_mutex_lock(&ds->lock);
    ds->fail_writes = fail;
    pthread_mutex_unlock(&ds->lock);
}

void crucible_ds_stall(struct crucible_ds *ds, bool stall)
{
    pthread_mutex_lock(&ds->lock);
    ds->stalled = stall;
    pthread_mutex_unlock(&ds->lock);
}
