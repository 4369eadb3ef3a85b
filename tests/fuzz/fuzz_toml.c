/* The TOML parser (src/config/toml.c): the input is a document. A parsed
 * tree is walked the way the config layer and toml2json do (keys written
 * back, date-times formatted, lookups by key and index). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/toml.h"

#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct toml_value *v, unsigned depth)
{
    char buf[128];
    if (depth > TOML_MAX_DEPTH + 2)
        abort(); /* the parser promised a bounded depth */
    (void)toml_type_name(v->type);
    (void)toml_type_phrase(v->type);
    switch (v->type) {
    case TOML_TABLE:
        for (size_t i = 0; i < v->u.table.count; i++) {
            const struct toml_keyval *kv = &v->u.table.items[i];
            toml_write_key(buf, sizeof(buf), kv->key, kv->key_len);
            toml_write_key(buf, 3, kv->key, kv->key_len);
            /* A key the table holds must be found (keys with a NUL inside
             * cannot be named by a C string). */
            if (strlen(kv->key) == kv->key_len && toml_table_get(v, kv->key) == NULL)
                abort();
            walk(kv->value, depth + 1);
        }
        break;
    case TOML_ARRAY:
        for (size_t i = 0; i < v->u.array.count; i++)
            walk(toml_array_get(v, i), depth + 1);
        if (toml_array_get(v, v->u.array.count) != NULL)
            abort();
        break;
    case TOML_STRING:
        if (v->u.string.ptr[v->u.string.len] != '\0')
            abort();
        break;
    case TOML_DATETIME:
    case TOML_DATETIME_LOCAL:
    case TOML_DATE_LOCAL:
    case TOML_TIME_LOCAL:
        toml_format_datetime(v, buf, sizeof(buf));
        toml_format_datetime(v, buf, 8);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exactly size bytes on the heap, so reads past the end are caught. */
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    struct toml_error err;
    struct toml_value *root = toml_parse(text, size, &err);
    if (root) {
        walk(root, 0);
        toml_free(root);
    } else if (memchr(err.message, '\0', sizeof(err.message)) == NULL) {
        abort(); /* an unterminated error message */
    }
    free(text);
    return 0;
}
