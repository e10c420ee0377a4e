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

# CUDA backend (src/cuda/*.cu), found the way llm.c does it: nvcc on PATH or
# in /usr/local/cuda. Only the release build links it (the sanitizer build gets
# src/engine/engine_cuda_stub.c: ASan and the CUDA runtime do not mix); the
# binary runs without a GPU or driver (cudart is linked statically and loads
# libcuda only when a CUDA device is asked for; cuBLASLt through an rpath).
# `make NO_CUDA=1` forces the CPU-only build.
ifneq ($(NO_CUDA),1)
NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
endif
CUDA_NVCC := $(if $(filter 1,$(NO_CUDA)),,$(strip $(NVCC)))
ifneq ($(CUDA_NVCC),)
CUDA_HOME   := $(patsubst %/bin/nvcc,%,$(realpath $(CUDA_NVCC)))
CUDA_LIBDIR := $(firstword $(wildcard $(CUDA_HOME)/lib64/libcublasLt.so $(CUDA_HOME)/targets/x86_64-linux/lib/libcublasLt.so /usr/lib/x86_64-linux-gnu/libcublasLt.so))
CUDA_LIBDIR := $(patsubst %/,%,$(dir $(CUDA_LIBDIR)))
ifeq ($(CUDA_LIBDIR),)
$(warning nvcc found at $(CUDA_NVCC) but not libcublasLt.so: building without CUDA)
CUDA_NVCC :=
endif
endif
ifneq ($(CUDA_NVCC),)
CUDA_GENCODE ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
NVCC_FLAGS  := -std=c++17 -O3 -g -Isrc $(CUDA_GENCODE) -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror,-Wno-unused-parameter
CUDA_LIBS   := -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcublasLt -lcudart_static -ldl -lrt -lstdc++
CUDA_SRC    := $(wildcard src/cuda/*.cu)
CUDA_HDRS   := $(wildcard src/cuda/*.cuh)
CUDA_OBJ    := $(patsubst %.cu,build/release/obj/%.o,$(CUDA_SRC))
endif

LIB_SRC  := $(filter-out src/cli/main.c,$(wildcard src/*/*.c))
CLI_MAIN := src/cli/main.c
CLI_CMDS := $(wildcard src/cli/cmd_*.c)
TEST_SRC := $(wildcard tests/test_*.c)
HDRS     := $(wildcard src/*/*.h tests/*.h)

all: build/release/oprm $(if $(CUDA_OBJ),build/release/cuda_check) $(if $(NCCL_OK),build/release/nccl/dist_nccl.o)

# NCCL variant of the communication module, bootstrapped through MPI.
build/release/nccl/dist_nccl.o: src/dist/dist_nccl.c src/dist/dist_nccl.h src/dist/dist.h
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(RELEASE_FLAGS) -DOPRM_NCCL -I$(CUDA_HOME)/include -c $< -o $@

# $(1) name, $(2) compiler flags, $(3) library objects, $(4) extra libraries.
define variant
build/$(1)/obj/%.o: %.c $(HDRS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(BASE) $(2) -c $$< -o $$@

build/$(1)/liboprm.a: $(3)
	@rm -f $$@
	ar rcs $$@ $$(filter %.o,$$^)

# The subcommand objects are linked directly: an archive member is never pulled
# in to replace main.c's weak fallback definitions.
build/$(1)/oprm: build/$(1)/obj/$$(CLI_MAIN:.c=.o) $$(patsubst %.c,build/$(1)/obj/%.o,$$(CLI_CMDS)) build/$(1)/liboprm.a
	$$(CC) $(2) $$^ -o $$@ $$(LIBS) $(4)

build/$(1)/tests/%: build/$(1)/obj/tests/%.o build/$(1)/liboprm.a
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) $$^ -o $$@ $$(LIBS) $(4)
endef
# With CUDA, the release library trades the stub for the real engine.
CUDA_STUB := src/engine/engine_cuda_stub.c
RELEASE_LIB_OBJ := $(patsubst %.c,build/release/obj/%.o,$(if $(CUDA_OBJ),$(filter-out $(CUDA_STUB),$(LIB_SRC)),$(LIB_SRC))) $(CUDA_OBJ)
ASAN_LIB_OBJ    := $(patsubst %.c,build/asan/obj/%.o,$(LIB_SRC))
# A stamp per backend, so switching between CUDA and NO_CUDA=1 rebuilds the archive.
RELEASE_STAMP := build/release/.backend-$(if $(CUDA_OBJ),cuda,cpu)
$(RELEASE_STAMP):
	@mkdir -p $(dir $@)
	@rm -f build/release/.backend-*
	@touch $@
$(eval $(call variant,release,$(RELEASE_FLAGS),$(RELEASE_LIB_OBJ) $(RELEASE_STAMP),$(CUDA_LIBS)))
$(eval $(call variant,asan,$(ASAN_FLAGS),$(ASAN_LIB_OBJ)))

build/release/obj/src/cuda/%.o: src/cuda/%.cu $(CUDA_HDRS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CUDA_NVCC) $(NVCC_FLAGS) $(NVCC_EXTRA) -c $< -o $@
# AdamW's float operations exactly as written (no fused multiply-adds), as on the CPU.
build/release/obj/src/cuda/adamw.o: NVCC_EXTRA = --fmad=false

# The device check's driver (tools/cuda_check.sh runs it on a GPU machine).
build/release/cuda_check: build/release/obj/tests/cuda/cuda_check.o build/release/liboprm.a
	$(CC) $(RELEASE_FLAGS) $^ -o $@ $(LIBS) $(CUDA_LIBS)

cuda-check:
	tools/cuda_check.sh

# Which backends this build has (CI prints it).
config:
	@echo "CUDA: $(if $(CUDA_NVCC),$(CUDA_NVCC) (libs $(CUDA_LIBDIR); $(CUDA_GENCODE)),off)"

TEST_BINS_ASAN    := $(patsubst tests/%.c,build/asan/tests/%,$(TEST_SRC))
TEST_BINS_RELEASE := $(patsubst tests/%.c,build/release/tests/%,$(TEST_SRC))

# The README's test command. Sanitizer build of everything, then the runner
# (which ends with a short run of every libFuzzer target: fuzz/fuzz.mk).
test: $(TEST_BINS_ASAN) build/asan/oprm build/release/oprm fuzz-build
	OPRM_BIN=build/asan/oprm OPRM_FUZZ_SMOKE=1 tests/run.sh build/asan/tests

# Same suite against the optimised build (faster; what benchmarks use).
test-release: $(TEST_BINS_RELEASE) build/release/oprm
	OPRM_BIN=build/release/oprm tests/run.sh build/release/tests

# Every test binary without the team's shared data: each test that needs it
# skips, saying what is missing; none fails, none crashes (CI unset: here a
# skip is expected).
test-no-shared-data: $(TEST_BINS_ASAN) build/asan/oprm
	env -u CI OPRM_SHARED_DATA=/nonexistent/oprm-shared OPRM_BIN=build/asan/oprm tests/run.sh build/asan/tests

clean:
	rm -rf build

include fuzz/fuzz.mk tests/valgrind.mk

.PHONY: all test test-release test-no-shared-data clean cuda-check config
.SECONDARY:
