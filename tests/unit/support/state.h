/* Device state checks shared by every device's unit test (cmocka). */
#ifndef TESTS_SUPPORT_STATE_H
#define TESTS_SUPPORT_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "common/snap.h"
#include "devices/device.h"

/* Saves from's state into out (one record); fails the test on error. */
void state_save(struct device *from, struct snap_buf *out);
/* Loads a buffer holding one record into to; returns device_load_state's
 * result, the error in err. */
int state_load(struct device *to, const uint8_t *data, size_t len, char *err, size_t err_size);

/* Saves from, loads into to (a device rebuilt from the same config), saves
 * to again: the two states must be byte-identical. */
void assert_state_roundtrip(struct device *from, struct device *to);

/* Checks that from's state is refused by victim, with an error naming the
 * device, when: cut short at every length; saved at the next version;
 * of another kind; with an unknown field appended; with a field renamed
 * (the error names from's device, as records are matched by name).
 * victim is left in no defined state (destroy it afterwards). */
void assert_state_refusals(struct device *from, struct device *victim);

/* Loads from's state with the first field named `field` (its full name)
 * replaced by `value` (`len` bytes, the field's own length) and asserts
 * the load is refused with an error that names the field. */
void assert_state_field_refused(struct device *from, struct device *victim, const char *field,
                                const void *value, size_t len);

#endif
