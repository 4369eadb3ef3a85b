/* Crucible's per-block hash and encryption (block/crucible/block_crypto.c):
 * the integrity hash against tests/crucible/hash-vectors.txt (written by
 * tests/crucible/golden with an XXH64 of its own, for plain blocks and for
 * nonce, tag and ciphertext); AES-GCM-SIV against RFC 8452's known answers
 * (AES-128 and AES-256, empty and 8-byte messages), then 4 KiB blocks
 * under a 256-bit key: round trip, a fresh nonce each time, and a changed
 * tag, nonce or ciphertext byte refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/crucible/block_crypto.h"

static void pattern(uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 31 + 7);
}

static void golden_nonce_tag(uint8_t nonce[12], uint8_t tag[16])
{
    for (int i = 0; i < 12; i++)
        nonce[i] = (uint8_t)(0xa0 + i);
    for (int i = 0; i < 16; i++)
        tag[i] = (uint8_t)(0xb0 + i);
}

static void test_hash_vectors(void **state)
{
    FILE *f = fopen("tests/crucible/hash-vectors.txt", "r");
    assert_non_null(f);
    char name[64];
    unsigned long long want;
    unsigned checked = 0;
    static uint8_t data[4096];
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#')
            continue;
        assert_int_equal(sscanf(line, "%63s %llx", name, &want), 2);
        size_t len = strtoul(strchr(name, '.') + 1, NULL, 10);
        assert_true(len <= sizeof(data));
        pattern(data, len);
        uint64_t got;
        if (strncmp(name, "plain.", 6) == 0) {
            got = crucible_hash_plain(data, len);
        } else {
            uint8_t nonce[12], tag[16];
            golden_nonce_tag(nonce, tag);
            got = crucible_hash_encrypted(nonce, tag, data, len);
        }
        if (got != want)
            fail_msg("%s: %016llx, crucible's %016llx", name, (unsigned long long)got, want);
        checked++;
    }
    fclose(f);
    assert_int_equal(checked, 14);
}

static void hex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* RFC 8452, Appendix C: key 01 00.., nonce 03 00.., no associated data. */
static void test_rfc8452_known_answers(void **state)
{
    static const struct {
        size_t key_len;
        size_t len;
        const char *ciphertext, *tag;
    } cases[] = {
        {16, 0, "", "dc20e2d83f25705bb49e439eca56de25"},
        {16, 8, "b5d839330ac7b786", "578782fff6013b815b287c22493a364c"},
        {32, 0, "", "07f5f4169bbf55a8400cd47ea6fd400f"},
        {32, 8, "c2ef328e5c71c83b", "843122130f7364b761e0b97427e3df28"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t key[32] = {1}, nonce[12] = {3}, tag[16], want_tag[16], want_ct[8];
        uint8_t data[8] = {1}, plain[8] = {1};
        char why[128];
        struct crucible_cipher *c = crucible_cipher_open(key, cases[i].key_len, why, sizeof(why));
        assert_non_null(c);
        assert_int_equal(crucible_encrypt(c, data, cases[i].len, nonce, false, tag), 0);
        hex(cases[i].tag, want_tag, 16);
        hex(cases[i].ciphertext, want_ct, cases[i].len);
        assert_memory_equal(tag, want_tag, 16);
        if (cases[i].len)
            assert_memory_equal(data, want_ct, cases[i].len);
        assert_int_equal(crucible_decrypt(c, data, cases[i].len, nonce, tag), 0);
        assert_memory_equal(data, plain, cases[i].len);
        crucible_cipher_close(c);
    }
}

static void test_blocks(void **state)
{
    uint8_t key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(i * 5 + 1);
    char why[128];
    struct crucible_cipher *c = crucible_cipher_open(key, 32, why, sizeof(why));
    assert_non_null(c);
    static uint8_t plain[4096], block[4096], again[4096];
    pattern(plain, sizeof(plain));
    memcpy(block, plain, sizeof(block));
    memcpy(again, plain, sizeof(again));
    uint8_t nonce[12], nonce2[12], tag[16], tag2[16];
    assert_int_equal(crucible_encrypt(c, block, sizeof(block), nonce, true, tag), 0);
    assert_int_equal(crucible_encrypt(c, again, sizeof(again), nonce2, true, tag2), 0);
    /* Fresh nonces: the same block encrypts differently. */
    assert_memory_not_equal(nonce, nonce2, 12);
    assert_memory_not_equal(block, again, sizeof(block));
    assert_memory_not_equal(block, plain, sizeof(block));
    /* A changed ciphertext byte, tag or nonce is refused. */
    static uint8_t copy[4096];
    memcpy(copy, block, sizeof(copy));
    copy[100] ^= 1;
    assert_int_equal(crucible_decrypt(c, copy, sizeof(copy), nonce, tag), -1);
    memcpy(copy, block, sizeof(copy));
    uint8_t bad[16];
    memcpy(bad, tag, 16);
    bad[0] ^= 0x80;
    assert_int_equal(crucible_decrypt(c, copy, sizeof(copy), nonce, bad), -1);
    memcpy(copy, block, sizeof(copy));
    assert_int_equal(crucible_decrypt(c, copy, sizeof(copy), nonce2, tag), -1);
    /* The right ones give the block back. */
    assert_int_equal(crucible_decrypt(c, block, sizeof(block), nonce, tag), 0);
    assert_memory_equal(block, plain, sizeof(block));
    /* Another key cannot. */
    key[0] ^= 1;
    struct crucible_cipher *other = crucible_cipher_open(key, 32, why, sizeof(why));
    assert_int_equal(crucible_decrypt(other, again, sizeof(again), nonce2, tag2), -1);
    crucible_cipher_close(other);
    crucible_cipher_close(c);
    assert_null(crucible_cipher_open(key, 24, why, sizeof(why)));
    assert_string_equal(why, "a key of 24 bytes (32 expected)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_vectors),
        cmocka_unit_test(test_rfc8452_known_answers),
        cmocka_unit_test(test_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
