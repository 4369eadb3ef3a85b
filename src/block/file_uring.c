/* The io_uring engine of the file back end.
 *
 * `workers` rings, each owned by one thread that alone submits to and reaps
 * from it (so the ring can be SINGLE_ISSUER/DEFER_TASKRUN, io_uring's task
 * work never lands on a vCPU thread, and a submitter thread exiting cannot
 * cancel I/O). Device threads hand requests to a ring's queue under a mutex
 * and write the ring's eventfd only when its owner sleeps; the owner keeps
 * a read of that eventfd in flight. A submitting thread sticks to one ring,
 * so a busy device queue's requests batch into few io_uring_enter calls.
 *
 * Rarely taken paths run synchronously on the owner thread: continuing a
 * short transfer (which also detects a file that shrank), more iovecs than
 * a readv takes, WRITE_ZEROES where fallocate cannot zero a range, the
 * partial blocks an unaligned O_DIRECT write reads first, an O_DIRECT
 * request needing a bounce buffer larger than FILE_BOUNCE_MAX. A smaller
 * one is submitted on its bounce buffer (one iovec, kept with the request
 * until it completes) and copied out on completion. */
#include "block/file_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/thread.h"

#define RING_SQ_ENTRIES 128
#define RING_CQ_ENTRIES 512
/* Requests in flight per ring: the CQ can never overflow (one slot is the
 * eventfd read). */
#define RING_MAX_INFLIGHT (RING_CQ_ENTRIES - 2)
#define EFD_TAG 1ull /* user_data of the eventfd read; requests are pointers */
#define REAP_BATCH 64
/* A submitting thread leaves its ring when this much is pending there. */
#define RING_SPILL_BYTES (1024 * 1024)

struct uring_ring {
    struct file_backend *fb;
    unsigned index;
    struct io_uring ring;
    int efd;
    uint64_t efd_value;
    pthread_t thread;
    sem_t started;
    int start_rc;

    pthread_mutex_t lock; /* protects queue, sleeping, stop */
    struct blk_queue queue;
    bool sleeping; /* the owner waits in io_uring_enter: write efd to wake it */
    bool stop;

    unsigned inflight;          /* owner only: SQEs not yet reaped (eventfd read excluded) */
    atomic_ulong pending_bytes; /* submitted, not completed: bytes + 4 KiB per request */
};

struct file_uring {
    unsigned nrings;
    struct uring_ring rings[];
};

static uint64_t req_weight(const struct block_request *req)
{
    uint64_t len = req->op == BLOCK_OP_READ || req->op == BLOCK_OP_WRITE ? req->len : 0;
    return len + 4096;
}

/* Completes req on ring r's owner thread. */
static void ring_finish(struct uring_ring *r, struct block_request *req, int status)
{
    atomic_fetch_sub_explicit(&r->pending_bytes, req_weight(req), memory_order_relaxed);
    blk_finish(&r->fb->tracker, req, status);
}

static struct io_uring_sqe *get_sqe(struct uring_ring *r)
{
    struct io_uring_sqe *sqe;
    while (!(sqe = io_uring_get_sqe(&r->ring))) {
        /* The SQ is full: hand it to the kernel. */
        if (io_uring_submit(&r->ring) < 0)
            nanosleep(&(struct timespec){0, 100000}, NULL);
    }
    return sqe;
}

static void arm_eventfd(struct uring_ring *r)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_read(sqe, r->efd, &r->efd_value, sizeof(r->efd_value), 0);
    io_uring_sqe_set_data64(sqe, EFD_TAG);
}

/* Either prepares an SQE for req or completes it here and now. */
static void dispatch(struct uring_ring *r, struct block_request *req)
{
    struct file_backend *fb = r->fb;
    if (blk_kind(req) == BLK_KIND_STATUS) {
        ring_finish(r, req, blk_preset_status(req));
        return;
    }
    struct io_uring_sqe *sqe;
    switch (req->op) {
    case BLOCK_OP_READ:
    case BLOCK_OP_WRITE:
        if (req->len == 0 || req->iovcnt > BLK_IOV_BATCH)
            break;
        req->backend_private[FILE_PRIV_BOUNCE] = 0;
        if (file_needs_bounce(fb, req)) {
            int status;
            uint64_t start, end;
            file_bounce_range(fb, req, &start, &end);
            if (end - start > FILE_BOUNCE_MAX)
                break; /* piece by piece, here */
            struct file_bounce *b = file_bounce_prepare(fb, req, start, end, &status);
            if (!b) {
                ring_finish(r, req, status);
                return;
            }
            req->backend_private[FILE_PRIV_BOUNCE] = (uint64_t)(uintptr_t)b;
            sqe = get_sqe(r);
            if (req->op == BLOCK_OP_READ)
                io_uring_prep_readv(sqe, fb->fd, &b->iov, 1, b->start);
            else
                io_uring_prep_writev(sqe, fb->fd, &b->iov, 1, b->start);
            goto queued;
        }
        sqe = get_sqe(r);
        if (req->op == BLOCK_OP_READ)
            io_uring_prep_readv(sqe, fb->fd, req->iov, req->iovcnt, req->offset);
        else
            io_uring_prep_writev(sqe, fb->fd, req->iov, req->iovcnt, req->offset);
        goto queued;
    case BLOCK_OP_FLUSH:
        sqe = get_sqe(r);
        io_uring_prep_fsync(sqe, fb->fd, IORING_FSYNC_DATASYNC);
        goto queued;
    case BLOCK_OP_DISCARD:
        if (req->len == 0 || atomic_load(&fb->no_punch_hole))
            break;
        sqe = get_sqe(r);
        io_uring_prep_fallocate(sqe, fb->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                (off_t)req->offset, (off_t)req->len);
        goto queued;
    case BLOCK_OP_WRITE_ZEROES:
        if (req->len == 0 || atomic_load(&fb->no_zero_range))
            break;
        sqe = get_sqe(r);
        io_uring_prep_fallocate(sqe, fb->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                                (off_t)req->offset, (off_t)req->len);
        goto queued;
    }
    ring_finish(r, req, file_exec(fb, req));
    return;
queued:
    io_uring_sqe_set_data(sqe, req);
    r->inflight++;
}

static void handle_cqe(struct uring_ring *r, struct block_request *req, int res)
{
    struct file_backend *fb = r->fb;
    int status = res < 0 ? res : 0;
    switch (req->op) {
    case BLOCK_OP_READ:
    case BLOCK_OP_WRITE: {
        struct file_bounce *b =
            (struct file_bounce *)(uintptr_t)req->backend_private[FILE_PRIV_BOUNCE];
        if (b) {
            if (res >= 0 && (uint64_t)res == b->len) {
                if (req->op == BLOCK_OP_READ)
                    file_bounce_copy_out(req, b);
            } else if (res < 0 && res != -EAGAIN && res != -EINTR) {
                file_log_error(fb, req, -res);
            } else {
                status = file_exec(fb, req); /* short, or to retry: again, synchronously */
            }
            file_bounce_free(b);
            break;
        }
        if (res == -EAGAIN || res == -EINTR)
            status = file_rw_from(fb, req, 0);
        else if (res < 0)
            file_log_error(fb, req, -res);
        else if ((uint64_t)res < req->len)
            status = file_rw_from(fb, req, (uint64_t)res); /* short: go on, or find out why */
        break;
    }
    case BLOCK_OP_FLUSH:
        if (res < 0)
            file_log_error(fb, req, -res);
        break;
    case BLOCK_OP_DISCARD:
        status = file_discard_result(fb, req, res < 0 ? -res : 0);
        break;
    case BLOCK_OP_WRITE_ZEROES:
        if (res == -EOPNOTSUPP || res == -ENOSYS || res == -ENOTTY) {
            atomic_store(&fb->no_zero_range, true);
            status = file_write_zeroes(fb, req, true);
        } else if (res == -ENOSPC) {
            status = file_write_zeroes(fb, req, true); /* a hole needs no space */
        } else if (res < 0) {
            file_log_error(fb, req, -res);
        }
        break;
    }
    ring_finish(r, req, status);
}

static void reap(struct uring_ring *r)
{
    struct io_uring_cqe *cqes[REAP_BATCH];
    struct {
        uint64_t data;
        int res;
    } done[REAP_BATCH];
    for (;;) {
        unsigned n = io_uring_peek_batch_cqe(&r->ring, cqes, REAP_BATCH);
        if (n == 0)
            return;
        for (unsigned i = 0; i < n; i++) {
            done[i].data = io_uring_cqe_get_data64(cqes[i]);
            done[i].res = cqes[i]->res;
        }
        io_uring_cq_advance(&r->ring, n); /* free the CQ before running callbacks */
        for (unsigned i = 0; i < n; i++) {
            if (done[i].data == EFD_TAG) {
                if (done[i].res < 0 && done[i].res != -EINTR && done[i].res != -EAGAIN)
                    log_limited(&r->fb->ratelimit, LOG_ERROR,
                                "block_dev.%s: io_uring eventfd read failed: %s", r->fb->name,
                                strerror(-done[i].res));
                arm_eventfd(r);
                continue;
            }
            r->inflight--;
            handle_cqe(r, (struct block_request *)(uintptr_t)done[i].data, done[i].res);
        }
    }
}

/* What this engine submits; a ring accepts nothing else (seccomp does not
 * see SQEs, so a ring is restricted itself). */
static const uint8_t ring_opcodes[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC,
                                       IORING_OP_FALLOCATE, IORING_OP_READ};

/* io_uring_register directly: Debian's shared liburing 2.3 does not export
 * io_uring_register_restrictions or io_uring_enable_rings. */
static int ring_register(struct io_uring *ring, unsigned op, const void *arg, unsigned nr)
{
    long rc = syscall(__NR_io_uring_register, ring->ring_fd, op, arg, nr);
    return rc < 0 ? -errno : 0;
}

int file_uring_ring_setup(struct io_uring *ring)
{
    /* Newest flags first; each retry drops what an older kernel refuses.
     * Made disabled: restrictions can only be registered before it runs. */
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        0,
    };
    int rc = -EINVAL;
    for (unsigned i = 0; i < ARRAY_LEN(flag_sets); i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        p.flags = flag_sets[i] | IORING_SETUP_CQSIZE | IORING_SETUP_R_DISABLED;
        p.cq_entries = RING_CQ_ENTRIES;
        rc = io_uring_queue_init_params(RING_SQ_ENTRIES, ring, &p);
        if (rc != -EINVAL)
            break;
    }
    if (rc < 0)
        return rc;
    struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
    for (unsigned i = 0; probe && i < ARRAY_LEN(ring_opcodes); i++) {
        if (!io_uring_opcode_supported(probe, ring_opcodes[i]))
            rc = -EOPNOTSUPP;
    }
    if (!probe)
        rc = -EOPNOTSUPP;
    io_uring_free_probe(probe);
    /* Only our opcodes, no SQE flags, and no register operation once
     * enabled. */
    struct io_uring_restriction res[ARRAY_LEN(ring_opcodes)];
    memset(res, 0, sizeof(res));
    for (unsigned i = 0; i < ARRAY_LEN(ring_opcodes); i++) {
        res[i].opcode = IORING_RESTRICTION_SQE_OP;
        res[i].sqe_op = ring_opcodes[i];
    }
    if (rc >= 0)
        rc = ring_register(ring, IORING_REGISTER_RESTRICTIONS, res, ARRAY_LEN(res));
    if (rc >= 0)
        rc = ring_register(ring, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    if (rc < 0)
        io_uring_queue_exit(ring);
    return rc < 0 ? rc : 0;
}

static int ring_setup(struct uring_ring *r)
{
    return file_uring_ring_setup(&r->ring);
}

static void *ring_main(void *arg)
{
    struct uring_ring *r = arg;
    /* The ring is made here: SINGLE_ISSUER binds it to its creator. */
    r->start_rc = ring_setup(r);
    sem_post(&r->started);
    if (r->start_rc < 0)
        return NULL;
    arm_eventfd(r);
    for (;;) {
        struct blk_queue take = {0};
        pthread_mutex_lock(&r->lock);
        while (r->inflight + take.len < RING_MAX_INFLIGHT && r->queue.head)
            blk_queue_push(&take, blk_queue_pop(&r->queue));
        r->sleeping = take.len == 0 && !r->queue.head;
        bool exit = r->sleeping && r->stop && r->inflight == 0;
        pthread_mutex_unlock(&r->lock);
        if (exit)
            break;

        /* Nothing taken (idle, or at the in-flight limit): sleep until a
         * completion or the eventfd. */
        bool wait = take.len == 0;
        struct block_request *req;
        while ((req = blk_queue_pop(&take)))
            dispatch(r, req);
        int rc =
            wait ? io_uring_submit_and_wait(&r->ring, 1) : io_uring_submit_and_get_events(&r->ring);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME) {
            log_limited(&r->fb->ratelimit, LOG_ERROR, "block_dev.%s: io_uring_enter failed: %s",
                        r->fb->name, strerror(-rc));
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        }
        reap(r);
    }
    io_uring_queue_exit(&r->ring);
    return NULL;
}

/* The calling thread's ring. Each submitting thread sticks to one ring (its
 * requests batch into few io_uring_enter calls), spread round robin as
 * threads first submit; when that ring has much data pending (its owner is
 * busy copying), the thread moves to the least loaded ring, so one device
 * queue moving large requests still keeps several rings busy. */
static struct uring_ring *pick_ring(struct file_uring *u)
{
    static _Thread_local unsigned slot;
    static _Thread_local bool has_slot;
    static atomic_uint next_thread_slot;
    if (!has_slot) {
        slot = atomic_fetch_add(&next_thread_slot, 1);
        has_slot = true;
    }
    struct uring_ring *best = &u->rings[slot % u->nrings];
    uint64_t best_load = atomic_load_explicit(&best->pending_bytes, memory_order_relaxed);
    if (best_load < RING_SPILL_BYTES)
        return best;
    for (unsigned i = 1; i < u->nrings; i++) {
        unsigned idx = (slot + i) % u->nrings;
        uint64_t load = atomic_load_explicit(&u->rings[idx].pending_bytes, memory_order_relaxed);
        if (load < best_load) {
            best = &u->rings[idx];
            best_load = load;
            slot = idx;
            if (load < RING_SPILL_BYTES)
                break;
        }
    }
    return best;
}

void file_uring_submit(struct file_backend *fb, struct block_request *req)
{
    struct uring_ring *r = pick_ring(fb->uring);
    atomic_fetch_add_explicit(&r->pending_bytes, req_weight(req), memory_order_relaxed);
    pthread_mutex_lock(&r->lock);
    blk_queue_push(&r->queue, req);
    bool wake = r->sleeping;
    r->sleeping = false;
    pthread_mutex_unlock(&r->lock);
    if (wake) {
        uint64_t one = 1;
        ssize_t n;
        do
            n = write(r->efd, &one, sizeof(one));
        while (n < 0 && errno == EINTR);
    }
}

static void stop_rings(struct file_uring *u, unsigned nstarted)
{
    for (unsigned i = 0; i < nstarted; i++) {
        struct uring_ring *r = &u->rings[i];
        pthread_mutex_lock(&r->lock);
        r->stop = true;
        pthread_mutex_unlock(&r->lock);
        uint64_t one = 1;
        if (write(r->efd, &one, sizeof(one)) < 0)
            log_error("block_dev.%s: cannot wake io_uring thread: %s", r->fb->name,
                      strerror(errno));
        pthread_join(r->thread, NULL);
    }
    for (unsigned i = 0; i < u->nrings; i++) {
        struct uring_ring *r = &u->rings[i];
        if (r->efd >= 0)
            close(r->efd);
        pthread_mutex_destroy(&r->lock);
        sem_destroy(&r->started);
    }
    free(u);
}

int file_uring_start(struct file_backend *fb)
{
    unsigned n = fb->be.info.workers;
    struct file_uring *u = calloc(1, sizeof(*u) + n * sizeof(u->rings[0]));
    if (!u)
        return -ENOMEM;
    u->nrings = n;
    for (unsigned i = 0; i < n; i++) {
        struct uring_ring *r = &u->rings[i];
        r->fb = fb;
        r->index = i;
        atomic_init(&r->pending_bytes, 0);
        pthread_mutex_init(&r->lock, NULL);
        sem_init(&r->started, 0, 0);
        r->efd = eventfd(0, EFD_CLOEXEC);
    }
    int rc = 0;
    unsigned started = 0;
    for (unsigned i = 0; i < n && rc == 0; i++) {
        struct uring_ring *r = &u->rings[i];
        if (r->efd < 0) {
            rc = -errno;
            break;
        }
        char name[32];
        snprintf(name, sizeof(name), "blk-uring-%u", i);
        rc = thread_start(&r->thread, name, THREAD_BLOCK, 0, ring_main, r);
        if (rc < 0)
            break;
        while (sem_wait(&r->started) != 0)
            ;
        if (r->start_rc < 0) {
            rc = r->start_rc;
            pthread_join(r->thread, NULL);
            break;
        }
        started++;
    }
    if (rc < 0) {
        stop_rings(u, started);
        return rc;
    }
    fb->uring = u;
    return 0;
}

void file_uring_stop(struct file_backend *fb)
{
    stop_rings(fb->uring, fb->uring->nrings);
    fb->uring = NULL;
}
