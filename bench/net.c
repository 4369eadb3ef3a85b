/* Network benchmark: our virtio-net (pci-virtio-viona) against QEMU's
 * virtio-net-pci, both on a TAP, on the same test guest in the same
 * invocation (and optionally against our VMM built from an earlier
 * revision, --vmm-before, see bench/build-before.sh).
 *
 * Each VM runs in a network namespace of its own, made fresh for it: this
 * program unshares one, creates a persistent TAP there (what `ip tuntap add
 * NAME mode tap; ip link set NAME up` does), starts the VMM inside it (both
 * VMMs attach to the existing TAP), and is the host end of the traffic
 * through AF_PACKET sockets on the TAP. It never touches the network
 * namespace it was started in.
 *
 * The guest's `net bench tx|rx` (guest/net_test.c) drives the NIC with a
 * polling driver at CPL3, one queue pair of 256 buffers:
 *  - guest->host: the guest sends generator frames of one size as fast as
 *    they go; here every frame is received and checked byte for byte
 *    against the generator (bad ones counted), timed on the host's
 *    CLOCK_MONOTONIC from the first frame to the last, next to the TAP's
 *    rx counters and the guest's own count.
 *  - host->guest: the guest first takes what waits in the TAP from the
 *    tests before until nothing came for 100 ms, then says it is ready;
 *    this program then sends generator frames to the guest's MAC as fast
 *    as sendmmsg takes them (batches of 64, PACKET_QDISC_BYPASS) for the
 *    window, pausing 20 us whenever the TAP's queue is full so that the
 *    sender does not take the CPU the VMM needs to empty it; the guest
 *    checks each frame byte for byte (and each buffer's length and
 *    virtio-net header) and counts the good ones and the bad ones.
 *    The figure is the guest's count over the host's window (first send to
 *    the moment the TAP's queue is drained); the drop rate is 1 - guest
 *    count / frames offered (offered = taken by the TAP + refused because
 *    its queue was full; the TAP's tx and tx_dropped counters agree).
 *  - 60-byte frames (packets/s) and 1514-byte frames (Gbit/s of Ethernet
 *    frames without preamble and FCS), both directions.
 *  - every test has a seed of its own (1, 2, ... in the order they run),
 *    passed to the guest: a frame of an earlier test is bad at either end.
 *    The frame generator is guest/net_frame.h, the guest's own.
 * Host CPU: the CPU time of every thread of the VMM process (per-thread
 * run time from /proc/PID/task/TID/schedstat, or utime+stime where that is
 * missing) from just before the test's command (guest->host) or the first
 * send (host->guest) to the end of the host's window, plus the vhost
 * worker kernel threads "vhost-PID" of kernels before 6.4,
 * as CPU-seconds per GiB and per million frames; shown for the whole
 * process and without the vCPU threads (the guest's polling driver keeps
 * its vCPU busy the whole window in both VMMs).
 *
 * Every run boots each contestant once (all four tests in one boot), the
 * order rotating from run to run (bench_util's run_order); the table shows
 * the median over runs with min..max and ratios. A run with a bad frame
 * (at either end) or a failure is reported and left out of the figures.
 * Prints the exact commands and configs; never fails on figures.
 *
 *   net --vmm BIN [--vmm-before BIN] --guest ROM [--qemu BIN] [--runs N] [--ms MS]
 *       [--vhost] [--tests tx60,tx1514,rx60,rx1514] [--qemu-cpu MODEL]
 * --qemu-cpu: QEMU's -cpu (default host,-arch-capabilities: QEMU 7.2 with a
 * plain -cpu host aborts on hosts whose KVM refuses its write of MSR 0x10a,
 * IA32_ARCH_CAPABILITIES; our VMM gives the guest the host's CPUID too).
 * --vhost: ours with its default (vhost-net where /dev/vhost-net opens)
 * against QEMU vhost=on; without it ours with `vhost-net = false` against
 * QEMU vhost=off. */
#include <errno.h>

#include "bench_util.h"
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../guest/net_frame.h"

#define MAX_RUNS 21
#define TAP_NAME "pstb0"
#define GUEST_MAC "02:00:5e:70:73:01"
#define TX_SLOTS 256 /* guest tx frames carry index 0..ring size - 1 */
#define RX_POOL 1024 /* distinct host frames sent round-robin */
#define BATCH 64     /* sendmmsg / recvmmsg batch */
/* The guest counts this long after the host stops sending: time for the
 * TAP's queue (txqueuelen frames) to drain even on a slow (rig) CPU, so
 * that the guest counts the frames the window offered. (What is left
 * anyway the next test's guest drains, and its seed tells apart.) */
#define RX_GUARD_MS 1000
#define RX_DRAIN_MS 800 /* the host window ends when the TAP's queue is empty, or after this */
#define GIB (1024.0 * 1024.0 * 1024.0)

static const uint8_t guest_mac[6] = {0x02, 0x00, 0x5e, 0x70, 0x73, 0x01};
static const uint8_t host_mac[6] = {0x02, 0x70, 0x65, 0x65, 0x72, 0x00};
static const uint8_t broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

enum test { TX60, TX1514, RX60, RX1514, NTESTS };
static const char *const test_names[NTESTS] = {"tx60", "tx1514", "rx60", "rx1514"};
static const char *const test_long[NTESTS] = {"guest->host 60 B", "guest->host 1514 B",
                                              "host->guest 60 B", "host->guest 1514 B"};
static const unsigned test_size[NTESTS] = {60, 1514, 60, 1514};
static bool test_tx(enum test t)
{
    return t == TX60 || t == TX1514;
}

enum metric { M_PPS, M_GBPS, M_CPU_GIB, M_CPU_MPKT, M_IO_CPU_GIB, M_DROP, NMETRICS };
static const char *const metric_names[NMETRICS] = {
    "kpps", "Gbit/s", "CPU-s/GiB", "CPU-s/Mpkt", "CPU-s/GiB w/o vCPU", "drop %"};

struct cell {
    struct series m[NMETRICS];
    char note[200]; /* the last failure or data problem seen */
};

static struct cell cells[NKINDS][NTESTS];

struct options {
    const char *vmm, *vmm_before, *guest, *qemu, *qemu_cpu;
    int runs;
    unsigned ms, cpus, mem_mib;
    bool vhost;
    bool test_on[NTESTS];
};

/* The frames of a test, of a seed of their own (1, 2, ...): frames 0 to
 * count - 1, each cut to size, written to frames. */
static struct net_frames new_frames(uint8_t dir, const uint8_t *dst, const uint8_t *src,
                                    unsigned size, uint8_t (*frames)[NET_FRAME_MAX], unsigned count)
{
    static uint32_t next_seed = 1;
    struct net_frames g = {.seed = next_seed++, .dir = dir, .dst = dst, .src = src};
    for (unsigned i = 0; i < count; i++)
        net_frame_fill(&g, i, size, frames[i]);
    return g;
}

/* ---- Network namespace, TAP, counters ---- */

static int host_netns = -1;

static void write_proc(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* no IPv6 in this kernel: nothing to quiet */
    if (write(fd, text, strlen(text)) < 0)
        fprintf(stderr, "bench: %s: %s\n", path, strerror(errno));
    close(fd);
}

static ino_t netns_inode(void)
{
    struct stat st;
    return stat("/proc/self/ns/net", &st) == 0 ? st.st_ino : 0;
}

/* Moves this process into a new, empty network namespace holding a
 * persistent TAP that is up; returns its ifindex. Dies rather than touch
 * the namespace it started in. */
static unsigned enter_fresh_netns(void)
{
    ino_t before = netns_inode();
    if (unshare(CLONE_NEWNET) < 0)
        die("unshare(CLONE_NEWNET): %s (run as root)", strerror(errno));
    if (netns_inode() == before || before == 0)
        die("not in a new network namespace after unshare");
    /* No IPv6 autoconfiguration chatter (router solicitations, MLD) on the TAP. */
    write_proc("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
    write_proc("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        die("/dev/net/tun: %s", strerror(errno));
    struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", TAP_NAME);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETPERSIST, 1) < 0)
        die("creating TAP %s: %s", TAP_NAME, strerror(errno));
    close(fd);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", TAP_NAME);
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        die("%s: SIOCGIFFLAGS: %s", TAP_NAME, strerror(errno));
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        die("%s: set up: %s", TAP_NAME, strerror(errno));
    close(s);
    unsigned index = if_nametoindex(TAP_NAME);
    if (!index)
        die("%s: no ifindex", TAP_NAME);
    return index;
}

/* Back to the namespace we started in; the fresh one (and its TAP) goes
 * away with its last process. */
static void leave_netns(void)
{
    if (setns(host_netns, CLONE_NEWNET) < 0)
        die("setns back: %s", strerror(errno));
}

struct link_stats {
    uint64_t rx_packets, tx_packets, rx_bytes, tx_bytes, rx_dropped, tx_dropped;
};

/* The TAP's counters (rx: frames the VMM wrote into the TAP; tx: frames the
 * VMM read from it, tx_dropped: frames the TAP's queue had no room for). */
static bool read_link_stats(int nl, unsigned ifindex, struct link_stats *out)
{
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
    } req = {
        .h = {.nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST},
        .i = {.ifi_family = AF_UNSPEC, .ifi_index = (int)ifindex}};
    if (send(nl, &req, sizeof(req), 0) < 0)
        return false;
    static char buf[32768];
    ssize_t n = recv(nl, buf, sizeof(buf), 0);
    if (n <= 0)
        return false;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned)n);
         h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_type != RTM_NEWLINK)
            continue;
        struct ifinfomsg *ifi = NLMSG_DATA(h);
        int len = (int)IFLA_PAYLOAD(h);
        for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
            if (a->rta_type != IFLA_STATS64 || RTA_PAYLOAD(a) < sizeof(struct rtnl_link_stats64))
                continue;
            struct rtnl_link_stats64 st;
            memcpy(&st, RTA_DATA(a), sizeof(st));
            *out = (struct link_stats){st.rx_packets, st.tx_packets, st.rx_bytes,
                                       st.tx_bytes,   st.rx_dropped, st.tx_dropped};
            return true;
        }
    }
    return false;
}

static int packet_socket(unsigned ifindex, uint16_t proto)
{
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(proto));
    if (fd < 0)
        die("AF_PACKET socket: %s", strerror(errno));
    int big = 64 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
    big = 16 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
    struct sockaddr_ll sll = {
        .sll_family = AF_PACKET, .sll_protocol = htons(proto), .sll_ifindex = (int)ifindex};
    if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
        die("bind AF_PACKET to %s: %s", TAP_NAME, strerror(errno));
    return fd;
}

/* ---- Commands ---- */

struct command {
    char mem[16], cpus[16], netdev[128], device[128];
    const char *argv[ARGV_MAX];
};

static void build_command(struct command *c, enum vmm_kind kind, const struct options *o)
{
    snprintf(c->mem, sizeof(c->mem), "%u", o->mem_mib);
    snprintf(c->cpus, sizeof(c->cpus), "%u", o->cpus);
    snprintf(c->netdev, sizeof(c->netdev), "tap,id=n0,ifname=%s,script=no,downscript=no,vhost=%s",
             TAP_NAME, o->vhost ? "on" : "off");
    snprintf(c->device, sizeof(c->device),
             "virtio-net-pci,netdev=n0,mac=%s,addr=4,romfile=", GUEST_MAC);
    /* debug-threads names the vCPU threads "CPU N/KVM"; romfile= leaves out
     * the option ROM (our NIC has none, the test guest runs none). */
    const char *qemu[] = {o->qemu,
                          "-name",
                          "nbench,debug-threads=on",
                          "-M",
                          "pc",
                          "-enable-kvm",
                          "-cpu",
                          o->qemu_cpu,
                          "-nodefaults",
                          "-no-user-config",
                          "-display",
                          "none",
                          "-m",
                          c->mem,
                          "-smp",
                          c->cpus,
                          "-bios",
                          o->guest,
                          "-serial",
                          "unix:ttya,server=on,wait=on",
                          "-netdev",
                          c->netdev,
                          "-device",
                          c->device,
                          NULL};
    const char *vmm[] = {kind == OURS ? o->vmm : o->vmm_before, "config.toml", NULL};
    copy_argv(c->argv, ARGV_MAX, kind == QEMU ? qemu : vmm);
}

static void config_text(char *out, size_t cap, const struct options *o)
{
    snprintf(out, cap,
             "[main]\nname = \"nbench-%d\"\ncpus = %u\nbootrom = \"%s\"\nmemory = %u\n\n"
             "[dev.net0]\ndriver = \"pci-virtio-viona\"\nvnic = \"%s\"\npci-path = \"0.4.0\"\n"
             "mac = \"%s\"\n%s",
             (int)getpid(), o->cpus, o->guest, o->mem_mib, TAP_NAME, GUEST_MAC,
             o->vhost ? "" : "vhost-net = false\n");
}

static pid_t launch(enum vmm_kind kind, const struct options *o, const char *dir)
{
    struct command c;
    build_command(&c, kind, o);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    if (chdir(dir) < 0)
        _exit(127);
    int log = open("vmm.log", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(log, 1);
    dup2(log, 2);
    execvp(c.argv[0], (char *const *)c.argv);
    _exit(127);
}

static void print_commands(const struct options *o, const bool present[NKINDS])
{
    printf("commands (each VM in a fresh network namespace holding TAP %s, made as by\n"
           "  `ip tuntap add %s mode tap && ip link set %s up` with IPv6 off; a fresh\n"
           "  directory holds the console socket ttya):\n",
           TAP_NAME, TAP_NAME, TAP_NAME);
    for (int k = 0; k < NKINDS; k++) {
        if (!present[k])
            continue;
        struct command c;
        char prefix[48];
        build_command(&c, (enum vmm_kind)k, o);
        snprintf(prefix, sizeof(prefix), "  %-7s ", vmm_kind_names[k]);
        print_command(prefix, c.argv);
    }
    char config[PATH_MAX + 512];
    config_text(config, sizeof(config), o);
    printf("  config.toml (%s):\n", present[BEFORE] ? "ours and before" : "ours");
    print_indented("    ", config);
    printf("  guest commands: net bench tx 0:4 ms=%u size=60|1514 batch=32 seed=N;"
           " net bench rx 0:4 ms=%u batch=32 seed=N (host sends for %u ms)\n",
           o->ms, o->ms + RX_GUARD_MS, o->ms);
}

static void note(struct cell *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->note, sizeof(c->note), fmt, ap);
    va_end(ap);
}

/* "key=N" from a guest line; false if absent. */
static bool field(const char *line, const char *key, unsigned long long *out)
{
    char k[32];
    snprintf(k, sizeof(k), " %s=", key);
    const char *p = strstr(line, k);
    if (!p)
        return false;
    *out = strtoull(p + strlen(k), NULL, 10);
    return true;
}

/* What a frame's first differing byte says about it. */
static const char *seed_hint(uint32_t at)
{
    return at == 22 || at == 23 ? " (its seed: a frame of another test)" : "";
}

/* ---- One test in a running VM ---- */

struct vm {
    enum vmm_kind kind;
    pid_t pid;
    unsigned ifindex;
    int nl;
    struct console con;
    int run;
    bool verbose; /* the first run prints the guest's set-up lines */
};

/* The guest's next line, without its "testguest: " prefix, in out; false
 * at the deadline. */
static bool next_guest_line(struct vm *vm, uint64_t deadline, char *out, size_t cap)
{
    while (console_next_line(&vm->con, out, cap, deadline)) {
        const char *t = strstr(out, "testguest: ");
        if (t) {
            memmove(out, t + 11, strlen(t + 11) + 1);
            return true;
        }
    }
    return false;
}

/* Reads the guest's lines up to "net queues"; false (with why) on failure. */
static bool await_queues(struct vm *vm, uint64_t deadline, char *why, size_t cap)
{
    char t[512];
    while (next_guest_line(vm, deadline, t, sizeof(t))) {
        if (strncmp(t, "net FAIL", 8) == 0) {
            snprintf(why, cap, "%.200s", t);
            return false;
        }
        if (vm->verbose && strncmp(t, "net ", 4) == 0)
            printf("    %s guest: %s\n", vmm_kind_names[vm->kind], t);
        if (strncmp(t, "net mac ", 8) == 0 && strcmp(t + 8, GUEST_MAC) != 0) {
            snprintf(why, cap, "guest reports MAC %.40s, not %s", t + 8, GUEST_MAC);
            return false;
        }
        if (strncmp(t, "net queues ", 11) == 0)
            return true;
    }
    snprintf(why, cap, "no 'net queues' line (last: %.160s)", vm->con.last);
    return false;
}

/* Reads up to the guest's result line for the test; keeps the guest's
 * line on its first bad frame in first_bad. */
static bool await_result(struct vm *vm, const char *prefix, uint64_t deadline, char *out,
                         size_t cap, char *why, size_t why_cap, char *first_bad, size_t bad_cap)
{
    while (next_guest_line(vm, deadline, out, cap)) {
        if (strncmp(out, "net rx first bad ", 17) == 0)
            snprintf(first_bad, bad_cap, "%.150s", out);
        if (strncmp(out, "net FAIL", 8) == 0) {
            snprintf(why, why_cap, "%.200s", out);
            return false;
        }
        if (strncmp(out, prefix, strlen(prefix)) == 0)
            return true;
    }
    snprintf(why, why_cap, "no '%s' line (last: %.160s)", prefix, vm->con.last);
    return false;
}

struct outcome {
    bool ok;
    char why[256];
    double frames, bytes, seconds; /* what the figure counts, over the host window */
    double drop;                   /* fraction, rx only */
    struct proc_cpu cpu0, cpu1;
};

static void record(struct cell *c, const struct outcome *r)
{
    double cpu = r->cpu1.total_s - r->cpu0.total_s;
    double io_cpu = cpu - (r->cpu1.vcpu_s - r->cpu0.vcpu_s);
    series_add(&c->m[M_PPS], r->frames / r->seconds / 1e3);
    series_add(&c->m[M_GBPS], r->bytes * 8 / r->seconds / 1e9);
    series_add(&c->m[M_CPU_GIB], cpu / (r->bytes / GIB));
    series_add(&c->m[M_CPU_MPKT], cpu / (r->frames / 1e6));
    series_add(&c->m[M_IO_CPU_GIB], io_cpu / (r->bytes / GIB));
    series_add(&c->m[M_DROP], 100 * r->drop);
}

static void print_cpu(const struct outcome *r, double wall)
{
    double cpu = r->cpu1.total_s - r->cpu0.total_s, vcpu = r->cpu1.vcpu_s - r->cpu0.vcpu_s,
           vh = r->cpu1.vhost_s - r->cpu0.vhost_s;
    printf("; VMM CPU %.3f s over %.3f s wall (vCPU threads %.3f, others %.3f%s", cpu, wall, vcpu,
           cpu - vcpu, vh > 0 ? "" : ")");
    if (vh > 0)
        printf(", of which vhost %.3f)", vh);
}

/* guest->host: the guest sends, we receive and check every frame. */
static void test_guest_to_host(struct vm *vm, enum test t, const struct options *o,
                               struct outcome *r)
{
    unsigned size = test_size[t];
    static uint8_t expected[TX_SLOTS][NET_FRAME_MAX];
    const struct net_frames gen =
        new_frames(NET_FRAME_GUEST, broadcast, guest_mac, size, expected, TX_SLOTS);
    int fd = packet_socket(vm->ifindex, NET_FRAME_ETHERTYPE);
    struct tpacket_stats ps;
    socklen_t pl = sizeof(ps);
    getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &ps, &pl); /* resets them */
    struct link_stats l0, l1;
    bool have_link = read_link_stats(vm->nl, vm->ifindex, &l0);

    char cmd[128], line[512];
    /* The CPU window opens before the command (the guest's driver set-up
     * is in it) so that nothing delays the first receive. */
    uint64_t cpu_t0 = now_ns();
    proc_cpu_read(vm->pid, &r->cpu0);
    snprintf(cmd, sizeof(cmd), "net bench tx 0:4 ms=%u size=%u batch=32 seed=%u\r", o->ms, size,
             gen.seed);
    console_say(&vm->con, cmd);
    uint64_t deadline = now_ns() + (30ull + 2ull * o->ms / 1000) * 1000000000ull;
    if (!await_queues(vm, deadline, r->why, sizeof(r->why))) {
        close(fd);
        return;
    }

    static uint8_t bufs[BATCH][2048];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){bufs[i], sizeof(bufs[i])};
        msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    uint64_t good = 0, bad = 0, first = 0, last = 0, bytes = 0;
    char first_bad[160] = "";
    bool done = false, failed = false;
    uint64_t drain_until = 0;
    for (;;) {
        int n = (int)recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n > 0) {
            uint64_t now = now_ns();
            if (!first)
                first = now;
            last = now;
            for (int i = 0; i < n; i++) {
                unsigned len = msgs[i].msg_len;
                const uint8_t *f = bufs[i];
                uint32_t index = len >= NET_FRAME_HEADER ? net_frame_stated_index(f) : UINT32_MAX;
                /* Frames of the ring's slots, so a table is quicker. */
                bool ok = len == size && index < TX_SLOTS && memcmp(f, expected[index], size) == 0;
                bytes += len;
                if (ok) {
                    good++;
                    continue;
                }
                if (!bad) {
                    uint32_t at = net_frame_diff(&gen, index, size, f, len);
                    snprintf(first_bad, sizeof(first_bad),
                             "first bad frame: #%llu len=%u index=%u first differing byte %u%s",
                             (unsigned long long)(good + bad), len, index, at, seed_hint(at));
                }
                bad++;
            }
            continue;
        }
        if (done && now_ns() > drain_until)
            break;
        struct pollfd p[2] = {{fd, POLLIN, 0}, {vm->con.fd, POLLIN, 0}};
        int timeout = done ? 5 : 100;
        if (poll(p, done ? 1 : 2, timeout) < 0 && errno != EINTR)
            die("poll: %s", strerror(errno));
        if (!done && (p[1].revents || vm->con.len)) {
            /* Whole lines only; poll said there is something to read. */
            while (next_guest_line(vm, now_ns() + 2000000ull, line, sizeof(line))) {
                if (strncmp(line, "net FAIL", 8) == 0) {
                    snprintf(r->why, sizeof(r->why), "%.200s", line);
                    failed = done = true;
                    break;
                }
                if (strncmp(line, "net bench tx ", 13) == 0) {
                    done = true;
                    proc_cpu_read(vm->pid, &r->cpu1);
                    drain_until = now_ns() + 20000000ull; /* frames still in the socket */
                    break;
                }
            }
        }
        if (!done && now_ns() > deadline) {
            snprintf(r->why, sizeof(r->why), "no result line (last: %.160s)", vm->con.last);
            failed = done = true;
        }
    }
    double cpu_wall = (double)(now_ns() - cpu_t0) / 1e9;
    getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &ps, &pl);
    have_link = read_link_stats(vm->nl, vm->ifindex, &l1) && have_link;
    close(fd);
    if (failed)
        return;
    unsigned long long gframes = 0, gbytes = 0, gus = 0, gbad = 0, gkicks = 0;
    field(line, "frames", &gframes);
    field(line, "bytes", &gbytes);
    field(line, "us", &gus);
    field(line, "bad", &gbad);
    field(line, "kicks", &gkicks);
    uint64_t frames = good + bad;
    double secs = frames > 1 ? (double)(last - first) / 1e9 : 0;
    printf("  %s %d %s: host got %llu frames (%llu bad) in %.3f s = %.0f kpps %.3f Gbit/s;"
           " socket drops %u; TAP rx %llu frames, rx_dropped %llu; guest: frames=%llu us=%llu"
           " kicks=%llu",
           vmm_kind_names[vm->kind], vm->run, test_names[t], (unsigned long long)frames,
           (unsigned long long)bad, secs, secs > 0 ? (double)frames / secs / 1e3 : 0,
           secs > 0 ? (double)bytes * 8 / secs / 1e9 : 0, ps.tp_drops,
           have_link ? (unsigned long long)(l1.rx_packets - l0.rx_packets) : 0ull,
           have_link ? (unsigned long long)(l1.rx_dropped - l0.rx_dropped) : 0ull, gframes, gus,
           gkicks);
    print_cpu(r, cpu_wall);
    printf("\n");
    if (bad || gbad) {
        snprintf(r->why, sizeof(r->why), "%llu bad frames at the host, guest bad=%llu%s%s",
                 (unsigned long long)bad, gbad, first_bad[0] ? "; " : "", first_bad);
        return;
    }
    if (frames < 2 || secs <= 0) {
        snprintf(r->why, sizeof(r->why), "host received %llu frames (guest sent %llu)",
                 (unsigned long long)frames, gframes);
        return;
    }
    if (ps.tp_drops)
        snprintf(r->why, sizeof(r->why),
                 "note: the host socket dropped %u frames (counted as not delivered)", ps.tp_drops);
    r->frames = (double)frames;
    r->bytes = (double)bytes;
    r->seconds = secs;
    r->drop = gframes ? 1.0 - (double)frames / (double)gframes : 0;
    r->ok = true;
}

/* host->guest: we send as fast as sendmmsg goes, the guest counts. */
static void test_host_to_guest(struct vm *vm, enum test t, const struct options *o,
                               struct outcome *r)
{
    unsigned size = test_size[t];
    static uint8_t pool[RX_POOL][NET_FRAME_MAX];
    const struct net_frames gen =
        new_frames(NET_FRAME_HOST, guest_mac, host_mac, size, pool, RX_POOL);
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0); /* protocol 0: receives nothing */
    if (fd < 0)
        die("AF_PACKET socket: %s", strerror(errno));
    int one = 1, big = 16 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
    if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) < 0)
        fprintf(stderr, "bench: PACKET_QDISC_BYPASS: %s\n", strerror(errno));
    struct sockaddr_ll sll = {
        .sll_family = AF_PACKET, .sll_protocol = 0, .sll_ifindex = (int)vm->ifindex};
    if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
        die("bind AF_PACKET to %s: %s", TAP_NAME, strerror(errno));
    struct link_stats l0, l1;

    char cmd[128], line[512];
    snprintf(cmd, sizeof(cmd), "net bench rx 0:4 ms=%u batch=32 seed=%u\r", o->ms + RX_GUARD_MS,
             gen.seed);
    console_say(&vm->con, cmd);
    uint64_t deadline = now_ns() + (30ull + 2ull * o->ms / 1000) * 1000000000ull;
    if (!await_queues(vm, deadline, r->why, sizeof(r->why))) {
        close(fd);
        return;
    }
    bool have_link = read_link_stats(vm->nl, vm->ifindex, &l0);
    proc_cpu_read(vm->pid, &r->cpu0);
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    uint64_t sent = 0, errors = 0, refused = 0; /* refused: ENOBUFS, the TAP's queue full */
    int last_errno = 0;
    struct timespec peer0, peer1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &peer0);
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)o->ms * 1000000ull;
    while (now_ns() < end) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){pool[(sent + (uint64_t)i) % RX_POOL], size};
            msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
        }
        int n = sendmmsg(fd, msgs, BATCH, 0);
        if (n > 0) {
            sent += (uint64_t)n;
            /* Short only on an error, whose errno sendmmsg does not
             * return: the frame after the last one sent was refused. */
            if (n < BATCH)
                refused++;
        } else if (n < 0 && errno == ENOBUFS) {
            /* The TAP's queue is full (its txqueuelen frames wait for the
             * VMM): the first frame of the batch was dropped. Give the CPU
             * to the VMM for a moment rather than spin on a full queue. */
            refused++;
            nanosleep(&(struct timespec){.tv_nsec = 20000}, NULL);
        } else if (n < 0) {
            errors++;
            last_errno = errno;
            if (errno != EAGAIN && errno != EINTR)
                break;
        }
    }
    uint64_t t_sent = now_ns();
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &peer1);
    /* The window ends when the TAP's queue is empty: every frame sent has
     * been read by the VMM or dropped by the TAP (or after RX_DRAIN_MS). */
    uint64_t t1 = t_sent;
    if (have_link) {
        uint64_t give_up = t_sent + RX_DRAIN_MS * 1000000ull;
        for (;;) {
            have_link = read_link_stats(vm->nl, vm->ifindex, &l1);
            t1 = now_ns();
            if (!have_link ||
                (l1.tx_packets - l0.tx_packets) + (l1.tx_dropped - l0.tx_dropped) >=
                    sent + refused ||
                t1 > give_up)
                break;
            usleep(200);
        }
    }
    proc_cpu_read(vm->pid, &r->cpu1);
    double cpu_wall = (double)(now_ns() - t0) / 1e9;
    close(fd);
    deadline = now_ns() + (30ull + 2ull * o->ms / 1000) * 1000000000ull;
    char first_bad[160] = "";
    if (!await_result(vm, "net bench rx ", deadline, line, sizeof(line), r->why, sizeof(r->why),
                      first_bad, sizeof(first_bad)))
        return;
    unsigned long long gframes = 0, gbytes = 0, gus = 0, gbad = 0, gkicks = 0;
    field(line, "frames", &gframes);
    field(line, "bytes", &gbytes);
    field(line, "us", &gus);
    field(line, "bad", &gbad);
    field(line, "kicks", &gkicks);
    double secs = (double)(t1 - t0) / 1e9;
    double peer_cpu =
        (double)(peer1.tv_sec - peer0.tv_sec) + (double)(peer1.tv_nsec - peer0.tv_nsec) / 1e9;
    uint64_t offered = sent + refused;
    printf("  %s %d %s: host offered %llu frames in %.3f s (%llu refused: TAP queue full%s%s),"
           " window to drained %.3f s; guest got %llu (bad=%llu kicks=%llu) = %.0f kpps %.3f"
           " Gbit/s, drop %.1f%%; TAP tx %llu tx_dropped %llu; sender CPU %.2f s",
           vmm_kind_names[vm->kind], vm->run, test_names[t], (unsigned long long)offered,
           (double)(t_sent - t0) / 1e9, (unsigned long long)refused,
           errors ? "; other send errors, last: " : "", errors ? strerror(last_errno) : "", secs,
           gframes, gbad, gkicks, (double)gframes / secs / 1e3, (double)gbytes * 8 / secs / 1e9,
           offered ? 100.0 * (1.0 - (double)gframes / (double)offered) : 0.0,
           have_link ? (unsigned long long)(l1.tx_packets - l0.tx_packets) : 0ull,
           have_link ? (unsigned long long)(l1.tx_dropped - l0.tx_dropped) : 0ull, peer_cpu);
    print_cpu(r, cpu_wall);
    printf("\n");
    if (gbad) {
        unsigned long long at = 0;
        snprintf(r->why, sizeof(r->why), "guest counted %llu bad frames or buffers; %s%s", gbad,
                 first_bad, field(first_bad, "at", &at) ? seed_hint((uint32_t)at) : "");
        return;
    }
    if (!gframes || gbytes != gframes * size) {
        snprintf(r->why, sizeof(r->why), "guest got %llu frames, %llu bytes: not %u bytes each",
                 gframes, gbytes, size);
        return;
    }
    if (gframes > sent) {
        snprintf(r->why, sizeof(r->why), "guest counted %llu frames of %llu sent", gframes,
                 (unsigned long long)sent);
        return;
    }
    r->frames = (double)gframes;
    r->bytes = (double)gbytes;
    r->seconds = secs;
    r->drop = 1.0 - (double)gframes / (double)offered;
    r->ok = true;
}

/* ---- One VM run ---- */

static void run_vm(enum vmm_kind kind, const struct options *o, int run)
{
    const char *who = vmm_kind_names[kind];
    char dir[] = "/tmp/pst-nbench-XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp: %s", strerror(errno));
    char path[PATH_MAX + 64];
    if (kind != QEMU) {
        static char config[PATH_MAX + 512];
        snprintf(path, sizeof(path), "%s/config.toml", dir);
        FILE *cfg = fopen(path, "w");
        if (!cfg)
            die("%s: %s", path, strerror(errno));
        config_text(config, sizeof(config), o);
        fputs(config, cfg);
        fclose(cfg);
    }
    struct vm vm = {.kind = kind, .run = run, .verbose = run == 1};
    vm.ifindex = enter_fresh_netns();
    vm.nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (vm.nl < 0)
        die("netlink: %s", strerror(errno));
    struct timeval tv = {.tv_sec = 1};
    setsockopt(vm.nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint64_t t0 = now_ns();
    vm.pid = launch(kind, o, dir);
    uint64_t deadline = t0 + 60ull * 1000000000ull;
    snprintf(path, sizeof(path), "%s/ttya", dir);
    vm.con = (struct console){.fd = connect_console(path, vm.pid, deadline, 1000)};
    const char *failed = NULL;
    if (vm.con.fd < 0) {
        failed = "no console";
    } else {
        char line[128];
        if (!console_expect(&vm.con, "testguest: ready", deadline))
            failed = "no 'ready'";
        snprintf(line, sizeof(line), "cpus=%u mem=%u\r", o->cpus, o->mem_mib);
        console_say(&vm.con, line);
        if (!failed && !console_expect(&vm.con, "testguest: echo?", deadline))
            failed = "no 'echo?'";
        console_say(&vm.con, "net\r");
        if (!failed && !console_expect(&vm.con, "testguest: irq?", deadline))
            failed = "no 'irq?'";
        console_say(&vm.con, "Z");
        if (!failed && !console_expect(&vm.con, "testguest: PASS", deadline))
            failed = "self-test did not PASS";
    }
    for (int t = 0; t < NTESTS; t++) {
        if (!o->test_on[t])
            continue;
        struct cell *c = &cells[kind][t];
        if (failed) {
            note(c, "%s run %d: %s", who, run, failed);
            continue;
        }
        struct outcome r = {.ok = false};
        if (test_tx((enum test)t))
            test_guest_to_host(&vm, (enum test)t, o, &r);
        else
            test_host_to_guest(&vm, (enum test)t, o, &r);
        if (r.ok) {
            record(c, &r);
            raw_result("net",
                       "{\"commit\":\"%s\",\"time\":%lld,\"vmm\":\"%s\",\"test\":\"%s\","
                       "\"run\":%d,\"frames\":%.0f,\"bytes\":%.0f,\"seconds\":%.6f,"
                       "\"drop\":%.6f,\"cpu_s\":%.4f,\"vcpu_s\":%.4f,\"vhost_s\":%.4f}",
                       git_commit(), (long long)time(NULL), who, test_names[t], run, r.frames,
                       r.bytes, r.seconds, r.drop, r.cpu1.total_s - r.cpu0.total_s,
                       r.cpu1.vcpu_s - r.cpu0.vcpu_s, r.cpu1.vhost_s - r.cpu0.vhost_s);
            if (r.why[0])
                note(c, "%s run %d: %s", who, run, r.why);
        } else {
            printf("  %s %d %s: FAILED, left out: %s\n", who, run, test_names[t], r.why);
            note(c, "%s run %d: failed: %s", who, run, r.why);
            if (waitpid(vm.pid, NULL, WNOHANG) == vm.pid) {
                failed = "the VMM exited";
                vm.pid = 0;
            }
        }
    }
    if (failed) {
        fprintf(stderr, "bench: %s run %d did not complete: %s (last line: %s)\n", who, run, failed,
                vm.con.last[0] ? vm.con.last : "none");
        snprintf(path, sizeof(path), "tail -n 5 %s/vmm.log | sed 's/^/    log: /' >&2", dir);
        if (system(path) != 0)
            fprintf(stderr, "bench: no log\n");
    }
    if (vm.pid > 0) {
        kill(vm.pid, SIGKILL);
        waitpid(vm.pid, NULL, 0);
    }
    if (vm.con.fd >= 0)
        close(vm.con.fd);
    close(vm.nl);
    leave_netns();
    if (run == 1 && kind != QEMU) {
        /* What our VMM says about the NIC: TAP opened, data path. */
        snprintf(path, sizeof(path), "%s/vmm.log", dir);
        FILE *f = fopen(path, "r");
        char line[512];
        while (f && fgets(line, sizeof(line), f))
            if (strstr(line, "net0"))
                printf("    %s log: %s", who, line);
        if (f)
            fclose(f);
    }
    char rm[PATH_MAX + 16];
    snprintf(rm, sizeof(rm), "rm -rf %s", dir);
    if (system(rm) != 0)
        fprintf(stderr, "bench: could not remove %s\n", dir);
}

/* ---- Summary ---- */

static bool summarize(const struct series *s, double *med, double *lo, double *hi)
{
    return summarize_values(s->v, s->n, med, lo, hi);
}

static void fmt_series(char *out, size_t cap, const struct series *s, enum metric m)
{
    double med, lo, hi;
    int prec = m == M_GBPS ? 3 : m == M_PPS || m == M_DROP ? 1 : 2;
    if (!summarize(s, &med, &lo, &hi))
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%.*f (%.*f..%.*f) n=%d", prec, med, prec, lo, prec, hi, s->n);
}

int main(int argc, char **argv)
{
    struct options o = {.qemu = "qemu-system-x86_64",
                        .qemu_cpu = "host,-arch-capabilities",
                        .runs = 5,
                        .ms = 2000,
                        .cpus = 1,
                        .mem_mib = 512,
                        .test_on = {true, true, true, true}};
    static const struct option opts[] = {
        {"vmm", required_argument, NULL, 'v'},      {"vmm-before", required_argument, NULL, 'b'},
        {"guest", required_argument, NULL, 'g'},    {"qemu", required_argument, NULL, 'q'},
        {"runs", required_argument, NULL, 'n'},     {"ms", required_argument, NULL, 'm'},
        {"vhost", no_argument, NULL, 'V'},          {"tests", required_argument, NULL, 't'},
        {"qemu-cpu", required_argument, NULL, 'c'}, {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'v':
            o.vmm = optarg;
            break;
        case 'b':
            o.vmm_before = optarg;
            break;
        case 'g':
            o.guest = optarg;
            break;
        case 'q':
            o.qemu = optarg;
            break;
        case 'n':
            o.runs = atoi(optarg);
            break;
        case 'm':
            o.ms = (unsigned)atoi(optarg);
            break;
        case 'V':
            o.vhost = true;
            break;
        case 'c':
            o.qemu_cpu = optarg;
            break;
        case 't':
            for (int t = 0; t < NTESTS; t++) {
                /* whole names in a comma-separated list */
                const char *p = optarg;
                size_t n = strlen(test_names[t]);
                o.test_on[t] = false;
                while ((p = strstr(p, test_names[t]))) {
                    if ((p == optarg || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
                        o.test_on[t] = true;
                    p += n;
                }
            }
            break;
        default:
            return 2;
        }
    }
    static char vmm_path[PATH_MAX], before_path[PATH_MAX], guest_path[PATH_MAX];
    if (o.vmm && realpath(o.vmm, vmm_path))
        o.vmm = vmm_path;
    if (o.vmm_before && realpath(o.vmm_before, before_path))
        o.vmm_before = before_path;
    if (o.guest && realpath(o.guest, guest_path))
        o.guest = guest_path;
    bool any = false;
    for (int t = 0; t < NTESTS; t++)
        any |= o.test_on[t];
    if (!o.vmm || !o.guest || o.runs < 1 || o.runs > MAX_RUNS || o.ms < 100 || o.ms > 60000 ||
        !any) {
        fprintf(stderr,
                "usage: net --vmm BIN [--vmm-before BIN] --guest ROM [--qemu BIN] [--runs N<=%d] "
                "[--ms 100..60000] [--vhost] [--tests tx60,tx1514,rx60,rx1514] "
                "[--qemu-cpu MODEL]\n",
                MAX_RUNS);
        return 2;
    }
    if (access(o.vmm, X_OK) != 0 || (o.vmm_before && access(o.vmm_before, X_OK) != 0))
        die("%s: not an executable", access(o.vmm, X_OK) != 0 ? o.vmm : o.vmm_before);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_TIMERSLACK, 1000UL); /* the sender's 20 us pauses stay short */
    setvbuf(stdout, NULL, _IOLBF, 0);
    host_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (host_netns < 0)
        die("/proc/self/ns/net: %s", strerror(errno));
    /* Every VM gets a network namespace of its own: without the privilege
     * to make one there is nothing to measure, which is not a failure. */
    if (unshare(CLONE_NEWNET) < 0) {
        printf("net: skipped: cannot make a network namespace (%s); run as root\n",
               strerror(errno));
        return 0;
    }
    leave_netns();
    const bool present[NKINDS] = {[OURS] = true, [BEFORE] = o.vmm_before != NULL, [QEMU] = true};
    bool vhost_dev = access("/dev/vhost-net", R_OK | W_OK) == 0;

    printf("net: virtio-net on a TAP; guest: %u vCPU, %u MiB, polling driver at CPL3, one "
           "queue pair of 256 buffers; %u ms per test, %d runs, %s\n",
           o.cpus, o.mem_mib, o.ms, o.runs,
           present[BEFORE] ? "ours, before and QEMU in rotating order"
                           : "ours and QEMU alternating");
    if (o.vhost)
        printf("  data path: vhost-net (ours: default, QEMU vhost=on)%s\n",
               vhost_dev ? ""
                         : "; /dev/vhost-net does NOT open here: ours falls back to "
                           "userspace, QEMU fails");
    else
        printf("  data path: userspace (ours: vhost-net = false, QEMU vhost=off)%s\n",
               vhost_dev ? ""
                         : "; this host has no /dev/vhost-net, so vhost-net cannot be "
                           "measured here (see bench/rig-net.sh)");
    printf("  frames: Ethernet without preamble/FCS; Gbit/s counts frame bytes; guest->host "
           "checked byte for byte on the host,\n  host->guest byte for byte by the guest; a "
           "seed per test; host CPU: all VMM threads (%s)\n",
           "per-thread run time from schedstat");
    struct utsname u;
    char qver[160] = "?", cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof(cmd), "%s --version 2>/dev/null", o.qemu);
    FILE *q = popen(cmd, "r");
    if (q) {
        if (!fgets(qver, sizeof(qver), q))
            snprintf(qver, sizeof(qver), "?");
        pclose(q);
    }
    qver[strcspn(qver, "\n")] = 0;
    printf("  host kernel %s; %s\n", uname(&u) == 0 ? u.release : "?", qver);
    print_commands(&o, present);
    print_load("before");

    for (int r = 0; r < o.runs; r++) {
        enum vmm_kind order[NKINDS];
        int count = run_order(r, present, order);
        for (int i = 0; i < count; i++)
            run_vm(order[i], &o, r + 1);
        printf("  run %d done\n", r + 1);
    }
    print_load("after");
    if (!proc_cpu_precise())
        printf("  (no schedstat here: CPU time from utime+stime, 1/%ld s resolution)\n",
               sysconf(_SC_CLK_TCK));

    printf("\n%-40s", "median (min..max) n=runs kept");
    for (int k = 0; k < NKINDS; k++)
        if (present[k])
            printf(" %-32s", vmm_kind_names[k]);
    if (present[BEFORE])
        printf(" %-11s", "ours/before");
    printf(" ours/qemu\n");
    for (int t = 0; t < NTESTS; t++) {
        if (!o.test_on[t])
            continue;
        for (int m = 0; m < NMETRICS; m++) {
            if (m == M_DROP && test_tx((enum test)t))
                continue; /* guest->host: the host socket's drops are shown per run */
            char label[80], text[96];
            snprintf(label, sizeof(label), "%s %s", test_long[t], metric_names[m]);
            printf("%-40s", label);
            double med[NKINDS], lo, hi;
            bool have[NKINDS];
            for (int k = 0; k < NKINDS; k++) {
                have[k] = present[k] && summarize(&cells[k][t].m[m], &med[k], &lo, &hi);
                if (!present[k])
                    continue;
                fmt_series(text, sizeof(text), &cells[k][t].m[m], (enum metric)m);
                printf(" %-32s", text);
            }
            for (int k = BEFORE; k < NKINDS; k++) {
                if (!present[k])
                    continue;
                snprintf(text, sizeof(text), "-");
                if (m != M_DROP && have[OURS] && have[k] && med[k] > 0)
                    snprintf(text, sizeof(text), "%.2f", med[OURS] / med[k]);
                printf(" %-*s", k == BEFORE ? 11 : 9, text);
            }
            printf("\n");
        }
    }
    printf("goal (issue 11): ours >= qemu in kpps and Gbit/s, ours <= qemu in CPU-s per GiB\n");
    printf("noise: %ld CPUs online here, shared with any other work; the guest's vCPU polls all "
           "the time and the host end of the traffic runs on them too\n",
           sysconf(_SC_NPROCESSORS_ONLN));
    bool notes = false;
    for (int k = 0; k < NKINDS; k++)
        for (int t = 0; t < NTESTS; t++)
            if (cells[k][t].note[0]) {
                if (!notes)
                    printf("problems and notes:\n");
                notes = true;
                printf("  %s: %s\n", test_names[t], cells[k][t].note);
            }
    return 0;
}
