#include "net/mac.h"

#include <string.h>

/* FNV-1a, 64-bit: small, stable across builds and hosts. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void net_derive_mac(const char *instance, const char *device, uint8_t mac[6])
{
    uint64_t h = 0xcbf29ce484222325ull;
    /* The NUL keeps ("ab", "c") apart from ("a", "bc"). */
    h = fnv1a(h, instance, strlen(instance) + 1);
    h = fnv1a(h, device, strlen(device) + 1);
    for (unsigned i = 0; i < 6; i++)
        mac[i] = (uint8_t)(h >> (8 * i));
    mac[0] = (uint8_t)((mac[0] & ~0x01u) | 0x02u); /* unicast, locally administered */
}
