/* Block hashes and encryption as crucible does them (block_crypto.h):
 * libxxhash's XXH64 and libgcrypt's AES-GCM-SIV. */
#include "block/crucible/block_crypto.h"

#include <errno.h>
#include <gcrypt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
/* XXH64_state_t on the stack. */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

uint64_t crucible_hash_plain(const void *data, size_t len)
{
    return XXH64(data, len, 0);
}

uint64_t crucible_hash_encrypted(const uint8_t nonce[CRUCIBLE_NONCE_LEN],
                                 const uint8_t tag[CRUCIBLE_TAG_LEN], const void *data, size_t len)
{
    XXH64_state_t state;
    XXH64_reset(&state, 0);
    XXH64_update(&state, nonce, CRUCIBLE_NONCE_LEN);
    XXH64_update(&state, tag, CRUCIBLE_TAG_LEN);
    XXH64_update(&state, data, len);
    return XXH64_digest(&state);
}

struct crucible_cipher {
    gcry_cipher_hd_t hd;
};

static pthread_once_t gcrypt_once = PTHREAD_ONCE_INIT;
static bool gcrypt_ok;

static void gcrypt_init(void)
{
    /* Version 1.10 brought GCM-SIV. */
    if (!gcry_check_version("1.10.0"))
        return;
    gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
    gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    gcrypt_ok = true;
}

struct crucible_cipher *crucible_cipher_open(const uint8_t *key, size_t key_len, char *why,
                                             size_t why_size)
{
    pthread_once(&gcrypt_once, gcrypt_init);
    if (!gcrypt_ok) {
        snprintf(why, why_size, "libgcrypt %s has no AES-GCM-SIV (1.10 or later needed)",
                 gcry_check_version(NULL));
        return NULL;
    }
    if (key_len != 32 && key_len != 16) {
        snprintf(why, why_size, "a key of %zu bytes (32 expected)", key_len);
        return NULL;
    }
    struct crucible_cipher *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    gcry_error_t err =
        gcry_cipher_open(&c->hd, key_len == 32 ? GCRY_CIPHER_AES256 : GCRY_CIPHER_AES128,
                         GCRY_CIPHER_MODE_GCM_SIV, 0);
    if (!err)
        err = gcry_cipher_setkey(c->hd, key, key_len);
    if (err) {
        snprintf(why, why_size, "AES-GCM-SIV: %s", gcry_strerror(err));
        if (c->hd)
            gcry_cipher_close(c->hd);
        free(c);
        return NULL;
    }
    return c;
}

void crucible_cipher_close(struct crucible_cipher *c)
{
    if (c) {
        gcry_cipher_close(c->hd);
        free(c);
    }
}

int crucible_encrypt(struct crucible_cipher *c, void *data, size_t len,
                     uint8_t nonce[CRUCIBLE_NONCE_LEN], bool fresh_nonce,
                     uint8_t tag[CRUCIBLE_TAG_LEN])
{
    if (fresh_nonce && getrandom(nonce, CRUCIBLE_NONCE_LEN, 0) != CRUCIBLE_NONCE_LEN)
        return -1;
    /* GCM-SIV takes the whole message in one final call. */
    if (gcry_cipher_reset(c->hd) || gcry_cipher_setiv(c->hd, nonce, CRUCIBLE_NONCE_LEN) ||
        gcry_cipher_final(c->hd) || gcry_cipher_encrypt(c->hd, data, len, NULL, 0) ||
        gcry_cipher_gettag(c->hd, tag, CRUCIBLE_TAG_LEN))
        return -1;
    return 0;
}

int crucible_decrypt(struct crucible_cipher *c, void *data, size_t len,
                     const uint8_t nonce[CRUCIBLE_NONCE_LEN], const uint8_t tag[CRUCIBLE_TAG_LEN])
{
    if (gcry_cipher_reset(c->hd) || gcry_cipher_setiv(c->hd, nonce, CRUCIBLE_NONCE_LEN) ||
        gcry_cipher_set_decryption_tag(c->hd, tag, CRUCIBLE_TAG_LEN) || gcry_cipher_final(c->hd) ||
        gcry_cipher_decrypt(c->hd, data, len, NULL, 0))
        return -1;
    return 0;
}
