/* Activation's generation check, start-up reconciliation and live repair
 * (upstairs_int.h): extents the three downstairs disagree on are copied
 * from crucible's choice of source with ordinary reads and writes, which
 * every crucible downstairs takes; a faulted downstairs is brought up to
 * date the same way while guest I/O goes on. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/crucible/blocks.h"
#include "block/crucible/upstairs_int.h"

/* ---- activation ---- */

static void start_reconciliation(struct crucible_upstairs *up);

/* All three sent their ExtentVersions: check the generation, pick the
 * first flush number, reconcile what they disagree on. */
void cru_all_in_quorum(struct crucible_upstairs *up)
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
            cru_client_reset_io(c);
            c->state = CL_IDLE;
            c->attempts = 0;
            cru_schedule_reconnect(c, cru_now_ns());
        }
        return;
    }
    if (up->generation == 0) {
        cru_up_fail(up, "generation", "generation 0 is not allowed by crucible (use 1 or more)");
        return;
    }
    if (up->generation <= max_gen) {
        cru_up_fail(up, "generation",
                    "generation %" PRIu64 " is not above the highest generation the downstairs "
                    "hold (%" PRIu64 "): raise it to %" PRIu64
                    " or more, or set generation = \"auto\"",
                    up->generation, max_gen, max_gen + 1);
        return;
    }
    up->next_flush = max_flush + 1;
    if (up->read_only) {
        /* A read-only disk writes nothing, so crucible does not reconcile
         * for it: every downstairs serves reads as it is. */
        for (int i = 0; i < NCLIENTS; i++)
            up->clients[i].state = CL_ACTIVE;
        cru_up_set_active(up);
        return;
    }
    start_reconciliation(up);
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
    cru_set_state(up, UP_RECONCILING);
    for (int i = 0; i < NCLIENTS; i++)
        up->clients[i].state = CL_ACTIVE;
    up->repair_extent = 0;
    up->repair_block = 0;
    up->repair_source = -1;
    up->repaired_extents = 0;
    repair_step(up);
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
        struct job *j = cru_new_job(JOB_READ, 1);
        if (!j) {
            cru_up_fail(up, "targets", "out of memory during reconciliation");
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
        if (cru_enqueue(up, j) < 0) {
            cru_free_job(up, j);
            cru_up_fail(up, "targets", "out of memory during reconciliation");
        }
        return;
    }
    if (!up->repair_flushing && up->repaired_extents) {
        struct job *f = cru_new_job(JOB_FLUSH, NCLIENTS);
        if (!f) {
            cru_up_fail(up, "targets", "out of memory during reconciliation");
            return;
        }
        f->internal = true;
        f->flush_number = up->next_flush++;
        up->repair_flushing = up->repair_busy = true;
        if (cru_enqueue(up, f) < 0) {
            cru_free_job(up, f);
            cru_up_fail(up, "targets", "out of memory during reconciliation");
        }
        return;
    }
    cru_up_set_active(up);
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
int cru_repair_write(struct crucible_upstairs *up, struct job *r, uint8_t *raw,
                     const struct crucible_read_context *rc)
{
    struct job *w = cru_new_job(JOB_WRITE, NCLIENTS);
    if (!w || !(w->ctx = calloc(r->count, sizeof(*w->ctx)))) {
        cru_data_free(up, raw, r->count * up->block_size);
        if (w)
            cru_free_job(up, w);
        return -1;
    }
    w->internal = true;
    w->start = r->start;
    w->count = r->count;
    w->data = raw;
    if (stored_contexts(up, w, rc) < 0) {
        cru_free_job(up, w);
        return -1;
    }
    up->repair_busy = true;
    if (cru_enqueue(up, w) < 0) {
        cru_free_job(up, w);
        return -1;
    }
    return 0;
}

void cru_repair_job_done(struct crucible_upstairs *up, struct job *j, bool ok)
{
    if (up->state == UP_ACTIVE) {
        cru_lr_job_done(up, j, ok);
        return;
    }
    if (up->state != UP_RECONCILING)
        return;
    if (j->kind == JOB_READ && ok)
        return; /* its blocks are being written on (repair_write) */
    up->repair_busy = false;
    if (!ok) {
        cru_up_fail(up, "targets", "reconciliation failed: job %" PRIu64 " (%s) did not complete",
                    j->id,
                    j->kind == JOB_READ    ? "read"
                    : j->kind == JOB_WRITE ? "write"
                                           : "flush");
        return;
    }
    if (j->kind == JOB_FLUSH) {
        up->repair_flushing = false;
        cru_up_set_active(up);
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

void cru_lr_start(struct crucible_upstairs *up, struct client *c)
{
    if (up->read_only) {
        /* Nothing to copy: a read-only disk wrote nothing it missed. */
        c->state = CL_ACTIVE;
        c->mode = MODE_NEW;
        c->active_since_ns = cru_now_ns();
        return;
    }
    int source = -1;
    for (int i = 0; i < NCLIENTS; i++)
        if (up->clients[i].state == CL_ACTIVE)
            source = i;
    if (up->lr_client >= 0 || source < 0) {
        cru_client_drop(c, up->lr_client >= 0 ? "another downstairs is being repaired; later"
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
             cru_target_text(up, c->index), cru_target_text(up, source));
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
        enum route r = cru_lr_route(up, j);
        if (r == ROUTE_SEND) {
            c->held_jobs--;
            c->held_bytes -= cru_job_bytes(up, j);
            cru_send_job(up, c, j);
        } else if (r == ROUTE_SKIP) {
            cru_job_set_state(up, c, j, JS_SKIPPED);
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
        c->active_since_ns = cru_now_ns();
        log_info("block_dev.%s: downstairs %s is repaired and active again", up->name,
                 cru_target_text(up, c->index));
        cru_send_flush(up, true);
        return;
    }
    if (up->clients[up->lr_source].state != CL_ACTIVE) {
        cru_client_fault(c, "its repair source is gone; it starts over");
        return;
    }
    uint64_t per_extent = up->cfg.blocks_per_extent;
    uint64_t max = JOB_MAX_BYTES / up->block_size, left = per_extent - up->lr_block;
    struct job *r = cru_new_job(JOB_READ, 1);
    if (!r) {
        cru_client_fault(c, "out of memory for its repair");
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
    if (cru_enqueue(up, r) < 0) {
        cru_free_job(up, r);
        up->lr_busy = false;
        cru_client_fault(c, "out of memory for its repair");
    }
}

/* The source's blocks of piece r, as stored: written to the repaired
 * downstairs ahead of what is held for it; the extent done, the held
 * jobs follow. Takes raw. */
void cru_lr_write(struct crucible_upstairs *up, struct job *r, uint8_t *raw,
                  const struct crucible_read_context *rc)
{
    struct client *c = lr_repaired(up);
    struct job *w = c ? cru_new_job(JOB_WRITE, 1) : NULL;
    if (!w || !(w->ctx = calloc(r->count, sizeof(*w->ctx)))) {
        cru_data_free(up, raw, r->count * up->block_size);
        if (w)
            cru_free_job(up, w);
        if (c)
            cru_client_fault(c, "out of memory for its repair");
        return;
    }
    w->internal = w->repair_direct = w->answered = true;
    w->start = r->start;
    w->count = r->count;
    w->data = raw;
    if (stored_contexts(up, w, rc) < 0) {
        cru_free_job(up, w);
        cru_client_fault(c, "its repair could not seal a block");
        return;
    }
    for (int i = 0; i < NCLIENTS; i++)
        if (i != c->index) {
            w->state[i] = JS_SKIPPED;
            w->failed++;
        }
    if (cru_enqueue(up, w) < 0) {
        cru_free_job(up, w);
        cru_client_fault(c, "out of memory for its repair");
        return;
    }
    up->lr_block += r->count;
    if (up->lr_block >= up->cfg.blocks_per_extent) {
        up->lr_block = 0;
        up->lr_extent++;
        lr_release(up, c);
    }
}

void cru_lr_job_done(struct crucible_upstairs *up, struct job *j, bool ok)
{
    if (j->kind != JOB_READ || up->lr_client < 0)
        return; /* a repair write that fails faults its downstairs (io_reply) */
    up->lr_busy = false;
    if (!ok) {
        cru_client_fault(lr_repaired(up), "its repair source could not be read");
        return;
    }
    lr_step(up);
}
