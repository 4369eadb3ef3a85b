#include "virtio/vsock_packet.h"

#include "common/bytes.h"

void vsock_hdr_decode(const uint8_t b[VSOCK_HDR_SIZE], struct vsock_hdr *h)
{
    h->src_cid = le64_load(b + 0);
    h->dst_cid = le64_load(b + 8);
    h->src_port = le32_load(b + 16);
    h->dst_port = le32_load(b + 20);
    h->len = le32_load(b + 24);
    h->type = le16_load(b + 28);
    h->op = le16_load(b + 30);
    h->flags = le32_load(b + 32);
    h->buf_alloc = le32_load(b + 36);
    h->fwd_cnt = le32_load(b + 40);
}

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t b[VSOCK_HDR_SIZE])
{
    le64_store(b + 0, h->src_cid);
    le64_store(b + 8, h->dst_cid);
    le32_store(b + 16, h->src_port);
    le32_store(b + 20, h->dst_port);
    le32_store(b + 24, h->len);
    le16_store(b + 28, h->type);
    le16_store(b + 30, h->op);
    le32_store(b + 32, h->flags);
    le32_store(b + 36, h->buf_alloc);
    le32_store(b + 40, h->fwd_cnt);
}

enum vsock_pkt_error vsock_packet_parse(const uint8_t *bytes, size_t have, uint64_t chain_len,
                                        uint64_t guest_cid, struct vsock_hdr *out)
{
    if (have < VSOCK_HDR_SIZE || chain_len < VSOCK_HDR_SIZE)
        return VSOCK_PKT_SHORT;
    vsock_hdr_decode(bytes, out);
    if (out->src_cid != guest_cid)
        return VSOCK_PKT_SRC_CID;
    if (out->dst_cid != VSOCK_HOST_CID)
        return VSOCK_PKT_DST_CID;
    if (out->type != VSOCK_TYPE_STREAM)
        return VSOCK_PKT_TYPE;
    if (out->op < VSOCK_OP_REQUEST || out->op > VSOCK_OP_CREDIT_REQUEST)
        return VSOCK_PKT_OP;
    if (out->len > VSOCK_MAX_PAYLOAD)
        return VSOCK_PKT_TOO_BIG;
    if (out->len > chain_len - VSOCK_HDR_SIZE)
        return VSOCK_PKT_LEN;
    if (out->op != VSOCK_OP_RW && out->len != 0)
        return VSOCK_PKT_DATA_ON_CONTROL;
    if (out->op == VSOCK_OP_SHUTDOWN &&
        (out->flags & ~(uint32_t)(VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)))
        return VSOCK_PKT_FLAGS;
    return VSOCK_PKT_OK;
}

const char *vsock_pkt_error_str(enum vsock_pkt_error e)
{
    switch (e) {
    case VSOCK_PKT_OK:
        return "valid";
    case VSOCK_PKT_SHORT:
        return "shorter than the 44-byte header";
    case VSOCK_PKT_SRC_CID:
        return "src_cid is not the guest's CID";
    case VSOCK_PKT_DST_CID:
        return "dst_cid is not the host (2)";
    case VSOCK_PKT_TYPE:
        return "type is not stream";
    case VSOCK_PKT_OP:
        return "unknown op";
    case VSOCK_PKT_TOO_BIG:
        return "len over 64 KiB";
    case VSOCK_PKT_LEN:
        return "len past the end of the chain";
    case VSOCK_PKT_DATA_ON_CONTROL:
        return "payload on a control packet";
    case VSOCK_PKT_FLAGS:
        return "unknown SHUTDOWN flags";
    }
    return "unknown error";
}

bool vsock_pkt_error_answered(enum vsock_pkt_error e, const struct vsock_hdr *h)
{
    return e != VSOCK_PKT_SHORT && e != VSOCK_PKT_SRC_CID && h->op != VSOCK_OP_RST;
}
