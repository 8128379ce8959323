# Fuzzing with libFuzzer (clang -fsanitize=fuzzer,address,undefined). Included at the end of
# the Makefile.
#   make fuzz FUZZ_SECONDS=60      run every fuzz target for FUZZ_SECONDS each (new inputs kept
#                                  in build/fuzz/corpus/<target>/)
#   make fuzz-ci                   the same from the committed seeds, for CI (exits non-zero on
#                                  any crash, leak, sanitizer report or timeout)
#   make fuzz-corpus               regenerate the committed seed_* files in fuzz/corpus/
#   make fuzz-one FUZZ_TARGET=x    one target only (FUZZ_SECONDS), keeping its corpus
# Targets: fuzz/fuzz_<name>.c with seeds in fuzz/corpus/<name>/; add <name> to FUZZ_TARGETS,
# list the modules it links in FUZZ_MODULES_<name> (most dependent first) and define a
# (possibly empty) phony fuzz-seeds-<name> that fills $(FUZZ_O)/seeds/<name>/. Optional:
# FUZZ_MAXLEN_<name> (default 262144) and fuzz/<name>.dict (a libFuzzer dictionary).
#
#   mlpackage    the .mlpackage reader: manifest, model.mlmodel protobuf, weight.bin
#   safetensors  a .safetensors file: header validation, then every tensor read
#   index        a sharded checkpoint: model.safetensors.index.json + two shards
#   config       config.json -> Arch (arch_parse), tensor names, RoPE, the chunk planner
#   tokenizer    tokenizer.json (tok_load_json), then encoding and decoding a text
FUZZ_SECONDS ?= 60
FUZZ_TARGETS += mlpackage safetensors index config tokenizer
FUZZ_MODULES_mlpackage := coreml mil io common
FUZZ_MODULES_safetensors := io common
FUZZ_MODULES_index := io common
FUZZ_MODULES_config := parts model quant coreml mil io common
FUZZ_MODULES_tokenizer := runtime common
# (files larger than this are cut: the Hugging Face seeds keep their headers)
FUZZ_MAXLEN_safetensors := 65536
FUZZ_MAXLEN_index := 65536

FUZZ_O := build/fuzz
FUZZ_CC := clang
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=gnu11 -pthread -D_GNU_SOURCE -Isrc -I$(FUZZ_O)/gen $(WARN) -g -O1 -fno-omit-frame-pointer \
               $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_LIBS := $(LDLIBS)
# Run options: bounded input size and memory; a slow input is a finding too.
FUZZ_RUN = -max_len=$(or $(FUZZ_MAXLEN_$(1)),262144) -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
           $(if $(wildcard fuzz/$(1).dict),-dict=fuzz/$(1).dict)

# A smaller ASan quarantine (default 256 MB) doubles the executions of allocation-heavy targets
# (the tokenizer); use-after-free of recently freed memory is still caught.
FUZZ_ENV := ASAN_OPTIONS=$${ASAN_OPTIONS:-quarantine_size_mb=32}

fuzz_objs_of = $(patsubst src/%.c,$(FUZZ_O)/obj/%.o,$(wildcard src/$(1)/*.c)) \
               $(patsubst $(O)/gen/%.c,$(FUZZ_O)/obj/gen/%.o,$(GEN_SRC_$(1)))

$(FUZZ_O)/obj/%.o: src/%.c $(FUZZ_O)/gen/coreml/model_subset.pb-c.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_O)/obj/gen/%.o: $(FUZZ_O)/gen/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Wno-shadow -c $< -o $@

# One archive per module: a target links only the objects it uses.
$(FUZZ_O)/lib/lib%.a: $$(call fuzz_objs_of,$$*)
	@mkdir -p $(@D)
	@rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_O)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_util.h $$(foreach m,$$(FUZZ_MODULES_$$*),$(FUZZ_O)/lib/lib$$(m).a)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(foreach m,$(FUZZ_MODULES_$*),$(FUZZ_O)/lib/lib$(m).a) \
	    -o $@ $(FUZZ_LIBS)

# The seed tool is an ordinary program built from the release libraries.
$(O)/fuzz/seed_mlpackage: fuzz/seed_mlpackage.c $(call libs_of,coreml)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# Extra seeds, made at run time from material that is too large or not ours to commit.
.PHONY: fuzz-seeds-mlpackage fuzz-seeds-safetensors fuzz-seeds-index fuzz-seeds-config fuzz-seeds-tokenizer
# the small coremltools-written packages in $(SHARED)/golden, when present
fuzz-seeds-mlpackage: $(O)/fuzz/seed_mlpackage
	@rm -rf $(FUZZ_O)/seeds/mlpackage && mkdir -p $(FUZZ_O)/seeds/mlpackage
	@if [ -d $(SHARED)/golden ]; then $(O)/fuzz/seed_mlpackage $(FUZZ_O)/seeds/mlpackage $(SHARED)/golden/*.mlpackage; fi
# checkpoints written by Hugging Face's safetensors library (tests/data/refvectors)
fuzz-seeds-safetensors:
	@rm -rf $(FUZZ_O)/seeds/safetensors && mkdir -p $(FUZZ_O)/seeds/safetensors
	@for f in tests/data/refvectors/*/model*.safetensors; do \
	    cp $$f $(FUZZ_O)/seeds/safetensors/$$(basename $$(dirname $$f))_$$(basename $$f); done
# (the Hugging Face sharded checkpoint's shards are too large: the committed seeds suffice)
fuzz-seeds-index:
	@rm -rf $(FUZZ_O)/seeds/index && mkdir -p $(FUZZ_O)/seeds/index
fuzz-seeds-config:
	@rm -rf $(FUZZ_O)/seeds/config && mkdir -p $(FUZZ_O)/seeds/config
	@for f in tests/data/refvectors/*/config.json; do \
	    cp $$f $(FUZZ_O)/seeds/config/$$(basename $$(dirname $$f)).json; done
# (the real tokenizers are megabytes: too large for the fuzzer's inputs)
fuzz-seeds-tokenizer:
	@rm -rf $(FUZZ_O)/seeds/tokenizer && mkdir -p $(FUZZ_O)/seeds/tokenizer

.PHONY: fuzz fuzz-ci fuzz-corpus fuzz-one
fuzz: $(foreach t,$(FUZZ_TARGETS),$(FUZZ_O)/fuzz_$(t) fuzz-seeds-$(t))
	@$(foreach t,$(FUZZ_TARGETS), \
	    mkdir -p $(FUZZ_O)/corpus/$(t) && \
	    echo "== fuzz_$(t) for $(FUZZ_SECONDS) s" && \
	    $(FUZZ_ENV) $(FUZZ_O)/fuzz_$(t) $(call FUZZ_RUN,$(t)) -max_total_time=$(FUZZ_SECONDS) $(FUZZ_O)/corpus/$(t) \
	        fuzz/corpus/$(t) $(FUZZ_O)/seeds/$(t) &&) true

fuzz-one: $(FUZZ_O)/fuzz_$(FUZZ_TARGET) fuzz-seeds-$(FUZZ_TARGET)
	mkdir -p $(FUZZ_O)/corpus/$(FUZZ_TARGET)
	$(FUZZ_ENV) $(FUZZ_O)/fuzz_$(FUZZ_TARGET) $(call FUZZ_RUN,$(FUZZ_TARGET)) -max_total_time=$(FUZZ_SECONDS) \
	    $(FUZZ_O)/corpus/$(FUZZ_TARGET) fuzz/corpus/$(FUZZ_TARGET) $(FUZZ_O)/seeds/$(FUZZ_TARGET)

# Each target starts from the committed and generated seeds only; the summary line per target
# gives its executions (also in $(FUZZ_O)/ci/<target>.log).
fuzz-ci: $(foreach t,$(FUZZ_TARGETS),$(FUZZ_O)/fuzz_$(t) fuzz-seeds-$(t))
	@$(foreach t,$(FUZZ_TARGETS), \
	    rm -rf $(FUZZ_O)/ci/$(t) && mkdir -p $(FUZZ_O)/ci/$(t) && \
	    echo "== fuzz_$(t) for $(FUZZ_SECONDS) s (CI)" && \
	    { $(FUZZ_ENV) $(FUZZ_O)/fuzz_$(t) $(call FUZZ_RUN,$(t)) -max_total_time=$(FUZZ_SECONDS) \
	        -artifact_prefix=$(FUZZ_O)/ci/$(t)/ $(FUZZ_O)/ci/$(t) fuzz/corpus/$(t) $(FUZZ_O)/seeds/$(t) \
	        >$(FUZZ_O)/ci/$(t).log 2>&1 \
	      || { tail -n 60 $(FUZZ_O)/ci/$(t).log; echo "fuzz_$(t) found a problem; see $(FUZZ_O)/ci/$(t)/"; exit 1; }; } && \
	    grep -E "DONE" $(FUZZ_O)/ci/$(t).log | sed 's/^/   /' &&) true

fuzz-corpus: $(O)/fuzz/seed_mlpackage bin/anemll-mkmodel
	$(O)/fuzz/seed_mlpackage fuzz/corpus/mlpackage
	MKMODEL=bin/anemll-mkmodel fuzz/seed_models.sh fuzz/corpus

# (dependency files under build/fuzz are included by the Makefile's build/**/*.d)
