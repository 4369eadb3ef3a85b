/* The test Downstairs (tests/unit/support/crucible_ds.c), driven by hand
 * as an upstairs would drive it, over TCP in the test's own network
 * namespace: negotiation (version, read-only and encryption mismatches),
 * region information and extent versions, writes across an extent
 * boundary read back through their contexts, a write with a bad hash
 * refused, write-unwritten leaving written blocks alone, a flush stamping
 * only the dirty extents, takeover by a higher generation and refusal of
 * a lower one, and the region's numbers surviving a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "support/prereq.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/crucible/blocks.h"
#include "support/crucible_ds.h"

enum { BS = 512, EXTENT = 64, EXTENTS = 4 };

static char dir[64];
static bool own_netns;

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/test_crucible_ds.XXXXXX");
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

static struct crucible_uuid uuid_of(uint8_t b)
{
    struct crucible_uuid u;
    memset(u.b, b, sizeof(u.b));
    return u;
}

static struct crucible_ds_config ds_cfg(void)
{
    return (struct crucible_ds_config){.dir = dir,
                                       .block_size = BS,
                                       .extent_size = EXTENT,
                                       .extent_count = EXTENTS,
                                       .region_uuid = uuid_of(0x77)};
}

/* ---- an upstairs by hand ---- */

static int dial(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void put(int fd, const struct crucible_msg *m)
{
    struct crucible_buf b = {0};
    assert_int_equal(crucible_encode_frame(&b, m), 0);
    assert_int_equal(send(fd, b.bytes, b.len, MSG_NOSIGNAL), (ssize_t)b.len);
    crucible_buf_free(&b);
}

static bool read_exact(int fd, uint8_t *p, size_t n)
{
    while (n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 5000) != 1)
            fail_msg("no answer within 5 s");
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

/* The next message; false when the downstairs closed the connection. Its
 * data stays valid until the next get on any connection. */
static bool get(int fd, struct crucible_msg *m)
{
    static uint8_t *frame;
    uint8_t head[4];
    if (!read_exact(fd, head, 4))
        return false;
    uint32_t len = crucible_frame_length(head);
    assert_true(len >= 4);
    free(frame);
    frame = malloc(len);
    assert_true(read_exact(fd, frame, len - 4));
    char why[256];
    if (crucible_decode(frame, len - 4, m, why, sizeof(why)) != 0)
        fail_msg("undecodable answer: %s", why);
    return true;
}

static uint32_t expect(int fd, uint32_t type, struct crucible_msg *out)
{
    struct crucible_msg m;
    assert_true(get(fd, &m));
    if (m.type != type)
        fail_msg("got %s, wanted %s", crucible_msg_name(m.type), crucible_msg_name(type));
    if (out)
        *out = m;
    else
        crucible_msg_free(&m);
    return m.type;
}

static void negotiate(int fd, uint8_t id, uint8_t session, uint64_t gen)
{
    put(fd, &(struct crucible_msg){.type = CM_HERE_I_AM,
                                   .version = CRUCIBLE_MESSAGE_VERSION,
                                   .upstairs_id = uuid_of(id),
                                   .session_id = uuid_of(session),
                                   .generation = gen});
    expect(fd, CM_YES_ITS_ME, NULL);
    put(fd, &(struct crucible_msg){.type = CM_PROMOTE_TO_ACTIVE,
                                   .upstairs_id = uuid_of(id),
                                   .session_id = uuid_of(session),
                                   .generation = gen});
    struct crucible_msg m;
    expect(fd, CM_YOU_ARE_NOW_ACTIVE, &m);
    assert_int_equal(m.generation, gen);
    put(fd, &(struct crucible_msg){.type = CM_REGION_INFO_PLEASE});
    expect(fd, CM_REGION_INFO, &m);
    assert_int_equal(m.region.block_size, BS);
    assert_int_equal(m.region.extent_size, EXTENT);
    assert_int_equal(m.region.extent_count, EXTENTS);
    assert_memory_equal(m.region.uuid.b, uuid_of(0x77).b, 16);
}

static void need_netns(void)
{
    need_loopback_netns(own_netns);
}

/* ---- tests ---- */

static void test_negotiation_io_flush(void **state)
{
    need_netns();
    struct crucible_ds_config cfg = ds_cfg();
    struct crucible_ds *ds = crucible_ds_start(&cfg, 0);
    assert_non_null(ds);
    int fd = dial(crucible_ds_port(ds));
    negotiate(fd, 1, 2, 5);
    put(fd, &(struct crucible_msg){.type = CM_EXTENT_VERSIONS_PLEASE});
    struct crucible_msg m;
    expect(fd, CM_EXTENT_VERSIONS, &m);
    assert_int_equal(m.gen_number_count, EXTENTS);
    for (int i = 0; i < EXTENTS; i++)
        assert_true(m.gen_numbers[i] == 0 && m.flush_numbers[i] == 0 && !m.dirty_bits[i]);
    crucible_msg_free(&m);

    /* Three blocks across the boundary of extents 0 and 1. */
    static uint8_t data[3 * BS], plain[3 * BS];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = plain[i] = (uint8_t)(i * 7 + 1);
    struct crucible_block_context ctx[3];
    assert_int_equal(crucible_seal_blocks(NULL, data, BS, 3, ctx), 0);
    struct crucible_msg w = {.type = CM_WRITE,
                             .upstairs_id = uuid_of(1),
                             .session_id = uuid_of(2),
                             .job_id = 1000,
                             .start = EXTENT - 1,
                             .contexts = ctx,
                             .context_count = 3,
                             .data = data,
                             .data_len = sizeof(data)};
    put(fd, &w);
    expect(fd, CM_WRITE_ACK, &m);
    assert_true(m.result_ok);
    assert_int_equal(m.job_id, 1000);

    /* Read one block before them too: never written, Empty and zeroes. */
    put(fd, &(struct crucible_msg){.type = CM_READ_REQUEST,
                                   .upstairs_id = uuid_of(1),
                                   .session_id = uuid_of(2),
                                   .job_id = 1001,
                                   .start = EXTENT - 2,
                                   .count = 4});
    expect(fd, CM_READ_RESPONSE, &m);
    assert_true(m.result_ok);
    assert_int_equal(m.read_context_count, 4);
    assert_int_equal(m.read_contexts[0].kind, CRC_EMPTY);
    static uint8_t got[4 * BS];
    memcpy(got, m.data, sizeof(got));
    uint64_t bad;
    assert_int_equal(crucible_open_blocks(NULL, got, BS, 4, m.read_contexts, &bad), 0);
    assert_memory_equal(got + BS, plain, sizeof(plain));
    crucible_msg_free(&m);

    /* A bad hash is refused; write-unwritten leaves written blocks alone. */
    ctx[0].hash ^= 1;
    w.job_id = 1002;
    w.context_count = 1;
    w.data_len = BS;
    put(fd, &w);
    expect(fd, CM_WRITE_ACK, &m);
    assert_false(m.result_ok);
    assert_int_equal(m.error.kind, CE_HASH_MISMATCH);
    crucible_msg_free(&m);
    static uint8_t other[BS];
    memset(other, 0x5a, sizeof(other));
    struct crucible_block_context octx;
    crucible_seal_blocks(NULL, other, BS, 1, &octx);
    put(fd, &(struct crucible_msg){.type = CM_WRITE_UNWRITTEN,
                                   .upstairs_id = uuid_of(1),
                                   .session_id = uuid_of(2),
                                   .job_id = 1003,
                                   .start = EXTENT - 1,
                                   .contexts = &octx,
                                   .context_count = 1,
                                   .data = other,
                                   .data_len = BS});
    expect(fd, CM_WRITE_UNWRITTEN_ACK, NULL);
    put(fd, &(struct crucible_msg){.type = CM_READ_REQUEST,
                                   .upstairs_id = uuid_of(1),
                                   .session_id = uuid_of(2),
                                   .job_id = 1004,
                                   .start = EXTENT - 1,
                                   .count = 1});
    expect(fd, CM_READ_RESPONSE, &m);
    assert_memory_equal(m.data, plain, BS);
    crucible_msg_free(&m);

    /* The flush stamps the two dirty extents only. */
    uint64_t gen, flush;
    bool dirty;
    crucible_ds_extent_meta(ds, 1, &gen, &flush, &dirty);
    assert_true(dirty);
    put(fd, &(struct crucible_msg){.type = CM_FLUSH,
                                   .upstairs_id = uuid_of(1),
                                   .session_id = uuid_of(2),
                                   .job_id = 1005,
                                   .flush_number = 9,
                                   .gen_number = 5});
    expect(fd, CM_FLUSH_ACK, &m);
    assert_true(m.result_ok);
    for (uint32_t e = 0; e < EXTENTS; e++) {
        crucible_ds_extent_meta(ds, e, &gen, &flush, &dirty);
        assert_false(dirty);
        assert_int_equal(gen, e < 2 ? 5 : 0);
        assert_int_equal(flush, e < 2 ? 9 : 0);
    }
    /* Ruok is answered at any time. */
    put(fd, &(struct crucible_msg){.type = CM_RUOK});
    expect(fd, CM_IMOK, NULL);
    close(fd);

    /* The numbers are in the region files. */
    crucible_ds_stop(ds);
    ds = crucible_ds_start(&cfg, 0);
    fd = dial(crucible_ds_port(ds));
    negotiate(fd, 1, 3, 6);
    put(fd, &(struct crucible_msg){.type = CM_EXTENT_VERSIONS_PLEASE});
    expect(fd, CM_EXTENT_VERSIONS, &m);
    assert_true(m.gen_numbers[0] == 5 && m.gen_numbers[1] == 5 && m.gen_numbers[2] == 0);
    assert_true(m.flush_numbers[0] == 9 && m.flush_numbers[1] == 9);
    crucible_msg_free(&m);
    close(fd);
    crucible_ds_stop(ds);
}

static void test_mismatches_and_takeover(void **state)
{
    need_netns();
    struct crucible_ds_config cfg = ds_cfg();
    struct crucible_ds *ds = crucible_ds_start(&cfg, 0);
    assert_non_null(ds);
    struct crucible_msg m;

    /* Another version without an alternative; read-only; encrypted. */
    int fd = dial(crucible_ds_port(ds));
    put(fd, &(struct crucible_msg){.type = CM_HERE_I_AM, .version = 12});
    expect(fd, CM_VERSION_MISMATCH, &m);
    assert_int_equal(m.version, 13);
    assert_false(get(fd, &m));
    close(fd);
    fd = dial(crucible_ds_port(ds));
    put(fd, &(struct crucible_msg){.type = CM_HERE_I_AM, .version = 13, .read_only = true});
    expect(fd, CM_READ_ONLY_MISMATCH, &m);
    assert_false(m.expected);
    close(fd);
    fd = dial(crucible_ds_port(ds));
    static uint32_t alt[] = {13};
    put(fd, &(struct crucible_msg){.type = CM_HERE_I_AM,
                                   .version = 99,
                                   .alternate_versions = alt,
                                   .alternate_version_count = 1,
                                   .encrypted = true});
    expect(fd, CM_ENCRYPTED_MISMATCH, NULL);
    close(fd);

    /* Generation 3 active; 4 takes over; 2 is refused without a word. */
    int a = dial(crucible_ds_port(ds));
    negotiate(a, 1, 1, 3);
    int b = dial(crucible_ds_port(ds));
    negotiate(b, 1, 2, 4);
    expect(a, CM_YOU_ARE_NO_LONGER_ACTIVE, &m);
    assert_int_equal(m.generation, 4);
    assert_false(get(a, &m));
    close(a);
    int c = dial(crucible_ds_port(ds));
    put(c, &(struct crucible_msg){.type = CM_HERE_I_AM,
                                  .version = 13,
                                  .upstairs_id = uuid_of(9),
                                  .session_id = uuid_of(9),
                                  .generation = 2});
    expect(c, CM_YES_ITS_ME, NULL);
    put(c, &(struct crucible_msg){.type = CM_PROMOTE_TO_ACTIVE,
                                  .upstairs_id = uuid_of(9),
                                  .session_id = uuid_of(9),
                                  .generation = 2});
    assert_false(get(c, &m));
    close(c);
    /* The generation-4 session still works. */
    put(b, &(struct crucible_msg){.type = CM_LAST_FLUSH});
    put(b, &(struct crucible_msg){.type = CM_BARRIER,
                                  .upstairs_id = uuid_of(1),
                                  .session_id = uuid_of(2),
                                  .job_id = 2000});
    expect(b, CM_BARRIER_ACK, &m);
    assert_true(m.result_ok);
    /* I/O naming another session: UuidMismatch, the connection stays. */
    put(b, &(struct crucible_msg){.type = CM_BARRIER,
                                  .upstairs_id = uuid_of(1),
                                  .session_id = uuid_of(7),
                                  .job_id = 2001});
    expect(b, CM_UUID_MISMATCH, NULL);
    put(b, &(struct crucible_msg){.type = CM_RUOK});
    expect(b, CM_IMOK, NULL);
    close(b);
    crucible_ds_stop(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiation_io_flush),
        cmocka_unit_test(test_mismatches_and_takeover),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
