/* TOML 1.0 parser.
 *
 * The input is first checked as a whole for UTF-8 validity and for control
 * characters (TOML forbids raw control characters everywhere except tab and
 * the LF / CRLF newline), so the recursive-descent parser below can treat
 * every remaining byte as ordinary text.
 *
 * Every value is allocated as a `struct node`, which wraps the public
 * `struct toml_value` with the bookkeeping the redefinition rules need: how a
 * table came to exist, whether an array was built by [[headers]], and how deep
 * it sits in the tree (so nesting stays bounded for every recursive walk).
 */
#include "config/toml.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text.h"

/* How a table came into existence; decides what may later extend it. */
enum table_origin {
    ORIGIN_ROOT,
    ORIGIN_IMPLICIT, /* intermediate of a [a.b.c] header path; [a.b] may still define it */
    ORIGIN_HEADER,   /* defined by a [header] or as an element of [[header]] */
    ORIGIN_DOTTED,   /* created by a dotted key such as a.b = 1 */
    ORIGIN_INLINE,   /* an inline table { ... }: immutable once written */
};

struct node {
    struct toml_value value; /* first member: a node and its value share an address */
    enum table_origin origin;
    bool table_array; /* array created by [[header]]; only these may be appended to */
    unsigned depth;   /* root is 0; bounded by TOML_MAX_DEPTH */
    size_t capacity;  /* allocated items of a table or array */
    size_t *index;    /* open-addressing hash of table keys: item index + 1, 0 = empty */
    size_t index_capacity;
};

/* Tables with at least this many keys get a hash index. */
#define INDEX_THRESHOLD 8

struct mark {
    size_t pos;
    unsigned line, column;
};

struct key_part {
    char *text; /* NUL-terminated, may contain embedded NULs */
    size_t len;
    struct mark at;
};

struct key {
    struct key_part *parts;
    size_t count, capacity;
};

struct buf {
    char *data;
    size_t len, capacity;
};

struct parser {
    const char *text;
    size_t len;
    size_t pos;
    unsigned line, column;
    struct toml_error *err;
    bool failed;
    struct toml_value *root;
    struct toml_value *current; /* table receiving key/value pairs */
    struct key section;         /* key path of the current [header], for messages */
};

/* ---- Node helpers ---------------------------------------------------------------------- */

static struct node *node_of(struct toml_value *value)
{
    return (struct node *)value;
}

static const struct node *const_node_of(const struct toml_value *value)
{
    return (const struct node *)value;
}

void toml_free(struct toml_value *value)
{
    if (!value)
        return;
    struct node *node = node_of(value);
    switch (value->type) {
    case TOML_TABLE:
        for (size_t i = 0; i < value->u.table.count; i++) {
            free(value->u.table.items[i].key);
            toml_free(value->u.table.items[i].value);
        }
        free(value->u.table.items);
        free(node->index);
        break;
    case TOML_ARRAY:
        for (size_t i = 0; i < value->u.array.count; i++)
            toml_free(value->u.array.items[i]);
        free(value->u.array.items);
        break;
    case TOML_STRING:
        free(value->u.string.ptr);
        break;
    default:
        break;
    }
    free(node);
}

const char *toml_type_name(enum toml_type type)
{
    switch (type) {
    case TOML_TABLE:
        return "table";
    case TOML_ARRAY:
        return "array";
    case TOML_STRING:
        return "string";
    case TOML_INTEGER:
        return "integer";
    case TOML_FLOAT:
        return "float";
    case TOML_BOOL:
        return "bool";
    case TOML_DATETIME:
        return "datetime";
    case TOML_DATETIME_LOCAL:
        return "datetime-local";
    case TOML_DATE_LOCAL:
        return "date-local";
    case TOML_TIME_LOCAL:
        return "time-local";
    }
    return "unknown";
}

const char *toml_type_phrase(enum toml_type type)
{
    switch (type) {
    case TOML_TABLE:
        return "a table";
    case TOML_ARRAY:
        return "an array";
    case TOML_STRING:
        return "a string";
    case TOML_INTEGER:
        return "an integer";
    case TOML_FLOAT:
        return "a float";
    case TOML_BOOL:
        return "a boolean";
    case TOML_DATETIME:
        return "an offset date-time";
    case TOML_DATETIME_LOCAL:
        return "a local date-time";
    case TOML_DATE_LOCAL:
        return "a local date";
    case TOML_TIME_LOCAL:
        return "a local time";
    }
    return "a value";
}

static uint64_t hash_key(const char *key, size_t len)
{
    uint64_t hash = 0xcbf29ce484222325u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        hash ^= (unsigned char)key[i];
        hash *= 0x100000001b3u;
    }
    return hash;
}

static struct toml_keyval *table_lookup(const struct toml_value *table, const char *key, size_t len)
{
    const struct node *node = const_node_of(table);
    struct toml_keyval *items = table->u.table.items;
    if (node->index) {
        size_t mask = node->index_capacity - 1;
        for (size_t i = hash_key(key, len) & mask;; i = (i + 1) & mask) {
            size_t slot = node->index[i];
            if (slot == 0)
                return NULL;
            struct toml_keyval *kv = &items[slot - 1];
            if (kv->key_len == len && memcmp(kv->key, key, len) == 0)
                return kv;
        }
    }
    for (size_t i = 0; i < table->u.table.count; i++) {
        if (items[i].key_len == len && memcmp(items[i].key, key, len) == 0)
            return &items[i];
    }
    return NULL;
}

static void index_put(struct node *node, size_t item)
{
    const struct toml_keyval *kv = &node->value.u.table.items[item];
    size_t mask = node->index_capacity - 1;
    size_t i = hash_key(kv->key, kv->key_len) & mask;
    while (node->index[i] != 0)
        i = (i + 1) & mask;
    node->index[i] = item + 1;
}

/* Keeps the index at most half full; returns false when out of memory. */
static bool index_update(struct node *node)
{
    size_t count = node->value.u.table.count;
    if (count < INDEX_THRESHOLD)
        return true;
    if (node->index && count * 2 <= node->index_capacity) {
        index_put(node, count - 1);
        return true;
    }
    size_t capacity = 16;
    while (capacity < count * 4)
        capacity *= 2;
    size_t *index = calloc(capacity, sizeof(*index));
    if (!index)
        return false;
    free(node->index);
    node->index = index;
    node->index_capacity = capacity;
    for (size_t i = 0; i < count; i++)
        index_put(node, i);
    return true;
}

const struct toml_keyval *toml_table_find(const struct toml_value *table, const char *key)
{
    if (!table || table->type != TOML_TABLE || !key)
        return NULL;
    return table_lookup(table, key, strlen(key));
}

const struct toml_value *toml_table_get(const struct toml_value *table, const char *key)
{
    const struct toml_keyval *kv = toml_table_find(table, key);
    return kv ? kv->value : NULL;
}

const struct toml_value *toml_array_get(const struct toml_value *array, size_t index)
{
    if (!array || array->type != TOML_ARRAY || index >= array->u.array.count)
        return NULL;
    return array->u.array.items[index];
}

/* ---- Errors ---------------------------------------------------------------------------- */

static struct mark mark_here(const struct parser *p)
{
    return (struct mark){p->pos, p->line, p->column};
}

/* Records the first error only; always returns false so callers can `return fail(...)`. */
__attribute__((format(printf, 3, 4))) static bool fail(struct parser *p, struct mark at,
                                                       const char *fmt, ...)
{
    if (p->failed)
        return false;
    p->failed = true;
    p->err->line = at.line;
    p->err->column = at.column;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
    va_end(ap);
    return false;
}

static bool fail_oom(struct parser *p)
{
    return fail(p, mark_here(p), "out of memory");
}

static bool is_bare_key_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

size_t toml_write_key(char *out, size_t capacity, const char *key, size_t len)
{
    if (capacity == 0)
        return 0;
    struct text t = {out, capacity, 0};
    out[0] = '\0';
    bool bare = len > 0;
    for (size_t i = 0; i < len && bare; i++)
        bare = is_bare_key_char((unsigned char)key[i]);
    if (bare) {
        text_add(&t, "%.*s", (int)len, key);
        return t.len;
    }
    text_add(&t, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c == '"' || c == '\\')
            text_add(&t, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            text_add(&t, "\\u%04X", c);
        else
            text_add(&t, "%c", c);
    }
    text_add(&t, "\"");
    return t.len;
}

/* Appends one key part the way it could be written in TOML. */
static void text_add_key_part(struct text *t, const char *key, size_t len)
{
    t->len += toml_write_key(t->buf + t->len, t->cap - t->len, key, len);
}

/* Formats the dotted path prefix + key parts [0, upto] into `out`, truncated at 120 bytes. */
static const char *describe_key(char *out, size_t capacity, const struct key *prefix,
                                const struct key *key, size_t upto)
{
    struct text t = {out, capacity < 124 ? capacity : 124, 0};
    out[0] = '\0';
    size_t written = 0;
    if (prefix) {
        for (size_t i = 0; i < prefix->count; i++, written++) {
            if (written)
                text_add(&t, ".");
            text_add_key_part(&t, prefix->parts[i].text, prefix->parts[i].len);
        }
    }
    for (size_t i = 0; i <= upto && i < key->count; i++, written++) {
        if (written)
            text_add(&t, ".");
        text_add_key_part(&t, key->parts[i].text, key->parts[i].len);
    }
    if (t.len + 1 >= t.cap && t.cap >= 4)
        memcpy(out + t.cap - 4, "...", 4);
    return out;
}

/* A printable description of the character at the current position. */
static const char *describe_char(const struct parser *p, char *out, size_t capacity)
{
    if (p->pos >= p->len)
        return "end of input";
    const unsigned char *s = (const unsigned char *)p->text + p->pos;
    unsigned char c = s[0];
    if (c == '\n' || c == '\r')
        return "end of line";
    if (c == '\'')
        snprintf(out, capacity, "\"'\"");
    else if (c >= 0x20 && c < 0x7f)
        snprintf(out, capacity, "'%c'", c);
    else if (c == '\t')
        snprintf(out, capacity, "a tab");
    else {
        /* A multibyte character (validated UTF-8): show it and its code point. */
        size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        uint32_t cp = c & (0x7F >> n);
        for (size_t i = 1; i < n; i++)
            cp = (cp << 6) | (s[i] & 0x3F);
        if (cp == 0xFEFF)
            snprintf(out, capacity, "a byte order mark (U+FEFF)");
        else
            snprintf(out, capacity, "'%.*s' (U+%04X)", (int)n, (const char *)s, (unsigned)cp);
    }
    return out;
}

/* ---- Scanning -------------------------------------------------------------------------- */

static int peek_at(const struct parser *p, size_t offset)
{
    if (p->pos + offset >= p->len)
        return -1;
    return (unsigned char)p->text[p->pos + offset];
}

static int peek(const struct parser *p)
{
    return peek_at(p, 0);
}

static bool at_end(const struct parser *p)
{
    return p->pos >= p->len;
}

/* Moves one byte forward; columns count characters, so continuation bytes don't advance. */
static void advance(struct parser *p)
{
    unsigned char c = (unsigned char)p->text[p->pos++];
    if (c == '\n') {
        p->line++;
        p->column = 1;
    } else if ((c & 0xC0) != 0x80) {
        p->column++;
    }
}

static void advance_n(struct parser *p, size_t n)
{
    while (n-- > 0)
        advance(p);
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static void skip_ws(struct parser *p)
{
    while (peek(p) == ' ' || peek(p) == '\t')
        advance(p);
}

/* True at LF or CRLF (a bare CR was already rejected by validate_text). */
static bool at_newline(const struct parser *p)
{
    int c = peek(p);
    return c == '\n' || (c == '\r' && peek_at(p, 1) == '\n');
}

static void skip_newline(struct parser *p)
{
    if (peek(p) == '\r')
        advance(p);
    advance(p);
}

static void skip_comment(struct parser *p)
{
    while (!at_end(p) && !at_newline(p))
        advance(p);
}

/* Whitespace, newlines and comments, as allowed between array elements. */
static void skip_ws_comments_newlines(struct parser *p)
{
    for (;;) {
        skip_ws(p);
        if (peek(p) == '#')
            skip_comment(p);
        if (!at_newline(p))
            return;
        skip_newline(p);
    }
}

/* Checks the whole text: strict UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF), no control characters other than tab, and no CR outside CRLF. */
static bool validate_text(struct parser *p)
{
    const unsigned char *s = (const unsigned char *)p->text;
    size_t i = p->pos;
    unsigned line = p->line, column = p->column;
    while (i < p->len) {
        unsigned char c = s[i];
        struct mark at = {i, line, column};
        if (c < 0x80) {
            if (c == '\n') {
                line++;
                column = 1;
                i++;
                continue;
            }
            if (c == '\r' && !(i + 1 < p->len && s[i + 1] == '\n'))
                return fail(p, at, "carriage return must be followed by a line feed");
            if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f)
                return fail(p, at, "control character U+%04X is not allowed", c);
            i++;
            column++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the first continuation byte */
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* UTF-16 surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* beyond U+10FFFF */
        } else {
            return fail(p, at, "invalid UTF-8 byte 0x%02X", c);
        }
        for (size_t k = 1; k <= need; k++) {
            unsigned char min = k == 1 ? lo : 0x80, max = k == 1 ? hi : 0xBF;
            if (i + k >= p->len || s[i + k] < min || s[i + k] > max)
                return fail(p, at, "invalid UTF-8 sequence");
        }
        i += need + 1;
        column++;
    }
    return true;
}

/* ---- Buffers, keys, values ------------------------------------------------------------- */

static bool buf_reserve(struct parser *p, struct buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->capacity)
        return true;
    size_t capacity = b->capacity ? b->capacity : 32;
    while (capacity < b->len + extra + 1)
        capacity *= 2;
    char *data = realloc(b->data, capacity);
    if (!data)
        return fail_oom(p);
    b->data = data;
    b->capacity = capacity;
    return true;
}

static bool buf_add(struct parser *p, struct buf *b, const char *bytes, size_t n)
{
    if (!buf_reserve(p, b, n))
        return false;
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

static bool buf_add_char(struct parser *p, struct buf *b, char c)
{
    return buf_add(p, b, &c, 1);
}

static bool buf_add_utf8(struct parser *p, struct buf *b, uint32_t cp)
{
    char out[4];
    size_t n;
    if (cp < 0x80) {
        out[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return buf_add(p, b, out, n);
}

/* Hands the buffer's memory to the caller, always NUL-terminated. */
static char *buf_take(struct parser *p, struct buf *b)
{
    if (!buf_reserve(p, b, 0))
        return NULL;
    b->data[b->len] = '\0';
    char *data = b->data;
    b->data = NULL;
    b->len = b->capacity = 0;
    return data;
}

static void key_free(struct key *key)
{
    for (size_t i = 0; i < key->count; i++)
        free(key->parts[i].text);
    free(key->parts);
    *key = (struct key){0};
}

static struct toml_value *new_value(struct parser *p, enum toml_type type, struct mark at)
{
    struct node *node = calloc(1, sizeof(*node));
    if (!node) {
        fail_oom(p);
        return NULL;
    }
    node->value.type = type;
    node->value.line = at.line;
    node->value.column = at.column;
    return &node->value;
}

/* Containers carry their depth so that nesting stays bounded; `origin` only matters for
 * tables. */
static struct toml_value *new_container(struct parser *p, enum toml_type type, struct mark at,
                                        unsigned depth, enum table_origin origin)
{
    if (depth > TOML_MAX_DEPTH) {
        fail(p, at, "nesting is too deep (more than %d levels)", TOML_MAX_DEPTH);
        return NULL;
    }
    struct toml_value *value = new_value(p, type, at);
    if (value) {
        node_of(value)->depth = depth;
        node_of(value)->origin = origin;
    }
    return value;
}

static bool array_push(struct parser *p, struct toml_value *array, struct toml_value *item)
{
    struct node *node = node_of(array);
    if (array->u.array.count == node->capacity) {
        size_t capacity = node->capacity ? node->capacity * 2 : 4;
        struct toml_value **items = realloc(array->u.array.items, capacity * sizeof(*items));
        if (!items)
            return fail_oom(p);
        array->u.array.items = items;
        node->capacity = capacity;
    }
    array->u.array.items[array->u.array.count++] = item;
    return true;
}

/* Adds key -> value, copying the key (the parsed key stays intact for later messages);
 * takes ownership of value, which is freed on failure. */
static bool table_insert(struct parser *p, struct toml_value *table, const struct key_part *part,
                         struct toml_value *value)
{
    struct node *node = node_of(table);
    char *key = malloc(part->len + 1);
    if (!key) {
        toml_free(value);
        return fail_oom(p);
    }
    memcpy(key, part->text, part->len + 1);
    if (table->u.table.count == node->capacity) {
        size_t capacity = node->capacity ? node->capacity * 2 : 4;
        struct toml_keyval *items = realloc(table->u.table.items, capacity * sizeof(*items));
        if (!items) {
            free(key);
            toml_free(value);
            return fail_oom(p);
        }
        table->u.table.items = items;
        node->capacity = capacity;
    }
    table->u.table.items[table->u.table.count++] = (struct toml_keyval){
        .key = key,
        .key_len = part->len,
        .line = part->at.line,
        .column = part->at.column,
        .value = value,
    };
    if (!index_update(node))
        return fail_oom(p);
    return true;
}

/* ---- Strings --------------------------------------------------------------------------- */

/* Parses one escape sequence after its backslash inside a basic string. */
static bool parse_escape(struct parser *p, struct buf *out, bool multiline)
{
    struct mark at = mark_here(p);
    advance(p); /* the backslash */
    int c = peek(p);
    char simple = 0;
    switch (c) {
    case 'b':
        simple = '\b';
        break;
    case 't':
        simple = '\t';
        break;
    case 'n':
        simple = '\n';
        break;
    case 'f':
        simple = '\f';
        break;
    case 'r':
        simple = '\r';
        break;
    case '"':
        simple = '"';
        break;
    case '\\':
        simple = '\\';
        break;
    default:
        break;
    }
    if (simple) {
        advance(p);
        return buf_add_char(p, out, simple);
    }
    if (c == 'u' || c == 'U') {
        size_t digits = c == 'u' ? 4 : 8;
        advance(p);
        uint32_t cp = 0;
        for (size_t i = 0; i < digits; i++) {
            int h = hex_digit_value(peek(p));
            if (h < 0)
                return fail(p, mark_here(p), "\\%c escape needs exactly %zu hexadecimal digits", c,
                            digits);
            cp = cp * 16 + (uint32_t)h;
            advance(p);
        }
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return fail(p, at, "escape \\%c%0*X is not a Unicode scalar value", c, (int)digits, cp);
        return buf_add_utf8(p, out, cp);
    }
    if (multiline && (c == ' ' || c == '\t' || c == '\r' || c == '\n')) {
        /* Line-ending backslash: only whitespace may follow it on its line; it swallows
         * that whitespace and every following newline and whitespace. */
        skip_ws(p);
        if (!at_newline(p))
            return fail(p, at, "a line-ending backslash must be followed only by whitespace");
        while (peek(p) == ' ' || peek(p) == '\t' || at_newline(p)) {
            if (at_newline(p))
                skip_newline(p);
            else
                advance(p);
        }
        return true;
    }
    if (c < 0)
        return fail(p, mark_here(p), "unterminated string");
    char what[40];
    return fail(p, at, "invalid escape sequence: backslash followed by %s",
                describe_char(p, what, sizeof(what)));
}

/* Parses any string form at the current quote into `out`. */
static bool parse_string(struct parser *p, struct buf *out, bool allow_multiline)
{
    struct mark open = mark_here(p);
    int quote = peek(p);
    bool basic = quote == '"';
    bool multiline = peek_at(p, 1) == quote && peek_at(p, 2) == quote;
    if (multiline) {
        if (!allow_multiline)
            return fail(p, open, "a key cannot be a multi-line string");
        advance_n(p, 3);
        if (at_newline(p)) /* a newline right after the opening quotes is trimmed */
            skip_newline(p);
    } else {
        advance(p);
    }
    if (!buf_reserve(p, out, 0))
        return false;
    for (;;) {
        int c = peek(p);
        if (c < 0)
            return fail(p, multiline ? open : mark_here(p),
                        multiline ? "unterminated multi-line string"
                                  : "unterminated string: missing closing quote");
        if (c == quote) {
            if (!multiline) {
                advance(p);
                return true;
            }
            size_t run = 1;
            while (peek_at(p, run) == quote)
                run++;
            if (run < 3) {
                for (size_t i = 0; i < run; i++)
                    if (!buf_add_char(p, out, (char)quote))
                        return false;
                advance_n(p, run);
                continue;
            }
            /* Up to two quotes may directly precede the closing delimiter. */
            if (run > 5) {
                advance_n(p, 5);
                return fail(p, mark_here(p),
                            "too many quotes: a multi-line string cannot contain three quotes "
                            "in a row");
            }
            for (size_t i = 0; i < run - 3; i++)
                if (!buf_add_char(p, out, (char)quote))
                    return false;
            advance_n(p, run);
            return true;
        }
        if (c == '\n' || c == '\r') {
            if (!multiline)
                return fail(p, mark_here(p), "unterminated string: missing closing quote");
            skip_newline(p);
            if (!buf_add_char(p, out, '\n'))
                return false;
            continue;
        }
        if (c == '\\' && basic) {
            if (!parse_escape(p, out, multiline))
                return false;
            continue;
        }
        /* Copy a run of ordinary bytes at once. */
        size_t start = p->pos;
        while (!at_end(p)) {
            int d = peek(p);
            if (d == quote || d == '\n' || d == '\r' || (d == '\\' && basic))
                break;
            advance(p);
        }
        if (!buf_add(p, out, p->text + start, p->pos - start))
            return false;
    }
}

/* ---- Keys ------------------------------------------------------------------------------ */

static bool parse_simple_key(struct parser *p, struct key_part *part)
{
    struct buf text = {0};
    part->at = mark_here(p);
    int c = peek(p);
    if (c == '"' || c == '\'') {
        if (!parse_string(p, &text, false)) {
            free(text.data);
            return false;
        }
    } else if (is_bare_key_char(c)) {
        size_t start = p->pos;
        while (is_bare_key_char(peek(p)))
            advance(p);
        if (!buf_add(p, &text, p->text + start, p->pos - start)) {
            free(text.data);
            return false;
        }
    } else {
        char what[40];
        return fail(p, part->at, "expected a key but found %s",
                    describe_char(p, what, sizeof(what)));
    }
    part->len = text.len;
    part->text = buf_take(p, &text);
    free(text.data);
    return part->text != NULL;
}

/* key = simple-key *( ws "." ws simple-key ) */
static bool parse_key(struct parser *p, struct key *key)
{
    for (;;) {
        if (key->count == key->capacity) {
            size_t capacity = key->capacity ? key->capacity * 2 : 4;
            struct key_part *parts = realloc(key->parts, capacity * sizeof(*parts));
            if (!parts)
                return fail_oom(p);
            key->parts = parts;
            key->capacity = capacity;
        }
        struct key_part *part = &key->parts[key->count];
        *part = (struct key_part){0};
        if (!parse_simple_key(p, part))
            return false;
        key->count++;
        /* Look past whitespace for a dot without consuming the whitespace otherwise. */
        struct mark before = mark_here(p);
        skip_ws(p);
        if (peek(p) != '.') {
            p->pos = before.pos;
            p->line = before.line;
            p->column = before.column;
            return true;
        }
        advance(p);
        skip_ws(p);
    }
}

/* ---- Scalars --------------------------------------------------------------------------- */

static bool at_value_end(const struct parser *p)
{
    int c = peek(p);
    return c < 0 || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '#' || c == ',' ||
           c == ']' || c == '}';
}

static bool match_word(const struct parser *p, const char *word)
{
    size_t n = strlen(word);
    return p->len - p->pos >= n && memcmp(p->text + p->pos, word, n) == 0;
}

static const char *base_name(int base)
{
    switch (base) {
    case 2:
        return "binary";
    case 8:
        return "octal";
    case 16:
        return "hexadecimal";
    default:
        return "decimal";
    }
}

static const char *digit_phrase(int base)
{
    return base == 8    ? "an octal digit"
           : base == 2  ? "a binary digit"
           : base == 16 ? "a hexadecimal digit"
                        : "a decimal digit";
}

/* Digits of `base` with single underscores between them; appends the digits to `out`. */
static bool parse_digits(struct parser *p, struct buf *out, int base)
{
    int c = peek(p);
    if (hex_digit_value(c) < 0 || hex_digit_value(c) >= base) {
        if (c == '_')
            return fail(p, mark_here(p), "an underscore must be between two digits");
        char what[40];
        return fail(p, mark_here(p), "expected %s but found %s", digit_phrase(base),
                    describe_char(p, what, sizeof(what)));
    }
    for (;;) {
        c = peek(p);
        if (c == '_') {
            int next = peek_at(p, 1);
            if (hex_digit_value(next) < 0 || hex_digit_value(next) >= base)
                return fail(p, mark_here(p), "an underscore must be between two digits");
            advance(p);
            continue;
        }
        if (hex_digit_value(c) < 0 || hex_digit_value(c) >= base)
            return true;
        if (!buf_add_char(p, out, (char)c))
            return false;
        advance(p);
    }
}

static struct toml_value *make_integer(struct parser *p, struct mark at, const char *digits,
                                       int base, bool negative)
{
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t magnitude = 0;
    for (const char *d = digits; *d; d++) {
        uint64_t digit = (uint64_t)hex_digit_value(*d);
        if (magnitude > (limit - digit) / (uint64_t)base) {
            fail(p, at, "integer is out of range for a signed 64-bit integer");
            return NULL;
        }
        magnitude = magnitude * (uint64_t)base + digit;
    }
    struct toml_value *value = new_value(p, TOML_INTEGER, at);
    if (!value)
        return NULL;
    if (negative)
        value->u.integer = magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)magnitude;
    else
        value->u.integer = (int64_t)magnitude;
    return value;
}

/* Integers (all bases) and floats, including inf and nan. */
static struct toml_value *parse_number(struct parser *p)
{
    struct mark at = mark_here(p);
    struct buf text = {0};
    struct toml_value *value = NULL;
    bool negative = false, has_sign = false;
    if (peek(p) == '+' || peek(p) == '-') {
        negative = peek(p) == '-';
        has_sign = true;
        if (!buf_add_char(p, &text, (char)peek(p)))
            goto out;
        advance(p);
    }
    if (match_word(p, "inf") || match_word(p, "nan")) {
        bool is_nan = peek(p) == 'n';
        advance_n(p, 3);
        value = new_value(p, TOML_FLOAT, at);
        if (value)
            value->u.floating =
                is_nan ? (negative ? -NAN : NAN) : (negative ? -INFINITY : INFINITY);
        goto out;
    }
    if (peek(p) == '0' && (peek_at(p, 1) == 'x' || peek_at(p, 1) == 'o' || peek_at(p, 1) == 'b')) {
        int prefix = peek_at(p, 1);
        int base = prefix == 'x' ? 16 : prefix == 'o' ? 8 : 2;
        if (has_sign) {
            fail(p, at, "%s integers cannot have a sign", base_name(base));
            goto out;
        }
        advance_n(p, 2);
        text.len = 0;
        if (!parse_digits(p, &text, base))
            goto out;
        value = make_integer(p, at, text.data, base, false);
        goto out;
    }
    struct mark int_start = mark_here(p);
    if (peek(p) == '0' && (is_digit(peek_at(p, 1)) || peek_at(p, 1) == '_')) {
        fail(p, int_start, "leading zeros are not allowed in numbers");
        goto out;
    }
    if (!parse_digits(p, &text, 10))
        goto out;
    bool is_float = false;
    if (peek(p) == '.') {
        is_float = true;
        advance(p);
        if (!buf_add_char(p, &text, '.') || !parse_digits(p, &text, 10))
            goto out;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        is_float = true;
        advance(p);
        if (!buf_add_char(p, &text, 'e'))
            goto out;
        if (peek(p) == '+' || peek(p) == '-') {
            if (!buf_add_char(p, &text, (char)peek(p)))
                goto out;
            advance(p);
        }
        if (!parse_digits(p, &text, 10))
            goto out;
    }
    if (!is_float) {
        value = make_integer(p, at, text.data + (has_sign ? 1 : 0), 10, negative);
        goto out;
    }
    char *end;
    double d = strtod(text.data, &end);
    if (*end != '\0') {
        fail(p, at, "invalid float");
        goto out;
    }
    if (isinf(d)) {
        fail(p, at, "float is out of range for a 64-bit float");
        goto out;
    }
    value = new_value(p, TOML_FLOAT, at);
    if (value)
        value->u.floating = d;
out:
    free(text.data);
    return value;
}

static bool read_two_digits(struct parser *p, int *out, const char *what)
{
    if (!is_digit(peek(p)) || !is_digit(peek_at(p, 1))) {
        struct mark at = mark_here(p);
        if (is_digit(peek(p)))
            advance(p);
        return fail(p, at, "expected a two-digit %s", what);
    }
    *out = (peek(p) - '0') * 10 + (peek_at(p, 1) - '0');
    advance_n(p, 2);
    return true;
}

static bool expect_char(struct parser *p, int c, const char *context)
{
    if (peek(p) == c) {
        advance(p);
        return true;
    }
    char what[40];
    return fail(p, mark_here(p), "expected '%c' %s but found %s", c, context,
                describe_char(p, what, sizeof(what)));
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))
        return 29;
    return days[month - 1];
}

/* YYYY-MM-DD; the caller saw four digits and a dash. */
static bool parse_date(struct parser *p, struct toml_datetime *dt)
{
    dt->year = 0;
    for (int i = 0; i < 4; i++) {
        dt->year = dt->year * 10 + (peek(p) - '0');
        advance(p);
    }
    advance(p); /* '-' */
    struct mark month_at = mark_here(p);
    if (!read_two_digits(p, &dt->month, "month") || !expect_char(p, '-', "after the month"))
        return false;
    struct mark day_at = mark_here(p);
    if (!read_two_digits(p, &dt->day, "day of month"))
        return false;
    if (dt->month < 1 || dt->month > 12)
        return fail(p, month_at, "invalid date: month %02d is not between 01 and 12", dt->month);
    if (dt->day < 1 || dt->day > days_in_month(dt->year, dt->month))
        return fail(p, day_at, "invalid date: %04d-%02d has no day %02d", dt->year, dt->month,
                    dt->day);
    return true;
}

/* HH:MM:SS[.fraction] */
static bool parse_time(struct parser *p, struct toml_datetime *dt)
{
    struct mark hour_at = mark_here(p);
    if (!read_two_digits(p, &dt->hour, "hour") || !expect_char(p, ':', "after the hour"))
        return false;
    struct mark minute_at = mark_here(p);
    if (!read_two_digits(p, &dt->minute, "minute"))
        return false;
    if (peek(p) != ':')
        return fail(p, mark_here(p),
                    "expected ':' and seconds after the minute (TOML 1.0 "
                    "requires seconds)");
    advance(p);
    struct mark second_at = mark_here(p);
    if (!read_two_digits(p, &dt->second, "second"))
        return false;
    if (dt->hour > 23)
        return fail(p, hour_at, "invalid time: hour %02d is not between 00 and 23", dt->hour);
    if (dt->minute > 59)
        return fail(p, minute_at, "invalid time: minute %02d is not between 00 and 59", dt->minute);
    if (dt->second > 59)
        return fail(p, second_at, "invalid time: second %02d is not between 00 and 59", dt->second);
    if (peek(p) == '.') {
        advance(p);
        if (!is_digit(peek(p)))
            return fail(p, mark_here(p), "expected a digit after the decimal point");
        uint32_t scale = 100000000;
        while (is_digit(peek(p))) {
            /* Keep nanosecond precision; further digits are counted but truncated. */
            dt->nanosecond += (uint32_t)(peek(p) - '0') * scale;
            scale /= 10;
            dt->frac_digits++;
            advance(p);
        }
    }
    return true;
}

/* Z or +HH:MM / -HH:MM */
static bool parse_offset(struct parser *p, struct toml_datetime *dt)
{
    int c = peek(p);
    if (c == 'Z' || c == 'z') {
        advance(p);
        dt->offset_z = true;
        return true;
    }
    int sign = c == '-' ? -1 : 1;
    advance(p);
    int hours, minutes;
    struct mark hour_at = mark_here(p);
    if (!read_two_digits(p, &hours, "offset hour") ||
        !expect_char(p, ':', "in the time zone offset"))
        return false;
    struct mark minute_at = mark_here(p);
    if (!read_two_digits(p, &minutes, "offset minute"))
        return false;
    if (hours > 23)
        return fail(p, hour_at, "invalid time zone offset: hour %02d is not between 00 and 23",
                    hours);
    if (minutes > 59)
        return fail(p, minute_at, "invalid time zone offset: minute %02d is not between 00 and 59",
                    minutes);
    dt->offset_minutes = sign * (hours * 60 + minutes);
    return true;
}

/* Offset/local date-times, local dates and local times. */
static struct toml_value *parse_datetime(struct parser *p, bool has_date)
{
    struct mark at = mark_here(p);
    struct toml_datetime dt = {0};
    enum toml_type type;
    if (has_date) {
        if (!parse_date(p, &dt))
            return NULL;
        int c = peek(p);
        bool time_follows = c == 'T' || c == 't' || (c == ' ' && is_digit(peek_at(p, 1)));
        if (!time_follows) {
            type = TOML_DATE_LOCAL;
        } else {
            advance(p);
            if (!parse_time(p, &dt))
                return NULL;
            c = peek(p);
            if (c == 'Z' || c == 'z' || c == '+' || c == '-') {
                if (!parse_offset(p, &dt))
                    return NULL;
                type = TOML_DATETIME;
            } else {
                type = TOML_DATETIME_LOCAL;
            }
        }
    } else {
        if (!parse_time(p, &dt))
            return NULL;
        type = TOML_TIME_LOCAL;
    }
    struct toml_value *value = new_value(p, type, at);
    if (value)
        value->u.datetime = dt;
    return value;
}

/* ---- Values ---------------------------------------------------------------------------- */

static struct toml_value *parse_value(struct parser *p, unsigned depth);
static bool parse_keyval(struct parser *p, struct toml_value *table, const struct key *prefix);

static struct toml_value *parse_array(struct parser *p, unsigned depth)
{
    struct toml_value *array = new_container(p, TOML_ARRAY, mark_here(p), depth, ORIGIN_INLINE);
    /* Arrays written as values are static: [[headers]] cannot append to them. */
    if (!array)
        return NULL;
    advance(p); /* '[' */
    for (;;) {
        skip_ws_comments_newlines(p);
        if (peek(p) == ']')
            break;
        if (at_end(p)) {
            fail(p, mark_here(p), "unterminated array: expected ']'");
            toml_free(array);
            return NULL;
        }
        struct toml_value *item = parse_value(p, depth + 1);
        if (!item || !array_push(p, array, item)) {
            toml_free(item);
            toml_free(array);
            return NULL;
        }
        skip_ws_comments_newlines(p);
        if (peek(p) == ',') {
            advance(p);
            continue;
        }
        if (peek(p) == ']')
            break;
        char what[40];
        if (at_end(p))
            fail(p, mark_here(p), "unterminated array: expected ']'");
        else
            fail(p, mark_here(p), "expected ',' or ']' after an array element but found %s",
                 describe_char(p, what, sizeof(what)));
        toml_free(array);
        return NULL;
    }
    advance(p); /* ']' */
    return array;
}

static struct toml_value *parse_inline_table(struct parser *p, unsigned depth)
{
    struct toml_value *table = new_container(p, TOML_TABLE, mark_here(p), depth, ORIGIN_INLINE);
    if (!table)
        return NULL;
    advance(p); /* '{' */
    skip_ws(p);
    if (peek(p) == '}') {
        advance(p);
        return table;
    }
    for (;;) {
        skip_ws(p);
        if (peek(p) == '}') {
            fail(p, mark_here(p), "a trailing comma is not allowed in an inline table");
            break;
        }
        if (!parse_keyval(p, table, NULL))
            break;
        skip_ws(p);
        if (peek(p) == ',') {
            advance(p);
            continue;
        }
        if (peek(p) == '}') {
            advance(p);
            return table;
        }
        if (at_newline(p) || at_end(p))
            fail(p, mark_here(p), "an inline table must be closed with '}' on the same line");
        else {
            char what[40];
            fail(p, mark_here(p), "expected ',' or '}' in an inline table but found %s",
                 describe_char(p, what, sizeof(what)));
        }
        break;
    }
    toml_free(table);
    return NULL;
}

static struct toml_value *parse_value(struct parser *p, unsigned depth)
{
    struct mark at = mark_here(p);
    int c = peek(p);
    struct toml_value *value = NULL;
    if (c == '[')
        return parse_array(p, depth);
    if (c == '{')
        return parse_inline_table(p, depth);
    if (c == '"' || c == '\'') {
        struct buf text = {0};
        if (parse_string(p, &text, true)) {
            value = new_value(p, TOML_STRING, at);
            if (value) {
                value->u.string.len = text.len;
                value->u.string.ptr = buf_take(p, &text);
                if (!value->u.string.ptr) {
                    toml_free(value);
                    value = NULL;
                }
            }
        }
        free(text.data);
    } else if (match_word(p, "true") || match_word(p, "false")) {
        value = new_value(p, TOML_BOOL, at);
        if (value) {
            value->u.boolean = c == 't';
            advance_n(p, c == 't' ? 4 : 5);
        }
    } else if (is_digit(c)) {
        size_t digits = 0;
        while (is_digit(peek_at(p, digits)))
            digits++;
        if (digits == 4 && peek_at(p, 4) == '-')
            value = parse_datetime(p, true);
        else if (digits == 2 && peek_at(p, 2) == ':')
            value = parse_datetime(p, false);
        else
            value = parse_number(p);
    } else if (c == '+' || c == '-' || match_word(p, "inf") || match_word(p, "nan")) {
        value = parse_number(p);
    } else if (c < 0 || c == '\n' || c == '\r' || c == '#') {
        fail(p, at, "expected a value");
        return NULL;
    } else {
        char what[40];
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        fail(p, at, "expected a value but found %s%s", describe_char(p, what, sizeof(what)),
             letter ? " (strings must be quoted)" : "");
        return NULL;
    }
    if (value && !at_value_end(p)) {
        char what[40];
        fail(p, mark_here(p), "unexpected %s after %s", describe_char(p, what, sizeof(what)),
             toml_type_phrase(value->type));
        toml_free(value);
        return NULL;
    }
    return value;
}

/* ---- Tables and the document ----------------------------------------------------------- */

/* Follows one dotted-key part of a key/value pair, creating the table if needed. */
static struct toml_value *descend_dotted(struct parser *p, struct toml_value *table,
                                         const struct key *key, size_t i, const struct key *prefix)
{
    const struct key_part *part = &key->parts[i];
    struct toml_keyval *kv = table_lookup(table, part->text, part->len);
    char name[128];
    if (!kv) {
        struct toml_value *sub =
            new_container(p, TOML_TABLE, part->at, node_of(table)->depth + 1, ORIGIN_DOTTED);
        if (!sub || !table_insert(p, table, part, sub))
            return NULL;
        return sub;
    }
    struct toml_value *value = kv->value;
    if (value->type != TOML_TABLE) {
        fail(p, part->at, "cannot add keys to '%s': it is already %s (defined at %u:%u)",
             describe_key(name, sizeof(name), prefix, key, i), toml_type_phrase(value->type),
             kv->line, kv->column);
        return NULL;
    }
    struct node *node = node_of(value);
    switch (node->origin) {
    case ORIGIN_IMPLICIT:
        /* Created on the way to a deeper [header]; dotted keys now define it, so it
         * can no longer get a header of its own. */
        node->origin = ORIGIN_DOTTED;
        kv->line = value->line = part->at.line;
        kv->column = value->column = part->at.column;
        return value;
    case ORIGIN_DOTTED:
        return value;
    case ORIGIN_INLINE:
        fail(p, part->at,
             "cannot add keys to inline table '%s' (defined at %u:%u): inline "
             "tables cannot be extended",
             describe_key(name, sizeof(name), prefix, key, i), kv->line, kv->column);
        return NULL;
    default:
        fail(p, part->at,
             "cannot add keys to table [%s] with dotted keys: it was defined by a header at "
             "%u:%u",
             describe_key(name, sizeof(name), prefix, key, i), kv->line, kv->column);
        return NULL;
    }
}

/* key = value, into `table`; `prefix` is the header path for messages (NULL inside inline
 * tables). */
static bool parse_keyval(struct parser *p, struct toml_value *table, const struct key *prefix)
{
    struct key key = {0};
    bool ok = false;
    if (!parse_key(p, &key))
        goto out;
    skip_ws(p);
    if (peek(p) != '=') {
        char what[40];
        fail(p, mark_here(p), "expected '=' after the key but found %s",
             describe_char(p, what, sizeof(what)));
        goto out;
    }
    advance(p);
    skip_ws(p);
    struct toml_value *target = table;
    for (size_t i = 0; i + 1 < key.count; i++) {
        target = descend_dotted(p, target, &key, i, prefix);
        if (!target)
            goto out;
    }
    struct key_part *last = &key.parts[key.count - 1];
    const struct toml_keyval *existing = table_lookup(target, last->text, last->len);
    if (existing) {
        char name[128];
        fail(p, last->at, "duplicate key '%s' (first defined at %u:%u)",
             describe_key(name, sizeof(name), prefix, &key, key.count - 1), existing->line,
             existing->column);
        goto out;
    }
    struct toml_value *value = parse_value(p, node_of(target)->depth + 1);
    if (!value)
        goto out;
    ok = table_insert(p, target, last, value);
out:
    key_free(&key);
    return ok;
}

/* [a.b.c] or [[a.b.c]] */
static bool parse_header(struct parser *p)
{
    struct key key = {0};
    bool ok = false;
    char name[128];
    advance(p); /* '[' */
    bool is_array = peek(p) == '[';
    if (is_array)
        advance(p);
    skip_ws(p);
    if (!parse_key(p, &key))
        goto out;
    skip_ws(p);
    if (peek(p) != ']' || (is_array && peek_at(p, 1) != ']')) {
        if (is_array && peek(p) == ']')
            advance(p);
        char what[40];
        fail(p, mark_here(p), "expected '%s' to close the %s header but found %s",
             is_array ? "]]" : "]", is_array ? "array of tables" : "table",
             describe_char(p, what, sizeof(what)));
        goto out;
    }
    advance_n(p, is_array ? 2 : 1);

    struct toml_value *table = p->root;
    for (size_t i = 0; i + 1 < key.count; i++) {
        struct key_part *part = &key.parts[i];
        struct toml_keyval *kv = table_lookup(table, part->text, part->len);
        if (!kv) {
            struct toml_value *sub =
                new_container(p, TOML_TABLE, part->at, node_of(table)->depth + 1, ORIGIN_IMPLICIT);
            if (!sub || !table_insert(p, table, part, sub))
                goto out;
            table = sub;
            continue;
        }
        struct toml_value *value = kv->value;
        struct node *node = node_of(value);
        if (value->type == TOML_TABLE && node->origin == ORIGIN_INLINE) {
            fail(p, part->at,
                 "cannot add a table to inline table '%s' (defined at %u:%u): "
                 "inline tables cannot be extended",
                 describe_key(name, sizeof(name), NULL, &key, i), kv->line, kv->column);
            goto out;
        }
        if (value->type == TOML_TABLE) {
            table = value;
        } else if (value->type == TOML_ARRAY && node->table_array) {
            /* Sub-tables belong to the most recent element of an array of tables. */
            table = value->u.array.items[value->u.array.count - 1];
        } else if (value->type == TOML_ARRAY) {
            fail(p, part->at, "cannot add a table to static array '%s' (defined at %u:%u)",
                 describe_key(name, sizeof(name), NULL, &key, i), kv->line, kv->column);
            goto out;
        } else {
            fail(p, part->at, "cannot use '%s' as a table: it is already %s (defined at %u:%u)",
                 describe_key(name, sizeof(name), NULL, &key, i), toml_type_phrase(value->type),
                 kv->line, kv->column);
            goto out;
        }
    }

    size_t last_index = key.count - 1;
    struct key_part *last = &key.parts[last_index];
    struct toml_keyval *kv = table_lookup(table, last->text, last->len);
    describe_key(name, sizeof(name), NULL, &key, last_index);
    struct toml_value *defined = NULL;
    if (!kv) {
        unsigned depth = node_of(table)->depth + 1;
        if (is_array) {
            struct toml_value *array = new_container(p, TOML_ARRAY, last->at, depth, ORIGIN_HEADER);
            if (!array)
                goto out;
            node_of(array)->table_array = true;
            defined = new_container(p, TOML_TABLE, last->at, depth + 1, ORIGIN_HEADER);
            if (!defined || !array_push(p, array, defined)) {
                toml_free(defined);
                toml_free(array);
                goto out;
            }
            if (!table_insert(p, table, last, array))
                goto out;
        } else {
            defined = new_container(p, TOML_TABLE, last->at, depth, ORIGIN_HEADER);
            if (!defined || !table_insert(p, table, last, defined))
                goto out;
        }
    } else {
        struct toml_value *value = kv->value;
        struct node *node = node_of(value);
        if (is_array) {
            if (value->type == TOML_ARRAY && node->table_array) {
                defined = new_container(p, TOML_TABLE, last->at, node->depth + 1, ORIGIN_HEADER);
                if (!defined || !array_push(p, value, defined)) {
                    toml_free(defined);
                    goto out;
                }
            } else if (value->type == TOML_ARRAY) {
                fail(p, last->at,
                     "cannot append to static array '%s' (defined at %u:%u) with "
                     "[[%s]]",
                     name, kv->line, kv->column, name);
                goto out;
            } else if (value->type == TOML_TABLE) {
                fail(p, last->at,
                     "[[%s]] conflicts with table '%s' (defined at %u:%u): it is not an "
                     "array of tables",
                     name, name, kv->line, kv->column);
                goto out;
            } else {
                fail(p, last->at, "duplicate key '%s': it is already %s (defined at %u:%u)", name,
                     toml_type_phrase(value->type), kv->line, kv->column);
                goto out;
            }
        } else if (value->type == TOML_TABLE && node->origin == ORIGIN_IMPLICIT) {
            /* A super-table may be defined after its sub-tables, once. */
            node->origin = ORIGIN_HEADER;
            kv->line = value->line = last->at.line;
            kv->column = value->column = last->at.column;
            defined = value;
        } else if (value->type == TOML_TABLE) {
            const char *how = node->origin == ORIGIN_DOTTED   ? "by dotted keys"
                              : node->origin == ORIGIN_INLINE ? "as an inline table"
                                                              : "by a header";
            fail(p, last->at, "table [%s] is already defined %s at %u:%u", name, how, kv->line,
                 kv->column);
            goto out;
        } else if (value->type == TOML_ARRAY && node->table_array) {
            fail(p, last->at,
                 "table [%s] conflicts with the array of tables [[%s]] defined at %u:%u", name,
                 name, kv->line, kv->column);
            goto out;
        } else {
            fail(p, last->at, "duplicate key '%s': it is already %s (defined at %u:%u)", name,
                 toml_type_phrase(value->type), kv->line, kv->column);
            goto out;
        }
    }
    p->current = defined;
    key_free(&p->section);
    p->section = key;
    key = (struct key){0};
    ok = true;
out:
    key_free(&key);
    return ok;
}

/* After a header or key/value pair only whitespace and a comment may precede the newline. */
static bool expect_line_end(struct parser *p, const char *after)
{
    skip_ws(p);
    if (peek(p) == '#')
        skip_comment(p);
    if (at_end(p))
        return true;
    if (at_newline(p)) {
        skip_newline(p);
        return true;
    }
    char what[40];
    return fail(p, mark_here(p), "expected a newline after %s but found %s", after,
                describe_char(p, what, sizeof(what)));
}

static bool parse_document(struct parser *p)
{
    for (;;) {
        skip_ws(p);
        if (at_end(p))
            return true;
        int c = peek(p);
        if (c == '#') {
            skip_comment(p);
        } else if (at_newline(p)) {
            skip_newline(p);
            continue;
        } else if (c == '[') {
            if (!parse_header(p) || !expect_line_end(p, "the table header"))
                return false;
            continue;
        } else {
            if (!parse_keyval(p, p->current, &p->section) ||
                !expect_line_end(p, "the key/value pair"))
                return false;
            continue;
        }
        if (!at_end(p))
            skip_newline(p);
    }
}

struct toml_value *toml_parse(const char *text, size_t len, struct toml_error *err)
{
    struct toml_error scratch;
    if (!err)
        err = &scratch;
    *err = (struct toml_error){0};
    struct parser p = {.text = text, .len = len, .line = 1, .column = 1, .err = err};
    if (!text && len > 0) {
        fail(&p, mark_here(&p), "no input");
        return NULL;
    }
    /* A byte order mark is allowed only at the very start. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        p.pos = 3;
    if (!validate_text(&p))
        return NULL;
    p.root = new_container(&p, TOML_TABLE, mark_here(&p), 0, ORIGIN_ROOT);
    if (!p.root)
        return NULL;
    p.current = p.root;
    bool ok = parse_document(&p);
    key_free(&p.section);
    if (!ok) {
        toml_free(p.root);
        return NULL;
    }
    return p.root;
}

void toml_format_datetime(const struct toml_value *value, char *buf, size_t len)
{
    if (!buf || len == 0)
        return;
    buf[0] = '\0';
    if (!value)
        return;
    const struct toml_datetime *dt = &value->u.datetime;
    struct text t = {buf, len, 0};
    switch (value->type) {
    case TOML_DATETIME:
    case TOML_DATETIME_LOCAL:
    case TOML_DATE_LOCAL:
        text_add(&t, "%04d-%02d-%02d", dt->year, dt->month, dt->day);
        if (value->type == TOML_DATE_LOCAL)
            return;
        text_add(&t, "T");
        break;
    case TOML_TIME_LOCAL:
        break;
    default:
        return;
    }
    text_add(&t, "%02d:%02d:%02d", dt->hour, dt->minute, dt->second);
    if (dt->frac_digits > 0) {
        unsigned digits = dt->frac_digits < 9 ? dt->frac_digits : 9;
        uint32_t fraction = dt->nanosecond;
        for (unsigned i = digits; i < 9; i++)
            fraction /= 10;
        text_add(&t, ".%0*u", (int)digits, (unsigned)fraction);
    }
    if (value->type == TOML_DATETIME) {
        if (dt->offset_z) {
            text_add(&t, "Z");
        } else {
            int offset = dt->offset_minutes;
            char sign = offset < 0 ? '-' : '+';
            if (offset < 0)
                offset = -offset;
            text_add(&t, "%c%02d:%02d", sign, offset / 60, offset % 60);
        }
    }
}
