# Fuzzing with libFuzzer (clang -fsanitize=fuzzer,address,undefined). Included at the end of
# the Makefile.
#   make fuzz FUZZ_SECONDS=60      run every fuzz target for FUZZ_SECONDS each (new inputs kept
#                                  in build/fuzz/corpus/<target>/)
#   make fuzz-ci                   the same from the committed seeds, for CI (exits non-zero on
#                                  any crash, leak, sanitizer report or timeout)
#   make fuzz-corpus               regenerate the committed seeds in fuzz/corpus/
# Targets: fuzz/fuzz_<name>.c with seeds in fuzz/corpus/<name>/; add <name> to FUZZ_TARGETS and
# define a (possibly empty) phony fuzz-seeds-<name> that fills $(FUZZ_O)/seeds/<name>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS += mlpackage
FUZZ_O := build/fuzz
FUZZ_CC := clang
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=gnu11 -pthread -D_GNU_SOURCE -Isrc -I$(FUZZ_O)/gen $(WARN) -g -O1 -fno-omit-frame-pointer \
               $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(shell pkg-config --cflags libcjson libprotobuf-c 2>/dev/null)
FUZZ_LIBS := $(shell pkg-config --libs libcjson libprotobuf-c 2>/dev/null || echo -lcjson -lprotobuf-c) -lm
FUZZ_SRCS := $(wildcard src/common/*.c src/mil/*.c src/coreml/*.c)
FUZZ_OBJS := $(patsubst src/%.c,$(FUZZ_O)/obj/%.o,$(FUZZ_SRCS)) \
             $(FUZZ_O)/obj/gen/coreml/mil_subset.pb-c.o $(FUZZ_O)/obj/gen/coreml/model_subset.pb-c.o
# Run options: bounded input size and memory; a slow input is a finding too.
FUZZ_RUN := -max_len=262144 -rss_limit_mb=2048 -timeout=20 -print_final_stats=1

$(FUZZ_O)/obj/%.o: src/%.c $(FUZZ_O)/gen/coreml/model_subset.pb-c.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_O)/obj/gen/%.o: $(FUZZ_O)/gen/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Wno-shadow -c $< -o $@

$(FUZZ_O)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $^ -o $@ $(FUZZ_LIBS)

# The seed tool is an ordinary program built from the release libraries.
$(O)/fuzz/seed_mlpackage: fuzz/seed_mlpackage.c $(call libs_of,coreml)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# Extra seeds from the small coremltools-written packages in $(SHARED)/golden, when present.
.PHONY: fuzz-seeds-mlpackage
fuzz-seeds-mlpackage: $(O)/fuzz/seed_mlpackage
	@rm -rf $(FUZZ_O)/seeds/mlpackage && mkdir -p $(FUZZ_O)/seeds/mlpackage
	@if [ -d $(SHARED)/golden ]; then $(O)/fuzz/seed_mlpackage $(FUZZ_O)/seeds/mlpackage $(SHARED)/golden/*.mlpackage; fi

.PHONY: fuzz fuzz-ci fuzz-corpus
fuzz: $(foreach t,$(FUZZ_TARGETS),$(FUZZ_O)/fuzz_$(t) fuzz-seeds-$(t))
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_O)/corpus/$$t && \
	    echo "== fuzz_$$t for $(FUZZ_SECONDS) s" && \
	    $(FUZZ_O)/fuzz_$$t $(FUZZ_RUN) -max_total_time=$(FUZZ_SECONDS) $(FUZZ_O)/corpus/$$t fuzz/corpus/$$t \
	        $(FUZZ_O)/seeds/$$t || exit 1; \
	done

fuzz-ci: $(foreach t,$(FUZZ_TARGETS),$(FUZZ_O)/fuzz_$(t) fuzz-seeds-$(t))
	@for t in $(FUZZ_TARGETS); do \
	    rm -rf $(FUZZ_O)/ci/$$t && mkdir -p $(FUZZ_O)/ci/$$t && \
	    echo "== fuzz_$$t for $(FUZZ_SECONDS) s (CI)" && \
	    $(FUZZ_O)/fuzz_$$t $(FUZZ_RUN) -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(FUZZ_O)/ci/$$t/ \
	        $(FUZZ_O)/ci/$$t fuzz/corpus/$$t $(FUZZ_O)/seeds/$$t \
	        || { echo "fuzz_$$t found a problem; see $(FUZZ_O)/ci/$$t/"; exit 1; }; \
	done

fuzz-corpus: $(O)/fuzz/seed_mlpackage
	$(O)/fuzz/seed_mlpackage fuzz/corpus/mlpackage
