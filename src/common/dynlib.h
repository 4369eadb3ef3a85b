/* Libraries loaded on first use (libnbd, OpenSSL), so that a VM without
 * such a disk never maps them: one dlopen and a table of symbols. */
#ifndef COMMON_DYNLIB_H
#define COMMON_DYNLIB_H

#include <stdbool.h>
#include <stddef.h>

struct dynlib_symbol {
    const char *name;
    void **slot; /* where its address goes */
};

/* Opens soname (package: the Debian package that ships it, for the
 * message) and fills every slot. Returns true, or false with a message
 * naming the library or the missing symbol in err. */
bool dynlib_load(const char *soname, const char *package, const struct dynlib_symbol *symbols,
                 size_t count, char *err, size_t err_size);

#endif
