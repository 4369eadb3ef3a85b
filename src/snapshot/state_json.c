#include "snapshot/state_json.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text.h"
#include "common/bytes.h"

static const char hex_digits[] = "0123456789abcdef";

static json_t *hex_string(const uint8_t *p, size_t len)
{
    char *s = malloc(2 * len + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        s[2 * i] = hex_digits[p[i] >> 4];
        s[2 * i + 1] = hex_digits[p[i] & 15];
    }
    s[2 * len] = '\0';
    json_t *j = json_stringn_nocheck(s, 2 * len);
    free(s);
    return j;
}

static json_t *field_to_json(const struct snap_field *f)
{
    json_t *o = json_object();
    if (!o || json_object_set_new(o, "name", json_string(f->name)) < 0)
        goto fail;
    json_t *v = NULL;
    const char *key = "hex";
    switch (f->len) {
    case 1:
        key = "u8";
        v = json_integer(f->value[0]);
        break;
    case 2:
        key = "u16";
        v = json_integer(le16_load(f->value));
        break;
    case 4:
        key = "u32";
        v = json_integer(le32_load(f->value));
        break;
    case 8: {
        char text[24];
        snprintf(text, sizeof(text), "0x%" PRIx64, le64_load(f->value));
        key = "u64";
        v = json_string(text);
        break;
    }
    default:
        v = hex_string(f->value, f->len);
        break;
    }
    if (json_object_set_new(o, key, v) < 0)
        goto fail;
    return o;
fail:
    json_decref(o);
    return NULL;
}

json_t *state_record_to_json(const struct snap_record *rec, char *err, size_t err_size)
{
    json_t *fields = json_array();
    json_t *o = json_object();
    if (!fields || !o)
        goto oom;
    if (json_object_set_new(o, "name", json_string(rec->name)) < 0 ||
        json_object_set_new(o, "kind", json_string(rec->kind)) < 0 ||
        json_object_set_new(o, "version", json_integer(rec->version)) < 0)
        goto oom;
    size_t pos = 0;
    struct snap_field f;
    int r;
    while ((r = snap_next_field(rec, &pos, &f, err, err_size)) == 1) {
        json_t *jf = field_to_json(&f);
        if (!jf || json_array_append_new(fields, jf) < 0)
            goto oom;
    }
    if (r < 0) {
        json_decref(fields);
        json_decref(o);
        return NULL;
    }
    if (json_object_set_new(o, "fields", fields) < 0) {
        fields = NULL;
        goto oom;
    }
    return o;
oom:
    json_decref(fields);
    json_decref(o);
    snprintf(err, err_size, "%s (%s): out of memory converting its state to JSON", rec->name,
             rec->kind);
    return NULL;
}

/* ---- JSON to record ---- */

struct fields_ctx {
    const json_t *fields;
    char *err;
    size_t err_size;
    bool failed;
};

/* A JSON string without NUL bytes, of at most max bytes. */
static const char *plain_string(const json_t *j, size_t max, size_t *len)
{
    if (!json_is_string(j))
        return NULL;
    const char *s = json_string_value(j);
    size_t n = json_string_length(j);
    if (n > max || strlen(s) != n)
        return NULL;
    if (len)
        *len = n;
    return s;
}

/* Decodes one field into value (cap bytes); returns its length or -1. */
static long decode_field(const json_t *jf, size_t index, const char **name, uint8_t *value,
                         uint8_t **bytes, char *err, size_t err_size)
{
    const size_t cap = SNAP_RECORD_MAX;
    *name = NULL;
    if (!json_is_object(jf) || json_object_size(jf) != 2) {
        snprintf(err, err_size, "field %zu: not an object of a name and one value", index);
        return -1;
    }
    *name = plain_string(json_object_get(jf, "name"), SNAP_NAME_MAX, NULL);
    if (!*name || !**name) {
        snprintf(err, err_size, "field %zu: no name, or not a string of 1 to %u bytes", index,
                 SNAP_NAME_MAX);
        return -1;
    }
    static const struct {
        const char *key;
        unsigned bytes;
    } widths[] = {{"u8", 1}, {"u16", 2}, {"u32", 4}};
    for (size_t i = 0; i < ARRAY_LEN(widths); i++) {
        const json_t *v = json_object_get(jf, widths[i].key);
        if (!v)
            continue;
        json_int_t x = json_is_integer(v) ? json_integer_value(v) : -1;
        uint64_t limit = widths[i].bytes == 4 ? UINT32_MAX : (1ull << (8 * widths[i].bytes)) - 1;
        if (x < 0 || (uint64_t)x > limit) {
            snprintf(err, err_size, "field '%s': %s must be an integer 0..%llu", *name,
                     widths[i].key, (unsigned long long)limit);
            return -1;
        }
        le_store(value, widths[i].bytes, (uint64_t)x);
        return widths[i].bytes;
    }
    const json_t *v = json_object_get(jf, "u64");
    if (v) {
        size_t n = 0;
        const char *s = plain_string(v, 18, &n);
        uint64_t x = 0;
        bool ok = s && n > 2 && s[0] == '0' && s[1] == 'x';
        for (size_t i = 2; ok && i < n; i++) {
            int d = hex_digit_value(s[i]);
            ok = d >= 0;
            x = x << 4 | (uint64_t)(d < 0 ? 0 : d);
        }
        if (!ok) {
            snprintf(err, err_size,
                     "field '%s': u64 must be a string \"0x\" and 1 to 16 hex digits", *name);
            return -1;
        }
        le64_store(value, x);
        return 8;
    }
    v = json_object_get(jf, "hex");
    if (v) {
        size_t n = 0;
        const char *s = plain_string(v, 2 * cap, &n);
        if (!s || n % 2) {
            snprintf(err, err_size,
                     "field '%s': hex must be a string of an even number of hex digits (at most "
                     "%zu bytes)",
                     *name, cap);
            return -1;
        }
        if (!(*bytes = malloc(n / 2 + 1))) {
            snprintf(err, err_size, "field '%s': out of memory", *name);
            return -1;
        }
        value = *bytes;
        for (size_t i = 0; i < n / 2; i++) {
            int hi = hex_digit_value(s[2 * i]), lo = hex_digit_value(s[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                snprintf(err, err_size, "field '%s': hex: not a hex digit at %zu", *name,
                         2 * i + (hi < 0 ? 0 : 1));
                return -1;
            }
            value[i] = (uint8_t)(hi << 4 | lo);
        }
        return (long)(n / 2);
    }
    snprintf(err, err_size, "field '%s': no value (u8, u16, u32, u64 or hex)", *name);
    return -1;
}

static int fields_from_json(void *opaque, struct snap *s)
{
    struct fields_ctx *c = opaque;
    size_t index;
    const json_t *jf;
    json_array_foreach(c->fields, index, jf)
    {
        const char *name;
        uint8_t small[8], *bytes = NULL;
        long len = decode_field(jf, index, &name, small, &bytes, c->err, c->err_size);
        if (len < 0) {
            free(bytes);
            c->failed = true;
            return -1;
        }
        snap_bytes(s, name, bytes ? bytes : small, (size_t)len);
        free(bytes);
        if (snap_error(s))
            break;
    }
    return snap_error(s);
}

int state_record_from_json(const json_t *obj, struct snap_buf *out, char *err, size_t err_size)
{
    if (!json_is_object(obj)) {
        snprintf(err, err_size, "a state record must be a JSON object");
        return -1;
    }
    const char *name = plain_string(json_object_get(obj, "name"), SNAP_NAME_MAX, NULL);
    const char *kind = plain_string(json_object_get(obj, "kind"), SNAP_NAME_MAX, NULL);
    const json_t *version = json_object_get(obj, "version");
    const json_t *fields = json_object_get(obj, "fields");
    if (!name || !*name) {
        snprintf(err, err_size, "state record: \"name\" missing or not a string of 1 to %u bytes",
                 SNAP_NAME_MAX);
        return -1;
    }
    if (!kind || !*kind) {
        snprintf(err, err_size, "%s: \"kind\" missing or not a string of 1 to %u bytes", name,
                 SNAP_NAME_MAX);
        return -1;
    }
    if (!json_is_integer(version) || json_integer_value(version) < 0 ||
        json_integer_value(version) > UINT32_MAX) {
        snprintf(err, err_size, "%s (%s): \"version\" missing or not an integer 0..%u", name, kind,
                 UINT32_MAX);
        return -1;
    }
    if (!json_is_array(fields)) {
        snprintf(err, err_size, "%s (%s): \"fields\" missing or not an array", name, kind);
        return -1;
    }
    if (json_object_size(obj) != 4) {
        snprintf(err, err_size, "%s (%s): unknown keys besides name, kind, version, fields", name,
                 kind);
        return -1;
    }
    char why[400] = "";
    struct fields_ctx c = {.fields = fields, .err = why, .err_size = sizeof(why)};
    char serr[512] = "";
    int r = snap_save_record(out, name, kind, (uint32_t)json_integer_value(version),
                             fields_from_json, &c, serr, sizeof(serr));
    if (r < 0) {
        if (c.failed)
            snprintf(err, err_size, "%s (%s): %s", name, kind, why);
        else
            snprintf(err, err_size, "%s", serr);
    }
    return r;
}
