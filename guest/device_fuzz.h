/* Hostile-guest fuzzer for the storage devices and the NIC, behind the
 * `devfuzz` command (see device_fuzz.c). */
#ifndef TESTGUEST_DEVICE_FUZZ_H
#define TESTGUEST_DEVICE_FUZZ_H

#include <stdint.h>

/* Fuzzes every virtio-blk, virtio-net and NVMe function on bus 0 for
 * rounds rounds from seed, at CPL0 with interrupts disabled; report() is
 * called once per device fuzzed (kind "virtio-blk", "virtio-net" or
 * "nvme", its device number, the register accesses made). Returns the
 * number of devices. */
unsigned device_fuzz(uint64_t seed, unsigned rounds,
                     void (*report)(const char *kind, unsigned dev, uint64_t ops));

#endif
