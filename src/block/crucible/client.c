/* One downstairs' connection (upstairs_int.h): TCP and TLS, crucible's
 * negotiation (HereIAm, PromoteToActive, RegionInfo, then LastFlush and
 * replay for one that was away, or ExtentVersions), its answers to jobs,
 * and what happens when it goes away: offline (its jobs held for a
 * replay), faulted (repaired when it is back), reconnected with back-off.
 * Every frame and field it sends is checked; a protocol error drops the
 * connection. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/crucible/blocks.h"
#include "block/crucible/upstairs_int.h"

/* ---- sending ---- */

static ssize_t io_send(struct client *c, const void *buf, size_t len)
{
    if (c->tls)
        return crucible_tls_write(c->tls, buf, len);
    return send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static ssize_t io_recv(struct client *c, void *buf, size_t len)
{
    if (c->tls)
        return crucible_tls_read(c->tls, buf, len);
    return recv(c->fd, buf, len, MSG_DONTWAIT);
}

/* Why an I/O call failed, for the log. */
static const char *io_error(const struct client *c, int err)
{
    return c->tls && err == EPROTO ? crucible_tls_error() : strerror(err);
}

void cru_client_send(struct client *c, const struct crucible_msg *m)
{
    if (c->fd < 0)
        return;
    if (crucible_encode_frame(&c->out, m) < 0 || c->out.failed) {
        cru_client_drop(c, "out of memory encoding a message");
        return;
    }
}

/* Writes what the output buffer holds, as far as the socket takes it. */
void cru_client_flush_out(struct client *c)
{
    while (c->fd >= 0 && c->out_sent < c->out.len) {
        ssize_t n = io_send(c, c->out.bytes + c->out_sent, c->out.len - c->out_sent);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            cru_client_drop(c, n < 0 ? io_error(c, errno) : "connection closed");
            return;
        }
        c->out_sent += (size_t)n;
    }
    if (c->out_sent == c->out.len) {
        c->out.len = 0;
        c->out_sent = 0;
        /* Give back a buffer an unusual burst grew (back-pressure keeps
         * the usual one under SENT_MAX_BYTES and some). */
        if (c->out.cap > 4 * SENT_MAX_BYTES) {
            free(c->out.bytes);
            c->out = (struct crucible_buf){0};
        }
    } else if (c->out_sent >= 65536 && c->out_sent >= c->out.len / 2) {
        /* A downstairs that never quite catches up: drop the sent prefix,
         * or the buffer grows without end. */
        memmove(c->out.bytes, c->out.bytes + c->out_sent, c->out.len - c->out_sent);
        c->out.len -= c->out_sent;
        c->out_sent = 0;
    }
}

/* ---- client state ---- */

void cru_client_reset_io(struct client *c)
{
    crucible_tls_conn_free(c->tls);
    c->tls = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->out.len = 0;
    c->out_sent = 0;
    c->rx_len = 0;
}

/* Downstairs c has lost jobs: every job it has not answered is skipped;
 * it reconnects and is repaired from another while I/O goes on. */
void cru_client_fault(struct client *c, const char *why)
{
    struct crucible_upstairs *up = c->up;
    log_error("block_dev.%s: downstairs %s is faulted (%s); I/O goes on with the other two, "
              "and it is repaired from them when it reconnects",
              up->name, cru_target_text(up, c->index), why);
    if (up->lr_client == c->index) {
        up->lr_client = -1;
        up->lr_busy = up->lr_holding = false;
    }
    cru_client_reset_io(c);
    c->state = CL_IDLE;
    c->mode = MODE_REPAIR;
    for (struct job *j = up->jobs_head; j; j = j->next)
        cru_job_set_state(up, c, j, JS_SKIPPED);
    c->held_jobs = c->held_bytes = c->sent_jobs = c->sent_bytes = 0;
    c->attempts = 1; /* not at once: whatever faulted it may still be there */
    c->backoff_ns = BACKOFF_MAX_NS / 5;
    cru_schedule_reconnect(c, cru_now_ns());
}

void cru_schedule_reconnect(struct client *c, int64_t now)
{
    if (c->attempts == 0)
        c->backoff_ns = BACKOFF_MIN_NS;
    c->next_attempt_ns = now + (c->attempts ? c->backoff_ns : 0);
    c->backoff_ns = c->backoff_ns * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : c->backoff_ns * 2;
    c->attempts++;
}

/* Ends c's connection. While the upstairs is active an active downstairs
 * goes offline (jobs held for replay); during activation it starts over. */
void cru_client_drop(struct client *c, const char *why)
{
    struct crucible_upstairs *up = c->up;
    if (c->state == CL_IDLE)
        return;
    if (c->state == CL_LIVE_REPAIR) {
        cru_client_fault(c, why); /* its repair starts over when it is back */
        return;
    }
    bool was_active = c->state == CL_ACTIVE && up->state == UP_ACTIVE;
    bool refused = c->state == CL_WAIT_ACTIVE;
    if (was_active || c->attempts < 3 || c->attempts % 30 == 0)
        log_limited(&c->log, LOG_WARNING, "block_dev.%s: downstairs %s: %s%s", up->name,
                    cru_target_text(up, c->index), why,
                    was_active ? "; I/O goes on with the others while it reconnects"
                    : c->state == CL_WAIT_ACTIVE
                        ? " (while promoting: an upstairs with a higher generation may be active)"
                        : "");
    cru_client_reset_io(c);
    c->state = CL_IDLE;
    /* A downstairs refuses a promotion by closing the connection: it has
     * an active upstairs of the same generation or a higher one. */
    if (refused && ++c->refusals >= PROMOTION_REFUSALS && up->state != UP_ACTIVE) {
        cru_up_fail(up, "generation",
                    "downstairs %s refused generation %" PRIu64 " %u times: another upstairs with "
                    "this generation or a higher one is active on it",
                    cru_target_text(up, c->index), up->generation, c->refusals);
        return;
    }
    if (was_active) {
        c->mode = MODE_OFFLINE;
        c->offline_since_ns = cru_now_ns();
        /* One that keeps failing soon after it is back (a broken or
         * hostile downstairs) is retried ever more slowly. */
        if (cru_now_ns() - c->active_since_ns > STABLE_NS)
            c->attempts = 0;
        /* What it was sent and did not answer waits for the replay. */
        for (struct job *j = up->jobs_head; j; j = j->next) {
            if (j->state[c->index] == JS_SENT && j->kind == JOB_READ && !j->internal) {
                /* Nothing to replay for a read: it goes to another. */
                if (!j->answered)
                    cru_read_elsewhere(up, j);
                cru_job_set_state(up, c, j, JS_SKIPPED);
                continue;
            }
            if (j->state[c->index] == JS_SENT) {
                j->state[c->index] = JS_HELD;
                c->sent_jobs--;
                c->sent_bytes -= cru_job_bytes(up, j);
                c->held_jobs++;
                c->held_bytes += cru_job_bytes(up, j);
            }
        }
    }
    if (up->state == UP_ACTIVATING || up->state == UP_RECONCILING) {
        /* Activation needs all three: start the others' negotiation over
         * only if this one was past it (reconciliation). */
        if (up->state == UP_RECONCILING) {
            log_warn("block_dev.%s: reconciliation interrupted; activating again", up->name);
            cru_set_state(up, UP_ACTIVATING);
            for (int i = 0; i < NCLIENTS; i++)
                if (&up->clients[i] != c && up->clients[i].state != CL_IDLE) {
                    cru_client_reset_io(&up->clients[i]);
                    up->clients[i].state = CL_IDLE;
                    up->clients[i].attempts = 0;
                    cru_schedule_reconnect(&up->clients[i], cru_now_ns());
                }
            /* Jobs of the interrupted reconciliation are dropped. */
            while (up->jobs_head) {
                struct job *j = up->jobs_head;
                up->jobs_head = j->next;
                cru_free_job(up, j);
            }
            up->jobs_tail = up->since_flush = NULL;
            up->by_id_len = 0;
            /* The new connections start with nothing completed. */
            up->last_flush_id = 0;
            up->jobs_since_flush = 0;
            up->retained_bytes = 0;
            up->repair_busy = up->repair_flushing = false;
        }
    }
    cru_schedule_reconnect(c, cru_now_ns());
}

void cru_client_connect(struct client *c, int64_t now)
{
    struct crucible_upstairs *up = c->up;
    const struct config_sockaddr *t = &up->cfg.targets[c->index];
    c->fd = socket(t->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        log_error("block_dev.%s: socket: %s", up->name, strerror(errno));
        cru_schedule_reconnect(c, now);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->state = CL_CONNECTING;
    c->connect_started_ns = now;
    if (connect(c->fd, &t->u.sa, t->len) < 0 && errno != EINPROGRESS)
        cru_client_drop(c, strerror(errno));
}

static void send_here_i_am(struct client *c)
{
    struct crucible_upstairs *up = c->up;
    struct crucible_msg m = {.type = CM_HERE_I_AM,
                             .version = CRUCIBLE_MESSAGE_VERSION,
                             .upstairs_id = up->upstairs_id,
                             .session_id = up->session_id,
                             .generation = up->generation,
                             .read_only = up->read_only,
                             .encrypted = up->encrypted};
    c->state = CL_WAIT_YES;
    c->last_rx_ns = c->last_ping_ns = cru_now_ns();
    cru_client_send(c, &m);
}

static void client_incompatible(struct client *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Advances c's TLS handshake; HereIAm once it is done. */
void cru_client_tls_step(struct client *c)
{
    char why[320];
    int rc = crucible_tls_handshake(c->tls, why, sizeof(why));
    if (rc == -2)
        client_incompatible(c, "root_cert_pem", "%s", why); /* no retry makes it trusted */
    else if (rc < 0)
        cru_client_drop(c, why);
    else if (rc == 1)
        send_here_i_am(c);
}

/* The connect() finished (or failed). */

void cru_client_connected(struct client *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        cru_client_drop(c, strerror(err));
        return;
    }
    if (!c->up->tls) {
        send_here_i_am(c);
        return;
    }
    /* Crucible's downstairs certificates name "downstairs<N>". */
    char name[32];
    snprintf(name, sizeof(name), "downstairs%d", c->index);
    if (!(c->tls = crucible_tls_conn_new(c->up->tls, c->fd, name))) {
        cru_client_drop(c, "out of memory for TLS");
        return;
    }
    c->state = CL_TLS;
    cru_client_tls_step(c);
}

/* A negotiation or region problem with one downstairs that no reconnect
 * will fix: during activation the disk cannot open; later, that
 * downstairs is faulted. */
static void client_incompatible(struct client *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void client_incompatible(struct client *c, const char *key, const char *fmt, ...)
{
    struct crucible_upstairs *up = c->up;
    char why[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (up->state == UP_ACTIVE) {
        cru_client_fault(c, why);
        return;
    }
    cru_up_fail(up, key, "downstairs %s: %s", cru_target_text(up, c->index), why);
}

static bool same_uuid(const struct crucible_uuid *a, const struct crucible_uuid *b)
{
    return memcmp(a->b, b->b, sizeof(a->b)) == 0;
}

/* The region a downstairs describes must be the configured one. */
static bool region_matches(struct client *c, const struct crucible_msg *m)
{
    struct crucible_upstairs *up = c->up;
    if (m->region.encrypted != up->encrypted) {
        client_incompatible(c, "encryption_key", "its region is %sencrypted, the disk %s",
                            m->region.encrypted ? "" : "not ",
                            up->encrypted ? "has an encryption_key" : "has no encryption_key");
        return false;
    }
    if (m->region.block_size != up->block_size) {
        client_incompatible(c, "block_size", "its region has %" PRIu64 "-byte blocks, not %" PRIu32,
                            m->region.block_size, up->block_size);
        return false;
    }
    if (m->region.extent_size != up->cfg.blocks_per_extent) {
        client_incompatible(c, "blocks_per_extent",
                            "its region has %" PRIu64 " blocks per extent, not %" PRIu64,
                            m->region.extent_size, up->cfg.blocks_per_extent);
        return false;
    }
    if (m->region.extent_count != up->cfg.extent_count) {
        client_incompatible(c, "extent_count", "its region has %" PRIu32 " extents, not %" PRIu32,
                            m->region.extent_count, up->cfg.extent_count);
        return false;
    }
    if (c->has_region && !same_uuid(&c->region_uuid, &m->region.uuid) && up->state == UP_ACTIVE) {
        client_incompatible(c, "targets", "it now serves another region (its UUID changed)");
        return false;
    }
    c->has_region = true;
    c->region_uuid = m->region.uuid;
    return true;
}

/* An offline downstairs is back: everything after its last flush again. */
static void replay(struct crucible_upstairs *up, struct client *c)
{
    struct crucible_msg m = {
        .type = CM_LAST_FLUSH, .has_last_flush = c->has_last_flush, .last_flush = c->last_flush};
    cru_client_send(c, &m);
    c->state = CL_ACTIVE;
    unsigned n = 0;
    for (struct job *j = up->jobs_head; j; j = j->next) {
        if (c->has_last_flush && j->id <= c->last_flush)
            continue;
        uint8_t s = j->state[c->index];
        if (s == JS_SKIPPED)
            continue;
        if (s == JS_DONE)
            j->done--;
        else if (s == JS_ERROR)
            j->failed--;
        else if (s == JS_HELD) {
            c->held_jobs--;
            c->held_bytes -= cru_job_bytes(up, j);
        }
        cru_send_job(up, c, j);
        n++;
    }
    c->active_since_ns = cru_now_ns();
    log_limited(&c->log, LOG_INFO, "block_dev.%s: downstairs %s is back; %u jobs replayed",
                up->name, cru_target_text(up, c->index), n);
}

static bool versions_ok(struct client *c, const struct crucible_msg *m)
{
    uint32_t n = c->up->cfg.extent_count;
    if (m->gen_number_count != n || m->flush_number_count != n || m->dirty_bit_count != n) {
        cru_client_drop(c, "ExtentVersions does not have one entry per extent");
        return false;
    }
    free(c->gens);
    free(c->flushes);
    free(c->dirty);
    c->gens = malloc(n * sizeof(*c->gens));
    c->flushes = malloc(n * sizeof(*c->flushes));
    c->dirty = malloc(n * sizeof(*c->dirty));
    if (!c->gens || !c->flushes || !c->dirty) {
        cru_client_drop(c, "out of memory");
        return false;
    }
    memcpy(c->gens, m->gen_numbers, n * sizeof(*c->gens));
    memcpy(c->flushes, m->flush_numbers, n * sizeof(*c->flushes));
    memcpy(c->dirty, m->dirty_bits, n * sizeof(*c->dirty));
    return true;
}

/* A negotiation message on c. */
static void negotiate(struct crucible_upstairs *up, struct client *c, const struct crucible_msg *m)
{
    switch (m->type) {
    case CM_VERSION_MISMATCH:
        cru_client_drop(c, "it speaks another protocol version");
        return;
    case CM_READ_ONLY_MISMATCH:
        client_incompatible(c, "read_only", "it is %s, the disk %s",
                            m->expected ? "read-only" : "read-write",
                            up->read_only ? "read-only" : "read-write");
        return;
    case CM_ENCRYPTED_MISMATCH:
        client_incompatible(c, "encryption_key", "its region is %sencrypted",
                            m->expected ? "" : "not ");
        return;
    case CM_UUID_MISMATCH:
        client_incompatible(c, "upstairs_id", "it expected another upstairs or session");
        return;
    default:
        break;
    }
    if (c->state == CL_WAIT_YES && m->type == CM_YES_ITS_ME) {
        if (m->version != CRUCIBLE_MESSAGE_VERSION) {
            cru_client_drop(c, "it answered with another protocol version");
            return;
        }
        struct crucible_msg p = {.type = CM_PROMOTE_TO_ACTIVE,
                                 .upstairs_id = up->upstairs_id,
                                 .session_id = up->session_id,
                                 .generation = up->generation};
        c->state = CL_WAIT_ACTIVE;
        cru_client_send(c, &p);
    } else if (c->state == CL_WAIT_ACTIVE && m->type == CM_YOU_ARE_NOW_ACTIVE) {
        if (!same_uuid(&m->upstairs_id, &up->upstairs_id) ||
            !same_uuid(&m->session_id, &up->session_id) || m->generation != up->generation) {
            client_incompatible(c, "generation", "it promoted another session or generation");
            return;
        }
        c->state = CL_WAIT_REGION;
        c->refusals = 0;
        cru_client_send(c, &(struct crucible_msg){.type = CM_REGION_INFO_PLEASE});
    } else if (c->state == CL_WAIT_REGION && m->type == CM_REGION_INFO) {
        if (!region_matches(c, m))
            return;
        if (c->mode == MODE_OFFLINE && up->state == UP_ACTIVE) {
            replay(up, c);
            return;
        }
        c->state = CL_WAIT_VERSIONS;
        cru_client_send(c, &(struct crucible_msg){.type = CM_EXTENT_VERSIONS_PLEASE});
    } else if (c->state == CL_WAIT_VERSIONS && m->type == CM_EXTENT_VERSIONS) {
        if (!versions_ok(c, m))
            return;
        if (up->state == UP_ACTIVE) {
            cru_lr_start(up, c);
            return;
        }
        c->state = CL_WAIT_QUORUM;
        c->attempts = 0;
        bool all = true;
        for (int i = 0; i < NCLIENTS; i++)
            all = all && up->clients[i].state == CL_WAIT_QUORUM;
        if (all)
            cru_all_in_quorum(up);
    } else {
        cru_client_drop(c, "protocol error: a message out of order");
    }
}

/* ---- I/O replies ---- */

/* c's copy of read j is bad: another downstairs is asked first (so the
 * job does not count as failed meanwhile). */
static void read_failed(struct crucible_upstairs *up, struct client *c, struct job *j)
{
    if (!j->internal && !j->answered)
        cru_read_elsewhere(up, j);
    cru_job_set_state(up, c, j, JS_ERROR);
}

static void read_reply(struct crucible_upstairs *up, struct client *c, struct job *j,
                       const struct crucible_msg *m)
{
    uint32_t bs = up->block_size;
    if (!m->result_ok || m->read_context_count != j->count || m->data_len != j->count * bs) {
        if (m->result_ok)
            log_limited(&up->ratelimit, LOG_ERROR,
                        "block_dev.%s: downstairs %s answered a read of %" PRIu64
                        " blocks with %" PRIu64 " contexts and %" PRIu64 " bytes",
                        up->name, cru_target_text(up, c->index), j->count, m->read_context_count,
                        m->data_len);
        read_failed(up, c, j);
        return;
    }
    if (j->answered) {
        cru_job_set_state(up, c, j, JS_DONE);
        return;
    }
    /* The reply lies in our receive buffer: decrypt it there. */
    uint8_t *data = (uint8_t *)(uintptr_t)m->data;
    uint8_t *raw = NULL;
    if (j->internal && !(raw = cru_data_alloc(up, j->count * bs))) {
        cru_up_fail(up, "targets", "out of memory during reconciliation");
        return;
    }
    if (raw)
        memcpy(raw, data, j->count * bs);
    uint64_t bad = 0;
    int kind = crucible_open_blocks(up->cipher, data, bs, j->count, m->read_contexts, &bad);
    if (kind) {
        cru_data_free(up, raw, j->count * bs);
        log_limited(&up->ratelimit, LOG_ERROR,
                    "block_dev.%s: downstairs %s returned block %" PRIu64 " with %s; reading "
                    "it from another",
                    up->name, cru_target_text(up, c->index), j->start + bad,
                    crucible_error_name((uint32_t)kind));
        read_failed(up, c, j);
        return;
    }
    if (j->internal && up->state == UP_RECONCILING) {
        /* Reconciliation writes the blocks on as they are stored. */
        if (cru_repair_write(up, j, raw, m->read_contexts) < 0) {
            cru_up_fail(up, "targets", "out of memory during reconciliation");
            return;
        }
    } else if (j->internal) {
        cru_lr_write(up, j, raw, m->read_contexts);
    } else if (j->req) {
        blk_iov_copy(j->req, j->req_skip, data, j->count * bs, true);
    }
    cru_job_set_state(up, c, j, JS_DONE);
}

static void io_reply(struct crucible_upstairs *up, struct client *c, const struct crucible_msg *m)
{
    if (!same_uuid(&m->upstairs_id, &up->upstairs_id) ||
        !same_uuid(&m->session_id, &up->session_id)) {
        log_limited(&up->ratelimit, LOG_WARNING,
                    "block_dev.%s: downstairs %s answered for another session; ignored", up->name,
                    cru_target_text(up, c->index));
        return;
    }
    struct job *j = cru_find_job(up, m->job_id);
    if (!j || j->state[c->index] != JS_SENT) {
        cru_client_drop(c, "protocol error: an answer to a job it was not sent");
        return;
    }
    if (m->type == CM_ERROR_REPORT) {
        /* The downstairs retries the job itself; its answer follows. */
        log_limited(&up->ratelimit, LOG_WARNING,
                    "block_dev.%s: downstairs %s reports job %" PRIu64 " failing (%s); it retries",
                    up->name, cru_target_text(up, c->index), m->job_id,
                    crucible_error_name(m->error.kind));
        return;
    }
    bool type_ok = (j->kind == JOB_READ && m->type == CM_READ_RESPONSE) ||
                   (j->kind == JOB_WRITE && m->type == CM_WRITE_ACK) ||
                   (j->kind == JOB_FLUSH && m->type == CM_FLUSH_ACK);
    if (!type_ok) {
        cru_client_drop(c, "protocol error: an answer of the wrong kind");
        return;
    }
    if (j->kind == JOB_READ) {
        read_reply(up, c, j, m);
        return;
    }
    if (!m->result_ok) {
        /* A downstairs that cannot write or flush has lost data the
         * guest was told is written: out with it. */
        char why[128];
        snprintf(why, sizeof(why), "job %" PRIu64 " failed there: %s", j->id,
                 crucible_error_name(m->error.kind));
        cru_job_set_state(up, c, j, JS_ERROR);
        cru_client_fault(c, why);
        return;
    }
    if (j->kind == JOB_FLUSH) {
        c->has_last_flush = true;
        c->last_flush = j->id;
    }
    cru_job_set_state(up, c, j, JS_DONE);
}

static void client_message(struct crucible_upstairs *up, struct client *c,
                           const struct crucible_msg *m)
{
    switch (m->type) {
    case CM_IMOK:
        return;
    case CM_YOU_ARE_NO_LONGER_ACTIVE:
        cru_up_fail(up, "generation",
                    "downstairs %s: a newer upstairs (generation %" PRIu64 ") took the region over",
                    cru_target_text(up, c->index), m->generation);
        return;
    case CM_READ_RESPONSE:
    case CM_WRITE_ACK:
    case CM_FLUSH_ACK:
    case CM_ERROR_REPORT:
        if (c->state == CL_ACTIVE || c->state == CL_LIVE_REPAIR || c->state == CL_WAIT_QUORUM) {
            io_reply(up, c, m);
            return;
        }
        break;
    case CM_UUID_MISMATCH:
        if (c->state == CL_ACTIVE || c->state == CL_LIVE_REPAIR || c->state == CL_WAIT_QUORUM) {
            client_incompatible(c, "upstairs_id", "it says our I/O is for another session");
            return;
        }
        break;
    default:
        break;
    }
    if (c->state >= CL_WAIT_YES && c->state <= CL_WAIT_VERSIONS) {
        negotiate(up, c, m);
        return;
    }
    char why[96];
    snprintf(why, sizeof(why), "protocol error: unexpected %s",
             crucible_msg_name(m->type) ? crucible_msg_name(m->type) : "message");
    cru_client_drop(c, why);
}

/* Reads what the socket holds and handles every whole frame. */
void cru_client_receive(struct crucible_upstairs *up, struct client *c)
{
    for (;;) {
        if (c->rx_cap - c->rx_len < 65536) {
            size_t cap = c->rx_cap ? c->rx_cap * 2 : 262144;
            uint8_t *b = realloc(c->rx, cap);
            if (!b) {
                cru_client_drop(c, "out of memory");
                return;
            }
            c->rx = b;
            c->rx_cap = cap;
        }
        ssize_t n = io_recv(c, c->rx + c->rx_len, c->rx_cap - c->rx_len);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            cru_client_drop(c, n < 0 ? io_error(c, errno) : "the downstairs closed the connection");
            return;
        }
        c->rx_len += (size_t)n;
        c->last_rx_ns = cru_now_ns();
        size_t off = 0;
        while (c->rx_len - off >= 4) {
            uint32_t flen = crucible_frame_length(c->rx + off);
            uint64_t limit = RX_FRAME_MIN_CAP + (uint64_t)up->cfg.extent_count * 17 + 64;
            if (!flen || flen > limit) {
                cru_client_drop(c, "protocol error: a frame of a length out of range");
                return;
            }
            if (c->rx_len - off < flen) {
                if (flen > c->rx_cap) {
                    uint8_t *b = realloc(c->rx, flen);
                    if (!b) {
                        cru_client_drop(c, "out of memory");
                        return;
                    }
                    c->rx = b;
                    c->rx_cap = flen;
                }
                break;
            }
            struct crucible_msg m;
            char why[256];
            if (crucible_decode(c->rx + off + 4, flen - 4, &m, why, sizeof(why)) < 0) {
                char msg[300];
                snprintf(msg, sizeof(msg), "protocol error: %s", why);
                cru_client_drop(c, msg);
                return;
            }
            client_message(up, c, &m);
            crucible_msg_free(&m);
            if (c->fd < 0)
                return;
            off += flen;
        }
        if (off) {
            memmove(c->rx, c->rx + off, c->rx_len - off);
            c->rx_len -= off;
        }
    }
}
