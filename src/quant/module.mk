# quant: LUT palettization.
# No fused multiply-add contraction, so LUTs are bit-identical across compilers and
# architectures (x86-64 baseline has no FMA anyway; arm64 compilers would contract).
$(O)/obj/quant/%.o: CFLAGS += -ffp-contract=off
