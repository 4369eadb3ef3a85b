/* Crucible's message encoding (block/crucible/protocol.c) against
 * tests/crucible/vectors.txt, crucible's own encodings of every message
 * variant as serde and bincode write them (tests/crucible/golden, `make
 * crucible-vectors`): each message built here from the values the
 * generator used encodes to exactly its vector; each vector decodes, names
 * the right variant and encodes back to itself. Every truncation of every
 * vector, a byte more, out-of-range tags, lengths larger than the input and
 * 20 000 random corruptions are refused (or decoded) without reading past
 * the input, under ASan. Frames: the u32 length that counts itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/crucible/protocol.h"

#define MAX_VECTORS 128

struct vector {
    char name[96];
    uint8_t *bytes;
    size_t len;
};

static struct vector vectors[MAX_VECTORS];
static unsigned nvectors;

static int hexval(int ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

static int load_vectors(void **state)
{
    FILE *f = fopen("tests/crucible/vectors.txt", "r");
    if (!f)
        return -1;
    static char line[1 << 16];
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char *sp = strchr(line, ' ');
        if (!sp || nvectors == MAX_VECTORS)
            return -1;
        *sp = '\0';
        struct vector *v = &vectors[nvectors++];
        snprintf(v->name, sizeof(v->name), "%.95s", line);
        char *hex = sp + 1;
        size_t n = strcspn(hex, "\n");
        v->bytes = malloc(n / 2 + 1);
        for (size_t i = 0; i + 1 < n; i += 2) {
            int hi = hexval(hex[i]), lo = hexval(hex[i + 1]);
            if (hi < 0 || lo < 0)
                return -1;
            v->bytes[v->len++] = (uint8_t)(hi << 4 | lo);
        }
    }
    fclose(f);
    return nvectors ? 0 : -1;
}

static int free_vectors(void **state)
{
    for (unsigned i = 0; i < nvectors; i++)
        free(vectors[i].bytes);
    return 0;
}

static const struct vector *find(const char *name)
{
    for (unsigned i = 0; i < nvectors; i++)
        if (strcmp(vectors[i].name, name) == 0)
            return &vectors[i];
    fail_msg("no vector %s", name);
    return NULL;
}

/* ---- the generator's values (tests/crucible/golden/src/main.rs) ---- */

static struct crucible_uuid uuid_from(uint8_t first)
{
    struct crucible_uuid u;
    for (int i = 0; i < 16; i++)
        u.b[i] = (uint8_t)(first + i);
    return u;
}

static struct crucible_uuid up(void)
{
    return uuid_from(0x01);
}
static struct crucible_uuid sess(void)
{
    return uuid_from(0x11);
}
static struct crucible_uuid other(void)
{
    return uuid_from(0xf0);
}

static uint64_t deps[] = {1000, 1001, UINT64_MAX};
static uint8_t data[1024];

static struct crucible_sockaddr v4(void)
{
    return (struct crucible_sockaddr){.v6 = false, .addr = {192, 0, 2, 7}, .port = 4567};
}

static struct crucible_sockaddr v6(void)
{
    return (struct crucible_sockaddr){
        .v6 = true, .addr = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x42}, .port = 65535};
}

static void enc_ctx(uint8_t nonce[12], uint8_t tag[16])
{
    for (int i = 0; i < 12; i++)
        nonce[i] = (uint8_t)(0xa0 + i);
    for (int i = 0; i < 16; i++)
        tag[i] = (uint8_t)(0xb0 + i);
}

/* The strings of the error variants that carry one. */
static const char *error_text(uint32_t kind)
{
    static const struct {
        uint32_t kind;
        const char *text;
    } texts[] = {
        {CE_GENERIC_ERROR, "generic"},
        {CE_IO_ERROR, "io"},
        {CE_UNSUPPORTED, ""},
        {CE_RW_LOCK_ERROR, "rw"},
        {CE_SEND_ERROR, "send"},
        {CE_INVALID_NUMBER_OF_BLOCKS, "blocks"},
        {CE_ENCRYPTION_ERROR, "enc"},
        {CE_CANNOT_SERVE_BLOCKS, "serve"},
        {CE_CANNOT_RECEIVE_BLOCKS, "receive"},
        {CE_SNAPSHOT_FAILED, "snap\xc3\xa9"},
        {CE_REPAIR_REQUEST_ERROR, "repair request"},
        {CE_REPAIR_FILES_INVALID, "files"},
        {CE_REPAIR_STREAM_ERROR, "stream"},
        {CE_PROPERTY_NOT_AVAILABLE, "property"},
        {CE_REPLACE_REQUEST_INVALID, "replace"},
        {CE_BAD_METADATA, "metadata"},
        {CE_BAD_CONTEXT_SLOT, "slot"},
        {CE_REGION_INCOMPATIBLE, "incompatible"},
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        if (texts[i].kind == kind)
            return texts[i].text;
    return NULL;
}

static const char *const negotiation_names[CN_KIND_COUNT] = {
    "OutOfOrder",          "GenerationZeroIsIllegal", "GenerationNumberTooLow",
    "IncompatibleVersion", "EncryptionMismatch",      "ReadOnlyMismatch",
    "UpstairsIdMismatch",  "SessionIdMismatch",
};

static struct crucible_error error_of(uint32_t kind, uint32_t negotiation)
{
    struct crucible_error e = {.kind = kind, .text = (char *)error_text(kind)};
    if (kind == CE_MISSING_CONTEXT_SLOT) {
        e.block = UINT64_MAX;
        e.extent = 7;
    }
    if (kind == CE_NEGOTIATION_ERROR) {
        e.negotiation.kind = negotiation;
        e.negotiation.requested = 3;
        e.negotiation.actual = 9;
        e.negotiation.expected_version = 13;
        e.negotiation.actual_version = 12;
        e.negotiation.expected_flag = negotiation == CN_ENCRYPTION_MISMATCH;
        e.negotiation.actual_flag = negotiation == CN_READ_ONLY_MISMATCH;
        e.negotiation.expected_id = negotiation == CN_SESSION_ID_MISMATCH ? sess() : up();
        e.negotiation.actual_id = other();
    }
    return e;
}

static void job(struct crucible_msg *m, uint64_t id, bool with_deps)
{
    m->upstairs_id = up();
    m->session_id = sess();
    m->job_id = id;
    m->dependencies = with_deps ? deps : NULL;
    m->dependency_count = with_deps ? 3 : 0;
}

/* The message the generator wrote under name (static arrays: not freed). */
static struct crucible_msg build(const char *name)
{
    static uint32_t alternates[] = {12, 11};
    static uint8_t dest[] = {0, 2};
    static uint64_t gens[] = {1, 2, 3}, flushes[] = {10, 20, UINT64_MAX};
    static bool dirty[] = {false, true, false};
    static struct crucible_block_context contexts[2];
    static struct crucible_read_context reads[3];
    contexts[0] = (struct crucible_block_context){.hash = 0x0123456789abcdefull};
    contexts[1] = (struct crucible_block_context){.hash = UINT64_MAX, .encrypted = true};
    enc_ctx(contexts[1].nonce, contexts[1].tag);
    reads[0] = (struct crucible_read_context){.kind = CRC_EMPTY};
    reads[1] = (struct crucible_read_context){.kind = CRC_ENCRYPTED};
    enc_ctx(reads[1].nonce, reads[1].tag);
    reads[2] =
        (struct crucible_read_context){.kind = CRC_UNENCRYPTED, .hash = 0xfedcba9876543210ull};

    struct crucible_msg m = {0};
    const char *dot = strchr(name, '.');
    size_t base = dot ? (size_t)(dot - name) : strlen(name);
    for (uint32_t t = 0; t < CM_TYPE_COUNT; t++)
        if (strlen(crucible_msg_name(t)) == base && strncmp(name, crucible_msg_name(t), base) == 0)
            m.type = t;
    const char *variant = dot ? dot + 1 : "";
    switch (m.type) {
    case CM_HERE_I_AM:
        if (strcmp(variant, "edges") == 0) {
            m.version = UINT32_MAX;
            memset(m.session_id.b, 0xff, 16);
            m.generation = UINT64_MAX;
            m.read_only = true;
        } else {
            m.version = 13;
            m.upstairs_id = up();
            m.session_id = sess();
            m.generation = 42;
            m.encrypted = true;
            m.alternate_versions = alternates;
            m.alternate_version_count = 2;
        }
        break;
    case CM_YES_ITS_ME:
        m.version = 13;
        m.repair_addr = strcmp(variant, "v6") == 0 ? v6() : v4();
        break;
    case CM_VERSION_MISMATCH:
        m.version = 14;
        break;
    case CM_READ_ONLY_MISMATCH:
        m.expected = true;
        break;
    case CM_ENCRYPTED_MISMATCH:
        m.expected = false;
        break;
    case CM_PROMOTE_TO_ACTIVE:
    case CM_YOU_ARE_NOW_ACTIVE:
        m.upstairs_id = up();
        m.session_id = sess();
        m.generation = 7;
        break;
    case CM_YOU_ARE_NO_LONGER_ACTIVE:
        m.upstairs_id = other();
        m.session_id = sess();
        m.generation = 8;
        break;
    case CM_UUID_MISMATCH:
        m.expected_id = other();
        break;
    case CM_EXTENT_CLOSE:
        m.repair_id = 5;
        m.extent_id = 9;
        break;
    case CM_EXTENT_REOPEN:
        m.repair_id = 6;
        m.extent_id = UINT32_MAX;
        break;
    case CM_EXTENT_FLUSH:
        m.repair_id = 7;
        m.extent_id = 3;
        m.client_id = 2;
        m.flush_number = 100;
        m.gen_number = 4;
        break;
    case CM_EXTENT_REPAIR:
        m.repair_id = 8;
        m.extent_id = 4;
        m.client_id = 1;
        m.repair_addr = v4();
        m.dest_clients = dest;
        m.dest_client_count = 2;
        break;
    case CM_REPAIR_ACK_ID:
        m.repair_id = UINT64_MAX;
        break;
    case CM_EXTENT_ERROR:
        m.repair_id = 9;
        m.extent_id = 5;
        m.error = (struct crucible_error){.kind = CE_IO_ERROR, .text = "disk"};
        break;
    case CM_EXTENT_LIVE_CLOSE:
        job(&m, 1002, true);
        m.extent_id = 6;
        break;
    case CM_EXTENT_LIVE_FLUSH_CLOSE:
        job(&m, 1003, true);
        m.extent_id = 6;
        m.flush_number = 101;
        m.gen_number = 5;
        break;
    case CM_EXTENT_LIVE_REPAIR:
        job(&m, 1004, true);
        m.extent_id = 6;
        m.client_id = 0;
        m.repair_addr = v6();
        break;
    case CM_EXTENT_LIVE_REOPEN:
        job(&m, 1005, true);
        m.extent_id = 6;
        break;
    case CM_EXTENT_LIVE_NO_OP:
        job(&m, 1006, false);
        break;
    case CM_EXTENT_LIVE_CLOSE_ACK:
        job(&m, 1007, false);
        m.result_ok = strcmp(variant, "ok") == 0;
        m.close_gen = 5;
        m.close_flush = 101;
        m.close_dirty = true;
        m.error.kind = CE_INVALID_EXTENT;
        break;
    case CM_EXTENT_LIVE_REPAIR_ACK_ID:
        job(&m, 1008, false);
        m.result_ok = true;
        break;
    case CM_EXTENT_LIVE_ACK_ID:
        job(&m, 1009, false);
        m.error = (struct crucible_error){.kind = CE_GENERIC_ERROR, .text = "live"};
        break;
    case CM_REGION_INFO:
        m.region.block_size = 4096;
        m.region.extent_size = 16384;
        m.region.extent_shift = 12;
        m.region.extent_count = 64;
        m.region.uuid = other();
        m.region.encrypted = true;
        m.region.database_read_version = 1;
        m.region.database_write_version = 1;
        break;
    case CM_EXTENT_VERSIONS:
        if (strcmp(variant, "empty") != 0) {
            m.gen_numbers = gens;
            m.flush_numbers = flushes;
            m.dirty_bits = dirty;
            m.gen_number_count = m.flush_number_count = m.dirty_bit_count = 3;
        }
        break;
    case CM_LAST_FLUSH:
        m.has_last_flush = strcmp(variant, "some") == 0;
        m.last_flush = 77;
        break;
    case CM_WRITE:
        job(&m, 1010, true);
        m.start = 12345;
        m.contexts = contexts;
        m.context_count = 2;
        m.data = data;
        m.data_len = sizeof(data);
        break;
    case CM_WRITE_ACK:
        job(&m, 1010, false);
        m.result_ok = true;
        break;
    case CM_FLUSH:
        if (strcmp(variant, "plain") == 0) {
            job(&m, 1012, false);
            m.flush_number = 103;
        } else {
            job(&m, 1011, true);
            m.flush_number = 102;
            m.snapshot_name = "snap-1";
            m.has_extent_limit = true;
            m.extent_limit = 12;
        }
        m.gen_number = 6;
        break;
    case CM_FLUSH_ACK:
        job(&m, 1011, false);
        m.error.kind = CE_NO_LONGER_ACTIVE;
        break;
    case CM_BARRIER:
        job(&m, 1013, true);
        break;
    case CM_BARRIER_ACK:
        job(&m, 1013, false);
        m.result_ok = true;
        break;
    case CM_READ_REQUEST:
        job(&m, 1014, true);
        m.start = UINT64_MAX - 1;
        m.count = 3;
        break;
    case CM_READ_RESPONSE:
        if (strcmp(variant, "err") == 0) {
            job(&m, 1015, false);
            m.error.kind = CE_HASH_MISMATCH;
        } else {
            job(&m, 1014, false);
            m.result_ok = true;
            m.read_contexts = reads;
            m.read_context_count = 3;
            m.data = data;
            m.data_len = sizeof(data);
        }
        break;
    case CM_WRITE_UNWRITTEN:
        job(&m, 1016, false);
        m.start = 0;
        m.contexts = contexts;
        m.context_count = 1;
        m.data = data;
        m.data_len = 512;
        break;
    case CM_WRITE_UNWRITTEN_ACK:
        job(&m, 1016, false);
        m.error.kind = CE_MODIFYING_READ_ONLY_REGION;
        break;
    case CM_ERROR_REPORT: {
        job(&m, 1017, false);
        uint32_t kind = CE_KIND_COUNT, negotiation = 0;
        for (uint32_t k = 0; k < CE_KIND_COUNT; k++)
            if (strcmp(variant, crucible_error_name(k)) == 0)
                kind = k;
        if (strncmp(variant, "NegotiationError.", 17) == 0) {
            kind = CE_NEGOTIATION_ERROR;
            for (uint32_t n = 0; n < CN_KIND_COUNT; n++)
                if (strcmp(variant + 17, negotiation_names[n]) == 0)
                    negotiation = n;
        }
        assert_true(kind < CE_KIND_COUNT);
        m.error = error_of(kind, negotiation);
        break;
    }
    case CM_UNKNOWN: {
        static const uint8_t three[] = {1, 2, 3};
        m.unknown_tag = 0xdeadbeef;
        m.data = three;
        m.data_len = 3;
        break;
    }
    default:
        break;
    }
    return m;
}

/* ---- tests ---- */

/* Every message built from the generator's values encodes to its vector. */
static void test_encode_matches_vectors(void **state)
{
    for (unsigned i = 0; i < 1024; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    for (unsigned i = 0; i < nvectors; i++) {
        struct crucible_msg m = build(vectors[i].name);
        struct crucible_buf out = {0};
        assert_int_equal(crucible_encode(&out, &m), 0);
        if (out.len != vectors[i].len || memcmp(out.bytes, vectors[i].bytes, out.len) != 0)
            fail_msg("%s: our encoding (%zu bytes) differs from crucible's (%zu bytes)",
                     vectors[i].name, out.len, vectors[i].len);
        crucible_buf_free(&out);
    }
    /* Every variant of Message, CrucibleError and NegotiationError is there. */
    assert_int_equal(nvectors, 97);
    for (uint32_t t = 0; t < CM_TYPE_COUNT; t++) {
        bool seen = false;
        for (unsigned i = 0; i < nvectors; i++)
            seen = seen || strncmp(vectors[i].name, crucible_msg_name(t),
                                   strlen(crucible_msg_name(t))) == 0;
        if (!seen)
            fail_msg("no vector for %s", crucible_msg_name(t));
    }
}

/* Every vector decodes to its variant and encodes back to itself. */
static void test_decode_round_trip(void **state)
{
    for (unsigned i = 0; i < nvectors; i++) {
        const struct vector *v = &vectors[i];
        struct crucible_msg m;
        char why[256] = "";
        if (crucible_decode(v->bytes, v->len, &m, why, sizeof(why)) != 0)
            fail_msg("%s: %s", v->name, why);
        const char *name = crucible_msg_name(m.type);
        assert_non_null(name);
        assert_int_equal(strncmp(v->name, name, strlen(name)), 0);
        struct crucible_buf out = {0};
        assert_int_equal(crucible_encode(&out, &m), 0);
        assert_int_equal(out.len, v->len);
        assert_memory_equal(out.bytes, v->bytes, v->len);
        crucible_buf_free(&out);
        crucible_msg_free(&m);
    }
}

/* Fields as decoded, for a few messages whose layout has traps. */
static void test_decoded_fields(void **state)
{
    struct crucible_msg m;
    char why[256];
    const struct vector *v = find("YesItsMe.v6");
    assert_int_equal(crucible_decode(v->bytes, v->len, &m, why, sizeof(why)), 0);
    assert_true(m.repair_addr.v6);
    assert_int_equal(m.repair_addr.port, 65535);
    assert_int_equal(m.repair_addr.addr[15], 0x42);
    crucible_msg_free(&m);

    v = find("Write");
    assert_int_equal(crucible_decode(v->bytes, v->len, &m, why, sizeof(why)), 0);
    assert_int_equal(m.job_id, 1010);
    assert_int_equal(m.dependency_count, 3);
    assert_true(m.dependencies[2] == UINT64_MAX);
    assert_int_equal(m.start, 12345);
    assert_int_equal(m.context_count, 2);
    assert_false(m.contexts[0].encrypted);
    assert_true(m.contexts[1].encrypted);
    assert_int_equal(m.contexts[1].tag[15], 0xbf);
    assert_int_equal(m.data_len, 1024);
    /* The data is left in place: the last bytes of the message. */
    assert_ptr_equal(m.data, v->bytes + v->len - 1024);
    crucible_msg_free(&m);

    v = find("ErrorReport.NegotiationError.GenerationNumberTooLow");
    assert_int_equal(crucible_decode(v->bytes, v->len, &m, why, sizeof(why)), 0);
    assert_int_equal(m.error.kind, CE_NEGOTIATION_ERROR);
    assert_int_equal(m.error.negotiation.kind, CN_GENERATION_NUMBER_TOO_LOW);
    assert_int_equal(m.error.negotiation.requested, 3);
    assert_int_equal(m.error.negotiation.actual, 9);
    crucible_msg_free(&m);

    v = find("ErrorReport.SnapshotFailed");
    assert_int_equal(crucible_decode(v->bytes, v->len, &m, why, sizeof(why)), 0);
    assert_string_equal(m.error.text, "snap\xc3\xa9");
    crucible_msg_free(&m);
}

/* Every proper prefix of every vector is refused, and so is a byte more. */
static void test_truncations_and_trailing_bytes(void **state)
{
    for (unsigned i = 0; i < nvectors; i++) {
        const struct vector *v = &vectors[i];
        for (size_t n = 0; n < v->len; n++) {
            /* A copy of exactly n bytes, so ASan sees any read past it. */
            uint8_t *cut = malloc(n ? n : 1);
            memcpy(cut, v->bytes, n);
            struct crucible_msg m;
            char why[256] = "";
            if (crucible_decode(cut, n, &m, why, sizeof(why)) == 0)
                fail_msg("%s cut to %zu of %zu bytes decoded", v->name, n, v->len);
            assert_true(why[0] != '\0');
            free(cut);
        }
        uint8_t *more = malloc(v->len + 1);
        memcpy(more, v->bytes, v->len);
        more[v->len] = 0;
        struct crucible_msg m;
        char why[256] = "";
        assert_int_equal(crucible_decode(more, v->len + 1, &m, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "1 bytes left after the message"));
        free(more);
    }
}

/* Lies in tags and lengths are refused with a reason. */
static void test_refusals(void **state)
{
    struct crucible_msg m;
    char why[256];
    /* Variant past the last message. */
    uint8_t tag[4] = {CM_TYPE_COUNT, 0, 0, 0};
    assert_int_equal(crucible_decode(tag, 4, &m, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "Message: variant 42 is not one of the 42 known"));
    /* ExtentVersions claiming 2^40 generation numbers in a few bytes. */
    uint8_t huge[12] = {CM_EXTENT_VERSIONS, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0};
    assert_int_equal(crucible_decode(huge, sizeof(huge), &m, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "gen_numbers: 1099511627776 elements cannot fit"));
    /* A boolean that is 2. */
    uint8_t boolean[5] = {CM_READ_ONLY_MISMATCH, 0, 0, 0, 2};
    assert_int_equal(crucible_decode(boolean, 5, &m, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "expected: 2 is not a boolean"));
    /* A UUID of 15 bytes. */
    const struct vector *v = find("UuidMismatch");
    uint8_t *bad = malloc(v->len);
    memcpy(bad, v->bytes, v->len);
    bad[4] = 15;
    assert_int_equal(crucible_decode(bad, v->len, &m, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "expected_id: a UUID of 15 bytes"));
    free(bad);
    /* A string that is not UTF-8. */
    v = find("ErrorReport.GenericError");
    bad = malloc(v->len);
    memcpy(bad, v->bytes, v->len);
    bad[v->len - 1] = 0xff;
    assert_int_equal(crucible_decode(bad, v->len, &m, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "not a UTF-8 string"));
    free(bad);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Random corruptions decode or are refused; what decodes encodes again. */
static void test_random_corruptions(void **state)
{
    for (unsigned round = 0; round < 20000; round++) {
        const struct vector *v = &vectors[rnd() % nvectors];
        size_t len = v->len;
        uint8_t *b = malloc(len);
        memcpy(b, v->bytes, len);
        unsigned flips = 1 + rnd() % 4;
        for (unsigned k = 0; k < flips; k++)
            b[rnd() % len] = (uint8_t)rnd();
        struct crucible_msg m;
        char why[256];
        if (crucible_decode(b, len, &m, why, sizeof(why)) == 0) {
            struct crucible_buf out = {0};
            assert_int_equal(crucible_encode(&out, &m), 0);
            /* A byte string's content may differ; its length may not. */
            assert_int_equal(out.len, len);
            crucible_buf_free(&out);
            crucible_msg_free(&m);
        }
        free(b);
    }
}

static void test_frames(void **state)
{
    struct crucible_msg m = build("Imok");
    struct crucible_buf out = {0};
    assert_int_equal(crucible_encode_frame(&out, &m), 0);
    assert_int_equal(out.len, 8);
    static const uint8_t want[8] = {8, 0, 0, 0, CM_IMOK, 0, 0, 0};
    assert_memory_equal(out.bytes, want, 8);
    assert_int_equal(crucible_frame_length(out.bytes), 8);
    crucible_buf_free(&out);
    static const uint8_t too_small[4] = {3, 0, 0, 0}, too_big[4] = {1, 0, 0x40, 0x06};
    assert_int_equal(crucible_frame_length(too_small), 0);
    assert_int_equal(crucible_frame_length(too_big), 0);
    /* An unknown type is not encoded. */
    m.type = CM_TYPE_COUNT;
    assert_int_equal(crucible_encode(&out, &m), -1);
    assert_int_equal(out.len, 0);
    crucible_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_matches_vectors),
        cmocka_unit_test(test_decode_round_trip),
        cmocka_unit_test(test_decoded_fields),
        cmocka_unit_test(test_truncations_and_trailing_bytes),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_random_corruptions),
        cmocka_unit_test(test_frames),
    };
    return cmocka_run_group_tests(tests, load_vectors, free_vectors);
}
