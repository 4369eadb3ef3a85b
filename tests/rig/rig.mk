# The nested rig (tests/rig/README.md), included by the top-level Makefile.
#
#   make rig-build        build the rig once (cached in $(BUILD)/rig)
#   make rig-probe        print whether real guests run directly or in the rig
#   make rig-test         the real-guest tests ($(RIG_TESTS)), directly or in the rig
#   make rig-check N=20   reliability of the rig: the reference scenario N times
#
# RIG_MODE=direct|rig|auto|off chooses the path of real-guest tests (auto:
# probe host KVM; off: skip them).  Tests call $(RIG) exec ..., which honours it.

RIG       := tests/rig/rig.sh
RIG_MODE  ?= auto
RIG_TESTS ?= tests/rig/selftest.sh
N         ?= 20

.PHONY: rig-build rig-probe rig-test rig-check
rig-build:
	$(RIG) build

rig-probe:
	@RIG_MODE=$(RIG_MODE) $(RIG) probe

# Probes once, then runs each test with RIG_MODE fixed to the answer.
rig-test: $(BUILD)/propolis-standalone
	@set -e; \
	if [ "$(RIG_MODE)" = off ]; then echo "rig-test: skipped (RIG_MODE=off)"; exit 0; fi; \
	mode=$$(RIG_MODE=$(RIG_MODE) $(RIG) probe); \
	echo "rig-test: real-guest tests run $$( [ $$mode = direct ] && echo 'directly under host KVM' || echo 'in the nested rig')"; \
	if [ $$mode = rig ]; then $(RIG) build; fi; \
	pass=0; fail=0; \
	for t in $(RIG_TESTS); do \
		echo "== $$t"; \
		if RIG_MODE=$$mode VMM=$(BUILD)/propolis-standalone $$t; then pass=$$((pass+1)); else fail=$$((fail+1)); echo "rig-test: FAILED: $$t"; fi; \
	done; \
	echo "rig-test: $$pass passed, $$fail failed"; \
	[ $$fail = 0 ]

rig-check:
	$(RIG) check $(N)
