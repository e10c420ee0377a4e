# libFuzzer targets (clang from Debian: clang + libclang-rt-14-dev).
#   make fuzz-build                 builds build/fuzz/fuzz_* (ASan + UBSan + libFuzzer)
#   make fuzz FUZZ_SECONDS=N        runs each target N seconds on its corpus
#                                   (FUZZ_TARGETS="fuzz_data ..." picks some)
#   make fuzz-smoke                 the short run `make test` does (RESULT line)
# Only the parser layers are linked: the engine (OpenMP/BLAS) is not needed.
FUZZ_CC      ?= $(shell command -v clang-14 2>/dev/null || command -v clang 2>/dev/null)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
FUZZ_FLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_BASE    := $(filter-out -fopenmp,$(BASE)) -Wno-unknown-pragmas
FUZZ_LIB_SRC := $(wildcard src/util/*.c src/io/*.c src/tok/*.c src/data/*.c src/serve/*.c src/ordinal/*.c \
                          src/train/*.c) \
                src/model/config.c src/eval/score_json.c
FUZZ_NAMES   := $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_BINS    := $(addprefix build/fuzz/,$(FUZZ_NAMES))

build/fuzz/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_BASE) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

build/fuzz/liboprm_fuzz.a: $(patsubst %.c,build/fuzz/obj/%.o,$(FUZZ_LIB_SRC))
	@rm -f $@
	ar rcs $@ $^

build/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_util.h build/fuzz/liboprm_fuzz.a
	$(FUZZ_CC) $(FUZZ_BASE) $(FUZZ_FLAGS) -fsanitize=fuzzer $< build/fuzz/liboprm_fuzz.a -o $@ \
	    $(PKG_LIBS) -lm -lpthread

ifeq ($(FUZZ_CC),)
fuzz-build:
	@echo "fuzz-build: no clang found (install clang and libclang-rt-14-dev); fuzz targets skipped"
else
fuzz-build: $(FUZZ_BINS)
endif

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	FUZZ_SMOKE=1 fuzz/run.sh $(FUZZ_TARGETS)

.PHONY: fuzz-build fuzz fuzz-smoke
