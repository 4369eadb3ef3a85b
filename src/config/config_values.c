/* Syntaxes of individual config values: PCI paths, socket addresses, UUIDs,
 * base64 keys and cpuid leaf keys. */
#include "common/text.h"
#include "config/config.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int why_fail(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int why_fail(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Parses [s, end) as a decimal number of at most 9 digits. */
static bool parse_decimal(const char *s, const char *end, unsigned long *out)
{
    if (s == end || end - s > 9)
        return false;
    unsigned long v = 0;
    for (const char *p = s; p < end; p++) {
        if (!is_digit(*p))
            return false;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    *out = v;
    return true;
}

int config_parse_bdf(const char *text, struct config_bdf *out, char *why, size_t whylen)
{
    unsigned long part[3];
    const char *s = text;
    for (int i = 0; i < 3; i++) {
        const char *end = s;
        while (*end && *end != '.')
            end++;
        if ((i < 2 && *end != '.') || (i == 2 && *end != '\0') || !parse_decimal(s, end, &part[i]))
            return why_fail(why, whylen,
                            "malformed PCI path \"%s\" (expected \"BUS.DEV.FUNC\" in decimal, "
                            "e.g. \"0.4.0\")",
                            text);
        s = end + 1;
    }
    if (part[0] > 255)
        return why_fail(why, whylen, "bus %lu of \"%s\" is out of range (0..=255)", part[0], text);
    if (part[1] > 31)
        return why_fail(why, whylen, "device %lu of \"%s\" is out of range (0..=31)", part[1],
                        text);
    if (part[2] > 7)
        return why_fail(why, whylen, "function %lu of \"%s\" is out of range (0..=7)", part[2],
                        text);
    out->bus = (uint8_t)part[0];
    out->dev = (uint8_t)part[1];
    out->func = (uint8_t)part[2];
    return 0;
}

int config_parse_sockaddr(const char *text, struct config_sockaddr *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    size_t len = strlen(text);
    if (len == 0)
        return why_fail(why, whylen, "empty socket address (expected \"IP:PORT\")");
    if (len >= sizeof(out->text))
        return why_fail(why, whylen, "socket address is too long");

    char host[CONFIG_SOCKADDR_TEXT_MAX];
    const char *port_text;
    bool v6 = text[0] == '[';
    if (v6) {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':')
            return why_fail(why, whylen,
                            "malformed socket address \"%s\" (expected \"[IPV6]:PORT\")", text);
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        port_text = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon)
            return why_fail(why, whylen, "socket address \"%s\" has no port (expected \"IP:PORT\")",
                            text);
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        if (strchr(host, ':'))
            return why_fail(why, whylen,
                            "malformed socket address \"%s\" (write IPv6 addresses as "
                            "\"[ADDR]:PORT\")",
                            text);
        port_text = colon + 1;
    }

    unsigned long port;
    if (!parse_decimal(port_text, port_text + strlen(port_text), &port) || port > 65535)
        return why_fail(why, whylen, "invalid port \"%s\" in socket address \"%s\"", port_text,
                        text);

    if (v6) {
        uint32_t scope = 0;
        char *pct = strchr(host, '%');
        if (pct) {
            unsigned long sc;
            *pct = '\0';
            if (!parse_decimal(pct + 1, pct + 1 + strlen(pct + 1), &sc))
                return why_fail(why, whylen, "invalid scope id in socket address \"%s\"", text);
            scope = (uint32_t)sc;
        }
        if (inet_pton(AF_INET6, host, &out->u.in6.sin6_addr) != 1)
            return why_fail(why, whylen, "\"%s\" is not an IPv6 address", host);
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = htons((uint16_t)port);
        out->u.in6.sin6_scope_id = scope;
        out->len = sizeof(out->u.in6);
    } else {
        if (inet_pton(AF_INET, host, &out->u.in4.sin_addr) != 1)
            return why_fail(why, whylen,
                            "\"%s\" is not an IPv4 address (host names are not accepted)", host);
        out->u.in4.sin_family = AF_INET;
        out->u.in4.sin_port = htons((uint16_t)port);
        out->len = sizeof(out->u.in4);
    }
    memcpy(out->text, text, len + 1);
    return 0;
}

int config_parse_uuid(const char *text, uint8_t out[16], char *why, size_t whylen)
{
    const char *s = text;
    size_t len = strlen(s);
    if (len > 9 && strncasecmp(s, "urn:uuid:", 9) == 0) {
        s += 9;
        len -= 9;
    } else if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
        s++;
        len -= 2;
        if (len != 36)
            goto bad;
    }
    if (len != 36 && len != 32)
        goto bad;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (len == 36 && (i == 8 || i == 13 || i == 18 || i == 23)) {
            if (s[i] != '-')
                goto bad;
            continue;
        }
        int hi = hex_digit_value(s[i]);
        int lo = hex_digit_value(s[i + 1]);
        if (hi < 0 || lo < 0)
            goto bad;
        out[n++] = (uint8_t)(hi << 4 | lo);
        i++;
    }
    if (n == 16)
        return 0;
bad:
    return why_fail(why, whylen,
                    "\"%s\" is not a UUID (expected e.g. \"e4396bd0-ede1-48d7-ac14-3d2094dfba5b\")",
                    text);
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int config_base64_decode(const char *text, size_t textlen, uint8_t *out, size_t outmax,
                         size_t *outlen, char *why, size_t whylen)
{
    if (textlen % 4 != 0)
        return why_fail(why, whylen, "invalid base64: length %zu is not a multiple of 4", textlen);
    size_t n = 0;
    for (size_t i = 0; i < textlen; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = text[i + (size_t)j];
            if (c == '=' && i + 4 == textlen && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad)
                return why_fail(why, whylen, "invalid base64: misplaced '='");
            v[j] = b64_value(c);
            if (v[j] < 0)
                return why_fail(why, whylen, "invalid base64: unexpected character at offset %zu",
                                i + (size_t)j);
        }
        uint32_t bits =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if ((pad == 1 && (bits & 0xff)) || (pad == 2 && (bits & 0xffff)))
            return why_fail(why, whylen, "invalid base64: non-zero trailing bits");
        uint8_t bytes[3] = {(uint8_t)(bits >> 16), (uint8_t)(bits >> 8), (uint8_t)bits};
        for (int j = 0; j < 3 - pad; j++) {
            if (n >= outmax)
                return why_fail(why, whylen, "decodes to more than %zu bytes", outmax);
            out[n++] = bytes[j];
        }
    }
    *outlen = n;
    return 0;
}

static bool parse_hex_u32(const char *s, size_t len, uint32_t *out)
{
    if (len == 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        int h = hex_digit_value(s[i]);
        if (h < 0)
            return false;
        v = v << 4 | (uint64_t)h;
        if (v > UINT32_MAX)
            return false;
    }
    *out = (uint32_t)v;
    return true;
}

int config_parse_cpuid_key(const char *key, size_t keylen, uint32_t *func, bool *has_index,
                           uint32_t *index, char *why, size_t whylen)
{
    const char *dash = memchr(key, '-', keylen);
    size_t flen = dash ? (size_t)(dash - key) : keylen;
    if (!parse_hex_u32(key, flen, func) ||
        (dash && !parse_hex_u32(dash + 1, keylen - flen - 1, index)))
        return why_fail(why, whylen,
                        "not a cpuid leaf: expected \"LEAF\" or \"LEAF-INDEX\" as hex numbers of "
                        "at most 32 bits without 0x (e.g. \"d\" or \"8000001d-1\")");
    *has_index = dash != NULL;
    if (!dash)
        *index = 0;
    return 0;
}
