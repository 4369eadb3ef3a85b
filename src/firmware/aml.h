/* A small encoder for ACPI Machine Language (ACPI 6.x, chapter 20): just
 * the constructs our DSDT needs. Blocks with a PkgLength (scopes, devices,
 * methods, packages, buffers) are opened, filled, then closed; closing
 * computes the PkgLength (1-4 bytes) and inserts it. Misuse (bad names,
 * unbalanced blocks) latches the failed flag; aml_finish reports it. */
#ifndef FIRMWARE_AML_H
#define FIRMWARE_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "firmware/bytebuf.h"

#define AML_MAX_DEPTH 16

/* Opcodes we emit (ACPI 6.4, 20.3). */
enum {
    AML_ZERO_OP = 0x00,
    AML_ONE_OP = 0x01,
    AML_NAME_OP = 0x08,
    AML_BYTE_PREFIX = 0x0a,
    AML_WORD_PREFIX = 0x0b,
    AML_DWORD_PREFIX = 0x0c,
    AML_STRING_PREFIX = 0x0d,
    AML_QWORD_PREFIX = 0x0e,
    AML_SCOPE_OP = 0x10,
    AML_BUFFER_OP = 0x11,
    AML_PACKAGE_OP = 0x12,
    AML_VAR_PACKAGE_OP = 0x13,
    AML_METHOD_OP = 0x14,
    AML_DUAL_NAME_PREFIX = 0x2e,
    AML_MULTI_NAME_PREFIX = 0x2f,
    AML_EXT_OP_PREFIX = 0x5b,
    AML_EXT_DEVICE_OP = 0x82,
    AML_ROOT_CHAR = 0x5c,
    AML_PARENT_PREFIX = 0x5e,
    AML_RETURN_OP = 0xa4,
    AML_ONES_OP = 0xff,
};

struct aml {
    struct bytebuf buf;
    size_t open_at[AML_MAX_DEPTH]; /* where each open block's PkgLength goes */
    bool open_is_buffer[AML_MAX_DEPTH];
    unsigned depth;
    bool failed;
};

void aml_init(struct aml *a);
/* True if every block was closed and nothing failed; the caller owns a->buf. */
bool aml_finish(struct aml *a);
void aml_free(struct aml *a);

/* Bytes of a PkgLength for content_len bytes following it (0 if too big),
 * and the encoding itself; out must have room for 4 bytes. */
unsigned aml_pkg_length_encode(size_t content_len, uint8_t out[4]);

/* Terms. */
void aml_name_string(struct aml *a, const char *path); /* "\\_SB.PCI0", "^FOO", "_HID" */
void aml_integer(struct aml *a, uint64_t value);       /* shortest encoding */
void aml_string(struct aml *a, const char *s);
/* "PNP0A03" as the 32-bit compressed EISA id (0 if malformed). */
uint32_t aml_eisaid_value(const char *id);
void aml_eisaid(struct aml *a, const char *id);

/* Named objects: Name (NAME, value). */
void aml_name_integer(struct aml *a, const char *name, uint64_t value);
void aml_name_str(struct aml *a, const char *name, const char *value);
void aml_name_eisaid(struct aml *a, const char *name, const char *id);
/* Writes NameOp + name; the caller then writes exactly one data object. */
void aml_name_begin(struct aml *a, const char *name);

/* Blocks. */
void aml_scope_open(struct aml *a, const char *name);
void aml_device_open(struct aml *a, const char *name);
void aml_method_open(struct aml *a, const char *name, unsigned arg_count, bool serialized);
/* A Package of exactly count elements written before aml_close. */
void aml_package_open(struct aml *a, unsigned count);
void aml_buffer_open(struct aml *a); /* BufferSize is computed at close */
void aml_close(struct aml *a);
void aml_bytes(struct aml *a, const void *data, size_t len); /* raw bytes, e.g. in a buffer */

void aml_return_integer(struct aml *a, uint64_t value);

/* Resource descriptors (ACPI 6.4, 6.4), appended to a bytebuf; a resource
 * template is then written as a Buffer with aml_resource_template. */
void res_io(struct bytebuf *r, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
void res_irq_noflags(struct bytebuf *r, uint16_t irq_mask);
/* Extended interrupt descriptor, consumer, one interrupt (a GSI). */
void res_interrupt(struct bytebuf *r, bool level, bool active_high, bool shared, uint32_t gsi);
void res_memory32_fixed(struct bytebuf *r, bool writable, uint32_t base, uint32_t len);
/* Address space descriptors: producer, positive decode, fixed min and max,
 * granularity 0, no translation, length = max - min + 1. */
void res_word_bus_number(struct bytebuf *r, uint16_t min, uint16_t max);
void res_word_io(struct bytebuf *r, uint16_t min, uint16_t max);
void res_dword_memory(struct bytebuf *r, bool cacheable, uint32_t min, uint32_t max);
void res_qword_memory(struct bytebuf *r, bool cacheable, uint64_t min, uint64_t max);
/* Buffer { descriptors, EndTag } with the EndTag checksum making the
 * template's bytes sum to zero. */
void aml_resource_template(struct aml *a, const struct bytebuf *descriptors);

#endif
