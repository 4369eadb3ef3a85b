/* virtio-vsock packet headers: the wire layout (every field at its offset,
 * little-endian), and each check a guest packet must pass, with the error
 * class it gets and whether it is answered with a RST. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "virtio/vsock_packet.h"

#define GUEST_CID 42

static struct vsock_hdr good(void)
{
    return (struct vsock_hdr){
        .src_cid = GUEST_CID,
        .dst_cid = VSOCK_HOST_CID,
        .src_port = 1025,
        .dst_port = 5000,
        .type = VSOCK_TYPE_STREAM,
        .op = VSOCK_OP_REQUEST,
        .buf_alloc = 65536,
    };
}

/* Encodes h and parses it back as a chain of chain_len bytes. */
static enum vsock_pkt_error parse(const struct vsock_hdr *h, uint64_t chain_len,
                                  struct vsock_hdr *out)
{
    uint8_t raw[VSOCK_HDR_SIZE];
    vsock_hdr_encode(h, raw);
    return vsock_packet_parse(raw, sizeof(raw), chain_len, GUEST_CID, out);
}

static void test_wire_layout(void **state)
{
    struct vsock_hdr h = {
        .src_cid = 0x0102030405060708ull,
        .dst_cid = 0x1112131415161718ull,
        .src_port = 0x21222324,
        .dst_port = 0x31323334,
        .len = 0x41424344,
        .type = 0x5152,
        .op = 0x6162,
        .flags = 0x71727374,
        .buf_alloc = 0x81828384,
        .fwd_cnt = 0x91929394,
    };
    uint8_t raw[VSOCK_HDR_SIZE];
    vsock_hdr_encode(&h, raw);
    static const uint8_t want[VSOCK_HDR_SIZE] = {
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* src_cid */
        0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, /* dst_cid */
        0x24, 0x23, 0x22, 0x21,                         /* src_port */
        0x34, 0x33, 0x32, 0x31,                         /* dst_port */
        0x44, 0x43, 0x42, 0x41,                         /* len */
        0x52, 0x51,                                     /* type */
        0x62, 0x61,                                     /* op */
        0x74, 0x73, 0x72, 0x71,                         /* flags */
        0x84, 0x83, 0x82, 0x81,                         /* buf_alloc */
        0x94, 0x93, 0x92, 0x91,                         /* fwd_cnt */
    };
    assert_memory_equal(raw, want, sizeof(want));
    struct vsock_hdr back;
    vsock_hdr_decode(raw, &back);
    assert_memory_equal(&back, &h, sizeof(h));
}

static void test_valid_packets(void **state)
{
    struct vsock_hdr h = good(), out;
    for (uint16_t op = VSOCK_OP_REQUEST; op <= VSOCK_OP_CREDIT_REQUEST; op++) {
        h.op = op;
        assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_OK);
        assert_int_equal(out.op, op);
    }
    h.op = VSOCK_OP_RW;
    h.len = 100;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE + 100, &out), VSOCK_PKT_OK);
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE + 200, &out), VSOCK_PKT_OK); /* slack after */
    h.len = VSOCK_MAX_PAYLOAD;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE + VSOCK_MAX_PAYLOAD, &out), VSOCK_PKT_OK);
    h.len = 0;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_OK);
    h.op = VSOCK_OP_SHUTDOWN;
    for (uint32_t f = 0; f <= 3; f++) {
        h.flags = f;
        assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_OK);
    }
}

static void test_refusals(void **state)
{
    struct vsock_hdr h, out;
    uint8_t raw[VSOCK_HDR_SIZE];
    h = good();
    vsock_hdr_encode(&h, raw);
    assert_int_equal(
        vsock_packet_parse(raw, VSOCK_HDR_SIZE - 1, VSOCK_HDR_SIZE - 1, GUEST_CID, &out),
        VSOCK_PKT_SHORT);
    assert_int_equal(vsock_packet_parse(raw, 0, 0, GUEST_CID, &out), VSOCK_PKT_SHORT);
    /* A chain shorter than what the caller copied still is short. */
    assert_int_equal(vsock_packet_parse(raw, VSOCK_HDR_SIZE, 10, GUEST_CID, &out), VSOCK_PKT_SHORT);

    h = good();
    h.src_cid = GUEST_CID + 1;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_SRC_CID);
    h.src_cid = GUEST_CID | 1ull << 32; /* the upper half counts */
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_SRC_CID);
    h = good();
    h.dst_cid = 3;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_DST_CID);
    h.dst_cid = GUEST_CID;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_DST_CID);
    h = good();
    h.type = 2; /* SEQPACKET: not offered */
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_TYPE);
    h.type = 0;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_TYPE);
    h = good();
    h.op = 0;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_OP);
    h.op = 8;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_OP);
    h.op = 0xffff;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_OP);
    h = good();
    h.op = VSOCK_OP_RW;
    h.len = VSOCK_MAX_PAYLOAD + 1;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE + VSOCK_MAX_PAYLOAD + 1, &out), VSOCK_PKT_TOO_BIG);
    h.len = UINT32_MAX;
    assert_int_equal(parse(&h, UINT64_MAX, &out), VSOCK_PKT_TOO_BIG);
    h.len = 101;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE + 100, &out), VSOCK_PKT_LEN);
    h.len = 1;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_LEN);
    h = good();
    h.len = 4; /* a REQUEST with payload */
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE + 4, &out), VSOCK_PKT_DATA_ON_CONTROL);
    h.op = VSOCK_OP_CREDIT_UPDATE;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE + 4, &out), VSOCK_PKT_DATA_ON_CONTROL);
    h = good();
    h.op = VSOCK_OP_SHUTDOWN;
    h.flags = 4;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_FLAGS);
    h.flags = 0x80000003;
    assert_int_equal(parse(&h, VSOCK_HDR_SIZE, &out), VSOCK_PKT_FLAGS);
    /* The decoded header is there for the caller's log and its RST. */
    assert_int_equal(out.src_port, 1025);
    assert_int_equal(out.dst_port, 5000);
}

static void test_which_refusals_are_answered(void **state)
{
    struct vsock_hdr h = good();
    assert_false(vsock_pkt_error_answered(VSOCK_PKT_SHORT, &h));
    assert_false(vsock_pkt_error_answered(VSOCK_PKT_SRC_CID, &h));
    assert_true(vsock_pkt_error_answered(VSOCK_PKT_DST_CID, &h));
    assert_true(vsock_pkt_error_answered(VSOCK_PKT_TYPE, &h));
    assert_true(vsock_pkt_error_answered(VSOCK_PKT_LEN, &h));
    assert_true(vsock_pkt_error_answered(VSOCK_PKT_FLAGS, &h));
    h.op = VSOCK_OP_RST;
    assert_false(vsock_pkt_error_answered(VSOCK_PKT_TYPE, &h)); /* never a RST for a RST */
    for (int e = VSOCK_PKT_OK; e <= VSOCK_PKT_FLAGS; e++)
        assert_true(strlen(vsock_pkt_error_str((enum vsock_pkt_error)e)) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_layout),
        cmocka_unit_test(test_valid_packets),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_which_refusals_are_answered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
