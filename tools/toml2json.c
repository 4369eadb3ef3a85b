/* toml2json: the decoder interface of the toml-test conformance suite.
 *
 * Reads TOML on stdin. On success prints JSON on stdout, where tables are objects,
 * arrays are arrays and every other value is {"type": T, "value": S}, and exits 0.
 * On invalid input prints "line:column: message" on stderr and exits 1.
 */
#include "config/toml.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_all(FILE *in, size_t *len)
{
    size_t capacity = 1 << 16, used = 0;
    char *data = malloc(capacity);
    if (!data)
        return NULL;
    for (;;) {
        if (used == capacity) {
            capacity *= 2;
            char *grown = realloc(data, capacity);
            if (!grown) {
                free(data);
                return NULL;
            }
            data = grown;
        }
        size_t n = fread(data + used, 1, capacity - used, in);
        used += n;
        if (n == 0)
            break;
    }
    if (ferror(in)) {
        free(data);
        return NULL;
    }
    *len = used;
    return data;
}

/* JSON string: escapes quotes, backslashes and control characters; the parser has already
 * validated the UTF-8, so other bytes pass through. */
static void print_json_string(FILE *out, const char *s, size_t len)
{
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            fputs("\\\"", out);
            break;
        case '\\':
            fputs("\\\\", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        case '\b':
            fputs("\\b", out);
            break;
        case '\f':
            fputs("\\f", out);
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(out, "\\u%04x", c);
            else
                fputc(c, out);
        }
    }
    fputc('"', out);
}

/* The shortest decimal form that reads back as the same double. */
static void format_float(double d, char *buf, size_t len)
{
    if (isnan(d)) {
        snprintf(buf, len, "nan");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, len, d < 0 ? "-inf" : "inf");
        return;
    }
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(buf, len, "%.*g", precision, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

static void print_indent(FILE *out, unsigned depth)
{
    for (unsigned i = 0; i < depth; i++)
        fputs("  ", out);
}

static void print_leaf(FILE *out, const char *type, const char *s, size_t len)
{
    fputs("{\"type\": ", out);
    print_json_string(out, type, strlen(type));
    fputs(", \"value\": ", out);
    print_json_string(out, s, len);
    fputc('}', out);
}

/* Recursion is bounded: the parser rejects trees deeper than TOML_MAX_DEPTH. */
static void print_value(FILE *out, const struct toml_value *v, unsigned depth)
{
    char buf[64];
    switch (v->type) {
    case TOML_TABLE:
        if (v->u.table.count == 0) {
            fputs("{}", out);
            break;
        }
        fputs("{\n", out);
        for (size_t i = 0; i < v->u.table.count; i++) {
            const struct toml_keyval *kv = &v->u.table.items[i];
            print_indent(out, depth + 1);
            print_json_string(out, kv->key, kv->key_len);
            fputs(": ", out);
            print_value(out, kv->value, depth + 1);
            fputs(i + 1 < v->u.table.count ? ",\n" : "\n", out);
        }
        print_indent(out, depth);
        fputc('}', out);
        break;
    case TOML_ARRAY:
        if (v->u.array.count == 0) {
            fputs("[]", out);
            break;
        }
        fputs("[\n", out);
        for (size_t i = 0; i < v->u.array.count; i++) {
            print_indent(out, depth + 1);
            print_value(out, v->u.array.items[i], depth + 1);
            fputs(i + 1 < v->u.array.count ? ",\n" : "\n", out);
        }
        print_indent(out, depth);
        fputc(']', out);
        break;
    case TOML_STRING:
        print_leaf(out, "string", v->u.string.ptr, v->u.string.len);
        break;
    case TOML_INTEGER:
        snprintf(buf, sizeof(buf), "%" PRId64, v->u.integer);
        print_leaf(out, "integer", buf, strlen(buf));
        break;
    case TOML_FLOAT:
        format_float(v->u.floating, buf, sizeof(buf));
        print_leaf(out, "float", buf, strlen(buf));
        break;
    case TOML_BOOL:
        print_leaf(out, "bool", v->u.boolean ? "true" : "false", v->u.boolean ? 4 : 5);
        break;
    case TOML_DATETIME:
    case TOML_DATETIME_LOCAL:
    case TOML_DATE_LOCAL:
    case TOML_TIME_LOCAL:
        toml_format_datetime(v, buf, sizeof(buf));
        print_leaf(out, toml_type_name(v->type), buf, strlen(buf));
        break;
    }
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "usage: %s < input.toml > output.json\n", argv[0]);
        return 2;
    }
    size_t len = 0;
    char *text = read_all(stdin, &len);
    if (!text) {
        fprintf(stderr, "toml2json: cannot read standard input\n");
        return 2;
    }
    struct toml_error err;
    struct toml_value *root = toml_parse(text, len, &err);
    free(text);
    if (!root) {
        fprintf(stderr, "%u:%u: %s\n", err.line, err.column, err.message);
        return 1;
    }
    print_value(stdout, root, 0);
    fputc('\n', stdout);
    toml_free(root);
    return fflush(stdout) == 0 ? 0 : 2;
}
