/* A test Downstairs: crucible's downstairs side of the protocol
 * (docs/crucible-protocol.md), serving one region kept in real files, on a
 * thread of its own, for the tests of the crucible upstairs. It negotiates
 * (version, read-only and encryption checks, the generation rules of
 * promotion, takeover with YouAreNoLongerActive), answers RegionInfo,
 * ExtentVersions, LastFlush, Ruok, and runs Write, WriteUnwritten,
 * ReadRequest, Flush and Barrier as crucible's downstairs does: write
 * hashes checked, per-extent dirty bits, flush and generation numbers
 * stamped on the dirty extents a flush covers. Jobs run in the order they
 * arrive (an upstairs sends each job after its dependencies).
 *
 * Faults on request: replies late, reads with bad blocks, generations
 * refused. TLS on request, requiring a client certificate.
 *
 * Region files in dir: extent-NNNN (the blocks) and extent-NNNN.meta (the
 * extent's generation, flush number and dirty bit, then each block's
 * context), our own format. */
#ifndef TESTS_SUPPORT_CRUCIBLE_DS_H
#define TESTS_SUPPORT_CRUCIBLE_DS_H

#include <stdbool.h>
#include <stdint.h>

#include "block/crucible/protocol.h"

struct crucible_ds_config {
    const char *dir; /* created if missing; an existing region is reopened */
    uint32_t block_size;
    uint64_t extent_size; /* blocks */
    uint32_t extent_count;
    bool encrypted;
    bool read_only;
    struct crucible_uuid region_uuid;
    /* Faults, for the upstairs' tests: */
    unsigned lag_ms;         /* every I/O reply sent this much late */
    bool corrupt_reads;      /* read replies carry blocks whose hash is wrong */
    uint64_t min_generation; /* promotions below it refused (the connection dropped) */
    bool hostile;            /* each I/O answered first with junk (cycling through kinds) */
    /* TLS as crucible's downstairs: its certificate and key, and the root
     * its clients' certificates must chain to (all NULL: plain TCP). */
    const char *tls_cert, *tls_key, *tls_root;
};

struct crucible_ds;

/* Serves cfg's region on a listening socket of 127.0.0.1 (port 0: any);
 * NULL on failure (logged to stderr). */
struct crucible_ds *crucible_ds_start(const struct crucible_ds_config *cfg, uint16_t port);
uint16_t crucible_ds_port(const struct crucible_ds *ds);
/* Closes every connection and the listener, joins the thread, frees. */
void crucible_ds_stop(struct crucible_ds *ds);

/* What the region holds now (for checks from the test's thread; takes the
 * downstairs' lock). */
void crucible_ds_extent_meta(struct crucible_ds *ds, uint32_t extent, uint64_t *gen,
                             uint64_t *flush, bool *dirty);

/* Stores count blocks from block on, as if they had been written and
 * flushed long ago (plain contexts; an unencrypted region): a prepared
 * image. Returns 0 or -1. */
int crucible_ds_store(struct crucible_ds *ds, uint64_t block, const uint8_t *data, uint64_t count);

/* Faults changed while serving: reply lag, and writes answered with an
 * I/O error (nothing stored). */
void crucible_ds_set_lag(struct crucible_ds *ds, unsigned lag_ms);
void crucible_ds_fail_writes(struct crucible_ds *ds, bool fail);
/* Stalled: connected, but reading and answering nothing (not even pings)
 * until unstalled. */
void crucible_ds_stall(struct crucible_ds *ds, bool stall);

/* Sets an extent's numbers (to make the downstairs disagree). */
void crucible_ds_set_extent_meta(struct crucible_ds *ds, uint32_t extent, uint64_t gen,
                                 uint64_t flush, bool dirty);

#endif
