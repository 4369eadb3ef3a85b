/* Blocks as an upstairs sends and receives them: a write's blocks sealed
 * (encrypted in place with a key, and given their context), a read's
 * blocks checked against the contexts the downstairs returned (and
 * decrypted), and what a downstairs checks and returns. The rules are
 * crucible's: an Empty context is a never-written block and must read as
 * zeroes; a context of the other kind than the volume's is an error. */
#ifndef BLOCK_CRUCIBLE_BLOCKS_H
#define BLOCK_CRUCIBLE_BLOCKS_H

#include <stdint.h>

#include "block/crucible/block_crypto.h"
#include "block/crucible/protocol.h"

/* Seals n blocks of bs bytes for a Write: with a cipher each is encrypted
 * in place under a fresh nonce; ctx[i] gets its hash (and nonce and tag).
 * Returns 0 or -1 (encryption failed). */
int crucible_seal_blocks(struct crucible_cipher *cipher, uint8_t *data, uint32_t bs, uint64_t n,
                         struct crucible_block_context *ctx);

/* Checks n blocks of bs bytes of a ReadResponse against rc[0..n), and
 * decrypts them in place with a cipher. Returns 0, or the CrucibleError
 * kind of the first bad block (CE_HASH_MISMATCH, CE_DECRYPTION_ERROR,
 * CE_MISSING_BLOCK_CONTEXT) with its index in *bad. */
int crucible_open_blocks(struct crucible_cipher *cipher, uint8_t *data, uint32_t bs, uint64_t n,
                         const struct crucible_read_context *rc, uint64_t *bad);

/* A downstairs' check of a written block: its hash over what it stores
 * (the ciphertext, after nonce and tag, when encrypted). */
bool crucible_block_hash_ok(const struct crucible_block_context *ctx, const uint8_t *data,
                            uint32_t bs);

/* The context a downstairs returns for a block stored with ctx (NULL: never
 * written). */
struct crucible_read_context crucible_read_context_of(const struct crucible_block_context *ctx);

#endif
