/* The crucible upstairs (src/block/crucible/upstairs.c) against three test
 * downstairs (support/crucible_ds.c) over TCP in the test's own network
 * namespace: activation and I/O read back from every downstairs' region,
 * flushes stamping the extents, generation = "auto" three times in a row,
 * a generation below the region's refused at its key, encryption leaving
 * no plaintext in the region files, a downstairs stopped mid-write and
 * brought back (I/O goes on with two, the jobs are replayed to it),
 * reconciliation of a downstairs that missed writes while the disk was
 * closed or disagree on flush numbers and dirty bits, a corrupted block
 * read from another downstairs, a faulted downstairs repaired while
 * guest writes go on (plain and encrypted), a lagging downstairs, a
 * stalled one (reads sent elsewhere, then it is dropped and replayed), a
 * hostile one (junk before every answer), a generation a
 * downstairs refuses, a newer upstairs taking the region over, and TLS
 * (certificates made with the openssl tool). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "support/prereq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/block.h"
#include "block/crucible/upstairs.h"
#include "config/config.h"
#include "support/block_req.h"
#include "support/crucible_ds.h"

enum { BS = 512, EXTENT = 64, EXTENTS = 4, DISK = BS * EXTENT * EXTENTS };

static char dir[64];
static bool own_netns;
static struct crucible_ds *ds[3];
static uint16_t port[3];

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/test_crucible_up.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    own_netns = enter_loopback_netns();
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void need_netns(void)
{
    need_loopback_netns(own_netns);
}

static char ds_dirs[3][96];

static struct crucible_ds_config ds_cfg(int i, const char *test, bool encrypted)
{
    snprintf(ds_dirs[i], sizeof(ds_dirs[i]), "%s/%s-%d", dir, test, i);
    struct crucible_ds_config c = {.dir = ds_dirs[i],
                                   .block_size = BS,
                                   .extent_size = EXTENT,
                                   .extent_count = EXTENTS,
                                   .encrypted = encrypted};
    memset(c.region_uuid.b, 0x40 + i, 16);
    return c;
}

/* Three downstairs of a fresh region set named test; faults[i], when
 * given, sets downstairs i's fault fields. */
static void start_faulty(const char *test, bool encrypted, const struct crucible_ds_config *faults)
{
    for (int i = 0; i < 3; i++) {
        struct crucible_ds_config c = ds_cfg(i, test, encrypted);
        if (faults) {
            c.hostile = faults[i].hostile;
            c.lag_ms = faults[i].lag_ms;
            c.corrupt_reads = faults[i].corrupt_reads;
            c.min_generation = faults[i].min_generation;
        }
        assert_non_null(ds[i] = crucible_ds_start(&c, 0));
        port[i] = crucible_ds_port(ds[i]);
    }
}

static void start_all(const char *test, bool encrypted)
{
    start_faulty(test, encrypted, NULL);
}

/* Downstairs i again, on its port and region. */
static void restart(int i, bool encrypted)
{
    struct crucible_ds_config c = {.dir = ds_dirs[i],
                                   .block_size = BS,
                                   .extent_size = EXTENT,
                                   .extent_count = EXTENTS,
                                   .encrypted = encrypted};
    memset(c.region_uuid.b, 0x40 + i, 16);
    assert_non_null(ds[i] = crucible_ds_start(&c, port[i]));
}

static void stop_all(void)
{
    for (int i = 0; i < 3; i++) {
        crucible_ds_stop(ds[i]);
        ds[i] = NULL;
    }
}

static const uint8_t KEY[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static struct config_block_dev disk_cfg(uint64_t generation, bool gen_auto, bool encrypted)
{
    struct config_block_dev cfg = {.name = "cru",
                                   .type = CONFIG_BLOCK_CRUCIBLE,
                                   .has_block_size = true,
                                   .block_size = BS,
                                   .source = "test.toml"};
    cfg.crucible.blocks_per_extent = EXTENT;
    cfg.crucible.extent_count = EXTENTS;
    cfg.crucible.generation = generation;
    cfg.crucible.generation_auto = gen_auto;
    cfg.crucible.flush_timeout = 0.2;
    cfg.crucible.has_upstairs_id = true;
    memset(cfg.crucible.upstairs_id, 0x11, 16);
    if (encrypted) {
        cfg.crucible.has_encryption_key = true;
        memcpy(cfg.crucible.encryption_key, KEY, sizeof(KEY));
    }
    for (int i = 0; i < 3; i++) {
        struct config_sockaddr *t = &cfg.crucible.targets[i];
        t->u.in4 = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port[i])};
        t->u.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        t->len = sizeof(t->u.in4);
        snprintf(t->text, sizeof(t->text), "127.0.0.1:%u", port[i]);
    }
    return cfg;
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

/* The region file of downstairs i holding block (as the test downstairs
 * lays it out: extent-NNNN, blocks in order). */
static void read_ds_block(int i, uint64_t block, uint8_t *out)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/extent-%04u", ds_dirs[i], (unsigned)(block / EXTENT));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, out, BS, (off_t)(block % EXTENT * BS)), BS);
    close(fd);
}

static void write_ds_block(int i, uint64_t block, const uint8_t *in)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/extent-%04u", ds_dirs[i], (unsigned)(block / EXTENT));
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, in, BS, (off_t)(block % EXTENT * BS)), BS);
    close(fd);
}

/* ---- tests ---- */

static void test_write_flush_read_on_all_three(void **state)
{
    need_netns();
    start_all("basic", false);
    struct config_block_dev cfg = disk_cfg(1, false, false);
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    assert_int_equal(be->info.size, DISK);
    assert_int_equal(be->info.block_size, BS);

    /* Across the first extent boundary, larger than one job (1 MiB is
     * more than the disk: use the whole disk). */
    uint8_t *buf = malloc(DISK), *back = malloc(DISK);
    fill(buf, DISK, 1);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, buf, DISK), 0);
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    memset(back, 0, DISK);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, back, DISK), 0);
    assert_memory_equal(back, buf, DISK);
    /* Unaligned requests are refused. */
    assert_int_equal(block_req(be, BLOCK_OP_READ, 100, back, BS), -EINVAL);
    assert_int_equal(block_req(be, BLOCK_OP_DISCARD, 0, NULL, BS), -EOPNOTSUPP);
    block_backend_destroy(be);

    /* Every downstairs holds every block, and the flush stamped
     * generation 1 on each extent. */
    uint8_t blk[BS];
    for (int i = 0; i < 3; i++) {
        for (uint64_t b = 0; b < EXTENT * EXTENTS; b += 37) {
            read_ds_block(i, b, blk);
            assert_memory_equal(blk, buf + b * BS, BS);
        }
        for (uint32_t e = 0; e < EXTENTS; e++) {
            uint64_t gen, flush;
            bool dirty;
            crucible_ds_extent_meta(ds[i], e, &gen, &flush, &dirty);
            assert_int_equal(gen, 1);
            assert_true(flush >= 1);
            assert_false(dirty);
        }
    }
    stop_all();
    free(buf);
    free(back);
}

static void test_generation_auto_three_restarts(void **state)
{
    need_netns();
    start_all("auto", false);
    uint8_t buf[BS], back[BS];
    for (unsigned run = 1; run <= 3; run++) {
        struct config_block_dev cfg = disk_cfg(0, true, false);
        struct block_backend *be = block_backend_open(&cfg);
        assert_non_null(be);
        if (run > 1) {
            /* What the previous run wrote is there. */
            assert_int_equal(block_req(be, BLOCK_OP_READ, (run - 1) * BS, back, BS), 0);
            fill(buf, BS, run - 1);
            assert_memory_equal(back, buf, BS);
        }
        fill(buf, BS, run);
        assert_int_equal(block_req(be, BLOCK_OP_WRITE, run * BS, buf, BS), 0);
        assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
        block_backend_destroy(be);
        uint64_t gen, flush;
        bool dirty;
        crucible_ds_extent_meta(ds[0], 0, &gen, &flush, &dirty);
        assert_int_equal(gen, run); /* one more each time */
    }
    /* A fixed generation not above the region's is refused. */
    struct config_block_dev cfg = disk_cfg(3, false, false);
    assert_null(block_backend_open(&cfg));
    cfg = disk_cfg(4, false, false);
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    block_backend_destroy(be);
    stop_all();
}

static bool file_contains(const char *path, const uint8_t *needle, size_t len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t data[BS * EXTENT];
    size_t n = fread(data, 1, sizeof(data), f);
    fclose(f);
    for (size_t i = 0; i + len <= n; i++)
        if (memcmp(data + i, needle, len) == 0)
            return true;
    return false;
}

static void test_encrypted_region_holds_no_plaintext(void **state)
{
    need_netns();
    start_all("enc", true);
    struct config_block_dev cfg = disk_cfg(1, false, true);
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    uint8_t buf[4 * BS], back[4 * BS];
    memset(buf, 0, sizeof(buf));
    for (size_t i = 0; i < sizeof(buf); i += 32)
        memcpy(buf + i, "PLAINTEXT-MARKER-0123456789abcd", 32);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 8 * BS, buf, sizeof(buf)), 0);
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 8 * BS, back, sizeof(back)), 0);
    assert_memory_equal(back, buf, sizeof(buf));
    /* Never-written blocks read as zeroes. */
    uint8_t zero[BS] = {0};
    assert_int_equal(block_req(be, BLOCK_OP_READ, 100 * BS, back, BS), 0);
    assert_memory_equal(back, zero, BS);
    block_backend_destroy(be);
    for (int i = 0; i < 3; i++) {
        char path[160];
        snprintf(path, sizeof(path), "%s/extent-0000", ds_dirs[i]);
        assert_false(file_contains(path, (const uint8_t *)"PLAINTEXT-MARKER", 16));
    }
    /* Without the key the downstairs refuse the disk. */
    cfg = disk_cfg(2, false, false);
    assert_null(block_backend_open(&cfg));
    stop_all();
}

static void test_downstairs_lost_and_replayed(void **state)
{
    need_netns();
    start_all("replay", false);
    struct config_block_dev cfg = disk_cfg(1, false, false);
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    uint8_t *buf = malloc(DISK), *back = malloc(DISK);
    fill(buf, DISK, 7);
    /* Writes in flight when downstairs 2 goes away. */
    struct pending_req p[8];
    for (int k = 0; k < 8; k++)
        block_req_start(&p[k], be, BLOCK_OP_WRITE, (uint64_t)k * (DISK / 8), buf + k * (DISK / 8),
                        DISK / 8);
    crucible_ds_stop(ds[2]);
    ds[2] = NULL;
    for (int k = 0; k < 8; k++)
        assert_int_equal(block_req_wait(&p[k]), 0);
    /* I/O goes on with two. */
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, back, DISK), 0);
    assert_memory_equal(back, buf, DISK);
    fill(buf + 5 * BS, BS * 10, 8);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 5 * BS, buf + 5 * BS, BS * 10), 0);
    /* It comes back: what it missed is replayed to it. */
    restart(2, false);
    uint8_t blk[BS];
    bool caught_up = false;
    for (int tries = 0; tries < 100 && !caught_up; tries++) {
        assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
        read_ds_block(2, 14, blk);
        caught_up = memcmp(blk, buf + 14 * BS, BS) == 0;
        if (!caught_up)
            usleep(50000);
    }
    assert_true(caught_up);
    block_backend_destroy(be);
    for (uint64_t b = 0; b < EXTENT * EXTENTS; b += 11) {
        read_ds_block(2, b, blk);
        assert_memory_equal(blk, buf + b * BS, BS);
    }
    stop_all();
    free(buf);
    free(back);
}

static void test_reconciliation_after_missed_writes(void **state)
{
    need_netns();
    start_all("reconcile", false);
    struct config_block_dev cfg = disk_cfg(0, true, false);
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    uint8_t buf[8 * BS], blk[BS];
    fill(buf, sizeof(buf), 21);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, buf, sizeof(buf)), 0);
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    /* Downstairs 0 misses the next writes and flush, then the disk
     * closes before it is back. */
    crucible_ds_stop(ds[0]);
    ds[0] = NULL;
    fill(buf, sizeof(buf), 22);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, EXTENT * BS, buf, sizeof(buf)), 0);
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    block_backend_destroy(be);
    restart(0, false);
    read_ds_block(0, EXTENT, blk);
    assert_memory_not_equal(blk, buf, BS);

    /* Activation copies extent 1 to it from the others. */
    cfg = disk_cfg(0, true, false);
    assert_non_null(be = block_backend_open(&cfg));
    for (int k = 0; k < 8; k++) {
        read_ds_block(0, EXTENT + k, blk);
        assert_memory_equal(blk, buf + k * BS, BS);
    }
    uint64_t gen[3], flush[3];
    bool dirty[3];
    for (int i = 0; i < 3; i++)
        crucible_ds_extent_meta(ds[i], 1, &gen[i], &flush[i], &dirty[i]);
    assert_int_equal(gen[0], gen[1]);
    assert_int_equal(gen[0], gen[2]);
    assert_int_equal(flush[0], flush[1]);
    assert_int_equal(flush[0], flush[2]);
    assert_false(dirty[0] || dirty[1] || dirty[2]);
    block_backend_destroy(be);
    stop_all();
}

static void test_corrupt_block_read_from_another(void **state)
{
    need_netns();
    start_all("corrupt", false);
    struct config_block_dev cfg = disk_cfg(1, false, false);
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    uint8_t buf[BS], back[BS], junk[BS];
    fill(buf, BS, 31);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 3 * BS, buf, BS), 0);
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    memset(junk, 0xee, BS);
    write_ds_block(0, 3, junk);
    write_ds_block(1, 3, junk);
    for (int k = 0; k < 5; k++) {
        memset(back, 0, BS);
        assert_int_equal(block_req(be, BLOCK_OP_READ, 3 * BS, back, BS), 0);
        assert_memory_equal(back, buf, BS);
    }
    /* All three bad: the read fails rather than return bad data. */
    write_ds_block(2, 3, junk);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 3 * BS, back, BS), -EIO);
    block_backend_destroy(be);
    stop_all();
}

static void test_newer_upstairs_takes_over(void **state)
{
    need_netns();
    start_all("takeover", false);
    struct config_block_dev cfg = disk_cfg(1, false, false);
    struct block_backend *old = block_backend_open(&cfg);
    assert_non_null(old);
    uint8_t buf[BS];
    fill(buf, BS, 41);
    assert_int_equal(block_req(old, BLOCK_OP_WRITE, 0, buf, BS), 0);
    assert_int_equal(block_req(old, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    /* The same generation from another session is refused... */
    cfg = disk_cfg(1, false, false);
    memset(cfg.crucible.upstairs_id, 0x22, 16);
    assert_null(block_backend_open(&cfg));
    /* ...a higher one takes over, and the old upstairs' I/O fails. */
    cfg = disk_cfg(2, false, false);
    struct block_backend *newer = block_backend_open(&cfg);
    assert_non_null(newer);
    int st = 0;
    for (int tries = 0; tries < 50 && st == 0; tries++) {
        st = block_req(old, BLOCK_OP_FLUSH, 0, NULL, 0);
        if (st == 0)
            usleep(20000);
    }
    assert_int_equal(st, -EIO);
    uint8_t back[BS];
    assert_int_equal(block_req(newer, BLOCK_OP_READ, 0, back, BS), 0);
    assert_memory_equal(back, buf, BS);
    block_backend_destroy(old);
    block_backend_destroy(newer);
    stop_all();
}

static void live_repair(const char *test, bool encrypted)
{
    need_netns();
    start_all(test, encrypted);
    struct config_block_dev cfg = disk_cfg(1, false, encrypted);
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    uint8_t *disk = malloc(DISK), *back = malloc(DISK);
    fill(disk, DISK, 81);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, disk, DISK), 0);
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    /* Downstairs 2 fails a write: it is faulted, and misses what follows. */
    crucible_ds_fail_writes(ds[2], true);
    fill(disk, 8 * BS, 82);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, disk, 8 * BS), 0);
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    crucible_ds_fail_writes(ds[2], false);
    /* The source answers slowly, so guest writes land during the repair,
     * in extents copied, being copied and not yet copied. */
    crucible_ds_set_lag(ds[1], 15);
    unsigned seed = 83;
    uint8_t blk[BS], other[BS];
    bool repaired = false;
    for (int round = 0; round < 300 && !repaired; round++) {
        uint64_t b = (uint64_t)(round * 37) % (EXTENT * EXTENTS - 4);
        fill(disk + b * BS, 4 * BS, seed++);
        assert_int_equal(block_req(be, BLOCK_OP_WRITE, b * BS, disk + b * BS, 4 * BS), 0);
        if (round % 8 == 0)
            assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
        read_ds_block(2, 0, blk);
        read_ds_block(0, 0, other);
        repaired = memcmp(blk, other, BS) == 0 && round > 30;
        usleep(5000);
    }
    assert_true(repaired);
    crucible_ds_set_lag(ds[1], 0);
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, back, DISK), 0);
    assert_memory_equal(back, disk, DISK);
    block_backend_destroy(be);
    /* Every block of the repaired downstairs is as another holds it. */
    for (uint64_t b = 0; b < EXTENT * EXTENTS; b++) {
        read_ds_block(2, b, blk);
        read_ds_block(0, b, other);
        assert_memory_equal(blk, other, BS);
        if (!encrypted)
            assert_memory_equal(blk, disk + b * BS, BS);
    }
    stop_all();
    free(disk);
    free(back);
}

static void test_faulted_downstairs_repaired_while_io_goes_on(void **state)
{
    live_repair("live", false);
}

static void test_faulted_encrypted_downstairs_repaired(void **state)
{
    live_repair("live-enc", true);
}

static void test_lagging_and_corrupting_downstairs(void **state)
{
    need_netns();
    /* One downstairs answers late, one returns bad blocks: I/O still
     * completes with the right data. */
    struct crucible_ds_config faults[3] = {{.lag_ms = 30}, {.corrupt_reads = true}, {0}};
    start_faulty("faults", false, faults);
    struct config_block_dev cfg = disk_cfg(1, false, false);
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    uint8_t buf[16 * BS], back[16 * BS];
    fill(buf, sizeof(buf), 51);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(block_req(be, BLOCK_OP_WRITE, (uint64_t)k * sizeof(buf), buf, sizeof(buf)),
                         0);
        assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
        memset(back, 0, sizeof(back));
        assert_int_equal(
            block_req(be, BLOCK_OP_READ, (uint64_t)k * sizeof(buf), back, sizeof(back)), 0);
        assert_memory_equal(back, buf, sizeof(buf));
    }
    block_backend_destroy(be);
    /* The late one gets every write too (a flush completes on two, so it
     * may still be working through them). */
    uint8_t blk[BS];
    for (int tries = 0; tries < 250; tries++) {
        read_ds_block(0, 3 * 16 + 15, blk);
        if (memcmp(blk, buf + 15 * BS, BS) == 0)
            break;
        usleep(20000);
    }
    assert_memory_equal(blk, buf + 15 * BS, BS);
    stop_all();
}

static void test_hostile_downstairs(void **state)
{
    need_netns();
    /* Downstairs 0 answers every job with junk first: the upstairs drops
     * it each time (it comes back, and is dropped again) and the guest's
     * I/O goes on with the other two, its data intact. */
    struct crucible_ds_config faults[3] = {{.hostile = true}, {0}, {0}};
    start_faulty("hostile", false, faults);
    struct config_block_dev cfg = disk_cfg(1, false, false);
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    uint8_t buf[8 * BS], back[8 * BS];
    for (unsigned k = 0; k < 40; k++) {
        fill(buf, sizeof(buf), 90 + k);
        uint64_t off = (uint64_t)(k % 30) * sizeof(buf) % (DISK - sizeof(buf));
        assert_int_equal(block_req(be, BLOCK_OP_WRITE, off, buf, sizeof(buf)), 0);
        assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
        assert_int_equal(block_req(be, BLOCK_OP_READ, off, back, sizeof(back)), 0);
        assert_memory_equal(back, buf, sizeof(buf));
        usleep(20000);
    }
    block_backend_destroy(be);
    stop_all();
}

static void test_stalled_downstairs(void **state)
{
    need_netns();
    start_all("stall", false);
    struct config_block_dev cfg = disk_cfg(1, false, false);
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    uint8_t buf[8 * BS], back[8 * BS];
    fill(buf, sizeof(buf), 101);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, buf, sizeof(buf)), 0);
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    /* Downstairs 0 stops answering: reads sent to it go to another after
     * half a second, writes and flushes complete on the other two, and
     * after 5 s it is dropped; it comes back and is replayed. */
    crucible_ds_stall(ds[0], true);
    for (unsigned k = 0; k < 12; k++) {
        fill(buf, sizeof(buf), 102 + k);
        uint64_t off = (uint64_t)k * sizeof(buf);
        assert_int_equal(block_req(be, BLOCK_OP_WRITE, off, buf, sizeof(buf)), 0);
        assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
        assert_int_equal(block_req(be, BLOCK_OP_READ, off, back, sizeof(back)), 0);
        assert_memory_equal(back, buf, sizeof(buf));
        usleep(500000);
    }
    crucible_ds_stall(ds[0], false);
    uint8_t blk[BS];
    bool caught_up = false;
    for (int tries = 0; tries < 200 && !caught_up; tries++) {
        assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
        read_ds_block(0, 11 * 8 + 7, blk);
        caught_up = memcmp(blk, buf + 7 * BS, BS) == 0;
        if (!caught_up)
            usleep(50000);
    }
    assert_true(caught_up);
    block_backend_destroy(be);
    stop_all();
}

static void test_generation_refused_by_a_downstairs(void **state)
{
    need_netns();
    struct crucible_ds_config faults[3] = {{0}, {.min_generation = 5}, {0}};
    start_faulty("refuse", false, faults);
    struct config_block_dev cfg = disk_cfg(2, false, false);
    assert_null(block_backend_open(&cfg));
    cfg = disk_cfg(0, true, false);
    assert_null(block_backend_open(&cfg));
    cfg = disk_cfg(5, false, false);
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    block_backend_destroy(be);
    stop_all();
}

static void test_disagreeing_flush_numbers_reconciled(void **state)
{
    need_netns();
    start_all("disagree", false);
    struct config_block_dev cfg = disk_cfg(0, true, false);
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    uint8_t buf[4 * BS];
    fill(buf, sizeof(buf), 61);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 2 * EXTENT * BS, buf, sizeof(buf)), 0);
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    block_backend_destroy(be);
    /* Downstairs 1 claims a later flush of extent 2, downstairs 2 a
     * dirty extent 3. */
    uint64_t gen, flush;
    bool dirty;
    crucible_ds_extent_meta(ds[1], 2, &gen, &flush, &dirty);
    crucible_ds_set_extent_meta(ds[1], 2, gen, flush + 40, false);
    crucible_ds_extent_meta(ds[2], 3, &gen, &flush, &dirty);
    crucible_ds_set_extent_meta(ds[2], 3, gen, flush, true);

    cfg = disk_cfg(0, true, false);
    assert_non_null(be = block_backend_open(&cfg));
    for (uint32_t e = 2; e <= 3; e++) {
        uint64_t g[3], f[3];
        bool d[3];
        for (int i = 0; i < 3; i++)
            crucible_ds_extent_meta(ds[i], e, &g[i], &f[i], &d[i]);
        assert_true(g[0] == g[1] && g[1] == g[2]);
        assert_true(f[0] == f[1] && f[1] == f[2]);
        assert_false(d[0] || d[1] || d[2]);
    }
    uint8_t back[sizeof(buf)];
    assert_int_equal(block_req(be, BLOCK_OP_READ, 2 * EXTENT * BS, back, sizeof(back)), 0);
    assert_memory_equal(back, buf, sizeof(buf));
    block_backend_destroy(be);
    stop_all();
}

/* A root, a certificate for each downstairs (downstairsN) and one for the
 * upstairs, made with the openssl tool. */
static char tls_dir[96];

static void make_certificates(void)
{
    snprintf(tls_dir, sizeof(tls_dir), "%s/tls", dir);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "set -e; mkdir -p %s; cd %s; "
             "k='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'; "
             "openssl req -x509 $k -keyout root.key -out root.pem -days 2 -subj /CN=test-root "
             "2>/dev/null; "
             "for n in downstairs0 downstairs1 downstairs2 upstairs; do "
             "openssl req $k -keyout $n.key -out $n.csr -subj /CN=$n 2>/dev/null; "
             "printf 'subjectAltName=DNS:%%s\n' $n > $n.ext; "
             "openssl x509 -req -in $n.csr -CA root.pem -CAkey root.key -CAcreateserial "
             "-out $n.pem -days 2 -extfile $n.ext 2>/dev/null; done",
             tls_dir, tls_dir);
    if (system(cmd) != 0)
        prerequisite_missing("the openssl tool cannot make test certificates (Debian: openssl)");
}

static const char *tls_path(char *buf, size_t n, const char *name, const char *ext)
{
    snprintf(buf, n, "%s/%s.%s", tls_dir, name, ext);
    return buf;
}

/* Downstairs i presents the certificate of cert_name. */
static void start_tls(const char *test, const char *const cert_names[3])
{
    static char certs[3][160], keys[3][160], root[160];
    tls_path(root, sizeof(root), "root", "pem");
    for (int i = 0; i < 3; i++) {
        struct crucible_ds_config c = ds_cfg(i, test, false);
        c.tls_cert = tls_path(certs[i], sizeof(certs[i]), cert_names[i], "pem");
        c.tls_key = tls_path(keys[i], sizeof(keys[i]), cert_names[i], "key");
        c.tls_root = root;
        assert_non_null(ds[i] = crucible_ds_start(&c, 0));
        port[i] = crucible_ds_port(ds[i]);
    }
}

static void test_tls_to_the_downstairs(void **state)
{
    need_netns();
    make_certificates();
    static const char *const good[3] = {"downstairs0", "downstairs1", "downstairs2"};
    start_tls("tls", good);
    char cert[160], key[160], root[160];
    struct config_block_dev cfg = disk_cfg(1, false, false);
    cfg.crucible.cert_pem = (char *)tls_path(cert, sizeof(cert), "upstairs", "pem");
    cfg.crucible.key_pem = (char *)tls_path(key, sizeof(key), "upstairs", "key");
    cfg.crucible.root_cert_pem = (char *)tls_path(root, sizeof(root), "root", "pem");
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    uint8_t *buf = malloc(DISK), *back = malloc(DISK);
    fill(buf, DISK, 71);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, buf, DISK), 0);
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, back, DISK), 0);
    assert_memory_equal(back, buf, DISK);
    block_backend_destroy(be);
    stop_all();
    free(buf);
    free(back);

    /* A downstairs whose certificate names another: refused at once. */
    static const char *const swapped[3] = {"downstairs0", "downstairs2", "downstairs2"};
    start_tls("tls", swapped);
    cfg = disk_cfg(2, false, false);
    cfg.crucible.cert_pem = cert;
    cfg.crucible.key_pem = key;
    cfg.crucible.root_cert_pem = root;
    assert_null(block_backend_open(&cfg));
    stop_all();
}

static void test_unsupported_keys_refused(void **state)
{
    struct config_block_dev cfg = disk_cfg(1, false, false);
    char pem[] = "cert.pem";
    cfg.crucible.cert_pem = pem; /* without key_pem and root_cert_pem */
    assert_null(block_backend_open(&cfg));
    cfg = disk_cfg(1, false, false);
    cfg.crucible.lossy = true;
    assert_null(block_backend_open(&cfg));
}

static void test_crucible_mem_is_a_ram_disk(void **state)
{
    struct config_block_dev cfg = {.name = "cm",
                                   .type = CONFIG_BLOCK_CRUCIBLE_MEM,
                                   .has_block_size = true,
                                   .block_size = 4096,
                                   .source = "test.toml"};
    cfg.crucible_mem.size = 1 << 20;
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    assert_int_equal(be->info.size, 1 << 20);
    assert_int_equal(be->info.block_size, 4096);
    uint8_t buf[4096], back[4096];
    fill(buf, sizeof(buf), 5);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 8192, buf, sizeof(buf)), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 8192, back, sizeof(back)), 0);
    assert_memory_equal(back, buf, sizeof(buf));
    block_backend_destroy(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_flush_read_on_all_three),
        cmocka_unit_test(test_generation_auto_three_restarts),
        cmocka_unit_test(test_encrypted_region_holds_no_plaintext),
        cmocka_unit_test(test_downstairs_lost_and_replayed),
        cmocka_unit_test(test_reconciliation_after_missed_writes),
        cmocka_unit_test(test_corrupt_block_read_from_another),
        cmocka_unit_test(test_newer_upstairs_takes_over),
        cmocka_unit_test(test_faulted_downstairs_repaired_while_io_goes_on),
        cmocka_unit_test(test_faulted_encrypted_downstairs_repaired),
        cmocka_unit_test(test_lagging_and_corrupting_downstairs),
        cmocka_unit_test(test_hostile_downstairs),
        cmocka_unit_test(test_stalled_downstairs),
        cmocka_unit_test(test_generation_refused_by_a_downstairs),
        cmocka_unit_test(test_disagreeing_flush_numbers_reconciled),
        cmocka_unit_test(test_tls_to_the_downstairs),
        cmocka_unit_test(test_unsupported_keys_refused),
        cmocka_unit_test(test_crucible_mem_is_a_ram_disk),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
