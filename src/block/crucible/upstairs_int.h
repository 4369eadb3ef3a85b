/* The crucible upstairs' parts (upstairs.c: the back end, its thread,
 * jobs and guest requests; client.c: one downstairs' connection,
 * negotiation and answers; repair.c: activation's generation check,
 * reconciliation and live repair), and what they share. Not for use
 * outside src/block/crucible/. */
#ifndef BLOCK_CRUCIBLE_UPSTAIRS_INT_H
#define BLOCK_CRUCIBLE_UPSTAIRS_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "block/block_internal.h"
#include "block/crucible/block_crypto.h"
#include "block/crucible/protocol.h"
#include "block/crucible/tls.h"
#include "common/log.h"
#include "config/config.h"

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

/* Where a job goes for the downstairs under live repair (cru_lr_route). */
enum route { ROUTE_SEND, ROUTE_HOLD, ROUTE_SKIP };

/* ---- upstairs.c ---- */

int64_t cru_now_ns(void);
const char *cru_target_text(const struct crucible_upstairs *up, int i);
void cru_up_fail(struct crucible_upstairs *up, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cru_set_state(struct crucible_upstairs *up, enum up_state st);
void cru_up_set_active(struct crucible_upstairs *up);
struct job *cru_find_job(struct crucible_upstairs *up, uint64_t id);
uint64_t cru_job_bytes(const struct crucible_upstairs *up, const struct job *j);
void cru_send_job(struct crucible_upstairs *up, struct client *c, struct job *j);
bool cru_read_elsewhere(struct crucible_upstairs *up, struct job *j);
enum route cru_lr_route(struct crucible_upstairs *up, const struct job *j);
int cru_enqueue(struct crucible_upstairs *up, struct job *j);
uint8_t *cru_data_alloc(struct crucible_upstairs *up, size_t len);
void cru_data_free(struct crucible_upstairs *up, uint8_t *data, size_t len);
void cru_free_job(struct crucible_upstairs *up, struct job *j);
void cru_job_set_state(struct crucible_upstairs *up, struct client *c, struct job *j,
                       enum job_state s);
struct job *cru_new_job(enum job_kind kind, unsigned quorum);
uint64_t cru_send_flush(struct crucible_upstairs *up, bool answered);

/* ---- client.c ---- */

void cru_client_send(struct client *c, const struct crucible_msg *m);
void cru_client_flush_out(struct client *c);
void cru_client_reset_io(struct client *c);
void cru_client_fault(struct client *c, const char *why);
void cru_schedule_reconnect(struct client *c, int64_t now);
void cru_client_drop(struct client *c, const char *why);
void cru_client_connect(struct client *c, int64_t now);
void cru_client_tls_step(struct client *c);
void cru_client_connected(struct client *c);
void cru_client_receive(struct crucible_upstairs *up, struct client *c);

/* ---- repair.c ---- */

void cru_all_in_quorum(struct crucible_upstairs *up);
int cru_repair_write(struct crucible_upstairs *up, struct job *r, uint8_t *raw,
                     const struct crucible_read_context *rc);
void cru_repair_job_done(struct crucible_upstairs *up, struct job *j, bool ok);
void cru_lr_start(struct crucible_upstairs *up, struct client *c);
void cru_lr_write(struct crucible_upstairs *up, struct job *r, uint8_t *raw,
                  const struct crucible_read_context *rc);
void cru_lr_job_done(struct crucible_upstairs *up, struct job *j, bool ok);

#endif
