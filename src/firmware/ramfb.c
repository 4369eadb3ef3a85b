#include "firmware/ramfb.h"

#include "core/guest_mem.h"
#include "firmware/bytebuf.h"

const char *ramfb_parse(const uint8_t cfg[RAMFB_CFG_SIZE], const struct guest_mem *mem,
                        struct ramfb_mode *out)
{
    struct ramfb_mode m = {
        .addr = get_be64(cfg),
        .fourcc = get_be32(cfg + 8),
        .flags = get_be32(cfg + 12),
        .width = get_be32(cfg + 16),
        .height = get_be32(cfg + 20),
        .stride = get_be32(cfg + 24),
    };
    if (m.fourcc != RAMFB_FOURCC_XRGB8888)
        return "unsupported pixel format (only XR24)";
    if (m.width < RAMFB_MIN_DIM || m.width > RAMFB_MAX_WIDTH || m.height < RAMFB_MIN_DIM ||
        m.height > RAMFB_MAX_HEIGHT)
        return "size out of range";
    uint64_t min_stride = (uint64_t)m.width * RAMFB_BYTES_PER_PIXEL;
    if (m.stride == 0)
        m.stride = (uint32_t)min_stride;
    if (m.stride < min_stride || m.stride > 4 * min_stride)
        return "bad stride";
    /* Bounded above: 64000 * 4 * 12000 bytes, so no overflow. */
    uint64_t size = (uint64_t)m.stride * m.height;
    if (!guest_mem_valid(mem, m.addr, size, true))
        return "framebuffer not inside guest RAM";
    *out = m;
    return NULL;
}

void ramfb_encode(const struct ramfb_mode *mode, uint8_t cfg[RAMFB_CFG_SIZE])
{
    put_be64(cfg, mode->addr);
    put_be32(cfg + 8, mode->fourcc);
    put_be32(cfg + 12, mode->flags);
    put_be32(cfg + 16, mode->width);
    put_be32(cfg + 20, mode->height);
    put_be32(cfg + 24, mode->stride);
}
