/* virtio-vsock packets (VIRTIO 1.2 section 5.10.6): the 44-byte header in
 * front of every packet on the rx and tx queues, its wire encoding, and
 * the checks a packet from the guest passes before the device acts on
 * it. Pure functions: no state, no I/O, so the checks are unit-tested on
 * their own. */
#ifndef VIRTIO_VSOCK_PACKET_H
#define VIRTIO_VSOCK_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VSOCK_HDR_SIZE 44
#define VSOCK_HOST_CID 2 /* VMADDR_CID_HOST: the device's own side */
#define VSOCK_TYPE_STREAM 1
/* The largest payload accepted in one packet (what Linux sends at most). */
#define VSOCK_MAX_PAYLOAD 65536

enum vsock_op {
    VSOCK_OP_REQUEST = 1,
    VSOCK_OP_RESPONSE = 2,
    VSOCK_OP_RST = 3,
    VSOCK_OP_SHUTDOWN = 4,
    VSOCK_OP_RW = 5,
    VSOCK_OP_CREDIT_UPDATE = 6,
    VSOCK_OP_CREDIT_REQUEST = 7,
};

/* SHUTDOWN flags: the sender will receive / send no more data. */
#define VSOCK_SHUTDOWN_RCV 1
#define VSOCK_SHUTDOWN_SEND 2

/* The event queue's one event (a le32 id). */
#define VSOCK_EVENT_TRANSPORT_RESET 0

/* Feature bits (VIRTIO 1.2 5.10.3). */
#define VSOCK_F_STREAM 0
#define VSOCK_F_SEQPACKET 1

struct vsock_hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port;
    uint32_t len;
    uint16_t type, op;
    uint32_t flags;
    uint32_t buf_alloc, fwd_cnt;
};

/* Why a packet from the guest is refused. */
enum vsock_pkt_error {
    VSOCK_PKT_OK = 0,
    VSOCK_PKT_SHORT,           /* fewer bytes than a header */
    VSOCK_PKT_SRC_CID,         /* src_cid is not the guest's CID */
    VSOCK_PKT_DST_CID,         /* dst_cid is not the host (2) */
    VSOCK_PKT_TYPE,            /* not a stream packet */
    VSOCK_PKT_OP,              /* unknown op */
    VSOCK_PKT_TOO_BIG,         /* len over VSOCK_MAX_PAYLOAD */
    VSOCK_PKT_LEN,             /* len past the bytes the chain carries */
    VSOCK_PKT_DATA_ON_CONTROL, /* payload on an op other than RW */
    VSOCK_PKT_FLAGS,           /* SHUTDOWN flags beyond RCV and SEND */
};

void vsock_hdr_decode(const uint8_t bytes[VSOCK_HDR_SIZE], struct vsock_hdr *h);
void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t bytes[VSOCK_HDR_SIZE]);

/* Checks a packet from the guest whose chain holds chain_len device-
 * readable bytes (header included); bytes holds the first min(chain_len,
 * VSOCK_HDR_SIZE) of them (have). The header is decoded into *out
 * whenever it is complete, refused or not. */
enum vsock_pkt_error vsock_packet_parse(const uint8_t *bytes, size_t have, uint64_t chain_len,
                                        uint64_t guest_cid, struct vsock_hdr *out);

/* A short phrase for a log line. */
const char *vsock_pkt_error_str(enum vsock_pkt_error e);

/* Whether a refused packet is answered with a RST: its header is whole,
 * it comes from the guest's own CID (an answer to another CID reaches no
 * one) and it is no RST itself (RSTs are never answered). */
bool vsock_pkt_error_answered(enum vsock_pkt_error e, const struct vsock_hdr *h);

#endif
