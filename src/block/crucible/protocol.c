/* Crucible message encoding (protocol.h). One description per message
 * serves both directions: each field helper writes the field when
 * encoding and reads and checks it when decoding, so the two cannot drift
 * apart. */
#include "block/crucible/protocol.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const msg_names[CM_TYPE_COUNT] = {
    "HereIAm",
    "YesItsMe",
    "VersionMismatch",
    "ReadOnlyMismatch",
    "EncryptedMismatch",
    "PromoteToActive",
    "YouAreNowActive",
    "YouAreNoLongerActive",
    "UuidMismatch",
    "Ruok",
    "Imok",
    "ExtentClose",
    "ExtentReopen",
    "ExtentFlush",
    "ExtentRepair",
    "RepairAckId",
    "ExtentError",
    "ExtentLiveClose",
    "ExtentLiveFlushClose",
    "ExtentLiveRepair",
    "ExtentLiveReopen",
    "ExtentLiveNoOp",
    "ExtentLiveCloseAck",
    "ExtentLiveRepairAckId",
    "ExtentLiveAckId",
    "RegionInfoPlease",
    "RegionInfo",
    "ExtentVersionsPlease",
    "ExtentVersions",
    "LastFlush",
    "Write",
    "WriteAck",
    "Flush",
    "FlushAck",
    "Barrier",
    "BarrierAck",
    "ReadRequest",
    "ReadResponse",
    "WriteUnwritten",
    "WriteUnwrittenAck",
    "ErrorReport",
    "Unknown",
};

const char *crucible_msg_name(uint32_t type)
{
    return type < CM_TYPE_COUNT ? msg_names[type] : NULL;
}

static const char *const error_names[CE_KIND_COUNT] = {
    "GenericError",
    "IoError",
    "Unsupported",
    "Disconnect",
    "DataLockError",
    "RwLockError",
    "RecvDisconnected",
    "SendError",
    "OffsetUnaligned",
    "DataLenUnaligned",
    "BlockSizeMismatch",
    "InvalidNumberOfBlocks",
    "OffsetInvalid",
    "UpstairsActivateInProgress",
    "UpstairsDeactivating",
    "UpstairsInactive",
    "UuidMismatch",
    "EncryptionError",
    "DecryptionError",
    "HashMismatch",
    "LBARangeOverlap",
    "SubvolumeSizeMismatch",
    "SubvolumeTypeMismatch",
    "CannotServeBlocks",
    "CannotReceiveBlocks",
    "SnapshotFailed",
    "ModifyingReadOnlyRegion",
    "InvalidExtent",
    "RepairRequestError",
    "RepairFilesInvalid",
    "RepairStreamError",
    "GenerationNumberInvalid",
    "NoLongerActive",
    "RegionAssembleError",
    "PropertyNotAvailable",
    "ReplaceRequestInvalid",
    "MissingContextSlot",
    "BadMetadata",
    "BadContextSlot",
    "MissingBlockContext",
    "RegionIncompatible",
    "NegotiationError",
};

const char *crucible_error_name(uint32_t kind)
{
    return kind < CE_KIND_COUNT ? error_names[kind] : NULL;
}

bool crucible_error_has_text(uint32_t kind)
{
    switch (kind) {
    case CE_GENERIC_ERROR:
    case CE_IO_ERROR:
    case CE_UNSUPPORTED:
    case CE_RW_LOCK_ERROR:
    case CE_SEND_ERROR:
    case CE_INVALID_NUMBER_OF_BLOCKS:
    case CE_ENCRYPTION_ERROR:
    case CE_CANNOT_SERVE_BLOCKS:
    case CE_CANNOT_RECEIVE_BLOCKS:
    case CE_SNAPSHOT_FAILED:
    case CE_REPAIR_REQUEST_ERROR:
    case CE_REPAIR_FILES_INVALID:
    case CE_REPAIR_STREAM_ERROR:
    case CE_PROPERTY_NOT_AVAILABLE:
    case CE_REPLACE_REQUEST_INVALID:
    case CE_BAD_METADATA:
    case CE_BAD_CONTEXT_SLOT:
    case CE_REGION_INCOMPATIBLE:
        return true;
    default:
        return false;
    }
}

/* ---- buffers ---- */

void crucible_buf_free(struct crucible_buf *buf)
{
    free(buf->bytes);
    *buf = (struct crucible_buf){0};
}

static void buf_put(struct crucible_buf *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            cap *= 2;
        }
        uint8_t *bytes = realloc(b->bytes, cap);
        if (!bytes) {
            b->failed = true;
            return;
        }
        b->bytes = bytes;
        b->cap = cap;
    }
    if (n)
        memcpy(b->bytes + b->len, p, n);
    b->len += n;
}

/* ---- the codec: one walk over a message's fields, either way ---- */

struct codec {
    bool decoding;
    struct crucible_buf *out;
    const uint8_t *in;
    size_t len, off;
    bool bad;
    char *why;
    size_t why_size;
};

static void __attribute__((format(printf, 2, 3))) fail(struct codec *c, const char *fmt, ...)
{
    if (c->bad)
        return;
    c->bad = true;
    if (c->why && c->why_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->why, c->why_size, fmt, ap);
        va_end(ap);
    }
}

/* n bytes of input, or NULL (and the codec failed) when fewer are left. */
static const uint8_t *take(struct codec *c, size_t n, const char *what)
{
    if (c->bad)
        return NULL;
    if (n > c->len - c->off) {
        fail(c, "%s at byte %zu: the message ends %zu bytes short", what, c->off,
             n - (c->len - c->off));
        return NULL;
    }
    const uint8_t *p = c->in + c->off;
    c->off += n;
    return p;
}

static void c_raw(struct codec *c, uint8_t *p, size_t n, const char *what)
{
    if (!c->decoding) {
        buf_put(c->out, p, n);
        return;
    }
    const uint8_t *q = take(c, n, what);
    if (q)
        memcpy(p, q, n);
}

static void c_uint(struct codec *c, uint64_t *v, unsigned bytes, const char *what)
{
    uint8_t le[8];
    if (!c->decoding) {
        for (unsigned i = 0; i < bytes; i++)
            le[i] = (uint8_t)(*v >> (8 * i));
        buf_put(c->out, le, bytes);
        return;
    }
    const uint8_t *q = take(c, bytes, what);
    uint64_t x = 0;
    for (unsigned i = 0; q && i < bytes; i++)
        x |= (uint64_t)q[i] << (8 * i);
    *v = x;
}

static void c_u64(struct codec *c, uint64_t *v, const char *what)
{
    c_uint(c, v, 8, what);
}

static void c_u32(struct codec *c, uint32_t *v, const char *what)
{
    uint64_t x = *v;
    c_uint(c, &x, 4, what);
    if (c->decoding)
        *v = (uint32_t)x;
}

static void c_u16(struct codec *c, uint16_t *v, const char *what)
{
    uint64_t x = *v;
    c_uint(c, &x, 2, what);
    if (c->decoding)
        *v = (uint16_t)x;
}

static void c_u8(struct codec *c, uint8_t *v, const char *what)
{
    c_raw(c, v, 1, what);
}

static void c_bool(struct codec *c, bool *v, const char *what)
{
    uint8_t b = *v ? 1 : 0;
    c_u8(c, &b, what);
    if (c->decoding && !c->bad && b > 1)
        fail(c, "%s: %u is not a boolean", what, b);
    if (c->decoding)
        *v = b == 1;
}

/* An enum's variant index, below count. */
static void c_variant(struct codec *c, uint32_t *tag, uint32_t count, const char *what)
{
    c_u32(c, tag, what);
    if (!c->bad && *tag >= count)
        fail(c, "%s: variant %u is not one of the %u known", what, *tag, count);
}

/* Option<T>'s tag. */
static void c_option(struct codec *c, bool *present, const char *what)
{
    uint8_t t = *present ? 1 : 0;
    c_u8(c, &t, what);
    if (c->decoding && !c->bad && t > 1)
        fail(c, "%s: option tag %u", what, t);
    if (c->decoding)
        *present = t == 1;
}

/* A sequence's length, checked against the bytes left when each element
 * takes at least min_size of them: allocations stay within the frame. */
static void c_count(struct codec *c, uint64_t *n, size_t min_size, const char *what)
{
    c_u64(c, n, what);
    if (c->decoding && !c->bad && *n > (c->len - c->off) / min_size)
        fail(c, "%s: %llu elements cannot fit in the %zu bytes left", what, (unsigned long long)*n,
             c->len - c->off);
}

/* Room for n elements of size bytes when decoding (the count is checked). */
static void *c_alloc(struct codec *c, uint64_t n, size_t size)
{
    if (c->bad || n == 0)
        return NULL;
    void *p = calloc((size_t)n, size);
    if (!p)
        fail(c, "out of memory for %llu elements", (unsigned long long)n);
    return p;
}

/* An array of n elements: allocated when decoding, required when encoding. */
#define C_ARRAY(c, ptr, n)                                                                         \
    do {                                                                                           \
        if ((c)->decoding)                                                                         \
            (ptr) = c_alloc((c), (n), sizeof(*(ptr)));                                             \
        else if ((n) && !(ptr))                                                                    \
            fail((c), "%llu elements but no array", (unsigned long long)(n));                      \
    } while (0)

static void c_uuid(struct codec *c, struct crucible_uuid *u, const char *what)
{
    uint64_t n = 16;
    c_u64(c, &n, what);
    if (!c->bad && n != 16)
        fail(c, "%s: a UUID of %llu bytes", what, (unsigned long long)n);
    c_raw(c, u->b, 16, what);
}

/* A byte string left in place: *p points into the input when decoding. */
static void c_data(struct codec *c, const uint8_t **p, uint64_t *n, const char *what)
{
    c_count(c, n, 1, what);
    if (!c->decoding) {
        buf_put(c->out, *p, (size_t)*n);
        return;
    }
    *p = take(c, (size_t)*n, what);
}

/* A String, kept NUL-terminated: one holding a NUL or invalid UTF-8 is
 * refused, as Rust's deserializer refuses the latter. */
static bool utf8_ok(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t b = s[i];
        size_t len = b < 0x80             ? 1
                     : (b & 0xe0) == 0xc0 ? 2
                     : (b & 0xf0) == 0xe0 ? 3
                     : (b & 0xf8) == 0xf0 ? 4
                                          : 0;
        if (len == 0 || len > n - i || (len == 2 && b < 0xc2))
            return false;
        uint32_t cp = len == 1 ? b : b & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static void c_string(struct codec *c, char **s, const char *what)
{
    uint64_t n = c->decoding ? 0 : (*s ? strlen(*s) : 0);
    const uint8_t *p = c->decoding ? NULL : (const uint8_t *)*s;
    c_data(c, &p, &n, what);
    if (!c->decoding || c->bad)
        return;
    if (memchr(p, 0, (size_t)n) || !utf8_ok(p, (size_t)n)) {
        fail(c, "%s: not a UTF-8 string without NUL", what);
        return;
    }
    char *t = malloc((size_t)n + 1);
    if (!t) {
        fail(c, "out of memory for a string");
        return;
    }
    memcpy(t, p, (size_t)n);
    t[n] = '\0';
    *s = t;
}

static void c_seq_u64(struct codec *c, uint64_t **v, uint64_t *n, const char *what)
{
    c_count(c, n, 8, what);
    C_ARRAY(c, *v, *n);
    for (uint64_t i = 0; i < *n && !c->bad && *v; i++)
        c_u64(c, &(*v)[i], what);
}

static void c_seq_u32(struct codec *c, uint32_t **v, uint64_t *n, const char *what)
{
    c_count(c, n, 4, what);
    C_ARRAY(c, *v, *n);
    for (uint64_t i = 0; i < *n && !c->bad && *v; i++)
        c_u32(c, &(*v)[i], what);
}

static void c_seq_u8(struct codec *c, uint8_t **v, uint64_t *n, const char *what)
{
    c_count(c, n, 1, what);
    C_ARRAY(c, *v, *n);
    for (uint64_t i = 0; i < *n && !c->bad && *v; i++)
        c_u8(c, &(*v)[i], what);
}

static void c_seq_bool(struct codec *c, bool **v, uint64_t *n, const char *what)
{
    c_count(c, n, 1, what);
    C_ARRAY(c, *v, *n);
    for (uint64_t i = 0; i < *n && !c->bad && *v; i++)
        c_bool(c, &(*v)[i], what);
}

/* std::net::SocketAddr: V4((octets, port)) or V6((octets, port)); serde
 * leaves out V6's flow information and scope. */
static void c_sockaddr(struct codec *c, struct crucible_sockaddr *a, const char *what)
{
    uint32_t tag = a->v6 ? 1 : 0;
    c_variant(c, &tag, 2, what);
    if (c->decoding)
        a->v6 = tag == 1;
    c_raw(c, a->addr, a->v6 ? 16 : 4, what);
    c_u16(c, &a->port, what);
}

static void c_negotiation(struct codec *c, struct crucible_error *e)
{
    const char *what = "NegotiationError";
    c_variant(c, &e->negotiation.kind, CN_KIND_COUNT, what);
    if (c->bad)
        return;
    switch (e->negotiation.kind) {
    case CN_GENERATION_NUMBER_TOO_LOW:
        c_u64(c, &e->negotiation.requested, what);
        c_u64(c, &e->negotiation.actual, what);
        break;
    case CN_INCOMPATIBLE_VERSION:
        c_u32(c, &e->negotiation.expected_version, what);
        c_u32(c, &e->negotiation.actual_version, what);
        break;
    case CN_ENCRYPTION_MISMATCH:
    case CN_READ_ONLY_MISMATCH:
        c_bool(c, &e->negotiation.expected_flag, what);
        c_bool(c, &e->negotiation.actual_flag, what);
        break;
    case CN_UPSTAIRS_ID_MISMATCH:
    case CN_SESSION_ID_MISMATCH:
        c_uuid(c, &e->negotiation.expected_id, what);
        c_uuid(c, &e->negotiation.actual_id, what);
        break;
    default:
        break;
    }
}

static void c_error(struct codec *c, struct crucible_error *e)
{
    const char *what = "CrucibleError";
    c_variant(c, &e->kind, CE_KIND_COUNT, what);
    if (c->bad)
        return;
    if (crucible_error_has_text(e->kind))
        c_string(c, &e->text, what);
    else if (e->kind == CE_MISSING_CONTEXT_SLOT) {
        c_u64(c, &e->block, what);
        c_u32(c, &e->extent, what);
    } else if (e->kind == CE_NEGOTIATION_ERROR)
        c_negotiation(c, e);
}

/* Result<T, CrucibleError>: Ok is variant 0, Err 1. Returns whether the
 * Ok value follows. */
static bool c_result(struct codec *c, struct crucible_msg *m)
{
    uint32_t tag = m->result_ok ? 0 : 1;
    c_variant(c, &tag, 2, "Result");
    if (c->decoding)
        m->result_ok = tag == 0;
    if (!c->bad && !m->result_ok)
        c_error(c, &m->error);
    return !c->bad && m->result_ok;
}

static void c_encryption_context(struct codec *c, uint8_t nonce[12], uint8_t tag[16])
{
    c_raw(c, nonce, 12, "nonce");
    c_raw(c, tag, 16, "tag");
}

/* Vec<BlockContext>. */
static void c_contexts(struct codec *c, struct crucible_msg *m)
{
    c_count(c, &m->context_count, 9, "contexts");
    C_ARRAY(c, m->contexts, m->context_count);
    for (uint64_t i = 0; i < m->context_count && !c->bad && m->contexts; i++) {
        struct crucible_block_context *bc = &m->contexts[i];
        c_u64(c, &bc->hash, "hash");
        c_option(c, &bc->encrypted, "encryption_context");
        if (bc->encrypted)
            c_encryption_context(c, bc->nonce, bc->tag);
    }
}

/* Vec<ReadBlockContext>. */
static void c_read_contexts(struct codec *c, struct crucible_msg *m)
{
    c_count(c, &m->read_context_count, 4, "blocks");
    C_ARRAY(c, m->read_contexts, m->read_context_count);
    for (uint64_t i = 0; i < m->read_context_count && !c->bad && m->read_contexts; i++) {
        struct crucible_read_context *rc = &m->read_contexts[i];
        c_variant(c, &rc->kind, 3, "ReadBlockContext");
        if (rc->kind == CRC_ENCRYPTED)
            c_encryption_context(c, rc->nonce, rc->tag);
        else if (rc->kind == CRC_UNENCRYPTED)
            c_u64(c, &rc->hash, "hash");
    }
}

static void c_ids(struct codec *c, struct crucible_msg *m)
{
    c_uuid(c, &m->upstairs_id, "upstairs_id");
    c_uuid(c, &m->session_id, "session_id");
    c_u64(c, &m->job_id, "job_id");
}

static void c_job(struct codec *c, struct crucible_msg *m)
{
    c_ids(c, m);
    c_seq_u64(c, &m->dependencies, &m->dependency_count, "dependencies");
}

static void c_write_header(struct codec *c, struct crucible_msg *m)
{
    c_job(c, m);
    c_u64(c, &m->start, "start");
    c_contexts(c, m);
}

static void c_message(struct codec *c, struct crucible_msg *m)
{
    c_variant(c, &m->type, CM_TYPE_COUNT, "Message");
    if (c->bad)
        return;
    switch (m->type) {
    case CM_HERE_I_AM:
        c_u32(c, &m->version, "version");
        c_uuid(c, &m->upstairs_id, "upstairs_id");
        c_uuid(c, &m->session_id, "session_id");
        c_u64(c, &m->generation, "generation");
        c_bool(c, &m->read_only, "read_only");
        c_bool(c, &m->encrypted, "encrypted");
        c_seq_u32(c, &m->alternate_versions, &m->alternate_version_count, "alternate_versions");
        break;
    case CM_YES_ITS_ME:
        c_u32(c, &m->version, "version");
        c_sockaddr(c, &m->repair_addr, "repair_addr");
        break;
    case CM_VERSION_MISMATCH:
        c_u32(c, &m->version, "version");
        break;
    case CM_READ_ONLY_MISMATCH:
    case CM_ENCRYPTED_MISMATCH:
        c_bool(c, &m->expected, "expected");
        break;
    case CM_PROMOTE_TO_ACTIVE:
    case CM_YOU_ARE_NOW_ACTIVE:
    case CM_YOU_ARE_NO_LONGER_ACTIVE:
        c_uuid(c, &m->upstairs_id, "upstairs_id");
        c_uuid(c, &m->session_id, "session_id");
        c_u64(c, &m->generation, "generation");
        break;
    case CM_UUID_MISMATCH:
        c_uuid(c, &m->expected_id, "expected_id");
        break;
    case CM_RUOK:
    case CM_IMOK:
    case CM_REGION_INFO_PLEASE:
    case CM_EXTENT_VERSIONS_PLEASE:
        break;
    case CM_EXTENT_CLOSE:
    case CM_EXTENT_REOPEN:
        c_u64(c, &m->repair_id, "repair_id");
        c_u32(c, &m->extent_id, "extent_id");
        break;
    case CM_EXTENT_FLUSH:
        c_u64(c, &m->repair_id, "repair_id");
        c_u32(c, &m->extent_id, "extent_id");
        c_u8(c, &m->client_id, "client_id");
        c_u64(c, &m->flush_number, "flush_number");
        c_u64(c, &m->gen_number, "gen_number");
        break;
    case CM_EXTENT_REPAIR:
        c_u64(c, &m->repair_id, "repair_id");
        c_u32(c, &m->extent_id, "extent_id");
        c_u8(c, &m->client_id, "source_client_id");
        c_sockaddr(c, &m->repair_addr, "source_repair_address");
        c_seq_u8(c, &m->dest_clients, &m->dest_client_count, "dest_clients");
        break;
    case CM_REPAIR_ACK_ID:
        c_u64(c, &m->repair_id, "repair_id");
        break;
    case CM_EXTENT_ERROR:
        c_u64(c, &m->repair_id, "repair_id");
        c_u32(c, &m->extent_id, "extent_id");
        c_error(c, &m->error);
        break;
    case CM_EXTENT_LIVE_CLOSE:
    case CM_EXTENT_LIVE_REOPEN:
        c_job(c, m);
        c_u32(c, &m->extent_id, "extent_id");
        break;
    case CM_EXTENT_LIVE_FLUSH_CLOSE:
        c_job(c, m);
        c_u32(c, &m->extent_id, "extent_id");
        c_u64(c, &m->flush_number, "flush_number");
        c_u64(c, &m->gen_number, "gen_number");
        break;
    case CM_EXTENT_LIVE_REPAIR:
        c_job(c, m);
        c_u32(c, &m->extent_id, "extent_id");
        c_u8(c, &m->client_id, "source_client_id");
        c_sockaddr(c, &m->repair_addr, "source_repair_address");
        break;
    case CM_EXTENT_LIVE_NO_OP:
    case CM_BARRIER:
        c_job(c, m);
        break;
    case CM_EXTENT_LIVE_CLOSE_ACK:
        c_ids(c, m);
        if (c_result(c, m)) {
            c_u64(c, &m->close_gen, "result");
            c_u64(c, &m->close_flush, "result");
            c_bool(c, &m->close_dirty, "result");
        }
        break;
    case CM_EXTENT_LIVE_REPAIR_ACK_ID:
    case CM_EXTENT_LIVE_ACK_ID:
    case CM_WRITE_ACK:
    case CM_FLUSH_ACK:
    case CM_BARRIER_ACK:
    case CM_WRITE_UNWRITTEN_ACK:
        c_ids(c, m);
        c_result(c, m);
        break;
    case CM_REGION_INFO:
        c_u64(c, &m->region.block_size, "block_size");
        c_u64(c, &m->region.extent_size, "extent_size");
        c_u32(c, &m->region.extent_shift, "extent_size");
        c_u32(c, &m->region.extent_count, "extent_count");
        c_uuid(c, &m->region.uuid, "uuid");
        c_bool(c, &m->region.encrypted, "encrypted");
        c_u64(c, &m->region.database_read_version, "database_read_version");
        c_u64(c, &m->region.database_write_version, "database_write_version");
        break;
    case CM_EXTENT_VERSIONS:
        c_seq_u64(c, &m->gen_numbers, &m->gen_number_count, "gen_numbers");
        c_seq_u64(c, &m->flush_numbers, &m->flush_number_count, "flush_numbers");
        c_seq_bool(c, &m->dirty_bits, &m->dirty_bit_count, "dirty_bits");
        break;
    case CM_LAST_FLUSH:
        c_option(c, &m->has_last_flush, "last_flush_number");
        if (m->has_last_flush)
            c_u64(c, &m->last_flush, "last_flush_number");
        break;
    case CM_WRITE:
    case CM_WRITE_UNWRITTEN:
        c_write_header(c, m);
        c_data(c, &m->data, &m->data_len, "data");
        break;
    case CM_FLUSH: {
        c_job(c, m);
        c_u64(c, &m->flush_number, "flush_number");
        c_u64(c, &m->gen_number, "gen_number");
        bool snapshot = m->snapshot_name != NULL;
        c_option(c, &snapshot, "snapshot_details");
        if (snapshot)
            c_string(c, &m->snapshot_name, "snapshot_name");
        c_option(c, &m->has_extent_limit, "extent_limit");
        if (m->has_extent_limit)
            c_u32(c, &m->extent_limit, "extent_limit");
        break;
    }
    case CM_READ_REQUEST:
        c_job(c, m);
        c_u64(c, &m->start, "start");
        c_u64(c, &m->count, "count");
        break;
    case CM_READ_RESPONSE:
        c_ids(c, m);
        if (c_result(c, m))
            c_read_contexts(c, m);
        c_data(c, &m->data, &m->data_len, "data");
        break;
    case CM_ERROR_REPORT:
        c_ids(c, m);
        c_error(c, &m->error);
        break;
    case CM_UNKNOWN:
        c_u32(c, &m->unknown_tag, "Unknown");
        c_data(c, &m->data, &m->data_len, "Unknown");
        break;
    }
}

/* ---- entry points ---- */

void crucible_msg_free(struct crucible_msg *m)
{
    free(m->alternate_versions);
    free(m->dest_clients);
    free(m->dependencies);
    free(m->error.text);
    free(m->gen_numbers);
    free(m->flush_numbers);
    free(m->dirty_bits);
    free(m->contexts);
    free(m->read_contexts);
    free(m->snapshot_name);
    *m = (struct crucible_msg){0};
}

int crucible_encode(struct crucible_buf *out, const struct crucible_msg *msg)
{
    struct codec c = {.out = out};
    if (msg->type >= CM_TYPE_COUNT)
        return -1;
    size_t before = out->len;
    /* The walk takes non-const pointers for decoding; encoding only reads. */
    c_message(&c, (struct crucible_msg *)msg);
    if (c.bad || out->failed) {
        out->len = before;
        return -1;
    }
    return 0;
}

int crucible_encode_frame(struct crucible_buf *out, const struct crucible_msg *msg)
{
    size_t start = out->len;
    uint8_t zero[4] = {0};
    buf_put(out, zero, 4);
    if (out->failed || crucible_encode(out, msg) < 0) {
        out->len = start;
        return -1;
    }
    size_t len = out->len - start;
    if (len > CRUCIBLE_MAX_FRAME) {
        out->len = start;
        return -1;
    }
    for (unsigned i = 0; i < 4; i++)
        out->bytes[start + i] = (uint8_t)(len >> (8 * i));
    return 0;
}

int crucible_decode(const uint8_t *bytes, size_t len, struct crucible_msg *msg, char *why,
                    size_t why_size)
{
    *msg = (struct crucible_msg){0};
    struct codec c = {.decoding = true, .in = bytes, .len = len, .why = why, .why_size = why_size};
    c_message(&c, msg);
    if (!c.bad && c.off != len)
        fail(&c, "%s: %zu bytes left after the message", crucible_msg_name(msg->type), len - c.off);
    if (c.bad) {
        crucible_msg_free(msg);
        return -1;
    }
    return 0;
}

uint32_t crucible_frame_length(const uint8_t head[4])
{
    uint32_t len = (uint32_t)head[0] | (uint32_t)head[1] << 8 | (uint32_t)head[2] << 16 |
                   (uint32_t)head[3] << 24;
    return len < 4 || len > CRUCIBLE_MAX_FRAME ? 0 : len;
}
