#include "common/snap.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"

/* Record: u8 name length, name, u8 kind length, kind, u32 version, u32 body
 * length, body. Field: u8 name length, name, u32 value length, value. */

void snap_buf_free(struct snap_buf *b)
{
    free(b->data);
    *b = (struct snap_buf){0};
}

static void buf_append(struct snap_buf *b, const void *p, size_t len)
{
    if (b->failed || len == 0)
        return;
    if (len > b->cap - b->len) {
        /* One state holds every device's records. */
        size_t need = b->len + len;
        if (len > 16ull * SNAP_RECORD_MAX || need > 16ull * SNAP_RECORD_MAX) {
            b->failed = true;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *data = realloc(b->data, cap);
        if (!data) {
            b->failed = true;
            return;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, len);
    b->len += len;
}

static void buf_u8(struct snap_buf *b, uint8_t v)
{
    buf_append(b, &v, 1);
}

static void buf_u32(struct snap_buf *b, uint32_t v)
{
    uint8_t le[4];
    le32_store(le, v);
    buf_append(b, le, sizeof(le));
}

static void buf_name(struct snap_buf *b, const char *name)
{
    size_t len = strnlen(name, SNAP_NAME_MAX);
    buf_u8(b, (uint8_t)len);
    buf_append(b, name, len);
}

static void fail_v(struct snap *s, const char *field, const char *fmt, va_list ap)
{
    if (s->failed)
        return;
    s->failed = true;
    int n = snprintf(s->error, sizeof(s->error), "%s (%s, state version %u): field '%s%s': ",
                     s->device, s->kind, s->version, s->prefix, field);
    if (n >= 0 && (size_t)n < sizeof(s->error))
        vsnprintf(s->error + n, sizeof(s->error) - (size_t)n, fmt, ap);
}

void snap_fail(struct snap *s, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_v(s, field, fmt, ap);
    va_end(ap);
}

bool snap_check(struct snap *s, bool ok, const char *field, const char *why)
{
    if (!ok && s->mode == SNAP_LOAD)
        snap_fail(s, field, "%s", why);
    return ok;
}

void snap_enter(struct snap *s, const char *fmt, ...)
{
    size_t len = strlen(s->prefix);
    if (s->prefix_depth >= ARRAY_LEN(s->prefix_len)) {
        snap_fail(s, fmt, "fields nested too deep");
        return;
    }
    s->prefix_len[s->prefix_depth++] = len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->prefix + len, sizeof(s->prefix) - len, fmt, ap);
    va_end(ap);
    if (n < 0 || len + (size_t)n + 1 >= sizeof(s->prefix)) {
        s->prefix[len] = '\0';
        snap_fail(s, fmt, "field prefix too long");
        return;
    }
    strcat(s->prefix, ".");
}

void snap_leave(struct snap *s)
{
    if (s->prefix_depth > 0)
        s->prefix[s->prefix_len[--s->prefix_depth]] = '\0';
}

/* The full name of a field, as stored. */
static bool full_name(struct snap *s, const char *name, char *out, size_t size)
{
    int n = snprintf(out, size, "%s%s", s->prefix, name);
    if (n < 0 || (size_t)n > SNAP_NAME_MAX) {
        snap_fail(s, name, "field name too long");
        return false;
    }
    return true;
}

static void save_field(struct snap *s, const char *name, const void *value, size_t len)
{
    char full[SNAP_NAME_MAX + 1];
    if (s->failed || !full_name(s, name, full, sizeof(full)))
        return;
    buf_name(s->out, full);
    buf_u32(s->out, (uint32_t)len);
    buf_append(s->out, value, len);
    if (s->out->failed)
        snap_fail(s, name, "out of memory");
}

/* The next field, which must be called name; returns its value and
 * length, or NULL (error recorded). */
static const uint8_t *load_field(struct snap *s, const char *name, size_t *len)
{
    char full[SNAP_NAME_MAX + 1];
    if (s->failed || !full_name(s, name, full, sizeof(full)))
        return NULL;
    if (s->pos >= s->in_len) {
        snap_fail(s, name, "missing (the state ends before it)");
        return NULL;
    }
    size_t name_len = s->in[s->pos];
    if (s->in_len - s->pos < 1 + name_len + 4) {
        snap_fail(s, name, "the state is cut short");
        return NULL;
    }
    const char *stored = (const char *)s->in + s->pos + 1;
    if (name_len != strlen(full) || memcmp(stored, full, name_len) != 0) {
        snap_fail(s, name, "expected here, the state has '%.*s'", (int)name_len, stored);
        return NULL;
    }
    size_t value_len = le32_load(s->in + s->pos + 1 + name_len);
    size_t value_pos = s->pos + 1 + name_len + 4;
    if (value_len > s->in_len - value_pos) {
        snap_fail(s, name, "the state is cut short (%zu bytes, %zu left)", value_len,
                  s->in_len - value_pos);
        return NULL;
    }
    s->pos = value_pos + value_len;
    *len = value_len;
    return s->in + value_pos;
}

static const uint8_t *load_exact(struct snap *s, const char *name, size_t want)
{
    size_t len;
    const uint8_t *p = load_field(s, name, &len);
    if (p && len != want) {
        snap_fail(s, name, "%zu bytes, expected %zu", len, want);
        return NULL;
    }
    return p;
}

#define SNAP_UINT(fn, type, bytes, load, store)                                                    \
    void fn(struct snap *s, const char *name, type *v)                                             \
    {                                                                                              \
        uint8_t le[bytes];                                                                         \
        if (s->mode == SNAP_SAVE) {                                                                \
            store(le, *v);                                                                         \
            save_field(s, name, le, bytes);                                                        \
            return;                                                                                \
        }                                                                                          \
        const uint8_t *p = load_exact(s, name, bytes);                                             \
        if (p)                                                                                     \
            *v = (type)load(p);                                                                    \
    }

static uint8_t u8_load(const void *p)
{
    return *(const uint8_t *)p;
}

static void u8_store(void *p, uint8_t v)
{
    *(uint8_t *)p = v;
}

SNAP_UINT(snap_u8, uint8_t, 1, u8_load, u8_store)
SNAP_UINT(snap_u16, uint16_t, 2, le16_load, le16_store)
SNAP_UINT(snap_u32, uint32_t, 4, le32_load, le32_store)
SNAP_UINT(snap_u64, uint64_t, 8, le64_load, le64_store)

void snap_i32(struct snap *s, const char *name, int32_t *v)
{
    uint32_t u = (uint32_t)*v;
    snap_u32(s, name, &u);
    if (s->mode == SNAP_LOAD && !s->failed)
        memcpy(v, &u, sizeof(u));
}

void snap_i64(struct snap *s, const char *name, int64_t *v)
{
    uint64_t u = (uint64_t)*v;
    snap_u64(s, name, &u);
    if (s->mode == SNAP_LOAD && !s->failed)
        memcpy(v, &u, sizeof(u));
}

void snap_bool(struct snap *s, const char *name, bool *v)
{
    uint8_t b = *v ? 1 : 0;
    snap_u8(s, name, &b);
    if (s->mode == SNAP_LOAD && !s->failed && snap_check(s, b <= 1, name, "not 0 or 1"))
        *v = b != 0;
}

void snap_bytes(struct snap *s, const char *name, void *p, size_t len)
{
    if (s->mode == SNAP_SAVE) {
        save_field(s, name, p, len);
        return;
    }
    const uint8_t *in = load_exact(s, name, len);
    if (in)
        memcpy(p, in, len);
}

void snap_var_bytes(struct snap *s, const char *name, void *p, size_t *len, size_t cap)
{
    if (s->mode == SNAP_SAVE) {
        save_field(s, name, p, *len);
        return;
    }
    size_t in_len;
    const uint8_t *in = load_field(s, name, &in_len);
    if (!in)
        return;
    if (in_len > cap) {
        snap_fail(s, name, "%zu bytes, at most %zu allowed", in_len, cap);
        return;
    }
    memcpy(p, in, in_len);
    *len = in_len;
}

#define SNAP_ARRAY(fn, type, bytes, load, store)                                                   \
    void fn(struct snap *s, const char *name, type *v, size_t count)                               \
    {                                                                                              \
        if (s->failed)                                                                             \
            return;                                                                                \
        if (count > SNAP_RECORD_MAX / bytes) {                                                     \
            snap_fail(s, name, "array too large");                                                 \
            return;                                                                                \
        }                                                                                          \
        if (s->mode == SNAP_SAVE) {                                                                \
            uint8_t *le = malloc(count * bytes + 1);                                               \
            if (!le) {                                                                             \
                snap_fail(s, name, "out of memory");                                               \
                return;                                                                            \
            }                                                                                      \
            for (size_t i = 0; i < count; i++)                                                     \
                store(le + i * bytes, v[i]);                                                       \
            save_field(s, name, le, count * bytes);                                                \
            free(le);                                                                              \
            return;                                                                                \
        }                                                                                          \
        const uint8_t *p = load_exact(s, name, count * bytes);                                     \
        if (p)                                                                                     \
            for (size_t i = 0; i < count; i++)                                                     \
                v[i] = load(p + i * bytes);                                                        \
    }

SNAP_ARRAY(snap_u16_array, uint16_t, 2, le16_load, le16_store)
SNAP_ARRAY(snap_u32_array, uint32_t, 4, le32_load, le32_store)
SNAP_ARRAY(snap_u64_array, uint64_t, 8, le64_load, le64_store)

static void copy_error(char *err, size_t err_size, const char *msg)
{
    if (err_size)
        snprintf(err, err_size, "%s", msg);
}

int snap_save_record(struct snap_buf *out, const char *name, const char *kind, uint32_t version,
                     snap_state_fn fn, void *opaque, char *err, size_t err_size)
{
    struct snap_buf body = {0};
    struct snap s = {.mode = SNAP_SAVE, .device = name, .kind = kind, .version = version,
                     .out = &body};
    int rc = fn(opaque, &s);
    if (rc == 0 && s.failed)
        rc = -1;
    if (rc == 0 && body.len > SNAP_RECORD_MAX) {
        snap_fail(&s, "", "the device's state is over %u bytes", SNAP_RECORD_MAX);
        rc = -1;
    }
    if (rc < 0) {
        if (s.failed)
            copy_error(err, err_size, s.error);
        else if (err_size)
            snprintf(err, err_size, "%s (%s): state not saved", name, kind);
        snap_buf_free(&body);
        return -1;
    }
    buf_name(out, name);
    buf_name(out, kind);
    buf_u32(out, version);
    buf_u32(out, (uint32_t)body.len);
    buf_append(out, body.data, body.len);
    snap_buf_free(&body);
    if (out->failed) {
        if (err_size)
            snprintf(err, err_size, "%s (%s): out of memory saving state", name, kind);
        return -1;
    }
    return 0;
}

static bool read_name(const uint8_t *data, size_t len, size_t *pos, char *out)
{
    if (*pos >= len)
        return false;
    size_t n = data[*pos];
    if (len - *pos - 1 < n)
        return false;
    memcpy(out, data + *pos + 1, n);
    out[n] = '\0';
    *pos += 1 + n;
    return memchr(out, '\0', n) == NULL;
}

int snap_next_record(const uint8_t *data, size_t len, size_t *pos, struct snap_record *rec,
                     char *err, size_t err_size)
{
    if (*pos >= len)
        return 0;
    size_t at = *pos, p = *pos;
    if (!read_name(data, len, &p, rec->name) || !read_name(data, len, &p, rec->kind) ||
        len - p < 8) {
        if (err_size)
            snprintf(err, err_size, "device state cut short or malformed at byte %zu", at);
        return -1;
    }
    rec->version = le32_load(data + p);
    size_t body_len = le32_load(data + p + 4);
    p += 8;
    if (body_len > len - p) {
        if (err_size)
            snprintf(err, err_size,
                     "%s (%s): device state cut short (%zu bytes of state, %zu left)", rec->name,
                     rec->kind, body_len, len - p);
        return -1;
    }
    rec->body = data + p;
    rec->body_len = body_len;
    *pos = p + body_len;
    return 1;
}

int snap_load_record(const struct snap_record *rec, const char *kind, uint32_t version,
                     snap_state_fn fn, void *opaque, char *err, size_t err_size)
{
    if (strcmp(rec->kind, kind) != 0) {
        if (err_size)
            snprintf(err, err_size, "%s: state is for a %s, this device is a %s", rec->name,
                     rec->kind, kind);
        return -1;
    }
    if (rec->version == 0 || rec->version > version) {
        if (err_size)
            snprintf(err, err_size,
                     "%s (%s): state version %u is not one this VMM reads (1 to %u)", rec->name,
                     kind, rec->version, version);
        return -1;
    }
    struct snap s = {.mode = SNAP_LOAD, .device = rec->name, .kind = kind,
                     .version = rec->version, .in = rec->body, .in_len = rec->body_len};
    int rc = fn(opaque, &s);
    if (rc == 0 && !s.failed && s.pos != s.in_len) {
        size_t n = s.in[s.pos];
        char extra[SNAP_NAME_MAX + 1] = "";
        if (s.in_len - s.pos > n) {
            memcpy(extra, s.in + s.pos + 1, n);
            extra[n] = '\0';
        }
        snap_fail(&s, extra, "left over after the last field this version has");
    }
    if (rc < 0 || s.failed) {
        if (s.failed)
            copy_error(err, err_size, s.error);
        else if (err_size)
            snprintf(err, err_size, "%s (%s): state refused", rec->name, kind);
        return -1;
    }
    return 0;
}

int snap_next_field(const struct snap_record *rec, size_t *pos, struct snap_field *f, char *err,
                    size_t err_size)
{
    size_t p = *pos;
    if (p >= rec->body_len)
        return 0;
    if (!read_name(rec->body, rec->body_len, &p, f->name) || rec->body_len - p < 4) {
        if (err_size)
            snprintf(err, err_size, "%s (%s): field cut short or malformed at byte %zu", rec->name,
                     rec->kind, *pos);
        return -1;
    }
    size_t len = le32_load(rec->body + p);
    p += 4;
    if (len > rec->body_len - p) {
        if (err_size)
            snprintf(err, err_size, "%s (%s): field '%s' cut short (%zu bytes, %zu left)",
                     rec->name, rec->kind, f->name, len, rec->body_len - p);
        return -1;
    }
    f->value = rec->body + p;
    f->len = len;
    *pos = p + len;
    return 1;
}
