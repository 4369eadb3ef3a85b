/* Text helpers of the test guest's commands (main.c, storage_bench.c,
 * net_test.c): an output line built piece by piece, and the pieces of
 * their argument parsers. */
#ifndef TESTGUEST_TEXT_H
#define TESTGUEST_TEXT_H

#include <stdbool.h>
#include <stdint.h>

/* A line for say(): truncated, never overflowed, always NUL-terminated. */
struct out_line {
    char buf[160];
    unsigned n;
};

void ln_str(struct out_line *l, const char *s);
/* v in base 10 or 16 (lowercase), at least min_digits digits. */
void ln_num(struct out_line *l, uint64_t v, unsigned base, int min_digits);
/* " key=v" in decimal. */
void ln_kv(struct out_line *l, const char *key, uint64_t v);

static inline void ln_dec(struct out_line *l, uint64_t v)
{
    ln_num(l, v, 10, 1);
}

static inline void ln_hex(struct out_line *l, uint64_t v, int min_digits)
{
    ln_num(l, v, 16, min_digits);
}

/* A PCI function as the drivers print it: its "vvvv:dddd" vendor:device
 * id (config dword 0), its "BUS:DEV" location (decimal). */
void ln_pci_id(struct out_line *l, uint32_t id);
void ln_pci_location(struct out_line *l, unsigned bus, unsigned dev);

/* Whether p starts with w; *rest then points after it. */
bool word_is(const char *p, const char *w, const char **rest);

/* The decimal number at *pp: false when there is no digit or the number is
 * above max (*pp unchanged), else *out gets it and *pp moves past it. */
bool parse_decimal(const char **pp, uint64_t max, uint64_t *out);

/* The largest number the drivers' arguments take (10^10 + 9; most keys
 * check a narrower range after). */
#define ARG_NUMBER_MAX 10000000009ULL

/* A PCI location "BUS:DEV" (decimal, bus up to 255, device up to 31) at
 * *pp: false when it is not one; else *pp moves past it. */
bool parse_pci_location(const char **pp, int *bus, int *dev);

#endif
