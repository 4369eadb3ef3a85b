/* What crucible stores with each block: an integrity hash (XXH64 with
 * seed 0 over the block, or, for an encrypted block, over its nonce, tag
 * and ciphertext, so a downstairs can check it without the key) and, with
 * encryption_key, AES-256-GCM-SIV of the block in place with a random
 * 12-byte nonce, no associated data and a detached 16-byte tag. */
#ifndef BLOCK_CRUCIBLE_BLOCK_CRYPTO_H
#define BLOCK_CRUCIBLE_BLOCK_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRUCIBLE_KEY_LEN 32
#define CRUCIBLE_NONCE_LEN 12
#define CRUCIBLE_TAG_LEN 16

uint64_t crucible_hash_plain(const void *data, size_t len);
uint64_t crucible_hash_encrypted(const uint8_t nonce[CRUCIBLE_NONCE_LEN],
                                 const uint8_t tag[CRUCIBLE_TAG_LEN], const void *data, size_t len);

/* One key's cipher; not for two threads at once. */
struct crucible_cipher;

/* Initialises libgcrypt on first use (call before entering the sandbox).
 * key_len is 32 (AES-256, crucible's) or 16 (AES-128, for known-answer
 * tests). NULL on failure, with why filled. */
struct crucible_cipher *crucible_cipher_open(const uint8_t *key, size_t key_len, char *why,
                                             size_t why_size);
void crucible_cipher_close(struct crucible_cipher *c);

/* Encrypts data in place under nonce (random when fresh_nonce: the nonce
 * is then written to nonce), writes the tag. Returns 0 or -1. */
int crucible_encrypt(struct crucible_cipher *c, void *data, size_t len,
                     uint8_t nonce[CRUCIBLE_NONCE_LEN], bool fresh_nonce,
                     uint8_t tag[CRUCIBLE_TAG_LEN]);
/* Decrypts data in place; -1 when the tag does not match (data is then
 * unspecified). */
int crucible_decrypt(struct crucible_cipher *c, void *data, size_t len,
                     const uint8_t nonce[CRUCIBLE_NONCE_LEN], const uint8_t tag[CRUCIBLE_TAG_LEN]);

#endif
