#include "support/state.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/bytes.h"

void state_save(struct device *from, struct snap_buf *out)
{
    char err[512] = "";
    if (device_save_state(from, out, err, sizeof(err)) != 0)
        fail_msg("saving %s: %s", from->name, err);
}

int state_load(struct device *to, const uint8_t *data, size_t len, char *err, size_t err_size)
{
    struct snap_record rec;
    size_t pos = 0;
    int rc = snap_next_record(data, len, &pos, &rec, err, err_size);
    if (rc <= 0) {
        if (rc == 0)
            snprintf(err, err_size, "empty state");
        return -1;
    }
    if (pos != len) {
        snprintf(err, err_size, "more than one record");
        return -1;
    }
    return device_load_state(to, &rec, err, err_size);
}

void assert_state_roundtrip(struct device *from, struct device *to)
{
    struct snap_buf first = {0}, second = {0};
    char err[512] = "";
    state_save(from, &first);
    if (state_load(to, first.data, first.len, err, sizeof(err)) != 0)
        fail_msg("loading %s's state: %s", from->name, err);
    state_save(to, &second);
    assert_int_equal(first.len, second.len);
    assert_memory_equal(first.data, second.data, first.len);
    snap_buf_free(&first);
    snap_buf_free(&second);
}

/* The offsets of a one-record buffer's header fields. */
struct layout {
    size_t kind_at, version_at, body_len_at, body_at;
};

static struct layout layout_of(const uint8_t *data)
{
    struct layout l;
    l.kind_at = 1 + data[0];
    l.version_at = l.kind_at + 1 + data[l.kind_at];
    l.body_len_at = l.version_at + 4;
    l.body_at = l.body_len_at + 4;
    return l;
}

/* The error must name the device the state belongs to (the record's
 * name: a machine matches records to devices by it). */
static void expect_refused(struct device *victim, const char *owner, const uint8_t *data,
                           size_t len, const char *what, const char *must_name)
{
    char err[512] = "";
    int rc = state_load(victim, data, len, err, sizeof(err));
    if (rc == 0)
        fail_msg("%s: state %s was accepted", victim->name, what);
    if (!strstr(err, owner))
        fail_msg("%s: error for state %s does not name the device %s: %s", victim->name, what,
                 owner, err);
    if (must_name && !strstr(err, must_name))
        fail_msg("%s: error for state %s does not name '%s': %s", victim->name, what, must_name,
                 err);
}

void assert_state_refusals(struct device *from, struct device *victim)
{
    struct snap_buf b = {0};
    state_save(from, &b);
    struct layout l = layout_of(b.data);
    uint8_t *copy = malloc(b.len + 64);
    assert_non_null(copy);

    /* Cut short: the whole record, then the body with a consistent length. */
    for (size_t cut = l.body_at; cut < b.len; cut++) {
        memcpy(copy, b.data, cut);
        expect_refused(victim, from->name, copy, cut, "cut short", NULL);
        le32_store(copy + l.body_len_at, (uint32_t)(cut - l.body_at));
        expect_refused(victim, from->name, copy, cut, "with its last fields missing", NULL);
    }

    memcpy(copy, b.data, b.len);
    le32_store(copy + l.version_at, from->ops->state_version + 1);
    expect_refused(victim, from->name, copy, b.len, "from a newer version", NULL);
    le32_store(copy + l.version_at, 0);
    expect_refused(victim, from->name, copy, b.len, "of version 0", NULL);

    memcpy(copy, b.data, b.len);
    copy[l.kind_at + 1] ^= 0x20; /* the kind's first letter, case flipped */
    expect_refused(victim, from->name, copy, b.len, "of another kind", NULL);

    /* An unknown field after the last one. */
    memcpy(copy, b.data, b.len);
    static const uint8_t extra[] = {5, 'b', 'o', 'g', 'u', 's', 1, 0, 0, 0, 7};
    memcpy(copy + b.len, extra, sizeof(extra));
    le32_store(copy + l.body_len_at, (uint32_t)(b.len - l.body_at + sizeof(extra)));
    expect_refused(victim, from->name, copy, b.len + sizeof(extra), "with an extra field", "bogus");

    /* The first field renamed. */
    if (b.len > l.body_at + 1) {
        memcpy(copy, b.data, b.len);
        copy[l.body_at + 1] ^= 0x20;
        expect_refused(victim, from->name, copy, b.len, "with a field renamed", NULL);
    }
    free(copy);
    snap_buf_free(&b);
}

void assert_state_field_refused(struct device *from, struct device *victim, const char *field,
                                const void *value, size_t len)
{
    struct snap_buf b = {0};
    state_save(from, &b);
    struct layout l = layout_of(b.data);
    size_t pos = l.body_at;
    bool found = false;
    while (pos < b.len) {
        size_t name_len = b.data[pos];
        const char *name = (const char *)b.data + pos + 1;
        size_t value_len = le32_load(b.data + pos + 1 + name_len);
        size_t value_at = pos + 1 + name_len + 4;
        if (name_len == strlen(field) && memcmp(name, field, name_len) == 0) {
            if (value_len != len)
                fail_msg("%s: field %s has %zu bytes, the test gives %zu", from->name, field,
                         value_len, len);
            memcpy(b.data + value_at, value, len);
            found = true;
            break;
        }
        pos = value_at + value_len;
    }
    if (!found)
        fail_msg("%s: no field %s in its state", from->name, field);
    expect_refused(victim, from->name, b.data, b.len, field, field);
    snap_buf_free(&b);
}
