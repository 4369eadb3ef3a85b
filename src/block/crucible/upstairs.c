/* crucible: a disk three-way mirrored on crucible downstairs, through our
 * own upstairs (the client side of crucible's protocol; the behaviour it
 * follows is described in docs/crucible-protocol.md).
 *
 * One thread per disk owns the three connections. Opening the disk
 * activates the region set: every downstairs is negotiated with (version,
 * read-only and encryption checks, PromoteToActive with the generation,
 * RegionInfo checked against the config, ExtentVersions), the generation
 * is checked against (or, with generation = "auto", set from) the highest
 * extent generation, and extents the three disagree on are reconciled
 * before the guest sees the disk. Reconciliation copies each such extent
 * from the downstairs crucible would take as its source (the highest
 * generation, flush number, dirty bit) to all three with ordinary reads
 * and writes, then flushes: every crucible downstairs accepts those
 * messages, and afterwards the three agree on blocks and extent numbers.
 *
 * I/O then goes as crucible's upstairs sends it: jobs numbered from 1000
 * with their dependencies, writes sealed (hash, and AES-256-GCM-SIV with
 * encryption_key) and acknowledged to the guest once queued to at least
 * two downstairs, reads answered by the first downstairs whose blocks
 * check out, flushes complete when two downstairs made them durable. A
 * flush goes out every flush_timeout after writes. A downstairs that
 * drops out is reconnected with back-off; jobs are held for it and
 * replayed from its last flush when it returns (LastFlush), so I/O goes
 * on with two. One that stays away too long (more than 1000 held jobs or
 * 50 MiB) is faulted and rejoins at the next activation. A newer upstairs
 * taking the region over (YouAreNoLongerActive) stops this one: its I/O
 * fails from then on. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "block/crucible/blocks.h"
#include "block/crucible/upstairs.h"
#include "block/crucible/upstairs_int.h"
#include "common/thread.h"
#include "core/timer.h"

int64_t cru_now_ns(void)
{
    return (int64_t)vm_clock_ns();
}

const char *cru_target_text(const struct crucible_upstairs *up, int i)
{
    return up->cfg.targets[i].text;
}

/* ---- activation's outcome ---- */

/* Activation (or the upstairs) failed for good: I/O fails from now on;
 * open reports why at key. */
void cru_up_fail(struct crucible_upstairs *up, const char *key, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&up->lock);
    if (up->state != UP_FAILED) {
        va_start(ap, fmt);
        vsnprintf(up->fail_why, sizeof(up->fail_why), fmt, ap);
        va_end(ap);
        up->fail_key = key;
        if (up->state == UP_ACTIVE)
            log_error("block_dev.%s: %s; its I/O fails from now on", up->name, up->fail_why);
        up->state = UP_FAILED;
    }
    pthread_cond_broadcast(&up->activated);
    pthread_mutex_unlock(&up->lock);
}

/* State changes open() may be watching go under the lock. */
void cru_set_state(struct crucible_upstairs *up, enum up_state st)
{
    pthread_mutex_lock(&up->lock);
    up->state = st;
    pthread_mutex_unlock(&up->lock);
}

void cru_up_set_active(struct crucible_upstairs *up)
{
    for (int i = 0; i < NCLIENTS; i++)
        up->clients[i].active_since_ns = cru_now_ns();
    pthread_mutex_lock(&up->lock);
    up->state = UP_ACTIVE;
    pthread_cond_broadcast(&up->activated);
    pthread_mutex_unlock(&up->lock);
    log_info("block_dev.%s: active on %s, %s, %s with generation %" PRIu64 "%s", up->name,
             cru_target_text(up, 0), cru_target_text(up, 1), cru_target_text(up, 2), up->generation,
             up->repaired_extents ? " (extents reconciled)" : "");
}

/* ---- jobs ---- */

struct job *cru_find_job(struct crucible_upstairs *up, uint64_t id)
{
    if (id < up->by_id_first || id - up->by_id_first >= up->by_id_len)
        return NULL;
    return up->by_id[(up->by_id_start + (id - up->by_id_first)) % up->by_id_cap];
}

/* Appends j (the next id) to the index; -1 when out of memory. */
static int by_id_push(struct crucible_upstairs *up, struct job *j)
{
    if (up->by_id_len == up->by_id_cap) {
        size_t cap = up->by_id_cap ? up->by_id_cap * 2 : 1024;
        struct job **ring = malloc(cap * sizeof(*ring));
        if (!ring)
            return -1;
        for (size_t i = 0; i < up->by_id_len; i++)
            ring[i] = up->by_id[(up->by_id_start + i) % up->by_id_cap];
        free(up->by_id);
        up->by_id = ring;
        up->by_id_cap = cap;
        up->by_id_start = 0;
    }
    if (up->by_id_len == 0)
        up->by_id_first = j->id;
    up->by_id[(up->by_id_start + up->by_id_len++) % up->by_id_cap] = j;
    return 0;
}

/* The head job left. */
static void by_id_pop(struct crucible_upstairs *up)
{
    up->by_id_start = (up->by_id_start + 1) % up->by_id_cap;
    up->by_id_len--;
    up->by_id_first++;
}

static bool overlaps(const struct job *a, uint64_t start, uint64_t count)
{
    if (a->kind == JOB_FLUSH)
        return true;
    return a->start < start + count && start < a->start + a->count;
}

/* Crucible's dependency rules, over the jobs since the last flush (which
 * every later job depends on): a write waits for the overlapping reads
 * and writes before it, a read for the overlapping writes, a flush for
 * everything. */
static int compute_deps(struct crucible_upstairs *up, struct job *j)
{
    if (j->repair_direct)
        return 0; /* ordered by arrival on the one downstairs it goes to */
    uint32_t n = up->last_flush_id ? 1 : 0;
    for (struct job *o = up->since_flush; o; o = o->next)
        n++;
    if (n == 0)
        return 0;
    if (!(j->deps = malloc(n * sizeof(*j->deps))))
        return -1;
    if (up->last_flush_id)
        j->deps[j->ndeps++] = up->last_flush_id;
    for (struct job *o = up->since_flush; o; o = o->next) {
        if (o->repair_direct)
            continue;
        bool need = j->kind == JOB_FLUSH || (overlaps(o, j->start, j->count) &&
                                             (j->kind == JOB_WRITE || o->kind != JOB_READ));
        if (need)
            j->deps[j->ndeps++] = o->id;
    }
    return 0;
}

uint64_t cru_job_bytes(const struct crucible_upstairs *up, const struct job *j)
{
    return j->kind == JOB_WRITE ? j->count * up->block_size : 0;
}

/* Sends job j to downstairs c, its dependencies pruned of jobs skipped
 * there. */
void cru_send_job(struct crucible_upstairs *up, struct client *c, struct job *j)
{
    uint64_t deps_buf[64];
    uint64_t *deps = j->ndeps <= 64 ? deps_buf : malloc(j->ndeps * sizeof(*deps));
    if (!deps) {
        cru_client_drop(c, "out of memory");
        return;
    }
    uint64_t nd = 0;
    for (uint32_t k = 0; k < j->ndeps; k++) {
        struct job *d = cru_find_job(up, j->deps[k]);
        if (!d || d->state[c->index] != JS_SKIPPED)
            deps[nd++] = j->deps[k];
    }
    struct crucible_msg m = {.upstairs_id = up->upstairs_id,
                             .session_id = up->session_id,
                             .job_id = j->id,
                             .dependencies = deps,
                             .dependency_count = nd};
    switch (j->kind) {
    case JOB_READ:
        m.type = CM_READ_REQUEST;
        m.start = j->start;
        m.count = j->count;
        break;
    case JOB_WRITE:
        m.type = CM_WRITE;
        m.start = j->start;
        m.contexts = j->ctx;
        m.context_count = j->count;
        m.data = j->data;
        m.data_len = j->count * up->block_size;
        break;
    case JOB_FLUSH:
        m.type = CM_FLUSH;
        m.flush_number = j->flush_number;
        m.gen_number = up->generation;
        break;
    }
    j->state[c->index] = JS_SENT;
    c->sent_jobs++;
    c->sent_bytes += cru_job_bytes(up, j);
    cru_client_send(c, &m);
    if (deps != deps_buf)
        free(deps);
}

/* Sends guest read j to the next active downstairs it has not been sent
 * to (crucible sends every read to all three; one copy is enough when
 * its blocks check out, and costs a third of the network and downstairs
 * work). Returns false when none is left. */
bool cru_read_elsewhere(struct crucible_upstairs *up, struct job *j)
{
    for (int k = 0; k < NCLIENTS; k++) {
        int i = (int)((up->read_turn + (unsigned)k) % NCLIENTS);
        struct client *c = &up->clients[i];
        if (c->state != CL_ACTIVE || j->state[i] != JS_SKIPPED)
            continue;
        up->read_turn = (unsigned)i + 1;
        j->failed--;
        cru_send_job(up, c, j);
        return true;
    }
    return false;
}

/* Where job j goes for the downstairs under live repair: extents already
 * copied take it, the extent being copied makes it (and every later job)
 * wait until that extent is done, later extents skip it (their copy will
 * include it). */
enum route cru_lr_route(struct crucible_upstairs *up, const struct job *j)
{
    if (up->lr_holding)
        return ROUTE_HOLD;
    if (j->kind == JOB_FLUSH)
        return ROUTE_SEND;
    uint64_t first = j->start / up->cfg.blocks_per_extent;
    uint64_t last = (j->start + j->count - 1) / up->cfg.blocks_per_extent;
    if (last < up->lr_extent)
        return ROUTE_SEND;
    if (first > up->lr_extent)
        return ROUTE_SKIP;
    up->lr_holding = true;
    return ROUTE_HOLD;
}

/* Enqueues j (id, dependencies) and sends it to every active downstairs;
 * it is held for the offline ones and skipped for the faulted. */
int cru_enqueue(struct crucible_upstairs *up, struct job *j)
{
    if (compute_deps(up, j) < 0)
        return -1;
    j->id = up->next_id;
    if (by_id_push(up, j) < 0)
        return -1;
    up->next_id++;
    if (up->jobs_tail)
        up->jobs_tail->next = j;
    else
        up->jobs_head = j;
    up->jobs_tail = j;
    if (!up->since_flush)
        up->since_flush = j;
    if (j->kind == JOB_FLUSH) {
        up->last_flush_id = j->id;
        up->since_flush = NULL;
        up->jobs_since_flush = 0;
    } else {
        up->jobs_since_flush++;
    }
    if (j->kind == JOB_WRITE) {
        up->retained_bytes += cru_job_bytes(up, j);
        up->writes_since_flush = true;
    }
    if (j->kind == JOB_READ && !j->internal) {
        /* A guest read goes to one active downstairs, in turn; another is
         * tried if its copy fails (read_elsewhere). */
        for (int i = 0; i < NCLIENTS; i++) {
            j->state[i] = JS_SKIPPED;
            j->failed++;
        }
        cru_read_elsewhere(up, j);
        return 0;
    }
    for (int i = 0; i < NCLIENTS; i++) {
        struct client *c = &up->clients[i];
        if (j->state[i] == JS_SKIPPED)
            continue;
        enum route r = ROUTE_HOLD;
        if (c->state == CL_ACTIVE)
            r = ROUTE_SEND;
        else if (c->state == CL_LIVE_REPAIR)
            r = j->repair_direct ? ROUTE_SEND : cru_lr_route(up, j);
        else if (up->state == UP_ACTIVE && c->mode != MODE_OFFLINE)
            r = ROUTE_SKIP; /* faulted, waiting for its repair */
        if (r == ROUTE_SEND) {
            cru_send_job(up, c, j);
        } else if (r == ROUTE_SKIP) {
            j->state[i] = JS_SKIPPED;
            j->failed++;
        } else {
            j->state[i] = JS_HELD;
            c->held_jobs++;
            c->held_bytes += cru_job_bytes(up, j);
        }
    }
    return 0;
}

/* Job data of JOB_MAX_BYTES (sequential writes, reconciliation and
 * repair pieces) comes from a few kept buffers: malloc would map and
 * unmap each (page faults and TLB shootdowns for every MiB). */
uint8_t *cru_data_alloc(struct crucible_upstairs *up, size_t len)
{
    if (len == JOB_MAX_BYTES && up->pool_len > 0)
        return up->pool[--up->pool_len];
    return malloc(len);
}

void cru_data_free(struct crucible_upstairs *up, uint8_t *data, size_t len)
{
    if (data && len == JOB_MAX_BYTES && up->pool_len < DATA_POOL_MAX)
        up->pool[up->pool_len++] = data;
    else
        free(data);
}

void cru_free_job(struct crucible_upstairs *up, struct job *j)
{
    cru_data_free(up, j->data, j->count * up->block_size);
    free(j->ctx);
    free(j->deps);
    free(j);
}

/* A guest request's job finished (status 0 or negative). The last part
 * completes it. */
static void part_done(struct crucible_upstairs *up, struct block_request *req, int status)
{
    if (status && !req->backend_private[CRU_PRIV_ERROR])
        req->backend_private[CRU_PRIV_ERROR] = (uint64_t)(int64_t)status;
    if (--req->backend_private[CRU_PRIV_PARTS] > 0)
        return;
    status = (int)(int64_t)req->backend_private[CRU_PRIV_ERROR];
    if (status < 0 && status != -EROFS && status != -EINVAL)
        log_limited(&up->ratelimit, LOG_ERROR,
                    "block_dev.%s: %s of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s",
                    up->name, block_op_name(req->op), req->len, req->offset, strerror(-status));
    blk_finish(&up->tracker, req, status);
}

/* Answers j's waiter once the job has its result: a read with its first
 * good copy (done there), a flush with two downstairs durable, either
 * with an error once too few can answer. */
static void job_check_answer(struct crucible_upstairs *up, struct job *j)
{
    if (j->answered)
        return;
    unsigned need = j->quorum;
    bool ok = j->done >= need;
    bool failed = !ok && j->failed > NCLIENTS - need;
    if (!ok && !failed)
        return;
    j->answered = true;
    if (j->kind == JOB_FLUSH && !j->internal)
        up->flush_in_flight = false;
    if (j->internal)
        cru_repair_job_done(up, j, ok);
    else if (j->req)
        part_done(up, j->req, ok ? 0 : -EIO);
}

/* Drops retired jobs: those up to a flush finished on all three whose
 * waiters were answered. */
static void retire(struct crucible_upstairs *up)
{
    struct job *last = NULL;
    for (struct job *j = up->jobs_head; j; j = j->next) {
        bool finished = j->answered;
        for (int i = 0; i < NCLIENTS && finished; i++)
            finished =
                j->state[i] == JS_DONE || j->state[i] == JS_ERROR || j->state[i] == JS_SKIPPED;
        if (!finished)
            break;
        if (j->kind == JOB_FLUSH)
            last = j;
    }
    if (!last)
        return;
    while (up->jobs_head) {
        struct job *j = up->jobs_head;
        up->jobs_head = j->next;
        by_id_pop(up);
        if (up->since_flush == j)
            up->since_flush = j->next;
        up->retained_bytes -= cru_job_bytes(up, j);
        bool end = j == last;
        cru_free_job(up, j);
        if (end)
            break;
    }
    if (!up->jobs_head)
        up->jobs_tail = NULL;
}

/* j's state on downstairs c becomes s (an answer, or a skip). */
void cru_job_set_state(struct crucible_upstairs *up, struct client *c, struct job *j,
                       enum job_state s)
{
    if (j->state[c->index] == JS_DONE || j->state[c->index] == JS_ERROR ||
        j->state[c->index] == JS_SKIPPED)
        return;
    if (j->state[c->index] == JS_HELD) {
        c->held_jobs--;
        c->held_bytes -= cru_job_bytes(up, j);
    } else {
        c->sent_jobs--;
        c->sent_bytes -= cru_job_bytes(up, j);
    }
    j->state[c->index] = (uint8_t)s;
    if (s == JS_DONE)
        j->done++;
    else
        j->failed++;
    job_check_answer(up, j);
}

/* A job of kind whose waiter is answered once quorum downstairs did it. */
struct job *cru_new_job(enum job_kind kind, unsigned quorum)
{
    struct job *j = calloc(1, sizeof(struct job));
    if (j) {
        j->kind = kind;
        j->quorum = quorum;
    }
    return j;
}

/* ---- guest requests ---- */

/* Turns a guest request into jobs; returns 0, or 1 when it must wait for
 * retained room (nothing queued), or a negative status. */
static int start_request(struct crucible_upstairs *up, struct block_request *req)
{
    uint32_t bs = up->block_size;
    if (up->state != UP_ACTIVE)
        return -EIO;
    unsigned active = 0;
    for (int i = 0; i < NCLIENTS; i++)
        active += up->clients[i].state == CL_ACTIVE;
    if (req->op == BLOCK_OP_DISCARD || req->op == BLOCK_OP_WRITE_ZEROES)
        return -EOPNOTSUPP;
    if (req->op != BLOCK_OP_FLUSH && (req->offset % bs || req->len % bs))
        return -EINVAL;
    if (req->op == BLOCK_OP_READ ? active < 1 : active < 2) {
        log_limited(&up->ratelimit, LOG_ERROR,
                    "block_dev.%s: %s refused: %u downstairs active, %u needed", up->name,
                    block_op_name(req->op), active, req->op == BLOCK_OP_READ ? 1u : 2u);
        return -EIO;
    }
    if (req->op == BLOCK_OP_WRITE && up->retained_bytes + req->len > RETAINED_MAX_BYTES &&
        up->jobs_head)
        return 1;
    /* Two downstairs keeping up are enough (writes and flushes need two):
     * one that falls behind does not hold the guest back. */
    unsigned keeping_up = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        const struct client *c = &up->clients[i];
        keeping_up +=
            c->state == CL_ACTIVE && c->sent_jobs < SENT_MAX_JOBS && c->sent_bytes < SENT_MAX_BYTES;
    }
    if (keeping_up < 2 && req->op != BLOCK_OP_READ)
        return 1;
    /* One part per job, plus this function's own until all are queued. */
    req->backend_private[CRU_PRIV_ERROR] = 0;
    req->backend_private[CRU_PRIV_PARTS] = 1;
    if (req->op == BLOCK_OP_FLUSH) {
        struct job *j = cru_new_job(JOB_FLUSH, 2);
        if (!j)
            return -ENOMEM;
        j->flush_number = up->next_flush++;
        j->req = req;
        req->backend_private[CRU_PRIV_PARTS]++;
        up->writes_since_flush = false;
        up->flush_in_flight = true;
        if (cru_enqueue(up, j) < 0) {
            cru_free_job(up, j);
            part_done(up, req, -ENOMEM);
            return 0;
        }
        job_check_answer(up, j);
        part_done(up, req, 0);
        return 0;
    }
    uint64_t max = JOB_MAX_BYTES;
    for (uint64_t done = 0; done < req->len;) {
        uint64_t n = req->len - done < max ? req->len - done : max;
        struct job *j =
            req->op == BLOCK_OP_READ ? cru_new_job(JOB_READ, 1) : cru_new_job(JOB_WRITE, 2);
        int st = 0;
        if (!j) {
            st = -ENOMEM;
        } else {
            j->start = (req->offset + done) / bs;
            j->count = n / bs;
            if (j->kind == JOB_READ) {
                j->req = req;
                j->req_skip = done;
                req->backend_private[CRU_PRIV_PARTS]++;
            } else if ((j->answered = true, !(j->data = cru_data_alloc(up, n))) ||
                       !(j->ctx = calloc(j->count, sizeof(*j->ctx)))) {
                st = -ENOMEM;
            } else {
                blk_iov_copy(req, done, j->data, n, false);
                if (crucible_seal_blocks(up->cipher, j->data, bs, j->count, j->ctx) < 0)
                    st = -EIO;
            }
            if (st == 0 && cru_enqueue(up, j) < 0)
                st = -ENOMEM;
        }
        if (st) {
            if (j && j->kind == JOB_READ)
                req->backend_private[CRU_PRIV_PARTS]--;
            if (j)
                cru_free_job(up, j);
            part_done(up, req, st);
            return 0;
        }
        if (j->kind == JOB_READ)
            job_check_answer(up, j);
        done += n;
    }
    /* Writes are the guest's once queued to enough downstairs (crucible's
     * fast acknowledgement); a flush makes them durable. */
    part_done(up, req, 0);
    return 0;
}

/* A flush no guest request waits for (the timer's, or the last one);
 * returns its job id, 0 if it could not be queued. */
uint64_t cru_send_flush(struct crucible_upstairs *up, bool answered)
{
    struct job *j = cru_new_job(JOB_FLUSH, 2);
    if (!j)
        return 0;
    j->flush_number = up->next_flush++;
    j->answered = answered;
    up->writes_since_flush = false;
    if (cru_enqueue(up, j) < 0) {
        cru_free_job(up, j);
        return 0;
    }
    return j->id;
}

/* ---- the disk's thread ---- */

/* Faults an offline downstairs that is holding too much. */
static void check_held(struct crucible_upstairs *up)
{
    for (int i = 0; i < NCLIENTS; i++) {
        struct client *c = &up->clients[i];
        if (c->mode != MODE_OFFLINE || c->state == CL_ACTIVE)
            continue;
        if (c->held_jobs > HELD_MAX_JOBS || c->held_bytes > HELD_MAX_BYTES)
            cru_client_fault(c, "it was away too long for its jobs to be replayed");
        else if (cru_now_ns() - c->offline_since_ns > OFFLINE_MAX_NS)
            /* A flush that needs it would wait for it without end. */
            cru_client_fault(c, "it has been away for 60 s");
    }
}

/* Guest reads waiting on a downstairs that has said nothing for a while
 * are also sent to another (each goes to one only). */
static void hedge_reads(struct crucible_upstairs *up, int64_t now)
{
    if (now < up->next_hedge_ns)
        return;
    up->next_hedge_ns = now + HEDGE_CHECK_NS;
    for (int i = 0; i < NCLIENTS; i++) {
        struct client *c = &up->clients[i];
        if (c->state != CL_ACTIVE || !c->sent_jobs || now - c->last_rx_ns < HEDGE_NS)
            continue;
        for (struct job *j = up->jobs_head; j; j = j->next)
            if (j->kind == JOB_READ && !j->internal && !j->answered && j->state[i] == JS_SENT)
                cru_read_elsewhere(up, j);
    }
}

static void run_round(struct crucible_upstairs *up, bool stop)
{
    int64_t now = cru_now_ns();
    if (up->state == UP_ACTIVE)
        hedge_reads(up, now);
    /* Connections: start, time out, ping. */
    for (int i = 0; i < NCLIENTS && !stop; i++) {
        struct client *c = &up->clients[i];
        if (up->state == UP_FAILED)
            break;
        if (c->state == CL_IDLE && now >= c->next_attempt_ns)
            cru_client_connect(c, now);
        else if ((c->state == CL_CONNECTING || c->state == CL_TLS) &&
                 now - c->connect_started_ns > CONNECT_TIMEOUT_NS)
            cru_client_drop(c, c->state == CL_TLS ? "no TLS handshake within 10 s"
                                                  : "no connection within 10 s");
        else if (c->state >= CL_WAIT_YES && c->state <= CL_ACTIVE) {
            if (now - c->last_rx_ns > INACTIVITY_NS)
                cru_client_drop(c, "silent for 45 s");
            else if (c->state == CL_ACTIVE && c->sent_jobs && now - c->last_rx_ns > STALL_NS)
                cru_client_drop(c, "no answer for 5 s with jobs outstanding");

            else if (now - c->last_ping_ns >= PING_NS) {
                c->last_ping_ns = now;
                cru_client_send(c, &(struct crucible_msg){.type = CM_RUOK});
            }
        }
    }
    if (up->state == UP_ACTIVE) {
        /* Guest requests waiting for room go first, in order. */
        while (up->waiting.head) {
            struct block_request *req = blk_queue_pop(&up->waiting);
            int rc = start_request(up, req);
            if (rc == 1) {
                /* Put it back at the head. */
                blk_set_next(req, up->waiting.head);
                up->waiting.head = req;
                if (!up->waiting.tail)
                    up->waiting.tail = req;
                up->waiting.len++;
                break;
            }
            if (rc < 0)
                blk_finish(&up->tracker, req, rc);
        }
        /* After writes, on the timer or when data piles up; after many
         * jobs of any kind too: a flush is what retires them (reads as
         * well). */
        bool want_flush = !up->flush_in_flight &&
                          ((up->writes_since_flush &&
                            (now >= up->next_autoflush_ns ||
                             up->retained_bytes > RETAINED_MAX_BYTES / 2 || up->waiting.head)) ||
                           up->jobs_since_flush >= AUTOFLUSH_JOBS);
        if (want_flush) {
            cru_send_flush(up, true);
            up->next_autoflush_ns = now + (int64_t)(up->cfg.flush_timeout * 1e9);
        } else if (!up->writes_since_flush) {
            up->next_autoflush_ns = now + (int64_t)(up->cfg.flush_timeout * 1e9);
        }
        check_held(up);
    }
    retire(up);
    for (int i = 0; i < NCLIENTS; i++)
        cru_client_flush_out(&up->clients[i]);
}

static void take_incoming(struct crucible_upstairs *up, bool *stop)
{
    pthread_mutex_lock(&up->lock);
    struct blk_queue taken = up->incoming;
    up->incoming = (struct blk_queue){0};
    *stop = up->stop;
    pthread_mutex_unlock(&up->lock);
    for (struct block_request *req; (req = blk_queue_pop(&taken));) {
        if (blk_kind(req) == BLK_KIND_STATUS) {
            blk_finish(&up->tracker, req, blk_preset_status(req));
            continue;
        }
        if (up->waiting.head) {
            blk_queue_push(&up->waiting, req);
            continue;
        }
        int rc = start_request(up, req);
        if (rc == 1)
            blk_queue_push(&up->waiting, req);
        else if (rc < 0)
            blk_finish(&up->tracker, req, rc);
    }
}

/* Stopping: an active disk flushes what the guest wrote since the last
 * flush, waiting up to this long for the downstairs. */
#define FINAL_FLUSH_NS (5 * SEC_NS)

static void *upstairs_main(void *arg)
{
    struct crucible_upstairs *up = arg;
    int64_t stop_deadline = 0;
    uint64_t final_flush = 0;
    for (;;) {
        bool stop;
        take_incoming(up, &stop);
        if (stop && !stop_deadline) {
            /* A last flush makes what the guest wrote durable. */
            stop_deadline = cru_now_ns() + FINAL_FLUSH_NS;
            if (up->state == UP_ACTIVE && up->jobs_tail && up->jobs_tail->kind != JOB_FLUSH)
                final_flush = cru_send_flush(up, false);
        }
        if (up->state == UP_FAILED) {
            for (struct block_request *req; (req = blk_queue_pop(&up->waiting));)
                blk_finish(&up->tracker, req, -EIO);
        }
        run_round(up, stop);
        if (stop) {
            /* Every downstairs that can take it: a deactivation. */
            struct job *f = final_flush ? cru_find_job(up, final_flush) : NULL;
            bool finished = true;
            for (int i = 0; i < NCLIENTS && f; i++)
                finished = finished && f->state[i] != JS_SENT; /* held: it is away */
            if (up->state != UP_ACTIVE || finished)
                break;
            if (cru_now_ns() >= stop_deadline) {
                log_warn("block_dev.%s: stopped before %s", up->name,
                         f && f->done >= 2 ? "every downstairs acknowledged the final flush"
                                           : "two downstairs acknowledged the final flush");
                break;
            }
        }

        struct pollfd pfd[1 + NCLIENTS];
        pfd[0] = (struct pollfd){.fd = up->wake_fd, .events = POLLIN};
        int64_t now = cru_now_ns(), next = now + PING_NS;
        for (int i = 0; i < NCLIENTS; i++) {
            struct client *c = &up->clients[i];
            pfd[1 + i] = (struct pollfd){.fd = -1};
            if (c->fd >= 0 && up->state != UP_FAILED) {
                pfd[1 + i].fd = c->fd;
                pfd[1 + i].events = (short)(c->state == CL_CONNECTING ? POLLOUT : POLLIN);
                if (c->state != CL_CONNECTING &&
                    (c->out_sent < c->out.len || (c->tls && crucible_tls_wants_write(c->tls))))
                    pfd[1 + i].events |= POLLOUT;
            }
            if (c->state == CL_IDLE && c->next_attempt_ns < next)
                next = c->next_attempt_ns;
            /* Outstanding jobs: look for a silent downstairs now and then. */
            if (c->state == CL_ACTIVE && c->sent_jobs && now + HEDGE_CHECK_NS < next)
                next = now + HEDGE_CHECK_NS;
        }
        if (up->state == UP_ACTIVE && up->writes_since_flush && up->next_autoflush_ns < next)
            next = up->next_autoflush_ns;
        if (stop_deadline && stop_deadline < next)
            next = stop_deadline;
        int timeout_ms = next > now ? (int)((next - now) / 1000000 + 1) : 0;
        if (poll(pfd, 1 + NCLIENTS, timeout_ms) < 0 && errno != EINTR) {
            log_error("block_dev.%s: poll: %s", up->name, strerror(errno));
            usleep(10000);
            continue;
        }
        if (pfd[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(up->wake_fd, &v, sizeof(v));
            (void)r;
        }
        for (int i = 0; i < NCLIENTS; i++) {
            struct client *c = &up->clients[i];
            if (pfd[1 + i].fd < 0 || !pfd[1 + i].revents || c->fd != pfd[1 + i].fd)
                continue;
            if (c->state == CL_CONNECTING)
                cru_client_connected(c);
            else if (c->state == CL_TLS)
                cru_client_tls_step(c);
            else {
                /* TLS may need the socket writable to go on reading. */
                if (pfd[1 + i].revents & (POLLIN | POLLHUP | POLLERR) ||
                    (c->tls && (pfd[1 + i].revents & POLLOUT)))
                    cru_client_receive(up, c);
                if (c->fd >= 0 && (pfd[1 + i].revents & POLLOUT))
                    cru_client_flush_out(c);
            }
        }
    }
    return NULL;
}

/* ---- block_backend_ops ---- */

static int crucible_submit(struct block_backend *be, struct block_request *req)
{
    struct crucible_upstairs *up = (struct crucible_upstairs *)be;
    int rc = blk_check_request(be, req);
    if (rc == 0 && (req->op == BLOCK_OP_DISCARD || req->op == BLOCK_OP_WRITE_ZEROES))
        rc = -EOPNOTSUPP;
    if (rc == 0 && req->op == BLOCK_OP_FLUSH && up->read_only)
        blk_set_kind(req, BLK_KIND_STATUS, 0);
    else
        blk_set_kind(req, rc ? BLK_KIND_STATUS : BLK_KIND_IO, rc);
    blk_handoff(&up->tracker, &up->lock, &up->incoming, up->wake_fd, req);
    return 0;
}

static void crucible_drain(struct block_backend *be)
{
    blk_tracker_drain(&((struct crucible_upstairs *)be)->tracker);
}

static void free_upstairs(struct crucible_upstairs *up)
{
    for (int i = 0; i < NCLIENTS; i++) {
        struct client *c = &up->clients[i];
        cru_client_reset_io(c);
        crucible_buf_free(&c->out);
        free(c->rx);
        free(c->gens);
        free(c->flushes);
        free(c->dirty);
    }
    while (up->jobs_head) {
        struct job *j = up->jobs_head;
        up->jobs_head = j->next;
        cru_free_job(up, j);
    }
    free(up->by_id);
    while (up->pool_len)
        free(up->pool[--up->pool_len]);
    crucible_cipher_close(up->cipher);
    crucible_tls_close(up->tls);
    if (up->wake_fd >= 0)
        close(up->wake_fd);
    pthread_cond_destroy(&up->activated);
    pthread_mutex_destroy(&up->lock);
    blk_tracker_destroy(&up->tracker);
    free(up->name);
    free(up);
}

static void stop_thread(struct crucible_upstairs *up)
{
    pthread_mutex_lock(&up->lock);
    up->stop = true;
    pthread_mutex_unlock(&up->lock);
    blk_wake(up->wake_fd);
    pthread_join(up->thread, NULL);
}

static void crucible_destroy(struct block_backend *be)
{
    struct crucible_upstairs *up = (struct crucible_upstairs *)be;
    blk_tracker_drain(&up->tracker);
    stop_thread(up);
    free_upstairs(up);
}

static const struct block_backend_ops crucible_ops = {
    .submit = crucible_submit,
    .drain = crucible_drain,
    .destroy = crucible_destroy,
};

static void random_uuid(struct crucible_uuid *u)
{
    if (getrandom(u->b, sizeof(u->b), 0) != (ssize_t)sizeof(u->b))
        for (size_t i = 0; i < sizeof(u->b); i++)
            u->b[i] = (uint8_t)(cru_now_ns() >> (i % 8 * 8)) ^ (uint8_t)rand();
    u->b[6] = (uint8_t)((u->b[6] & 0x0f) | 0x40); /* version 4 */
    u->b[8] = (uint8_t)((u->b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
}

static const char *client_state_name(enum client_state s)
{
    static const char *const names[] = {
        [CL_IDLE] = "not connected",
        [CL_TLS] = "in its TLS handshake",
        [CL_CONNECTING] = "connecting",
        [CL_WAIT_YES] = "negotiating",
        [CL_WAIT_ACTIVE] = "being promoted",
        [CL_WAIT_REGION] = "describing its region",
        [CL_WAIT_VERSIONS] = "listing its extents",
        [CL_WAIT_QUORUM] = "ready",
        [CL_ACTIVE] = "active",
        [CL_LIVE_REPAIR] = "under repair",
    };
    return names[s];
}

/* Where key was written in the config ({0, 0}: at the section). */
static struct config_pos key_pos(const struct config_block_dev *cfg, const char *key)
{
    const struct config_crucible *c = &cfg->crucible;
    const struct {
        const char *key;
        struct config_pos pos;
    } keys[] = {
        {"block_size", c->pos.block_size},
        {"blocks_per_extent", c->pos.blocks_per_extent},
        {"extent_count", c->pos.extent_count},
        {"targets", c->pos.targets},
        {"generation", c->pos.generation},
        {"upstairs_id", c->pos.upstairs_id},
        {"lossy", c->pos.lossy},
        {"encryption_key", c->pos.encryption_key},
        {"cert_pem", c->pos.cert_pem},
        {"key_pem", c->pos.key_pem},
        {"root_cert_pem", c->pos.root_cert_pem},
        {"control_addr", c->pos.control_addr},
        {"read_only", c->pos.read_only},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(keys[i].key, key) == 0)
            return keys[i].pos;
    return (struct config_pos){0, 0};
}

/* Keys of the reference this back end does not implement: refused at
 * their line rather than ignored. */
static bool refuse_unsupported(const struct config_block_dev *cfg)
{
    const struct config_crucible *c = &cfg->crucible;
    bool any_tls = c->cert_pem || c->key_pem || c->root_cert_pem;
    const char *missing = !c->cert_pem ? "cert_pem" : !c->key_pem ? "key_pem" : "root_cert_pem";
    if (any_tls && !(c->cert_pem && c->key_pem && c->root_cert_pem)) {
        blk_config_error(cfg, missing, key_pos(cfg, missing),
                         "TLS to the downstairs needs cert_pem, key_pem and root_cert_pem; "
                         "%s is missing",
                         missing);
        return true;
    }
    if (c->has_control_addr) {
        blk_config_error(cfg, "control_addr", key_pos(cfg, "control_addr"),
                         "crucible's HTTP control endpoint is not supported; the disk's state "
                         "is in the VMM's log");
        return true;
    }
    if (c->lossy) {
        blk_config_error(cfg, "lossy", key_pos(cfg, "lossy"),
                         "lossy (crucible's fault injection for its own tests) is not supported");
        return true;
    }
    return false;
}

struct block_backend *block_crucible_open(const struct config_block_dev *cfg)
{
    if (refuse_unsupported(cfg))
        return NULL;
    struct crucible_upstairs *up = calloc(1, sizeof(*up));
    if (!up || !(up->name = strdup(cfg->name))) {
        free(up);
        log_error("block_dev.%s: out of memory", cfg->name);
        return NULL;
    }
    up->wake_fd = -1;
    pthread_mutex_init(&up->lock, NULL);
    pthread_cond_init(&up->activated, NULL);
    blk_tracker_init(&up->tracker);
    up->cfg = cfg->crucible;
    /* The strings stay with the config; the back end needs none of them. */
    up->cfg.encryption_key_b64 = up->cfg.cert_pem = up->cfg.key_pem = up->cfg.root_cert_pem = NULL;
    up->block_size = config_block_size(cfg);
    up->read_only = cfg->read_only;
    up->encrypted = cfg->crucible.has_encryption_key;
    up->blocks = up->cfg.blocks_per_extent * up->cfg.extent_count;
    if (up->cfg.blocks_per_extent > UINT64_MAX / up->cfg.extent_count / up->block_size) {
        blk_config_error(cfg, "extent_count", key_pos(cfg, "extent_count"),
                         "blocks_per_extent * extent_count * block_size overflows");
        goto fail;
    }
    if (up->encrypted) {
        char why[256];
        if (!(up->cipher = crucible_cipher_open(cfg->crucible.encryption_key, CRUCIBLE_KEY_LEN, why,
                                                sizeof(why)))) {
            blk_config_error(cfg, "encryption_key", key_pos(cfg, "encryption_key"), "%s", why);
            goto fail;
        }
    }
    if (cfg->crucible.cert_pem) {
        char why[512];
        const char *key = NULL;
        if (!(up->tls = crucible_tls_open(cfg->crucible.cert_pem, cfg->crucible.key_pem,
                                          cfg->crucible.root_cert_pem, why, sizeof(why), &key))) {
            blk_config_error(cfg, key ? key : "cert_pem", key_pos(cfg, key ? key : "cert_pem"),
                             "%s", why);
            goto fail;
        }
    }
    if (cfg->crucible.has_upstairs_id)
        memcpy(up->upstairs_id.b, cfg->crucible.upstairs_id, 16);
    else
        random_uuid(&up->upstairs_id);
    random_uuid(&up->session_id);
    /* "auto" promotes with 1 first, then with one more than the highest
     * extent generation the downstairs report (all_in_quorum). */
    up->generation = cfg->crucible.generation_auto ? 1 : cfg->crucible.generation;
    up->next_id = FIRST_JOB_ID;
    up->state = UP_ACTIVATING;
    up->lr_client = -1;
    for (int i = 0; i < NCLIENTS; i++)
        up->clients[i] = (struct client){.index = i, .up = up, .fd = -1};
    up->be.ops = &crucible_ops;
    up->be.name = up->name;
    up->be.info = (struct block_info){
        .size = up->blocks * up->block_size,
        .block_size = up->block_size,
        .read_only = up->read_only,
        .volatile_cache = !up->read_only && !cfg->skip_flush,
        .workers = 1,
    };
    if ((up->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        log_error("block_dev.%s: eventfd: %s", cfg->name, strerror(errno));
        goto fail;
    }
    char tname[16];
    snprintf(tname, sizeof(tname), "crucible-%s", cfg->name);
    int rc = thread_start(&up->thread, tname, THREAD_NET_BLOCK, 0, upstairs_main, up);
    if (rc < 0) {
        log_error("block_dev.%s: cannot start its thread: %s", cfg->name, strerror(-rc));
        goto fail;
    }

    /* The region set must be active before the guest sees the disk. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += ACTIVATE_TIMEOUT_NS / SEC_NS;
    pthread_mutex_lock(&up->lock);
    while (up->state != UP_ACTIVE && up->state != UP_FAILED) {
        if (pthread_cond_timedwait(&up->activated, &up->lock, &deadline) != ETIMEDOUT)
            continue;
        if (up->state != UP_RECONCILING)
            break;
        /* Copying extents the downstairs disagree on takes as long as
         * it takes; the guest waits for a consistent disk. */
        log_info("block_dev.%s: still reconciling the downstairs", cfg->name);
        deadline.tv_sec += ACTIVATE_TIMEOUT_NS / SEC_NS;
    }
    enum up_state st = up->state;
    pthread_mutex_unlock(&up->lock);
    if (st == UP_ACTIVE) {
        log_debug("block_dev.%s: crucible, %" PRIu64 " bytes, block size %" PRIu32 "%s%s",
                  cfg->name, up->be.info.size, up->block_size, up->read_only ? ", read-only" : "",
                  up->encrypted ? ", encrypted" : "");
        return &up->be;
    }
    stop_thread(up);
    if (st == UP_FAILED) {
        const char *key = up->fail_key ? up->fail_key : "targets";
        blk_config_error(cfg, key, key_pos(cfg, key), "%s", up->fail_why);
    } else {
        char states[384];
        size_t n = 0;
        for (int i = 0; i < NCLIENTS; i++)
            n += (size_t)snprintf(states + n, sizeof(states) - n, "%s%s %s", i ? ", " : "",
                                  cru_target_text(up, i), client_state_name(up->clients[i].state));
        blk_config_error(cfg, "targets", key_pos(cfg, "targets"),
                         "the three downstairs were not ready within %lld s (%s)",
                         (long long)(ACTIVATE_TIMEOUT_NS / SEC_NS), states);
    }
    free_upstairs(up);
    return NULL;
fail:
    free_upstairs(up);
    return NULL;
}

struct block_backend *block_crucible_mem_open(const struct config_block_dev *cfg)
{
    /* Crucible's in-memory volume for tests: a RAM disk of size bytes. */
    struct config_block_dev mem = *cfg;
    mem.type = CONFIG_BLOCK_MEM_ASYNC;
    mem.mem_async.size = cfg->crucible_mem.size;
    mem.mem_async.workers = 1;
    return block_mem_open(&mem);
}
