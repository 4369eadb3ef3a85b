/* NVMe controller: PCI function, registers, doorbells, controller enable,
 * reset and shutdown, queue bookkeeping, completion posting, interrupts and
 * the I/O worker thread. Admin commands: nvme_admin.c; NVM commands and
 * PRPs: nvme_io.c. */
#include "common/bytes.h"
#include "common/regmap.h"
#include "common/sync.h"
#include "nvme/nvme_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static const char *name_of(const struct nvme_ctrl *c)
{
    return c->pci.dev.name ? c->pci.dev.name : "nvme";
}

/* ---- Interrupts ---- */

static bool intx_level(struct nvme_ctrl *c)
{
    return atomic_load(&c->intx_pending) != 0 && !(atomic_load(&c->intms) & 1) &&
           !msix_enabled(&c->msix);
}

void nvme_update_intx(struct nvme_ctrl *c)
{
    /* Computed and driven under the function's lock, so concurrent updates
     * (and the MSI-X enable in the config hook) cannot reorder. */
    pthread_mutex_lock(&c->pci.lock);
    pci_set_irq_locked(&c->pci, intx_level(c));
    pthread_mutex_unlock(&c->pci.lock);
}

static void cq_signal(struct nvme_ctrl *c, uint16_t iv)
{
    if (!msix_notify(&c->msix, iv))
        nvme_update_intx(c);
}

/* ---- Shadow doorbells ----
 * With Doorbell Buffer Config, the driver writes each new SQ tail and CQ
 * head into its shadow doorbell entry and rings the MMIO doorbell only when
 * the new value passes the entry's EventIdx (EventIdx in [old, new)). So
 * the device reads the shadow tail whenever it has caught up with the
 * tail it knew, and writes EventIdx only when it needs waking:
 * - SQ: EventIdx = tail when the SQ has run dry (the next command rings);
 *   while the device is still fetching, the driver rings nothing.
 * - CQ: EventIdx = head when a submission waits for a CQ slot, or the CQ
 *   interrupts through INTx (its level falls on the head doorbell);
 *   otherwise EventIdx = tail, which the driver's head never passes.
 * Each EventIdx store is followed by a full fence and a second look at the
 * shadow entry; the driver stores its entry, fences and then loads the
 * EventIdx, so either the device sees the new value or the driver sees the
 * request to ring: no wake-up is lost. Shadow values are checked as the MMIO
 * doorbell's are. The admin queue's entries are kept too, and the MMIO
 * admin doorbells are copied into them: Linux rings those by MMIO only. */

/* A shadow doorbell or EventIdx entry; NULL while bus mastering is off
 * (the buffers are DMA like the queues: nothing is read or written then). */
static uint32_t *shadow_slot(struct nvme_ctrl *c, uint64_t gpa, bool write)
{
    if (!pci_bus_master_enabled(&c->pci))
        return NULL;
    /* Checked by Doorbell Buffer Config; RAM does not move. */
    uint32_t *p = guest_mem_ptr(c->mem, gpa, sizeof(*p), write);
    if (!p)
        log_limited(&c->db_log, LOG_ERROR, "%s: shadow doorbell entry at 0x%llx is not guest RAM",
                    name_of(c), (unsigned long long)gpa);
    return p;
}

static bool shadow_load(struct nvme_ctrl *c, uint64_t gpa, uint32_t *value)
{
    uint32_t *p = shadow_slot(c, gpa, false);
    if (!p)
        return false;
    /* Acquire: the entries the driver wrote before its shadow tail. */
    *value = le32toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
    return true;
}

static void shadow_store(struct nvme_ctrl *c, uint64_t gpa, uint32_t value)
{
    uint32_t *p = shadow_slot(c, gpa, true);
    if (p)
        __atomic_store_n(p, htole32(value), __ATOMIC_RELEASE);
}

/* Publishes an EventIdx and orders it before the next look at the shadow
 * entry (the driver orders the other way round). */
static void shadow_request_doorbell(struct nvme_ctrl *c, const struct nvme_shadow *sh,
                                    uint32_t value)
{
    shadow_store(c, sh->ei, value);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static void shadow_attach(const struct nvme_ctrl *c, struct nvme_shadow *sh, unsigned qid,
                          bool is_cq)
{
    uint64_t off = (2ull * qid + (is_cq ? 1 : 0)) * NVME_DB_STRIDE;
    *sh = c->dbbuf ? (struct nvme_shadow){true, c->dbbuf_dbs + off, c->dbbuf_eis + off}
                   : (struct nvme_shadow){false, 0, 0};
}

/* A bad value in a shadow doorbell: ignored and reported as a bad MMIO
 * doorbell value is, the error event raised by the next ctrl->lock holder
 * (the callers may not take it). */
static void shadow_error(struct nvme_ctrl *c, unsigned qid, bool is_cq, uint32_t value,
                         const char *why)
{
    log_limited(&c->db_log, LOG_WARNING,
                "%s: shadow %s doorbell of queue %u (value %u) ignored: %s", name_of(c),
                is_cq ? "CQ head" : "SQ tail", qid, value, why);
    atomic_store(&c->shadow_db_error, true);
}

void nvme_raise_shadow_errors_locked(struct nvme_ctrl *c)
{
    if (atomic_exchange(&c->shadow_db_error, false) && atomic_load(&c->enabled))
        nvme_admin_event(c, NVME_AER_TYPE_ERROR, NVME_AER_INFO_INVALID_DB_VALUE, NVME_LOG_ERROR);
}

void nvme_raise_shadow_errors(struct nvme_ctrl *c)
{
    if (!atomic_load(&c->shadow_db_error))
        return;
    /* Never wait: the holder may be waiting for this thread. */
    if (pthread_mutex_trylock(&c->lock) != 0)
        return;
    nvme_raise_shadow_errors_locked(c);
    pthread_mutex_unlock(&c->lock);
}

bool nvme_sq_shadow_refresh(struct nvme_ctrl *c, struct nvme_sq *sq)
{
    uint32_t tail;
    if (!sq->shadow.on || !shadow_load(c, sq->shadow.db, &tail))
        return false;
    if (tail == sq->tail) {
        shadow_request_doorbell(c, &sq->shadow, sq->tail);
        if (!shadow_load(c, sq->shadow.db, &tail) || tail == sq->tail)
            return false;
    }
    if (tail >= sq->size) {
        shadow_error(c, sq->qid, false, tail, "beyond the queue size");
        /* The driver's next value rings, so a driver that recovers is
         * heard. */
        shadow_store(c, sq->shadow.ei, sq->tail);
        return false;
    }
    sq->tail = tail;
    return sq->head != sq->tail;
}

void nvme_dbbuf_clear_entries(struct nvme_ctrl *c, unsigned qid, bool is_cq)
{
    struct nvme_shadow sh;
    shadow_attach(c, &sh, qid, is_cq);
    if (sh.on) {
        shadow_store(c, sh.db, 0);
        shadow_store(c, sh.ei, 0);
    }
}

/* ---- Completion queues ---- */

static uint32_t cq_used(const struct nvme_cq *cq);

/* Whether the CQ needs the driver's head doorbell (the policy above).
 * cq->lock held. */
static bool cq_wants_head_doorbell(struct nvme_ctrl *c, const struct nvme_cq *cq)
{
    return cq->waiting_sqs || (cq->ien && !msix_enabled(&c->msix));
}

/* Why a new CQ head (doorbell or shadow) cannot be taken; NULL if it can. */
static const char *cq_head_refused(const struct nvme_cq *cq, uint32_t value)
{
    if (value >= cq->size)
        return "beyond the queue size";
    if ((value + cq->size - cq->head) % cq->size > cq_used(cq))
        return "past the last posted entry";
    return NULL;
}

/* The consequences of a new CQ head: the INTx bit when empty, the SQs that
 * waited for a slot (*waiting, cleared). cq->lock held. */
static void cq_head_moved_locked(struct nvme_ctrl *c, struct nvme_cq *cq, uint32_t value,
                                 uint32_t *waiting)
{
    cq->head = value;
    if (cq->head == cq->tail)
        atomic_fetch_and(&c->intx_pending, ~(1u << cq->qid));
    *waiting |= cq->waiting_sqs;
    cq->waiting_sqs = 0;
}

/* Takes the driver's CQ head from the shadow doorbell; with asking set and
 * the head unchanged, first asks for the head doorbell (EventIdx = head)
 * and looks once more. Returns true if the head moved. cq->lock held. */
static bool cq_shadow_head_locked(struct nvme_ctrl *c, struct nvme_cq *cq, bool asking,
                                  uint32_t *waiting)
{
    uint32_t head;
    if (!cq->shadow.on || !shadow_load(c, cq->shadow.db, &head))
        return false;
    if (head == cq->head) {
        if (!asking)
            return false;
        shadow_request_doorbell(c, &cq->shadow, cq->head);
        if (!shadow_load(c, cq->shadow.db, &head) || head == cq->head)
            return false;
    }
    const char *why = cq_head_refused(cq, head);
    if (why) {
        shadow_error(c, cq->qid, true, head, why);
        shadow_store(c, cq->shadow.ei, cq->head); /* as for a bad SQ tail */
        return false;
    }
    uint32_t ended = 0;
    cq_head_moved_locked(c, cq, head, &ended);
    /* The admin SQ's wait is left to the admin CQ doorbell: only admin
     * paths reserve its slots, and they carry on by themselves. */
    cq->waiting_sqs |= ended & 1u;
    *waiting |= ended & ~1u;
    return true;
}

/* After the device changed the CQ: EventIdx as the policy wants it. With
 * the head doorbell wanted, a head the driver moved meanwhile is taken
 * (returns true). cq->lock held. */
static bool cq_publish_eventidx_locked(struct nvme_ctrl *c, struct nvme_cq *cq, uint32_t *waiting)
{
    bool moved = false;
    while (cq->shadow.on) {
        if (!cq_wants_head_doorbell(c, cq)) {
            shadow_store(c, cq->shadow.ei, cq->tail);
            break;
        }
        if (!cq_shadow_head_locked(c, cq, true, waiting))
            break;
        moved = true;
    }
    return moved;
}

/* I/O SQs whose wait for a CQ slot ended outside the CQ doorbell. */
static void kick_waiting(struct nvme_ctrl *c, uint32_t waiting)
{
    for (unsigned sqid = 1; sqid < NVME_NUM_QUEUES; sqid++)
        if (waiting & (1u << sqid))
            nvme_kick(c, sqid);
}

void nvme_cq_init(struct nvme_ctrl *c, struct nvme_cq *cq, uint16_t qid, uint64_t base,
                  uint32_t size, bool ien, uint16_t iv)
{
    pthread_mutex_lock(&cq->lock);
    cq->active = true;
    cq->qid = qid;
    cq->base = base;
    cq->size = size;
    cq->head = cq->tail = 0;
    cq->phase = true;
    cq->reserved = 0;
    cq->waiting_sqs = 0;
    cq->ien = ien;
    cq->iv = iv;
    cq->sq_refs = 0;
    shadow_attach(c, &cq->shadow, qid, true);
    pthread_mutex_unlock(&cq->lock);
}

void nvme_cq_teardown(struct nvme_ctrl *c, struct nvme_cq *cq)
{
    pthread_mutex_lock(&cq->lock);
    cq->active = false;
    cq->size = 0;
    cq->base = 0;
    cq->head = cq->tail = 0;
    cq->reserved = 0;
    cq->waiting_sqs = 0;
    cq->sq_refs = 0;
    cq->shadow = (struct nvme_shadow){false, 0, 0};
    atomic_fetch_and(&c->intx_pending, ~(1u << cq->qid));
    pthread_mutex_unlock(&cq->lock);
}

static uint32_t cq_used(const struct nvme_cq *cq)
{
    return (cq->tail + cq->size - cq->head) % cq->size;
}

/* One slot always stays empty: a full queue has tail + 1 == head. */
static bool cq_has_room(const struct nvme_cq *cq)
{
    return cq_used(cq) + cq->reserved + 1 < cq->size;
}

bool nvme_cq_reserve(struct nvme_ctrl *c, struct nvme_cq *cq, uint16_t sqid)
{
    bool ok = false, moved = false;
    uint32_t waiting = 0;
    pthread_mutex_lock(&cq->lock);
    if (cq->active) {
        /* Full as far as the device knows: with shadow doorbells the driver
         * may have consumed entries without ringing. Each head move frees a
         * slot, so this ends with room, or with the head doorbell asked for
         * (EventIdx = head) before the wait is noted under the same lock. */
        bool room = cq_has_room(cq);
        while (!room && cq_shadow_head_locked(c, cq, true, &waiting)) {
            moved = true;
            room = cq_has_room(cq);
        }
        if (room) {
            cq->reserved++;
            ok = true;
        } else {
            cq->waiting_sqs |= 1u << sqid;
        }
    }
    pthread_mutex_unlock(&cq->lock);
    if (moved) {
        nvme_update_intx(c);
        kick_waiting(c, waiting & ~(1u << sqid));
    }
    return ok;
}

void nvme_cq_unreserve(struct nvme_cq *cq)
{
    pthread_mutex_lock(&cq->lock);
    if (cq->reserved)
        cq->reserved--;
    pthread_mutex_unlock(&cq->lock);
}

void nvme_cq_post(struct nvme_ctrl *c, struct nvme_cq *cq, uint16_t sqid, uint32_t sqhd,
                  uint16_t cid, uint16_t status, uint32_t dw0)
{
    pthread_mutex_lock(&cq->lock);
    if (cq->reserved)
        cq->reserved--;
    if (!cq->active) {
        pthread_mutex_unlock(&cq->lock);
        log_debug("%s: completion of SQ %u cid %u dropped: CQ %u is gone", name_of(c), sqid, cid,
                  cq->qid);
        return;
    }
    if (!pci_bus_master_enabled(&c->pci)) {
        pthread_mutex_unlock(&cq->lock);
        log_limited(&c->io_log, LOG_WARNING,
                    "%s: completion of SQ %u cid %u dropped: bus mastering is disabled", name_of(c),
                    sqid, cid);
        return;
    }
    uint64_t gpa = cq->base + (uint64_t)cq->tail * NVME_CQE_SIZE;
    uint8_t *p = guest_mem_ptr(c->mem, gpa, NVME_CQE_SIZE, true);
    if (!p) {
        /* The queue was checked at creation; RAM does not move. */
        pthread_mutex_unlock(&cq->lock);
        log_limited(&c->io_log, LOG_ERROR, "%s: CQ %u entry at 0x%llx is not guest RAM", name_of(c),
                    cq->qid, (unsigned long long)gpa);
        return;
    }
    uint32_t dw[3] = {dw0, 0, (sqhd & 0xffff) | ((uint32_t)sqid << 16)};
    memcpy(p, dw, sizeof(dw));
    /* The phase tag publishes the entry: everything else must be visible
     * to the guest first. */
    uint32_t dw3 = cid | ((uint32_t)((status << 1) | (cq->phase ? 1 : 0)) << 16);
    __atomic_store_n((uint32_t *)(void *)(p + 12), dw3, __ATOMIC_RELEASE);
    if (++cq->tail == cq->size) {
        cq->tail = 0;
        cq->phase = !cq->phase;
    }
    bool ien = cq->ien;
    uint16_t iv = cq->iv;
    if (ien)
        atomic_fetch_or(&c->intx_pending, 1u << cq->qid);
    uint32_t waiting = 0;
    bool moved = cq_publish_eventidx_locked(c, cq, &waiting);
    pthread_mutex_unlock(&cq->lock);
    kick_waiting(c, waiting);
    if (ien)
        cq_signal(c, iv);
    else if (moved)
        nvme_update_intx(c);
}

/* ---- Submission queues ---- */

void nvme_sq_init(struct nvme_ctrl *c, struct nvme_sq *sq, uint16_t qid, uint16_t cqid,
                  uint64_t base, uint32_t size)
{
    pthread_mutex_lock(&sq->lock);
    sq->active = true;
    sq->qid = qid;
    sq->cqid = cqid;
    sq->base = base;
    sq->size = size;
    sq->head = sq->tail = 0;
    atomic_store(&sq->sqhd, 0);
    sq->starved = false;
    shadow_attach(c, &sq->shadow, qid, false);
    pthread_mutex_unlock(&sq->lock);
}

bool nvme_sq_alloc_reqs(struct nvme_ctrl *c, struct nvme_sq *sq, uint32_t size)
{
    unsigned n = size < NVME_SQ_MAX_INFLIGHT ? size : NVME_SQ_MAX_INFLIGHT;
    struct nvme_req *reqs = calloc(n, sizeof(*reqs));
    if (!reqs) {
        log_error("%s: no memory for the requests of an SQ of %u entries", name_of(c), size);
        return false;
    }
    pthread_mutex_lock(&sq->lock);
    sq->reqs = reqs;
    sq->nreqs = n;
    sq->free = NULL;
    for (unsigned i = n; i-- > 0;) {
        reqs[i].ctrl = c;
        reqs[i].sq = sq;
        reqs[i].next = sq->free;
        sq->free = &reqs[i];
    }
    pthread_mutex_unlock(&sq->lock);
    return true;
}

void nvme_sq_quiesce(struct nvme_ctrl *c, struct nvme_sq *sq)
{
    pthread_mutex_lock(&sq->lock);
    sq->active = false;
    while (sq->inflight > 0)
        pthread_cond_wait(&sq->idle, &sq->lock);
    pthread_mutex_unlock(&sq->lock);
}

void nvme_sq_teardown(struct nvme_ctrl *c, struct nvme_sq *sq)
{
    nvme_sq_quiesce(c, sq);
    pthread_mutex_lock(&sq->lock);
    free(sq->reqs);
    sq->reqs = NULL;
    sq->nreqs = 0;
    sq->free = NULL;
    sq->size = 0;
    sq->base = 0;
    sq->head = sq->tail = 0;
    sq->starved = false;
    sq->shadow = (struct nvme_shadow){false, 0, 0};
    pthread_mutex_unlock(&sq->lock);
}

const char *nvme_dbbuf_refused(const struct nvme_ctrl *c, uint64_t dbs, uint64_t eis,
                               bool *eis_at_fault)
{
    *eis_at_fault = false;
    if (dbs & (NVME_PAGE_SIZE - 1))
        return "the shadow doorbell buffer is not page aligned";
    if (!guest_mem_valid(c->mem, dbs, NVME_DBBUF_SPAN, true))
        return "the shadow doorbell buffer is not writable guest RAM";
    *eis_at_fault = true;
    if (eis & (NVME_PAGE_SIZE - 1))
        return "the EventIdx buffer is not page aligned";
    if (!guest_mem_valid(c->mem, eis, NVME_DBBUF_SPAN, true))
        return "the EventIdx buffer is not writable guest RAM";
    if (dbs < eis + NVME_DBBUF_SPAN && eis < dbs + NVME_DBBUF_SPAN)
        return "the EventIdx buffer overlaps the shadow doorbell buffer";
    return NULL;
}

void nvme_dbbuf_enable_locked(struct nvme_ctrl *c, uint64_t dbs, uint64_t eis)
{
    c->dbbuf = true;
    c->dbbuf_dbs = dbs;
    c->dbbuf_eis = eis;
    /* Queues that exist take their entries now, set to where the queue is
     * (as the old buffers last said, if sent again), with EventIdx there:
     * the next value the driver writes rings. */
    uint32_t waiting = 0;
    for (unsigned qid = 0; qid < NVME_NUM_QUEUES; qid++) {
        struct nvme_cq *cq = &c->cqs[qid];
        pthread_mutex_lock(&cq->lock);
        if (cq->active) {
            while (cq_shadow_head_locked(c, cq, false, &waiting))
                ;
            shadow_attach(c, &cq->shadow, qid, true);
            shadow_store(c, cq->shadow.db, cq->head);
            shadow_store(c, cq->shadow.ei, cq->head);
        }
        pthread_mutex_unlock(&cq->lock);
        struct nvme_sq *sq = &c->sqs[qid];
        pthread_mutex_lock(&sq->lock);
        uint32_t tail;
        if (qid && sq->shadow.on && shadow_load(c, sq->shadow.db, &tail) && tail != sq->tail) {
            if (tail < sq->size) {
                sq->tail = tail;
                waiting |= 1u << qid;
            } else {
                shadow_error(c, qid, false, tail, "beyond the queue size");
            }
        }
        if (sq->size) {
            shadow_attach(c, &sq->shadow, qid, false);
            shadow_store(c, sq->shadow.db, sq->tail);
            shadow_store(c, sq->shadow.ei, sq->tail);
        }
        pthread_mutex_unlock(&sq->lock);
    }
    nvme_update_intx(c);
    kick_waiting(c, waiting);
}

/* Waits until no command of any I/O SQ is in flight, without stopping the
 * queues (shutdown, wait_idle). */
static void wait_sq_idle(struct nvme_sq *sq)
{
    pthread_mutex_lock(&sq->lock);
    while (sq->inflight > 0)
        pthread_cond_wait(&sq->idle, &sq->lock);
    pthread_mutex_unlock(&sq->lock);
}

/* ---- Worker ---- */

/* Wakes the worker unless it is awake already: in its callback (it looks
 * at pending again before it goes idle) or with a wake-up not yet read.
 * work_lock held. */
static void wake_worker_locked(struct nvme_ctrl *c)
{
    if (c->worker_busy || c->kick_posted)
        return;
    uint64_t one = 1;
    if (write(c->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_limited(&c->io_log, LOG_ERROR, "%s: waking the I/O worker: %s", name_of(c),
                    strerror(errno));
    else
        c->kick_posted = true;
}

void nvme_kick(struct nvme_ctrl *c, unsigned qid)
{
    pthread_mutex_lock(&c->work_lock);
    c->pending |= 1u << qid;
    wake_worker_locked(c);
    pthread_mutex_unlock(&c->work_lock);
}

void nvme_queue_followup(struct nvme_ctrl *c, struct nvme_req *req)
{
    pthread_mutex_lock(&c->work_lock);
    req->next = c->followups;
    c->followups = req;
    wake_worker_locked(c);
    pthread_mutex_unlock(&c->work_lock);
}

/* The worker's loop callback: runs follow-ups and the SQs with doorbell
 * activity until there is none left, then goes idle. A paused controller
 * takes no command (nvme_io_process_sq), so the callback ends and the loop
 * can park. */
static void worker_kicked(void *opaque, uint32_t events)
{
    struct nvme_ctrl *c = opaque;
    uint64_t count;
    if (read(c->kick_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        log_limited(&c->io_log, LOG_ERROR, "%s: I/O worker wake-up: %s", name_of(c),
                    strerror(errno));
    pthread_mutex_lock(&c->work_lock);
    c->kick_posted = false;
    c->worker_busy = true;
    while (c->pending || c->followups) {
        uint32_t mask = c->pending;
        c->pending = 0;
        struct nvme_req *followups = c->followups;
        c->followups = NULL;
        pthread_mutex_unlock(&c->work_lock);

        while (followups) {
            struct nvme_req *req = followups;
            followups = req->next;
            nvme_io_followup(c, req);
        }
        uint32_t again = 0;
        for (unsigned qid = 1; qid < NVME_NUM_QUEUES; qid++)
            if ((mask & (1u << qid)) && nvme_io_process_sq(c, &c->sqs[qid]))
                again |= 1u << qid;
        nvme_raise_shadow_errors(c);

        pthread_mutex_lock(&c->work_lock);
        c->pending |= again;
    }
    c->worker_busy = false;
    pthread_cond_broadcast(&c->idle_cond);
    pthread_mutex_unlock(&c->work_lock);
}

void nvme_wait_idle(struct nvme_ctrl *c)
{
    for (;;) {
        pthread_mutex_lock(&c->work_lock);
        /* A parked loop runs nothing: what it has pending waits for resume. */
        while (c->loop_started && !c->loop_paused && (c->worker_busy || c->pending || c->followups))
            pthread_cond_wait(&c->idle_cond, &c->work_lock);
        pthread_mutex_unlock(&c->work_lock);
        bool busy = false;
        for (unsigned qid = 1; qid < NVME_NUM_QUEUES; qid++) {
            struct nvme_sq *sq = &c->sqs[qid];
            pthread_mutex_lock(&sq->lock);
            busy |= sq->inflight > 0;
            pthread_mutex_unlock(&sq->lock);
            wait_sq_idle(sq);
        }
        if (!busy)
            return;
    }
}

/* ---- Controller state ---- */

void nvme_fatal_locked(struct nvme_ctrl *c, const char *why)
{
    if (!(c->csts & NVME_CSTS_CFS))
        log_error("%s: controller fatal status: %s", name_of(c), why);
    c->csts |= NVME_CSTS_CFS;
    /* Nothing more is processed until the host resets the controller. */
    atomic_store(&c->enabled, false);
    for (unsigned qid = 0; qid < NVME_NUM_QUEUES; qid++) {
        pthread_mutex_lock(&c->sqs[qid].lock);
        c->sqs[qid].active = false;
        pthread_mutex_unlock(&c->sqs[qid].lock);
    }
}

/* Controller reset (CC.EN 1 -> 0, or a VM reset): queues deleted, in-flight
 * commands waited for (their completions are dropped), features and events
 * back to defaults. AQA/ASQ/ACQ keep their values. ctrl->lock held. */
static void controller_reset_locked(struct nvme_ctrl *c)
{
    atomic_store(&c->enabled, false);
    /* CQs first, so that commands finishing during the drain write nothing
     * into memory the host is about to reuse. */
    for (unsigned qid = 0; qid < NVME_NUM_QUEUES; qid++) {
        pthread_mutex_lock(&c->cqs[qid].lock);
        c->cqs[qid].active = false;
        pthread_mutex_unlock(&c->cqs[qid].lock);
    }
    for (unsigned qid = 0; qid < NVME_NUM_QUEUES; qid++)
        nvme_sq_teardown(c, &c->sqs[qid]);
    for (unsigned qid = 0; qid < NVME_NUM_QUEUES; qid++)
        nvme_cq_teardown(c, &c->cqs[qid]);
    nvme_admin_reset(c);
    nvme_features_default(c);
    /* The shadow doorbell buffers end with the reset (the queues above
     * dropped theirs). */
    c->dbbuf = false;
    c->dbbuf_dbs = c->dbbuf_eis = 0;
    atomic_store(&c->shadow_db_error, false);
    c->nsqa = c->ncqa = NVME_MAX_IO_QUEUES;
    c->io_queues = 0;
    c->csts = 0;
    atomic_store(&c->io_stopped, false);
    atomic_store(&c->intx_pending, 0);
    nvme_update_intx(c);
}

static bool check_enable(struct nvme_ctrl *c, uint32_t cc, char *why, size_t whylen)
{
    uint32_t asqs = NVME_AQA_ASQS(c->aqa) + 1, acqs = NVME_AQA_ACQS(c->aqa) + 1;
    if (NVME_CC_CSS(cc) != 0)
        snprintf(why, whylen, "CC.CSS %u is not the NVM command set", NVME_CC_CSS(cc));
    else if (NVME_CC_MPS(cc) != 0)
        snprintf(why, whylen, "CC.MPS %u: only 4 KiB pages are supported", NVME_CC_MPS(cc));
    else if (NVME_CC_AMS(cc) != 0)
        snprintf(why, whylen, "CC.AMS %u: only round robin arbitration", NVME_CC_AMS(cc));
    else if (asqs < 2 || acqs < 2)
        snprintf(why, whylen, "admin queue sizes %u/%u (AQA 0x%x) below 2", asqs, acqs, c->aqa);
    else if (!guest_mem_valid(c->mem, c->asq, (uint64_t)asqs * NVME_SQE_SIZE, false))
        snprintf(why, whylen, "admin SQ at 0x%llx (%u entries) is not guest RAM",
                 (unsigned long long)c->asq, asqs);
    else if (!guest_mem_valid(c->mem, c->acq, (uint64_t)acqs * NVME_CQE_SIZE, true))
        snprintf(why, whylen, "admin CQ at 0x%llx (%u entries) is not guest RAM",
                 (unsigned long long)c->acq, acqs);
    else
        return true;
    return false;
}

static void controller_enable_locked(struct nvme_ctrl *c, uint32_t cc)
{
    char why[160];
    if (!check_enable(c, cc, why, sizeof(why))) {
        log_limited(&c->reg_log, LOG_WARNING, "%s: enable refused: %s", name_of(c), why);
        c->csts |= NVME_CSTS_CFS;
        return;
    }
    nvme_cq_init(c, &c->cqs[0], 0, c->acq, NVME_AQA_ACQS(c->aqa) + 1, true, 0);
    nvme_sq_init(c, &c->sqs[0], 0, 0, c->asq, NVME_AQA_ASQS(c->aqa) + 1);
    c->csts = NVME_CSTS_RDY;
    atomic_store(&c->io_stopped, false);
    atomic_store(&c->enabled, true);
    log_debug("%s: enabled (admin SQ %u@0x%llx, CQ %u@0x%llx)", name_of(c),
              NVME_AQA_ASQS(c->aqa) + 1, (unsigned long long)c->asq, NVME_AQA_ACQS(c->aqa) + 1,
              (unsigned long long)c->acq);
}

struct sync_flush {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int status;
};

static void sync_flush_done(struct block_request *req, int status)
{
    struct sync_flush *f = req->opaque;
    pthread_mutex_lock(&f->lock);
    f->done = true;
    f->status = status;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static int flush_backend(struct nvme_ctrl *c)
{
    struct sync_flush f = {.done = false};
    pthread_mutex_init(&f.lock, NULL);
    pthread_cond_init(&f.cond, NULL);
    struct block_request req = {.op = BLOCK_OP_FLUSH, .complete = sync_flush_done, .opaque = &f};
    int ret = block_submit(c->be, &req);
    if (ret == 0) {
        pthread_mutex_lock(&f.lock);
        while (!f.done)
            pthread_cond_wait(&f.cond, &f.lock);
        pthread_mutex_unlock(&f.lock);
        ret = f.status;
    }
    pthread_cond_destroy(&f.cond);
    pthread_mutex_destroy(&f.lock);
    return ret;
}

/* CC.SHN set: finish what is in flight, make it durable, report complete.
 * Further I/O commands wait until the shutdown is cleared or the controller
 * is reset. */
static void controller_shutdown_locked(struct nvme_ctrl *c)
{
    atomic_store(&c->io_stopped, true);
    for (unsigned qid = 1; qid < NVME_NUM_QUEUES; qid++)
        wait_sq_idle(&c->sqs[qid]);
    if (c->vwc) {
        int ret = flush_backend(c);
        if (ret < 0)
            log_warn("%s: flush at shutdown failed: %s", name_of(c), strerror(-ret));
    }
    c->csts = (c->csts & ~NVME_CSTS_SHST_MASK) | NVME_CSTS_SHST_COMPLETE;
    log_debug("%s: shutdown complete", name_of(c));
}

static void cc_write_locked(struct nvme_ctrl *c, uint32_t value)
{
    uint32_t old = c->cc;
    uint32_t cc = value & NVME_CC_WRITABLE;
    if ((old & NVME_CC_EN) && (cc & NVME_CC_EN))
        cc = (cc & ~NVME_CC_SETUP_FIELDS) | (old & NVME_CC_SETUP_FIELDS);
    c->cc = cc;

    if ((old & NVME_CC_EN) && !(cc & NVME_CC_EN)) {
        log_debug("%s: controller reset", name_of(c));
        controller_reset_locked(c);
    } else if (!(old & NVME_CC_EN) && (cc & NVME_CC_EN)) {
        if (c->csts & NVME_CSTS_CFS)
            log_limited(&c->reg_log, LOG_WARNING,
                        "%s: enable while controller fatal status is set: reset first", name_of(c));
        else
            controller_enable_locked(c, cc);
    }

    bool shn = NVME_CC_SHN(cc) != 0;
    uint32_t shst = c->csts & NVME_CSTS_SHST_MASK;
    if (shn && shst == 0) {
        controller_shutdown_locked(c);
    } else if (!shn && shst != 0) {
        c->csts &= ~NVME_CSTS_SHST_MASK;
        atomic_store(&c->io_stopped, false);
        for (unsigned qid = 1; qid < NVME_NUM_QUEUES; qid++)
            nvme_kick(c, qid);
    }
}

/* ---- Registers ---- */

static uint64_t cap_value(void)
{
    return (uint64_t)NVME_MQES | NVME_CAP_CQR | ((uint64_t)NVME_CAP_TO << NVME_CAP_TO_SHIFT) |
           NVME_CAP_CSS_NVM; /* DSTRD 0, MPSMIN = MPSMAX = 0 (4 KiB) */
}

/* The controller registers below the doorbells; ids are offsets. NSSR is
 * absent (CAP.NSSRS is 0), and so are CMB and PMR: those offsets, like the
 * reserved ones, read as zero and drop writes. */
static const struct reg_def ctrl_regs[] = {
    {NVME_REG_CAP, 8, NVME_REG_CAP},     {NVME_REG_VS, 4, NVME_REG_VS},
    {NVME_REG_INTMS, 4, NVME_REG_INTMS}, {NVME_REG_INTMC, 4, NVME_REG_INTMC},
    {NVME_REG_CC, 4, NVME_REG_CC},       {NVME_REG_CSTS, 4, NVME_REG_CSTS},
    {NVME_REG_AQA, 4, NVME_REG_AQA},     {NVME_REG_ASQ, 8, NVME_REG_ASQ},
    {NVME_REG_ACQ, 8, NVME_REG_ACQ},
};

static const struct regmap ctrl_map = {ctrl_regs, ARRAY_LEN(ctrl_regs)};

/* Called with c->lock held (through regmap_read). */
static uint64_t reg_read_locked(void *opaque, uint32_t id)
{
    struct nvme_ctrl *c = opaque;
    switch (id) {
    case NVME_REG_CAP:
        return cap_value();
    case NVME_REG_VS:
        return NVME_VERSION;
    case NVME_REG_INTMS:
    case NVME_REG_INTMC:
        return atomic_load(&c->intms);
    case NVME_REG_CC:
        return c->cc;
    case NVME_REG_CSTS:
        return c->csts;
    case NVME_REG_AQA:
        return c->aqa;
    case NVME_REG_ASQ:
        return c->asq;
    case NVME_REG_ACQ:
        return c->acq;
    default:
        return 0;
    }
}

/* Called with c->lock held (through regmap_write). bar0_write lets only
 * aligned dwords and qwords through, so mask is a whole register or one
 * dword half of ASQ/ACQ; the queue bases keep bits 11:0 clear. */
static void reg_write_locked(void *opaque, uint32_t id, uint64_t value, uint64_t mask)
{
    struct nvme_ctrl *c = opaque;
    switch (id) {
    case NVME_REG_INTMS: /* write 1 to set: bytes not written are 0 */
        atomic_fetch_or(&c->intms, (uint32_t)(value & mask));
        nvme_update_intx(c);
        break;
    case NVME_REG_INTMC: /* write 1 to clear */
        atomic_fetch_and(&c->intms, ~(uint32_t)(value & mask));
        nvme_update_intx(c);
        break;
    case NVME_REG_CC:
        cc_write_locked(c, (uint32_t)reg_merge(c->cc, value, mask));
        break;
    case NVME_REG_AQA:
        c->aqa = (uint32_t)reg_merge(c->aqa, value, mask) & NVME_AQA_WRITABLE;
        break;
    case NVME_REG_ASQ:
        c->asq = reg_merge(c->asq, value & ~0xfffull, mask);
        break;
    case NVME_REG_ACQ:
        c->acq = reg_merge(c->acq, value & ~0xfffull, mask);
        break;
    default:
        /* Read-only: CAP, VS, CSTS. */
        log_trace("%s: write 0x%llx to read-only register 0x%x ignored", name_of(c),
                  (unsigned long long)(value & mask), id);
        break;
    }
}

/* ---- Doorbells ---- */

static void doorbell_error(struct nvme_ctrl *c, bool have_lock, unsigned qid, bool is_cq,
                           uint32_t value, uint8_t info, const char *why)
{
    log_limited(&c->db_log, LOG_WARNING, "%s: %s doorbell of queue %u (value %u) ignored: %s",
                name_of(c), is_cq ? "CQ head" : "SQ tail", qid, value, why);
    if (!have_lock)
        pthread_mutex_lock(&c->lock);
    if (atomic_load(&c->enabled))
        nvme_admin_event(c, NVME_AER_TYPE_ERROR, info, NVME_LOG_ERROR);
    if (!have_lock)
        pthread_mutex_unlock(&c->lock);
}

static void admin_sq_doorbell(struct nvme_ctrl *c, uint32_t value)
{
    pthread_mutex_lock(&c->lock);
    struct nvme_sq *sq = &c->sqs[0];
    if (!atomic_load(&c->enabled) || !sq->active) {
        pthread_mutex_unlock(&c->lock);
        log_limited(&c->db_log, LOG_WARNING,
                    "%s: admin SQ doorbell (value %u) while the controller is disabled", name_of(c),
                    value);
        return;
    }
    if (value >= sq->size) {
        doorbell_error(c, true, 0, false, value, NVME_AER_INFO_INVALID_DB_VALUE,
                       "beyond the queue size");
    } else {
        sq->tail = value;
        /* With shadow doorbells the admin SQ is read from its shadow entry,
         * which drivers that ring it by MMIO (Linux) leave alone. */
        if (sq->shadow.on)
            shadow_store(c, sq->shadow.db, value);
        nvme_admin_process(c);
    }
    pthread_mutex_unlock(&c->lock);
}

static void io_sq_doorbell(struct nvme_ctrl *c, unsigned qid, uint32_t value)
{
    struct nvme_sq *sq = &c->sqs[qid];
    pthread_mutex_lock(&sq->lock);
    bool active = sq->active;
    uint32_t size = sq->size;
    if (active && value < size)
        sq->tail = value;
    pthread_mutex_unlock(&sq->lock);
    if (!active)
        doorbell_error(c, false, qid, false, value, NVME_AER_INFO_INVALID_DB_REGISTER,
                       "no such submission queue");
    else if (value >= size)
        doorbell_error(c, false, qid, false, value, NVME_AER_INFO_INVALID_DB_VALUE,
                       "beyond the queue size");
    else
        nvme_kick(c, qid);
}

static void cq_doorbell(struct nvme_ctrl *c, unsigned qid, uint32_t value)
{
    struct nvme_cq *cq = &c->cqs[qid];
    const char *why = NULL;
    uint8_t info = NVME_AER_INFO_INVALID_DB_VALUE;
    uint32_t waiting = 0;
    pthread_mutex_lock(&cq->lock);
    if (!cq->active) {
        why = "no such completion queue";
        info = NVME_AER_INFO_INVALID_DB_REGISTER;
    } else if ((why = cq_head_refused(cq, value)) == NULL) {
        cq_head_moved_locked(c, cq, value, &waiting);
        if (qid == 0 && cq->shadow.on)
            shadow_store(c, cq->shadow.db, value); /* as the admin SQ tail */
        cq_publish_eventidx_locked(c, cq, &waiting);
    }
    pthread_mutex_unlock(&cq->lock);
    if (why) {
        doorbell_error(c, false, qid, true, value, info, why);
        return;
    }
    nvme_update_intx(c);
    if (waiting & 1u) {
        /* The admin SQ stopped for want of a completion slot. */
        pthread_mutex_lock(&c->lock);
        if (atomic_load(&c->enabled))
            nvme_admin_process(c);
        pthread_mutex_unlock(&c->lock);
    }
    for (unsigned sqid = 1; sqid < NVME_NUM_QUEUES; sqid++)
        if (waiting & (1u << sqid))
            nvme_kick(c, sqid);
}

static void doorbell_write(struct nvme_ctrl *c, uint64_t offset, unsigned size, uint64_t value)
{
    uint64_t index = (offset - NVME_REG_DBS) / 4;
    unsigned qid = (unsigned)(index / 2);
    bool is_cq = index & 1;
    if (size != 4 || (offset & 3)) {
        log_limited(&c->db_log, LOG_WARNING, "%s: %u-byte doorbell write at 0x%llx ignored",
                    name_of(c), size, (unsigned long long)offset);
        return;
    }
    uint32_t v = (uint32_t)value & 0xffff; /* bits 31:16 are reserved */
    if (!atomic_load(&c->enabled)) {
        log_limited(&c->db_log, LOG_WARNING,
                    "%s: doorbell write (queue %u %s, value %u) while the controller is "
                    "disabled: ignored",
                    name_of(c), qid, is_cq ? "CQ" : "SQ", v);
        return;
    }
    if (qid >= NVME_NUM_QUEUES) {
        doorbell_error(c, false, qid, is_cq, v, NVME_AER_INFO_INVALID_DB_REGISTER,
                       "queue id beyond the controller's maximum");
        return;
    }
    if (is_cq)
        cq_doorbell(c, qid, v);
    else if (qid == 0)
        admin_sq_doorbell(c, v);
    else
        io_sq_doorbell(c, qid, v);
}

static uint64_t bar0_read(void *opaque, uint64_t offset, unsigned size)
{
    struct nvme_ctrl *c = opaque;
    if (offset >= NVME_REG_DBS)
        return 0; /* doorbells read as zero */
    uint64_t value;
    pthread_mutex_lock(&c->lock);
    regmap_read(&ctrl_map, offset, size, reg_read_locked, c, &value); /* gaps read as zero */
    pthread_mutex_unlock(&c->lock);
    return value;
}

static void bar0_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct nvme_ctrl *c = opaque;
    if (offset >= NVME_REG_DBS) {
        doorbell_write(c, offset, size, value);
        return;
    }
    if ((size != 4 && size != 8) || (offset & (size - 1))) {
        log_limited(&c->reg_log, LOG_WARNING,
                    "%s: %u-byte register write at 0x%llx ignored (dword or qword only)",
                    name_of(c), size, (unsigned long long)offset);
        return;
    }
    pthread_mutex_lock(&c->lock);
    /* A qword over two dword registers writes both, the lower first. */
    bool all_registers = regmap_write(&ctrl_map, offset, size, value, reg_write_locked, c);
    pthread_mutex_unlock(&c->lock);
    if (!all_registers) /* Linux writes CMBMSC on 1.4 controllers */
        log_trace("%s: %u-byte write 0x%llx at 0x%llx: bytes outside any register ignored",
                  name_of(c), size, (unsigned long long)value, (unsigned long long)offset);
}

static const struct io_ops nvme_bar0_ops = {
    .read = bar0_read,
    .write = bar0_write,
};

/* ---- PCI function and device lifecycle ---- */

static void nvme_config_write(struct pci_device *pdev, unsigned offset, unsigned size,
                              uint32_t value)
{
    struct nvme_ctrl *c = container_of(pdev, struct nvme_ctrl, pci);
    msix_config_write(&c->msix, offset, size);
    /* Enabling MSI-X takes INTx out of use; the lock is already held. */
    pci_set_irq_locked(pdev, intx_level(c));
}

static const struct pci_device_ops nvme_pci_ops = {
    .config_write = nvme_config_write,
};

static void nvme_reset(struct device *dev)
{
    struct nvme_ctrl *c = container_of(dev, struct nvme_ctrl, pci.dev);
    pthread_mutex_lock(&c->lock);
    controller_reset_locked(c);
    c->cc = 0;
    c->aqa = 0;
    c->asq = c->acq = 0;
    atomic_store(&c->intms, 0);
    pthread_mutex_unlock(&c->lock);
    msix_reset(&c->msix);
    pci_device_reset(&c->pci);
}

#define DUMP_LOCK_MS 100

static void nvme_dump(struct device *dev)
{
    struct nvme_ctrl *c = container_of(dev, struct nvme_ctrl, pci.dev);
    const char *name = c->pci.dev.name;
    if (!mutex_lock_within(&c->lock, DUMP_LOCK_MS)) {
        log_info("%s: controller lock held for %u ms (a vCPU stuck in admin processing?)", name,
                 DUMP_LOCK_MS);
        return;
    }
    pthread_mutex_lock(&c->work_lock);
    uint32_t pending = c->pending;
    bool busy = c->worker_busy;
    pthread_mutex_unlock(&c->work_lock);
    log_info("%s: cc 0x%x csts 0x%x intms 0x%x, %s%s, %u AERs outstanding, %u events queued, "
             "worker %s, SQs with doorbell activity 0x%x, INTx pending 0x%x, msix %s",
             name, c->cc, c->csts, atomic_load(&c->intms),
             atomic_load(&c->io_stopped) ? "I/O stopped" : "I/O running",
             atomic_load(&c->paused) ? " (paused)" : "", c->aer_count, c->event_count,
             busy ? "busy" : "idle", pending, atomic_load(&c->intx_pending),
             msix_enabled(&c->msix) ? "on" : "off");
    if (c->dbbuf)
        log_info("%s: shadow doorbells at 0x%llx, EventIdx at 0x%llx", name,
                 (unsigned long long)c->dbbuf_dbs, (unsigned long long)c->dbbuf_eis);
    for (unsigned qid = 0; qid < NVME_NUM_QUEUES; qid++) {
        struct nvme_sq *sq = &c->sqs[qid];
        if (!mutex_lock_within(&sq->lock, DUMP_LOCK_MS)) {
            log_info("%s sq %u: lock busy", name, qid);
        } else {
            if (sq->active)
                log_info("%s sq %u: cq %u size %u head %u tail %u, %u in flight%s", name, qid,
                         sq->cqid, sq->size, sq->head, sq->tail, sq->inflight,
                         sq->starved ? ", waiting for a free request" : "");
            pthread_mutex_unlock(&sq->lock);
        }
        struct nvme_cq *cq = &c->cqs[qid];
        if (!mutex_lock_within(&cq->lock, DUMP_LOCK_MS)) {
            log_info("%s cq %u: lock busy", name, qid);
        } else {
            if (cq->active)
                log_info("%s cq %u: size %u head %u tail %u phase %u, %u slots reserved, "
                         "SQs waiting 0x%x, interrupts %s vector %u%s",
                         name, qid, cq->size, cq->head, cq->tail, cq->phase, cq->reserved,
                         cq->waiting_sqs, cq->ien ? "on" : "off", cq->iv,
                         cq->ien && msix_is_pending(&c->msix, cq->iv) ? " (pending in PBA)" : "");
            pthread_mutex_unlock(&cq->lock);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

static void nvme_destroy(struct device *dev)
{
    struct nvme_ctrl *c = container_of(dev, struct nvme_ctrl, pci.dev);
    /* The reset waits for requests in flight, whose follow-ups the worker
     * runs: a parked worker is let go (paused, it takes no command). */
    pthread_mutex_lock(&c->work_lock);
    bool parked = c->loop_paused;
    c->loop_paused = false;
    pthread_mutex_unlock(&c->work_lock);
    if (parked)
        io_loop_resume(&c->loop);
    pthread_mutex_lock(&c->lock);
    controller_reset_locked(c);
    pthread_mutex_unlock(&c->lock);
    /* The loop's thread ends, then the watch can go. */
    io_loop_stop(&c->loop);
    io_loop_unwatch(&c->loop, &c->kick_watch);
    if (c->kick_fd >= 0)
        close(c->kick_fd);
    io_loop_destroy(&c->loop);
    msix_destroy(&c->msix);
    for (unsigned qid = 0; qid < NVME_NUM_QUEUES; qid++) {
        pthread_mutex_destroy(&c->sqs[qid].lock);
        pthread_cond_destroy(&c->sqs[qid].idle);
        pthread_mutex_destroy(&c->cqs[qid].lock);
    }
    pthread_cond_destroy(&c->idle_cond);
    pthread_mutex_destroy(&c->work_lock);
    pthread_mutex_destroy(&c->lock);
    pci_device_destroy(&c->pci);
    free(c);
}

/* ---- Pause, resume and state ---- */

static int nvme_pause(struct device *dev)
{
    struct nvme_ctrl *c = container_of(dev, struct nvme_ctrl, pci.dev);
    pthread_mutex_lock(&c->work_lock);
    bool parked = c->loop_paused;
    pthread_mutex_unlock(&c->work_lock);
    if (parked)
        return 0;
    /* No new command from any SQ; what is at the back end completes and is
     * posted (follow-ups such as a FUA write's flush still run), then the
     * worker parks with whatever doorbells come meanwhile left pending. */
    atomic_store(&c->paused, true);
    nvme_wait_idle(c);
    io_loop_pause(&c->loop);
    pthread_mutex_lock(&c->work_lock);
    c->loop_paused = true;
    pthread_mutex_unlock(&c->work_lock);
    return 0;
}

static void nvme_resume(struct device *dev)
{
    struct nvme_ctrl *c = container_of(dev, struct nvme_ctrl, pci.dev);
    atomic_store(&c->paused, false);
    pthread_mutex_lock(&c->work_lock);
    bool parked = c->loop_paused;
    c->loop_paused = false;
    pthread_mutex_unlock(&c->work_lock);
    if (parked)
        io_loop_resume(&c->loop);
    /* Every doorbell again: tails written while paused, or entries a
     * restored SQ holds that were never fetched. */
    pthread_mutex_lock(&c->work_lock);
    c->pending |= ((1u << NVME_NUM_QUEUES) - 1) & ~1u;
    wake_worker_locked(c);
    pthread_mutex_unlock(&c->work_lock);
    pthread_mutex_lock(&c->lock);
    if (atomic_load(&c->enabled))
        nvme_admin_process(c);
    pthread_mutex_unlock(&c->lock);
}

/* One queue as saved. SQs use cqid and active, CQs phase, ien and iv. */
struct queue_image {
    uint64_t base;
    uint32_t size, head, tail;
    uint16_t cqid, iv;
    bool active, phase, ien;
};

struct ctrl_image {
    uint64_t nsze;
    uint32_t lba_size;
    uint32_t cc, csts, aqa, intms;
    uint64_t asq, acq;
    bool dbbuf;
    uint64_t dbbuf_dbs, dbbuf_eis;
    struct nvme_admin_image admin;
    uint64_t read_bytes, write_bytes, read_cmds, write_cmds, power_on_base_ns;
    uint32_t cq_mask, sq_mask; /* bit per queue that exists */
    struct queue_image cqs[NVME_NUM_QUEUES], sqs[NVME_NUM_QUEUES];
};

static void capture(struct nvme_ctrl *c, struct ctrl_image *im)
{
    memset(im, 0, sizeof(*im));
    im->nsze = c->nsze;
    im->lba_size = c->lba_size;
    im->cc = c->cc;
    im->csts = c->csts;
    im->aqa = c->aqa;
    im->intms = atomic_load(&c->intms);
    im->asq = c->asq;
    im->acq = c->acq;
    im->dbbuf = c->dbbuf;
    im->dbbuf_dbs = c->dbbuf_dbs;
    im->dbbuf_eis = c->dbbuf_eis;
    im->read_bytes = atomic_load(&c->read_bytes);
    im->write_bytes = atomic_load(&c->write_bytes);
    im->read_cmds = atomic_load(&c->read_cmds);
    im->write_cmds = atomic_load(&c->write_cmds);
    im->power_on_base_ns = c->created_ns;
    for (unsigned qid = 0; qid < NVME_NUM_QUEUES; qid++) {
        struct nvme_cq *cq = &c->cqs[qid];
        pthread_mutex_lock(&cq->lock);
        if (cq->active) {
            im->cq_mask |= 1u << qid;
            im->cqs[qid] = (struct queue_image){.base = cq->base,
                                                .size = cq->size,
                                                .head = cq->head,
                                                .tail = cq->tail,
                                                .phase = cq->phase,
                                                .ien = cq->ien,
                                                .iv = cq->iv};
        }
        pthread_mutex_unlock(&cq->lock);
        struct nvme_sq *sq = &c->sqs[qid];
        pthread_mutex_lock(&sq->lock);
        /* A fatal status leaves its SQs in place, inactive. */
        if (sq->size) {
            im->sq_mask |= 1u << qid;
            im->sqs[qid] = (struct queue_image){.base = sq->base,
                                                .size = sq->size,
                                                .head = sq->head,
                                                .tail = sq->tail,
                                                .cqid = sq->cqid,
                                                .active = sq->active};
        }
        pthread_mutex_unlock(&sq->lock);
    }
}

/* The queue fields both kinds share: where it is, how big, its indexes. */
static void queue_common_state(struct snap *s, struct queue_image *q, unsigned qid,
                               unsigned entry_size)
{
    /* Admin queues take AQA's sizes, I/O queues CAP.MQES's. */
    uint32_t max = qid == 0 ? NVME_AQA_ASQS(0xfff) + 1 : NVME_MQES + 1;
    snap_u64(s, "base", &q->base);
    snap_check(s, (q->base & (NVME_PAGE_SIZE - 1)) == 0, "base", "not page aligned");
    snap_u32(s, "size", &q->size);
    if (snap_loading(s) && (q->size < 2 || q->size > max))
        snap_fail(s, "size", "%u entries, not 2 to %u", q->size, max);
    snap_check(s, q->base <= UINT64_MAX - (uint64_t)q->size * entry_size, "base",
               "the queue runs past the end of the address space");
    snap_u32(s, "head", &q->head);
    if (snap_loading(s) && q->head >= q->size)
        snap_fail(s, "head", "%u, beyond the queue's %u entries", q->head, q->size);
    snap_u32(s, "tail", &q->tail);
    if (snap_loading(s) && q->tail >= q->size)
        snap_fail(s, "tail", "%u, beyond the queue's %u entries", q->tail, q->size);
}

/* Doorbell Buffer Config (state version 2; none before): both buffers
 * checked as the command checks them, and set only while enabled. */
static void dbbuf_state(struct nvme_ctrl *c, struct snap *s, struct ctrl_image *im)
{
    snap_bool(s, "dbbuf", &im->dbbuf);
    snap_check(s, !im->dbbuf || (im->cc & NVME_CC_EN), "dbbuf",
               "shadow doorbells while CC.EN is clear");
    snap_u64(s, "dbbuf_dbs", &im->dbbuf_dbs);
    snap_u64(s, "dbbuf_eis", &im->dbbuf_eis);
    if (!snap_loading(s) || snap_error(s))
        return;
    if (!im->dbbuf) {
        snap_check(s, im->dbbuf_dbs == 0, "dbbuf_dbs", "set without Doorbell Buffer Config");
        snap_check(s, im->dbbuf_eis == 0, "dbbuf_eis", "set without Doorbell Buffer Config");
        return;
    }
    bool eis_at_fault;
    const char *why = nvme_dbbuf_refused(c, im->dbbuf_dbs, im->dbbuf_eis, &eis_at_fault);
    if (why)
        snap_fail(s, eis_at_fault ? "dbbuf_eis" : "dbbuf_dbs", "%s", why);
}

/* Which queues exist: ids within what Number of Queues granted, none
 * unless the controller is enabled, the admin queue whenever it is. */
static void queue_mask_state(struct snap *s, const char *name, uint32_t *mask, unsigned granted,
                             const struct ctrl_image *im)
{
    snap_u32(s, name, mask);
    if (!snap_loading(s) || snap_error(s))
        return;
    uint32_t m = *mask;
    if (m >> NVME_NUM_QUEUES)
        snap_fail(s, name, "queue ids beyond %u (0x%x)", NVME_NUM_QUEUES - 1, m);
    for (unsigned qid = 1; qid < NVME_NUM_QUEUES; qid++)
        if ((m & (1u << qid)) && qid > granted)
            snap_fail(s, name, "queue %u beyond the %u granted (Number of Queues)", qid, granted);
    if (m && !(im->cc & NVME_CC_EN))
        snap_fail(s, name, "queues exist while CC.EN is clear");
    if (m && !(m & 1u))
        snap_fail(s, name, "I/O queues without the admin queue");
    if ((im->csts & NVME_CSTS_RDY) && !(im->csts & NVME_CSTS_CFS) && !(m & 1u))
        snap_fail(s, name, "the controller is ready without an admin queue");
}

static void queues_state(struct nvme_ctrl *c, struct snap *s, struct ctrl_image *im)
{
    queue_mask_state(s, "cqs", &im->cq_mask, im->admin.ncqa, im);
    for (unsigned qid = 0; qid < NVME_NUM_QUEUES && !snap_error(s); qid++) {
        if (!(im->cq_mask & (1u << qid)))
            continue;
        struct queue_image *q = &im->cqs[qid];
        snap_enter(s, "cq%u", qid);
        queue_common_state(s, q, qid, NVME_CQE_SIZE);
        snap_bool(s, "phase", &q->phase);
        snap_bool(s, "ien", &q->ien);
        snap_u16(s, "iv", &q->iv);
        if (snap_loading(s) && q->iv >= c->msix.nvec)
            snap_fail(s, "iv", "vector %u, beyond the %u MSI-X vectors", q->iv, c->msix.nvec);
        snap_check(s, qid != 0 || (q->ien && q->iv == 0), "iv",
                   "the admin CQ interrupts on vector 0");
        snap_leave(s);
    }
    queue_mask_state(s, "sqs", &im->sq_mask, im->admin.nsqa, im);
    snap_check(s, (im->sq_mask & 1u) == (im->cq_mask & 1u), "sqs",
               "an admin SQ without the admin CQ, or the reverse");
    for (unsigned qid = 0; qid < NVME_NUM_QUEUES && !snap_error(s); qid++) {
        if (!(im->sq_mask & (1u << qid)))
            continue;
        struct queue_image *q = &im->sqs[qid];
        snap_enter(s, "sq%u", qid);
        queue_common_state(s, q, qid, NVME_SQE_SIZE);
        snap_u16(s, "cqid", &q->cqid);
        if (snap_loading(s) && (qid == 0) != (q->cqid == 0))
            snap_fail(s, "cqid", "CQ %u for SQ %u: only the admin queues pair with queue 0",
                      q->cqid, qid);
        else if (snap_loading(s) &&
                 (q->cqid >= NVME_NUM_QUEUES || !(im->cq_mask & (1u << q->cqid))))
            snap_fail(s, "cqid", "CQ %u does not exist", q->cqid);
        snap_bool(s, "active", &q->active);
        /* Only a fatal status stops an SQ and leaves it in place. */
        snap_check(s, q->active || (im->csts & NVME_CSTS_CFS), "active",
                   "a stopped SQ without controller fatal status");
        snap_leave(s);
    }
}

/* Puts a checked image in place: the controller is reset first, so the
 * queues the device had are gone (nothing is in flight: paused or
 * disabled). ctrl->lock held. Returns false if a request pool cannot be
 * allocated. */
static bool restore(struct nvme_ctrl *c, const struct ctrl_image *im, struct snap *s)
{
    controller_reset_locked(c);
    c->cc = im->cc;
    c->csts = im->csts;
    c->aqa = im->aqa;
    atomic_store(&c->intms, im->intms);
    c->asq = im->asq;
    c->acq = im->acq;
    /* Before the queues, which take their shadow entries from it. */
    c->dbbuf = im->dbbuf;
    c->dbbuf_dbs = im->dbbuf_dbs;
    c->dbbuf_eis = im->dbbuf_eis;
    nvme_admin_restore(c, &im->admin);
    atomic_store(&c->read_bytes, im->read_bytes);
    atomic_store(&c->write_bytes, im->write_bytes);
    atomic_store(&c->read_cmds, im->read_cmds);
    atomic_store(&c->write_cmds, im->write_cmds);
    c->created_ns = im->power_on_base_ns;
    c->io_queues = 0;
    uint32_t intx_pending = 0;
    for (unsigned qid = 0; qid < NVME_NUM_QUEUES; qid++) {
        if (!(im->cq_mask & (1u << qid)))
            continue;
        const struct queue_image *q = &im->cqs[qid];
        struct nvme_cq *cq = &c->cqs[qid];
        nvme_cq_init(c, cq, (uint16_t)qid, q->base, q->size, q->ien, q->iv);
        pthread_mutex_lock(&cq->lock);
        cq->head = q->head;
        cq->tail = q->tail;
        cq->phase = q->phase;
        pthread_mutex_unlock(&cq->lock);
        if (q->ien && q->head != q->tail)
            intx_pending |= 1u << qid;
        if (qid)
            c->io_queues++;
    }
    for (unsigned qid = 0; qid < NVME_NUM_QUEUES; qid++) {
        if (!(im->sq_mask & (1u << qid)))
            continue;
        const struct queue_image *q = &im->sqs[qid];
        struct nvme_sq *sq = &c->sqs[qid];
        if (qid && !nvme_sq_alloc_reqs(c, sq, q->size)) {
            snap_fail(s, "sqs", "no memory for the requests of SQ %u", qid);
            return false;
        }
        nvme_sq_init(c, sq, (uint16_t)qid, q->cqid, q->base, q->size);
        pthread_mutex_lock(&sq->lock);
        sq->head = q->head;
        sq->tail = q->tail;
        atomic_store(&sq->sqhd, q->head);
        sq->active = q->active;
        pthread_mutex_unlock(&sq->lock);
        if (qid) {
            c->cqs[q->cqid].sq_refs++;
            c->io_queues++;
        }
    }
    atomic_store(&c->intx_pending, intx_pending);
    atomic_store(&c->io_stopped, (c->csts & NVME_CSTS_SHST_MASK) != 0);
    atomic_store(&c->enabled, (c->csts & (NVME_CSTS_RDY | NVME_CSTS_CFS)) == NVME_CSTS_RDY);
    nvme_update_intx(c);
    return true;
}

static int nvme_state(struct device *dev, struct snap *s)
{
    struct nvme_ctrl *c = container_of(dev, struct nvme_ctrl, pci.dev);
    /* Queues, doorbells and completions stand still only while paused
     * (or with no queue at all); the vCPUs are stopped then, so nothing
     * moves CC.EN under this check. */
    pthread_mutex_lock(&c->lock);
    bool still = atomic_load(&c->paused) || !(c->cc & NVME_CC_EN);
    pthread_mutex_unlock(&c->lock);
    if (!still) {
        snap_fail(s, "cc", "the controller is enabled and not paused");
        return -1;
    }
    /* The function's own locks, outside the controller's (a load maps
     * BARs on the buses). */
    snap_enter(s, "pci");
    pci_device_state(&c->pci, s);
    snap_leave(s);
    snap_enter(s, "msix");
    msix_state(&c->msix, s);
    snap_leave(s);

    pthread_mutex_lock(&c->lock);
    struct ctrl_image im;
    if (!snap_loading(s))
        capture(c, &im);
    else
        memset(&im, 0, sizeof(im));

    /* The namespace comes from the configuration; a state for another
     * disk geometry is refused. */
    snap_u64(s, "nsze", &im.nsze);
    if (snap_loading(s) && im.nsze != c->nsze)
        snap_fail(s, "nsze", "%llu blocks; this namespace has %llu", (unsigned long long)im.nsze,
                  (unsigned long long)c->nsze);
    snap_u32(s, "lba_size", &im.lba_size);
    if (snap_loading(s) && im.lba_size != c->lba_size)
        snap_fail(s, "lba_size", "%u bytes; this namespace's blocks have %u", im.lba_size,
                  c->lba_size);

    snap_u32(s, "cc", &im.cc);
    snap_check(s, (im.cc & ~NVME_CC_WRITABLE) == 0, "cc", "reserved bits set");
    snap_u32(s, "csts", &im.csts);
    snap_check(s, (im.csts & ~(NVME_CSTS_RDY | NVME_CSTS_CFS | NVME_CSTS_SHST_MASK)) == 0, "csts",
               "reserved bits set");
    uint32_t shst = im.csts & NVME_CSTS_SHST_MASK;
    snap_check(s, shst == 0 || shst == NVME_CSTS_SHST_COMPLETE, "csts",
               "a shutdown status this controller never reports");
    snap_check(s, !(im.csts & NVME_CSTS_RDY) || (im.cc & NVME_CC_EN), "csts",
               "ready while CC.EN is clear");
    snap_u32(s, "aqa", &im.aqa);
    snap_check(s, (im.aqa & ~NVME_AQA_WRITABLE) == 0, "aqa", "reserved bits set");
    snap_u64(s, "asq", &im.asq);
    snap_check(s, (im.asq & 0xfff) == 0, "asq", "not page aligned");
    snap_u64(s, "acq", &im.acq);
    snap_check(s, (im.acq & 0xfff) == 0, "acq", "not page aligned");
    snap_u32(s, "intms", &im.intms);
    if (snap_version(s) >= 2)
        dbbuf_state(c, s, &im);

    nvme_admin_state(c, s, &im.admin);

    /* SMART: the counters, and the clock reading power-on hours count from. */
    snap_u64(s, "read_bytes", &im.read_bytes);
    snap_u64(s, "write_bytes", &im.write_bytes);
    snap_u64(s, "read_cmds", &im.read_cmds);
    snap_u64(s, "write_cmds", &im.write_cmds);
    snap_u64(s, "power_on_base_ns", &im.power_on_base_ns);

    queues_state(c, s, &im);

    bool loaded = snap_loading(s) && !snap_error(s) && restore(c, &im, s);
    pthread_mutex_unlock(&c->lock);
    /* A loaded controller is where the saved one was: paused, until the
     * machine resumes it (which looks at every doorbell). */
    if (loaded)
        nvme_pause(dev);
    return snap_error(s);
}

static const struct device_ops nvme_device_ops = {
    .drop_decodes = pci_device_drop_decodes,
    .reset = nvme_reset,
    .dump = nvme_dump,
    .pause = nvme_pause,
    .resume = nvme_resume,
    .state = nvme_state,
    .kind = "nvme",
    .state_version = 2, /* 2: Doorbell Buffer Config */
    .destroy = nvme_destroy,
};

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static void set_identity(struct nvme_ctrl *c, const char *serial)
{
    /* NVMe strings are printable ASCII, space padded. */
    size_t n = strlen(serial);
    for (size_t i = 0; i < 20; i++) {
        char ch = i < n ? serial[i] : ' ';
        c->serial[i] = (ch >= 0x20 && ch < 0x7f) ? ch : '_';
    }
    c->serial[20] = '\0';
    if (n > 20)
        log_warn("%s: serial number \"%s\" truncated to 20 characters", name_of(c), serial);
    /* A stable NGUID derived from the serial: unique per block_dev name. */
    uint64_t hi = fnv1a(0xcbf29ce484222325ull, "propolis-nvme:");
    hi = fnv1a(hi, serial);
    uint64_t lo = fnv1a(hi ^ 0x9e3779b97f4a7c15ull, serial);
    for (unsigned i = 0; i < 8; i++) {
        c->nguid[i] = (uint8_t)(hi >> (56 - 8 * i));
        c->nguid[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
    }
}

static bool setup_namespace(struct nvme_ctrl *c, struct block_backend *be)
{
    const struct block_info *info = &be->info;
    uint32_t bs = info->block_size;
    if (bs < 512 || (bs & (bs - 1)) || bs > NVME_MAX_XFER) {
        log_error("%s: block size %u of %s is not usable for NVMe", name_of(c), bs,
                  be->name ? be->name : "the back end");
        return false;
    }
    c->lba_size = bs;
    c->lba_shift = (unsigned)__builtin_ctz(bs);
    c->nsze = info->size >> c->lba_shift;
    if (c->nsze == 0)
        log_warn("%s: the back end is smaller than one block: empty namespace", name_of(c));
    c->read_only = info->read_only;
    c->can_discard = info->can_discard && !info->read_only;
    c->can_write_zeroes = info->can_write_zeroes && !info->read_only;
    c->vwc = info->volatile_cache;
    return true;
}

/* The worker: an io_loop on its own thread, named after the device. */
static int start_worker(struct nvme_ctrl *c, const char *name)
{
    c->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->kick_fd < 0) {
        log_error("%s: eventfd: %s", name, strerror(errno));
        return -1;
    }
    if (io_loop_watch(&c->loop, &c->kick_watch, c->kick_fd, EPOLLIN, worker_kicked, c) < 0)
        return -1;
    int err = io_loop_start(&c->loop);
    if (err) {
        log_error("%s: cannot start the I/O worker: %s", name, strerror(-err));
        return -1;
    }
    c->loop_started = true;
    return 0;
}

struct nvme_ctrl *nvme_create(const struct nvme_params *params)
{
    const char *name = params->name ? params->name : "nvme";
    struct block_backend *be = params->backend;
    const char *serial = params->serial ? params->serial : be->name;
    struct nvme_ctrl *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("%s: out of memory", name);
        return NULL;
    }
    /* First, so that every later failure can go through nvme_destroy. */
    if (io_loop_init(&c->loop, name) < 0) {
        free(c);
        return NULL;
    }
    io_watch_init(&c->kick_watch);
    c->kick_fd = -1;
    static const struct pci_ids ids = {
        .vendor_id = NVME_PCI_VENDOR_ID,
        .device_id = NVME_PCI_DEVICE_ID,
        .subsystem_vendor_id = NVME_PCI_VENDOR_ID,
        .subsystem_id = NVME_PCI_DEVICE_ID,
        .class_code = NVME_PCI_CLASS,
    };
    pci_device_init(&c->pci, name, &nvme_device_ops, &ids, &nvme_pci_ops);
    c->mem = params->mem;
    c->be = be;
    vm_clock_init(&c->own_clock);
    c->clock = params->clock ? params->clock : &c->own_clock;
    set_identity(c, serial ? serial : "");
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->work_lock, NULL);
    pthread_cond_init(&c->idle_cond, NULL);
    for (unsigned qid = 0; qid < NVME_NUM_QUEUES; qid++) {
        pthread_mutex_init(&c->sqs[qid].lock, NULL);
        pthread_cond_init(&c->sqs[qid].idle, NULL);
        pthread_mutex_init(&c->cqs[qid].lock, NULL);
        c->sqs[qid].qid = (uint16_t)qid;
        c->cqs[qid].qid = (uint16_t)qid;
    }
    c->nsqa = c->ncqa = NVME_MAX_IO_QUEUES;
    c->created_ns = vm_clock_now(c->clock);

    if (!setup_namespace(c, be) ||
        pci_register_bar(&c->pci, 0, PCI_BAR_MEM64, false, NVME_BAR0_SIZE, &nvme_bar0_ops, c) < 0 ||
        pci_register_bar(&c->pci, NVME_MSIX_BAR, PCI_BAR_MEM64, false, NVME_MSIX_BAR_SIZE,
                         &msix_bar_io_ops, &c->msix) < 0 ||
        msix_init(&c->msix, &c->pci, NVME_MSIX_VECTORS, NVME_MSIX_BAR, NVME_MSIX_TABLE_OFFSET,
                  NVME_MSIX_PBA_OFFSET, params->msix_sink) < 0) {
        nvme_destroy(&c->pci.dev);
        return NULL;
    }
    pci_set_interrupt_pin(&c->pci, PCI_INTA);
    nvme_features_default(c); /* after setup_namespace: the write cache follows vwc */

    if (start_worker(c, name) < 0) {
        nvme_destroy(&c->pci.dev);
        return NULL;
    }
    log_debug("%s: NVMe controller, serial \"%s\", %llu blocks of %u bytes%s", name, c->serial,
              (unsigned long long)c->nsze, c->lba_size, c->read_only ? ", read-only" : "");
    return c;
}

struct pci_device *nvme_pci_device(struct nvme_ctrl *c)
{
    return &c->pci;
}
