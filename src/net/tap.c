/* TAP back end: see tap.h. Facts from the kernel's tuntap documentation
 * and <linux/if_tun.h>: TUNSETIFF attaches a /dev/net/tun fd to the
 * interface named in ifr_name (creating it if it does not exist, which
 * needs CAP_NET_ADMIN); each further TUNSETIFF on a multi-queue TAP adds a
 * queue; TUNSETQUEUE detaches and re-attaches a queue; TUNGETIFF reports
 * the attached interface's name and flags. */
#include "net/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/ethtool.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>

#define TAP_BASE_FLAGS (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
#define TAP_OFFLOAD_FLAGS                                                                          \
    (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO | TUN_F_USO4 | TUN_F_USO6)
#define TAP_LINK_READS_PER_EVENT 16

static void set_err(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
    if (!err || err_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void tap_init_empty(struct tap *tap)
{
    memset(tap, 0, sizeof(*tap));
    for (unsigned i = 0; i < TAP_MAX_QUEUES; i++)
        tap->queue_fds[i] = -1;
    tap->ctl_fd = -1;
    tap->link_fd = -1;
}

void tap_close(struct tap *tap)
{
    for (unsigned i = 0; i < TAP_MAX_QUEUES; i++)
        close_fd(&tap->queue_fds[i]);
    close_fd(&tap->ctl_fd);
    close_fd(&tap->link_fd);
    tap->queues = 0;
    tap->queues_enabled = 0;
}

/* The kernel's rules for interface names (dev_valid_name), plus '%', which
 * TUNSETIFF would take as a pattern ("tap%d") and replace. */
static bool valid_name(const char *name, char *err, size_t err_size)
{
    size_t len = strnlen(name, IFNAMSIZ);
    if (len == 0) {
        set_err(err, err_size, "the TAP name is empty");
        return false;
    }
    if (len >= IFNAMSIZ) {
        set_err(err, err_size, "TAP name \"%.*s...\" is too long (at most %d characters: IFNAMSIZ)",
                IFNAMSIZ - 1, name, IFNAMSIZ - 1);
        return false;
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        set_err(err, err_size, "\"%s\" is not a valid interface name", name);
        return false;
    }
    for (const char *c = name; *c; c++) {
        if (*c == '/' || *c == ':' || *c == '%' || *c == ' ' || (*c >= '\t' && *c <= '\r')) {
            set_err(err, err_size,
                    "TAP name \"%s\" has a character interface names cannot hold ('%c')", name,
                    *c == ' ' || (*c >= '\t' && *c <= '\r') ? ' ' : *c);
            return false;
        }
    }
    return true;
}

/* For an interface that exists: refuses anything but a TAP before any
 * attach is tried, so the error says what the name is. The tun driver
 * reports "tun" as its driver and "tap" or "tun" as its bus. */
static bool existing_is_tap(int ctl_fd, const char *name, char *err, size_t err_size)
{
    struct ethtool_drvinfo info = {.cmd = ETHTOOL_GDRVINFO};
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    ifr.ifr_data = (char *)&info;
    if (ioctl(ctl_fd, SIOCETHTOOL, &ifr) < 0) {
        set_err(err, err_size, "interface \"%s\" exists but is not a TAP (not a tun/tap device)",
                name);
        return false;
    }
    info.driver[sizeof(info.driver) - 1] = '\0';
    info.bus_info[sizeof(info.bus_info) - 1] = '\0';
    if (strcmp(info.driver, "tun") != 0) {
        set_err(err, err_size, "interface \"%s\" exists but is not a TAP (driver \"%s\")", name,
                info.driver);
        return false;
    }
    if (strcmp(info.bus_info, "tap") != 0) {
        set_err(err, err_size,
                "interface \"%s\" exists but is a TUN device (layer 3), not a TAP (layer 2)", name);
        return false;
    }
    return true;
}

static int open_tun_fd(const char *name, char *err, size_t err_size)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        set_err(err, err_size, "TAP \"%s\": cannot open /dev/net/tun: %s%s", name, strerror(e),
                e == EACCES || e == EPERM ? " (it needs read-write access)" : "");
        return -e;
    }
    return fd;
}

static int attach(int fd, const char *name, short flags)
{
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    ifr.ifr_flags = flags;
    return ioctl(fd, TUNSETIFF, &ifr) < 0 ? -errno : 0;
}

static void attach_error(const char *name, bool existed, unsigned queues, int e, char *err,
                         size_t err_size)
{
    switch (e) {
    case -EPERM:
        if (existed)
            set_err(err, err_size,
                    "no permission to open TAP \"%s\": it belongs to another user or group "
                    "(make it with `ip tuntap add %s mode tap user USER`, or run with "
                    "CAP_NET_ADMIN)",
                    name, name);
        else
            set_err(err, err_size,
                    "TAP \"%s\" does not exist and creating it needs CAP_NET_ADMIN (make it "
                    "beforehand with `ip tuntap add %s mode tap user USER`)",
                    name, name);
        break;
    case -EBUSY:
        set_err(err, err_size, "TAP \"%s\" is in use by another process", name);
        break;
    case -E2BIG:
        set_err(err, err_size, "TAP \"%s\" has no room for %u more queues", name, queues);
        break;
    case -EINVAL:
        if (existed && queues > 1) {
            set_err(err, err_size,
                    "TAP \"%s\" cannot take %u queues: it was made without multi_queue (make it "
                    "with `ip tuntap add %s mode tap multi_queue`)",
                    name, queues, name);
            break;
        }
        /* fall through */
    default:
        set_err(err, err_size, "cannot attach to TAP \"%s\": %s", name, strerror(-e));
        break;
    }
}

static int open_link_socket(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
    if (fd < 0)
        return -errno;
    struct sockaddr_nl addr = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK};
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int tap_open(const char *name, unsigned queues, struct tap *out, char *err, size_t err_size)
{
    tap_init_empty(out);
    if (!name || !valid_name(name, err, err_size))
        return -EINVAL;
    if (queues == 0 || queues > TAP_MAX_QUEUES) {
        set_err(err, err_size, "TAP \"%s\": %u queues asked, it takes 1 to %d", name, queues,
                TAP_MAX_QUEUES);
        return -EINVAL;
    }
    snprintf(out->name, sizeof(out->name), "%s", name);

    int rc;
    out->ctl_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (out->ctl_fd < 0) {
        rc = -errno;
        set_err(err, err_size, "TAP \"%s\": socket: %s", name, strerror(-rc));
        goto fail;
    }

    struct ifreq lookup;
    memset(&lookup, 0, sizeof(lookup));
    snprintf(lookup.ifr_name, sizeof(lookup.ifr_name), "%s", name);
    bool existed = ioctl(out->ctl_fd, SIOCGIFINDEX, &lookup) == 0;
    if (existed && !existing_is_tap(out->ctl_fd, name, err, err_size)) {
        rc = -EINVAL;
        goto fail;
    }

    rc = open_tun_fd(name, err, err_size);
    if (rc < 0)
        goto fail;
    out->queue_fds[0] = rc;

    unsigned features = 0;
    if (ioctl(out->queue_fds[0], TUNGETFEATURES, &features) < 0) {
        rc = -errno;
        set_err(err, err_size, "TAP \"%s\": TUNGETFEATURES: %s", name, strerror(-rc));
        goto fail;
    }
    unsigned needed = TAP_BASE_FLAGS | (queues > 1 ? IFF_MULTI_QUEUE : 0);
    if ((features & needed) != needed) {
        rc = -EOPNOTSUPP;
        set_err(err, err_size, "TAP \"%s\": the kernel's tun driver lacks features 0x%x", name,
                needed & ~features);
        goto fail;
    }

    short flags = (short)(TAP_BASE_FLAGS | (queues > 1 ? IFF_MULTI_QUEUE : 0));
    rc = attach(out->queue_fds[0], name, flags);
    /* A persistent TAP made multi_queue takes single-queue users only as
     * one queue of a multi-queue attach. */
    if (rc == -EINVAL && existed && queues == 1 && (features & IFF_MULTI_QUEUE)) {
        flags |= IFF_MULTI_QUEUE;
        rc = attach(out->queue_fds[0], name, flags);
    }
    if (rc < 0) {
        attach_error(name, existed, queues, rc, err, err_size);
        goto fail;
    }
    out->multi_queue = flags & IFF_MULTI_QUEUE;

    struct ifreq ifr = {0};
    if (ioctl(out->queue_fds[0], TUNGETIFF, &ifr) < 0) {
        rc = -errno;
        set_err(err, err_size, "TAP \"%s\": TUNGETIFF: %s", name, strerror(-rc));
        goto fail;
    }
    if ((ifr.ifr_flags & TAP_BASE_FLAGS) != TAP_BASE_FLAGS ||
        strncmp(ifr.ifr_name, name, IFNAMSIZ) != 0) {
        rc = -EINVAL;
        set_err(err, err_size, "TAP \"%s\": attached to \"%.*s\" with flags 0x%x, not a TAP", name,
                IFNAMSIZ, ifr.ifr_name, (unsigned)(unsigned short)ifr.ifr_flags);
        goto fail;
    }
    /* Made by us unless it appeared between the look-up and the attach. */
    out->created = !existed && !(ifr.ifr_flags & IFF_PERSIST);

    for (unsigned i = 1; i < queues; i++) {
        rc = open_tun_fd(name, err, err_size);
        if (rc < 0)
            goto fail;
        out->queue_fds[i] = rc;
        rc = attach(out->queue_fds[i], name, flags);
        if (rc < 0) {
            attach_error(name, true, queues, rc, err, err_size);
            goto fail;
        }
    }
    out->queues = queues;
    out->queues_enabled = queues;

    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (ioctl(out->ctl_fd, SIOCGIFINDEX, &ifr) < 0) {
        rc = -errno;
        set_err(err, err_size, "TAP \"%s\": SIOCGIFINDEX: %s", name, strerror(-rc));
        goto fail;
    }
    out->ifindex = (unsigned)ifr.ifr_ifindex;

    rc = open_link_socket();
    if (rc < 0) {
        set_err(err, err_size, "TAP \"%s\": rtnetlink socket: %s", name, strerror(-rc));
        goto fail;
    }
    out->link_fd = rc;
    out->link_up = tap_carrier(out);
    return 0;

fail:
    tap_close(out);
    out->created = false;
    return rc;
}

int tap_set_vnet_hdr_len(struct tap *tap, unsigned len)
{
    if (len != 10 && len != 12)
        return -EINVAL;
    int value = (int)len;
    /* A device setting: queue 0 is always attached, so it takes it. */
    if (ioctl(tap->queue_fds[0], TUNSETVNETHDRSZ, &value) < 0)
        return -errno;
    return 0;
}

int tap_set_offload(struct tap *tap, unsigned tun_f_flags)
{
    if (tun_f_flags & ~TAP_OFFLOAD_FLAGS)
        return -EINVAL;
    if (ioctl(tap->queue_fds[0], TUNSETOFFLOAD, (unsigned long)tun_f_flags) < 0)
        return -errno;
    return 0;
}

static int set_queue(int fd, short flag)
{
    struct ifreq ifr = {0};
    ifr.ifr_flags = flag;
    return ioctl(fd, TUNSETQUEUE, &ifr) < 0 ? -errno : 0;
}

int tap_enable_queues(struct tap *tap, unsigned n)
{
    if (n == 0 || n > tap->queues)
        return -EINVAL;
    if (n == tap->queues_enabled)
        return 0;
    /* The kernel refuses to attach an attached queue or detach a detached
     * one, so only the queues that change are touched. */
    for (unsigned i = n; i < tap->queues_enabled; i++) {
        int rc = set_queue(tap->queue_fds[i], IFF_DETACH_QUEUE);
        if (rc < 0) {
            tap->queues_enabled = i;
            return rc;
        }
    }
    for (unsigned i = tap->queues_enabled; i < n; i++) {
        int rc = set_queue(tap->queue_fds[i], IFF_ATTACH_QUEUE);
        if (rc < 0) {
            tap->queues_enabled = i;
            return rc;
        }
    }
    tap->queues_enabled = n;
    return 0;
}

int tap_set_rx_filter(struct tap *tap, const uint8_t (*addrs)[6], unsigned count,
                      bool all_multicast)
{
    if (tap->queues == 0 || count > UINT16_MAX)
        return -EINVAL;
    struct tun_filter *f = calloc(1, sizeof(*f) + (size_t)count * ETH_ALEN);
    if (!f)
        return -ENOMEM;
    f->flags = all_multicast ? TUN_FLT_ALLMULTI : 0;
    f->count = (uint16_t)count;
    if (count)
        memcpy(f->addr, addrs, (size_t)count * ETH_ALEN);
    /* The filter is the interface's; queue 0 is always attached. */
    int rc = ioctl(tap->queue_fds[0], TUNSETTXFILTER, f) < 0 ? -errno : 0;
    free(f);
    return rc;
}

bool tap_carrier(struct tap *tap)
{
    struct ifreq ifr = {0};
    if (tap->queues == 0 || ioctl(tap->queue_fds[0], TUNGETIFF, &ifr) < 0)
        return false;
    if (ioctl(tap->ctl_fd, SIOCGIFFLAGS, &ifr) < 0)
        return false;
    return (ifr.ifr_flags & (IFF_UP | IFF_RUNNING)) == (IFF_UP | IFF_RUNNING);
}

/* True if the messages in buf[0..len) speak of ifindex. */
static bool messages_name_link(const char *buf, size_t len, unsigned ifindex)
{
    bool ours = false;
    for (const struct nlmsghdr *nh = (const struct nlmsghdr *)buf; NLMSG_OK(nh, len);
         nh = NLMSG_NEXT(nh, len)) {
        if (nh->nlmsg_type != RTM_NEWLINK && nh->nlmsg_type != RTM_DELLINK)
            continue;
        if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
            continue;
        const struct ifinfomsg *ifi = NLMSG_DATA(nh);
        if (ifi->ifi_index > 0 && (unsigned)ifi->ifi_index == ifindex)
            ours = true;
    }
    return ours;
}

bool tap_link_event(struct tap *tap)
{
    if (tap->link_fd < 0)
        return false;
    bool recheck = false;
    _Alignas(struct nlmsghdr) char buf[8192];
    for (int reads = 0; reads < TAP_LINK_READS_PER_EVENT; reads++) {
        struct sockaddr_nl from = {0};
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr msg = {
            .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = recvmsg(tap->link_fd, &msg, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* ENOBUFS: messages were lost, so the state must be read. */
            if (errno == ENOBUFS)
                recheck = true;
            break;
        }
        if (n == 0)
            break;
        /* Only the kernel speaks for links (port 0). */
        if (msg.msg_namelen != sizeof(from) || from.nl_pid != 0)
            continue;
        /* A message cut short may have been about us. */
        if (msg.msg_flags & MSG_TRUNC)
            recheck = true;
        if (messages_name_link(buf, (size_t)n, tap->ifindex))
            recheck = true;
    }
    if (!recheck)
        return false;
    bool up = tap_carrier(tap);
    if (up == tap->link_up)
        return false;
    tap->link_up = up;
    return true;
}
