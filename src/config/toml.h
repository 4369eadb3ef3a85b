/* TOML 1.0 parser producing an immutable document tree. */
#ifndef CONFIG_TOML_H
#define CONFIG_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum toml_type {
    TOML_TABLE,
    TOML_ARRAY,
    TOML_STRING,
    TOML_INTEGER,
    TOML_FLOAT,
    TOML_BOOL,
    TOML_DATETIME,       /* offset date-time */
    TOML_DATETIME_LOCAL, /* local date-time */
    TOML_DATE_LOCAL,
    TOML_TIME_LOCAL,
};

struct toml_datetime {
    int year, month, day;     /* valid unless type is TOML_TIME_LOCAL */
    int hour, minute, second; /* valid unless type is TOML_DATE_LOCAL */
    uint32_t nanosecond;      /* fractional seconds, truncated to ns */
    unsigned frac_digits;     /* digits of fraction as written (0 = none) */
    int offset_minutes;       /* TOML_DATETIME only; 0 for Z */
    bool offset_z;            /* written as Z/z rather than +00:00 */
};

/* Arrays and tables nest at most this deep (counting dotted keys and headers); deeper
 * documents are rejected so that every recursive walk of the tree stays bounded. */
#define TOML_MAX_DEPTH 128

struct toml_keyval;

struct toml_value {
    enum toml_type type;
    unsigned line, column; /* 1-based position where the value starts */
    union {
        struct {
            struct toml_keyval *items; /* in order of first definition */
            size_t count;
        } table;
        struct {
            struct toml_value **items;
            size_t count;
        } array;
        struct {
            char *ptr; /* UTF-8, NUL-terminated; may contain embedded NULs */
            size_t len;
        } string;
        int64_t integer;
        double floating;
        bool boolean;
        struct toml_datetime datetime;
    } u;
};

struct toml_keyval {
    char *key; /* UTF-8, NUL-terminated */
    size_t key_len;
    unsigned line, column; /* position of the key where it was (first) defined */
    struct toml_value *value;
};

struct toml_error {
    unsigned line, column;
    char message[256];
};

/* Parses a whole document. Returns the root table, or NULL with *err filled. */
struct toml_value *toml_parse(const char *text, size_t len, struct toml_error *err);
void toml_free(struct toml_value *value);

/* Lookup in a table by exact key; NULL if absent or not a table. */
const struct toml_keyval *toml_table_find(const struct toml_value *table, const char *key);
const struct toml_value *toml_table_get(const struct toml_value *table, const char *key);

/* Element `index` of an array; NULL if out of range or not an array. */
const struct toml_value *toml_array_get(const struct toml_value *array, size_t index);

/* "table", "array", "string", "integer", "float", "bool", "datetime",
 * "datetime-local", "date-local", "time-local" (the toml-test names). */
const char *toml_type_name(enum toml_type type);
/* "a table", "an array", "a string", "an integer", "a float", "a boolean",
 * "an offset date-time", ... for messages. */
const char *toml_type_phrase(enum toml_type type);

/* Writes a key as it could be written in TOML: bare if possible, else quoted
 * with escapes ("my key", "a\u0000b"). Truncates to fit out[capacity] and
 * NUL-terminates (if capacity > 0); returns the length written. */
size_t toml_write_key(char *out, size_t capacity, const char *key, size_t len);

/* Formats a date/time value as RFC 3339 text (as toml-test expects). */
void toml_format_datetime(const struct toml_value *value, char *buf, size_t len);

#endif
