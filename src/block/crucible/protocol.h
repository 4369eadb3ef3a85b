/* Crucible's upstairs-downstairs messages (protocol version 13): the wire
 * encoding of oxidecomputer/crucible's `Message` enum, which is serde's
 * derive through bincode 1.x with its default options: integers
 * little-endian at their full width, enum variants as a u32 index,
 * sequences, strings and byte strings as a u64 count then their elements,
 * Option as a u8 tag, bool as a u8, UUIDs as 16-byte byte strings,
 * newtypes as their content. A frame is a u32 little-endian length that
 * counts itself, then the message.
 *
 * The decoder treats its input as hostile: every count is checked against
 * the bytes left, nothing is read past the frame, and what it allocates is
 * bounded by the frame's length. tests/crucible/vectors.txt holds crucible's
 * own encodings (tests/crucible/golden), which encoder and decoder match
 * byte for byte. */
#ifndef BLOCK_CRUCIBLE_PROTOCOL_H
#define BLOCK_CRUCIBLE_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRUCIBLE_MESSAGE_VERSION 13
/* Crucible refuses frames over 100 MiB. */
#define CRUCIBLE_MAX_FRAME (100u << 20)

/* Message variants, in the enum's order (their wire index). */
enum crucible_msg_type {
    CM_HERE_I_AM,
    CM_YES_ITS_ME,
    CM_VERSION_MISMATCH,
    CM_READ_ONLY_MISMATCH,
    CM_ENCRYPTED_MISMATCH,
    CM_PROMOTE_TO_ACTIVE,
    CM_YOU_ARE_NOW_ACTIVE,
    CM_YOU_ARE_NO_LONGER_ACTIVE,
    CM_UUID_MISMATCH,
    CM_RUOK,
    CM_IMOK,
    CM_EXTENT_CLOSE,
    CM_EXTENT_REOPEN,
    CM_EXTENT_FLUSH,
    CM_EXTENT_REPAIR,
    CM_REPAIR_ACK_ID,
    CM_EXTENT_ERROR,
    CM_EXTENT_LIVE_CLOSE,
    CM_EXTENT_LIVE_FLUSH_CLOSE,
    CM_EXTENT_LIVE_REPAIR,
    CM_EXTENT_LIVE_REOPEN,
    CM_EXTENT_LIVE_NO_OP,
    CM_EXTENT_LIVE_CLOSE_ACK,
    CM_EXTENT_LIVE_REPAIR_ACK_ID,
    CM_EXTENT_LIVE_ACK_ID,
    CM_REGION_INFO_PLEASE,
    CM_REGION_INFO,
    CM_EXTENT_VERSIONS_PLEASE,
    CM_EXTENT_VERSIONS,
    CM_LAST_FLUSH,
    CM_WRITE,
    CM_WRITE_ACK,
    CM_FLUSH,
    CM_FLUSH_ACK,
    CM_BARRIER,
    CM_BARRIER_ACK,
    CM_READ_REQUEST,
    CM_READ_RESPONSE,
    CM_WRITE_UNWRITTEN,
    CM_WRITE_UNWRITTEN_ACK,
    CM_ERROR_REPORT,
    CM_UNKNOWN,
    CM_TYPE_COUNT
};

/* The variant's name as crucible spells it ("HereIAm"), or NULL. */
const char *crucible_msg_name(uint32_t type);

/* CrucibleError variants (wire index); the ones with a string are
 * marked by crucible_error_has_text. */
enum crucible_error_kind {
    CE_GENERIC_ERROR,
    CE_IO_ERROR,
    CE_UNSUPPORTED,
    CE_DISCONNECT,
    CE_DATA_LOCK_ERROR,
    CE_RW_LOCK_ERROR,
    CE_RECV_DISCONNECTED,
    CE_SEND_ERROR,
    CE_OFFSET_UNALIGNED,
    CE_DATA_LEN_UNALIGNED,
    CE_BLOCK_SIZE_MISMATCH,
    CE_INVALID_NUMBER_OF_BLOCKS,
    CE_OFFSET_INVALID,
    CE_UPSTAIRS_ACTIVATE_IN_PROGRESS,
    CE_UPSTAIRS_DEACTIVATING,
    CE_UPSTAIRS_INACTIVE,
    CE_UUID_MISMATCH,
    CE_ENCRYPTION_ERROR,
    CE_DECRYPTION_ERROR,
    CE_HASH_MISMATCH,
    CE_LBA_RANGE_OVERLAP,
    CE_SUBVOLUME_SIZE_MISMATCH,
    CE_SUBVOLUME_TYPE_MISMATCH,
    CE_CANNOT_SERVE_BLOCKS,
    CE_CANNOT_RECEIVE_BLOCKS,
    CE_SNAPSHOT_FAILED,
    CE_MODIFYING_READ_ONLY_REGION,
    CE_INVALID_EXTENT,
    CE_REPAIR_REQUEST_ERROR,
    CE_REPAIR_FILES_INVALID,
    CE_REPAIR_STREAM_ERROR,
    CE_GENERATION_NUMBER_INVALID,
    CE_NO_LONGER_ACTIVE,
    CE_REGION_ASSEMBLE_ERROR,
    CE_PROPERTY_NOT_AVAILABLE,
    CE_REPLACE_REQUEST_INVALID,
    CE_MISSING_CONTEXT_SLOT, /* block, extent */
    CE_BAD_METADATA,
    CE_BAD_CONTEXT_SLOT,
    CE_MISSING_BLOCK_CONTEXT,
    CE_REGION_INCOMPATIBLE,
    CE_NEGOTIATION_ERROR, /* negotiation */
    CE_KIND_COUNT
};

bool crucible_error_has_text(uint32_t kind);
const char *crucible_error_name(uint32_t kind);

/* NegotiationError variants (wire index). */
enum crucible_negotiation_kind {
    CN_OUT_OF_ORDER,
    CN_GENERATION_ZERO_IS_ILLEGAL,
    CN_GENERATION_NUMBER_TOO_LOW, /* requested, actual */
    CN_INCOMPATIBLE_VERSION,      /* expected_version, actual_version */
    CN_ENCRYPTION_MISMATCH,       /* expected_flag, actual_flag */
    CN_READ_ONLY_MISMATCH,        /* expected_flag, actual_flag */
    CN_UPSTAIRS_ID_MISMATCH,      /* expected_id, actual_id */
    CN_SESSION_ID_MISMATCH,       /* expected_id, actual_id */
    CN_KIND_COUNT
};

struct crucible_uuid {
    uint8_t b[16];
};

/* std::net::SocketAddr: V4 uses addr[0..4). */
struct crucible_sockaddr {
    bool v6;
    uint8_t addr[16];
    uint16_t port;
};

struct crucible_error {
    uint32_t kind; /* enum crucible_error_kind */
    char *text;    /* NUL-terminated, for the kinds with text; owned */
    uint64_t block;
    uint32_t extent;
    struct {
        uint32_t kind; /* enum crucible_negotiation_kind */
        uint64_t requested, actual;
        uint32_t expected_version, actual_version;
        bool expected_flag, actual_flag;
        struct crucible_uuid expected_id, actual_id;
    } negotiation;
};

/* An integrity hash, and the encryption nonce and tag when encrypted. */
struct crucible_block_context {
    uint64_t hash;
    bool encrypted;
    uint8_t nonce[12];
    uint8_t tag[16];
};

enum crucible_read_context_kind { CRC_EMPTY, CRC_ENCRYPTED, CRC_UNENCRYPTED };

struct crucible_read_context {
    uint32_t kind; /* enum crucible_read_context_kind */
    uint64_t hash; /* CRC_UNENCRYPTED */
    uint8_t nonce[12], tag[16];
};

/* One message: the fields its type uses (the rest stay zero). Arrays are
 * owned (crucible_msg_free); data points into the buffer it was decoded
 * from, or at the caller's bytes for encoding. */
struct crucible_msg {
    uint32_t type; /* enum crucible_msg_type */

    uint32_t version;
    /* YouAreNoLongerActive's new_upstairs_id, new_session_id and new_gen
     * are upstairs_id, session_id and generation. */
    struct crucible_uuid upstairs_id, session_id, expected_id;
    uint64_t generation;
    bool read_only, encrypted, expected;
    uint32_t *alternate_versions;
    uint64_t alternate_version_count;
    struct crucible_sockaddr repair_addr; /* also source_repair_address */

    uint64_t repair_id;
    uint32_t extent_id;
    uint8_t client_id; /* also source_client_id */
    uint64_t flush_number, gen_number;
    uint8_t *dest_clients;
    uint64_t dest_client_count;

    uint64_t job_id;
    uint64_t *dependencies;
    uint64_t dependency_count;

    /* Result<_, CrucibleError> of the acks, ExtentError's and
     * ErrorReport's error (result_ok false), ReadResponse's blocks. */
    bool result_ok;
    struct crucible_error error;
    uint64_t close_gen, close_flush; /* ExtentLiveCloseAck's Ok((gen, flush, dirty)) */
    bool close_dirty;

    /* RegionInfo's RegionDefinition. */
    struct {
        uint64_t block_size;
        uint64_t extent_size; /* blocks */
        uint32_t extent_shift;
        uint32_t extent_count;
        struct crucible_uuid uuid;
        bool encrypted;
        uint64_t database_read_version, database_write_version;
    } region;

    uint64_t *gen_numbers, *flush_numbers;
    bool *dirty_bits;
    uint64_t gen_number_count, flush_number_count, dirty_bit_count;

    bool has_last_flush;
    uint64_t last_flush;

    uint64_t start; /* BlockIndex */
    uint64_t count; /* ReadRequest */
    struct crucible_block_context *contexts;
    uint64_t context_count;
    struct crucible_read_context *read_contexts;
    uint64_t read_context_count;

    char *snapshot_name; /* Flush: Some(SnapshotDetails) when non-NULL */
    bool has_extent_limit;
    uint32_t extent_limit;

    uint32_t unknown_tag; /* Unknown(u32, bytes) */
    const uint8_t *data;  /* Write, WriteUnwritten, ReadResponse, Unknown */
    uint64_t data_len;
};

/* Frees what a decode allocated (or what the caller set in the same
 * fields with malloc) and zeroes msg. */
void crucible_msg_free(struct crucible_msg *msg);

/* A growable output buffer. */
struct crucible_buf {
    uint8_t *bytes;
    size_t len, cap;
    bool failed; /* out of memory: bytes is incomplete */
};

void crucible_buf_free(struct crucible_buf *buf);

/* Appends msg's encoding (no frame length). Returns 0, or -1 for a message
 * that cannot be encoded (unknown type or kind, out of memory). */
int crucible_encode(struct crucible_buf *out, const struct crucible_msg *msg);

/* Appends a whole frame: length, then msg. Returns 0 or -1. */
int crucible_encode_frame(struct crucible_buf *out, const struct crucible_msg *msg);

/* Decodes one message from bytes[0..len) (no frame length), which it must
 * fill exactly. msg's data points into bytes. Returns 0; or -1 with why
 * filled and msg zeroed. */
int crucible_decode(const uint8_t *bytes, size_t len, struct crucible_msg *msg, char *why,
                    size_t why_size);

/* A frame's length from its first 4 bytes: 0 when it is out of range
 * (below 4 or over CRUCIBLE_MAX_FRAME). */
uint32_t crucible_frame_length(const uint8_t head[4]);

#endif
