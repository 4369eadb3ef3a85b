# propolis-standalone for Linux/KVM. `make` builds, `make test` runs every
# test tier this host supports, `make bench` prints benchmark figures.

CC      ?= cc
BUILD   ?= build
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
                 -Wstrict-prototypes -Wmissing-prototypes -Isrc -g -MMD -MP
CFLAGS_RELEASE := $(CFLAGS_COMMON) -O2 -fstack-protector-strong -D_FORTIFY_SOURCE=2 \
                  -ffunction-sections -fdata-sections
CFLAGS_SAN := $(CFLAGS_COMMON) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=undefined
LDLIBS  := -ljansson -luring -lseccomp -lgcrypt -lgpg-error -lxxhash -lpthread
# The VMM links its libraries statically and the C library dynamically:
# the C library can then load libnbd (block/nbd.c) on demand, and a VM
# without an NBD disk maps no more than glibc. Static archives of the rest
# keep exec as fast as it can be; --gc-sections drops what nothing calls
# (libgcrypt's code until the crucible back end uses it).
LDFLAGS_RELEASE := -Wl,-O1 -Wl,--as-needed -Wl,--gc-sections
LDLIBS_RELEASE := -Wl,-Bstatic -ljansson -luring -lseccomp -lgcrypt -lgpg-error -lxxhash -Wl,-Bdynamic -lpthread

LIB_SRCS  := $(sort $(shell find src -name '*.c' ! -name main.c))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
SAN_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/san/%.o)
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/san/tests/%)

.PHONY: all test unit-test kvm-test toml-test bench clean format example quickstart crucible-vectors
all: $(BUILD)/propolis-standalone $(BUILD)/toml2json $(BUILD)/ttyexpect guest

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) -c $< -o $@

$(BUILD)/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_SAN) -c $< -o $@

$(BUILD)/propolis-standalone: $(BUILD)/obj/src/main.o $(LIB_OBJS)
	$(CC) $(CFLAGS_RELEASE) $(LDFLAGS_RELEASE) $^ -o $@ $(LDLIBS_RELEASE)

$(BUILD)/toml2json: $(BUILD)/obj/tools/toml2json.o $(LIB_OBJS)
	$(CC) $(CFLAGS_RELEASE) $^ -o $@ $(LDLIBS)

# Console driver for tests in environments without a scripting language (the rig).
$(BUILD)/ttyexpect: tools/ttyexpect.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) -static $< -o $@

# The test crucible downstairs as a program (VM tests, benchmark).
$(BUILD)/crucible-ds: tests/crucible/downstairs.c tests/unit/support/crucible_ds.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) -Itests/unit $^ -o $@ $(LDLIBS) -lssl -lcrypto

# Sanitizer builds of the binaries, used by the test tiers.
$(BUILD)/san/propolis-standalone: $(BUILD)/san/src/main.o $(SAN_OBJS)
	$(CC) $(CFLAGS_SAN) $^ -o $@ $(LDLIBS)

$(BUILD)/san/toml2json: $(BUILD)/san/tools/toml2json.o $(SAN_OBJS)
	$(CC) $(CFLAGS_SAN) $^ -o $@ $(LDLIBS)

# Unit tests link the shared test support (fake guest memory, a virtqueue
# driver, a fake block back end) from tests/unit/support/.
SUPPORT_SRCS := $(sort $(wildcard tests/unit/support/*.c))
SUPPORT_OBJS := $(SUPPORT_SRCS:%.c=$(BUILD)/san/%.o)

$(BUILD)/san/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_SAN) -Itests/unit -c $< -o $@

$(BUILD)/san/tests/%: $(BUILD)/san/tests/unit/%.o $(SUPPORT_OBJS) $(SAN_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_SAN) $^ -o $@ $(LDLIBS) -lcmocka -lssl -lcrypto

# Real-guest tests: in the nested rig, or directly where host KVM runs them.
RIG_TESTS := tests/rig/selftest.sh tests/rig/test_firmware.sh tests/rig/test_storage.sh \
             tests/rig/test_network.sh tests/rig/test_guest_devices.sh tests/rig/test_cpuid.sh \
             tests/rig/test_snapshot.sh tests/rig/test_durability.sh tests/rig/test_crucible.sh

include guest/guest.mk
-include tests/rig/rig.mk
include tests/fuzz/fuzz.mk

test: unit-test toml-test fuzz-smoke kvm-test rig-test

unit-test: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done
	tests/rig/test_install_sources.sh

toml-test: $(BUILD)/san/toml2json
	tests/toml/run.sh $(BUILD)/san/toml2json

kvm-test: $(BUILD)/san/propolis-standalone $(BUILD)/ttyexpect $(BUILD)/crucible-ds guest
	python3 tests/kvm/run_tests.py --vmm $(BUILD)/san/propolis-standalone --guest $(GUEST_BIN) \
	    --crucible-ds $(BUILD)/crucible-ds

$(BUILD)/bench/startup: bench/startup.c bench/bench_util.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) $^ -o $@

$(BUILD)/bench/block_backend: $(BUILD)/obj/bench/block_backend.o $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) $^ -o $@ $(LDLIBS)

$(BUILD)/bench/storage: bench/storage.c bench/bench_util.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) $^ -o $@ -ljansson

$(BUILD)/bench/net: bench/net.c bench/bench_util.c guest/net_frame.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) $(filter %.c,$^) -o $@

$(BUILD)/bench/snapshot: bench/snapshot.c bench/bench_util.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) $(filter %.c,$^) -o $@

$(BUILD)/bench/memory: bench/memory.c bench/bench_util.c src/virtio/virtio_blk.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) $(filter %.c,$^) -o $@

# make bench BENCH_BEFORE=<rev>: start-up, memory, storage and network also measure the
# VMM built from that git revision, interleaved with ours and QEMU.
BENCH_VMM_BEFORE = $(if $(BENCH_BEFORE),--vmm-before $(BUILD)/bench-before/propolis-standalone-$(BENCH_BEFORE))
bench: export BENCH_OUT = $(abspath $(BUILD))/bench
bench: $(BUILD)/propolis-standalone $(BUILD)/bench/startup $(BUILD)/bench/block_backend \
       $(BUILD)/bench/storage $(BUILD)/bench/net $(BUILD)/bench/snapshot $(BUILD)/bench/memory guest \
       $(BUILD)/crucible-ds
	$(if $(BENCH_BEFORE),bench/build-before.sh $(BENCH_BEFORE) $(BUILD)/bench-before)
	$(BUILD)/bench/startup --vmm $(BUILD)/propolis-standalone --guest $(GUEST_BIN) $(BENCH_VMM_BEFORE)
	$(BUILD)/bench/startup --vmm $(BUILD)/propolis-standalone --guest $(GUEST_BIN) $(BENCH_VMM_BEFORE) --nic
	$(BUILD)/bench/block_backend --seconds 2
	$(BUILD)/bench/storage --vmm $(BUILD)/propolis-standalone --guest $(GUEST_BIN) $(BENCH_VMM_BEFORE) --nbd \
	    --crucible $(BUILD)/crucible-ds
	$(BUILD)/bench/net --vmm $(BUILD)/propolis-standalone --guest $(GUEST_BIN) $(BENCH_VMM_BEFORE)
	$(BUILD)/bench/snapshot --vmm $(BUILD)/propolis-standalone --guest $(GUEST_BIN)
	$(BUILD)/bench/memory --vmm $(BUILD)/propolis-standalone --guest $(GUEST_BIN)
	BUILD=$(BUILD) bench/rig-ovmf.sh
	BUILD=$(BUILD) bench/rig-fio.sh
	BUILD=$(BUILD) bench/rig-net.sh
	BUILD=$(BUILD) bench/rig-vsock.sh

format:
	clang-format -i $$(find src tools tests guest bench -name '*.[ch]')

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' -type f 2>/dev/null)

example: all
	tools/run-example.sh

# The README quickstart: OVMF -> GRUB -> Linux from an ISO on virtio-blk.
# The script installs packages (as root) and builds before it runs.
quickstart:
	tools/quickstart.sh

# Regenerates tests/crucible/vectors.txt, crucible's message encodings as
# serde and bincode 1.x write them, and hash-vectors.txt (its block hash), from Debian's Rust crates
# (librust-serde-derive-dev, librust-bincode-dev, librust-uuid-dev; rustc, cargo).
crucible-vectors:
	cd tests/crucible/golden && CARGO_TARGET_DIR=$(abspath $(BUILD))/crucible-golden \
		cargo run --quiet --offline > ../vectors.txt.new && mv ../vectors.txt.new ../vectors.txt && \
		cargo run --quiet --offline hashes > ../hash-vectors.txt.new && \
		mv ../hash-vectors.txt.new ../hash-vectors.txt
