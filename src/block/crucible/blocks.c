/* Sealing and checking blocks (blocks.h). */
#include "block/crucible/blocks.h"

#include <string.h>

int crucible_seal_blocks(struct crucible_cipher *cipher, uint8_t *data, uint32_t bs, uint64_t n,
                         struct crucible_block_context *ctx)
{
    for (uint64_t i = 0; i < n; i++) {
        uint8_t *block = data + i * bs;
        ctx[i] = (struct crucible_block_context){0};
        if (!cipher) {
            ctx[i].hash = crucible_hash_plain(block, bs);
            continue;
        }
        if (crucible_encrypt(cipher, block, bs, ctx[i].nonce, true, ctx[i].tag) < 0)
            return -1;
        ctx[i].encrypted = true;
        ctx[i].hash = crucible_hash_encrypted(ctx[i].nonce, ctx[i].tag, block, bs);
    }
    return 0;
}

static bool all_zero(const uint8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* One block: 0 or a CrucibleError kind. */
static int open_block(struct crucible_cipher *cipher, uint8_t *block, uint32_t bs,
                      const struct crucible_read_context *rc)
{
    if (rc->kind == CRC_EMPTY)
        return all_zero(block, bs) ? 0 : CE_MISSING_BLOCK_CONTEXT;
    if (cipher) {
        if (rc->kind != CRC_ENCRYPTED)
            return CE_MISSING_BLOCK_CONTEXT;
        return crucible_decrypt(cipher, block, bs, rc->nonce, rc->tag) == 0 ? 0
                                                                            : CE_DECRYPTION_ERROR;
    }
    if (rc->kind != CRC_UNENCRYPTED)
        return CE_MISSING_BLOCK_CONTEXT;
    return crucible_hash_plain(block, bs) == rc->hash ? 0 : CE_HASH_MISMATCH;
}

int crucible_open_blocks(struct crucible_cipher *cipher, uint8_t *data, uint32_t bs, uint64_t n,
                         const struct crucible_read_context *rc, uint64_t *bad)
{
    for (uint64_t i = 0; i < n; i++) {
        int kind = open_block(cipher, data + i * bs, bs, &rc[i]);
        if (kind) {
            *bad = i;
            return kind;
        }
    }
    return 0;
}

bool crucible_block_hash_ok(const struct crucible_block_context *ctx, const uint8_t *data,
                            uint32_t bs)
{
    uint64_t h = ctx->encrypted ? crucible_hash_encrypted(ctx->nonce, ctx->tag, data, bs)
                                : crucible_hash_plain(data, bs);
    return h == ctx->hash;
}

struct crucible_read_context crucible_read_context_of(const struct crucible_block_context *ctx)
{
    struct crucible_read_context rc = {.kind = CRC_EMPTY};
    if (!ctx)
        return rc;
    if (ctx->encrypted) {
        rc.kind = CRC_ENCRYPTED;
        memcpy(rc.nonce, ctx->nonce, sizeof(rc.nonce));
        memcpy(rc.tag, ctx->tag, sizeof(rc.tag));
    } else {
        rc.kind = CRC_UNENCRYPTED;
        rc.hash = ctx->hash;
    }
    return rc;
}
