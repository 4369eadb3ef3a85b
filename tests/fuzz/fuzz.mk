# libFuzzer targets (tests/fuzz/README.md), included from the Makefile.
# The project's library is built again with clang, its objects under
# $(BUILD)/fuzz/obj with coverage instrumentation, ASan and UBSan.
#   make fuzz FUZZ_S=N      every target for N seconds; one line per target
#   make fuzz-smoke         every target for a few seconds (part of make test)
#   make fuzz FUZZ_TARGETS="toml nvme" FUZZ_S=600

FUZZ_CC ?= clang
FUZZ_S ?= 60
FUZZ_SMOKE_S ?= 8
FUZZ_TARGETS ?= toml config control vsock virtqueue virtio_blk virtio_net nvme fw_cfg pci \
                acpi_smbios snapshot crucible
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
               -Wstrict-prototypes -Wmissing-prototypes -Isrc -Itests/unit -g -O1 \
               -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined -MMD -MP \
               -Wno-gnu-variable-sized-type-not-at-end
# (that clang-only warning: the KVM ioctl buffers in src/core, a header with
# a flexible array followed by its entries, the usual way to size them)
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/fuzz/obj/%.o)
FUZZ_SUPPORT_OBJS := $(addprefix $(BUILD)/fuzz/obj,/tests/fuzz/fuzz_support.o /tests/fuzz/fuzz_virtio.o \
                     /tests/unit/support/fake_mem.o /tests/unit/support/fake_block.o \
                     /tests/unit/support/msix_fn.o /tests/unit/support/poll.o)
FUZZ_BINS := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)

.PHONY: fuzz fuzz-smoke fuzz-build
.PRECIOUS: $(BUILD)/fuzz/obj/%.o
$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(BUILD)/fuzz/fuzz_%: $(BUILD)/fuzz/obj/tests/fuzz/fuzz_%.o $(FUZZ_SUPPORT_OBJS) $(FUZZ_LIB_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $^ -o $@ $(LDLIBS) -lcmocka

# libseccomp's SCMP_A0..5 macros leave struct fields to zero-initialization,
# which clang's -Wextra reports (gcc's does not for compound literals).
$(BUILD)/fuzz/obj/src/common/sandbox.o: FUZZ_CFLAGS += -Wno-missing-field-initializers
# linux/netlink.h's NLMSG_OK compares the u32 length with the caller's int
# (the macro wants an int); clang's -Wextra reports it in the macro.
$(BUILD)/fuzz/obj/src/common/unix_listener.o: FUZZ_CFLAGS += -Wno-sign-compare

fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	tests/fuzz/run.sh $(BUILD)/fuzz $(FUZZ_S) $(FUZZ_TARGETS)

fuzz-smoke: $(FUZZ_BINS)
	tests/fuzz/run.sh $(BUILD)/fuzz $(FUZZ_SMOKE_S) $(FUZZ_TARGETS)
