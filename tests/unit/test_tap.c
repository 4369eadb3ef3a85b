/* The TAP back end, against the kernel's tun driver, inside a network
 * namespace this test makes for itself (so it needs root, and fails rather
 * than skips without it): creating and attaching, refusals with a clear
 * error, multi-queue enable/disable, vnet header length and offloads,
 * frames both ways with a virtio_net_hdr, the TAP's own receive filter,
 * and the carrier with its rtnetlink events. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/capability.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>

#include <cmocka.h>

#include "net/tap.h"

/* IEEE 802 local experimental ethertype: nothing else in the namespace
 * sends it, so the frames the test looks for are the test's own. */
#define TEST_ETHERTYPE 0x88b5
#define FRAME_LEN 114
#define WAIT_MS 3000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fill_ifreq(struct ifreq *ifr, const char *name)
{
    memset(ifr, 0, sizeof(*ifr));
    snprintf(ifr->ifr_name, sizeof(ifr->ifr_name), "%s", name);
}

/* A TAP or TUN the test makes itself, outliving its fd. */
static void make_persistent(const char *name, short flags, long owner)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    struct ifreq ifr;
    fill_ifreq(&ifr, name);
    ifr.ifr_flags = flags;
    assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
    if (owner >= 0)
        assert_int_equal(ioctl(fd, TUNSETOWNER, (unsigned long)owner), 0);
    assert_int_equal(ioctl(fd, TUNSETPERSIST, 1UL), 0);
    close(fd);
    assert_int_not_equal(if_nametoindex(name), 0);
}

static void remove_persistent(const char *name, short flags)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    struct ifreq ifr;
    fill_ifreq(&ifr, name);
    ifr.ifr_flags = flags;
    assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
    assert_int_equal(ioctl(fd, TUNSETPERSIST, 0UL), 0);
    close(fd);
    assert_int_equal(if_nametoindex(name), 0);
}

static void set_link(const char *name, bool up)
{
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct ifreq ifr;
    fill_ifreq(&ifr, name);
    assert_int_equal(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
    if (up)
        ifr.ifr_flags |= IFF_UP;
    else
        ifr.ifr_flags &= ~IFF_UP;
    assert_int_equal(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
    close(s);
}

static void assert_fd_cloexec_nonblock(int fd)
{
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
}

static void assert_contains(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("\"%s\" does not contain \"%s\"", text, part);
}

static int tun_flags_of(int fd)
{
    struct ifreq ifr = {0};
    if (ioctl(fd, TUNGETIFF, &ifr) < 0)
        return -errno;
    return (unsigned short)ifr.ifr_flags;
}

static void test_creates_missing_tap(void **state)
{
    struct tap tap;
    char err[256] = "";
    assert_int_equal(if_nametoindex("vmtap0"), 0);
    assert_int_equal(tap_open("vmtap0", 1, &tap, err, sizeof(err)), 0);
    assert_true(tap.created);
    assert_false(tap.multi_queue);
    assert_int_equal(tap.queues, 1);
    assert_int_equal(tap.queues_enabled, 1);
    assert_string_equal(tap.name, "vmtap0");
    assert_int_equal(tap.ifindex, if_nametoindex("vmtap0"));
    assert_fd_cloexec_nonblock(tap.queue_fds[0]);
    assert_fd_cloexec_nonblock(tap.ctl_fd);
    assert_fd_cloexec_nonblock(tap.link_fd);
    int flags = tun_flags_of(tap.queue_fds[0]);
    assert_true(flags > 0);
    assert_int_equal(flags & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_PERSIST | IFF_MULTI_QUEUE),
                     IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);

    /* Held by us alone: a second open is told it is busy. */
    struct tap other;
    assert_int_equal(tap_open("vmtap0", 1, &other, err, sizeof(err)), -EBUSY);
    assert_contains(err, "vmtap0");
    assert_contains(err, "in use");
    assert_int_equal(other.queue_fds[0], -1);

    tap_close(&tap);
    assert_int_equal(if_nametoindex("vmtap0"), 0);
    assert_int_equal(tap.queue_fds[0], -1);
    tap_close(&tap); /* twice is harmless */

    /* The longest name an interface can have. */
    assert_int_equal(tap_open("abcdefghijklmno", 1, &tap, err, sizeof(err)), 0);
    assert_true(tap.created);
    assert_int_not_equal(if_nametoindex("abcdefghijklmno"), 0);
    tap_close(&tap);
    assert_int_equal(if_nametoindex("abcdefghijklmno"), 0);
}

static void test_opens_persistent_tap(void **state)
{
    make_persistent("ptap0", IFF_TAP | IFF_NO_PI, 4242);
    struct tap tap;
    char err[256] = "";
    assert_int_equal(tap_open("ptap0", 1, &tap, err, sizeof(err)), 0);
    assert_false(tap.created);
    assert_false(tap.multi_queue);
    assert_int_equal(tun_flags_of(tap.queue_fds[0]) & (IFF_TAP | IFF_VNET_HDR | IFF_PERSIST),
                     IFF_TAP | IFF_VNET_HDR | IFF_PERSIST);
    tap_close(&tap);
    assert_int_not_equal(if_nametoindex("ptap0"), 0);

    /* Made without multi_queue: more queues cannot be had. */
    assert_int_equal(tap_open("ptap0", 2, &tap, err, sizeof(err)), -EINVAL);
    assert_contains(err, "ptap0");
    assert_contains(err, "multi_queue");
    assert_int_not_equal(if_nametoindex("ptap0"), 0);
    remove_persistent("ptap0", IFF_TAP | IFF_NO_PI);

    /* Made with multi_queue: one queue or several. */
    make_persistent("pmqtap0", IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE, -1);
    assert_int_equal(tap_open("pmqtap0", 1, &tap, err, sizeof(err)), 0);
    assert_false(tap.created);
    assert_true(tap.multi_queue);
    tap_close(&tap);
    assert_int_equal(tap_open("pmqtap0", 3, &tap, err, sizeof(err)), 0);
    assert_false(tap.created);
    assert_int_equal(tap.queues, 3);
    tap_close(&tap);
    remove_persistent("pmqtap0", IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE);
}

static void test_refuses_interfaces_that_are_not_taps(void **state)
{
    struct tap tap;
    char err[256] = "";

    assert_int_equal(tap_open("lo", 1, &tap, err, sizeof(err)), -EINVAL);
    assert_contains(err, "\"lo\"");
    assert_contains(err, "not a TAP");
    assert_int_equal(tap.queue_fds[0], -1);
    assert_int_equal(tap.ctl_fd, -1);
    assert_int_equal(tap.link_fd, -1);

    make_persistent("ptun0", IFF_TUN | IFF_NO_PI, -1);
    assert_int_equal(tap_open("ptun0", 1, &tap, err, sizeof(err)), -EINVAL);
    assert_contains(err, "\"ptun0\"");
    assert_contains(err, "TUN device");
    assert_int_not_equal(if_nametoindex("ptun0"), 0);
    remove_persistent("ptun0", IFF_TUN | IFF_NO_PI);
}

static void test_refuses_bad_names_and_queue_counts(void **state)
{
    struct tap tap;
    char err[256] = "";

    assert_int_equal(tap_open("abcdefghijklmnop", 1, &tap, err, sizeof(err)), -EINVAL);
    assert_contains(err, "too long");
    assert_contains(err, "IFNAMSIZ");
    assert_int_equal(if_nametoindex("abcdefghijklmno"), 0);

    const char *bad[] = {"", ".", "..", "a/b", "tap%d", "a b", "a:b", "a\tb"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(tap_open(bad[i], 1, &tap, err, sizeof(err)), -EINVAL);
        assert_true(err[0] != '\0');
    }
    /* Nothing made under a pattern name. */
    assert_int_equal(if_nametoindex("tap0"), 0);

    assert_int_equal(tap_open("qtap0", 0, &tap, err, sizeof(err)), -EINVAL);
    assert_contains(err, "queues");
    assert_int_equal(tap_open("qtap0", TAP_MAX_QUEUES + 1, &tap, err, sizeof(err)), -EINVAL);
    assert_contains(err, "queues");
    assert_int_equal(if_nametoindex("qtap0"), 0);
}

/* True once CAP_NET_ADMIN is out of the effective and permitted sets. */
static bool drop_net_admin(void)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) != 0)
        return false;
    data[CAP_NET_ADMIN / 32].effective &= ~(1u << (CAP_NET_ADMIN % 32));
    data[CAP_NET_ADMIN / 32].permitted &= ~(1u << (CAP_NET_ADMIN % 32));
    return syscall(SYS_capset, &hdr, data) == 0;
}

struct permission_results {
    bool dropped;
    int create_rc;
    char create_err[256];
    int attach_rc;
    char attach_err[256];
};

static void test_permission_failures(void **state)
{
    make_persistent("owned0", IFF_TAP | IFF_NO_PI, 4242);
    int pipe_fds[2];
    assert_int_equal(pipe2(pipe_fds, O_CLOEXEC), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        /* Still uid 0 (so /dev/net/tun opens), without CAP_NET_ADMIN. */
        struct permission_results r = {0};
        struct tap tap;
        r.dropped = drop_net_admin();
        r.create_rc = tap_open("newtap0", 1, &tap, r.create_err, sizeof(r.create_err));
        tap_close(&tap);
        r.attach_rc = tap_open("owned0", 1, &tap, r.attach_err, sizeof(r.attach_err));
        tap_close(&tap);
        ssize_t n = write(pipe_fds[1], &r, sizeof(r));
        _exit(n == (ssize_t)sizeof(r) ? 0 : 1);
    }
    close(pipe_fds[1]);
    struct permission_results r;
    ssize_t n = read(pipe_fds[0], &r, sizeof(r));
    close(pipe_fds[0]);
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(n, sizeof(r));
    assert_true(r.dropped);

    assert_int_equal(r.create_rc, -EPERM);
    assert_contains(r.create_err, "newtap0");
    assert_contains(r.create_err, "CAP_NET_ADMIN");
    assert_int_equal(if_nametoindex("newtap0"), 0);

    assert_int_equal(r.attach_rc, -EPERM);
    assert_contains(r.attach_err, "owned0");
    assert_contains(r.attach_err, "no permission");
    remove_persistent("owned0", IFF_TAP | IFF_NO_PI);
}

static int packet_socket(unsigned ifindex)
{
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(TEST_ETHERTYPE));
    assert_true(fd >= 0);
    struct sockaddr_ll sll = {
        .sll_family = AF_PACKET,
        .sll_protocol = htons(TEST_ETHERTYPE),
        .sll_ifindex = (int)ifindex,
    };
    assert_int_equal(bind(fd, (struct sockaddr *)&sll, sizeof(sll)), 0);
    return fd;
}

static void make_frame(uint8_t *frame, uint8_t seed)
{
    static const uint8_t dst[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t src[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
    memcpy(frame, dst, 6);
    memcpy(frame + 6, src, 6);
    frame[12] = TEST_ETHERTYPE >> 8;
    frame[13] = TEST_ETHERTYPE & 0xff;
    for (size_t i = 14; i < FRAME_LEN; i++)
        frame[i] = (uint8_t)(seed + i * 7);
}

/* Waits for a frame of TEST_ETHERTYPE on one of fds[0..nfds) (a tap queue:
 * hdr_len header bytes first); others (IPv6 chatter) are skipped. Returns
 * its length and which fd, or -1 on timeout. */
static ssize_t read_test_frame(const int *fds, unsigned nfds, size_t hdr_len, uint8_t *buf,
                               size_t size, unsigned *which)
{
    int64_t deadline = now_ms() + WAIT_MS;
    while (now_ms() < deadline) {
        struct pollfd pfd[TAP_MAX_QUEUES];
        for (unsigned i = 0; i < nfds; i++)
            pfd[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        if (poll(pfd, nfds, 100) <= 0)
            continue;
        for (unsigned i = 0; i < nfds; i++) {
            if (!(pfd[i].revents & POLLIN))
                continue;
            ssize_t n = read(fds[i], buf, size);
            if (n >= (ssize_t)(hdr_len + 14) && buf[hdr_len + 12] == (TEST_ETHERTYPE >> 8) &&
                buf[hdr_len + 13] == (TEST_ETHERTYPE & 0xff)) {
                *which = i;
                return n;
            }
        }
    }
    return -1;
}

static void check_frames_both_ways(struct tap *tap, unsigned hdr_len)
{
    assert_int_equal(tap_set_vnet_hdr_len(tap, hdr_len), 0);
    int pkt = packet_socket(tap->ifindex);
    uint8_t frame[FRAME_LEN], buf[2048];

    /* Guest to host: a header saying nothing (no checksum or GSO work). */
    uint8_t hdr[12] = {0};
    make_frame(frame, (uint8_t)hdr_len);
    struct iovec iov[2] = {{hdr, hdr_len}, {frame, sizeof(frame)}};
    assert_int_equal(writev(tap->queue_fds[0], iov, 2), hdr_len + sizeof(frame));
    struct pollfd pfd = {.fd = pkt, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, WAIT_MS), 1);
    ssize_t n = recv(pkt, buf, sizeof(buf), 0);
    assert_int_equal(n, sizeof(frame));
    assert_memory_equal(buf, frame, sizeof(frame));

    /* Host to guest: the header comes first, then the frame as sent. */
    make_frame(frame, (uint8_t)(hdr_len + 100));
    assert_int_equal(send(pkt, frame, sizeof(frame), 0), sizeof(frame));
    memset(buf, 0xa5, sizeof(buf));
    unsigned which = 99;
    n = read_test_frame(tap->queue_fds, 1, hdr_len, buf, sizeof(buf), &which);
    assert_int_equal(n, hdr_len + sizeof(frame));
    assert_int_equal(which, 0);
    static const uint8_t zero[10] = {0};
    assert_memory_equal(buf, zero, 10); /* no flags, no GSO */
    assert_memory_equal(buf + hdr_len, frame, sizeof(frame));
    close(pkt);
}

static void test_frames_both_ways_with_vnet_header(void **state)
{
    struct tap tap;
    char err[256] = "";
    assert_int_equal(tap_open("ftap0", 1, &tap, err, sizeof(err)), 0);
    set_link("ftap0", true);
    check_frames_both_ways(&tap, 12);
    check_frames_both_ways(&tap, 10);
    tap_close(&tap);
    assert_int_equal(if_nametoindex("ftap0"), 0);
}

/* Whether a frame sent to dst on the interface reaches the TAP's queue
 * (the frame's seed tells this frame from earlier ones). */
static bool frame_reaches_queue(struct tap *tap, int pkt, const uint8_t *dst, uint8_t seed)
{
    uint8_t frame[FRAME_LEN], buf[2048];
    make_frame(frame, seed);
    memcpy(frame, dst, 6);
    assert_int_equal(send(pkt, frame, sizeof(frame), 0), sizeof(frame));
    /* A frame the filter drops never comes: a short wait tells. */
    struct pollfd pfd = {.fd = tap->queue_fds[0], .events = POLLIN};
    while (poll(&pfd, 1, 300) == 1) {
        ssize_t n = read(tap->queue_fds[0], buf, sizeof(buf));
        if (n == 12 + FRAME_LEN && memcmp(buf + 12, frame, FRAME_LEN) == 0)
            return true;
    }
    return false;
}

static void test_rx_filter(void **state)
{
    static const uint8_t own[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x42};
    static const uint8_t other[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x43};
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t mcast[6] = {0x33, 0x33, 0x00, 0x00, 0x00, 0x01};
    static const uint8_t mcast2[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x07};
    struct tap tap;
    char err[256] = "";
    assert_int_equal(tap_open("flt0", 1, &tap, err, sizeof(err)), 0);
    set_link("flt0", true);
    assert_int_equal(tap_set_vnet_hdr_len(&tap, 12), 0);
    int pkt = packet_socket(tap.ifindex);
    uint8_t seed = 1;

    /* No filter: everything. */
    assert_true(frame_reaches_queue(&tap, pkt, other, seed++));
    assert_true(frame_reaches_queue(&tap, pkt, mcast2, seed++));

    /* Own address, broadcast and one multicast group. */
    const uint8_t list[3][6] = {{0x02, 0, 0, 0, 0, 0x42},
                                {0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
                                {0x33, 0x33, 0, 0, 0, 0x01}};
    assert_int_equal(tap_set_rx_filter(&tap, list, 3, false), 0);
    assert_true(frame_reaches_queue(&tap, pkt, own, seed++));
    assert_true(frame_reaches_queue(&tap, pkt, bcast, seed++));
    assert_true(frame_reaches_queue(&tap, pkt, mcast, seed++));
    assert_false(frame_reaches_queue(&tap, pkt, other, seed++));
    assert_false(frame_reaches_queue(&tap, pkt, mcast2, seed++));

    /* All multicast on top. */
    assert_int_equal(tap_set_rx_filter(&tap, list, 1, true), 0);
    assert_true(frame_reaches_queue(&tap, pkt, mcast2, seed++));
    assert_false(frame_reaches_queue(&tap, pkt, other, seed++));

    /* Off again. */
    assert_int_equal(tap_set_rx_filter(&tap, NULL, 0, false), 0);
    assert_true(frame_reaches_queue(&tap, pkt, other, seed++));
    close(pkt);
    tap_close(&tap);
}

static int ethtool_value(struct tap *tap, uint32_t cmd)
{
    struct ethtool_value value = {.cmd = cmd};
    struct ifreq ifr;
    fill_ifreq(&ifr, tap->name);
    ifr.ifr_data = (char *)&value;
    assert_int_equal(ioctl(tap->ctl_fd, SIOCETHTOOL, &ifr), 0);
    return (int)value.data;
}

static void test_vnet_header_length_and_offloads(void **state)
{
    struct tap tap;
    char err[256] = "";
    assert_int_equal(tap_open("otap0", 1, &tap, err, sizeof(err)), 0);
    int len = 0;
    assert_int_equal(tap_set_vnet_hdr_len(&tap, 12), 0);
    assert_int_equal(ioctl(tap.queue_fds[0], TUNGETVNETHDRSZ, &len), 0);
    assert_int_equal(len, 12);
    assert_int_equal(tap_set_vnet_hdr_len(&tap, 10), 0);
    assert_int_equal(ioctl(tap.queue_fds[0], TUNGETVNETHDRSZ, &len), 0);
    assert_int_equal(len, 10);
    assert_int_equal(tap_set_vnet_hdr_len(&tap, 11), -EINVAL);
    assert_int_equal(tap_set_vnet_hdr_len(&tap, 0), -EINVAL);
    assert_int_equal(ioctl(tap.queue_fds[0], TUNGETVNETHDRSZ, &len), 0);
    assert_int_equal(len, 10);

    /* The offloads show in the interface's features. */
    assert_int_equal(ethtool_value(&tap, ETHTOOL_GTSO), 0);
    assert_int_equal(tap_set_offload(&tap, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN),
                     0);
    assert_int_equal(ethtool_value(&tap, ETHTOOL_GTSO), 1);
    assert_int_equal(ethtool_value(&tap, ETHTOOL_GTXCSUM), 1);
    assert_int_equal(tap_set_offload(&tap, TUN_F_CSUM), 0);
    assert_int_equal(ethtool_value(&tap, ETHTOOL_GTSO), 0);
    assert_int_equal(ethtool_value(&tap, ETHTOOL_GTXCSUM), 1);
    assert_int_equal(tap_set_offload(&tap, 0), 0);
    assert_int_equal(ethtool_value(&tap, ETHTOOL_GTXCSUM), 0);

    /* Refused: TSO without checksum offload, a flag nobody knows. */
    assert_int_equal(tap_set_offload(&tap, TUN_F_TSO4), -EINVAL);
    assert_int_equal(tap_set_offload(&tap, TUN_F_CSUM | 0x8000), -EINVAL);
    assert_int_equal(ethtool_value(&tap, ETHTOOL_GTSO), 0);
    tap_close(&tap);
}

/* Sends `flows` IPv4/UDP frames, each its own flow (source port), so the
 * TAP's flow hash spreads them over its attached queues. */
static void send_udp_flows(unsigned ifindex, unsigned flows)
{
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_ll sll = {
        .sll_family = AF_PACKET,
        .sll_protocol = htons(0x0800),
        .sll_ifindex = (int)ifindex,
    };
    for (unsigned f = 0; f < flows; f++) {
        uint8_t frame[60] = {0};
        memset(frame, 0xff, 6);
        frame[6] = 0x02;
        frame[12] = 0x08; /* IPv4 */
        uint8_t *ip = frame + 14;
        ip[0] = 0x45;
        ip[3] = 46; /* total length */
        ip[8] = 64;
        ip[9] = 17; /* UDP */
        ip[12] = 10, ip[15] = 1;
        ip[16] = 10, ip[19] = 2;
        uint8_t *udp = ip + 20;
        udp[0] = 0x10, udp[1] = (uint8_t)f; /* source port */
        udp[3] = 9;                         /* discard */
        udp[5] = 26;
        assert_int_equal(sendto(fd, frame, sizeof(frame), 0, (struct sockaddr *)&sll, sizeof(sll)),
                         sizeof(frame));
    }
    close(fd);
}

/* Reads every queue until `expected` UDP frames to port 9 came (or the
 * wait ends); counts[i] says how many queue i had. */
static unsigned count_udp_frames(struct tap *tap, size_t hdr_len, unsigned expected,
                                 unsigned counts[TAP_MAX_QUEUES])
{
    unsigned total = 0;
    memset(counts, 0, TAP_MAX_QUEUES * sizeof(counts[0]));
    int64_t deadline = now_ms() + WAIT_MS;
    while (total < expected && now_ms() < deadline) {
        struct pollfd pfd[TAP_MAX_QUEUES];
        for (unsigned i = 0; i < tap->queues; i++)
            pfd[i] = (struct pollfd){.fd = tap->queue_fds[i], .events = POLLIN};
        if (poll(pfd, tap->queues, 100) <= 0)
            continue;
        for (unsigned i = 0; i < tap->queues; i++) {
            uint8_t buf[2048];
            ssize_t n;
            while ((n = read(tap->queue_fds[i], buf, sizeof(buf))) > 0) {
                const uint8_t *eth = buf + hdr_len;
                if (n == (ssize_t)(hdr_len + 60) && eth[12] == 0x08 && eth[13] == 0 &&
                    eth[14 + 20 + 3] == 9) {
                    counts[i]++;
                    total++;
                }
            }
        }
    }
    return total;
}

static void test_multi_queue_enable(void **state)
{
    struct tap tap;
    char err[256] = "";
    assert_int_equal(tap_open("mqtap0", 4, &tap, err, sizeof(err)), 0);
    assert_true(tap.created);
    assert_true(tap.multi_queue);
    assert_int_equal(tap.queues, 4);
    assert_int_equal(tap.queues_enabled, 4);
    for (unsigned i = 0; i < 4; i++) {
        assert_fd_cloexec_nonblock(tap.queue_fds[i]);
        int flags = tun_flags_of(tap.queue_fds[i]);
        assert_true(flags > 0);
        assert_true(flags & IFF_MULTI_QUEUE);
        for (unsigned j = 0; j < i; j++)
            assert_int_not_equal(tap.queue_fds[i], tap.queue_fds[j]);
    }
    assert_int_equal(tap.queue_fds[4], -1);
    set_link("mqtap0", true);
    assert_int_equal(tap_set_vnet_hdr_len(&tap, 12), 0);

    /* 64 flows over 4 attached queues: each queue has some (the hash is
     * seeded at random; all missing one queue has odds near 4 * 0.75^64). */
    enum { FLOWS = 64 };
    unsigned counts[TAP_MAX_QUEUES];
    send_udp_flows(tap.ifindex, FLOWS);
    assert_int_equal(count_udp_frames(&tap, 12, FLOWS, counts), FLOWS);
    for (unsigned i = 0; i < 4; i++)
        assert_true(counts[i] > 0);

    /* Two enabled: everything lands on queues 0 and 1. */
    assert_int_equal(tap_enable_queues(&tap, 2), 0);
    assert_int_equal(tap.queues_enabled, 2);
    send_udp_flows(tap.ifindex, FLOWS);
    assert_int_equal(count_udp_frames(&tap, 12, FLOWS, counts), FLOWS);
    assert_int_equal(counts[0] + counts[1], FLOWS);
    assert_true(counts[0] > 0 && counts[1] > 0);

    /* Frames written on an enabled queue still reach the host. */
    int pkt = packet_socket(tap.ifindex);
    uint8_t hdr[12] = {0}, frame[FRAME_LEN], buf[2048];
    make_frame(frame, 1);
    struct iovec iov[2] = {{hdr, sizeof(hdr)}, {frame, sizeof(frame)}};
    assert_int_equal(writev(tap.queue_fds[1], iov, 2), sizeof(hdr) + sizeof(frame));
    struct pollfd pfd = {.fd = pkt, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, WAIT_MS), 1);
    assert_int_equal(recv(pkt, buf, sizeof(buf), 0), sizeof(frame));
    assert_memory_equal(buf, frame, sizeof(frame));
    close(pkt);

    /* One, then three, then all four again. */
    assert_int_equal(tap_enable_queues(&tap, 1), 0);
    send_udp_flows(tap.ifindex, FLOWS);
    assert_int_equal(count_udp_frames(&tap, 12, FLOWS, counts), FLOWS);
    assert_int_equal(counts[0], FLOWS);
    assert_int_equal(tap_enable_queues(&tap, 3), 0);
    send_udp_flows(tap.ifindex, FLOWS);
    assert_int_equal(count_udp_frames(&tap, 12, FLOWS, counts), FLOWS);
    assert_int_equal(counts[3], 0);
    assert_true(counts[0] > 0 && counts[1] > 0 && counts[2] > 0);
    assert_int_equal(tap_enable_queues(&tap, 4), 0);
    assert_int_equal(tap_enable_queues(&tap, 4), 0); /* unchanged is fine */
    send_udp_flows(tap.ifindex, FLOWS);
    assert_int_equal(count_udp_frames(&tap, 12, FLOWS, counts), FLOWS);
    assert_true(counts[3] > 0);

    assert_int_equal(tap_enable_queues(&tap, 0), -EINVAL);
    assert_int_equal(tap_enable_queues(&tap, 5), -EINVAL);
    assert_int_equal(tap.queues_enabled, 4);
    tap_close(&tap);
    assert_int_equal(if_nametoindex("mqtap0"), 0);

    /* A single-queue TAP has its one queue. */
    assert_int_equal(tap_open("sqtap0", 1, &tap, err, sizeof(err)), 0);
    assert_int_equal(tap_enable_queues(&tap, 1), 0);
    assert_int_equal(tap_enable_queues(&tap, 2), -EINVAL);
    tap_close(&tap);
}

/* Waits for tap_link_event to report a change; false on timeout. */
static bool wait_link_change(struct tap *tap)
{
    int64_t deadline = now_ms() + WAIT_MS;
    while (now_ms() < deadline) {
        struct pollfd pfd = {.fd = tap->link_fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) == 1 && tap_link_event(tap))
            return true;
    }
    return false;
}

/* Reads events for ms milliseconds; true if any reported a change. */
static bool link_changes_within(struct tap *tap, int ms)
{
    int64_t deadline = now_ms() + ms;
    bool changed = false;
    while (now_ms() < deadline) {
        struct pollfd pfd = {.fd = tap->link_fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) == 1 && tap_link_event(tap))
            changed = true;
    }
    return changed;
}

static void set_tun_carrier(struct tap *tap, int on)
{
    assert_int_equal(ioctl(tap->queue_fds[0], TUNSETCARRIER, &on), 0);
}

static void test_carrier_and_link_events(void **state)
{
    struct tap tap;
    char err[256] = "";
    assert_int_equal(tap_open("ltap0", 1, &tap, err, sizeof(err)), 0);
    assert_false(tap_carrier(&tap)); /* made down */
    assert_false(tap.link_up);
    assert_false(link_changes_within(&tap, 200));

    set_link("ltap0", true);
    assert_true(wait_link_change(&tap));
    assert_true(tap.link_up);
    assert_true(tap_carrier(&tap));

    set_tun_carrier(&tap, 0);
    assert_true(wait_link_change(&tap));
    assert_false(tap.link_up);
    assert_false(tap_carrier(&tap));

    set_tun_carrier(&tap, 1);
    assert_true(wait_link_change(&tap));
    assert_true(tap.link_up);
    assert_true(tap_carrier(&tap));

    /* Another interface's change is not ours. */
    set_link("lo", true);
    assert_false(link_changes_within(&tap, 300));
    assert_true(tap.link_up);

    set_link("ltap0", false);
    assert_true(wait_link_change(&tap));
    assert_false(tap.link_up);
    assert_false(tap_carrier(&tap));
    assert_false(link_changes_within(&tap, 200));
    tap_close(&tap);
}

int main(void)
{
    /* Interfaces made here must never touch the host's namespace. */
    if (unshare(CLONE_NEWNET) != 0) {
        fprintf(stderr,
                "test_tap: cannot make a private network namespace (unshare(CLONE_NEWNET): %s); "
                "these tests need root\n",
                strerror(errno));
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_creates_missing_tap),
        cmocka_unit_test(test_opens_persistent_tap),
        cmocka_unit_test(test_refuses_interfaces_that_are_not_taps),
        cmocka_unit_test(test_refuses_bad_names_and_queue_counts),
        cmocka_unit_test(test_permission_failures),
        cmocka_unit_test(test_frames_both_ways_with_vnet_header),
        cmocka_unit_test(test_vnet_header_length_and_offloads),
        cmocka_unit_test(test_multi_queue_enable),
        cmocka_unit_test(test_carrier_and_link_events),
        cmocka_unit_test(test_rx_filter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
