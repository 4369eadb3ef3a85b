/* The JSON form of a state record (common/snap.h), for the snapshot's
 * global.json and devices/NAME.json. The codec stores each field as a name
 * and little-endian bytes without a type, so the conversion is generic and
 * exact, by length:
 *
 *   {"name": "uart", "kind": "uart16550", "version": 1, "fields": [
 *       {"name": "lcr", "u8": 3},               1, 2, 4 bytes: u8/u16/u32, a number
 *       {"name": "base_clock_ns", "u64": "0x1a2b"}, 8 bytes: a hex string
 *       {"name": "pci.config", "hex": "8680..."}    other lengths: the bytes in hex
 *   ]}
 *
 * Fields stay an array in saved order (loading is order-strict); dotted
 * names are the codec's prefixes (snap_enter). A bool is a u8 of 0 or 1.
 * Converting back builds the same record byte for byte; anything malformed
 * (a missing or extra key, a value out of range for its width, bad hex, a
 * name over 255 bytes) is refused naming the field. */
#ifndef SNAPSHOT_STATE_JSON_H
#define SNAPSHOT_STATE_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "common/snap.h"

/* A new object for rec, or NULL with the reason in err. */
json_t *state_record_to_json(const struct snap_record *rec, char *err, size_t err_size);
/* Appends the record obj describes to out. Returns 0, or -1 with err. */
int state_record_from_json(const json_t *obj, struct snap_buf *out, char *err, size_t err_size);

#endif
