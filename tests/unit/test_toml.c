/* Unit tests for the TOML parser: value types, positions, redefinition rules, errors. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/toml.h"

static struct toml_value *parse_ok(const char *text)
{
    struct toml_error err;
    struct toml_value *root = toml_parse(text, strlen(text), &err);
    if (!root)
        fail_msg("unexpected parse error %u:%u: %s\n--- input:\n%s", err.line, err.column,
                 err.message, text);
    assert_int_equal(root->type, TOML_TABLE);
    return root;
}

/* Parses `len` bytes that must fail at line:column with a message containing `needle`. */
static void expect_error_n(const char *text, size_t len, unsigned line, unsigned column,
                           const char *needle)
{
    struct toml_error err;
    struct toml_value *root = toml_parse(text, len, &err);
    if (root) {
        toml_free(root);
        fail_msg("expected an error for:\n%s", text);
    }
    if (err.line != line || err.column != column || !strstr(err.message, needle))
        fail_msg("for input:\n%s\nexpected %u:%u containing \"%s\", got %u:%u: %s", text, line,
                 column, needle, err.line, err.column, err.message);
}

static void expect_error(const char *text, unsigned line, unsigned column, const char *needle)
{
    expect_error_n(text, strlen(text), line, column, needle);
}

/* Follows a dotted path of plain keys ("a.b.c"). */
static const struct toml_value *get_path(const struct toml_value *table, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    const struct toml_value *value = table;
    for (char *save, *part = strtok_r(buf, ".", &save); part; part = strtok_r(NULL, ".", &save))
        value = toml_table_get(value, part);
    return value;
}

static const struct toml_value *get_typed(const struct toml_value *table, const char *path,
                                          enum toml_type type)
{
    const struct toml_value *value = get_path(table, path);
    if (!value)
        fail_msg("missing %s", path);
    if (value->type != type)
        fail_msg("%s is %s, expected %s", path, toml_type_name(value->type), toml_type_name(type));
    return value;
}

static void assert_datetime_text(const struct toml_value *root, const char *path,
                                 enum toml_type type, const char *expected)
{
    char buf[64];
    toml_format_datetime(get_typed(root, path, type), buf, sizeof(buf));
    assert_string_equal(buf, expected);
}

static void test_strings(void **state)
{
    struct toml_value *root = parse_ok("basic = \"a\\tb\\n\\\"q\\\" \\\\ \\u00E9 \\U0001F600\"\n"
                                       "literal = 'C:\\path\\'\n"
                                       "nul = \"x\\u0000y\"\n"
                                       "ml = \"\"\"\nline1\nline2 \\\n    joined\"\"\"\n"
                                       "mlq = \"\"\"two quotes \"\" and end\"\"\"\"\"\n"
                                       "lit_ml = '''\n  raw \\n '' '''\n"
                                       "crlf = \"\"\"a\r\nb\"\"\"\r\n"
                                       "empty = \"\"\n");
    assert_string_equal(get_typed(root, "basic", TOML_STRING)->u.string.ptr,
                        "a\tb\n\"q\" \\ \xC3\xA9 \xF0\x9F\x98\x80");
    assert_string_equal(get_typed(root, "literal", TOML_STRING)->u.string.ptr, "C:\\path\\");
    const struct toml_value *nul = get_typed(root, "nul", TOML_STRING);
    assert_int_equal(nul->u.string.len, 3);
    assert_memory_equal(nul->u.string.ptr, "x\0y", 4);
    assert_string_equal(get_typed(root, "ml", TOML_STRING)->u.string.ptr, "line1\nline2 joined");
    assert_string_equal(get_typed(root, "mlq", TOML_STRING)->u.string.ptr,
                        "two quotes \"\" and end\"\"");
    assert_string_equal(get_typed(root, "lit_ml", TOML_STRING)->u.string.ptr, "  raw \\n '' ");
    assert_string_equal(get_typed(root, "crlf", TOML_STRING)->u.string.ptr, "a\nb");
    assert_int_equal(get_typed(root, "empty", TOML_STRING)->u.string.len, 0);
    toml_free(root);

    expect_error("s = \"abc\n", 1, 9, "unterminated string");
    expect_error("s = 'abc", 1, 9, "unterminated string");
    expect_error("s = \"\"\"abc\n", 1, 5, "unterminated multi-line string");
    expect_error("s = \"\\q\"", 1, 6, "invalid escape");
    expect_error("s = \"\\x41\"", 1, 6, "invalid escape");
    expect_error("s = \"\\uD800\"", 1, 6, "not a Unicode scalar value");
    expect_error("s = \"\\U00110000\"", 1, 6, "not a Unicode scalar value");
    expect_error("s = \"\\u12\"", 1, 10, "hexadecimal digits");
    expect_error("s = \"\"\"a \\ b\"\"\"", 1, 10, "line-ending backslash");
    expect_error("s = \"\"\"a\"\"\"\"\"\"", 1, 14, "too many quotes");
    expect_error("s = \"tab\tok\x01\"", 1, 12, "control character U+0001");
    expect_error("s = \"x\x7f\"", 1, 7, "control character U+007F");
    expect_error("\"\"\"key\"\"\" = 1", 1, 1, "multi-line");
}

static void test_integers(void **state)
{
    struct toml_value *root = parse_ok("a = 42\nb = -17\nc = +99\nd = 1_000_000\n"
                                       "e = 0xDEAD_beef\nf = 0o755\ng = 0b1101\nh = 0\ni = -0\n"
                                       "max = 9223372036854775807\nmin = -9223372036854775808\n"
                                       "hexmax = 0x7fffffffffffffff\n");
    assert_int_equal(get_typed(root, "a", TOML_INTEGER)->u.integer, 42);
    assert_int_equal(get_typed(root, "b", TOML_INTEGER)->u.integer, -17);
    assert_int_equal(get_typed(root, "c", TOML_INTEGER)->u.integer, 99);
    assert_int_equal(get_typed(root, "d", TOML_INTEGER)->u.integer, 1000000);
    assert_int_equal(get_typed(root, "e", TOML_INTEGER)->u.integer, 0xDEADBEEF);
    assert_int_equal(get_typed(root, "f", TOML_INTEGER)->u.integer, 0755);
    assert_int_equal(get_typed(root, "g", TOML_INTEGER)->u.integer, 13);
    assert_int_equal(get_typed(root, "h", TOML_INTEGER)->u.integer, 0);
    assert_int_equal(get_typed(root, "i", TOML_INTEGER)->u.integer, 0);
    assert_true(get_typed(root, "max", TOML_INTEGER)->u.integer == INT64_MAX);
    assert_true(get_typed(root, "min", TOML_INTEGER)->u.integer == INT64_MIN);
    assert_true(get_typed(root, "hexmax", TOML_INTEGER)->u.integer == INT64_MAX);
    toml_free(root);

    expect_error("n = 9223372036854775808", 1, 5, "out of range");
    expect_error("n = -9223372036854775809", 1, 5, "out of range");
    expect_error("n = 0x8000000000000000", 1, 5, "out of range");
    expect_error("n = 012", 1, 5, "leading zeros");
    expect_error("n = -0_1", 1, 6, "leading zeros");
    expect_error("n = 1__0", 1, 6, "underscore");
    expect_error("n = 10_", 1, 7, "underscore");
    expect_error("n = _10", 1, 5, "expected a value");
    expect_error("n = 0x_1f", 1, 7, "underscore");
    expect_error("n = +0x1f", 1, 5, "cannot have a sign");
    expect_error("n = 0X1f", 1, 6, "unexpected 'X'");
    expect_error("n = 0b102", 1, 9, "unexpected '2'");
    expect_error("n = 0o", 1, 7, "expected an octal digit");
    expect_error("n = 1 2", 1, 7, "expected a newline");
    expect_error("n = ++1", 1, 6, "expected a decimal digit");
}

static void test_floats(void **state)
{
    struct toml_value *root = parse_ok("a = 3.14\nb = -0.01\nc = 5e+22\nd = 1E06\ne = -2E-2\n"
                                       "f = 6.626e-34\ng = 224_617.445_991\nh = inf\ni = +inf\n"
                                       "j = -inf\nk = nan\nl = -nan\nm = -0.0\nn = 1e-400\n");
    assert_true(get_typed(root, "a", TOML_FLOAT)->u.floating == 3.14);
    assert_true(get_typed(root, "b", TOML_FLOAT)->u.floating == -0.01);
    assert_true(get_typed(root, "c", TOML_FLOAT)->u.floating == 5e22);
    assert_true(get_typed(root, "d", TOML_FLOAT)->u.floating == 1e6);
    assert_true(get_typed(root, "e", TOML_FLOAT)->u.floating == -2e-2);
    assert_true(get_typed(root, "f", TOML_FLOAT)->u.floating == 6.626e-34);
    assert_true(get_typed(root, "g", TOML_FLOAT)->u.floating == 224617.445991);
    assert_true(isinf(get_typed(root, "h", TOML_FLOAT)->u.floating));
    assert_true(get_typed(root, "i", TOML_FLOAT)->u.floating > 0);
    assert_true(get_typed(root, "j", TOML_FLOAT)->u.floating < 0);
    assert_true(isnan(get_typed(root, "k", TOML_FLOAT)->u.floating));
    assert_true(isnan(get_typed(root, "l", TOML_FLOAT)->u.floating));
    assert_true(signbit(get_typed(root, "m", TOML_FLOAT)->u.floating));
    assert_true(get_typed(root, "n", TOML_FLOAT)->u.floating == 0.0);
    toml_free(root);

    expect_error("f = 1e1000", 1, 5, "out of range");
    expect_error("f = .5", 1, 5, "expected a value");
    expect_error("f = 5.", 1, 7, "expected a decimal digit");
    expect_error("f = 1.e5", 1, 7, "expected a decimal digit");
    expect_error("f = 1._5", 1, 7, "underscore");
    expect_error("f = 1_.5", 1, 6, "underscore");
    expect_error("f = 1e_5", 1, 7, "underscore");
    expect_error("f = 1.5e", 1, 9, "expected a decimal digit");
    expect_error("f = 1.2.3", 1, 8, "unexpected '.'");
    expect_error("f = 03.14", 1, 5, "leading zeros");
    expect_error("f = Inf", 1, 5, "expected a value");
    expect_error("f = infinity", 1, 8, "unexpected 'i'");
    expect_error("f = in", 1, 5, "expected a value");
    expect_error("f = nan_", 1, 8, "unexpected '_'");
}

static void test_booleans(void **state)
{
    struct toml_value *root = parse_ok("t = true\nf = false # comment\n");
    assert_true(get_typed(root, "t", TOML_BOOL)->u.boolean);
    assert_false(get_typed(root, "f", TOML_BOOL)->u.boolean);
    toml_free(root);
    expect_error("b = True", 1, 5, "strings must be quoted");
    expect_error("b = truely", 1, 9, "unexpected 'l'");
    expect_error("b = fals", 1, 5, "expected a value");
}

static void test_datetimes(void **state)
{
    struct toml_value *root = parse_ok("odt1 = 1979-05-27T07:32:00Z\n"
                                       "odt2 = 1979-05-27T00:32:00-07:00\n"
                                       "odt3 = 1979-05-27 00:32:00.999999+05:30\n"
                                       "odt4 = 1979-05-27t07:32:00z\n"
                                       "odt5 = 2000-01-01T00:00:00+00:00\n"
                                       "ldt = 1979-05-27T07:32:00.5\n"
                                       "ld = 1979-05-27\n"
                                       "lt = 00:32:00.123456789999\n"
                                       "leap = 2000-02-29\n"
                                       "edge = 0000-01-01T00:00:00\n");
    const struct toml_value *odt2 = get_typed(root, "odt2", TOML_DATETIME);
    assert_int_equal(odt2->u.datetime.year, 1979);
    assert_int_equal(odt2->u.datetime.month, 5);
    assert_int_equal(odt2->u.datetime.day, 27);
    assert_int_equal(odt2->u.datetime.hour, 0);
    assert_int_equal(odt2->u.datetime.minute, 32);
    assert_int_equal(odt2->u.datetime.offset_minutes, -7 * 60);
    assert_false(odt2->u.datetime.offset_z);
    const struct toml_value *lt = get_typed(root, "lt", TOML_TIME_LOCAL);
    assert_int_equal(lt->u.datetime.nanosecond, 123456789);
    assert_int_equal(lt->u.datetime.frac_digits, 12);
    assert_true(get_typed(root, "odt1", TOML_DATETIME)->u.datetime.offset_z);

    assert_datetime_text(root, "odt1", TOML_DATETIME, "1979-05-27T07:32:00Z");
    assert_datetime_text(root, "odt2", TOML_DATETIME, "1979-05-27T00:32:00-07:00");
    assert_datetime_text(root, "odt3", TOML_DATETIME, "1979-05-27T00:32:00.999999+05:30");
    assert_datetime_text(root, "odt4", TOML_DATETIME, "1979-05-27T07:32:00Z");
    assert_datetime_text(root, "odt5", TOML_DATETIME, "2000-01-01T00:00:00+00:00");
    assert_datetime_text(root, "ldt", TOML_DATETIME_LOCAL, "1979-05-27T07:32:00.5");
    assert_datetime_text(root, "ld", TOML_DATE_LOCAL, "1979-05-27");
    assert_datetime_text(root, "lt", TOML_TIME_LOCAL, "00:32:00.123456789");
    assert_datetime_text(root, "leap", TOML_DATE_LOCAL, "2000-02-29");
    assert_datetime_text(root, "edge", TOML_DATETIME_LOCAL, "0000-01-01T00:00:00");
    toml_free(root);

    expect_error("d = 2023-02-29", 1, 13, "has no day 29");
    expect_error("d = 1900-02-29", 1, 13, "has no day 29");
    expect_error("d = 2024-02-30", 1, 13, "has no day 30");
    expect_error("d = 2024-04-31", 1, 13, "has no day 31");
    expect_error("d = 2024-13-01", 1, 10, "month 13");
    expect_error("d = 2024-00-01", 1, 10, "month 00");
    expect_error("d = 2024-01-00", 1, 13, "has no day 00");
    expect_error("d = 2024-01-01T24:00:00", 1, 16, "hour 24");
    expect_error("d = 2024-01-01T23:60:00", 1, 19, "minute 60");
    expect_error("d = 2024-01-01T23:59:60", 1, 22, "second 60");
    expect_error("d = 2024-01-01T23:59", 1, 21, "requires seconds");
    expect_error("d = 2024-01-01T", 1, 16, "two-digit hour");
    expect_error("d = 2024-1-01", 1, 10, "two-digit month");
    expect_error("d = 2024-01-01T10:00:00.", 1, 25, "digit after the decimal point");
    expect_error("d = 2024-01-01T10:00:00+5:00", 1, 25, "two-digit offset hour");
    expect_error("d = 2024-01-01T10:00:00+05:60", 1, 28, "minute 60");
    expect_error("t = 10:00:00+05:00", 1, 13, "after a local time");
    expect_error("t = 1:00:00", 1, 6, "unexpected ':'");
}

static void test_arrays_and_inline_tables(void **state)
{
    struct toml_value *root = parse_ok("a = [ 1, 'two', [3.0], { x = 4 }, ]\n"
                                       "b = [\n  1, # one\n  2,\n]\n"
                                       "c = []\n"
                                       "d = { x = 1, y.z = 'dotted', w = { v = [] } }\n"
                                       "e = {}\n");
    const struct toml_value *a = get_typed(root, "a", TOML_ARRAY);
    assert_int_equal(a->u.array.count, 4);
    assert_int_equal(toml_array_get(a, 0)->type, TOML_INTEGER);
    assert_string_equal(toml_array_get(a, 1)->u.string.ptr, "two");
    assert_int_equal(toml_array_get(a, 2)->type, TOML_ARRAY);
    assert_int_equal(toml_table_get(toml_array_get(a, 3), "x")->u.integer, 4);
    assert_null(toml_array_get(a, 4));
    assert_int_equal(get_typed(root, "b", TOML_ARRAY)->u.array.count, 2);
    assert_int_equal(get_typed(root, "c", TOML_ARRAY)->u.array.count, 0);
    assert_string_equal(get_typed(root, "d.y.z", TOML_STRING)->u.string.ptr, "dotted");
    assert_int_equal(get_typed(root, "d.w.v", TOML_ARRAY)->u.array.count, 0);
    assert_int_equal(get_typed(root, "e", TOML_TABLE)->u.table.count, 0);
    toml_free(root);

    expect_error("a = [1 2]", 1, 8, "expected ',' or ']'");
    expect_error("a = [1,,2]", 1, 8, "expected a value");
    expect_error("a = [1, 2", 1, 10, "unterminated array");
    expect_error("t = {a = 1,}", 1, 12, "trailing comma");
    expect_error("t = {a = 1\n}", 1, 11, "same line");
    expect_error("t = {\na = 1}", 1, 6, "expected a key");
    expect_error("t = {a = 1 b = 2}", 1, 12, "expected ',' or '}'");
    expect_error("t = {a = 1, a = 2}", 1, 13, "duplicate key 'a'");
}

static void test_keys(void **state)
{
    struct toml_value *root = parse_ok("bare_key-1 = 1\n\"quoted key\" = 2\n'literal.key' = 3\n"
                                       "a . b .\t\"c\" = 4\n\"\" = 5\n1234 = 6\n3.14 = 7\n"
                                       "\"\\u00e9\" = 8\ntrue = 9\n");
    assert_non_null(toml_table_get(root, "bare_key-1"));
    assert_non_null(toml_table_get(root, "quoted key"));
    assert_non_null(toml_table_get(root, "literal.key"));
    assert_int_equal(get_typed(root, "a.b.c", TOML_INTEGER)->u.integer, 4);
    assert_int_equal(toml_table_get(root, "")->u.integer, 5);
    assert_int_equal(toml_table_get(root, "1234")->u.integer, 6);
    assert_int_equal(toml_table_get(toml_table_get(root, "3"), "14")->u.integer, 7);
    assert_int_equal(toml_table_get(root, "\xC3\xA9")->u.integer, 8);
    assert_int_equal(toml_table_get(root, "true")->u.integer, 9);
    toml_free(root);

    expect_error("= 1", 1, 1, "expected a key");
    expect_error("a b = 1", 1, 3, "expected '='");
    expect_error("a. = 1", 1, 4, "expected a key");
    expect_error(".a = 1", 1, 1, "expected a key");
    expect_error("a = 1 = 2", 1, 7, "expected a newline");
    expect_error("a\n= 1", 1, 2, "expected '='");
    expect_error("\xC3\xA9 = 1", 1, 1, "expected a key");
}

static void test_tables(void **state)
{
    struct toml_value *root = parse_ok("top = 0\n"
                                       "[a.b.c]\nx = 1\n"
                                       "[a]\ny = 2\n"
                                       "[ a . \"q\" ]\nz = 3\n"
                                       "[[arr]]\nn = 1\n[arr.sub]\ns = 1\n"
                                       "[[arr]]\nn = 2\n[[arr.list]]\nm = 1\n"
                                       "[fruit]\napple.color = 'red'\n[fruit.apple.texture]\n"
                                       "smooth = true\n");
    assert_int_equal(get_typed(root, "a.b.c.x", TOML_INTEGER)->u.integer, 1);
    assert_int_equal(get_typed(root, "a.y", TOML_INTEGER)->u.integer, 2);
    assert_int_equal(get_typed(root, "a.q.z", TOML_INTEGER)->u.integer, 3);
    const struct toml_value *arr = get_typed(root, "arr", TOML_ARRAY);
    assert_int_equal(arr->u.array.count, 2);
    assert_int_equal(toml_table_get(toml_table_get(toml_array_get(arr, 0), "sub"), "s")->u.integer,
                     1);
    assert_int_equal(toml_table_get(toml_array_get(arr, 1), "list")->u.array.count, 1);
    assert_true(get_typed(root, "fruit.apple.texture.smooth", TOML_BOOL)->u.boolean);
    /* Keys keep the order of first definition. */
    assert_string_equal(root->u.table.items[0].key, "top");
    assert_string_equal(root->u.table.items[1].key, "a");
    toml_free(root);

    expect_error("[]", 1, 2, "expected a key");
    expect_error("[a", 1, 3, "expected ']'");
    expect_error("[a]x = 1", 1, 4, "expected a newline");
    expect_error("[[a] ]", 1, 5, "expected ']]'");
    expect_error("[ [a]]", 1, 3, "expected a key");
}

struct redefinition_case {
    const char *text;
    unsigned line, column;
    const char *message;
};

static void test_redefinitions(void **state)
{
    static const struct redefinition_case cases[] = {
        {"a = 1\na = 2", 2, 1, "duplicate key 'a' (first defined at 1:1)"},
        {"a = 1\n\"a\" = 2", 2, 1, "duplicate key 'a'"},
        {"a.b = 1\na.b = 2", 2, 3, "duplicate key 'a.b'"},
        {"[t]\nx = 1\nx = 2", 3, 1, "duplicate key 't.x'"},
        {"[a]\n[a]", 2, 2, "table [a] is already defined by a header at 1:2"},
        {"[a.b]\n[a]\n[a]", 3, 2, "table [a] is already defined"},
        {"[a]\nb = 1\n[a.b]", 3, 4, "duplicate key 'a.b'"},
        {"a = 1\n[a.b]", 2, 2, "cannot use 'a' as a table: it is already an integer"},
        /* Tables created by dotted keys cannot be redefined by headers... */
        {"[fruit]\napple.color = 1\n[fruit.apple]", 3, 8, "already defined by dotted keys"},
        {"[t1]\nt2.t3.v = 0\n[t1.t2.t3]", 3, 8, "already defined by dotted keys"},
        {"a.b = 1\n[a]", 2, 2, "already defined by dotted keys"},
        /* ...and dotted keys cannot reach into tables defined by headers. */
        {"[a.b.c]\nz = 9\n[a]\nb.c.t = 1", 4, 3, "cannot add keys to table [a.b.c]"},
        {"[a.b.c.d]\nz = 9\n[a]\nb.c.d.k.t = 1", 4, 5, "cannot add keys to table [a.b.c.d]"},
        {"[a.b.c]\n[a]\nb.d = 1\n[a.b]", 4, 4, "already defined by dotted keys at 3:1"},
        /* Inline tables are immutable. */
        {"a = {}\n[a.b]", 2, 2, "inline table 'a'"},
        {"a = {}\n[a]", 2, 2, "already defined as an inline table"},
        {"a = { b = 1 }\na.c = 2", 2, 1, "inline table 'a'"},
        {"a = { b = {} }\n[[a.b]]", 2, 3, "inline table 'a'"},
        {"t = { a = { b = 1 }, a.c = 2 }", 1, 22, "inline table 'a'"},
        {"t = { a = 1, a.b = 2 }", 1, 14, "cannot add keys to 'a': it is already an integer"},
        {"a.b = 0\na = {}", 2, 1, "duplicate key 'a'"},
        /* Arrays of tables versus static arrays and tables. */
        {"a = []\n[[a]]", 2, 3, "cannot append to static array 'a'"},
        {"a = [{}]\n[a.b]", 2, 2, "static array 'a'"},
        {"[a]\n[[a]]", 2, 3, "[[a]] conflicts with table 'a'"},
        {"[[a]]\n[a]", 2, 2, "conflicts with the array of tables [[a]]"},
        {"[[a.b]]\n[[a]]", 2, 3, "[[a]] conflicts with table 'a'"},
        {"[[a.b]]\n[a]\nb.c = 1", 3, 1, "cannot add keys to 'a.b': it is already an array"},
        {"[[p.arr]]\n[p]\narr = 2", 3, 1, "duplicate key 'p.arr'"},
        {"a = true\n[[a]]", 2, 3, "it is already a boolean"},
        {"a = 1\n[a.b.c.d]", 2, 2, "it is already an integer"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(cases[i].text, cases[i].line, cases[i].column, cases[i].message);

    /* The allowed counterparts. */
    const char *valid[] = {
        "[a.b.c]\n[a]\n[a.b]",          /* super-tables after sub-tables, once each */
        "[a.b.c]\nz = 9\n[a]\nb.d = 1", /* dotted keys may extend an implicit table */
        "[fruit]\napple.color = 1\napple.taste.sweet = true\n[fruit.apple.texture]",
        "[[a]]\n[a.b]\n[[a]]\n[a.b]",
        "[[a.b]]\n[a]\nc = 1",
        "t = { a.b = 1, a.c = 2 }",
        "a = [{ b = 1 }, { b = 1 }]",
    };
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        toml_free(parse_ok(valid[i]));
}

static void test_positions(void **state)
{
    expect_error("name = 'vm'\n\xC3\xA9t\xC3\xA9 = 'x'", 2, 1,
                 "expected a key but found '\xC3\xA9'");

    struct toml_value *root = parse_ok("# header comment\n"
                                       "name = \"vm\"\n"
                                       "[block_dev.iso]\n"
                                       "    path = 42\n"
                                       "\"\xC3\xA9t\xC3\xA9\" = 'x'\n"
                                       "[[nic]]\n"
                                       "  mac.addr = [1,\n    2]\n"
                                       "\tinline = { k = true }\n");
    const struct toml_keyval *name = toml_table_find(root, "name");
    assert_int_equal(name->line, 2);
    assert_int_equal(name->column, 1);
    assert_int_equal(name->value->line, 2);
    assert_int_equal(name->value->column, 8);

    const struct toml_value *iso = get_typed(root, "block_dev.iso", TOML_TABLE);
    const struct toml_keyval *block_dev = toml_table_find(root, "block_dev");
    assert_int_equal(block_dev->line, 3);
    assert_int_equal(block_dev->column, 2);
    assert_int_equal(iso->line, 3);
    assert_int_equal(iso->column, 12);
    const struct toml_keyval *path = toml_table_find(iso, "path");
    assert_int_equal(path->line, 4);
    assert_int_equal(path->column, 5);
    assert_int_equal(path->value->line, 4);
    assert_int_equal(path->value->column, 12);

    /* Columns count characters, not bytes. */
    const struct toml_keyval *ete = toml_table_find(iso, "\xC3\xA9t\xC3\xA9");
    assert_int_equal(ete->line, 5);
    assert_int_equal(ete->column, 1);
    assert_int_equal(ete->value->column, 9);

    const struct toml_value *nic = get_typed(root, "nic", TOML_ARRAY);
    const struct toml_value *nic0 = toml_array_get(nic, 0);
    assert_int_equal(nic0->line, 6);
    assert_int_equal(nic0->column, 3);
    const struct toml_keyval *mac = toml_table_find(nic0, "mac");
    assert_int_equal(mac->line, 7);
    assert_int_equal(mac->column, 3);
    const struct toml_keyval *addr = toml_table_find(mac->value, "addr");
    assert_int_equal(addr->line, 7);
    assert_int_equal(addr->column, 7);
    assert_int_equal(addr->value->column, 14);
    const struct toml_value *two = toml_array_get(addr->value, 1);
    assert_int_equal(two->line, 8);
    assert_int_equal(two->column, 5);
    const struct toml_keyval *inl = toml_table_find(nic0, "inline");
    assert_int_equal(inl->line, 9);
    assert_int_equal(inl->column, 2);
    assert_int_equal(inl->value->column, 11);
    const struct toml_keyval *k = toml_table_find(inl->value, "k");
    assert_int_equal(k->column, 13);
    assert_int_equal(k->value->column, 17);
    toml_free(root);

    /* An implicit table takes the position of the header that later defines it. */
    root = parse_ok("[a.b]\n[a]\n");
    const struct toml_keyval *a = toml_table_find(root, "a");
    assert_int_equal(a->line, 2);
    assert_int_equal(a->column, 2);
    toml_free(root);
}

static void test_error_positions(void **state)
{
    expect_error("a = 1\nb = 2\nc = ?\n", 3, 5, "expected a value but found '?'");
    expect_error("a = 1\r\nb = \r\n", 2, 5, "expected a value");
    expect_error("a = 1\rb = 2", 1, 6, "carriage return");
    expect_error("s = '\xC3\xA9\xC3\xA9' x", 1, 10, "expected a newline");
    expect_error("# comment \x7f\n", 1, 11, "control character U+007F");
    expect_error_n("a = 1\n\0", 7, 2, 1, "control character U+0000");
    expect_error("a = \"\xC0\xAF\"", 1, 6, "invalid UTF-8");
    expect_error("a = \"\xED\xA0\x80\"", 1, 6, "invalid UTF-8");     /* surrogate */
    expect_error("a = \"\xF4\x90\x80\x80\"", 1, 6, "invalid UTF-8"); /* > U+10FFFF */
    expect_error("a = \"\xE2\x82\"", 1, 6, "invalid UTF-8");         /* truncated */
    expect_error("a = \"\xFF\"", 1, 6, "invalid UTF-8 byte 0xFF");
    expect_error("a = 1 \xEF\xBB\xBF", 1, 7, "expected a newline");
    expect_error("x = [\n  1,\n  {a = 1}\n  ]]", 4, 4, "expected a newline");
}

static void test_empty_bom_and_crlf(void **state)
{
    struct toml_value *root = parse_ok("");
    assert_int_equal(root->u.table.count, 0);
    toml_free(root);
    root = parse_ok("\n\n# only comments\r\n\t \n");
    assert_int_equal(root->u.table.count, 0);
    toml_free(root);
    root = parse_ok("\xEF\xBB\xBF"
                    "a = 1\r\n[t]\r\nb = 2 # c\r\n");
    const struct toml_keyval *a = toml_table_find(root, "a");
    assert_int_equal(a->line, 1);
    assert_int_equal(a->column, 1);
    assert_int_equal(get_typed(root, "t.b", TOML_INTEGER)->u.integer, 2);
    assert_int_equal(toml_table_find(toml_table_get(root, "t"), "b")->line, 3);
    toml_free(root);

    struct toml_error err;
    assert_null(toml_parse(NULL, 1, &err));
    root = toml_parse(NULL, 0, NULL);
    assert_non_null(root);
    toml_free(root);
    toml_free(NULL);
}

static void test_depth_limit(void **state)
{
    char text[1024];
    size_t n = 0;
    n += (size_t)snprintf(text + n, sizeof(text) - n, "a = ");
    for (int i = 0; i < TOML_MAX_DEPTH; i++)
        text[n++] = '[';
    for (int i = 0; i < TOML_MAX_DEPTH; i++)
        text[n++] = ']';
    text[n] = '\0';
    toml_free(parse_ok(text));

    n = (size_t)snprintf(text, sizeof(text), "a = ");
    for (int i = 0; i < TOML_MAX_DEPTH + 1; i++)
        text[n++] = '[';
    text[n] = '\0';
    expect_error(text, 1, 5 + TOML_MAX_DEPTH, "nesting is too deep");

    n = (size_t)snprintf(text, sizeof(text), "a = ");
    for (int i = 0; i < TOML_MAX_DEPTH + 1; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "{b=");
    expect_error(text, 1, 5 + 3 * TOML_MAX_DEPTH, "nesting is too deep");

    /* Dotted keys and headers nest tables too. */
    n = 0;
    for (int i = 0; i < TOML_MAX_DEPTH + 1; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%sk", i ? "." : "");
    snprintf(text + n, sizeof(text) - n, ".k = 1");
    expect_error(text, 1, 1 + 2 * TOML_MAX_DEPTH, "nesting is too deep");
    text[n] = '\0';
    memmove(text + 1, text, n + 1);
    text[0] = '[';
    strcat(text, ".k]");
    expect_error(text, 1, 2 + 2 * TOML_MAX_DEPTH, "nesting is too deep");
}

static void test_lookup(void **state)
{
    /* Enough keys to exercise the hash index; keys with embedded NULs stay distinct. */
    size_t cap = 64 * 1024, n = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(text + n, cap - n, "key%d = %d\n", i, i);
    snprintf(text + n, cap - n, "\"nul\\u0000x\" = 1\nnul = 2\n");
    struct toml_value *root = parse_ok(text);
    free(text);
    assert_int_equal(root->u.table.count, 2002);
    for (int i = 0; i < 2000; i += 37) {
        char key[16];
        snprintf(key, sizeof(key), "key%d", i);
        assert_int_equal(toml_table_get(root, key)->u.integer, i);
    }
    assert_null(toml_table_get(root, "key2000"));
    assert_int_equal(toml_table_get(root, "nul")->u.integer, 2);
    assert_int_equal(root->u.table.items[2000].key_len, 5);
    assert_null(toml_table_find(NULL, "x"));
    assert_null(toml_table_find(toml_table_get(root, "nul"), "x"));
    assert_null(toml_array_get(root, 0));
    toml_free(root);

    assert_string_equal(toml_type_name(TOML_TABLE), "table");
    assert_string_equal(toml_type_name(TOML_ARRAY), "array");
    assert_string_equal(toml_type_name(TOML_STRING), "string");
    assert_string_equal(toml_type_name(TOML_INTEGER), "integer");
    assert_string_equal(toml_type_name(TOML_FLOAT), "float");
    assert_string_equal(toml_type_name(TOML_BOOL), "bool");
    assert_string_equal(toml_type_name(TOML_DATETIME), "datetime");
    assert_string_equal(toml_type_name(TOML_DATETIME_LOCAL), "datetime-local");
    assert_string_equal(toml_type_name(TOML_DATE_LOCAL), "date-local");
    assert_string_equal(toml_type_name(TOML_TIME_LOCAL), "time-local");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_floats),
        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_datetimes),
        cmocka_unit_test(test_arrays_and_inline_tables),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_redefinitions),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_error_positions),
        cmocka_unit_test(test_empty_bom_and_crlf),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_lookup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
