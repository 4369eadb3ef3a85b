#include "firmware/table_loader.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/bytes.h"

static void put_name(uint8_t *dst, const char *name, struct bytebuf *script)
{
    size_t len = strlen(name);
    if (len >= LOADER_FILE_NAME_SIZE) {
        script->failed = true;
        return;
    }
    memcpy(dst, name, len);
}

static uint8_t *new_entry(struct bytebuf *script, enum loader_command command)
{
    size_t at = bytebuf_zeros(script, LOADER_ENTRY_SIZE);
    if (script->failed)
        return NULL;
    uint8_t *e = script->data + at;
    le32_store(e, command);
    return e + 4;
}

void loader_allocate(struct bytebuf *script, const char *file, uint32_t align,
                     enum loader_zone zone)
{
    uint8_t *p = new_entry(script, LOADER_ALLOCATE);
    if (!p)
        return;
    put_name(p, file, script);
    le32_store(p + LOADER_FILE_NAME_SIZE, align);
    p[LOADER_FILE_NAME_SIZE + 4] = (uint8_t)zone;
}

void loader_add_pointer(struct bytebuf *script, const char *dest_file, const char *src_file,
                        uint32_t offset, uint8_t size)
{
    uint8_t *p = new_entry(script, LOADER_ADD_POINTER);
    if (!p)
        return;
    put_name(p, dest_file, script);
    put_name(p + LOADER_FILE_NAME_SIZE, src_file, script);
    le32_store(p + 2 * LOADER_FILE_NAME_SIZE, offset);
    p[2 * LOADER_FILE_NAME_SIZE + 4] = size;
}

void loader_add_checksum(struct bytebuf *script, const char *file, uint32_t result_offset,
                         uint32_t start, uint32_t length)
{
    uint8_t *p = new_entry(script, LOADER_ADD_CHECKSUM);
    if (!p)
        return;
    put_name(p, file, script);
    le32_store(p + LOADER_FILE_NAME_SIZE, result_offset);
    le32_store(p + LOADER_FILE_NAME_SIZE + 4, start);
    le32_store(p + LOADER_FILE_NAME_SIZE + 8, length);
}

/* ---- executor ---- */

__attribute__((format(printf, 3, 4))) static int fail(char *why, size_t whylen, const char *fmt,
                                                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -1;
}

static struct loader_file *find_file(struct loader_file *files, size_t nfiles, const uint8_t *name)
{
    if (memchr(name, 0, LOADER_FILE_NAME_SIZE) == NULL)
        return NULL;
    for (size_t i = 0; i < nfiles; i++)
        if (strcmp(files[i].name, (const char *)name) == 0)
            return &files[i];
    return NULL;
}

int loader_execute(const uint8_t *script, size_t len, struct loader_file *files, size_t nfiles,
                   char *why, size_t whylen)
{
    if (len % LOADER_ENTRY_SIZE != 0)
        return fail(why, whylen, "script size %zu is not a multiple of %d", len, LOADER_ENTRY_SIZE);
    for (size_t i = 0; i < nfiles; i++)
        files[i].allocated = 0;
    for (size_t at = 0; at < len; at += LOADER_ENTRY_SIZE) {
        const uint8_t *e = script + at;
        const uint8_t *p = e + 4;
        uint32_t command = le32_load(e);
        size_t index = at / LOADER_ENTRY_SIZE;
        if (command == LOADER_ALLOCATE) {
            struct loader_file *f = find_file(files, nfiles, p);
            uint32_t align = le32_load(p + LOADER_FILE_NAME_SIZE);
            if (!f)
                return fail(why, whylen, "command %zu: allocate of an unknown file", index);
            if (f->allocated)
                return fail(why, whylen, "command %zu: %s allocated twice", index, f->name);
            if (align == 0 || (align & (align - 1)) || align > 4096 || f->addr % align)
                return fail(why, whylen, "command %zu: bad alignment %u", index, align);
            f->allocated = 1;
        } else if (command == LOADER_ADD_POINTER) {
            struct loader_file *dst = find_file(files, nfiles, p);
            struct loader_file *src = find_file(files, nfiles, p + LOADER_FILE_NAME_SIZE);
            uint32_t offset = le32_load(p + 2 * LOADER_FILE_NAME_SIZE);
            uint8_t size = p[2 * LOADER_FILE_NAME_SIZE + 4];
            if (!dst || !src || !dst->allocated || !src->allocated)
                return fail(why, whylen, "command %zu: pointer between unallocated files", index);
            if ((size != 1 && size != 2 && size != 4 && size != 8) || dst->size < size ||
                dst->size - size < offset)
                return fail(why, whylen, "command %zu: bad pointer location", index);
            uint64_t value = le_load(dst->data + offset, size);
            if (value >= src->size)
                return fail(why, whylen, "command %zu: pointer value 0x%llx outside %s", index,
                            (unsigned long long)value, src->name);
            value += src->addr;
            if (size < 8 && (value >> (8 * size)) != 0)
                return fail(why, whylen, "command %zu: relocated pointer does not fit", index);
            le_store(dst->data + offset, size, value);
        } else if (command == LOADER_ADD_CHECKSUM) {
            struct loader_file *f = find_file(files, nfiles, p);
            uint32_t result = le32_load(p + LOADER_FILE_NAME_SIZE);
            uint32_t start = le32_load(p + LOADER_FILE_NAME_SIZE + 4);
            uint32_t length = le32_load(p + LOADER_FILE_NAME_SIZE + 8);
            if (!f || !f->allocated)
                return fail(why, whylen, "command %zu: checksum of an unallocated file", index);
            if (f->size <= result || f->size < length || f->size - length < start)
                return fail(why, whylen, "command %zu: bad checksum range", index);
            /* As OVMF: the sum includes the (expected zero) checksum byte. */
            f->data[result] = (uint8_t)(0x100 - byte_sum(f->data + start, length));
        } else {
            return fail(why, whylen, "command %zu: unexpected command %u", index, command);
        }
    }
    return 0;
}
