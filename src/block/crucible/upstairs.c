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
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/block_internal.h"
#include "block/crucible/blocks.h"
#include "block/crucible/protocol.h"
#include "block/crucible/tls.h"
#include "block/crucible/upstairs.h"
#include "common/log.h"
#include "common/thread.h"
#include "config/config.h"
#include "core/timer.h"

#define NCLIENTS CONFIG_CRUCIBLE_TARGETS
#define SEC_NS 1000000000ll

#define FIRST_JOB_ID 1000
#define PING_NS (5 * SEC_NS)
#define INACTIVITY_NS (45 * SEC_NS)
#define CONNECT_TIMEOUT_NS (10 * SEC_NS)
#define BACKOFF_MIN_NS (250 * 1000000ll)
#define BACKOFF_MAX_NS (5 * SEC_NS)
/* How long opening the disk waits for the three downstairs. */
#define ACTIVATE_TIMEOUT_NS (30 * SEC_NS)
/* A downstairs active this long is doing well: its next loss reconnects
 * at once. */
#define STABLE_NS (10 * SEC_NS)
/* Promotions refused in a row before activation gives up. */
#define PROMOTION_REFUSALS 3
/* A guest request is split into jobs of at most this much. */
#define JOB_MAX_BYTES (1u << 20)
/* An offline downstairs is faulted beyond this. Crucible's limit is 1000
 * jobs (it then repairs the downstairs while I/O goes on); with no such
 * live repair here, jobs are held up to its byte limit, which the
 * retained-data limit below bounds anyway. */
#define HELD_MAX_JOBS 16384
#define HELD_MAX_BYTES (50ull << 20)
/* A downstairs with jobs outstanding and silent this long is dropped
 * (it goes offline; its jobs wait for its replay). */
#define STALL_NS (5 * SEC_NS)
/* Reads waiting on a downstairs silent this long go to another too,
 * checked this often. */
#define HEDGE_NS (500 * 1000000ll)
#define HEDGE_CHECK_NS (250 * 1000000ll)
/* An offline downstairs is faulted after this long too: its held jobs
 * keep flushes that need it (and retirement) waiting. */
#define OFFLINE_MAX_NS (60 * SEC_NS)
/* Guest requests wait while an active downstairs has this much sent and
 * unanswered (crucible's back-pressure): a slow downstairs slows the
 * guest rather than letting its backlog grow. */
#define SENT_MAX_JOBS 1024
#define SENT_MAX_BYTES (16ull << 20)
/* Write data kept until a flush retires it: beyond this, guest writes
 * wait; past half of it, a flush is sent. */
#define RETAINED_MAX_BYTES (64ull << 20)
/* Buffers of JOB_MAX_BYTES kept for reuse (data_alloc). */
#define DATA_POOL_MAX 16
/* A flush is also sent after this many jobs, so dependency lists stay
 * short. */
#define AUTOFLUSH_JOBS 512
/* Frames we accept: a read reply of one job, or ExtentVersions. */
#define RX_FRAME_MIN_CAP (8u << 20)

/* block_request.backend_private words once a request is turned into
 * jobs (until then the BLK_PRIV_* words of block_internal.h: its queue
 * link, a status preset at submit, its kind). */
enum {
    CRU_PRIV_ERROR = 1, /* the first failed job's status, 0 */
    CRU_PRIV_PARTS = 2, /* its jobs not yet finished, plus one while they are queued */
};

enum job_kind { JOB_READ, JOB_WRITE, JOB_FLUSH };

/* A job's state on one downstairs. */
enum job_state {
    JS_HELD,    /* not sent yet: the downstairs is offline (or connecting) */
    JS_SENT,    /* sent, no answer yet */
    JS_DONE,    /* answered Ok */
    JS_ERROR,   /* answered Err, or a read whose blocks did not check out */
    JS_SKIPPED, /* not for this downstairs (faulted; or a source-only read) */
};

struct job {
    struct job *next; /* the job list, in id order */
    uint64_t id;
    enum job_kind kind;
    uint64_t start, count; /* blocks */
    uint8_t *data;         /* write: the sealed blocks */
    struct crucible_block_context *ctx;
    uint64_t flush_number;
    uint64_t *deps;
    uint32_t ndeps;
    uint8_t state[NCLIENTS];
    unsigned done, failed; /* downstairs that answered Ok / otherwise (or skipped) */
    unsigned quorum;       /* downstairs that must answer Ok for its waiter */
    bool answered;         /* its waiter (guest request or reconciliation) was told */
    /* Live repair's write to the downstairs under repair: sent to it at
     * once, ahead of the jobs held for it, and no later job's dependency. */
    bool repair_direct;
    /* Who waits: a guest request (reads and flushes; writes are
     * answered when queued), at byte req_skip of it; or reconciliation. */
    struct block_request *req;
    uint64_t req_skip;
    bool internal;
};

enum client_state {
    CL_IDLE,          /* no connection; the next attempt at next_attempt_ns */
    CL_CONNECTING,    /* connect() in progress */
    CL_TLS,           /* TLS handshake in progress */
    CL_WAIT_YES,      /* HereIAm sent */
    CL_WAIT_ACTIVE,   /* PromoteToActive sent */
    CL_WAIT_REGION,   /* RegionInfoPlease sent */
    CL_WAIT_VERSIONS, /* ExtentVersionsPlease sent */
    CL_WAIT_QUORUM,   /* ExtentVersions in, waiting for the other two */
    CL_ACTIVE,        /* taking I/O */
    CL_LIVE_REPAIR,   /* being brought up to date while I/O goes on */
};

/* How a connection that reaches RegionInfo continues. */
enum client_mode {
    MODE_NEW,     /* ExtentVersionsPlease: activation */
    MODE_OFFLINE, /* LastFlush and replay: it was active and dropped out */
    MODE_REPAIR,  /* faulted: its jobs are skipped until live repair copies the region */
};

struct client {
    int index;
    struct crucible_upstairs *up;
    enum client_state state;
    enum client_mode mode;
    int fd;
    struct crucible_tls_conn *tls; /* NULL: plain TCP */
    struct crucible_buf out;
    size_t out_sent;
    uint8_t *rx;
    size_t rx_len, rx_cap;
    int64_t connect_started_ns, last_rx_ns, last_ping_ns, next_attempt_ns, backoff_ns;
    unsigned attempts;
    unsigned refusals; /* promotions refused in a row (the connection dropped) */
    bool has_region;
    struct crucible_uuid region_uuid;
    /* ExtentVersions, for activation. */
    uint64_t *gens, *flushes;
    bool *dirty;
    /* The last flush this downstairs acknowledged (replay starts after it). */
    bool has_last_flush;
    uint64_t last_flush;
    uint64_t held_jobs, held_bytes;
    uint64_t sent_jobs, sent_bytes; /* sent and not answered yet */
    int64_t active_since_ns;        /* when it last became active */
    int64_t offline_since_ns;       /* when it dropped out (MODE_OFFLINE) */
    struct log_ratelimit log;       /* its connection's ups and downs */
};

enum up_state { UP_ACTIVATING, UP_RECONCILING, UP_ACTIVE, UP_FAILED };

struct crucible_upstairs {
    struct block_backend be;
    char *name;
    struct config_crucible cfg;
    const struct config_block_dev *open_cfg; /* during open only, for errors */
    uint32_t block_size;
    uint64_t blocks;
    bool read_only, encrypted;
    struct crucible_cipher *cipher;
    struct crucible_tls *tls; /* NULL: plain TCP to the downstairs */
    struct crucible_uuid upstairs_id, session_id;
    uint64_t generation;
    struct blk_tracker tracker;
    struct log_ratelimit ratelimit;

    /* Shared with submitters. */
    pthread_mutex_t lock;
    struct blk_queue incoming;
    bool stop;
    int wake_fd;
    /* Activation's outcome, for open (under lock). */
    pthread_cond_t activated;
    char fail_why[512];
    const char *fail_key; /* the config key the failure is about */

    /* The thread's own. */
    pthread_t thread;
    enum up_state state;
    struct client clients[NCLIENTS];
    struct blk_queue waiting; /* guest writes waiting for retained room */
    struct job *jobs_head, *jobs_tail;
    /* The same jobs by id (their ids are consecutive, from the head's): a
     * ring of pointers, so an answer finds its job at once. */
    struct job **by_id;
    size_t by_id_cap, by_id_start, by_id_len;
    uint64_t by_id_first;
    struct job *since_flush; /* first job after the last flush, or NULL */
    uint64_t last_flush_id;  /* 0: none yet */
    unsigned jobs_since_flush;
    uint64_t next_id, next_flush;
    uint64_t retained_bytes;
    bool writes_since_flush;
    bool flush_in_flight;
    int64_t next_autoflush_ns;
    /* Reconciliation: the extent being copied, its source, and where. */
    uint32_t repair_extent;
    uint64_t repair_block;
    int repair_source;
    bool repair_busy, repair_flushing;
    uint64_t repaired_extents;
    /* Live repair: the downstairs under repair (-1: none), its source,
     * the extent being copied and where in it; holding: jobs for it wait
     * (in order) until the current extent is copied. */
    int lr_client, lr_source;
    uint32_t lr_extent;
    uint64_t lr_block;
    bool lr_busy, lr_holding;
    unsigned read_turn; /* the downstairs the next guest read tries first */
    int64_t next_hedge_ns;
    uint8_t *pool[DATA_POOL_MAX];
    unsigned pool_len;
};

static int64_t now_ns(void)
{
    return (int64_t)vm_clock_ns();
}

static void wake(struct crucible_upstairs *up)
{
    uint64_t one = 1;
    ssize_t n = write(up->wake_fd, &one, sizeof(one));
    (void)n; /* a full counter already wakes the thread */
}

static const char *target_text(const struct crucible_upstairs *up, int i)
{
    return up->cfg.targets[i].text;
}

/* ---- activation's outcome ---- */

/* Activation (or the upstairs) failed for good: I/O fails from now on;
 * open reports why at key. */
static void up_fail(struct crucible_upstairs *up, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void up_fail(struct crucible_upstairs *up, const char *key, const char *fmt, ...)
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
static void set_state(struct crucible_upstairs *up, enum up_state st)
{
    pthread_mutex_lock(&up->lock);
    up->state = st;
    pthread_mutex_unlock(&up->lock);
}

static void up_set_active(struct crucible_upstairs *up)
{
    for (int i = 0; i < NCLIENTS; i++)
        up->clients[i].active_since_ns = now_ns();
    pthread_mutex_lock(&up->lock);
    up->state = UP_ACTIVE;
    pthread_cond_broadcast(&up->activated);
    pthread_mutex_unlock(&up->lock);
    log_info("block_dev.%s: active on %s, %s, %s with generation %" PRIu64 "%s", up->name,
             target_text(up, 0), target_text(up, 1), target_text(up, 2), up->generation,
             up->repaired_extents ? " (extents reconciled)" : "");
}

/* ---- sending ---- */

static void client_drop(struct client *c, const char *why);

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

static void client_send(struct client *c, const struct crucible_msg *m)
{
    if (c->fd < 0)
        return;
    if (crucible_encode_frame(&c->out, m) < 0 || c->out.failed) {
        client_drop(c, "out of memory encoding a message");
        return;
    }
}

/* Writes what the output buffer holds, as far as the socket takes it. */
static void client_flush_out(struct client *c)
{
    while (c->fd >= 0 && c->out_sent < c->out.len) {
        ssize_t n = io_send(c, c->out.bytes + c->out_sent, c->out.len - c->out_sent);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            client_drop(c, n < 0 ? io_error(c, errno) : "connection closed");
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

/* ---- jobs ---- */

static struct job *find_job(struct crucible_upstairs *up, uint64_t id)
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

static uint64_t job_bytes(const struct crucible_upstairs *up, const struct job *j)
{
    return j->kind == JOB_WRITE ? j->count * up->block_size : 0;
}

/* Sends job j to downstairs c, its dependencies pruned of jobs skipped
 * there. */
static void send_job(struct crucible_upstairs *up, struct client *c, struct job *j)
{
    uint64_t deps_buf[64];
    uint64_t *deps = j->ndeps <= 64 ? deps_buf : malloc(j->ndeps * sizeof(*deps));
    if (!deps) {
        client_drop(c, "out of memory");
        return;
    }
    uint64_t nd = 0;
    for (uint32_t k = 0; k < j->ndeps; k++) {
        struct job *d = find_job(up, j->deps[k]);
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
    c->sent_bytes += job_bytes(up, j);
    client_send(c, &m);
    if (deps != deps_buf)
        free(deps);
}

enum route { ROUTE_SEND, ROUTE_HOLD, ROUTE_SKIP };

/* Sends guest read j to the next active downstairs it has not been sent
 * to (crucible sends every read to all three; one copy is enough when
 * its blocks check out, and costs a third of the network and downstairs
 * work). Returns false when none is left. */
static bool read_elsewhere(struct crucible_upstairs *up, struct job *j)
{
    for (int k = 0; k < NCLIENTS; k++) {
        int i = (int)((up->read_turn + (unsigned)k) % NCLIENTS);
        struct client *c = &up->clients[i];
        if (c->state != CL_ACTIVE || j->state[i] != JS_SKIPPED)
            continue;
        up->read_turn = (unsigned)i + 1;
        j->failed--;
        send_job(up, c, j);
        return true;
    }
    return false;
}

/* Where job j goes for the downstairs under live repair: extents already
 * copied take it, the extent being copied makes it (and every later job)
 * wait until that extent is done, later extents skip it (their copy will
 * include it). */
static enum route lr_route(struct crucible_upstairs *up, const struct job *j)
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
static int enqueue(struct crucible_upstairs *up, struct job *j)
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
        up->retained_bytes += job_bytes(up, j);
        up->writes_since_flush = true;
    }
    if (j->kind == JOB_READ && !j->internal) {
        /* A guest read goes to one active downstairs, in turn; another is
         * tried if its copy fails (read_elsewhere). */
        for (int i = 0; i < NCLIENTS; i++) {
            j->state[i] = JS_SKIPPED;
            j->failed++;
        }
        read_elsewhere(up, j);
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
            r = j->repair_direct ? ROUTE_SEND : lr_route(up, j);
        else if (up->state == UP_ACTIVE && c->mode != MODE_OFFLINE)
            r = ROUTE_SKIP; /* faulted, waiting for its repair */
        if (r == ROUTE_SEND) {
            send_job(up, c, j);
        } else if (r == ROUTE_SKIP) {
            j->state[i] = JS_SKIPPED;
            j->failed++;
        } else {
            j->state[i] = JS_HELD;
            c->held_jobs++;
            c->held_bytes += job_bytes(up, j);
        }
    }
    return 0;
}

/* Job data of JOB_MAX_BYTES (sequential writes, reconciliation and
 * repair pieces) comes from a few kept buffers: malloc would map and
 * unmap each (page faults and TLB shootdowns for every MiB). */
static uint8_t *data_alloc(struct crucible_upstairs *up, size_t len)
{
    if (len == JOB_MAX_BYTES && up->pool_len > 0)
        return up->pool[--up->pool_len];
    return malloc(len);
}

static void data_free(struct crucible_upstairs *up, uint8_t *data, size_t len)
{
    if (data && len == JOB_MAX_BYTES && up->pool_len < DATA_POOL_MAX)
        up->pool[up->pool_len++] = data;
    else
        free(data);
}

static void free_job(struct crucible_upstairs *up, struct job *j)
{
    data_free(up, j->data, j->count * up->block_size);
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

static void repair_job_done(struct crucible_upstairs *up, struct job *j, bool ok);
static void lr_job_done(struct crucible_upstairs *up, struct job *j, bool ok);
static void lr_write(struct crucible_upstairs *up, struct job *r, uint8_t *raw,
                     const struct crucible_read_context *rc);
static void lr_start(struct crucible_upstairs *up, struct client *c);
static int repair_write(struct crucible_upstairs *up, struct job *r, uint8_t *raw,
                        const struct crucible_read_context *rc);

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
        repair_job_done(up, j, ok);
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
        up->retained_bytes -= job_bytes(up, j);
        bool end = j == last;
        free_job(up, j);
        if (end)
            break;
    }
    if (!up->jobs_head)
        up->jobs_tail = NULL;
}

/* j's state on downstairs c becomes s (an answer, or a skip). */
static void job_set_state(struct crucible_upstairs *up, struct client *c, struct job *j,
                          enum job_state s)
{
    if (j->state[c->index] == JS_DONE || j->state[c->index] == JS_ERROR ||
        j->state[c->index] == JS_SKIPPED)
        return;
    if (j->state[c->index] == JS_HELD) {
        c->held_jobs--;
        c->held_bytes -= job_bytes(up, j);
    } else {
        c->sent_jobs--;
        c->sent_bytes -= job_bytes(up, j);
    }
    j->state[c->index] = (uint8_t)s;
    if (s == JS_DONE)
        j->done++;
    else
        j->failed++;
    job_check_answer(up, j);
}

/* ---- client state ---- */

static void client_reset_io(struct client *c)
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

static void schedule_reconnect(struct client *c, int64_t now);

/* Downstairs c has lost jobs: every job it has not answered is skipped;
 * it reconnects and is repaired from another while I/O goes on. */
static void client_fault(struct client *c, const char *why)
{
    struct crucible_upstairs *up = c->up;
    log_error("block_dev.%s: downstairs %s is faulted (%s); I/O goes on with the other two, "
              "and it is repaired from them when it reconnects",
              up->name, target_text(up, c->index), why);
    if (up->lr_client == c->index) {
        up->lr_client = -1;
        up->lr_busy = up->lr_holding = false;
    }
    client_reset_io(c);
    c->state = CL_IDLE;
    c->mode = MODE_REPAIR;
    for (struct job *j = up->jobs_head; j; j = j->next)
        job_set_state(up, c, j, JS_SKIPPED);
    c->held_jobs = c->held_bytes = c->sent_jobs = c->sent_bytes = 0;
    c->attempts = 1; /* not at once: whatever faulted it may still be there */
    c->backoff_ns = BACKOFF_MAX_NS / 5;
    schedule_reconnect(c, now_ns());
}

static void schedule_reconnect(struct client *c, int64_t now)
{
    if (c->attempts == 0)
        c->backoff_ns = BACKOFF_MIN_NS;
    c->next_attempt_ns = now + (c->attempts ? c->backoff_ns : 0);
    c->backoff_ns = c->backoff_ns * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : c->backoff_ns * 2;
    c->attempts++;
}

/* Ends c's connection. While the upstairs is active an active downstairs
 * goes offline (jobs held for replay); during activation it starts over. */
static void client_drop(struct client *c, const char *why)
{
    struct crucible_upstairs *up = c->up;
    if (c->state == CL_IDLE)
        return;
    if (c->state == CL_LIVE_REPAIR) {
        client_fault(c, why); /* its repair starts over when it is back */
        return;
    }
    bool was_active = c->state == CL_ACTIVE && up->state == UP_ACTIVE;
    bool refused = c->state == CL_WAIT_ACTIVE;
    if (was_active || c->attempts < 3 || c->attempts % 30 == 0)
        log_limited(&c->log, LOG_WARNING, "block_dev.%s: downstairs %s: %s%s", up->name,
                    target_text(up, c->index), why,
                    was_active ? "; I/O goes on with the others while it reconnects"
                    : c->state == CL_WAIT_ACTIVE
                        ? " (while promoting: an upstairs with a higher generation may be active)"
                        : "");
    client_reset_io(c);
    c->state = CL_IDLE;
    /* A downstairs refuses a promotion by closing the connection: it has
     * an active upstairs of the same generation or a higher one. */
    if (refused && ++c->refusals >= PROMOTION_REFUSALS && up->state != UP_ACTIVE) {
        up_fail(up, "generation",
                "downstairs %s refused generation %" PRIu64 " %u times: another upstairs with "
                "this generation or a higher one is active on it",
                target_text(up, c->index), up->generation, c->refusals);
        return;
    }
    if (was_active) {
        c->mode = MODE_OFFLINE;
        c->offline_since_ns = now_ns();
        /* One that keeps failing soon after it is back (a broken or
         * hostile downstairs) is retried ever more slowly. */
        if (now_ns() - c->active_since_ns > STABLE_NS)
            c->attempts = 0;
        /* What it was sent and did not answer waits for the replay. */
        for (struct job *j = up->jobs_head; j; j = j->next) {
            if (j->state[c->index] == JS_SENT && j->kind == JOB_READ && !j->internal) {
                /* Nothing to replay for a read: it goes to another. */
                if (!j->answered)
                    read_elsewhere(up, j);
                job_set_state(up, c, j, JS_SKIPPED);
                continue;
            }
            if (j->state[c->index] == JS_SENT) {
                j->state[c->index] = JS_HELD;
                c->sent_jobs--;
                c->sent_bytes -= job_bytes(up, j);
                c->held_jobs++;
                c->held_bytes += job_bytes(up, j);
            }
        }
    }
    if (up->state == UP_ACTIVATING || up->state == UP_RECONCILING) {
        /* Activation needs all three: start the others' negotiation over
         * only if this one was past it (reconciliation). */
        if (up->state == UP_RECONCILING) {
            log_warn("block_dev.%s: reconciliation interrupted; activating again", up->name);
            set_state(up, UP_ACTIVATING);
            for (int i = 0; i < NCLIENTS; i++)
                if (&up->clients[i] != c && up->clients[i].state != CL_IDLE) {
                    client_reset_io(&up->clients[i]);
                    up->clients[i].state = CL_IDLE;
                    up->clients[i].attempts = 0;
                    schedule_reconnect(&up->clients[i], now_ns());
                }
            /* Jobs of the interrupted reconciliation are dropped. */
            while (up->jobs_head) {
                struct job *j = up->jobs_head;
                up->jobs_head = j->next;
                free_job(up, j);
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
    schedule_reconnect(c, now_ns());
}

static void client_connect(struct client *c, int64_t now)
{
    struct crucible_upstairs *up = c->up;
    const struct config_sockaddr *t = &up->cfg.targets[c->index];
    c->fd = socket(t->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        log_error("block_dev.%s: socket: %s", up->name, strerror(errno));
        schedule_reconnect(c, now);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->state = CL_CONNECTING;
    c->connect_started_ns = now;
    if (connect(c->fd, &t->u.sa, t->len) < 0 && errno != EINPROGRESS)
        client_drop(c, strerror(errno));
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
    c->last_rx_ns = c->last_ping_ns = now_ns();
    client_send(c, &m);
}

static void client_incompatible(struct client *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Advances c's TLS handshake; HereIAm once it is done. */
static void client_tls_step(struct client *c)
{
    char why[320];
    int rc = crucible_tls_handshake(c->tls, why, sizeof(why));
    if (rc == -2)
        client_incompatible(c, "root_cert_pem", "%s", why); /* no retry makes it trusted */
    else if (rc < 0)
        client_drop(c, why);
    else if (rc == 1)
        send_here_i_am(c);
}

/* The connect() finished (or failed). */
static void client_tls_step(struct client *c);

static void client_connected(struct client *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        client_drop(c, strerror(err));
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
        client_drop(c, "out of memory for TLS");
        return;
    }
    c->state = CL_TLS;
    client_tls_step(c);
}

/* ---- activation ---- */

static void start_reconciliation(struct crucible_upstairs *up);

/* All three sent their ExtentVersions: check the generation, pick the
 * first flush number, reconcile what they disagree on. */
static void all_in_quorum(struct crucible_upstairs *up)
{
    uint64_t max_gen = 0, max_flush = 0;
    for (int i = 0; i < NCLIENTS; i++)
        for (uint32_t e = 0; e < up->cfg.extent_count; e++) {
            struct client *c = &up->clients[i];
            max_gen = c->gens[e] > max_gen ? c->gens[e] : max_gen;
            max_flush = c->flushes[e] > max_flush ? c->flushes[e] : max_flush;
        }
    if (up->cfg.generation_auto && up->generation <= max_gen) {
        /* Promoted with a provisional generation: now that the highest is
         * known, activate again with one more. */
        up->generation = max_gen + 1;
        log_info("block_dev.%s: generation \"auto\": the downstairs' highest extent generation "
                 "is %" PRIu64 "; activating with %" PRIu64,
                 up->name, max_gen, up->generation);
        for (int i = 0; i < NCLIENTS; i++) {
            struct client *c = &up->clients[i];
            client_reset_io(c);
            c->state = CL_IDLE;
            c->attempts = 0;
            schedule_reconnect(c, now_ns());
        }
        return;
    }
    if (up->generation == 0) {
        up_fail(up, "generation", "generation 0 is not allowed by crucible (use 1 or more)");
        return;
    }
    if (up->generation <= max_gen) {
        up_fail(up, "generation",
                "generation %" PRIu64 " is not above the highest generation the downstairs "
                "hold (%" PRIu64 "): raise it to %" PRIu64 " or more, or set generation = \"auto\"",
                up->generation, max_gen, max_gen + 1);
        return;
    }
    up->next_flush = max_flush + 1;
    if (up->read_only) {
        /* A read-only disk writes nothing, so crucible does not reconcile
         * for it: every downstairs serves reads as it is. */
        for (int i = 0; i < NCLIENTS; i++)
            up->clients[i].state = CL_ACTIVE;
        up_set_active(up);
        return;
    }
    start_reconciliation(up);
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
        client_fault(c, why);
        return;
    }
    up_fail(up, key, "downstairs %s: %s", target_text(up, c->index), why);
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
    client_send(c, &m);
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
            c->held_bytes -= job_bytes(up, j);
        }
        send_job(up, c, j);
        n++;
    }
    c->active_since_ns = now_ns();
    log_limited(&c->log, LOG_INFO, "block_dev.%s: downstairs %s is back; %u jobs replayed",
                up->name, target_text(up, c->index), n);
}

static bool versions_ok(struct client *c, const struct crucible_msg *m)
{
    uint32_t n = c->up->cfg.extent_count;
    if (m->gen_number_count != n || m->flush_number_count != n || m->dirty_bit_count != n) {
        client_drop(c, "ExtentVersions does not have one entry per extent");
        return false;
    }
    free(c->gens);
    free(c->flushes);
    free(c->dirty);
    c->gens = malloc(n * sizeof(*c->gens));
    c->flushes = malloc(n * sizeof(*c->flushes));
    c->dirty = malloc(n * sizeof(*c->dirty));
    if (!c->gens || !c->flushes || !c->dirty) {
        client_drop(c, "out of memory");
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
        client_drop(c, "it speaks another protocol version");
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
            client_drop(c, "it answered with another protocol version");
            return;
        }
        struct crucible_msg p = {.type = CM_PROMOTE_TO_ACTIVE,
                                 .upstairs_id = up->upstairs_id,
                                 .session_id = up->session_id,
                                 .generation = up->generation};
        c->state = CL_WAIT_ACTIVE;
        client_send(c, &p);
    } else if (c->state == CL_WAIT_ACTIVE && m->type == CM_YOU_ARE_NOW_ACTIVE) {
        if (!same_uuid(&m->upstairs_id, &up->upstairs_id) ||
            !same_uuid(&m->session_id, &up->session_id) || m->generation != up->generation) {
            client_incompatible(c, "generation", "it promoted another session or generation");
            return;
        }
        c->state = CL_WAIT_REGION;
        c->refusals = 0;
        client_send(c, &(struct crucible_msg){.type = CM_REGION_INFO_PLEASE});
    } else if (c->state == CL_WAIT_REGION && m->type == CM_REGION_INFO) {
        if (!region_matches(c, m))
            return;
        if (c->mode == MODE_OFFLINE && up->state == UP_ACTIVE) {
            replay(up, c);
            return;
        }
        c->state = CL_WAIT_VERSIONS;
        client_send(c, &(struct crucible_msg){.type = CM_EXTENT_VERSIONS_PLEASE});
    } else if (c->state == CL_WAIT_VERSIONS && m->type == CM_EXTENT_VERSIONS) {
        if (!versions_ok(c, m))
            return;
        if (up->state == UP_ACTIVE) {
            lr_start(up, c);
            return;
        }
        c->state = CL_WAIT_QUORUM;
        c->attempts = 0;
        bool all = true;
        for (int i = 0; i < NCLIENTS; i++)
            all = all && up->clients[i].state == CL_WAIT_QUORUM;
        if (all)
            all_in_quorum(up);
    } else {
        client_drop(c, "protocol error: a message out of order");
    }
}

/* ---- I/O replies ---- */

/* c's copy of read j is bad: another downstairs is asked first (so the
 * job does not count as failed meanwhile). */
static void read_failed(struct crucible_upstairs *up, struct client *c, struct job *j)
{
    if (!j->internal && !j->answered)
        read_elsewhere(up, j);
    job_set_state(up, c, j, JS_ERROR);
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
                        up->name, target_text(up, c->index), j->count, m->read_context_count,
                        m->data_len);
        read_failed(up, c, j);
        return;
    }
    if (j->answered) {
        job_set_state(up, c, j, JS_DONE);
        return;
    }
    /* The reply lies in our receive buffer: decrypt it there. */
    uint8_t *data = (uint8_t *)(uintptr_t)m->data;
    uint8_t *raw = NULL;
    if (j->internal && !(raw = data_alloc(up, j->count * bs))) {
        up_fail(up, "targets", "out of memory during reconciliation");
        return;
    }
    if (raw)
        memcpy(raw, data, j->count * bs);
    uint64_t bad = 0;
    int kind = crucible_open_blocks(up->cipher, data, bs, j->count, m->read_contexts, &bad);
    if (kind) {
        data_free(up, raw, j->count * bs);
        log_limited(&up->ratelimit, LOG_ERROR,
                    "block_dev.%s: downstairs %s returned block %" PRIu64 " with %s; reading "
                    "it from another",
                    up->name, target_text(up, c->index), j->start + bad,
                    crucible_error_name((uint32_t)kind));
        read_failed(up, c, j);
        return;
    }
    if (j->internal && up->state == UP_RECONCILING) {
        /* Reconciliation writes the blocks on as they are stored. */
        if (repair_write(up, j, raw, m->read_contexts) < 0) {
            up_fail(up, "targets", "out of memory during reconciliation");
            return;
        }
    } else if (j->internal) {
        lr_write(up, j, raw, m->read_contexts);
    } else if (j->req) {
        blk_iov_copy(j->req, j->req_skip, data, j->count * bs, true);
    }
    job_set_state(up, c, j, JS_DONE);
}

static void io_reply(struct crucible_upstairs *up, struct client *c, const struct crucible_msg *m)
{
    if (!same_uuid(&m->upstairs_id, &up->upstairs_id) ||
        !same_uuid(&m->session_id, &up->session_id)) {
        log_limited(&up->ratelimit, LOG_WARNING,
                    "block_dev.%s: downstairs %s answered for another session; ignored", up->name,
                    target_text(up, c->index));
        return;
    }
    struct job *j = find_job(up, m->job_id);
    if (!j || j->state[c->index] != JS_SENT) {
        client_drop(c, "protocol error: an answer to a job it was not sent");
        return;
    }
    if (m->type == CM_ERROR_REPORT) {
        /* The downstairs retries the job itself; its answer follows. */
        log_limited(&up->ratelimit, LOG_WARNING,
                    "block_dev.%s: downstairs %s reports job %" PRIu64 " failing (%s); it retries",
                    up->name, target_text(up, c->index), m->job_id,
                    crucible_error_name(m->error.kind));
        return;
    }
    bool type_ok = (j->kind == JOB_READ && m->type == CM_READ_RESPONSE) ||
                   (j->kind == JOB_WRITE && m->type == CM_WRITE_ACK) ||
                   (j->kind == JOB_FLUSH && m->type == CM_FLUSH_ACK);
    if (!type_ok) {
        client_drop(c, "protocol error: an answer of the wrong kind");
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
        job_set_state(up, c, j, JS_ERROR);
        client_fault(c, why);
        return;
    }
    if (j->kind == JOB_FLUSH) {
        c->has_last_flush = true;
        c->last_flush = j->id;
    }
    job_set_state(up, c, j, JS_DONE);
}

static void client_message(struct crucible_upstairs *up, struct client *c,
                           const struct crucible_msg *m)
{
    switch (m->type) {
    case CM_IMOK:
        return;
    case CM_YOU_ARE_NO_LONGER_ACTIVE:
        up_fail(up, "generation",
                "downstairs %s: a newer upstairs (generation %" PRIu64 ") took the region over",
                target_text(up, c->index), m->generation);
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
    client_drop(c, why);
}

/* Reads what the socket holds and handles every whole frame. */
static void client_receive(struct crucible_upstairs *up, struct client *c)
{
    for (;;) {
        if (c->rx_cap - c->rx_len < 65536) {
            size_t cap = c->rx_cap ? c->rx_cap * 2 : 262144;
            uint8_t *b = realloc(c->rx, cap);
            if (!b) {
                client_drop(c, "out of memory");
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
            client_drop(c, n < 0 ? io_error(c, errno) : "the downstairs closed the connection");
            return;
        }
        c->rx_len += (size_t)n;
        c->last_rx_ns = now_ns();
        size_t off = 0;
        while (c->rx_len - off >= 4) {
            uint32_t flen = crucible_frame_length(c->rx + off);
            uint64_t limit = RX_FRAME_MIN_CAP + (uint64_t)up->cfg.extent_count * 17 + 64;
            if (!flen || flen > limit) {
                client_drop(c, "protocol error: a frame of a length out of range");
                return;
            }
            if (c->rx_len - off < flen) {
                if (flen > c->rx_cap) {
                    uint8_t *b = realloc(c->rx, flen);
                    if (!b) {
                        client_drop(c, "out of memory");
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
                client_drop(c, msg);
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

/* ---- reconciliation ---- */

/* Crucible's choice of the extent's source: the highest (generation,
 * flush number, dirty), the lowest client on a tie; -1 when all three
 * agree and none is dirty. */
static int repair_source(const struct crucible_upstairs *up, uint32_t e)
{
    const struct client *cl = up->clients;
    bool needed = false;
    for (int i = 0; i < NCLIENTS; i++)
        needed = needed || cl[i].dirty[e] || cl[i].gens[e] != cl[0].gens[e] ||
                 cl[i].flushes[e] != cl[0].flushes[e];
    if (!needed)
        return -1;
    int best = 0;
    for (int i = 1; i < NCLIENTS; i++) {
        bool higher = cl[i].gens[e] != cl[best].gens[e] ? cl[i].gens[e] > cl[best].gens[e]
                      : cl[i].flushes[e] != cl[best].flushes[e]
                          ? cl[i].flushes[e] > cl[best].flushes[e]
                          : cl[i].dirty[e] && !cl[best].dirty[e];
        if (higher)
            best = i;
    }
    return best;
}

static void repair_step(struct crucible_upstairs *up);

static void start_reconciliation(struct crucible_upstairs *up)
{
    set_state(up, UP_RECONCILING);
    for (int i = 0; i < NCLIENTS; i++)
        up->clients[i].state = CL_ACTIVE;
    up->repair_extent = 0;
    up->repair_block = 0;
    up->repair_source = -1;
    up->repaired_extents = 0;
    repair_step(up);
}

/* A job of kind whose waiter is answered once quorum downstairs did it. */
static struct job *new_job(enum job_kind kind, unsigned quorum)
{
    struct job *j = calloc(1, sizeof(struct job));
    if (j) {
        j->kind = kind;
        j->quorum = quorum;
    }
    return j;
}

/* Queues the next piece of reconciliation: a read of the next piece of
 * an extent that needs it from its source, the final flush, or the end. */
static void repair_step(struct crucible_upstairs *up)
{
    if (up->repair_busy || up->state != UP_RECONCILING)
        return;
    uint64_t per_extent = up->cfg.blocks_per_extent;
    while (up->repair_extent < up->cfg.extent_count) {
        if (up->repair_block == 0) {
            up->repair_source = repair_source(up, up->repair_extent);
            if (up->repair_source < 0) {
                up->repair_extent++;
                continue;
            }
            if (up->repaired_extents++ == 0)
                log_info("block_dev.%s: the downstairs disagree on some extents; copying each "
                         "from the one crucible takes as the source",
                         up->name);
        }
        uint64_t max = JOB_MAX_BYTES / up->block_size;
        uint64_t left = per_extent - up->repair_block;
        struct job *j = new_job(JOB_READ, 1);
        if (!j) {
            up_fail(up, "targets", "out of memory during reconciliation");
            return;
        }
        j->internal = true;
        j->start = (uint64_t)up->repair_extent * per_extent + up->repair_block;
        j->count = left < max ? left : max;
        for (int i = 0; i < NCLIENTS; i++)
            if (i != up->repair_source) {
                j->state[i] = JS_SKIPPED;
                j->failed++;
            }
        up->repair_block += j->count;
        if (up->repair_block >= per_extent) {
            up->repair_block = 0;
            up->repair_extent++;
        }
        up->repair_busy = true;
        if (enqueue(up, j) < 0) {
            free_job(up, j);
            up_fail(up, "targets", "out of memory during reconciliation");
        }
        return;
    }
    if (!up->repair_flushing && up->repaired_extents) {
        struct job *f = new_job(JOB_FLUSH, NCLIENTS);
        if (!f) {
            up_fail(up, "targets", "out of memory during reconciliation");
            return;
        }
        f->internal = true;
        f->flush_number = up->next_flush++;
        up->repair_flushing = up->repair_busy = true;
        if (enqueue(up, f) < 0) {
            free_job(up, f);
            up_fail(up, "targets", "out of memory during reconciliation");
        }
        return;
    }
    up_set_active(up);
}

/* The contexts of blocks w carries as a downstairs stored them (a read's
 * contexts rc): encrypted ones keep their nonce and tag, a never-written
 * block becomes a written block of zeroes. */
static int stored_contexts(struct crucible_upstairs *up, struct job *w,
                           const struct crucible_read_context *rc)
{
    uint32_t bs = up->block_size;
    for (uint64_t i = 0; i < w->count; i++) {
        struct crucible_block_context *bc = &w->ctx[i];
        uint8_t *blk = w->data + i * bs;
        if (rc[i].kind == CRC_ENCRYPTED) {
            bc->encrypted = true;
            memcpy(bc->nonce, rc[i].nonce, sizeof(bc->nonce));
            memcpy(bc->tag, rc[i].tag, sizeof(bc->tag));
            bc->hash = crucible_hash_encrypted(bc->nonce, bc->tag, blk, bs);
        } else if (rc[i].kind == CRC_UNENCRYPTED) {
            bc->hash = rc[i].hash;
        } else if (crucible_seal_blocks(up->cipher, blk, bs, 1, bc) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The blocks a reconciliation read got, as they are stored (encrypted
 * ones stay sealed), to be written to all three: a never-written block
 * becomes a written block of zeroes. */
static int repair_write(struct crucible_upstairs *up, struct job *r, uint8_t *raw,
                        const struct crucible_read_context *rc)
{
    struct job *w = new_job(JOB_WRITE, NCLIENTS);
    if (!w || !(w->ctx = calloc(r->count, sizeof(*w->ctx)))) {
        data_free(up, raw, r->count * up->block_size);
        if (w)
            free_job(up, w);
        return -1;
    }
    w->internal = true;
    w->start = r->start;
    w->count = r->count;
    w->data = raw;
    if (stored_contexts(up, w, rc) < 0) {
        free_job(up, w);
        return -1;
    }
    up->repair_busy = true;
    if (enqueue(up, w) < 0) {
        free_job(up, w);
        return -1;
    }
    return 0;
}

static void repair_job_done(struct crucible_upstairs *up, struct job *j, bool ok)
{
    if (up->state == UP_ACTIVE) {
        lr_job_done(up, j, ok);
        return;
    }
    if (up->state != UP_RECONCILING)
        return;
    if (j->kind == JOB_READ && ok)
        return; /* its blocks are being written on (repair_write) */
    up->repair_busy = false;
    if (!ok) {
        up_fail(up, "targets", "reconciliation failed: job %" PRIu64 " (%s) did not complete",
                j->id,
                j->kind == JOB_READ    ? "read"
                : j->kind == JOB_WRITE ? "write"
                                       : "flush");
        return;
    }
    if (j->kind == JOB_FLUSH) {
        up->repair_flushing = false;
        up_set_active(up);
        return;
    }
    repair_step(up);
}

/* ---- live repair ---- */

/* Live repair brings a faulted downstairs up to date while I/O goes on,
 * with ordinary reads and writes (any crucible downstairs takes them):
 * extent by extent, in pieces, the blocks are read from an active
 * downstairs (the source) and written as stored to the one under repair.
 * Guest jobs reach it as lr_route says: those for copied extents at once,
 * those touching the extent being copied after its copy (held, in
 * order), those for later extents not at all (their copy includes
 * them). After the last extent it is active again, and a flush follows. */

static struct client *lr_repaired(struct crucible_upstairs *up)
{
    return up->lr_client >= 0 ? &up->clients[up->lr_client] : NULL;
}

static void lr_step(struct crucible_upstairs *up);
static uint64_t send_flush(struct crucible_upstairs *up, bool answered);

static void lr_start(struct crucible_upstairs *up, struct client *c)
{
    if (up->read_only) {
        /* Nothing to copy: a read-only disk wrote nothing it missed. */
        c->state = CL_ACTIVE;
        c->mode = MODE_NEW;
        c->active_since_ns = now_ns();
        return;
    }
    int source = -1;
    for (int i = 0; i < NCLIENTS; i++)
        if (up->clients[i].state == CL_ACTIVE)
            source = i;
    if (up->lr_client >= 0 || source < 0) {
        client_drop(c, up->lr_client >= 0 ? "another downstairs is being repaired; later"
                                          : "no active downstairs to repair it from");
        return;
    }
    c->state = CL_LIVE_REPAIR;
    c->attempts = 0;
    up->lr_client = c->index;
    up->lr_source = source;
    up->lr_extent = 0;
    up->lr_block = 0;
    up->lr_busy = up->lr_holding = false;
    log_info("block_dev.%s: repairing downstairs %s from %s while I/O goes on", up->name,
             target_text(up, c->index), target_text(up, source));
    lr_step(up);
}

/* Sends what was held for the repaired downstairs once an extent is
 * copied, as lr_route now says. */
static void lr_release(struct crucible_upstairs *up, struct client *c)
{
    up->lr_holding = false;
    for (struct job *j = up->jobs_head; j; j = j->next) {
        if (j->state[c->index] != JS_HELD)
            continue;
        enum route r = lr_route(up, j);
        if (r == ROUTE_SEND) {
            c->held_jobs--;
            c->held_bytes -= job_bytes(up, j);
            send_job(up, c, j);
        } else if (r == ROUTE_SKIP) {
            job_set_state(up, c, j, JS_SKIPPED);
        }
    }
}

/* Reads the next piece from the source, or ends the repair. */
static void lr_step(struct crucible_upstairs *up)
{
    struct client *c = lr_repaired(up);
    if (!c || up->lr_busy)
        return;
    if (up->lr_extent >= up->cfg.extent_count) {
        lr_release(up, c);
        up->lr_client = -1;
        c->state = CL_ACTIVE;
        c->mode = MODE_NEW;
        c->active_since_ns = now_ns();
        log_info("block_dev.%s: downstairs %s is repaired and active again", up->name,
                 target_text(up, c->index));
        send_flush(up, true);
        return;
    }
    if (up->clients[up->lr_source].state != CL_ACTIVE) {
        client_fault(c, "its repair source is gone; it starts over");
        return;
    }
    uint64_t per_extent = up->cfg.blocks_per_extent;
    uint64_t max = JOB_MAX_BYTES / up->block_size, left = per_extent - up->lr_block;
    struct job *r = new_job(JOB_READ, 1);
    if (!r) {
        client_fault(c, "out of memory for its repair");
        return;
    }
    r->internal = true;
    r->start = (uint64_t)up->lr_extent * per_extent + up->lr_block;
    r->count = left < max ? left : max;
    for (int i = 0; i < NCLIENTS; i++)
        if (i != up->lr_source) {
            r->state[i] = JS_SKIPPED;
            r->failed++;
        }
    up->lr_busy = true;
    if (enqueue(up, r) < 0) {
        free_job(up, r);
        up->lr_busy = false;
        client_fault(c, "out of memory for its repair");
    }
}

/* The source's blocks of piece r, as stored: written to the repaired
 * downstairs ahead of what is held for it; the extent done, the held
 * jobs follow. Takes raw. */
static void lr_write(struct crucible_upstairs *up, struct job *r, uint8_t *raw,
                     const struct crucible_read_context *rc)
{
    struct client *c = lr_repaired(up);
    struct job *w = c ? new_job(JOB_WRITE, 1) : NULL;
    if (!w || !(w->ctx = calloc(r->count, sizeof(*w->ctx)))) {
        data_free(up, raw, r->count * up->block_size);
        if (w)
            free_job(up, w);
        if (c)
            client_fault(c, "out of memory for its repair");
        return;
    }
    w->internal = w->repair_direct = w->answered = true;
    w->start = r->start;
    w->count = r->count;
    w->data = raw;
    if (stored_contexts(up, w, rc) < 0) {
        free_job(up, w);
        client_fault(c, "its repair could not seal a block");
        return;
    }
    for (int i = 0; i < NCLIENTS; i++)
        if (i != c->index) {
            w->state[i] = JS_SKIPPED;
            w->failed++;
        }
    if (enqueue(up, w) < 0) {
        free_job(up, w);
        client_fault(c, "out of memory for its repair");
        return;
    }
    up->lr_block += r->count;
    if (up->lr_block >= up->cfg.blocks_per_extent) {
        up->lr_block = 0;
        up->lr_extent++;
        lr_release(up, c);
    }
}

static void lr_job_done(struct crucible_upstairs *up, struct job *j, bool ok)
{
    if (j->kind != JOB_READ || up->lr_client < 0)
        return; /* a repair write that fails faults its downstairs (io_reply) */
    up->lr_busy = false;
    if (!ok) {
        client_fault(lr_repaired(up), "its repair source could not be read");
        return;
    }
    lr_step(up);
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
        struct job *j = new_job(JOB_FLUSH, 2);
        if (!j)
            return -ENOMEM;
        j->flush_number = up->next_flush++;
        j->req = req;
        req->backend_private[CRU_PRIV_PARTS]++;
        up->writes_since_flush = false;
        up->flush_in_flight = true;
        if (enqueue(up, j) < 0) {
            free_job(up, j);
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
        struct job *j = req->op == BLOCK_OP_READ ? new_job(JOB_READ, 1) : new_job(JOB_WRITE, 2);
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
            } else if ((j->answered = true, !(j->data = data_alloc(up, n))) ||
                       !(j->ctx = calloc(j->count, sizeof(*j->ctx)))) {
                st = -ENOMEM;
            } else {
                blk_iov_copy(req, done, j->data, n, false);
                if (crucible_seal_blocks(up->cipher, j->data, bs, j->count, j->ctx) < 0)
                    st = -EIO;
            }
            if (st == 0 && enqueue(up, j) < 0)
                st = -ENOMEM;
        }
        if (st) {
            if (j && j->kind == JOB_READ)
                req->backend_private[CRU_PRIV_PARTS]--;
            if (j)
                free_job(up, j);
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
static uint64_t send_flush(struct crucible_upstairs *up, bool answered)
{
    struct job *j = new_job(JOB_FLUSH, 2);
    if (!j)
        return 0;
    j->flush_number = up->next_flush++;
    j->answered = answered;
    up->writes_since_flush = false;
    if (enqueue(up, j) < 0) {
        free_job(up, j);
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
            client_fault(c, "it was away too long for its jobs to be replayed");
        else if (now_ns() - c->offline_since_ns > OFFLINE_MAX_NS)
            /* A flush that needs it would wait for it without end. */
            client_fault(c, "it has been away for 60 s");
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
                read_elsewhere(up, j);
    }
}

static void run_round(struct crucible_upstairs *up, bool stop)
{
    int64_t now = now_ns();
    if (up->state == UP_ACTIVE)
        hedge_reads(up, now);
    /* Connections: start, time out, ping. */
    for (int i = 0; i < NCLIENTS && !stop; i++) {
        struct client *c = &up->clients[i];
        if (up->state == UP_FAILED)
            break;
        if (c->state == CL_IDLE && now >= c->next_attempt_ns)
            client_connect(c, now);
        else if ((c->state == CL_CONNECTING || c->state == CL_TLS) &&
                 now - c->connect_started_ns > CONNECT_TIMEOUT_NS)
            client_drop(c, c->state == CL_TLS ? "no TLS handshake within 10 s"
                                              : "no connection within 10 s");
        else if (c->state >= CL_WAIT_YES && c->state <= CL_ACTIVE) {
            if (now - c->last_rx_ns > INACTIVITY_NS)
                client_drop(c, "silent for 45 s");
            else if (c->state == CL_ACTIVE && c->sent_jobs && now - c->last_rx_ns > STALL_NS)
                client_drop(c, "no answer for 5 s with jobs outstanding");

            else if (now - c->last_ping_ns >= PING_NS) {
                c->last_ping_ns = now;
                client_send(c, &(struct crucible_msg){.type = CM_RUOK});
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
            send_flush(up, true);
            up->next_autoflush_ns = now + (int64_t)(up->cfg.flush_timeout * 1e9);
        } else if (!up->writes_since_flush) {
            up->next_autoflush_ns = now + (int64_t)(up->cfg.flush_timeout * 1e9);
        }
        check_held(up);
    }
    retire(up);
    for (int i = 0; i < NCLIENTS; i++)
        client_flush_out(&up->clients[i]);
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
            stop_deadline = now_ns() + FINAL_FLUSH_NS;
            if (up->state == UP_ACTIVE && up->jobs_tail && up->jobs_tail->kind != JOB_FLUSH)
                final_flush = send_flush(up, false);
        }
        if (up->state == UP_FAILED) {
            for (struct block_request *req; (req = blk_queue_pop(&up->waiting));)
                blk_finish(&up->tracker, req, -EIO);
        }
        run_round(up, stop);
        if (stop) {
            /* Every downstairs that can take it: a deactivation. */
            struct job *f = final_flush ? find_job(up, final_flush) : NULL;
            bool finished = true;
            for (int i = 0; i < NCLIENTS && f; i++)
                finished = finished && f->state[i] != JS_SENT; /* held: it is away */
            if (up->state != UP_ACTIVE || finished)
                break;
            if (now_ns() >= stop_deadline) {
                log_warn("block_dev.%s: stopped before %s", up->name,
                         f && f->done >= 2 ? "every downstairs acknowledged the final flush"
                                           : "two downstairs acknowledged the final flush");
                break;
            }
        }

        struct pollfd pfd[1 + NCLIENTS];
        pfd[0] = (struct pollfd){.fd = up->wake_fd, .events = POLLIN};
        int64_t now = now_ns(), next = now + PING_NS;
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
                client_connected(c);
            else if (c->state == CL_TLS)
                client_tls_step(c);
            else {
                /* TLS may need the socket writable to go on reading. */
                if (pfd[1 + i].revents & (POLLIN | POLLHUP | POLLERR) ||
                    (c->tls && (pfd[1 + i].revents & POLLOUT)))
                    client_receive(up, c);
                if (c->fd >= 0 && (pfd[1 + i].revents & POLLOUT))
                    client_flush_out(c);
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
    blk_tracker_begin(&up->tracker);
    pthread_mutex_lock(&up->lock);
    bool was_empty = up->incoming.head == NULL;
    blk_queue_push(&up->incoming, req);
    pthread_mutex_unlock(&up->lock);
    if (was_empty)
        wake(up);
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
        client_reset_io(c);
        crucible_buf_free(&c->out);
        free(c->rx);
        free(c->gens);
        free(c->flushes);
        free(c->dirty);
    }
    while (up->jobs_head) {
        struct job *j = up->jobs_head;
        up->jobs_head = j->next;
        free_job(up, j);
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
    wake(up);
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
            u->b[i] = (uint8_t)(now_ns() >> (i % 8 * 8)) ^ (uint8_t)rand();
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
                                  target_text(up, i), client_state_name(up->clients[i].state));
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
