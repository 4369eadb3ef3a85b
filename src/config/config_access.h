/* Typed access to a parsed TOML table, for the section parsers of the config
 * layer (internal to src/config/).
 *
 * A struct parser collects the outcome of reading one config file: the first
 * error, formatted "PATH:LINE:COL: KEY.PATH: problem" into cfg->error (later
 * errors are dropped, so a parser may simply stop at any -1), and the
 * unknown-key warnings, handed to cfg in file order by flush_warnings().
 *
 * A struct section is one TOML table being read: sec_* look its keys up with
 * their types and ranges and mark them used; sec_close() warns about every key
 * never looked up. Key paths (kp) name keys in messages as TOML writes them:
 * "block_dev.disk0.path", "dev.\"my dev\".pci-path", "main.boot_order[2]".
 *
 * Unless said otherwise, a function returns 0 (or 1: the optional key is
 * present) on success and -1 after recording an error; sec_* return 0 when an
 * optional key is absent and leave *out untouched then.
 */
#ifndef CONFIG_CONFIG_ACCESS_H
#define CONFIG_CONFIG_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"
#include "config/config.h"
#include "config/toml.h"

#define KP_MAX 320 /* bytes of a key path in messages */

struct pending_warning;

struct parser {
    struct config *cfg; /* receives the error, and the warnings on success */
    const char *path;   /* the file name in messages */
    bool failed;
    struct pending_warning *warnings;
    size_t warning_count;
};

struct section {
    struct parser *p;
    const struct toml_value *tbl;
    const char *kp; /* key path of the table ("" for the root) */
    unsigned line, column;
    bool *used; /* per key of tbl: looked up */
};

/* ---- messages ---- */

/* Records the error at line:col (0 = no position) for key path kp (NULL =
 * none) unless one is recorded already; returns -1. */
int perr(struct parser *p, unsigned line, unsigned col, const char *kp, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Queues a warning "PATH:LINE:COL: message". */
void pwarn(struct parser *p, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* keep: logs the warnings in file order and moves them to p->cfg; otherwise
 * (the file failed to load) drops them. */
void flush_warnings(struct parser *p, bool keep);

/* "prefix.key" (just "key" when prefix is NULL or ""), quoting key as TOML
 * does when it is not a bare key. */
void kp_join(char *out, size_t n, const char *prefix, const char *key, size_t key_len);
/* kp_join of a NUL-terminated key. */
void kp_key(char *out, size_t n, const char *prefix, const char *key);
/* "prefix[index]". */
void kp_index(char *out, size_t n, const char *prefix, size_t index);

/* ---- memory (failures are recorded as "out of memory") ---- */

char *memdup_str(struct parser *p, const char *s, size_t len);
/* A copy of a string value (which may hold NULs). */
char *value_strdup(struct parser *p, const struct toml_value *v);
void *xcalloc(struct parser *p, size_t n, size_t size);

/* ---- values ---- */

/* "expected a string, got integer" at line:col or at the value. */
int expect_type_at(struct parser *p, const struct toml_value *v, const char *kp,
                   enum toml_type type, unsigned line, unsigned col);
int expect_type(struct parser *p, const struct toml_value *v, const char *kp, enum toml_type type);
/* An integer in min..=max. */
int check_int(struct parser *p, const struct toml_value *v, const char *kp, int64_t min,
              int64_t max, int64_t *out);

enum str_flags {
    STR_NONEMPTY = 1,
    STR_NO_NUL = 2,
};

/* A string, with the rules of flags (enum str_flags). */
int check_str(struct parser *p, const struct toml_value *v, const char *kp, unsigned flags);

/* ---- sections ---- */

int sec_open(struct parser *p, struct section *s, const struct toml_value *tbl, const char *kp,
             unsigned line, unsigned col);
/* Warns about the keys never looked up (unless an error is recorded). */
void sec_close(struct section *s);
/* The key, marked used; NULL if absent. */
const struct toml_keyval *sec_find(struct section *s, const char *key);
/* Where the value of key was written ({0, 0} if absent), for later reports. */
struct config_pos sec_pos(struct section *s, const char *key);
/* Looks key up and fills kp[KP_MAX] with its key path. A missing required key
 * is an error at the section header (naming a likely misspelling). */
int sec_get(struct section *s, const char *key, bool required, const struct toml_value **out,
            char *kp);
/* sec_get of a value of the given type. */
int sec_typed(struct section *s, const char *key, bool required, enum toml_type type,
              const struct toml_value **out, char *kp);
int sec_int(struct section *s, const char *key, bool required, int64_t min, int64_t max,
            int64_t *out);
/* An optional power of two in min..=max (min >= 1). */
int sec_pow2(struct section *s, const char *key, int64_t min, int64_t max, int64_t *out);
int sec_bool(struct section *s, const char *key, bool *out);
/* A copied string (check_str rules); pos, if not NULL, receives where it was written. */
int sec_str(struct section *s, const char *key, bool required, unsigned flags, char **out,
            struct config_pos *pos);
/* A string that must be one of names[count]; *out is its index. what names
 * the kind of value in messages; val, if not NULL, receives the value. */
int sec_enum(struct section *s, const char *key, bool required, const char *const *names,
             size_t count, const char *what, int *out, const struct toml_value **val);
/* A key whose value must be a table, e.g. [main] in the root. */
int sec_table(struct section *s, const char *key, const struct toml_keyval **out);

/* Parses each [TABLE.NAME] section of root in file order: reserve() makes
 * room for all of them, then add() takes each one, with its key path and its
 * copied NAME, and parses it. add() counts the item first, so that
 * config_free() finds the name even when parsing fails. Returns 0, or -1
 * after an error. */
int parse_named_sections(struct parser *p, struct section *root, const char *table,
                         int (*reserve)(struct parser *p, size_t n),
                         int (*add)(struct parser *p, const struct toml_keyval *kv, const char *kp,
                                    char *name));

#endif
