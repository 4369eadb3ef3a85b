#include "common/proc_info.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#define CMDLINE_SHOWN 200

void proc_sanitize(char *text)
{
    for (; *text; text++)
        if ((unsigned char)*text < 0x20 || (unsigned char)*text > 0x7e)
            *text = '?';
}

void proc_describe(pid_t pid, char *buf, size_t len)
{
    if (!len)
        return;
    char path[64], cmd[CMDLINE_SHOWN + 1];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, cmd, sizeof(cmd) - 1) : -1;
    if (fd >= 0)
        close(fd);
    while (n > 0 && cmd[n - 1] == '\0')
        n--;
    if (n <= 0) {
        snprintf(buf, len, "pid %d", (int)pid);
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    cmd[n] = '\0';
    proc_sanitize(cmd);
    snprintf(buf, len, "pid %d: %s%s", (int)pid, cmd, n == CMDLINE_SHOWN ? "..." : "");
}
