/* Text helpers of the test guest's commands (see text.h). */
#include "text.h"

void ln_str(struct out_line *l, const char *s)
{
    while (*s && l->n < sizeof(l->buf) - 1)
        l->buf[l->n++] = *s++;
    l->buf[l->n] = 0;
}

void ln_num(struct out_line *l, uint64_t v, unsigned base, int min_digits)
{
    static const char digits[] = "0123456789abcdef";
    char t[24];
    int k = 0;
    do {
        t[k++] = digits[v % base];
        v /= base;
    } while (v || k < min_digits);
    while (k && l->n < sizeof(l->buf) - 1)
        l->buf[l->n++] = t[--k];
    l->buf[l->n] = 0;
}

void ln_kv(struct out_line *l, const char *key, uint64_t v)
{
    ln_str(l, " ");
    ln_str(l, key);
    ln_str(l, "=");
    ln_dec(l, v);
}

void ln_pci_id(struct out_line *l, uint32_t id)
{
    ln_hex(l, id & 0xffff, 4);
    ln_str(l, ":");
    ln_hex(l, id >> 16, 4);
}

void ln_pci_location(struct out_line *l, unsigned bus, unsigned dev)
{
    ln_dec(l, bus);
    ln_str(l, ":");
    ln_dec(l, dev);
}

bool word_is(const char *p, const char *w, const char **rest)
{
    while (*w && *p == *w) {
        p++;
        w++;
    }
    if (*w)
        return false;
    *rest = p;
    return true;
}

bool parse_decimal(const char **pp, uint64_t max, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9') {
        unsigned digit = (unsigned)(*p - '0');
        if (v > (max - digit) / 10)
            return false;
        v = v * 10 + digit;
        p++;
    }
    *pp = p;
    *out = v;
    return true;
}

bool parse_pci_location(const char **pp, int *bus, int *dev)
{
    const char *p = *pp;
    uint64_t b, d;
    if (!parse_decimal(&p, ARG_NUMBER_MAX, &b) || *p != ':')
        return false;
    p++;
    if (!parse_decimal(&p, ARG_NUMBER_MAX, &d) || b > 255 || d > 31)
        return false;
    *pp = p;
    *bus = (int)b;
    *dev = (int)d;
    return true;
}
