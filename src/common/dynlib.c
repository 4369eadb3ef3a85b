#include "common/dynlib.h"

#include <dlfcn.h>
#include <stdio.h>

bool dynlib_load(const char *soname, const char *package, const struct dynlib_symbol *symbols,
                 size_t count, char *err, size_t err_size)
{
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, err_size, "cannot load %s (Debian: %s): %s", soname, package, dlerror());
        return false;
    }
    /* dlsym on a library's handle also searches its dependencies (libssl's
     * finds libcrypto's functions). */
    for (size_t i = 0; i < count; i++) {
        if (!(*symbols[i].slot = dlsym(h, symbols[i].name))) {
            snprintf(err, err_size, "%s has no %s", soname, symbols[i].name);
            return false;
        }
    }
    return true;
}
