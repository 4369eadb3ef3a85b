/* pci-virtio-socket's device (virtio-vsock) driven through its rings as a
 * guest driver would, against real host sockets made by the test on
 * loopback (an ephemeral TCP port on 127.0.0.1, UNIX sockets in a
 * temporary directory): identity and configuration, a guest connection
 * to a mapped TCP port and to a UNIX one, RST for an unmapped or refused
 * port, data both ways byte for byte with the guest's credit never
 * exceeded, credit updates, half-close each way, host-initiated
 * connections through uds_path, the connection cap, malformed packets and
 * credit lies, reset, state and the TRANSPORT_RESET event after a load,
 * and the listener path's safety rules. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/bytes.h"
#include "core/bus.h"
#include "devices/device.h"
#include "pci/pci.h"
#include "virtio/virtio_pci.h"
#include "virtio/virtio_vsock.h"
#include "virtio/vsock_packet.h"

#include "support/fake_mem.h"
#include "support/poll.h"
#include "support/prereq.h"
#include "support/state.h"
#include "support/vp_regs.h"
#include "support/vring.h"

#define RAM_SIZE 0x1000000ull
#define NQ 3
#define RXQ 0
#define TXQ 1
#define EVQ 2
#define RING_SIZE 64
#define BUF_STRIDE 0x11000ull /* room for a 64 KiB packet and its header */
#define RX_BUF(d) (0x400000ull + (d)*BUF_STRIDE)
#define TX_BUF(d) (0x900000ull + (d) / 2 * BUF_STRIDE) /* two descriptors per chain */
#define EV_BUF 0xe00000ull
#define GUEST_CID 7
#define MAPPED_PORT 5000
#define UNIX_PORT 5001
#define REFUSED_PORT 5002
#define GUEST_BUF_ALLOC 16384

#define F(bit) (1ull << (bit))
#define FEATURES (F(VIRTIO_F_VERSION_1) | F(VSOCK_F_STREAM))

/* ---- The host side: loopback sockets made here ---- */

static char tmpdir[64];
static int tcp_listener = -1, unix_listener = -1;
static uint16_t tcp_port, refused_tcp_port;

static void set_timeout(int fd)
{
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int tcp_listen(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 64), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    set_timeout(fd);
    return fd;
}

static void unix_addr(struct sockaddr_un *a, const char *name)
{
    *a = (struct sockaddr_un){.sun_family = AF_UNIX};
    snprintf(a->sun_path, sizeof(a->sun_path), "%s/%s", tmpdir, name);
}

static int unix_listen(const char *name)
{
    struct sockaddr_un a;
    unix_addr(&a, name);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 64), 0);
    set_timeout(fd);
    return fd;
}

static int accept_one(int listener)
{
    int fd = accept(listener, NULL, NULL);
    assert_true(fd >= 0);
    set_timeout(fd);
    return fd;
}

/* Reads exactly len bytes (2 s at most between reads). */
static void host_read_exact(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        assert_true(n > 0);
        got += (size_t)n;
    }
}

static void host_write(int fd, const void *buf, size_t len)
{
    assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static bool host_sees_eof(int fd)
{
    uint8_t b;
    ssize_t n = recv(fd, &b, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

static uint8_t pattern(uint64_t i, uint8_t tag)
{
    return (uint8_t)(i * 131 + (i >> 9) + tag);
}

/* ---- The device and its guest driver ---- */

struct tdev {
    struct virtio_device *vdev;
    struct virtio_pci *vp;
    struct vring rings[NQ];
    uint16_t next_desc[NQ];
    uint16_t rx_seen, tx_sent;
    uint32_t rx_buf_len; /* what each posted rx buffer holds */
    bool rx_split;       /* header and data in two descriptors (older Linux) */
};

static struct bus pio, mmio;
static struct pci_bus pcibus;
static struct tdev dev;
static bool dev_up;

static void fake_router(void *opaque, uint8_t devfn, unsigned pin, bool level)
{
}

static void fake_msi(void *opaque, uint64_t addr, uint32_t data)
{
}

static int fake_route_add(void *opaque, uint64_t addr, uint32_t data)
{
    return 100;
}

static int fake_route_update(void *opaque, int gsi, uint64_t addr, uint32_t data)
{
    return 0;
}

static void fake_route_remove(void *opaque, int gsi)
{
}

static int fake_irqfd(void *opaque, int fd, int gsi, bool assign)
{
    return 0;
}

static struct virtio_vsock_mapping mappings[3];

static struct virtio_vsock_params default_params(void)
{
    struct sockaddr_in *in = (struct sockaddr_in *)&mappings[0].addr;
    mappings[0].port = MAPPED_PORT;
    *in = (struct sockaddr_in){.sin_family = AF_INET,
                               .sin_port = htons(tcp_port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    mappings[0].addr_len = sizeof(*in);
    mappings[1].port = UNIX_PORT;
    unix_addr((struct sockaddr_un *)&mappings[1].addr, "mapped.sock");
    mappings[1].addr_len = sizeof(struct sockaddr_un);
    in = (struct sockaddr_in *)&mappings[2].addr;
    mappings[2].port = REFUSED_PORT;
    *in = (struct sockaddr_in){.sin_family = AF_INET,
                               .sin_port = htons(refused_tcp_port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    mappings[2].addr_len = sizeof(*in);
    return (struct virtio_vsock_params){
        .name = "vsock0",
        .guest_cid = GUEST_CID,
        .mappings = mappings,
        .mapping_count = 3,
        .mem = &fake_mem,
    };
}

static void tdev_create(struct tdev *t, const struct virtio_vsock_params *p, uint8_t slot)
{
    memset(t, 0, sizeof(*t));
    t->vdev = virtio_vsock_create(p);
    assert_non_null(t->vdev);
    t->vp = virtio_pci_create(t->vdev, &(struct virtio_pci_params){
                                           .machine = NULL,
                                           .msix_sink = {.route_add = fake_route_add,
                                                         .route_update = fake_route_update,
                                                         .route_remove = fake_route_remove,
                                                         .irqfd = fake_irqfd,
                                                         .signal_msi = fake_msi},
                                       });
    assert_non_null(t->vp);
    assert_int_equal(pci_bus_add(&pcibus, &t->vp->pci, PCI_DEVFN(slot, 0)), 0);
    pci_device_config_write(&t->vp->pci, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    for (unsigned q = 0; q < NQ; q++) {
        uint64_t b = 0x100000 + q * 0x10000ull;
        t->rings[q] =
            (struct vring){.desc = b, .avail = b + 0x1000, .used = b + 0x2000, .size = RING_SIZE};
    }
}

static void tdev_destroy(struct tdev *t)
{
    struct pci_device *pdev = &t->vp->pci;
    pdev->dev.ops->destroy(&pdev->dev);
}

static void notify(struct tdev *t, unsigned q)
{
    vp_bar_write(t->vp, VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_NOTIFY_OFFSET + 4 * q, 2, q);
}

static uint16_t alloc_desc(struct tdev *t, unsigned q)
{
    return (uint16_t)(t->next_desc[q]++ % RING_SIZE);
}

/* One writable rx buffer per descriptor, at a fixed place. */
static void post_rx(struct tdev *t)
{
    uint16_t d = alloc_desc(t, RXQ);
    memset(mem_host(RX_BUF(d)), 0xee, t->rx_buf_len);
    if (t->rx_split) {
        uint16_t d2 = alloc_desc(t, RXQ);
        vring_set_desc(&t->rings[RXQ], d, RX_BUF(d), VSOCK_HDR_SIZE,
                       VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, d2);
        vring_set_desc(&t->rings[RXQ], d2, RX_BUF(d) + VSOCK_HDR_SIZE,
                       t->rx_buf_len - VSOCK_HDR_SIZE, VIRTQ_DESC_F_WRITE, 0);
    } else {
        vring_set_desc(&t->rings[RXQ], d, RX_BUF(d), t->rx_buf_len, VIRTQ_DESC_F_WRITE, 0);
    }
    vring_avail_add(&t->rings[RXQ], d);
}

/* The modern interface to DRIVER_OK, every queue, `rx_bufs` rx buffers of
 * rx_len bytes and one event buffer posted. */
static void bring_up(struct tdev *t, unsigned rx_bufs, uint32_t rx_len)
{
    vp_negotiate(t->vp, FEATURES);
    for (unsigned q = 0; q < NQ; q++) {
        struct vring *r = &t->rings[q];
        vring_clear(r);
        t->next_desc[q] = 0;
        vp_common_write(t->vp, VIRTIO_COMMON_Q_SELECT, 2, q);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_SIZE, 2, r->size);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_DESC, 8, r->desc);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_AVAIL, 8, r->avail);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_USED, 8, r->used);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_ENABLE, 2, 1);
    }
    vp_common_write(t->vp, VIRTIO_COMMON_STATUS, 1, 0x0f);
    assert_int_equal(vp_common_read(t->vp, VIRTIO_COMMON_STATUS, 1), 0x0f);
    t->rx_seen = t->tx_sent = 0;
    t->rx_buf_len = rx_len;
    for (unsigned i = 0; i < rx_bufs; i++)
        post_rx(t);
    notify(t, RXQ);
    vring_set_desc(&t->rings[EVQ], 0, EV_BUF, 8, VIRTQ_DESC_F_WRITE, 0);
    mem_put32(EV_BUF, 0xffffffff);
    vring_avail_add(&t->rings[EVQ], 0);
    t->next_desc[EVQ] = 1;
    notify(t, EVQ);
}

/* Sends a packet: the header in one descriptor, the payload (if any) in a
 * second, as Linux lays them out; or a header chain_len bytes long
 * (truncated) when chain_len is set. Waits for the device to take it. */
static void send_raw(struct tdev *t, const struct vsock_hdr *h, const void *payload,
                     uint32_t payload_len, uint32_t chain_len)
{
    struct vring *r = &t->rings[TXQ];
    uint16_t d0 = alloc_desc(t, TXQ), d1 = alloc_desc(t, TXQ);
    uint64_t buf = TX_BUF(d0);
    vsock_hdr_encode(h, mem_host(buf));
    if (chain_len) {
        vring_set_desc(r, d0, buf, chain_len, 0, 0);
    } else if (payload_len) {
        memcpy(mem_host(buf + 0x100), payload, payload_len);
        vring_set_desc(r, d0, buf, VSOCK_HDR_SIZE, VIRTQ_DESC_F_NEXT, d1);
        vring_set_desc(r, d1, buf + 0x100, payload_len, 0, 0);
    } else {
        vring_set_desc(r, d0, buf, VSOCK_HDR_SIZE, 0, 0);
    }
    vring_avail_add(r, d0);
    notify(t, TXQ);
    assert_true(vring_wait_used(r, ++t->tx_sent));
}

/* A packet from the guest's socket on guest_port to the host's host_port. */
static struct vsock_hdr ghdr(uint16_t op, uint32_t guest_port, uint32_t host_port)
{
    return (struct vsock_hdr){
        .src_cid = GUEST_CID,
        .dst_cid = VSOCK_HOST_CID,
        .src_port = guest_port,
        .dst_port = host_port,
        .type = VSOCK_TYPE_STREAM,
        .op = op,
        .buf_alloc = GUEST_BUF_ALLOC,
    };
}

static void send_op(struct tdev *t, uint16_t op, uint32_t guest_port, uint32_t host_port,
                    uint32_t fwd_cnt)
{
    struct vsock_hdr h = ghdr(op, guest_port, host_port);
    h.fwd_cnt = fwd_cnt;
    send_raw(t, &h, NULL, 0, 0);
}

static void send_data(struct tdev *t, uint32_t guest_port, uint32_t host_port, const void *data,
                      uint32_t len, uint32_t fwd_cnt)
{
    struct vsock_hdr h = ghdr(VSOCK_OP_RW, guest_port, host_port);
    h.len = len;
    h.fwd_cnt = fwd_cnt;
    send_raw(t, &h, data, len, 0);
}

/* The next packet the device put in the rx queue (its buffer is posted
 * again); false if none came within 2 s. payload holds 64 KiB. */
static bool rx_pending(void *arg)
{
    struct tdev *t = arg;
    return vring_used_idx(&t->rings[RXQ]) != t->rx_seen;
}

static bool recv_pkt(struct tdev *t, struct vsock_hdr *h, uint8_t *payload)
{
    struct vring *r = &t->rings[RXQ];
    if (!poll_until(rx_pending, t))
        return false;
    uint32_t id = vring_used_id(r, t->rx_seen), len = vring_used_len(r, t->rx_seen);
    t->rx_seen++;
    assert_true(id < RING_SIZE);
    assert_true(len >= VSOCK_HDR_SIZE && len <= t->rx_buf_len);
    vsock_hdr_decode(mem_host(RX_BUF(id)), h);
    assert_int_equal(len, VSOCK_HDR_SIZE + h->len);
    /* From the host, or a RST from the CID a packet was sent to. */
    assert_true(h->src_cid == VSOCK_HOST_CID || h->op == VSOCK_OP_RST);
    assert_int_equal(h->dst_cid, GUEST_CID);
    assert_int_equal(h->type, VSOCK_TYPE_STREAM);
    if (payload && h->len)
        memcpy(payload, mem_host(RX_BUF(id) + VSOCK_HDR_SIZE), h->len);
    post_rx(t);
    notify(t, RXQ);
    return true;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Nothing arrives in the rx queue for a while. */
static bool rx_quiet(struct tdev *t)
{
    sleep_ms(100);
    return vring_used_idx(&t->rings[RXQ]) == t->rx_seen;
}

static struct virtio_vsock_stats stats_of(struct tdev *t)
{
    struct virtio_vsock_stats s;
    virtio_vsock_get_stats(t->vdev, &s);
    return s;
}

static bool no_conns(void *arg)
{
    return stats_of(&dev).conns_open == 0;
}

static uint64_t conns_wanted;
static uint32_t dev_buf_alloc; /* what dev advertises */

static bool conns_are(void *arg)
{
    return stats_of(&dev).conns_open == conns_wanted;
}

static bool wait_conns(uint64_t n)
{
    conns_wanted = n;
    return poll_until(conns_are, NULL);
}

/* Guest port gp connects to MAPPED_PORT: the host accepts, the guest gets
 * its RESPONSE. Returns the host's end. */
static int guest_connect(struct tdev *t, uint32_t gp)
{
    struct vsock_hdr h;
    send_op(t, VSOCK_OP_REQUEST, gp, MAPPED_PORT, 0);
    int fd = accept_one(tcp_listener);
    assert_true(recv_pkt(t, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RESPONSE);
    assert_int_equal(h.src_port, MAPPED_PORT);
    assert_int_equal(h.dst_port, gp);
    assert_int_equal(h.buf_alloc, t == &dev ? dev_buf_alloc : VIRTIO_VSOCK_BUF_ALLOC);
    return fd;
}

/* ---- Fixtures ---- */

static void buses_init(void)
{
    bus_init(&pio, "pio");
    bus_init(&mmio, "mmio");
    pci_bus_init(&pcibus, &pio, &mmio);
    pci_bus_set_intx_router(&pcibus, (struct pci_intx_router){fake_router, NULL});
}

static void buses_destroy(void)
{
    pci_bus_destroy(&pcibus);
    bus_destroy(&pio);
    bus_destroy(&mmio);
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/vsock-test-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    tcp_listener = tcp_listen(&tcp_port);
    int gone = tcp_listen(&refused_tcp_port);
    close(gone); /* nothing listens there any more */
    unix_listener = unix_listen("mapped.sock");
    fake_mem_add(0, RAM_SIZE, false, 0);
    buses_init();
    struct virtio_vsock_params p = default_params();
    tdev_create(&dev, &p, 5);
    dev_up = true;
    dev_buf_alloc = VIRTIO_VSOCK_BUF_ALLOC;
    return 0;
}

static int teardown(void **state)
{
    if (dev_up)
        tdev_destroy(&dev);
    dev_up = false;
    buses_destroy();
    fake_mem_free();
    close(tcp_listener);
    close(unix_listener);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* Replaces the fixture's device with one built from p. */
static void recreate(const struct virtio_vsock_params *p)
{
    tdev_destroy(&dev);
    dev_up = false;
    buses_destroy(); /* the bus keeps its functions: a new one for the new device */
    buses_init();
    tdev_create(&dev, p, 5);
    dev_up = true;
    dev_buf_alloc = p->buf_alloc ? p->buf_alloc : VIRTIO_VSOCK_BUF_ALLOC;
}

/* stderr into a file from capture_start to capture_end, which shows it
 * and returns how many lines contain needle. */
static FILE *capture_start(int *saved)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    fflush(stderr);
    *saved = dup(STDERR_FILENO);
    assert_true(*saved >= 0);
    assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
    return f;
}

static int capture_end(FILE *f, int saved, const char *needle)
{
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        fputs(line, stderr); /* still shown */
        n += strstr(line, needle) != NULL;
    }
    fclose(f);
    return n;
}

/* ======================= Tests ======================= */

static void test_identity_config_features(void **state)
{
    struct pci_device *pdev = &dev.vp->pci;
    assert_int_equal(pci_device_config_read(pdev, PCI_VENDOR_ID, 4), 0x10121af4);
    assert_int_equal(vp_device_config_read(dev.vp, 0, 8), GUEST_CID);
    assert_int_equal(vp_device_config_read(dev.vp, 0, 4), GUEST_CID);
    assert_true(vp_device_features(dev.vp) & F(VSOCK_F_STREAM));
    assert_false(vp_device_features(dev.vp) & F(VSOCK_F_SEQPACKET));
    assert_string_equal(pdev->dev.ops->kind, "virtio-pci-vsock");

    struct virtio_vsock_params p = default_params();
    p.guest_cid = 2;
    assert_null(virtio_vsock_create(&p));
    p.guest_cid = 0xffffffff;
    assert_null(virtio_vsock_create(&p));
    p.guest_cid = GUEST_CID;
    p.buf_alloc = 4095;
    assert_null(virtio_vsock_create(&p));
    p.buf_alloc = (64u << 20) + 1;
    assert_null(virtio_vsock_create(&p));
    p.buf_alloc = 0;
    p.mappings = NULL;
    assert_null(virtio_vsock_create(&p));
}

/* TCP both ways, byte for byte; the device never sends past the guest's
 * credit and resumes on its CREDIT_UPDATE. */
static void test_tcp_data_both_ways_within_credit(void **state)
{
    bring_up(&dev, 32, 4096 + VSOCK_HDR_SIZE);
    int host = guest_connect(&dev, 1100);

    /* Guest to host: 20000 bytes in packets of 3000 and one of 2000. */
    static uint8_t out[20000], got[65536];
    for (uint32_t i = 0; i < sizeof(out); i++)
        out[i] = pattern(i, 1);
    for (uint32_t off = 0; off < sizeof(out); off += 3000) {
        uint32_t n = sizeof(out) - off < 3000 ? (uint32_t)sizeof(out) - off : 3000;
        send_data(&dev, 1100, MAPPED_PORT, out + off, n, 0);
    }
    host_read_exact(host, got, sizeof(out));
    assert_memory_equal(got, out, sizeof(out));

    /* Host to guest: 100000 bytes against a 16 KiB guest buffer. */
    static uint8_t in[100000], recvd[100000];
    for (uint32_t i = 0; i < sizeof(in); i++)
        in[i] = pattern(i, 2);
    host_write(host, in, sizeof(in));
    uint32_t rx = 0, fwd = 0;
    struct vsock_hdr h;
    unsigned stalls = 0;
    while (rx < sizeof(in)) {
        if (rx - fwd == GUEST_BUF_ALLOC) {
            /* Out of credit: the device waits; the guest reads and says so. */
            assert_true(rx_quiet(&dev));
            stalls++;
            fwd = rx;
            send_op(&dev, VSOCK_OP_CREDIT_UPDATE, 1100, MAPPED_PORT, fwd);
        }
        assert_true(recv_pkt(&dev, &h, recvd + rx));
        if (h.op == VSOCK_OP_CREDIT_UPDATE)
            continue; /* the host consumed the guest's data */
        assert_int_equal(h.op, VSOCK_OP_RW);
        assert_true(h.len > 0 && h.len <= 4096);
        rx += h.len;
        /* Never more than the credit the guest gave. */
        assert_true(rx - fwd <= GUEST_BUF_ALLOC);
    }
    assert_memory_equal(recvd, in, sizeof(in));
    assert_int_equal(stalls, sizeof(in) / GUEST_BUF_ALLOC); /* the credit ran out each time */
    struct virtio_vsock_stats st = stats_of(&dev);
    assert_int_equal(st.tx_bytes, sizeof(out));
    assert_int_equal(st.rx_bytes, sizeof(in));
    assert_int_equal(st.conns_open, 1);
    close(host);
}

/* Also: rx buffers as a header descriptor and a data one, a payload over
 * three descriptors, and a chain longer than its packet's len. */
static void test_unix_mapping(void **state)
{
    dev.rx_split = true;
    bring_up(&dev, 8, 4096);
    struct vsock_hdr h;
    send_op(&dev, VSOCK_OP_REQUEST, 1200, UNIX_PORT, 0);
    int host = accept_one(unix_listener);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RESPONSE);
    send_data(&dev, 1200, UNIX_PORT, "over unix", 9, 0);
    uint8_t got[16];
    host_read_exact(host, got, 9);
    assert_memory_equal(got, "over unix", 9);
    /* len 7 of the 12 payload bytes the three-descriptor chain carries. */
    struct vsock_hdr w = ghdr(VSOCK_OP_RW, 1200, UNIX_PORT);
    w.len = 7;
    struct vring *r = &dev.rings[TXQ];
    uint16_t d0 = alloc_desc(&dev, TXQ), d1 = alloc_desc(&dev, TXQ), d2 = alloc_desc(&dev, TXQ);
    alloc_desc(&dev, TXQ); /* TX_BUF pairs descriptors: keep d0 even */
    uint64_t buf = TX_BUF(d0);
    vsock_hdr_encode(&w, mem_host(buf));
    memcpy(mem_host(buf + 0x100), "abcdefghijkl", 12);
    vring_set_desc(r, d0, buf, VSOCK_HDR_SIZE, VIRTQ_DESC_F_NEXT, d1);
    vring_set_desc(r, d1, buf + 0x100, 3, VIRTQ_DESC_F_NEXT, d2);
    vring_set_desc(r, d2, buf + 0x103, 9, 0, 0);
    vring_avail_add(r, d0);
    notify(&dev, TXQ);
    assert_true(vring_wait_used(r, ++dev.tx_sent));
    host_read_exact(host, got, 7);
    assert_memory_equal(got, "abcdefg", 7);
    send_data(&dev, 1200, UNIX_PORT, "!", 1, 0);
    host_read_exact(host, got, 1);
    assert_int_equal(got[0], '!'); /* nothing of the slack came before it */
    host_write(host, "back", 4);
    uint8_t payload[4096];
    assert_true(recv_pkt(&dev, &h, payload));
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.len, 4);
    assert_memory_equal(payload, "back", 4);
    close(host);
}

/* An IPv6 mapping ([::1]), where the host has IPv6 loopback. */
static void test_ipv6_mapping(void **state)
{
    int l = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    socklen_t len = sizeof(a);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0) {
        if (l >= 0)
            close(l);
        prerequisite_missing("no IPv6 loopback here");
    }
    assert_int_equal(listen(l, 4), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
    set_timeout(l);
    struct virtio_vsock_params p = default_params();
    memcpy(&mappings[2].addr, &a, sizeof(a));
    mappings[2].addr_len = sizeof(a);
    recreate(&p);
    bring_up(&dev, 8, 4096);
    struct vsock_hdr h;
    send_op(&dev, VSOCK_OP_REQUEST, 1250, REFUSED_PORT, 0);
    int host = accept_one(l);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RESPONSE);
    send_data(&dev, 1250, REFUSED_PORT, "v6", 2, 0);
    uint8_t got[2];
    host_read_exact(host, got, 2);
    assert_memory_equal(got, "v6", 2);
    close(host);
    close(l);
}

/* Paused, the device moves nothing; resumed, it carries on. */
static void test_pause_resume(void **state)
{
    bring_up(&dev, 8, 4096);
    int host = guest_connect(&dev, 1260);
    assert_int_equal(device_pause(&dev.vp->pci.dev), 0);
    host_write(host, "while paused", 12);
    assert_true(rx_quiet(&dev));
    device_resume(&dev.vp->pci.dev);
    struct vsock_hdr h;
    uint8_t payload[4096];
    assert_true(recv_pkt(&dev, &h, payload));
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.len, 12);
    assert_memory_equal(payload, "while paused", 12);
    close(host);
}

static void test_unmapped_and_refused_ports_get_rst(void **state)
{
    bring_up(&dev, 8, 4096);
    struct vsock_hdr h;
    send_op(&dev, VSOCK_OP_REQUEST, 1300, 9999, 0);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.src_port, 9999);
    assert_int_equal(h.dst_port, 1300);
    send_op(&dev, VSOCK_OP_REQUEST, 1301, REFUSED_PORT, 0);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.src_port, REFUSED_PORT);
    assert_int_equal(h.dst_port, 1301);
    /* Packets for connections that do not exist: RST, but none for a RST. */
    send_op(&dev, VSOCK_OP_CREDIT_UPDATE, 1302, MAPPED_PORT, 0);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RST);
    send_op(&dev, VSOCK_OP_RST, 1303, MAPPED_PORT, 0);
    assert_true(rx_quiet(&dev));
    assert_int_equal(stats_of(&dev).conns_open, 0);
}

static void test_credit_updates(void **state)
{
    struct virtio_vsock_params p = default_params();
    p.buf_alloc = 8192;
    recreate(&p);
    bring_up(&dev, 8, 4096);
    struct vsock_hdr h;
    send_op(&dev, VSOCK_OP_REQUEST, 1400, MAPPED_PORT, 0);
    int host = accept_one(tcp_listener);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RESPONSE);
    assert_int_equal(h.buf_alloc, 8192);
    assert_int_equal(h.fwd_cnt, 0);
    /* A quarter of buf_alloc forwarded: the guest hears of it. */
    static uint8_t data[2048], got[2048];
    memset(data, 0x5a, sizeof(data));
    send_data(&dev, 1400, MAPPED_PORT, data, sizeof(data), 0);
    host_read_exact(host, got, sizeof(got));
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
    assert_int_equal(h.fwd_cnt, 2048);
    assert_int_equal(h.buf_alloc, 8192);
    /* Less than a quarter: no update until asked. */
    send_data(&dev, 1400, MAPPED_PORT, data, 100, 0);
    host_read_exact(host, got, 100);
    assert_true(rx_quiet(&dev));
    send_op(&dev, VSOCK_OP_CREDIT_REQUEST, 1400, MAPPED_PORT, 0);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
    assert_int_equal(h.fwd_cnt, 2148);
    close(host);
}

/* The guest stops sending first, then the host: SHUT_WR on the host
 * socket, SHUTDOWN SEND to the guest, then the closing RST. */
static void test_half_close_guest_first(void **state)
{
    bring_up(&dev, 8, 4096);
    int host = guest_connect(&dev, 1500);
    send_data(&dev, 1500, MAPPED_PORT, "last", 4, 0);
    struct vsock_hdr h = ghdr(VSOCK_OP_SHUTDOWN, 1500, MAPPED_PORT);
    h.flags = VSOCK_SHUTDOWN_SEND;
    send_raw(&dev, &h, NULL, 0, 0);
    uint8_t got[8];
    host_read_exact(host, got, 4);
    assert_memory_equal(got, "last", 4);
    assert_true(host_sees_eof(host)); /* shutdown(SHUT_WR) reached the host */
    /* The other way still works. */
    host_write(host, "reply", 5);
    uint8_t payload[4096];
    assert_true(recv_pkt(&dev, &h, payload));
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_memory_equal(payload, "reply", 5);
    /* The host is done too: SHUTDOWN SEND, then the closing RST. */
    shutdown(host, SHUT_WR);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_SHUTDOWN);
    assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.dst_port, 1500);
    assert_true(poll_until(no_conns, NULL));
    close(host);
}

/* The host stops sending first: SHUTDOWN SEND to the guest, which still
 * sends; its SHUTDOWN (both) is answered with a RST and the socket closes. */
static void test_half_close_host_first(void **state)
{
    bring_up(&dev, 8, 4096);
    int host = guest_connect(&dev, 1600);
    host_write(host, "bye", 3);
    shutdown(host, SHUT_WR);
    struct vsock_hdr h;
    uint8_t payload[4096];
    assert_true(recv_pkt(&dev, &h, payload));
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_memory_equal(payload, "bye", 3);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_SHUTDOWN);
    assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
    send_data(&dev, 1600, MAPPED_PORT, "still", 5, 3);
    uint8_t got[8];
    host_read_exact(host, got, 5);
    assert_memory_equal(got, "still", 5);
    h = ghdr(VSOCK_OP_SHUTDOWN, 1600, MAPPED_PORT);
    h.flags = VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV;
    send_raw(&dev, &h, NULL, 0, 0);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_true(host_sees_eof(host));
    assert_true(poll_until(no_conns, NULL));
    close(host);
}

static int uds_connect(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    set_timeout(fd);
    return fd;
}

static void read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        assert_int_equal(recv(fd, buf + n, 1, 0), 1);
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = '\0';
}

static void test_host_initiated(void **state)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/vsock0.sock", tmpdir);
    struct virtio_vsock_params p = default_params();
    p.uds_path = path;
    recreate(&p);
    bring_up(&dev, 8, 4096);

    int client = uds_connect(path);
    /* The line in two writes, and stream bytes right behind it. */
    host_write(client, "CONN", 4);
    sleep_ms(20);
    host_write(client, "ECT 77\nearly", 12);
    struct vsock_hdr h;
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_REQUEST);
    assert_int_equal(h.dst_port, 77);
    uint32_t hp = h.src_port;
    assert_true(hp >= 49152);
    struct vsock_hdr r = ghdr(VSOCK_OP_RESPONSE, 77, hp);
    send_raw(&dev, &r, NULL, 0, 0);
    char line[64], want[64];
    read_line(client, line, sizeof(line));
    snprintf(want, sizeof(want), "OK %u\n", hp);
    assert_string_equal(line, want);
    uint8_t payload[4096];
    assert_true(recv_pkt(&dev, &h, payload));
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.src_port, hp);
    assert_int_equal(h.len, 5);
    assert_memory_equal(payload, "early", 5);
    send_data(&dev, 77, hp, "from guest", 10, 5);
    uint8_t got[16];
    host_read_exact(client, got, 10);
    assert_memory_equal(got, "from guest", 10);
    /* The guest's RST closes the client. */
    send_op(&dev, VSOCK_OP_RST, 77, hp, 5);
    assert_true(host_sees_eof(client));
    close(client);

    /* The guest refuses: the client is closed without an OK. */
    client = uds_connect(path);
    host_write(client, "CONNECT 78\n", 11);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_REQUEST);
    assert_int_equal(h.dst_port, 78);
    assert_int_not_equal(h.src_port, hp);
    send_op(&dev, VSOCK_OP_RST, 78, h.src_port, 0);
    assert_true(host_sees_eof(client));
    close(client);

    /* Garbage instead of the line: closed, nothing for the guest. */
    client = uds_connect(path);
    host_write(client, "HELLO 5\n", 8);
    assert_true(host_sees_eof(client));
    close(client);
    client = uds_connect(path);
    host_write(client, "CONNECT 99999999999\n", 20);
    assert_true(host_sees_eof(client));
    close(client);
    client = uds_connect(path);
    host_write(client, "CONNECT 1234567890123456789012345678901234567890", 48);
    assert_true(host_sees_eof(client));
    close(client);
    assert_true(rx_quiet(&dev));
    assert_true(poll_until(no_conns, NULL));

    /* Destroy removes the socket file it made. */
    tdev_destroy(&dev);
    dev_up = false;
    struct stat st;
    assert_int_equal(lstat(path, &st), -1);
    assert_int_equal(errno, ENOENT);
}

/* A peer that never finishes the set-up loses its slot at the deadline:
 * a host client that never sends its line, a guest that never answers a
 * REQUEST (it gets a RST); an established connection is left alone. */
static void test_connect_timeout(void **state)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/vsock0.sock", tmpdir);
    struct virtio_vsock_params p = default_params();
    p.uds_path = path;
    p.connect_timeout_ms = 200;
    recreate(&p);
    bring_up(&dev, 8, 4096);

    int silent = uds_connect(path);
    assert_true(host_sees_eof(silent)); /* within the 2 s receive timeout */
    close(silent);

    int unanswered = uds_connect(path);
    host_write(unanswered, "CONNECT 80\n", 11);
    struct vsock_hdr h;
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_REQUEST);
    uint32_t hp = h.src_port;
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.src_port, hp);
    assert_int_equal(h.dst_port, 80);
    assert_true(host_sees_eof(unanswered));
    close(unanswered);
    assert_true(poll_until(no_conns, NULL));

    int client = uds_connect(path);
    host_write(client, "CONNECT 81\n", 11);
    assert_true(recv_pkt(&dev, &h, NULL));
    hp = h.src_port;
    struct vsock_hdr r = ghdr(VSOCK_OP_RESPONSE, 81, hp);
    send_raw(&dev, &r, NULL, 0, 0);
    char line[64];
    read_line(client, line, sizeof(line));
    sleep_ms(600); /* three deadlines */
    assert_true(rx_quiet(&dev));
    send_data(&dev, 81, hp, "still here", 10, 0);
    uint8_t got[16];
    host_read_exact(client, got, 10);
    assert_memory_equal(got, "still here", 10);
    close(client);
}

static void test_connection_cap(void **state)
{
    struct virtio_vsock_params p = default_params();
    p.max_conns = 2;
    recreate(&p);
    bring_up(&dev, 16, 4096);
    int a = guest_connect(&dev, 1700), b = guest_connect(&dev, 1701);
    int saved;
    FILE *cap = capture_start(&saved);
    send_op(&dev, VSOCK_OP_REQUEST, 1702, MAPPED_PORT, 0);
    struct vsock_hdr h;
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(capture_end(cap, saved, "2 connections open (the cap)"), 1);
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.dst_port, 1702);
    assert_int_equal(stats_of(&dev).refused, 1);
    assert_int_equal(stats_of(&dev).conns_open, 2);
    /* One closed: room again. */
    send_op(&dev, VSOCK_OP_RST, 1700, MAPPED_PORT, 0);
    assert_true(host_sees_eof(a));
    assert_true(wait_conns(1));
    int c = guest_connect(&dev, 1703);
    close(a);
    close(b);
    close(c);
}

/* Many connection attempts in a row: each answered, nothing left over. */
static void test_connection_storm(void **state)
{
    bring_up(&dev, 32, 4096);
    struct vsock_hdr h;
    for (uint32_t i = 0; i < 300; i++) {
        send_op(&dev, VSOCK_OP_REQUEST, 20000 + i, i % 2 ? MAPPED_PORT : 9999, 0);
        if (i % 2) {
            int fd = accept_one(tcp_listener);
            assert_true(recv_pkt(&dev, &h, NULL));
            assert_int_equal(h.op, VSOCK_OP_RESPONSE);
            send_op(&dev, VSOCK_OP_RST, 20000 + i, MAPPED_PORT, 0);
            close(fd);
        } else {
            assert_true(recv_pkt(&dev, &h, NULL));
            assert_int_equal(h.op, VSOCK_OP_RST);
        }
        assert_int_equal(h.dst_port, 20000 + i);
    }
    assert_true(poll_until(no_conns, NULL));
}

static void test_malformed_and_credit_lies(void **state)
{
    struct virtio_vsock_params p = default_params();
    p.buf_alloc = 4096;
    recreate(&p);
    bring_up(&dev, 16, 4096);
    struct vsock_hdr h, bad;
    uint64_t rsts = stats_of(&dev).resets_sent;

    /* A header cut short, or from another CID: dropped, no answer. */
    bad = ghdr(VSOCK_OP_REQUEST, 1800, MAPPED_PORT);
    send_raw(&dev, &bad, NULL, 0, 20);
    bad.src_cid = GUEST_CID + 1;
    send_raw(&dev, &bad, NULL, 0, 0);
    assert_true(rx_quiet(&dev));
    assert_int_equal(stats_of(&dev).malformed, 2);
    /* A seqpacket REQUEST and an unknown op: RST. */
    bad = ghdr(VSOCK_OP_REQUEST, 1801, MAPPED_PORT);
    bad.type = 2;
    send_raw(&dev, &bad, NULL, 0, 0);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.dst_port, 1801);
    bad = ghdr(99, 1802, MAPPED_PORT);
    send_raw(&dev, &bad, NULL, 0, 0);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.src_cid, VSOCK_HOST_CID);
    /* A CID that is not the host's: refused at once, from that CID. */
    bad = ghdr(VSOCK_OP_REQUEST, 1807, MAPPED_PORT);
    bad.dst_cid = 5;
    send_raw(&dev, &bad, NULL, 0, 0);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.src_cid, 5);
    assert_int_equal(h.src_port, MAPPED_PORT);
    assert_int_equal(h.dst_port, 1807);

    /* On a connection: a len past the chain resets it. */
    int host = guest_connect(&dev, 1803);
    bad = ghdr(VSOCK_OP_RW, 1803, MAPPED_PORT);
    bad.len = 1000;
    uint8_t data[8192] = {0};
    send_raw(&dev, &bad, data, 10, 0);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.dst_port, 1803);
    assert_true(host_sees_eof(host));
    close(host);

    /* A credit lie: more than buf_alloc (4096) in one go. */
    host = guest_connect(&dev, 1804);
    int saved;
    FILE *cap = capture_start(&saved);
    send_data(&dev, 1804, MAPPED_PORT, data, 5000, 0);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(capture_end(cap, saved, "of its 4096-byte credit used: RST"), 1);
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.dst_port, 1804);
    assert_int_equal(stats_of(&dev).credit_lies, 1);
    assert_true(host_sees_eof(host)); /* nothing of the lie reached the host */
    close(host);
    assert_true(stats_of(&dev).resets_sent >= rsts + 4);
    assert_true(poll_until(no_conns, NULL));
    /* RW before the connection exists, SHUTDOWN flags out of range. */
    send_data(&dev, 1805, MAPPED_PORT, "x", 1, 0);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RST);
    host = guest_connect(&dev, 1806);
    bad = ghdr(VSOCK_OP_SHUTDOWN, 1806, MAPPED_PORT);
    bad.flags = 8;
    send_raw(&dev, &bad, NULL, 0, 0);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_true(host_sees_eof(host));
    close(host);
    /* The device is still fine. */
    assert_int_equal(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1), 0x0f);
}

/* The host side does not read: what its socket does not take is buffered,
 * up to the device's cap; past it the connection is reset. */
static void test_buffered_bytes_cap(void **state)
{
    struct virtio_vsock_params p = default_params();
    p.max_buffered = 8192;
    recreate(&p);
    bring_up(&dev, 32, 4096);
    struct vsock_hdr h;
    send_op(&dev, VSOCK_OP_REQUEST, 2100, UNIX_PORT, 0);
    int host = accept_one(unix_listener);
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_RESPONSE);
    static uint8_t data[16384];
    memset(data, 0x33, sizeof(data));
    uint32_t sent = 0, fwd = 0;
    bool reset = false;
    int saved;
    FILE *cap = capture_start(&saved);
    for (unsigned i = 0; i < 4096 && !reset; i++) {
        /* Within the credit the device gave (its fwd_cnt as last heard):
         * a driver waits for its update (the device owes one, or a RST
         * at its cap) rather than racing the device's loop. */
        while (!reset && sent - fwd + sizeof(data) > VIRTIO_VSOCK_BUF_ALLOC) {
            assert_true(recv_pkt(&dev, &h, NULL));
            if (h.op == VSOCK_OP_CREDIT_UPDATE)
                fwd = h.fwd_cnt;
            reset = h.op == VSOCK_OP_RST;
        }
        if (reset)
            break;
        send_data(&dev, 2100, UNIX_PORT, data, sizeof(data), 0);
        sent += sizeof(data);
        assert_true(stats_of(&dev).buffered <= 8192);
        while (!reset && rx_pending(&dev)) {
            assert_true(recv_pkt(&dev, &h, NULL));
            if (h.op == VSOCK_OP_CREDIT_UPDATE)
                fwd = h.fwd_cnt;
            reset = h.op == VSOCK_OP_RST;
        }
    }
    if (!reset) {
        assert_true(recv_pkt(&dev, &h, NULL));
        reset = h.op == VSOCK_OP_RST;
    }
    assert_int_equal(capture_end(cap, saved, "bytes buffered for the host (the cap is 8192)"), 1);
    assert_true(reset);
    assert_int_equal(stats_of(&dev).refused, 1);
    assert_true(poll_until(no_conns, NULL));
    assert_int_equal(stats_of(&dev).buffered, 0);
    close(host);
}

/* Accepts and closes what waits on the listener, without waiting. */
static void close_pending_accepts(int listener)
{
    int fl = fcntl(listener, F_GETFL);
    fcntl(listener, F_SETFL, fl | O_NONBLOCK);
    int fd;
    while ((fd = accept(listener, NULL, NULL)) >= 0)
        close(fd);
    fcntl(listener, F_SETFL, fl);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A few thousand packets of random fields (mostly near-valid, so they get
 * past the first checks): the device answers what it answers, keeps its
 * connections bounded and works normally afterwards. */
static void test_random_packets(void **state)
{
    bring_up(&dev, 32, 4096);
    static uint8_t data[4096];
    memset(data, 0x77, sizeof(data));
    struct vsock_hdr h;
    for (unsigned i = 0; i < 3000; i++) {
        uint64_t r = next_rand();
        struct vsock_hdr p = ghdr((uint16_t)(r % 9), 30000 + (uint32_t)(r >> 8) % 16,
                                  r >> 12 & 1 ? MAPPED_PORT : 6000 + (uint32_t)(r >> 13) % 4);
        if ((r >> 20) % 8 == 0)
            p.type = (uint16_t)(r >> 24);
        if ((r >> 28) % 16 == 0)
            p.src_cid = r >> 32;
        if ((r >> 32) % 16 == 0)
            p.dst_cid = r >> 36;
        p.flags = (uint32_t)(r >> 40) % 5;
        p.buf_alloc = (uint32_t)(r >> 16);
        p.fwd_cnt = (uint32_t)(r >> 24);
        uint32_t len = p.op == VSOCK_OP_RW ? (uint32_t)(r >> 44) % sizeof(data) : 0;
        p.len = (r >> 56) % 8 == 0 ? (uint32_t)(r >> 8) : len;
        send_raw(&dev, &p, data, len, (r >> 60) % 8 == 0 ? (uint32_t)(r >> 3) % 44 + 1 : 0);
        while (rx_pending(&dev))
            assert_true(recv_pkt(&dev, &h, NULL));
        /* Whatever the host side does with its ends. */
        if (i % 64 == 0)
            close_pending_accepts(tcp_listener);
    }
    assert_true(stats_of(&dev).conns_open <= 16);
    assert_true(stats_of(&dev).malformed > 0);
    assert_int_equal(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1), 0x0f);
    /* Still a working device. The guest resets every connection the
     * random packets may have opened, so no late packet of theirs (a host
     * end closing on a loaded machine) can reach the check below. */
    for (uint32_t gp = 30000; gp < 30016; gp++) {
        send_op(&dev, VSOCK_OP_RST, gp, MAPPED_PORT, 0);
        for (uint32_t hp = 6000; hp < 6004; hp++)
            send_op(&dev, VSOCK_OP_RST, gp, hp, 0);
        while (rx_pending(&dev))
            assert_true(recv_pkt(&dev, &h, NULL));
    }
    assert_true(poll_until(no_conns, NULL));
    close_pending_accepts(tcp_listener);
    while (rx_pending(&dev))
        assert_true(recv_pkt(&dev, &h, NULL));
    int host = guest_connect(&dev, 40000);
    send_data(&dev, 40000, MAPPED_PORT, "alive", 5, 0);
    uint8_t got[5];
    host_read_exact(host, got, 5);
    assert_memory_equal(got, "alive", 5);
    close(host);
}

static void test_reset_drops_connections(void **state)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/vsock0.sock", tmpdir);
    struct virtio_vsock_params p = default_params();
    p.uds_path = path;
    recreate(&p);
    bring_up(&dev, 8, 4096);
    int a = guest_connect(&dev, 1900), b = guest_connect(&dev, 1901);
    int client = uds_connect(path); /* still in its handshake */
    assert_true(wait_conns(3));
    vp_common_write(dev.vp, VIRTIO_COMMON_STATUS, 1, 0);
    assert_int_equal(stats_of(&dev).conns_open, 0);
    assert_true(host_sees_eof(a));
    assert_true(host_sees_eof(b));
    assert_true(host_sees_eof(client));
    close(a);
    close(b);
    close(client);
    /* The driver comes back: new connections work; the socket file stays. */
    bring_up(&dev, 8, 4096);
    int c = guest_connect(&dev, 1902);
    client = uds_connect(path);
    host_write(client, "CONNECT 5\n", 10);
    struct vsock_hdr h;
    assert_true(recv_pkt(&dev, &h, NULL));
    assert_int_equal(h.op, VSOCK_OP_REQUEST);
    close(client);
    close(c);
}

/* dev up with a connection and an event buffer posted, paused; a twin
 * built the same way, paused. */
static void active_device_and_twin(struct tdev *other, int *host)
{
    bring_up(&dev, 8, 4096);
    *host = guest_connect(&dev, 2000);
    assert_int_equal(device_pause(&dev.vp->pci.dev), 0);
    struct virtio_vsock_params p = default_params();
    tdev_create(other, &p, 6);
    assert_int_equal(device_pause(&other->vp->pci.dev), 0);
}

static void test_state_roundtrip_and_transport_reset(void **state)
{
    struct tdev other;
    int host;
    active_device_and_twin(&other, &host);
    assert_int_equal(mem_get32(EV_BUF), 0xffffffff);
    assert_state_roundtrip(&dev.vp->pci.dev, &other.vp->pci.dev);
    assert_int_equal(vp_device_config_read(other.vp, 0, 8), GUEST_CID);
    /* The twin tells the guest its connections are gone. */
    device_resume(&other.vp->pci.dev);
    assert_true(vring_wait_used(&dev.rings[EVQ], 1));
    assert_int_equal(vring_used_len(&dev.rings[EVQ], 0), 4);
    assert_int_equal(mem_get32(EV_BUF), VSOCK_EVENT_TRANSPORT_RESET);
    /* ... and takes new ones on the restored rings. */
    other.rx_seen = dev.rx_seen;
    other.tx_sent = dev.tx_sent;
    other.rx_buf_len = dev.rx_buf_len;
    memcpy(other.next_desc, dev.next_desc, sizeof(other.next_desc));
    memcpy(other.rings, dev.rings, sizeof(other.rings)); /* the driver's avail indexes */
    int h2 = guest_connect(&other, 2001);
    close(h2);
    device_resume(&dev.vp->pci.dev);
    tdev_destroy(&other);
    close(host);
}

static void test_state_refusals(void **state)
{
    struct tdev other;
    int host;
    active_device_and_twin(&other, &host);
    assert_state_refusals(&dev.vp->pci.dev, &other.vp->pci.dev);
    uint64_t cid = GUEST_CID + 1;
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "vsock.guest_cid", &cid,
                               sizeof(cid));
    device_resume(&dev.vp->pci.dev);
    tdev_destroy(&other);
    close(host);
}

static void test_listener_path_safety(void **state)
{
    char path[128];
    struct virtio_vsock_params p = default_params();
    p.uds_path = path;
    /* A regular file is never replaced. */
    snprintf(path, sizeof(path), "%s/file", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_null(virtio_vsock_create(&p));
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    /* Nor a symlink, even to nothing. */
    snprintf(path, sizeof(path), "%s/link", tmpdir);
    char target[128];
    snprintf(target, sizeof(target), "%s/nowhere", tmpdir);
    assert_int_equal(symlink(target, path), 0);
    assert_null(virtio_vsock_create(&p));
    assert_int_equal(lstat(target, &st), -1);
    /* Nor a socket someone listens on. */
    snprintf(path, sizeof(path), "%s/mapped.sock", tmpdir);
    assert_null(virtio_vsock_create(&p));
    /* A socket no one listens on (left by an earlier run) is replaced. */
    snprintf(path, sizeof(path), "%s/stale.sock", tmpdir);
    int stale = unix_listen("stale.sock");
    close(stale);
    struct tdev t;
    tdev_create(&t, &p, 7);
    int client = uds_connect(path);
    close(client);
    /* A file put in its place meanwhile is not ours to remove. */
    assert_int_equal(unlink(path), 0);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    tdev_destroy(&t);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]); /* one test by name, for debugging */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identity_config_features, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_data_both_ways_within_credit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unmapped_and_refused_ports_get_rst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credit_updates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_guest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_host_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_initiated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_storm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_and_credit_lies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffered_bytes_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_packets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_drops_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_roundtrip_and_transport_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listener_path_safety, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
