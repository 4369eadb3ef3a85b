/* Versioned device state. One function per device both saves and loads its
 * state, field by field, so the two directions cannot drift:
 *
 *     static int uart_state(struct device *d, struct snap *s)
 *     {
 *         snap_u8(s, "lcr", &u->lcr);
 *         if (snap_version(s) >= 2)
 *             snap_u8(s, "fcr", &u->fcr);
 *         return snap_error(s);
 *     }
 *
 * A state is a sequence of records, one per device: the device's name, its
 * kind, the version it was saved at and its fields. Every field has a name
 * and a length; values are little-endian. Loading is strict: fields must
 * come in the order the function asks for them, with the length it expects,
 * and none may be left over, so a truncated, reordered or corrupt state is
 * refused with an error naming the device and the field. A state saved at a
 * newer version than the loader knows is refused before any field is read.
 *
 * The field functions do nothing once an error is recorded, so a state
 * function calls them in a row and checks snap_error() once. Loaded values
 * land in the device's fields directly: a state function validates them
 * (snap_check) before it acts on them, and the caller discards a device
 * whose load failed. */
#ifndef COMMON_SNAP_H
#define COMMON_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_NAME_MAX 255          /* device, kind and field names */
#define SNAP_PREFIX_MAX 64         /* nested field prefixes ("q0.") */
#define SNAP_RECORD_MAX (64u << 20) /* one device's state (NVMe's queues are the largest) */

/* A growing output buffer of saved records. */
struct snap_buf {
    uint8_t *data;
    size_t len, cap;
    bool failed; /* out of memory or over SNAP_RECORD_MAX; nothing more is appended */
};

void snap_buf_free(struct snap_buf *b);

enum snap_mode { SNAP_SAVE, SNAP_LOAD };

struct snap {
    enum snap_mode mode;
    const char *device, *kind; /* for errors */
    uint32_t version;          /* saving: ours; loading: the state's */
    struct snap_buf *out;      /* saving */
    const uint8_t *in;         /* loading: the record's fields */
    size_t in_len, pos;
    char prefix[SNAP_PREFIX_MAX];
    unsigned prefix_depth;
    size_t prefix_len[8];
    bool failed;
    char error[512];
};

/* One record as found in a state. */
struct snap_record {
    char name[SNAP_NAME_MAX + 1], kind[SNAP_NAME_MAX + 1];
    uint32_t version;
    const uint8_t *body;
    size_t body_len;
};

typedef int (*snap_state_fn)(void *opaque, struct snap *s);

/* Appends a record for device `name` of `kind` at `version`, with the
 * fields fn saves. Returns 0, or -1 with the reason in err. */
int snap_save_record(struct snap_buf *out, const char *name, const char *kind, uint32_t version,
                     snap_state_fn fn, void *opaque, char *err, size_t err_size);

/* Reads the record at *pos of a state of len bytes and advances *pos.
 * Returns 1 with a record, 0 at the end, -1 (err) if the state is cut
 * short or malformed. */
int snap_next_record(const uint8_t *data, size_t len, size_t *pos, struct snap_record *rec,
                     char *err, size_t err_size);

/* Loads rec into a device of `kind` whose state function is at `version`:
 * refuses another kind, a newer or zero version, a failed field, and fields
 * left over. Returns 0, or -1 with the reason in err. */
int snap_load_record(const struct snap_record *rec, const char *kind, uint32_t version,
                     snap_state_fn fn, void *opaque, char *err, size_t err_size);

/* One field of a record, as stored (for tools that walk a state without
 * knowing the device: the snapshot's JSON form). */
struct snap_field {
    char name[SNAP_NAME_MAX + 1];
    const uint8_t *value;
    size_t len;
};

/* Reads the field at *pos of rec's body and advances *pos. Returns 1 with
 * a field, 0 at the end, -1 (err names the record) if the body is cut
 * short or a name holds a NUL byte. */
int snap_next_field(const struct snap_record *rec, size_t *pos, struct snap_field *f, char *err,
                    size_t err_size);

/* The fields. Loading checks the name and length of the next field. */
void snap_u8(struct snap *s, const char *name, uint8_t *v);
void snap_u16(struct snap *s, const char *name, uint16_t *v);
void snap_u32(struct snap *s, const char *name, uint32_t *v);
void snap_u64(struct snap *s, const char *name, uint64_t *v);
void snap_i32(struct snap *s, const char *name, int32_t *v);
void snap_i64(struct snap *s, const char *name, int64_t *v);
void snap_bool(struct snap *s, const char *name, bool *v); /* one byte, 0 or 1 */
/* Raw bytes of a fixed length (registers kept as byte arrays). */
void snap_bytes(struct snap *s, const char *name, void *p, size_t len);
/* Up to cap bytes; *len is what was saved or loaded. */
void snap_var_bytes(struct snap *s, const char *name, void *p, size_t *len, size_t cap);
void snap_u16_array(struct snap *s, const char *name, uint16_t *v, size_t count);
void snap_u32_array(struct snap *s, const char *name, uint32_t *v, size_t count);
void snap_u64_array(struct snap *s, const char *name, uint64_t *v, size_t count);

/* Field names between enter and leave get the prefix ("q3." for
 * snap_enter(s, "q%u", 3)); nests up to 8 deep. */
void snap_enter(struct snap *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void snap_leave(struct snap *s);

static inline bool snap_loading(const struct snap *s)
{
    return s->mode == SNAP_LOAD;
}

static inline uint32_t snap_version(const struct snap *s)
{
    return s->version;
}

/* Records that a loaded field has a value the device cannot take. Only
 * meaningful while loading (a saved state is the device's own). */
void snap_fail(struct snap *s, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* If loading and !ok, fails with "field: why". Returns ok. */
bool snap_check(struct snap *s, bool ok, const char *field, const char *why);

static inline int snap_error(const struct snap *s)
{
    return s->failed ? -1 : 0;
}

#endif
