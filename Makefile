# anemll-c: one binary, plain make.
#   make            release build: bin/anemll, bin/anemll-mkmodel
#   make test       every test, built with AddressSanitizer + UBSan
#   make demo       build, make a tiny model, convert it, chat with it
#   make bench      LUT palettization benchmark
#   make fuzz       run the fuzz targets (FUZZ_SECONDS each)
#
# Sources live in src/<module>/*.c and build into one static library per module.
# Modules depend on each other in one direction only (see DEPS_*); a unit test
# tests/unit/test_<module>_<what>.c links its module and that module's dependencies.
# A module may add its own rules in src/<module>/module.mk.

.DEFAULT_GOAL := all
BUILD   ?= release
O       := build/$(BUILD)
CC      ?= cc
SHARED  ?= ../shared

WARN     := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes
BASEFLAGS = -std=gnu11 -pthread -D_GNU_SOURCE -Isrc -I$(O)/gen $(WARN) $(EXTRA_CFLAGS)
ifeq ($(BUILD),release)
  OPTFLAGS := -O2 -g
else ifeq ($(BUILD),asan)
  OPTFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
else ifeq ($(BUILD),debug)
  OPTFLAGS := -O0 -g
else
  $(error BUILD must be release, asan or debug)
endif
CFLAGS  := $(BASEFLAGS) $(OPTFLAGS)
LDFLAGS := $(OPTFLAGS) -pthread
PKGS    := libcjson libprotobuf-c yaml-0.1 libpcre2-8 openblas
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lcjson -lprotobuf-c -lyaml -lpcre2-8 -lopenblas) -lm
CFLAGS  += $(shell pkg-config --cflags $(PKGS) 2>/dev/null)

# Link order: a module appears before everything it depends on.
ORDER        := cli runtime parts model quant coreml mil io common
DEPS_common  :=
DEPS_io      := common
DEPS_model   := io common
DEPS_mil     := common
DEPS_coreml  := mil io common
DEPS_quant   := common
DEPS_parts   := model quant coreml mil io common
DEPS_runtime := parts model quant coreml mil io common
DEPS_cli     := runtime parts model quant coreml mil io common
LIBMODULES   := runtime parts model quant coreml mil io common
closure = $(filter $(1) $(DEPS_$(1)),$(ORDER))
libs_of = $(foreach m,$(call closure,$(1)),$(O)/lib/lib$(m).a)

# Generated sources (e.g. protobuf-c) add themselves to GEN_SRC_<module> in module.mk.
-include $(wildcard src/*/module.mk)

src_of  = $(wildcard src/$(1)/*.c)
objs_of = $(patsubst src/%.c,$(O)/obj/%.o,$(call src_of,$(1))) \
          $(patsubst $(O)/gen/%.c,$(O)/obj/gen/%.o,$(GEN_SRC_$(1)))

.PHONY: all test unit e2e demo bench bench-convert fuzz clean help
all: bin/anemll bin/anemll-mkmodel

help:
	@sed -n '2,8p' Makefile

define MODULE_LIB
$(O)/lib/lib$(1).a: $(call objs_of,$(1))
	@mkdir -p $$(@D)
	@rm -f $$@
	$$(AR) rcs $$@ $$^
endef
$(foreach m,$(LIBMODULES),$(eval $(call MODULE_LIB,$(m))))

$(O)/obj/gen/%.o: $(O)/gen/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Wno-shadow -MMD -MP -c $< -o $@

$(O)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(O)/obj/tools/%.o: tools/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(O)/obj/tests/%.o: tests/unit/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests/unit -MMD -MP -c $< -o $@

$(O)/obj/bench/%.o: bench/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# ---- the binary -------------------------------------------------------------
CLI_OBJS := $(patsubst src/%.c,$(O)/obj/%.o,$(call src_of,cli))
$(O)/bin/anemll: $(CLI_OBJS) $(call libs_of,runtime)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJS) $(call libs_of,runtime) $(LDLIBS)

$(O)/bin/anemll-mkmodel: $(O)/obj/tools/mkmodel.o $(call libs_of,model)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bin/%: $(O)/bin/%
	@mkdir -p bin
	cp $< $@

# ---- tests ------------------------------------------------------------------
# test_<module>_<what>.c -> $(O)/tests/test_<module>_<what>
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(patsubst tests/unit/%.c,$(O)/tests/%,$(UNIT_SRCS))
test_module = $(word 2,$(subst _, ,$(notdir $(1))))
TEST_HELPERS := $(patsubst tests/unit/%.c,$(O)/obj/tests/%.o,$(wildcard tests/unit/helper_*.c))

.SECONDARY:
.SECONDEXPANSION:
$(O)/tests/%: $(O)/obj/tests/%.o $(TEST_HELPERS) $$(call libs_of,$$(call test_module,$$*))
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

unit-bins: $(UNIT_BINS)

# The test suite runs under AddressSanitizer + UBSan; the release build is made too so
# that warnings in it are seen.
test: all
	$(MAKE) BUILD=asan unit-bins build/asan/bin/anemll build/asan/bin/anemll-mkmodel
	SHARED=$(SHARED) BUILD=asan scripts/run-tests.sh

# ---- demo, bench, fuzz: see scripts/ ----------------------------------------
demo: all
	scripts/demo.sh

# conversion of a Llama-3.2-1B-shaped random checkpoint against the read+write floor
bench-convert: all
	scripts/bench-convert.sh

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)

# Fuzz targets (fuzz/module.mk): make fuzz, make fuzz-ci, make fuzz-corpus
-include fuzz/module.mk
