# Test guest: a 128 KiB bootrom image (see guest/README.md). Included by the
# top-level Makefile; everything here is prefixed GUEST_ to stay out of its way.

GUEST_CC      ?= gcc
GUEST_LD      ?= ld
GUEST_OBJCOPY ?= objcopy
GUEST_OBJDUMP ?= objdump

GUEST_OUT := $(BUILD)/guest
GUEST_BIN := $(GUEST_OUT)/testguest.bin
GUEST_ELF := $(GUEST_OUT)/testguest.elf

# CPL0 code: this host's KVM emulates it and rejects SSE, x87, int n, ...
GUEST_CFLAGS := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -ffreestanding -fno-pic -fno-pie -mno-red-zone \
	-mgeneral-regs-only -mno-sse -mno-mmx -mno-80387 -fno-stack-protector \
	-nostdlib -O2 -march=x86-64 -mtune=generic -mcmodel=large \
	-fcf-protection=none -fno-asynchronous-unwind-tables \
	-fno-unwind-tables -fno-tree-loop-distribute-patterns -fno-jump-tables \
	-Iguest -MMD -MP
# The device fuzzer and the network test are compiled for size: the ROM's
# upper 64 KiB (the half real mode reaches) is full (their hot paths wait on
# the device, not on the instructions).
GUEST_SIZE_CFLAGS := -Os
GUEST_ASFLAGS := -ffreestanding -fno-pic -fno-pie -Iguest -MMD -MP
GUEST_LDFLAGS := -nostdlib -static -no-pie --no-dynamic-linker -z noexecstack \
	--build-id=none -z max-page-size=4096 --no-warn-rwx-segments -T guest/guest.ld

GUEST_OBJS := $(GUEST_OUT)/entry.o $(GUEST_OUT)/main.o $(GUEST_OUT)/storage_bench.o \
	$(GUEST_OUT)/pci.o $(GUEST_OUT)/device_fuzz.o $(GUEST_OUT)/net_test.o \
	$(GUEST_OUT)/cpl3.o $(GUEST_OUT)/virtio_modern.o $(GUEST_OUT)/text.o \
	$(GUEST_OUT)/vsock_fuzz.o $(GUEST_OUT)/mem_pattern.o $(GUEST_OUT)/hostile.o \
	$(GUEST_OUT)/acpiread.o

.PHONY: guest
guest: $(GUEST_BIN)

$(GUEST_OUT)/main.o: guest/main.c guest/layout.h guest/storage_bench.h guest/device_fuzz.h \
		guest/mem_pattern.h guest/net_test.h guest/pci.h guest/cpu.h guest/rand.h guest/text.h \
		guest/hostile.h guest/acpiread.h guest/guest.mk
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -c $< -o $@

# Storage benchmark drivers (CPL3 hot path; same flags: general registers only).
$(GUEST_OUT)/storage_bench.o: guest/storage_bench.c guest/storage_bench.h guest/mmio.h guest/pci.h \
		guest/layout.h guest/cpu.h guest/cpl3.h guest/rand.h guest/text.h \
		guest/virtio_modern.h guest/guest.mk
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -c $< -o $@

# virtio-net test driver (CPL3 loops, like the storage benchmark).
$(GUEST_OUT)/net_test.o: guest/net_test.c guest/net_test.h guest/mmio.h guest/pci.h guest/layout.h \
		guest/cpu.h guest/cpl3.h guest/net_frame.h guest/text.h guest/virtio_modern.h guest/guest.mk
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_SIZE_CFLAGS) -c $< -o $@

# What both CPL3 drivers share: the CPL3 sessions, the virtio-pci modern
# interface (set-up only: -Os), the output lines and argument parsing.
$(GUEST_OUT)/cpl3.o: guest/cpl3.c guest/cpl3.h guest/cpu.h guest/layout.h guest/guest.mk
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -c $< -o $@

$(GUEST_OUT)/virtio_modern.o: guest/virtio_modern.c guest/virtio_modern.h guest/cpl3.h \
		guest/cpu.h guest/mmio.h guest/pci.h guest/guest.mk
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_SIZE_CFLAGS) -c $< -o $@

$(GUEST_OUT)/text.o: guest/text.c guest/text.h guest/guest.mk
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_SIZE_CFLAGS) -c $< -o $@

# PCI helpers and the device fuzzer (CPL0).
$(GUEST_OUT)/pci.o: guest/pci.c guest/pci.h guest/layout.h guest/cpu.h guest/guest.mk
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -c $< -o $@

$(GUEST_OUT)/device_fuzz.o: guest/device_fuzz.c guest/device_fuzz.h guest/pci.h guest/layout.h \
		guest/cpu.h guest/cpl3.h guest/rand.h guest/virtio_modern.h guest/vsock_fuzz.h \
		guest/guest.mk
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_SIZE_CFLAGS) -c $< -o $@

# The `mem` command: RAM pattern fill and check at CPL3.
$(GUEST_OUT)/mem_pattern.o: guest/mem_pattern.c guest/mem_pattern.h guest/layout.h guest/cpu.h \
		guest/cpl3.h guest/text.h guest/guest.mk
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -c $< -o $@

# The device fuzzer's vsock driver (CPL3, polling).
$(GUEST_OUT)/vsock_fuzz.o: guest/vsock_fuzz.c guest/vsock_fuzz.h guest/layout.h guest/cpu.h \
		guest/cpl3.h guest/mmio.h guest/rand.h guest/text.h guest/virtio_modern.h guest/guest.mk
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_SIZE_CFLAGS) -c $< -o $@

# The hostile-guest matrix (CPL0, polling; placed in the ROM's lower half).
$(GUEST_OUT)/hostile.o: guest/hostile.c guest/hostile.h guest/pci.h guest/layout.h guest/cpu.h \
		guest/mmio.h guest/rand.h guest/text.h guest/virtio_modern.h guest/guest.mk
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_SIZE_CFLAGS) -c $< -o $@

# The `acpiread` command (CPL0; the ROM's lower half).
$(GUEST_OUT)/acpiread.o: guest/acpiread.c guest/acpiread.h guest/layout.h guest/cpu.h guest/pci.h guest/text.h \
		guest/guest.mk
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_SIZE_CFLAGS) -c $< -o $@

$(GUEST_OUT)/entry.o: guest/entry.S guest/layout.h guest/cpu.h guest/guest.mk
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_ASFLAGS) -c $< -o $@

$(GUEST_ELF): $(GUEST_OBJS) guest/guest.ld
	$(GUEST_LD) $(GUEST_LDFLAGS) -Map=$(GUEST_OUT)/testguest.map $(GUEST_OBJS) -o $@

# Check the disassembly for instructions the CPL0 emulator rejects, then
# produce the raw image and insist on exactly 128 KiB.
$(GUEST_BIN): $(GUEST_ELF) guest/check_insns.sh
	sh guest/check_insns.sh $(GUEST_OBJDUMP) $<
	$(GUEST_OBJCOPY) -O binary $< $@.tmp
	@size=$$(wc -c < $@.tmp); if [ "$$size" -ne 131072 ]; then \
		echo "testguest: image is $$size bytes, want 131072" >&2; rm -f $@.tmp; exit 1; fi
	@mv $@.tmp $@
