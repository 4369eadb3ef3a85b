/* NVMe I/O: PRP walking (the only path from command data pointers to host
 * memory, through guest_mem) and the NVM command set (Read, Write, Flush,
 * Write Zeroes, Dataset Management) on the block back end. Commands are
 * fetched and started on the controller's worker thread and complete on
 * back-end threads. */
#include "nvme/nvme_int.h"

#include <errno.h>
#include <string.h>

#define STATUS_PENDING 0xffffu /* submitted: the completion callback finishes it */

static const char *name_of(const struct nvme_ctrl *c)
{
    return c->pci.dev.name ? c->pci.dev.name : "nvme";
}

/* ---- PRPs ---- */

struct prp_walk {
    struct nvme_ctrl *c;
    bool to_guest;
    struct iovec *iov;
    unsigned max, n;
};

static uint16_t add_segment(struct prp_walk *w, uint64_t gpa, uint64_t len)
{
    void *p = guest_mem_ptr(w->c->mem, gpa, len, w->to_guest);
    if (!p) {
        log_limited(&w->c->io_log, LOG_WARNING,
                    "%s: PRP entry 0x%llx (+%llu bytes) is not %sguest RAM: data transfer "
                    "error",
                    name_of(w->c), (unsigned long long)gpa, (unsigned long long)len,
                    w->to_guest ? "writable " : "");
        return NVME_ERR(NVME_SC_DATA_XFER_ERROR);
    }
    if (w->n > 0) {
        struct iovec *last = &w->iov[w->n - 1];
        if ((uint8_t *)last->iov_base + last->iov_len == (uint8_t *)p) {
            last->iov_len += len;
            return NVME_OK;
        }
    }
    if (w->n == w->max)
        return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INTERNAL);
    w->iov[w->n++] = (struct iovec){p, len};
    return NVME_OK;
}

static uint16_t bad_offset(struct nvme_ctrl *c, const char *what, uint64_t value)
{
    log_limited(&c->io_log, LOG_WARNING, "%s: %s 0x%llx is misaligned: PRP offset invalid",
                name_of(c), what, (unsigned long long)value);
    return NVME_ERR(NVME_SC_PRP_OFFSET_INVALID);
}

uint16_t nvme_map_prp(struct nvme_ctrl *c, uint64_t prp1, uint64_t prp2, uint64_t len,
                      bool to_guest, struct iovec *iov, unsigned max, unsigned *cnt)
{
    const uint64_t page = NVME_PAGE_SIZE, mask = NVME_PAGE_SIZE - 1;
    struct prp_walk w = {c, to_guest, iov, max, 0};
    uint16_t st;
    *cnt = 0;
    if (len == 0)
        return NVME_OK;
    if (len > NVME_MAX_XFER)
        return NVME_ERR(NVME_SC_INVALID_FIELD);
    if (prp1 & 3)
        return bad_offset(c, "PRP entry 1", prp1);
    uint64_t seg = page - (prp1 & mask);
    if (seg > len)
        seg = len;
    if ((st = add_segment(&w, prp1, seg)) != NVME_OK)
        return st;
    uint64_t rem = len - seg;
    if (rem == 0)
        goto done;
    if (rem <= page) {
        /* PRP entry 2 is the second data page. */
        if (prp2 & mask)
            return bad_offset(c, "PRP entry 2", prp2);
        if ((st = add_segment(&w, prp2, rem)) != NVME_OK)
            return st;
        goto done;
    }
    /* PRP entry 2 points to a PRP list; the last entry of a full list page
     * points to the next list page. len <= MDTS bounds the walk. */
    uint64_t list = prp2;
    if (list & 7)
        return bad_offset(c, "PRP list pointer", list);
    uint64_t entries[NVME_PAGE_SIZE / 8];
    while (rem > 0) {
        uint64_t room = (page - (list & mask)) / 8;
        uint64_t need = (rem + page - 1) / page;
        bool chain = need > room;
        uint64_t take = chain ? room : need;
        if (!guest_mem_read(c->mem, list, entries, take * 8)) {
            log_limited(&c->io_log, LOG_WARNING,
                        "%s: PRP list at 0x%llx is not guest RAM: data transfer error", name_of(c),
                        (unsigned long long)list);
            return NVME_ERR(NVME_SC_DATA_XFER_ERROR);
        }
        uint64_t data = chain ? take - 1 : take;
        for (uint64_t i = 0; i < data; i++) {
            if (entries[i] & mask)
                return bad_offset(c, "PRP list entry", entries[i]);
            seg = rem < page ? rem : page;
            if ((st = add_segment(&w, entries[i], seg)) != NVME_OK)
                return st;
            rem -= seg;
        }
        if (chain) {
            list = entries[take - 1];
            if (list & mask)
                return bad_offset(c, "chained PRP list pointer", list);
        }
    }
done:
    *cnt = w.n;
    return NVME_OK;
}

uint16_t nvme_prp_write(struct nvme_ctrl *c, const struct nvme_sqe *cmd, const void *buf,
                        size_t len, size_t xfer_len)
{
    struct iovec iov[NVME_MAX_IOV];
    unsigned n;
    uint16_t st = nvme_map_prp(c, cmd->prp1, cmd->prp2, xfer_len, true, iov, NVME_MAX_IOV, &n);
    if (st != NVME_OK)
        return st;
    const uint8_t *src = buf;
    size_t left = len;
    for (unsigned i = 0; i < n; i++) {
        size_t copy = left < iov[i].iov_len ? left : iov[i].iov_len;
        memcpy(iov[i].iov_base, src, copy);
        memset((uint8_t *)iov[i].iov_base + copy, 0, iov[i].iov_len - copy);
        src += copy;
        left -= copy;
    }
    return NVME_OK;
}

uint16_t nvme_prp_read(struct nvme_ctrl *c, const struct nvme_sqe *cmd, void *buf, size_t len)
{
    struct iovec iov[NVME_MAX_IOV];
    unsigned n;
    uint16_t st = nvme_map_prp(c, cmd->prp1, cmd->prp2, len, false, iov, NVME_MAX_IOV, &n);
    if (st != NVME_OK)
        return st;
    uint8_t *dst = buf;
    for (unsigned i = 0; i < n; i++) {
        memcpy(dst, iov[i].iov_base, iov[i].iov_len);
        dst += iov[i].iov_len;
    }
    return NVME_OK;
}

/* ---- Request completion ---- */

static uint16_t errno_status(int err, enum block_op op)
{
    switch (err) {
    case 0:
        return NVME_OK;
    case -EROFS:
        return NVME_ERR(NVME_SC_NS_WRITE_PROTECTED);
    case -EINVAL:
        return NVME_ERR(NVME_SC_INVALID_FIELD);
    case -ENOSPC:
        return NVME_ERR(NVME_SC_CAP_EXCEEDED);
    default:
        if (op == BLOCK_OP_READ)
            return NVME_STATUS(NVME_SCT_MEDIA, NVME_SC_READ_ERROR);
        if (op == BLOCK_OP_WRITE || op == BLOCK_OP_WRITE_ZEROES)
            return NVME_STATUS(NVME_SCT_MEDIA, NVME_SC_WRITE_FAULT);
        return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INTERNAL);
    }
}

/* Returns req to its SQ's pool and wakes the worker if the SQ starved.
 * Nothing of the controller may be touched after the unlock: once the count
 * drops to zero the SQ may be torn down and the controller destroyed. So
 * the kick happens under sq->lock, before the count drops (the lock order
 * puts work_lock inside sq->lock). */
static void req_release(struct nvme_ctrl *c, struct nvme_req *req)
{
    struct nvme_sq *sq = req->sq;
    pthread_mutex_lock(&sq->lock);
    req->next = sq->free;
    sq->free = req;
    if (sq->starved) {
        sq->starved = false;
        nvme_kick(c, sq->qid);
    }
    if (--sq->inflight == 0)
        pthread_cond_broadcast(&sq->idle);
    pthread_mutex_unlock(&sq->lock);
}

static void req_complete(struct nvme_ctrl *c, struct nvme_req *req, uint16_t status)
{
    struct nvme_sq *sq = req->sq;
    if (status == NVME_OK) {
        if (req->opcode == NVME_CMD_READ) {
            atomic_fetch_add(&c->read_cmds, 1);
            atomic_fetch_add(&c->read_bytes, req->bytes);
        } else if (req->opcode == NVME_CMD_WRITE) {
            atomic_fetch_add(&c->write_cmds, 1);
            atomic_fetch_add(&c->write_bytes, req->bytes);
        }
    }
    /* sq->cqid and sq->qid are fixed while a command of the SQ is in flight. */
    nvme_cq_post(c, &c->cqs[sq->cqid], sq->qid, atomic_load(&sq->sqhd), req->cid, status, 0);
    req_release(c, req);
}

static void io_done(struct block_request *breq, int status)
{
    struct nvme_req *req = breq->opaque;
    struct nvme_ctrl *c = req->ctrl;
    if (status == 0 && req->flush_after) {
        /* FUA, or the write cache is off: make it durable before completing.
         * The flush is submitted from the worker, not from this back-end
         * thread. */
        req->flush_after = false;
        nvme_queue_followup(c, req);
        return;
    }
    if (status < 0)
        log_limited(&c->io_log, LOG_WARNING, "%s: SQ %u cid %u: %s of %llu bytes at %llu: %s",
                    name_of(c), req->sq->qid, req->cid, block_op_name(breq->op),
                    (unsigned long long)breq->len, (unsigned long long)breq->offset,
                    strerror(-status));
    req_complete(c, req, errno_status(status, breq->op));
}

static uint16_t submit(struct nvme_ctrl *c, struct nvme_req *req, enum block_op op, uint64_t offset,
                       uint64_t len, unsigned iovcnt)
{
    req->breq = (struct block_request){
        .op = op,
        .offset = offset,
        .len = len,
        .iov = iovcnt ? req->iov : NULL,
        .iovcnt = iovcnt,
        .complete = io_done,
        .opaque = req,
    };
    int ret = block_submit(c->be, &req->breq);
    if (ret < 0) {
        log_limited(&c->io_log, LOG_WARNING, "%s: %s of %llu bytes at %llu refused: %s", name_of(c),
                    block_op_name(op), (unsigned long long)len, (unsigned long long)offset,
                    strerror(-ret));
        return errno_status(ret, op);
    }
    return STATUS_PENDING;
}

static uint16_t dsm_continue(struct nvme_ctrl *c, struct nvme_req *req);

void nvme_io_followup(struct nvme_ctrl *c, struct nvme_req *req)
{
    uint16_t st = req->opcode == NVME_CMD_DSM ? dsm_continue(c, req)
                                              : submit(c, req, BLOCK_OP_FLUSH, 0, 0, 0);
    if (st != STATUS_PENDING)
        req_complete(c, req, st);
}

/* ---- NVM commands ---- */

static bool lba_range_ok(const struct nvme_ctrl *c, uint64_t slba, uint64_t nlb)
{
    return slba < c->nsze && nlb <= c->nsze - slba;
}

static uint16_t lba_range_error(struct nvme_ctrl *c, const struct nvme_sqe *cmd, uint64_t slba,
                                uint64_t nlb)
{
    log_limited(&c->io_log, LOG_WARNING,
                "%s: opcode 0x%02x cid %u: LBAs %llu+%llu beyond the namespace (%llu blocks)",
                name_of(c), cmd->opcode, cmd->cid, (unsigned long long)slba,
                (unsigned long long)nlb, (unsigned long long)c->nsze);
    return NVME_ERR(NVME_SC_LBA_RANGE);
}

static uint16_t check_nsid(struct nvme_ctrl *c, const struct nvme_sqe *cmd, bool broadcast_ok)
{
    if (cmd->nsid == 1 || (broadcast_ok && cmd->nsid == 0xffffffffu))
        return NVME_OK;
    log_limited(&c->io_log, LOG_WARNING, "%s: opcode 0x%02x cid %u: no namespace %u", name_of(c),
                cmd->opcode, cmd->cid, cmd->nsid);
    return NVME_ERR(NVME_SC_INVALID_NS);
}

static bool wants_flush(const struct nvme_ctrl *c, const struct nvme_sqe *cmd)
{
    return c->vwc && ((cmd->cdw12 & NVME_RW_FUA) || !atomic_load(&c->write_cache));
}

static uint16_t io_read_write(struct nvme_ctrl *c, struct nvme_req *req, const struct nvme_sqe *cmd,
                              bool write)
{
    uint16_t st = check_nsid(c, cmd, false);
    if (st != NVME_OK)
        return st;
    uint64_t slba = cmd->cdw10 | ((uint64_t)cmd->cdw11 << 32);
    uint64_t nlb = (uint64_t)(cmd->cdw12 & 0xffff) + 1;
    if (write && c->read_only)
        return NVME_ERR(NVME_SC_NS_WRITE_PROTECTED);
    if (!lba_range_ok(c, slba, nlb))
        return lba_range_error(c, cmd, slba, nlb);
    uint64_t len = nlb << c->lba_shift;
    if (len > NVME_MAX_XFER) {
        log_limited(&c->io_log, LOG_WARNING,
                    "%s: cid %u: transfer of %llu bytes exceeds MDTS (%llu): invalid field",
                    name_of(c), cmd->cid, (unsigned long long)len,
                    (unsigned long long)NVME_MAX_XFER);
        return NVME_ERR(NVME_SC_INVALID_FIELD);
    }
    unsigned n;
    st = nvme_map_prp(c, cmd->prp1, cmd->prp2, len, !write, req->iov, NVME_MAX_IOV, &n);
    if (st != NVME_OK)
        return st;
    req->bytes = len;
    req->flush_after = write && wants_flush(c, cmd);
    return submit(c, req, write ? BLOCK_OP_WRITE : BLOCK_OP_READ, slba << c->lba_shift, len, n);
}

static uint16_t io_write_zeroes(struct nvme_ctrl *c, struct nvme_req *req,
                                const struct nvme_sqe *cmd)
{
    uint16_t st = check_nsid(c, cmd, false);
    if (st != NVME_OK)
        return st;
    uint64_t slba = cmd->cdw10 | ((uint64_t)cmd->cdw11 << 32);
    uint64_t nlb = (uint64_t)(cmd->cdw12 & 0xffff) + 1;
    if (c->read_only)
        return NVME_ERR(NVME_SC_NS_WRITE_PROTECTED);
    if (!lba_range_ok(c, slba, nlb))
        return lba_range_error(c, cmd, slba, nlb);
    if (!c->can_write_zeroes)
        return NVME_ERR(NVME_SC_INVALID_OPCODE); /* not in ONCS */
    req->flush_after = wants_flush(c, cmd);
    return submit(c, req, BLOCK_OP_WRITE_ZEROES, slba << c->lba_shift, nlb << c->lba_shift, 0);
}

/* Deallocates the ranges one after the other, each started from the worker
 * (no allocation, no recursion into the back end). */
static void dsm_done(struct block_request *breq, int status)
{
    struct nvme_req *req = breq->opaque;
    struct nvme_ctrl *c = req->ctrl;
    /* Deallocation is advisory: a back end that cannot do it is no error. */
    if (status < 0 && status != -EOPNOTSUPP) {
        log_limited(&c->io_log, LOG_WARNING, "%s: SQ %u cid %u: deallocate failed: %s", name_of(c),
                    req->sq->qid, req->cid, strerror(-status));
        req_complete(c, req, errno_status(status, BLOCK_OP_DISCARD));
    } else if (req->dsm_next < req->dsm_count) {
        nvme_queue_followup(c, req);
    } else {
        req_complete(c, req, NVME_OK);
    }
}

static uint16_t dsm_continue(struct nvme_ctrl *c, struct nvme_req *req)
{
    while (req->dsm_next < req->dsm_count) {
        const struct nvme_dsm_range *r = &req->ranges[req->dsm_next++];
        req->breq = (struct block_request){
            .op = BLOCK_OP_DISCARD,
            .offset = r->slba << c->lba_shift,
            .len = (uint64_t)r->nlb << c->lba_shift,
            .complete = dsm_done,
            .opaque = req,
        };
        int ret = block_submit(c->be, &req->breq);
        if (ret == 0)
            return STATUS_PENDING;
        if (ret != -EOPNOTSUPP)
            return errno_status(ret, BLOCK_OP_DISCARD);
    }
    return NVME_OK;
}

static uint16_t io_dsm(struct nvme_ctrl *c, struct nvme_req *req, const struct nvme_sqe *cmd)
{
    uint16_t st = check_nsid(c, cmd, false);
    if (st != NVME_OK)
        return st;
    unsigned nr = (cmd->cdw10 & 0xff) + 1;
    if (!(cmd->cdw11 & NVME_DSM_AD))
        return NVME_OK; /* attributes only: nothing to do */
    if (c->read_only)
        return NVME_ERR(NVME_SC_NS_WRITE_PROTECTED);
    st = nvme_prp_read(c, cmd, req->ranges, nr * sizeof(req->ranges[0]));
    if (st != NVME_OK)
        return st;
    unsigned count = 0;
    for (unsigned i = 0; i < nr; i++) {
        struct nvme_dsm_range r = req->ranges[i];
        if (r.nlb == 0)
            continue;
        if (!lba_range_ok(c, r.slba, r.nlb))
            return lba_range_error(c, cmd, r.slba, r.nlb);
        req->ranges[count++] = r;
    }
    if (!c->can_discard)
        return NVME_OK;
    req->dsm_next = 0;
    req->dsm_count = (uint16_t)count;
    return dsm_continue(c, req);
}

static uint16_t io_exec(struct nvme_ctrl *c, struct nvme_req *req, const struct nvme_sqe *cmd)
{
    if (cmd->flags & 0xc3) { /* fused operations, SGLs */
        log_limited(&c->io_log, LOG_WARNING,
                    "%s: cid %u: fused operation or SGL (flags 0x%x) not supported", name_of(c),
                    cmd->cid, cmd->flags);
        return NVME_ERR(NVME_SC_INVALID_FIELD);
    }
    switch (cmd->opcode) {
    case NVME_CMD_FLUSH: {
        uint16_t st = check_nsid(c, cmd, true);
        if (st != NVME_OK || !c->vwc)
            return st;
        return submit(c, req, BLOCK_OP_FLUSH, 0, 0, 0);
    }
    case NVME_CMD_READ:
        return io_read_write(c, req, cmd, false);
    case NVME_CMD_WRITE:
        return io_read_write(c, req, cmd, true);
    case NVME_CMD_WRITE_ZEROES:
        return io_write_zeroes(c, req, cmd);
    case NVME_CMD_DSM:
        return io_dsm(c, req, cmd);
    default:
        log_limited(&c->io_log, LOG_INFO, "%s: I/O opcode 0x%02x not supported", name_of(c),
                    cmd->opcode);
        return NVME_ERR(NVME_SC_INVALID_OPCODE);
    }
}

bool nvme_io_process_sq(struct nvme_ctrl *c, struct nvme_sq *sq)
{
    for (unsigned n = 0; n < NVME_FETCH_BATCH; n++) {
        pthread_mutex_lock(&sq->lock);
        if (!sq->active || atomic_load(&c->io_stopped) || !atomic_load(&c->enabled) ||
            atomic_load(&c->paused)) {
            pthread_mutex_unlock(&sq->lock);
            return false;
        }
        /* Caught up: with shadow doorbells the driver may have written more
         * without ringing (or, idle, EventIdx now asks it to ring). */
        if (sq->head == sq->tail && !nvme_sq_shadow_refresh(c, sq)) {
            pthread_mutex_unlock(&sq->lock);
            return false;
        }
        if (!pci_bus_master_enabled(&c->pci)) {
            pthread_mutex_unlock(&sq->lock);
            log_limited(&c->io_log, LOG_WARNING,
                        "%s: SQ %u commands wait: bus mastering is disabled", name_of(c), sq->qid);
            return false;
        }
        struct nvme_req *req = sq->free;
        if (!req) {
            sq->starved = true; /* resumed when a request completes */
            pthread_mutex_unlock(&sq->lock);
            return false;
        }
        struct nvme_cq *cq = &c->cqs[sq->cqid];
        if (!nvme_cq_reserve(c, cq, sq->qid)) {
            pthread_mutex_unlock(&sq->lock);
            return false; /* resumed by the CQ head doorbell */
        }
        struct nvme_sqe cmd;
        uint64_t gpa = sq->base + (uint64_t)sq->head * NVME_SQE_SIZE;
        if (!guest_mem_read(c->mem, gpa, &cmd, sizeof(cmd))) {
            /* Checked at creation; RAM does not move. */
            nvme_cq_unreserve(cq);
            pthread_mutex_unlock(&sq->lock);
            log_limited(&c->io_log, LOG_ERROR, "%s: SQ %u entry at 0x%llx is not guest RAM",
                        name_of(c), sq->qid, (unsigned long long)gpa);
            return false;
        }
        sq->free = req->next;
        sq->inflight++;
        sq->head = (sq->head + 1) % sq->size;
        atomic_store(&sq->sqhd, sq->head);
        pthread_mutex_unlock(&sq->lock);

        req->next = NULL;
        req->cid = cmd.cid;
        req->opcode = cmd.opcode;
        req->flush_after = false;
        req->dsm_next = req->dsm_count = 0;
        req->bytes = 0;
        uint16_t st = io_exec(c, req, &cmd);
        if (st != STATUS_PENDING)
            req_complete(c, req, st);
    }
    return true;
}
