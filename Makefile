# oprm build. `make` builds the release binary; `make test` builds the sanitizer
# (ASan + UBSan) variant and runs every test. Sources are found by wildcard, so a
# new file in src/<layer>/ needs no Makefile edit.
CC      ?= cc
PKGS    := jansson libpcre2-8 libutf8proc libmicrohttpd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN    := -Wall -Wextra -Werror -Wno-unused-parameter
BASE    := -std=c11 -D_GNU_SOURCE -fopenmp -fno-math-errno -Isrc -I/usr/include/x86_64-linux-gnu/openblas-openmp $(PKG_CFLAGS) $(WARN)
LIBS    := -fopenmp -lopenblas $(PKG_LIBS) -lm -lpthread

# MPI (src/dist, docs/distributed.md): with mpicc on the PATH (Debian:
# libopenmpi-dev) oprm is built against Open MPI and runs under mpirun/srun;
# without it, or with NO_MPI=1, the same sources build the single-process oprm.
ifeq ($(NO_MPI),)
MPICC   := $(shell command -v mpicc 2>/dev/null)
endif
ifneq ($(MPICC),)
BASE    += -DOPRM_MPI $(shell $(MPICC) --showme:compile)
LIBS    += $(shell $(MPICC) --showme:link)
endif
# NCCL (src/dist/dist_nccl.c): compiled (not linked into oprm) when the CUDA
# toolkit and nccl.h are present; the CUDA engine will link it. NO_NCCL=1 skips.
CUDA_HOME ?= /usr/local/cuda
ifeq ($(NO_NCCL),)
NCCL_OK := $(shell test -x $(CUDA_HOME)/bin/nvcc && test -f $(CUDA_HOME)/include/nccl.h && echo 1)
endif

RELEASE_FLAGS := -O3 -march=native -g
ASAN_FLAGS    := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined

LIB_SRC  := $(filter-out src/cli/main.c,$(wildcard src/*/*.c))
CLI_MAIN := src/cli/main.c
CLI_CMDS := $(wildcard src/cli/cmd_*.c)
TEST_SRC := $(wildcard tests/test_*.c)
HDRS     := $(wildcard src/*/*.h tests/*.h)

all: build/release/oprm $(if $(NCCL_OK),build/release/nccl/dist_nccl.o)

# NCCL variant of the communication module, bootstrapped through MPI.
build/release/nccl/dist_nccl.o: src/dist/dist_nccl.c src/dist/dist_nccl.h src/dist/dist.h
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(RELEASE_FLAGS) -DOPRM_NCCL -I$(CUDA_HOME)/include -c $< -o $@

define variant
build/$(1)/obj/%.o: %.c $(HDRS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(BASE) $(2) -c $$< -o $$@

build/$(1)/liboprm.a: $$(patsubst %.c,build/$(1)/obj/%.o,$$(LIB_SRC))
	@rm -f $$@
	ar rcs $$@ $$^

# The subcommand objects are linked directly: an archive member is never pulled
# in to replace main.c's weak fallback definitions.
build/$(1)/oprm: build/$(1)/obj/$$(CLI_MAIN:.c=.o) $$(patsubst %.c,build/$(1)/obj/%.o,$$(CLI_CMDS)) build/$(1)/liboprm.a
	$$(CC) $(2) $$^ -o $$@ $$(LIBS)

build/$(1)/tests/%: build/$(1)/obj/tests/%.o build/$(1)/liboprm.a
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) $$^ -o $$@ $$(LIBS)
endef
$(eval $(call variant,release,$(RELEASE_FLAGS)))
$(eval $(call variant,asan,$(ASAN_FLAGS)))

TEST_BINS_ASAN    := $(patsubst tests/%.c,build/asan/tests/%,$(TEST_SRC))
TEST_BINS_RELEASE := $(patsubst tests/%.c,build/release/tests/%,$(TEST_SRC))

# The README's test command. Sanitizer build of everything, then the runner
# (which ends with a short run of every libFuzzer target: fuzz/fuzz.mk).
test: $(TEST_BINS_ASAN) build/asan/oprm build/release/oprm fuzz-build
	OPRM_BIN=build/asan/oprm OPRM_FUZZ_SMOKE=1 tests/run.sh build/asan/tests

# Same suite against the optimised build (faster; what benchmarks use).
test-release: $(TEST_BINS_RELEASE) build/release/oprm
	OPRM_BIN=build/release/oprm tests/run.sh build/release/tests

clean:
	rm -rf build

include fuzz/fuzz.mk tests/valgrind.mk

.PHONY: all test test-release clean
.SECONDARY:
