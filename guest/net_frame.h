/*
 * The test frames of the network test: one generator for the test guest
 * (net_test.c, freestanding) and the host benchmark (bench/net.c), so only
 * static inline functions on bytes, no library calls.
 * tests/kvm/net_peer.py has the same generator in Python.
 *
 * Frame I of direction D ('G' = 0x47 guest to host, 'H' = 0x48 host to
 * guest), seed S and largest size M has net_frame_len(S, D, I, M) bytes: M
 * for I = 0, 60 for I = 1, else 60 + mix(S ^ D << 24 ^ I * 0x9E3779B9) %
 * (M - 59) (the benchmarks cut every frame to one size instead).
 * Bytes 0-5: destination; 6-11: source; 12-13: ethertype 0x88b5; 14: D;
 * 15: 1; 16-19: I; 20-21: the length; 22-23: S & 0xffff (little-endian);
 * from byte 24 the little-endian words mix(K), mix(K + 1), ..., K =
 * mix(mix(S ^ D << 24) + I), cut at the length. mix is the 32-bit
 * "lowbias32" hash; arithmetic is modulo 2^32.
 */
#ifndef TESTGUEST_NET_FRAME_H
#define TESTGUEST_NET_FRAME_H

#include <stdbool.h>
#include <stdint.h>

#define NET_FRAME_MIN 60
#define NET_FRAME_MAX 1514
#define NET_FRAME_ETHERTYPE 0x88b5
#define NET_FRAME_HEADER 24 /* bytes before the generated words */
#define NET_FRAME_GUEST 'G'
#define NET_FRAME_HOST 'H'
#define NET_FRAME_SAME UINT32_MAX /* net_frame_diff: no byte differs */

/* The frames of one direction of one test. */
struct net_frames {
    uint32_t seed;
    uint8_t dir;              /* NET_FRAME_GUEST or NET_FRAME_HOST */
    const uint8_t *dst, *src; /* 6 bytes each */
};

/* lowbias32. */
static inline uint32_t net_frame_mix(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* The length of frame `index` when the largest is `max` (60..1514). */
static inline uint32_t net_frame_len(const struct net_frames *g, uint32_t index, uint32_t max)
{
    if (index == 0)
        return max;
    if (index == 1)
        return NET_FRAME_MIN;
    return NET_FRAME_MIN +
           net_frame_mix(g->seed ^ ((uint32_t)g->dir << 24) ^ (index * 0x9E3779B9u)) %
               (max - NET_FRAME_MIN + 1);
}

static inline void net_frame_put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Bytes 0..23 of frame `index` of `len` bytes. */
static inline void net_frame_header(const struct net_frames *g, uint32_t index, uint32_t len,
                                    uint8_t h[NET_FRAME_HEADER])
{
    for (unsigned i = 0; i < 6; i++) {
        h[i] = g->dst[i];
        h[6 + i] = g->src[i];
    }
    h[12] = NET_FRAME_ETHERTYPE >> 8;
    h[13] = NET_FRAME_ETHERTYPE & 0xff;
    h[14] = g->dir;
    h[15] = 1;
    net_frame_put16(h + 16, index);
    net_frame_put16(h + 18, index >> 16);
    net_frame_put16(h + 20, len);
    net_frame_put16(h + 22, g->seed);
}

/* K: the first generated word of frame `index` is mix(K). */
static inline uint32_t net_frame_key(const struct net_frames *g, uint32_t index)
{
    return net_frame_mix(net_frame_mix(g->seed ^ ((uint32_t)g->dir << 24)) + index);
}

/* Writes frame `index` of `len` bytes at f. */
static inline void net_frame_fill(const struct net_frames *g, uint32_t index, uint32_t len,
                                  uint8_t *f)
{
    uint8_t h[NET_FRAME_HEADER];
    net_frame_header(g, index, len, h);
    for (uint32_t o = 0; o < NET_FRAME_HEADER && o < len; o++)
        f[o] = h[o];
    uint32_t key = net_frame_key(g, index);
    for (uint32_t o = NET_FRAME_HEADER, k = 0; o < len; o += 4, k++) {
        uint32_t w = net_frame_mix(key + k);
        for (uint32_t b = 0; b < 4 && o + b < len; b++)
            f[o + b] = (uint8_t)(w >> (8 * b));
    }
}

/* Byte `at` (below len) of frame `index` of `len` bytes. */
static inline uint8_t net_frame_byte(const struct net_frames *g, uint32_t index, uint32_t len,
                                     uint32_t at)
{
    if (at < NET_FRAME_HEADER) {
        uint8_t h[NET_FRAME_HEADER];
        net_frame_header(g, index, len, h);
        return h[at];
    }
    uint32_t w = net_frame_mix(net_frame_key(g, index) + (at - NET_FRAME_HEADER) / 4);
    return (uint8_t)(w >> (8 * ((at - NET_FRAME_HEADER) % 4)));
}

/* Compares the len bytes at f with frame `index` of want_len bytes:
 * NET_FRAME_SAME when equal, else the offset of the first byte that
 * differs, which is the shorter length when one is the other cut short. */
static inline uint32_t net_frame_diff(const struct net_frames *g, uint32_t index, uint32_t want_len,
                                      const uint8_t *f, uint32_t len)
{
    uint32_t n = len < want_len ? len : want_len;
    uint8_t h[NET_FRAME_HEADER];
    net_frame_header(g, index, want_len, h);
    for (uint32_t o = 0; o < NET_FRAME_HEADER && o < n; o++)
        if (f[o] != h[o])
            return o;
    uint32_t key = net_frame_key(g, index);
    for (uint32_t o = NET_FRAME_HEADER, k = 0; o < n; o += 4, k++) {
        uint32_t w = net_frame_mix(key + k);
        for (uint32_t b = 0; b < 4 && o + b < n; b++)
            if (f[o + b] != (uint8_t)(w >> (8 * b)))
                return o + b;
    }
    return len == want_len ? NET_FRAME_SAME : n;
}

/* The index and the length a frame's header states (f: at least
 * NET_FRAME_HEADER bytes). */
static inline uint32_t net_frame_stated_index(const uint8_t *f)
{
    return f[16] | (uint32_t)f[17] << 8 | (uint32_t)f[18] << 16 | (uint32_t)f[19] << 24;
}

static inline uint32_t net_frame_stated_len(const uint8_t *f)
{
    return f[20] | (uint32_t)f[21] << 8;
}

static inline bool net_frame_is_test(const uint8_t *f)
{
    return f[12] == (NET_FRAME_ETHERTYPE >> 8) && f[13] == (NET_FRAME_ETHERTYPE & 0xff);
}

#endif
