/* Reads the propolis-standalone TOML file into struct config. See config.h. */
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "config/toml.h"

#define KP_MAX 320                         /* key paths in messages */
#define CONFIG_FILE_MAX (16u << 20)        /* refuse absurdly large files */
#define PVPANIC_PORT_TEXT "I/O port 0x505" /* for messages */

struct pending_warning {
    unsigned line, column;
    size_t seq;
    char *text;
};

struct parser {
    struct config *cfg;
    struct pending_warning *warnings;
    size_t warning_count;
    const char *path; /* for messages */
    bool failed;
    /* Values resolved once every section has been read. */
    const struct toml_value *cpuid_profile_val;
    const struct toml_value *boot_order_val;
};

/* The keys of one TOML table being read; keys never looked at are reported
 * as unknown when the section is closed. */
struct section {
    struct parser *p;
    const struct toml_value *tbl;
    const char *kp; /* key path of the table ("" for the root) */
    unsigned line, column;
    bool *used;
};

static const char *const block_type_names[] = {
    [CONFIG_BLOCK_FILE] = "file",           [CONFIG_BLOCK_MEM_ASYNC] = "mem-async",
    [CONFIG_BLOCK_CRUCIBLE] = "crucible",   [CONFIG_BLOCK_CRUCIBLE_MEM] = "crucible-mem",
    [CONFIG_BLOCK_CLOUDINIT] = "cloudinit",
};

static const char *const driver_names[] = {
    [CONFIG_DRIVER_VIRTIO_BLOCK] = "pci-virtio-block",
    [CONFIG_DRIVER_NVME] = "pci-nvme",
    [CONFIG_DRIVER_VIRTIO_VIONA] = "pci-virtio-viona",
    [CONFIG_DRIVER_VIRTIO_SOCKET] = "pci-virtio-socket",
    [CONFIG_DRIVER_QEMU_PVPANIC] = "qemu-pvpanic",
};

static const char *const vendor_names[] = {
    [CONFIG_CPU_VENDOR_AMD] = "amd",
    [CONFIG_CPU_VENDOR_INTEL] = "intel",
};

static const char *const cpu_binding_names[] = {
    [CPU_BINDING_ANY] = "any",
    [CPU_BINDING_UPPER_HALF] = "upper-half",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *config_block_type_name(enum config_block_type type)
{
    return (size_t)type < COUNT(block_type_names) ? block_type_names[type] : "?";
}

const char *config_driver_name(enum config_driver driver)
{
    return (size_t)driver < COUNT(driver_names) ? driver_names[driver] : "?";
}

const char *config_cpu_vendor_name(enum config_cpu_vendor vendor)
{
    return (size_t)vendor < COUNT(vendor_names) ? vendor_names[vendor] : "?";
}

const char *config_cpu_binding_name(enum cpu_binding binding)
{
    return (size_t)binding < COUNT(cpu_binding_names) ? cpu_binding_names[binding] : "?";
}

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

static bool is_bare_key(const char *key, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* "prefix.key", quoting key as TOML does when it is not a bare key. */
static void kp_join(char *out, size_t n, const char *prefix, const char *key, size_t key_len)
{
    struct sbuf b = {out, n, 0};
    out[0] = '\0';
    if (prefix && *prefix) {
        sb_puts(&b, prefix);
        sb_putc(&b, '.');
    }
    if (is_bare_key(key, key_len)) {
        for (size_t i = 0; i < key_len; i++)
            sb_putc(&b, key[i]);
        return;
    }
    sb_putc(&b, '"');
    for (size_t i = 0; i < key_len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c == '"' || c == '\\') {
            sb_putc(&b, '\\');
            sb_putc(&b, (char)c);
        } else if (c < 0x20 || c == 0x7f) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04X", c);
            sb_puts(&b, esc);
        } else {
            sb_putc(&b, (char)c);
        }
    }
    sb_putc(&b, '"');
}

static void kp_index(char *out, size_t n, const char *prefix, size_t index)
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

static int perr(struct parser *p, unsigned line, unsigned col, const char *kp, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Records the first error; returns -1. */
static int perr(struct parser *p, unsigned line, unsigned col, const char *kp, const char *fmt, ...)
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

static void pwarn(struct parser *p, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void pwarn(struct parser *p, unsigned line, unsigned col, const char *fmt, ...)
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

/* Logs the warnings in file order and hands them to cfg (success only: a
 * config that fails to load prints its one error and nothing else). */
static void flush_warnings(struct parser *p, bool keep)
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

static char *memdup_str(struct parser *p, const char *s, size_t len)
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

static void *xcalloc(struct parser *p, size_t n, size_t size)
{
    void *out = calloc(n ? n : 1, size);
    if (!out)
        perr(p, 0, 0, NULL, "out of memory");
    return out;
}

/* ---- typed values ---- */

static const char *type_with_article(enum toml_type t)
{
    switch (t) {
    case TOML_TABLE:
        return "a table";
    case TOML_ARRAY:
        return "an array";
    case TOML_STRING:
        return "a string";
    case TOML_INTEGER:
        return "an integer";
    case TOML_FLOAT:
        return "a number";
    case TOML_BOOL:
        return "a boolean";
    default:
        return "a date/time";
    }
}

static int expect_type_at(struct parser *p, const struct toml_value *v, const char *kp,
                          enum toml_type type, unsigned line, unsigned col)
{
    if (v->type == type)
        return 0;
    return perr(p, line, col, kp, "expected %s, got %s", type_with_article(type),
                toml_type_name(v->type));
}

static int expect_type(struct parser *p, const struct toml_value *v, const char *kp,
                       enum toml_type type)
{
    return expect_type_at(p, v, kp, type, v->line, v->column);
}

static int check_int(struct parser *p, const struct toml_value *v, const char *kp, int64_t min,
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

enum str_flags {
    STR_NONEMPTY = 1,
    STR_NO_NUL = 2,
};

static int check_str(struct parser *p, const struct toml_value *v, const char *kp, unsigned flags)
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

static int sec_open(struct parser *p, struct section *s, const struct toml_value *tbl,
                    const char *kp, unsigned line, unsigned col)
{
    s->p = p;
    s->tbl = tbl;
    s->kp = kp;
    s->line = line;
    s->column = col;
    s->used = xcalloc(p, tbl->u.table.count, sizeof(bool));
    return s->used ? 0 : -1;
}

static void sec_close(struct section *s)
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

static const struct toml_keyval *sec_find(struct section *s, const char *key)
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

/* Looks key up; fills kp with its key path. Returns 1 if present, 0 if absent
 * (an error if required), -1 on error. */
/* Where the value of key was written, for reports made after parsing. */
static struct config_pos sec_pos(struct section *s, const char *key)
{
    const struct toml_keyval *kv = sec_find(s, key);
    return kv ? (struct config_pos){kv->value->line, kv->value->column} : (struct config_pos){0, 0};
}

static int sec_get(struct section *s, const char *key, bool required, const struct toml_value **out,
                   char *kp)
{
    kp_join(kp, KP_MAX, s->kp, key, strlen(key));
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

static int sec_typed(struct section *s, const char *key, bool required, enum toml_type type,
                     const struct toml_value **out, char *kp)
{
    int r = sec_get(s, key, required, out, kp);
    if (r <= 0)
        return r;
    return expect_type(s->p, *out, kp, type) ? -1 : 1;
}

static int sec_int(struct section *s, const char *key, bool required, int64_t min, int64_t max,
                   int64_t *out)
{
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int r = sec_get(s, key, required, &v, kp);
    if (r <= 0)
        return r;
    return check_int(s->p, v, kp, min, max, out) ? -1 : 1;
}

static int sec_bool(struct section *s, const char *key, bool *out)
{
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int r = sec_typed(s, key, false, TOML_BOOL, &v, kp);
    if (r == 1)
        *out = v->u.boolean;
    return r;
}

static int sec_str(struct section *s, const char *key, bool required, unsigned flags, char **out,
                   struct config_pos *pos)
{
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int r = sec_get(s, key, required, &v, kp);
    if (r <= 0)
        return r;
    if (check_str(s->p, v, kp, flags))
        return -1;
    *out = memdup_str(s->p, v->u.string.ptr, v->u.string.len);
    if (!*out)
        return -1;
    if (pos) {
        pos->line = v->line;
        pos->column = v->column;
    }
    return 1;
}

/* A string that must be one of names[]. */
static int sec_enum(struct section *s, const char *key, bool required, const char *const *names,
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

/* A key whose value must be a table, e.g. [block_dev] in the root. */
static int sec_table(struct section *s, const char *key, const struct toml_keyval **out)
{
    const struct toml_keyval *kv = sec_find(s, key);
    if (!kv)
        return 0;
    char kp[KP_MAX];
    kp_join(kp, sizeof(kp), s->kp, key, strlen(key));
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

/* Parses each [TABLE.NAME] section in file order: reserve() makes room for
 * all of them, then add() takes each one, with its copied NAME, and parses
 * it. add() counts the item first, so that config_free() finds the name
 * even when parsing fails. Returns 0, or -1 after an error. */
static int parse_named_sections(struct parser *p, struct section *root, const char *table,
                                int (*reserve)(struct parser *p, size_t n),
                                int (*add)(struct parser *p, const struct toml_keyval *kv,
                                           const char *kp, char *name))
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

/* ---- [main] ---- */

static int check_vm_name(struct parser *p, const struct toml_value *v, const char *kp)
{
    if (check_str(p, v, kp, STR_NONEMPTY | STR_NO_NUL))
        return -1;
    const char *s = v->u.string.ptr;
    if (v->u.string.len > CONFIG_NAME_MAX)
        return perr(p, v->line, v->column, kp, "must be at most %d bytes, got %zu", CONFIG_NAME_MAX,
                    v->u.string.len);
    if (strchr(s, '/'))
        return perr(p, v->line, v->column, kp,
                    "must not contain '/' (the name is used in file names)");
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return perr(p, v->line, v->column, kp,
                        "must not contain control characters (it is used in file names and logs)");
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return perr(p, v->line, v->column, kp, "must not be \".\" or \"..\"");
    return 0;
}

static int parse_main(struct parser *p, struct section *root)
{
    struct config_main *m = &p->cfg->main;
    const struct toml_keyval *kv;
    int r = sec_table(root, "main", &kv);
    if (r < 0)
        return -1;
    if (r == 0)
        return perr(p, 0, 0, NULL, "missing required section [main]");
    m->line = kv->line;
    m->column = kv->column;

    struct section s;
    if (sec_open(p, &s, kv->value, "main", kv->line, kv->column))
        return -1;
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int64_t n = 0;
    int e = 0;

    if (sec_get(&s, "name", true, &v, kp) != 1 || check_vm_name(p, v, kp) ||
        !(m->name = memdup_str(p, v->u.string.ptr, v->u.string.len)))
        goto out;
    if (sec_int(&s, "cpus", true, 1, CONFIG_MAX_CPUS, &n) < 0)
        goto out;
    m->cpus = (unsigned)n;
    if (sec_str(&s, "bootrom", true, STR_NONEMPTY | STR_NO_NUL, &m->bootrom, &m->bootrom_pos) < 0)
        goto out;
    if ((e = sec_str(&s, "bootrom_version", false, STR_NO_NUL, &m->bootrom_version, NULL)) < 0)
        goto out;
    if (e == 0 && !(m->bootrom_version = memdup_str(p, CONFIG_DEFAULT_BOOTROM_VERSION,
                                                    strlen(CONFIG_DEFAULT_BOOTROM_VERSION))))
        goto out;
    if (sec_int(&s, "memory", true, 1, (int64_t)CONFIG_MAX_MEMORY_MIB, &n) < 0)
        goto out;
    m->memory_mib = (uint64_t)n;
    m->memory_pos = sec_pos(&s, "memory");
    if (sec_bool(&s, "use_reservoir", &m->use_reservoir) < 0)
        goto out;

    if ((e = sec_str(&s, "cpuid_profile", false, STR_NONEMPTY | STR_NO_NUL, &m->cpuid_profile,
                     NULL)) < 0)
        goto out;
    if (e == 1)
        p->cpuid_profile_val = sec_find(&s, "cpuid_profile")->value;

    int binding = CPU_BINDING_ANY;
    if (sec_enum(&s, "cpu_binding", false, cpu_binding_names, COUNT(cpu_binding_names),
                 "cpu_binding", &binding, NULL) < 0)
        goto out;
    m->cpu_binding = (enum cpu_binding)binding;

    if ((e = sec_int(&s, "exit_on_halt", false, 0, 255, &n)) < 0)
        goto out;
    m->exit_on_halt = e == 1 ? (int)n : 0;
    if ((e = sec_int(&s, "exit_on_reboot", false, 0, 255, &n)) < 0)
        goto out;
    if (e == 1) {
        m->has_exit_on_reboot = true;
        m->exit_on_reboot = (int)n;
    }

    if ((e = sec_typed(&s, "boot_order", false, TOML_ARRAY, &v, kp)) < 0)
        goto out;
    if (e == 1) {
        size_t count = v->u.array.count;
        m->has_boot_order = true;
        if (!(m->boot_order = xcalloc(p, count, sizeof(char *))) ||
            !(m->boot_order_dev = xcalloc(p, count, sizeof(size_t))))
            goto out;
        for (size_t i = 0; i < count; i++) {
            const struct toml_value *el = v->u.array.items[i];
            char ekp[KP_MAX];
            kp_index(ekp, sizeof(ekp), kp, i);
            if (check_str(p, el, ekp, STR_NONEMPTY | STR_NO_NUL) ||
                !(m->boot_order[i] = memdup_str(p, el->u.string.ptr, el->u.string.len)))
                goto out;
            m->boot_order_count = i + 1;
        }
        p->boot_order_val = v;
    }

    if ((e = sec_get(&s, "acpi_variant", false, &v, kp)) < 0)
        goto out;
    if (e == 1) {
        if (check_str(p, v, kp, 0))
            goto out;
        if (strcasecmp(v->u.string.ptr, "V0") != 0 || v->u.string.len != 2) {
            perr(p, v->line, v->column, kp, "unknown acpi_variant \"%.*s\" (expected V0)",
                 (int)v->u.string.len, v->u.string.ptr);
            goto out;
        }
    }
    m->acpi_variant = ACPI_VARIANT_V0;

out:
    sec_close(&s);
    return p->failed ? -1 : 0;
}

/* ---- [cpuid.NAME] ---- */

static int parse_cpuid_profile(struct parser *p, const struct toml_keyval *kv, const char *kp,
                               struct config_cpuid_profile *prof)
{
    const struct toml_value *tbl = kv->value;
    struct section s;
    if (sec_open(p, &s, tbl, kp, kv->line, kv->column))
        return -1;
    const struct toml_keyval **leaf_kv = NULL;
    int vendor;
    if (sec_enum(&s, "vendor", true, vendor_names, COUNT(vendor_names), "vendor", &vendor, NULL) <
        0)
        goto out;
    prof->vendor = (enum config_cpu_vendor)vendor;

    if (!(prof->leaves = xcalloc(p, tbl->u.table.count, sizeof(*prof->leaves))) ||
        !(leaf_kv = xcalloc(p, tbl->u.table.count, sizeof(*leaf_kv))))
        goto out;
    for (size_t i = 0; i < tbl->u.table.count; i++) {
        const struct toml_keyval *lkv = &tbl->u.table.items[i];
        if (s.used[i]) /* vendor */
            continue;
        s.used[i] = true;
        char lkp[KP_MAX], why[256];
        kp_join(lkp, sizeof(lkp), kp, lkv->key, lkv->key_len);
        struct config_cpuid_leaf *leaf = &prof->leaves[prof->leaf_count];
        if (config_parse_cpuid_key(lkv->key, lkv->key_len, &leaf->func, &leaf->has_index,
                                   &leaf->index, why, sizeof(why))) {
            perr(p, lkv->line, lkv->column, lkp, "%s", why);
            goto out;
        }
        leaf->line = lkv->line;
        leaf->column = lkv->column;

        const struct toml_value *v = lkv->value;
        if (v->type != TOML_ARRAY) {
            perr(p, v->line, v->column, lkp,
                 "expected an array of 4 integers [eax, ebx, ecx, edx], got %s",
                 toml_type_name(v->type));
            goto out;
        }
        if (v->u.array.count != 4) {
            perr(p, v->line, v->column, lkp, "expected 4 values [eax, ebx, ecx, edx], got %zu",
                 v->u.array.count);
            goto out;
        }
        for (size_t r = 0; r < 4; r++) {
            char ekp[KP_MAX];
            int64_t x = 0;
            kp_index(ekp, sizeof(ekp), lkp, r);
            if (check_int(p, v->u.array.items[r], ekp, 0, UINT32_MAX, &x))
                goto out;
            leaf->regs[r] = (uint32_t)x;
        }

        for (size_t j = 0; j < prof->leaf_count; j++) {
            const struct config_cpuid_leaf *o = &prof->leaves[j];
            if (o->func != leaf->func || o->has_index != leaf->has_index ||
                (leaf->has_index && o->index != leaf->index))
                continue;
            char what[64];
            if (leaf->has_index)
                snprintf(what, sizeof(what), "leaf 0x%" PRIx32 " index 0x%" PRIx32, leaf->func,
                         leaf->index);
            else
                snprintf(what, sizeof(what), "leaf 0x%" PRIx32, leaf->func);
            perr(p, lkv->line, lkv->column, lkp, "%s is already defined by \"%.*s\" at line %u",
                 what, (int)leaf_kv[j]->key_len, leaf_kv[j]->key, o->line);
            goto out;
        }
        leaf_kv[prof->leaf_count++] = lkv;
    }

out:
    free(leaf_kv);
    sec_close(&s);
    return p->failed ? -1 : 0;
}

static int reserve_cpuid_profiles(struct parser *p, size_t n)
{
    return (p->cfg->cpuid_profiles = xcalloc(p, n, sizeof(*p->cfg->cpuid_profiles))) ? 0 : -1;
}

static int add_cpuid_profile(struct parser *p, const struct toml_keyval *kv, const char *kp,
                             char *name)
{
    struct config_cpuid_profile *prof = &p->cfg->cpuid_profiles[p->cfg->cpuid_profile_count++];
    *prof = (struct config_cpuid_profile){.name = name, .line = kv->line, .column = kv->column};
    return parse_cpuid_profile(p, kv, kp, prof);
}

static int parse_cpuid(struct parser *p, struct section *root)
{
    return parse_named_sections(p, root, "cpuid", reserve_cpuid_profiles, add_cpuid_profile);
}

/* ---- [cloudinit] ---- */

static int parse_cloudinit_item(struct parser *p, struct section *s, const char *key,
                                struct config_cloudinit_item *item)
{
    char kp[KP_MAX], pkey[64];
    const struct toml_value *v = NULL;
    int r = sec_get(s, key, false, &v, kp);
    if (r < 0)
        return -1;
    if (r == 1) {
        if (check_str(p, v, kp, 0) ||
            !(item->data = memdup_str(p, v->u.string.ptr, v->u.string.len)))
            return -1;
        item->len = v->u.string.len;
    }
    snprintf(pkey, sizeof(pkey), "%s-path", key);
    struct config_pos pos;
    int rp = sec_str(s, pkey, false, STR_NONEMPTY | STR_NO_NUL, &item->path, &pos);
    if (rp < 0)
        return -1;
    if (r == 1 && rp == 1) {
        char pkp[KP_MAX];
        kp_join(pkp, sizeof(pkp), s->kp, pkey, strlen(pkey));
        return perr(p, pos.line, pos.column, pkp,
                    "cannot be combined with %s (line %u): give the data or a file, not both", kp,
                    v->line);
    }
    return 0;
}

static int parse_cloudinit(struct parser *p, struct section *root)
{
    struct config *cfg = p->cfg;
    const struct toml_keyval *kv;
    int r = sec_table(root, "cloudinit", &kv);
    if (r <= 0)
        return r;
    cfg->has_cloudinit = true;
    cfg->cloudinit.line = kv->line;
    cfg->cloudinit.column = kv->column;
    struct section s;
    if (sec_open(p, &s, kv->value, "cloudinit", kv->line, kv->column))
        return -1;
    if (!parse_cloudinit_item(p, &s, "user-data", &cfg->cloudinit.user_data) &&
        !parse_cloudinit_item(p, &s, "meta-data", &cfg->cloudinit.meta_data))
        parse_cloudinit_item(p, &s, "network-config", &cfg->cloudinit.network_config);
    sec_close(&s);
    return p->failed ? -1 : 0;
}

/* ---- [block_dev.NAME] ---- */

static int sec_workers(struct section *s, unsigned *out)
{
    int64_t n = CONFIG_DEFAULT_WORKERS;
    if (sec_int(s, "workers", false, 1, CONFIG_MAX_WORKERS, &n) < 0)
        return -1;
    *out = (unsigned)n;
    return 0;
}

/* A size in bytes: > 0 and a whole number of blocks. */
static int sec_size(struct section *s, const struct config_block_dev *bd, uint64_t *out)
{
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int64_t n = 0;
    if (sec_get(s, "size", true, &v, kp) != 1 || check_int(s->p, v, kp, 1, INT64_MAX, &n))
        return -1;
    uint32_t bs = config_block_size(bd);
    if ((uint64_t)n % bs)
        return perr(s->p, v->line, v->column, kp,
                    "must be a multiple of the block size (%" PRIu32 "), got %" PRId64, bs, n);
    *out = (uint64_t)n;
    return 0;
}

static int check_sockaddr(struct parser *p, const struct toml_value *v, const char *kp,
                          bool need_port, struct config_sockaddr *out)
{
    char why[256];
    if (check_str(p, v, kp, STR_NO_NUL))
        return -1;
    if (config_parse_sockaddr(v->u.string.ptr, out, why, sizeof(why)))
        return perr(p, v->line, v->column, kp, "%s", why);
    if (need_port &&
        ntohs(out->u.sa.sa_family == AF_INET ? out->u.in4.sin_port : out->u.in6.sin6_port) == 0)
        return perr(p, v->line, v->column, kp, "port 0 in \"%s\" cannot be connected to",
                    out->text);
    return 0;
}

static int parse_crucible(struct parser *p, struct section *s, struct config_block_dev *bd)
{
    struct config_crucible *c = &bd->crucible;
    char kp[KP_MAX], why[256];
    const struct toml_value *v = NULL;
    int64_t n = 0;
    int r;

    if (!bd->has_block_size) {
        kp_join(kp, sizeof(kp), s->kp, "block_size", strlen("block_size"));
        return perr(p, s->line, s->column, kp,
                    "required key is missing (crucible needs the region's block size)");
    }
    if (sec_int(s, "blocks_per_extent", true, 1, INT64_MAX, &n) < 0)
        return -1;
    c->blocks_per_extent = (uint64_t)n;
    if (sec_int(s, "extent_count", true, 1, UINT32_MAX, &n) < 0)
        return -1;
    c->extent_count = (uint32_t)n;

    if (sec_typed(s, "targets", true, TOML_ARRAY, &v, kp) != 1)
        return -1;
    if (v->u.array.count != CONFIG_CRUCIBLE_TARGETS)
        return perr(p, v->line, v->column, kp,
                    "expected exactly 3 targets (\"IP:PORT\" of each downstairs), got %zu",
                    v->u.array.count);
    for (size_t i = 0; i < CONFIG_CRUCIBLE_TARGETS; i++) {
        const struct toml_value *el = v->u.array.items[i];
        char ekp[KP_MAX];
        kp_index(ekp, sizeof(ekp), kp, i);
        if (check_sockaddr(p, el, ekp, true, &c->targets[i]))
            return -1;
        for (size_t j = 0; j < i; j++) {
            if (c->targets[j].len == c->targets[i].len &&
                memcmp(&c->targets[j].u, &c->targets[i].u, c->targets[i].len) == 0)
                return perr(p, el->line, el->column, ekp, "%s is the same downstairs as %s[%zu]",
                            c->targets[i].text, kp, j);
        }
    }

    if (sec_int(s, "generation", true, 0, INT64_MAX, &n) < 0)
        return -1;
    c->generation = (uint64_t)n;

    if ((r = sec_typed(s, "upstairs_id", false, TOML_STRING, &v, kp)) < 0)
        return -1;
    if (r == 1) {
        if (check_str(p, v, kp, STR_NO_NUL))
            return -1;
        if (config_parse_uuid(v->u.string.ptr, c->upstairs_id, why, sizeof(why)))
            return perr(p, v->line, v->column, kp, "%s", why);
        c->has_upstairs_id = true;
    }
    if (sec_bool(s, "lossy", &c->lossy) < 0)
        return -1;

    c->flush_timeout = CONFIG_DEFAULT_FLUSH_TIMEOUT;
    if ((r = sec_get(s, "flush_timeout", false, &v, kp)) < 0)
        return -1;
    if (r == 1) {
        double t;
        if (v->type == TOML_INTEGER)
            t = (double)v->u.integer;
        else if (v->type == TOML_FLOAT)
            t = v->u.floating;
        else
            return perr(p, v->line, v->column, kp, "expected a number of seconds, got %s",
                        toml_type_name(v->type));
        if (!(t > 0) || !isfinite(t))
            return perr(p, v->line, v->column, kp, "must be a positive number of seconds, got %g",
                        t);
        c->flush_timeout = t;
        c->has_flush_timeout = true;
    }

    if ((r = sec_str(s, "encryption_key", false, STR_NO_NUL, &c->encryption_key_b64, NULL)) < 0)
        return -1;
    if (r == 1) {
        v = sec_find(s, "encryption_key")->value;
        kp_join(kp, sizeof(kp), s->kp, "encryption_key", strlen("encryption_key"));
        size_t len = 0;
        uint8_t key[CONFIG_CRUCIBLE_KEY_LEN + 3];
        if (config_base64_decode(v->u.string.ptr, v->u.string.len, key, sizeof(key), &len, why,
                                 sizeof(why)))
            return perr(p, v->line, v->column, kp, "%s", why);
        if (len != CONFIG_CRUCIBLE_KEY_LEN)
            return perr(p, v->line, v->column, kp,
                        "must be the base64 encoding of a 256-bit key (32 bytes), got %zu bytes",
                        len);
        memcpy(c->encryption_key, key, sizeof(c->encryption_key));
        c->has_encryption_key = true;
    }
    if (sec_str(s, "cert_pem", false, STR_NONEMPTY | STR_NO_NUL, &c->cert_pem, NULL) < 0 ||
        sec_str(s, "key_pem", false, STR_NONEMPTY | STR_NO_NUL, &c->key_pem, NULL) < 0 ||
        sec_str(s, "root_cert_pem", false, STR_NONEMPTY | STR_NO_NUL, &c->root_cert_pem, NULL) < 0)
        return -1;

    if ((r = sec_get(s, "control_addr", false, &v, kp)) < 0)
        return -1;
    if (r == 1) {
        if (check_sockaddr(p, v, kp, false, &c->control_addr))
            return -1;
        c->has_control_addr = true;
    }
    return 0;
}

static int parse_block_dev(struct parser *p, const struct toml_keyval *kv, const char *kp,
                           struct config_block_dev *bd)
{
    struct section s;
    if (sec_open(p, &s, kv->value, kp, kv->line, kv->column))
        return -1;
    char vkp[KP_MAX];
    const struct toml_value *v = NULL, *type_val = NULL;
    int64_t n = 0;
    int type, r;

    if (sec_enum(&s, "type", true, block_type_names, COUNT(block_type_names), "type", &type,
                 &type_val) < 0)
        goto out;
    bd->type = (enum config_block_type)type;

    if ((r = sec_get(&s, "block_size", false, &v, vkp)) < 0)
        goto out;
    if (r == 1) {
        if (check_int(p, v, vkp, 0, INT64_MAX, &n))
            goto out;
        if (n < CONFIG_MIN_BLOCK_SIZE || n > CONFIG_MAX_BLOCK_SIZE || (n & (n - 1))) {
            perr(p, v->line, v->column, vkp,
                 "must be a power of two between %d and %d, got %" PRId64, CONFIG_MIN_BLOCK_SIZE,
                 CONFIG_MAX_BLOCK_SIZE, n);
            goto out;
        }
        bd->has_block_size = true;
        bd->block_size = (uint32_t)n;
    }
    if ((r = sec_bool(&s, "read_only", &bd->read_only)) < 0)
        goto out;
    bd->has_read_only = r == 1;
    if ((r = sec_bool(&s, "skip_flush", &bd->skip_flush)) < 0)
        goto out;
    bd->has_skip_flush = r == 1;

    switch (bd->type) {
    case CONFIG_BLOCK_FILE:
        if (sec_str(&s, "path", true, STR_NONEMPTY | STR_NO_NUL, &bd->file.path,
                    &bd->file.path_pos) < 0)
            goto out;
        sec_workers(&s, &bd->file.workers);
        break;
    case CONFIG_BLOCK_MEM_ASYNC:
        if (sec_size(&s, bd, &bd->mem_async.size) == 0)
            sec_workers(&s, &bd->mem_async.workers);
        break;
    case CONFIG_BLOCK_CRUCIBLE:
        parse_crucible(p, &s, bd);
        break;
    case CONFIG_BLOCK_CRUCIBLE_MEM:
        sec_size(&s, bd, &bd->crucible_mem.size);
        break;
    case CONFIG_BLOCK_CLOUDINIT:
        if (!p->cfg->has_cloudinit) {
            kp_join(vkp, sizeof(vkp), kp, "type", 4);
            perr(p, type_val->line, type_val->column, vkp,
                 "type \"cloudinit\" needs a [cloudinit] section holding the data");
        }
        break;
    }

out:
    sec_close(&s);
    return p->failed ? -1 : 0;
}

static int reserve_block_devs(struct parser *p, size_t n)
{
    return (p->cfg->block_devs = xcalloc(p, n, sizeof(*p->cfg->block_devs))) ? 0 : -1;
}

static int add_block_dev(struct parser *p, const struct toml_keyval *kv, const char *kp, char *name)
{
    struct config_block_dev *bd = &p->cfg->block_devs[p->cfg->block_dev_count++];
    *bd = (struct config_block_dev){
        .name = name, .line = kv->line, .column = kv->column, .source = p->cfg->path};
    return parse_block_dev(p, kv, kp, bd);
}

static int parse_block_devs(struct parser *p, struct section *root)
{
    return parse_named_sections(p, root, "block_dev", reserve_block_devs, add_block_dev);
}

/* ---- [dev.NAME] ---- */

/* A Linux network interface name (dev_valid_name()). */
static int check_ifname(struct parser *p, const struct toml_value *v, const char *kp)
{
    if (check_str(p, v, kp, STR_NONEMPTY | STR_NO_NUL))
        return -1;
    const char *s = v->u.string.ptr;
    if (v->u.string.len > 15)
        return perr(p, v->line, v->column, kp,
                    "Linux interface names are at most 15 bytes, got %zu (\"%s\")", v->u.string.len,
                    s);
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strpbrk(s, "/: \t\n\r\v\f"))
        return perr(p, v->line, v->column, kp, "\"%s\" is not a valid interface name", s);
    return 0;
}

static int sec_queue_size(struct section *s, const char *key, unsigned def, unsigned *out)
{
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int64_t n = 0;
    *out = def;
    int r = sec_get(s, key, false, &v, kp);
    if (r <= 0)
        return r;
    if (check_int(s->p, v, kp, 0, INT64_MAX, &n))
        return -1;
    if (n < 2 || n > CONFIG_MAX_QUEUE_SIZE || (n & (n - 1)))
        return perr(s->p, v->line, v->column, kp,
                    "must be a power of two between 2 and %d, got %" PRId64, CONFIG_MAX_QUEUE_SIZE,
                    n);
    *out = (unsigned)n;
    return 1;
}

static int parse_port_mappings(struct parser *p, struct section *s, struct config_device *d)
{
    char kp[KP_MAX];
    const struct toml_value *v = NULL;
    int r = sec_typed(s, "port_mappings", false, TOML_ARRAY, &v, kp);
    if (r <= 0)
        return r;
    size_t count = v->u.array.count;
    if (!(d->vsock.port_mappings = xcalloc(p, count, sizeof(*d->vsock.port_mappings))))
        return -1;
    for (size_t i = 0; i < count; i++) {
        const struct toml_value *el = v->u.array.items[i];
        char ekp[KP_MAX], fkp[KP_MAX];
        kp_index(ekp, sizeof(ekp), kp, i);
        if (el->type != TOML_TABLE)
            return perr(p, el->line, el->column, ekp,
                        "expected a table { port = GUEST_PORT, addr = \"IP:PORT\" }, got %s",
                        toml_type_name(el->type));
        struct section m;
        if (sec_open(p, &m, el, ekp, el->line, el->column))
            return -1;
        struct config_port_mapping *pm = &d->vsock.port_mappings[i];
        int64_t port = 0;
        const struct toml_value *addr = NULL;
        if (sec_int(&m, "port", true, 0, UINT32_MAX, &port) == 1 &&
            sec_get(&m, "addr", true, &addr, fkp) == 1 &&
            check_sockaddr(p, addr, fkp, true, &pm->addr) == 0) {
            pm->port = (uint32_t)port;
            d->vsock.port_mapping_count = i + 1;
            for (size_t j = 0; j < i; j++) {
                if (d->vsock.port_mappings[j].port == pm->port) {
                    const struct toml_value *pv = sec_find(&m, "port")->value;
                    char pkp[KP_MAX];
                    kp_join(pkp, sizeof(pkp), ekp, "port", 4);
                    perr(p, pv->line, pv->column, pkp,
                         "guest port %" PRIu32 " is already mapped by %s[%zu]", pm->port, kp, j);
                    break;
                }
            }
        }
        sec_close(&m);
        if (p->failed)
            return -1;
    }
    return 1;
}

static int parse_pci_path(struct parser *p, struct section *s, struct config_device *d,
                          bool required)
{
    char kp[KP_MAX], why[256];
    const struct toml_value *v = NULL;
    int r = sec_get(s, "pci-path", required, &v, kp);
    if (r <= 0)
        return r;
    if (check_str(p, v, kp, STR_NO_NUL))
        return -1;
    if (config_parse_bdf(v->u.string.ptr, &d->pci, why, sizeof(why)))
        return perr(p, v->line, v->column, kp, "%s", why);
    d->has_pci = true;
    d->pci_pos.line = v->line;
    d->pci_pos.column = v->column;
    if (d->pci.bus == 0 && d->pci.dev <= 1)
        return perr(p, v->line, v->column, kp,
                    "%s is reserved for the chipset (host bridge 0.0.0, PIIX3 0.1.0, "
                    "PIIX4 PM 0.1.3); use a device number from 2 to 31",
                    v->u.string.ptr);
    const struct config *cfg = p->cfg;
    for (size_t i = 0; i < cfg->device_count; i++) {
        const struct config_device *o = &cfg->devices[i];
        if (o != d && o->has_pci && o->pci.bus == d->pci.bus && o->pci.dev == d->pci.dev &&
            o->pci.func == d->pci.func) {
            char okp[KP_MAX];
            kp_join(okp, sizeof(okp), "dev", o->name, strlen(o->name));
            return perr(p, v->line, v->column, kp, "%s is already used by %s (line %u)",
                        v->u.string.ptr, okp, o->pci_pos.line);
        }
    }
    return 1;
}

static int parse_device(struct parser *p, const struct toml_keyval *kv, const char *kp,
                        struct config_device *d)
{
    struct config *cfg = p->cfg;
    struct section s;
    if (sec_open(p, &s, kv->value, kp, kv->line, kv->column))
        return -1;
    char vkp[KP_MAX];
    const struct toml_value *v = NULL;
    int64_t n = 0;
    int driver, r;

    if (sec_enum(&s, "driver", true, driver_names, COUNT(driver_names), "driver", &driver, NULL) <
        0)
        goto out;
    d->driver = (enum config_driver)driver;

    /* qemu-pvpanic with enable_isa is an ISA device; every other device is PCI. */
    if (d->driver == CONFIG_DRIVER_QEMU_PVPANIC &&
        sec_bool(&s, "enable_isa", &d->pvpanic.enable_isa) < 0)
        goto out;
    bool isa_only = d->driver == CONFIG_DRIVER_QEMU_PVPANIC && d->pvpanic.enable_isa;
    if (parse_pci_path(p, &s, d, !isa_only) < 0)
        goto out;

    switch (d->driver) {
    case CONFIG_DRIVER_VIRTIO_BLOCK:
    case CONFIG_DRIVER_NVME: {
        if (sec_get(&s, "block_dev", true, &v, vkp) != 1 ||
            check_str(p, v, vkp, STR_NONEMPTY | STR_NO_NUL) ||
            !(d->blk.block_dev = memdup_str(p, v->u.string.ptr, v->u.string.len)))
            goto out;
        const struct config_block_dev *bd = config_find_block_dev(cfg, d->blk.block_dev);
        if (!bd) {
            char bkp[KP_MAX];
            kp_join(bkp, sizeof(bkp), "block_dev", v->u.string.ptr, v->u.string.len);
            perr(p, v->line, v->column, vkp, "no [%s] section", bkp);
            goto out;
        }
        d->blk.block_dev_index = (size_t)(bd - cfg->block_devs);
        break;
    }
    case CONFIG_DRIVER_VIRTIO_VIONA:
        if (sec_get(&s, "vnic", true, &v, vkp) != 1 || check_ifname(p, v, vkp) ||
            !(d->viona.vnic = memdup_str(p, v->u.string.ptr, v->u.string.len)))
            goto out;
        if (sec_queue_size(&s, "rx-queue-size", CONFIG_DEFAULT_RX_QUEUE_SIZE,
                           &d->viona.rx_queue_size) < 0 ||
            sec_queue_size(&s, "tx-queue-size", CONFIG_DEFAULT_TX_QUEUE_SIZE,
                           &d->viona.tx_queue_size) < 0)
            goto out;
        if ((r = sec_bool(&s, "tx_copy_data", &d->viona.tx_copy_data)) < 0)
            goto out;
        d->viona.has_tx_copy_data = r == 1;
        if ((r = sec_int(&s, "tx_header_pad", false, 0, UINT16_MAX, &n)) < 0)
            goto out;
        if (r == 1) {
            d->viona.has_tx_header_pad = true;
            d->viona.tx_header_pad = (uint16_t)n;
        }
        break;
    case CONFIG_DRIVER_VIRTIO_SOCKET:
        /* CIDs 0-2 are reserved, the upper 32 bits must be zero and
         * 0xffffffff is VMADDR_CID_ANY. */
        if (sec_int(&s, "guest_cid", true, 3, 0xfffffffe, &n) < 0)
            goto out;
        d->vsock.guest_cid = (uint64_t)n;
        parse_port_mappings(p, &s, d);
        break;
    case CONFIG_DRIVER_QEMU_PVPANIC:
        break;
    }

out:
    sec_close(&s);
    return p->failed ? -1 : 0;
}

/* Checks between devices once all are read. */
static int check_devices(struct parser *p)
{
    const struct config *cfg = p->cfg;
    const struct config_device *vsock = NULL, *pvpanic_isa = NULL;
    for (size_t i = 0; i < cfg->device_count; i++) {
        const struct config_device *d = &cfg->devices[i];
        char kp[KP_MAX], okp[KP_MAX];
        kp_join(kp, sizeof(kp), "dev", d->name, strlen(d->name));
        if (d->driver == CONFIG_DRIVER_VIRTIO_SOCKET) {
            if (vsock) {
                kp_join(okp, sizeof(okp), "dev", vsock->name, strlen(vsock->name));
                return perr(p, d->line, d->column, kp,
                            "only one pci-virtio-socket device is supported (%s is one)", okp);
            }
            vsock = d;
        }
        if (d->driver == CONFIG_DRIVER_QEMU_PVPANIC && d->pvpanic.enable_isa) {
            if (pvpanic_isa) {
                kp_join(okp, sizeof(okp), "dev", pvpanic_isa->name, strlen(pvpanic_isa->name));
                return perr(p, d->line, d->column, kp,
                            "only one qemu-pvpanic can have enable_isa (" PVPANIC_PORT_TEXT
                            " is already %s's)",
                            okp);
            }
            pvpanic_isa = d;
        }
        if (d->has_pci && d->pci.func != 0) {
            bool has_fn0 = false;
            for (size_t j = 0; j < cfg->device_count; j++) {
                const struct config_device *o = &cfg->devices[j];
                if (o->has_pci && o->pci.bus == d->pci.bus && o->pci.dev == d->pci.dev &&
                    o->pci.func == 0)
                    has_fn0 = true;
            }
            if (!has_fn0)
                pwarn(p, d->pci_pos.line, d->pci_pos.column,
                      "%s.pci-path: no device at function 0 of %u.%u; guests scan functions "
                      "1-7 only when function 0 exists",
                      kp, d->pci.bus, d->pci.dev);
        }
    }
    return 0;
}

static int reserve_devices(struct parser *p, size_t n)
{
    return (p->cfg->devices = xcalloc(p, n, sizeof(*p->cfg->devices))) ? 0 : -1;
}

static int add_device(struct parser *p, const struct toml_keyval *kv, const char *kp, char *name)
{
    if (p->cfg->device_count == CONFIG_MAX_DEVICES) {
        free(name);
        return perr(p, kv->line, kv->column, kp, "at most %d [dev.*] sections are supported",
                    CONFIG_MAX_DEVICES);
    }
    struct config_device *d = &p->cfg->devices[p->cfg->device_count++];
    *d = (struct config_device){.name = name, .line = kv->line, .column = kv->column};
    return parse_device(p, kv, kp, d);
}

static int parse_devices(struct parser *p, struct section *root)
{
    int r = parse_named_sections(p, root, "dev", reserve_devices, add_device);
    return r < 0 ? r : check_devices(p);
}

/* ---- references from [main] ---- */

static int resolve_main(struct parser *p)
{
    struct config *cfg = p->cfg;
    struct config_main *m = &cfg->main;
    if (m->cpuid_profile) {
        const struct toml_value *v = p->cpuid_profile_val;
        const struct config_cpuid_profile *prof = config_find_cpuid_profile(cfg, m->cpuid_profile);
        if (!prof) {
            char ckp[KP_MAX];
            kp_join(ckp, sizeof(ckp), "cpuid", m->cpuid_profile, strlen(m->cpuid_profile));
            return perr(p, v->line, v->column, "main.cpuid_profile", "no [%s] section", ckp);
        }
        m->cpuid_profile_index = (size_t)(prof - cfg->cpuid_profiles);
    }
    for (size_t i = 0; i < m->boot_order_count; i++) {
        const struct toml_value *v = p->boot_order_val->u.array.items[i];
        char kp[KP_MAX], dkp[KP_MAX];
        kp_index(kp, sizeof(kp), "main.boot_order", i);
        kp_join(dkp, sizeof(dkp), "dev", m->boot_order[i], strlen(m->boot_order[i]));
        if (i == CONFIG_MAX_BOOT_ORDER)
            return perr(p, v->line, v->column, kp, "at most %d boot devices can be listed",
                        CONFIG_MAX_BOOT_ORDER);
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->boot_order[j], m->boot_order[i]) == 0)
                return perr(p, v->line, v->column, kp,
                            "%s is already listed at main.boot_order[%zu]", dkp, j);
        const struct config_device *d = config_find_device(cfg, m->boot_order[i]);
        if (!d)
            return perr(p, v->line, v->column, kp, "no [%s] section", dkp);
        if (!d->has_pci)
            return perr(p, v->line, v->column, kp,
                        "%s has no pci-path, so the firmware cannot boot from it", dkp);
        m->boot_order_dev[i] = (size_t)(d - cfg->devices);
    }
    return 0;
}

static int parse_document(struct parser *p, const struct toml_value *doc)
{
    struct section root;
    if (sec_open(p, &root, doc, "", 0, 0))
        return -1;
    /* [cloudinit] before [block_dev] (a cloudinit disk needs it) and
     * [block_dev] before [dev] (devices name their back end). */
    if (parse_main(p, &root) == 0 && parse_cpuid(p, &root) == 0 && parse_cloudinit(p, &root) == 0 &&
        parse_block_devs(p, &root) == 0 && parse_devices(p, &root) == 0)
        resolve_main(p);
    sec_close(&root);
    return p->failed ? -1 : 0;
}

/* ---- entry points ---- */

int config_parse(const char *path_for_messages, const char *text, size_t len, struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    const char *path = path_for_messages ? path_for_messages : "<config>";
    struct parser p = {.cfg = cfg, .path = path};

    if (!(cfg->path = memdup_str(&p, path, strlen(path))) ||
        !(cfg->source_text = memdup_str(&p, text, len)))
        goto fail;
    cfg->source_len = len;

    struct toml_error terr = {0};
    struct toml_value *doc = toml_parse(text, len, &terr);
    if (!doc) {
        perr(&p, terr.line, terr.column, NULL, "%s", terr.message);
        goto fail;
    }
    if (doc->type != TOML_TABLE) {
        toml_free(doc);
        perr(&p, 0, 0, NULL, "the document is not a table");
        goto fail;
    }
    int rc = parse_document(&p, doc);
    toml_free(doc);
    if (rc == 0) {
        flush_warnings(&p, true);
        return 0;
    }

fail:
    flush_warnings(&p, false);
    char err[CONFIG_ERROR_MAX];
    memcpy(err, cfg->error, sizeof(err));
    config_free(cfg);
    memcpy(cfg->error, err, sizeof(err));
    return -1;
}

int config_load(const char *path, struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int err = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        err = errno;
    } else {
        for (;;) {
            if (len == cap) {
                if (cap >= CONFIG_FILE_MAX) {
                    err = EFBIG;
                    break;
                }
                cap = cap ? cap * 2 : 8192;
                char *nb = realloc(buf, cap);
                if (!nb) {
                    err = ENOMEM;
                    break;
                }
                buf = nb;
            }
            size_t got = fread(buf + len, 1, cap - len, f);
            len += got;
            if (got == 0) {
                if (ferror(f))
                    err = errno ? errno : EIO;
                break;
            }
        }
        fclose(f);
    }
    if (err) {
        free(buf);
        int r = snprintf(cfg->error, sizeof(cfg->error), "%s: cannot read the config file: %s",
                         path, err == EFBIG ? "file is too large" : strerror(err));
        (void)r;
        fprintf(stderr, "%s\n", cfg->error);
        return -1;
    }
    int rc = config_parse(path, buf ? buf : "", len, cfg);
    free(buf);
    if (rc)
        fprintf(stderr, "%s\n", cfg->error);
    return rc;
}

static void free_block_dev(struct config_block_dev *bd)
{
    free(bd->name);
    switch (bd->type) {
    case CONFIG_BLOCK_FILE:
        free(bd->file.path);
        break;
    case CONFIG_BLOCK_CRUCIBLE:
        free(bd->crucible.encryption_key_b64);
        free(bd->crucible.cert_pem);
        free(bd->crucible.key_pem);
        free(bd->crucible.root_cert_pem);
        break;
    default:
        break;
    }
}

static void free_device(struct config_device *d)
{
    free(d->name);
    switch (d->driver) {
    case CONFIG_DRIVER_VIRTIO_BLOCK:
    case CONFIG_DRIVER_NVME:
        free(d->blk.block_dev);
        break;
    case CONFIG_DRIVER_VIRTIO_VIONA:
        free(d->viona.vnic);
        break;
    case CONFIG_DRIVER_VIRTIO_SOCKET:
        free(d->vsock.port_mappings);
        break;
    default:
        break;
    }
}

static void free_cloudinit_item(struct config_cloudinit_item *item)
{
    free(item->data);
    free(item->path);
}

void config_free(struct config *cfg)
{
    struct config_main *m = &cfg->main;
    free(m->name);
    free(m->bootrom);
    free(m->bootrom_version);
    free(m->cpuid_profile);
    if (m->boot_order)
        for (size_t i = 0; i < m->boot_order_count; i++)
            free(m->boot_order[i]);
    free(m->boot_order);
    free(m->boot_order_dev);
    for (size_t i = 0; i < cfg->block_dev_count; i++)
        free_block_dev(&cfg->block_devs[i]);
    free(cfg->block_devs);
    for (size_t i = 0; i < cfg->device_count; i++)
        free_device(&cfg->devices[i]);
    free(cfg->devices);
    for (size_t i = 0; i < cfg->cpuid_profile_count; i++) {
        free(cfg->cpuid_profiles[i].name);
        free(cfg->cpuid_profiles[i].leaves);
    }
    free(cfg->cpuid_profiles);
    free_cloudinit_item(&cfg->cloudinit.user_data);
    free_cloudinit_item(&cfg->cloudinit.meta_data);
    free_cloudinit_item(&cfg->cloudinit.network_config);
    for (size_t i = 0; i < cfg->warning_count; i++)
        free(cfg->warnings[i]);
    free(cfg->warnings);
    free(cfg->path);
    free(cfg->source_text);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- lookups ---- */

const struct config_block_dev *config_find_block_dev(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->block_dev_count; i++)
        if (strcmp(cfg->block_devs[i].name, name) == 0)
            return &cfg->block_devs[i];
    return NULL;
}

const struct config_device *config_find_device(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->device_count; i++)
        if (strcmp(cfg->devices[i].name, name) == 0)
            return &cfg->devices[i];
    return NULL;
}

const struct config_cpuid_profile *config_find_cpuid_profile(const struct config *cfg,
                                                             const char *name)
{
    for (size_t i = 0; i < cfg->cpuid_profile_count; i++)
        if (strcmp(cfg->cpuid_profiles[i].name, name) == 0)
            return &cfg->cpuid_profiles[i];
    return NULL;
}

const struct config_cpuid_profile *config_cpuid_profile(const struct config *cfg)
{
    if (!cfg->main.cpuid_profile || cfg->main.cpuid_profile_index >= cfg->cpuid_profile_count)
        return NULL;
    return &cfg->cpuid_profiles[cfg->main.cpuid_profile_index];
}

const struct config_cpuid_leaf *config_cpuid_find(const struct config_cpuid_profile *profile,
                                                  uint32_t eax, uint32_t ecx)
{
    const struct config_cpuid_leaf *plain = NULL;
    for (size_t i = 0; i < profile->leaf_count; i++) {
        const struct config_cpuid_leaf *l = &profile->leaves[i];
        if (l->func != eax)
            continue;
        if (l->has_index && l->index == ecx)
            return l;
        if (!l->has_index)
            plain = l;
    }
    return plain;
}

uint32_t config_block_size(const struct config_block_dev *bd)
{
    return bd->has_block_size ? bd->block_size : CONFIG_DEFAULT_BLOCK_SIZE;
}
