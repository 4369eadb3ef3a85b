/* Hostile-guest fuzzer for the storage devices, the NIC and vsock, behind
 * the `devfuzz` command (see device_fuzz.c). */
#ifndef TESTGUEST_DEVICE_FUZZ_H
#define TESTGUEST_DEVICE_FUZZ_H

#include <stdint.h>

/* Fuzzes every virtio-blk, virtio-net, virtio-vsock and NVMe function on
 * bus 0 for rounds rounds from seed, at CPL0 with interrupts disabled (the
 * vsock driver at CPL3: tsc_khz for its deadlines, say for its lines);
 * report() is called once per device fuzzed (kind "virtio-blk",
 * "virtio-net", "virtio-vsock" or "nvme", its device number, the register
 * accesses and vsock packets made). Returns the number of devices. */
unsigned device_fuzz(uint64_t seed, unsigned rounds, uint64_t tsc_khz,
                     void (*say)(const char *line),
                     void (*report)(const char *kind, unsigned dev, uint64_t ops));

#endif
