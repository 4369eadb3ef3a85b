/* Crucible's message decoder (src/block/crucible/protocol.c): the input is
 * a message as a downstairs would send it (no frame length). Whatever
 * decodes must encode again to the same number of bytes and, apart from
 * the byte strings' content, the same bytes; the frame-length reader sees
 * the first four bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "block/crucible/protocol.h"

#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 4)
        (void)crucible_frame_length(data);
    struct crucible_msg m;
    char why[256];
    if (crucible_decode(data, size, &m, why, sizeof(why)) != 0)
        return 0;
    struct crucible_buf out = {0};
    if (crucible_encode(&out, &m) != 0 || out.len != size)
        abort(); /* a decoded message must encode, to the same length */
    /* Byte strings are copied as they are, so the whole encoding matches. */
    if (memcmp(out.bytes, data, size) != 0)
        abort();
    crucible_buf_free(&out);
    crucible_msg_free(&m);
    return 0;
}
