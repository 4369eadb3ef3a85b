/* PCI helpers of the test guest (see pci.h). */
#include "pci.h"

#include "cpu.h"
#include "layout.h"

uint32_t pci_cfg_read(unsigned bus, unsigned dev, unsigned reg)
{
    outl(0xCF8, 0x80000000u | bus << 16 | dev << 11 | (reg & 0xfc));
    return inl(0xCFC);
}

void pci_cfg_write(unsigned bus, unsigned dev, unsigned reg, uint32_t v)
{
    outl(0xCF8, 0x80000000u | bus << 16 | dev << 11 | (reg & 0xfc));
    outl(0xCFC, v);
}

bool pci_is_virtio_blk(uint32_t id, uint32_t class_rev)
{
    (void)class_rev;
    return (id & 0xffff) == 0x1af4 && ((id >> 16) == 0x1001 || (id >> 16) == 0x1042);
}

bool pci_is_virtio_net(uint32_t id, uint32_t class_rev)
{
    (void)class_rev;
    return id == 0x10001af4u || id == 0x10411af4u;
}

bool pci_is_nvme(uint32_t id, uint32_t class_rev)
{
    return id != 0xffffffffu && (class_rev >> 8) == 0x010802;
}

bool pci_find(int want_bus, int want_dev, bool (*match)(uint32_t id, uint32_t class_rev),
              unsigned *bus, unsigned *dev)
{
    unsigned b = want_bus >= 0 ? (unsigned)want_bus : 0;
    for (unsigned d = want_dev >= 0 ? (unsigned)want_dev : 0; d < 32; d++) {
        if (match(pci_cfg_read(b, d, 0x00), pci_cfg_read(b, d, 0x08))) {
            *bus = b;
            *dev = d;
            return true;
        }
        if (want_dev >= 0)
            break;
    }
    return false;
}

void pci_disable(unsigned bus, unsigned dev)
{
    pci_cfg_write(bus, dev, 0x04, 0x400);
}

void pci_assign_bars(unsigned bus, unsigned dev, uint64_t bar_addr[6], uint64_t *bar_size,
                     uint64_t *next)
{
    uint32_t cmd = pci_cfg_read(bus, dev, 0x04) & 0xffff;
    pci_cfg_write(bus, dev, 0x04, cmd & ~7u);
    for (unsigned i = 0; i < 6; i++) {
        bar_addr[i] = 0;
        if (bar_size)
            bar_size[i] = 0;
    }
    for (unsigned i = 0; i < 6; i++) {
        unsigned reg = 0x10 + 4 * i;
        uint32_t orig = pci_cfg_read(bus, dev, reg);
        pci_cfg_write(bus, dev, reg, 0xffffffffu);
        uint32_t v = pci_cfg_read(bus, dev, reg);
        if (v == 0 || (orig & 1)) {
            pci_cfg_write(bus, dev, reg, orig);
            continue;
        }
        bool is64 = ((v >> 1) & 3) == 2;
        uint64_t size = (uint64_t)(uint32_t)(~(v & ~0xfu) + 1);
        if (is64) {
            pci_cfg_write(bus, dev, reg + 4, 0xffffffffu);
            if (pci_cfg_read(bus, dev, reg + 4) != 0xffffffffu)
                size = 0; /* 4 GiB or more: leave it alone */
        }
        if (size) {
            uint64_t at = (*next + size - 1) & ~(size - 1);
            if (at + size <= BENCH_MMIO_END) {
                bar_addr[i] = at;
                if (bar_size)
                    bar_size[i] = size;
                pci_cfg_write(bus, dev, reg, (uint32_t)at);
                *next = at + size;
            }
        }
        if (is64) {
            pci_cfg_write(bus, dev, reg + 4, 0);
            i++;
        }
    }
    pci_cfg_write(bus, dev, 0x04, (cmd & ~1u) | 0x2 | 0x4 | 0x400); /* MEM, BME, INTx off */
}

volatile uint8_t *pci_virtio_cap(unsigned bus, unsigned dev, const uint64_t bar_addr[6],
                                 unsigned cfg_type, uint32_t *extra)
{
    unsigned ptr =
        (pci_cfg_read(bus, dev, 0x04) >> 16) & 0x10 ? pci_cfg_read(bus, dev, 0x34) & 0xfc : 0;
    for (unsigned guard = 0; ptr >= 0x40 && guard < 48; guard++) {
        uint32_t h = pci_cfg_read(bus, dev, ptr);
        if ((h & 0xff) == 0x09 && ((h >> 24) & 0xff) == cfg_type) {
            unsigned bar = pci_cfg_read(bus, dev, ptr + 4) & 0xff;
            uint32_t off = pci_cfg_read(bus, dev, ptr + 8);
            if (bar >= 6 || !bar_addr[bar])
                return 0;
            if (extra)
                *extra = pci_cfg_read(bus, dev, ptr + 16);
            return (volatile uint8_t *)(uintptr_t)(bar_addr[bar] + off);
        }
        ptr = (h >> 8) & 0xfc;
    }
    return 0;
}
