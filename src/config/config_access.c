/* The typed accessor library of the config layer. See config_access.h. */
#include "config/config_access.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

struct pending_warning {
    unsigned line, column;
    size_t seq;
    char *text;
};

/* ---- messages ---- */

struct sbuf {
    char *p;
    size_t n, len;
};

static void sb_putc(struct sbuf *b, char c)
{
    if (b->len + 1 < b->n) {
        b->p[b->len++] = c;
        b->p[b->len] = '\0';
    }
}

static void sb_puts(struct sbuf *b, const char *s)
{
    while (*s)
        sb_putc(b, *s++);
}

void kp_join(char *out, size_t n, const char *prefix, const char *key, size_t key_len)
{
    struct sbuf b = {out, n, 0};
    out[0] = '\0';
    if (prefix && *prefix) {
        sb_puts(&b, prefix);
        sb_putc(&b, '.');
    }
    toml_write_key(out + b.len, n - b.len, key, key_len);
}

void kp_key(char *out, size_t n, const char *prefix, const char *key)
{
    kp_join(out, n, prefix, key, strlen(key));
}

void kp_index(char *out, size_t n, const char *prefix, size_t index)
{
    struct sbuf b = {out, n, 0};
    char num[24];
    snprintf(num, sizeof(num), "[%zu]", index);
    out[0] = '\0';
    sb_puts(&b, prefix);
    sb_puts(&b, num);
}

static void format_message(char *out, size_t n, const char *path, unsigned line, unsigned col,
                           const char *kp, const char *msg)
{
    struct sbuf b = {out, n, 0};
    out[0] = '\0';
    sb_puts(&b, path);
    if (line) {
        char pos[32];
        snprintf(pos, sizeof(pos), ":%u:%u", line, col);
        sb_puts(&b, pos);
    }
    sb_puts(&b, ": ");
    if (kp) {
        sb_puts(&b, kp);
        sb_puts(&b, ": ");
    }
    sb_puts(&b, msg);
}

int perr(struct parser *p, unsigned line, unsigned col, const char *kp, const char *fmt, ...)
{
    if (p->failed)
        return -1;
    p->failed = true;
    char msg[CONFIG_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    format_message(p->cfg->error, sizeof(p->cfg->error), p->path, line, col, kp, msg);
    return -1;
}

void pwarn(struct parser *p, unsigned line, unsigned col, const char *fmt, ...)
{
    char msg[CONFIG_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char full[CONFIG_ERROR_MAX];
    format_message(full, sizeof(full), p->path, line, col, NULL, msg);

    struct pending_warning *w = realloc(p->warnings, (p->warning_count + 1) * sizeof(*w));
    if (!w)
        return;
    p->warnings = w;
    w = &p->warnings[p->warning_count];
    w->line = line;
    w->column = col;
    w->seq = p->warning_count;
    if ((w->text = strdup(full)))
        p->warning_count++;
}

static int warning_cmp(const void *a, const void *b)
{
    const struct pending_warning *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->column != y->column)
        return x->column < y->column ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* A config that fails to load prints its one error and nothing else. */
void flush_warnings(struct parser *p, bool keep)
{
    struct config *cfg = p->cfg;
    if (keep && p->warning_count) {
        qsort(p->warnings, p->warning_count, sizeof(*p->warnings), warning_cmp);
        cfg->warnings = calloc(p->warning_count, sizeof(char *));
    }
    for (size_t i = 0; i < p->warning_count; i++) {
        if (keep) {
            log_warn("%s", p->warnings[i].text);
            if (cfg->warnings) {
                cfg->warnings[cfg->warning_count++] = p->warnings[i].text;
                continue;
            }
        }
        free(p->warnings[i].text);
    }
    free(p->warnings);
    p->warnings = NULL;
    p->warning_count = 0;
}

static void report_v(const char *source, struct config_pos pos, const char *key_path,
                     const char *fmt, va_list ap)
{
    char msg[CONFIG_ERROR_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    char full[CONFIG_ERROR_MAX];
    format_message(full, sizeof(full), source ? source : "<config>", pos.line, pos.column, key_path,
                   msg);
    fprintf(stderr, "%s\n", full);
}

/* config_report and config_report_at (config.h): messages about configured
 * values found after loading, in the same form as load errors. */
void config_report(const struct config *cfg, struct config_pos pos, const char *key_path,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report_v(cfg->path, pos, key_path, fmt, ap);
    va_end(ap);
}

void config_report_at(const char *source, struct config_pos pos, const char *key_path,
                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report_v(source, pos, key_path, fmt, ap);
    va_end(ap);
}

/* ---- memory ---- */

char *memdup_str(struct parser *p, const char *s, size_t len)
{
    char *out = malloc(len + 1);
    if (!out) {
        perr(p, 0, 0, NULL, "out of memory");
        return NULL;
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

char *value_strdup(struct parser *p, const struct toml_value *v)
{
    return memdup_str(p, v->u.string.ptr, v->u.string.len);
}

void *xcalloc(struct parser *p, size_t n, size_t size)
{
    void *out = calloc(n ? n : 1, size);
    if (!out)
        perr(p, 0, 0, NULL, "out of memory");
    return out;
}

/* ---- typed values ---- */

int expect_type_at(struct parser *p, const struct toml_value *v, const char *kp,
                   enum toml_type type, unsigned line, unsigned col)
{
    if (v->type == type)
        return 0;
    return perr(p, line, col, kp, "expected %s, got %s", toml_type_phrase(type),
                toml_type_name(v->type));
}

int expect_type(struct parser *p, const struct toml_value *v, const char *kp, enum toml_type type)
{
    return expect_type_at(p, v, kp, type, v->line, v->column);
}

int check_int(struct parser *p, const struct toml_value *v, const char *kp, int64_t min,
              int64_t max, int64_t *out)
{
    if (expect_type(p, v, kp, TOML_INTEGER))
        return -1;
    int64_t x = v->u.integer;
    if (x >= min && x <= max) {
        *out = x;
        return 0;
    }
    if (max == INT64_MAX && min == 0)
        return perr(p, v->line, v->column, kp, "must not be negative, got %" PRId64, x);
    if (max == INT64_MAX)
        return perr(p, v->line, v->column, kp, "must be at least %" PRId64 ", got %" PRId64, min,
                    x);
    return perr(p, v->line, v->column, kp,
                "must be between %" PRId64 " and %" PRId64 ", got %" PRId64, min, max, x);
}

int check_str(struct parser *p, const struct toml_value *v, const char *kp, unsigned flags)
{
    if (expect_type(p, v, kp, TOML_STRING))
        return -1;
    if ((flags & STR_NONEMPTY) && v->u.string.len == 0)
        return perr(p, v->line, v->column, kp, "must not be empty");
    if ((flags & STR_NO_NUL) && memchr(v->u.string.ptr, '\0', v->u.string.len))
        return perr(p, v->line, v->column, kp, "must not contain a NUL character");
    return 0;
}

/* ---- sections ---- */

int sec_open(struct parser *p, struct section *s, const struct toml_value *tbl, const char *kp,
             unsigned line, unsigned col)
{
    s->p = p;
    s->tbl = tbl;
    s->kp = kp;
    s->line = line;
    s->column = col;
    s->used = xcalloc(p, tbl->u.table.count, sizeof(bool));
    return s->used ? 0 : -1;
}

void sec_close(struct section *s)
{
    if (!s->used)
        return;
    if (!s->p->failed) {
        for (size_t i = 0; i < s->tbl->u.table.count; i++) {
            if (s->used[i])
                continue;
            const struct toml_keyval *kv = &s->tbl->u.table.items[i];
            char kp[KP_MAX];
            kp_join(kp, sizeof(kp), s->kp, kv->key, kv->key_len);
            pwarn(s->p, kv->line, kv->column, "unknown key %s ignored", kp);
        }
    }
    free(s->used);
    s->used = NULL;
}

const struct toml_keyval *sec_find(struct section *s, const char *key)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < s->tbl->u.table.count; i++) {
        const struct toml_keyval *kv = &s->tbl->u.table.items[i];
        if (kv->key_len == klen && memcmp(kv->key, key, klen) == 0) {
            s->used[i] = true;
            return kv;
        }
    }
    return NULL;
}

/* Edit distance of two short strings, capped at 3. */
static unsigned edit_distance(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen > 32 || blen > 32)
        return 3;
    unsigned row[33];
    for (size_t j = 0; j <= blen; j++)
        row[j] = (unsigned)j;
    for (size_t i = 1; i <= alen; i++) {
        unsigned diag = row[0];
        row[0] = (unsigned)i;
        for (size_t j = 1; j <= blen; j++) {
            unsigned up = row[j];
            unsigned best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[blen] < 3 ? row[blen] : 3;
}

/* An unknown key of the section that looks like a misspelt key. */
static const struct toml_keyval *sec_near_miss(struct section *s, const char *key)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < s->tbl->u.table.count; i++) {
        const struct toml_keyval *kv = &s->tbl->u.table.items[i];
        if (!s->used[i] && edit_distance(kv->key, kv->key_len, key, klen) <= (klen > 4 ? 2 : 1))
            return kv;
    }
    return NULL;
}

struct config_pos sec_pos(struct section *s, const char *key)
{
    const struct toml_keyval *kv = sec_find(s, key);
    return kv ? (struct config_pos){kv->value->line, kv->value->column} : (struct config_pos){0, 0};
}

int sec_get(struct section *s, const char *key, bool required, const struct toml_value **out,
            char *kp)
{
    kp_key(kp, KP_MAX, s->kp, key);
    const struct toml_keyval *kv = sec_find(s, key);
    if (!kv) {
        if (!required)
            return 0;
        const struct toml_keyval *typo = sec_near_miss(s, key);
        if (typo)
            perr(s->p, s->line, s->column, kp,
                 "required key is missing (is \"%.*s\" at line %u a misspelling?)",
                 (int)typo->key_len, typo->key, typo->line);
        else
            perr(s->p, s->line, s->column, kp, "required key is missing");
        return -1;
    }
    *out = kv->value;
    return 1;
}

int sec_typed(struct section *s, const char *key, bool required, enum toml_type type,
              const struct toml_value **out, char *kp)
{
    int r = sec_get(s, key, required, out, kp);
    if (r <= 0)
        return r;
    return expect_type(s->p, *out, kp, type) ? -1 : 1;
}

int sec_int(struct section *s, const char *key, bool required, int64_t min, int64_t max,
            int64_t *out)
{
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int r = sec_get(s, key, required, &v, kp);
    if (r <= 0)
        return r;
    return check_int(s->p, v, kp, min, max, out) ? -1 : 1;
}

int sec_pow2(struct section *s, const char *key, int64_t min, int64_t max, int64_t *out)
{
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int64_t n = 0;
    int r = sec_get(s, key, false, &v, kp);
    if (r <= 0)
        return r;
    if (check_int(s->p, v, kp, 0, INT64_MAX, &n))
        return -1;
    if (n < min || n > max || (n & (n - 1)))
        return perr(s->p, v->line, v->column, kp,
                    "must be a power of two between %" PRId64 " and %" PRId64 ", got %" PRId64, min,
                    max, n);
    *out = n;
    return 1;
}

int sec_bool(struct section *s, const char *key, bool *out)
{
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int r = sec_typed(s, key, false, TOML_BOOL, &v, kp);
    if (r == 1)
        *out = v->u.boolean;
    return r;
}

int sec_str(struct section *s, const char *key, bool required, unsigned flags, char **out,
            struct config_pos *pos)
{
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int r = sec_get(s, key, required, &v, kp);
    if (r <= 0)
        return r;
    if (check_str(s->p, v, kp, flags))
        return -1;
    *out = value_strdup(s->p, v);
    if (!*out)
        return -1;
    if (pos) {
        pos->line = v->line;
        pos->column = v->column;
    }
    return 1;
}

int sec_enum(struct section *s, const char *key, bool required, const char *const *names,
             size_t count, const char *what, int *out, const struct toml_value **val)
{
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int r = sec_get(s, key, required, &v, kp);
    if (r <= 0)
        return r;
    if (val)
        *val = v;
    if (check_str(s->p, v, kp, 0))
        return -1;
    for (size_t i = 0; i < count; i++) {
        if (v->u.string.len == strlen(names[i]) && strcmp(v->u.string.ptr, names[i]) == 0) {
            *out = (int)i;
            return 1;
        }
    }
    char list[256];
    struct sbuf b = {list, sizeof(list), 0};
    list[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        if (i)
            sb_puts(&b, i + 1 == count ? " or " : ", ");
        sb_puts(&b, names[i]);
    }
    int shown = v->u.string.len > 64 ? 64 : (int)v->u.string.len;
    return perr(s->p, v->line, v->column, kp, "unknown %s \"%.*s\"%s (expected %s)", what, shown,
                v->u.string.ptr, shown < (int)v->u.string.len ? "..." : "", list);
}

int sec_table(struct section *s, const char *key, const struct toml_keyval **out)
{
    const struct toml_keyval *kv = sec_find(s, key);
    if (!kv)
        return 0;
    char kp[KP_MAX];
    kp_key(kp, sizeof(kp), s->kp, key);
    if (expect_type_at(s->p, kv->value, kp, TOML_TABLE, kv->line, kv->column))
        return -1;
    *out = kv;
    return 1;
}

/* A named section ([block_dev.NAME] etc.): checks the name and the type. */
static int named_section(struct parser *p, const struct toml_keyval *kv, const char *parent,
                         char *kp)
{
    kp_join(kp, KP_MAX, parent, kv->key, kv->key_len);
    if (kv->key_len == 0)
        return perr(p, kv->line, kv->column, kp, "section name must not be empty");
    if (memchr(kv->key, '\0', kv->key_len))
        return perr(p, kv->line, kv->column, kp, "section name must not contain a NUL character");
    return expect_type_at(p, kv->value, kp, TOML_TABLE, kv->line, kv->column);
}

int parse_named_sections(struct parser *p, struct section *root, const char *table,
                         int (*reserve)(struct parser *p, size_t n),
                         int (*add)(struct parser *p, const struct toml_keyval *kv, const char *kp,
                                    char *name))
{
    const struct toml_keyval *top;
    int r = sec_table(root, table, &top);
    if (r <= 0)
        return r;
    const struct toml_value *tbl = top->value;
    if (reserve(p, tbl->u.table.count))
        return -1;
    for (size_t i = 0; i < tbl->u.table.count; i++) {
        const struct toml_keyval *kv = &tbl->u.table.items[i];
        char kp[KP_MAX];
        char *name;
        if (named_section(p, kv, table, kp) || !(name = memdup_str(p, kv->key, kv->key_len)))
            return -1;
        if (add(p, kv, kp, name))
            return -1;
    }
    return 0;
}
