# quant: LUT palettization.
# This file is read before the Makefile's first target: keep "all" the default goal.
quant_saved_goal := $(.DEFAULT_GOAL)
# No fused multiply-add contraction, so LUTs are bit-identical across compilers and
# architectures (x86-64 baseline has no FMA anyway; arm64 compilers would contract).
$(O)/obj/quant/%.o: CFLAGS += -ffp-contract=off

# make bench runs bench-quant (always the release build: it is a timing).
# Modules add their own benchmarks as further prerequisites of `bench`.
.PHONY: bench-quant
bench: bench-quant
bench-quant:
	$(MAKE) BUILD=release build/release/bench/bench_quant
	build/release/bench/bench_quant

$(O)/bench/bench_quant: $(O)/obj/bench/bench_quant.o $(call libs_of,quant)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

.DEFAULT_GOAL := $(quant_saved_goal)
