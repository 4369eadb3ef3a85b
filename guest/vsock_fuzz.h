/* The device fuzzer's virtio-vsock mode (vsock_fuzz.c), called by
 * device_fuzz() for each virtio-vsock function on bus 0. */
#ifndef TESTGUEST_VSOCK_FUZZ_H
#define TESTGUEST_VSOCK_FUZZ_H

#include <stdbool.h>
#include <stdint.h>

/* The host ports the VM's port_mappings must map: one to a server that
 * echoes what it reads, one to a server that accepts and never reads.
 * Every other port is taken to be unmapped. */
#define VSOCK_FUZZ_ECHO_PORT 5000
#define VSOCK_FUZZ_SINK_PORT 5001

#define VSOCK_FUZZ_CONNECTS 10000  /* REQUESTs of the connection storm */
#define VSOCK_FUZZ_ECHO_BYTES 8192 /* the final check's bytes each way */

/* Whether config dwords 0 and 8 are a virtio-vsock function (1af4:1012
 * transitional, 1af4:1053 modern). */
bool vsock_fuzz_match(uint32_t id, uint32_t class_rev);

/* Attacks bus:dev (BARs assigned at bar_addr, decoding on) from seed:
 * runs its CPL3 driver (cpl3_setup_polling), prints its result lines with
 * say, leaves the device reset. Returns the packets it sent. */
uint64_t vsock_fuzz(unsigned bus, unsigned dev, const uint64_t bar_addr[6], uint64_t seed,
                    unsigned rounds, uint64_t tsc_khz, void (*say)(const char *line));

#endif
