/* Sealing and checking blocks as crucible's upstairs and downstairs do
 * (block/crucible/blocks.c): plain and encrypted volumes, a write's blocks
 * through what a downstairs returns back to the data; never-written blocks
 * (zeroes pass, anything else is MissingBlockContext); a flipped data bit
 * (HashMismatch, or DecryptionError when encrypted); a context of the other
 * kind; a downstairs' hash check of written blocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "block/crucible/blocks.h"

enum { BS = 512, N = 8 };

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 13 + seed);
}

/* Seals, then opens what a downstairs storing the blocks would return. */
static void round_trip(struct crucible_cipher *cipher)
{
    static uint8_t plain[N * BS], data[N * BS];
    fill(plain, sizeof(plain), 3);
    memcpy(data, plain, sizeof(data));
    struct crucible_block_context ctx[N];
    assert_int_equal(crucible_seal_blocks(cipher, data, BS, N, ctx), 0);
    if (cipher)
        assert_memory_not_equal(data, plain, sizeof(data));
    else
        assert_memory_equal(data, plain, sizeof(data));
    struct crucible_read_context rc[N];
    for (int i = 0; i < N; i++) {
        assert_true(crucible_block_hash_ok(&ctx[i], data + i * BS, BS));
        rc[i] = crucible_read_context_of(&ctx[i]);
        assert_int_equal(rc[i].kind, cipher ? CRC_ENCRYPTED : CRC_UNENCRYPTED);
    }
    /* A downstairs refuses a block whose data does not match its hash;
     * an upstairs reading it stops at that block (the blocks before it
     * are opened in place: the whole read is an error then). */
    static uint8_t sealed[N * BS];
    memcpy(sealed, data, sizeof(sealed));
    data[BS + 7] ^= 1;
    assert_false(crucible_block_hash_ok(&ctx[1], data + BS, BS));
    uint64_t bad = 99;
    assert_int_equal(crucible_open_blocks(cipher, data, BS, N, rc, &bad),
                     cipher ? CE_DECRYPTION_ERROR : CE_HASH_MISMATCH);
    assert_int_equal(bad, 1);
    memcpy(data, sealed, sizeof(data));
    assert_int_equal(crucible_open_blocks(cipher, data, BS, N, rc, &bad), 0);
    assert_memory_equal(data, plain, sizeof(data));

    /* Never written: zeroes pass, other bytes do not. */
    struct crucible_read_context empty[2] = {crucible_read_context_of(NULL),
                                             crucible_read_context_of(NULL)};
    static uint8_t blank[2 * BS];
    memset(blank, 0, sizeof(blank));
    assert_int_equal(crucible_open_blocks(cipher, blank, BS, 2, empty, &bad), 0);
    blank[BS] = 1;
    assert_int_equal(crucible_open_blocks(cipher, blank, BS, 2, empty, &bad),
                     CE_MISSING_BLOCK_CONTEXT);
    assert_int_equal(bad, 1);
}

static void test_plain(void **state)
{
    round_trip(NULL);
    /* An encrypted context on a plain volume is refused. */
    uint8_t block[BS] = {1};
    struct crucible_read_context rc = {.kind = CRC_ENCRYPTED};
    uint64_t bad;
    assert_int_equal(crucible_open_blocks(NULL, block, BS, 1, &rc, &bad), CE_MISSING_BLOCK_CONTEXT);
}

static void test_encrypted(void **state)
{
    uint8_t key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(200 - i);
    char why[128];
    struct crucible_cipher *c = crucible_cipher_open(key, sizeof(key), why, sizeof(why));
    assert_non_null(c);
    round_trip(c);
    /* A plain context on an encrypted volume is refused. */
    uint8_t block[BS] = {1};
    struct crucible_read_context rc = {.kind = CRC_UNENCRYPTED,
                                       .hash = crucible_hash_plain(block, BS)};
    uint64_t bad;
    assert_int_equal(crucible_open_blocks(c, block, BS, 1, &rc, &bad), CE_MISSING_BLOCK_CONTEXT);
    crucible_cipher_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_encrypted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
