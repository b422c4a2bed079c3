# ftlab build. Out-of-tree objects under $(BUILD); header dependencies via -MMD.
# Targets: all test check valgrind lint headercheck fuzz bench demo model clean.
# Sources are discovered by directory, so adding a .c file needs no Makefile change:
#   library:  common/ schema/ store/ scoring/ runner/ backends/ reports/ cli/   (cli/main.c is the program)
#   tests:    tests/unit/test_*.c      one cmocka executable each
#   fuzzers:  tests/fuzz/fuzz_*.c      one libFuzzer executable each (clang)
#   CUDA:     backends/native/ops/cuda/*.cu, only when nvcc is found

BUILD    ?= build
CC       ?= gcc
SAN      ?= 0
NVCC     ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA     ?= $(if $(NVCC),1,0)
ARCH     ?= -march=native
OPT      ?= -O2

WARN     := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
            -Wvla -Werror
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g $(OPT) $(ARCH) -fopenmp $(WARN) -I. -MMD -MP
LIBS     := -lgit2 -ljansson -lpcre2-8 -lyaml -lsqlite3 -ldnnl -lz -lm -lpthread

ifeq ($(SAN),1)
CFLAGS_BASE += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDSAN := -fsanitize=address,undefined
CUDA := 0
endif

CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
ifeq ($(CUDA),1)
CFLAGS_BASE += -DFTLAB_HAVE_CUDA=1 -I$(CUDA_HOME)/include
LIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
NVFLAGS := -O2 -std=c++17 -I. -gencode arch=compute_80,code=sm_80 \
           -gencode arch=compute_90,code=sm_90 -Werror all-warnings -Xcompiler -Wall,-Wextra \
           -DFTLAB_HAVE_CUDA=1 -MMD -MP
endif

CFLAGS   := $(CFLAGS_BASE) $(EXTRA_CFLAGS)
LDFLAGS  := -fopenmp $(LDSAN) $(EXTRA_LDFLAGS)

LIB_DIRS := common schema store scoring runner backends reports cli
LIB_SRC  := $(filter-out cli/main.c,$(shell find $(LIB_DIRS) -name '*.c' | sort))
CU_SRC   := $(if $(filter 1,$(CUDA)),$(shell find backends -name '*.cu' | sort))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CU_SRC:%.cu=$(BUILD)/%.cu.o)
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_SUPPORT_SRC := $(filter-out $(TEST_SRC),$(wildcard tests/unit/*.c))
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(BUILD)/%.o)
BIN      := $(BUILD)/ftlab

.PHONY: all deps test check valgrind lint headercheck fuzz fuzz-build bench demo model clean \
        tests-build test-browser docs-check
.DEFAULT_GOAL := all
# Test support objects are shared by every test binary: keep them between builds.
.SECONDARY: $(TEST_SUPPORT_OBJ)

all: deps $(BIN)

deps:
	@scripts/deps.sh

$(BUILD)/libftlab.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/cli/main.o $(BUILD)/libftlab.a
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libftlab.a $(LIBS)

# | deps: with -j, nothing compiles before the packages are installed (a fresh machine).
$(BUILD)/%.o: %.c | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.cu.o: %.cu | deps
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(TEST_SUPPORT_OBJ) $(BUILD)/libftlab.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(BUILD)/libftlab.a -lcmocka $(LIBS)

# Allocation fault injection: every test_alloc_* program sees the library's malloc,
# calloc and realloc through its own __wrap_* functions (tests/unit/test_alloc_faults.c).
$(BUILD)/tests/test_alloc_%: LDFLAGS += -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc

tests-build: deps $(BIN) $(TEST_BIN)

# The README's test command: unit tests, golden CLI cases, ends with "N passed, N failed".
test: tests-build model
	@scripts/deps.sh --test
	@scripts/run-tests.sh $(BUILD)

# Everything under AddressSanitizer and UndefinedBehaviorSanitizer.
check:
	$(MAKE) BUILD=build/check SAN=1 tests-build
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  scripts/run-tests.sh build/check

# The unit tests under valgrind (memcheck, suppressions in tests/valgrind.supp), in their
# own build: valgrind cannot decode AVX-512, which -march=native emits on such machines,
# and the CUDA runtime is left out. TESTS=substring selects tests, as for run-tests.sh.
valgrind:
	$(MAKE) BUILD=build/valgrind ARCH=-march=x86-64-v3 CUDA=0 tests-build
	VALGRIND=1 scripts/run-tests.sh build/valgrind

lint:
	@scripts/lint.sh

# Every header compiles on its own.
headercheck:
	@set -e; for h in $$(find $(LIB_DIRS) tests -name '*.h' | sort); do \
	  printf '#include "%s"\n' "$$h" | $(CC) $(CFLAGS_BASE) -x c -fsyntax-only -I. - \
	    || { echo "headercheck: $$h does not compile on its own"; exit 1; }; \
	done; echo "headercheck: all headers compile on their own"

# libFuzzer harnesses, seeded from the test corpus. FUZZ_SECONDS per harness.
FUZZ_SECONDS ?= 60
FUZZ_BUILD := build/fuzz
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fopenmp $(WARN) -Wno-unused-command-line-argument \
               -I. -MMD -MP -fsanitize=fuzzer-no-link,address,undefined -DFTLAB_FUZZING=1

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_OBJ)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJ) -fopenmp \
	  $(filter-out -lstdc++,$(LIBS))

fuzz-build: deps $(FUZZ_BIN)

fuzz: fuzz-build
	@set -e; for f in $(FUZZ_BIN); do \
	  name=$$(basename $$f); corpus=tests/fuzz/corpus/$${name#fuzz_}; \
	  work=build/fuzz/corpus/$${name#fuzz_}; mkdir -p $$work; \
	  echo "fuzz: $$name for $(FUZZ_SECONDS)s (seeds: $$corpus)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=0 \
	    $$work $$corpus 2>&1 | tail -n 3; \
	done

model:
	@scripts/fetch-model.sh

# Benchmarks that are programs of their own (bench/*.c against the library).
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))
$(BUILD)/bench/%: bench/%.c $(BUILD)/libftlab.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libftlab.a $(LIBS)

bench: all model $(BENCH_BIN)
	@scripts/deps.sh --bench
	@scripts/bench.sh

demo: all model
	@scripts/demo.sh

test-browser: all
	@scripts/test-browser.sh

clean:
	rm -rf build

-include $(shell find $(BUILD) build/fuzz -name '*.d' 2>/dev/null)

# ==== GPU bundle: `make gpu-bundle` (docs/cuda.md, "Checking a GPU machine") ===============
# Writes $(GPU_BUNDLE): gpu-check.sh, payload.tar.xz (ftlab, the CUDA test programs, the
# shared libraries a GPU machine without Debian's -dev packages lacks, model configs, the
# check's experiments and scripts) and MANIFEST. Objects are compiled in their own build
# dir (GPU_BUILD) with host code for any x86-64-v3 CPU (GPU_ARCH) and device code for sm_80
# and sm_90; the CUDA runtime is linked statically and the programs find the bundled
# libraries through the run path $ORIGIN/../lib (glibc, the driver and cuBLAS stay the
# machine's own). make test checks a bundle relinked from the main build's objects.
GPU_BUILD  ?= build/gpu
GPU_ARCH   ?= -march=x86-64-v3
GPU_BUNDLE ?= build/gpu-bundle
GPU_XZ     ?= -6
GPU_SYNTH_FULL ?= 1
GPU_STAGE  := $(BUILD)/gpu-stage
GPU_LIBS   := -Wl,--disable-new-dtags -Wl,-rpath,'$$ORIGIN/../lib' \
              $(subst -lcudart,-lcudart_static -ldl -lrt,$(filter-out -lcublasLt -lcublas,$(LIBS)))
GPU_PROGS  := $(GPU_STAGE)/bin/ftlab $(GPU_STAGE)/tests/test_cuda \
              $(GPU_STAGE)/tests/test_cuda_kernels \
              $(if $(filter 1,$(CUDA)),$(GPU_STAGE)/tests/cuda_kernels)
GPU_INPUTS := scripts/gpu-bundle.sh scripts/gpu-check.sh scripts/gpu_check_report.py \
              bench/torch_gpu_baseline.py $(wildcard bench/shapes/*.json bench/gpu-check/*.yaml) \
              tests/reference/smollm2_tokenizer.json experiments/data/topics/train.jsonl \
              experiments/data/topics/test.jsonl

.PHONY: gpu-bundle gpu-bundle-test
gpu-bundle: deps
	@[ "$(CUDA)" = 1 ] || [ "$(GPU_BUNDLE_NO_CUDA)" = 1 ] || \
	  { echo "gpu-bundle: needs the CUDA toolkit (nvcc not found)" >&2; exit 2; }
	$(MAKE) BUILD=$(GPU_BUILD) ARCH='$(GPU_ARCH)' GPU_BUNDLE=$(GPU_BUNDLE) $(GPU_BUNDLE)/MANIFEST

$(GPU_BUNDLE)/MANIFEST: $(GPU_PROGS) $(GPU_INPUTS)
	GPU_CUDA=$(CUDA) NVCC='$(NVCC)' GPU_XZ=$(GPU_XZ) GPU_SYNTH_FULL=$(GPU_SYNTH_FULL) \
	  scripts/gpu-bundle.sh $(GPU_STAGE) $(GPU_BUNDLE) '$(ARCH)'

$(GPU_STAGE)/bin/ftlab: $(BUILD)/cli/main.o $(BUILD)/libftlab.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libftlab.a $(GPU_LIBS)

$(GPU_STAGE)/tests/test_%: tests/unit/test_%.c $(TEST_SUPPORT_OBJ) $(BUILD)/libftlab.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(BUILD)/libftlab.a -lcmocka \
	  $(GPU_LIBS)

# The op-by-op comparison of tests/cuda_emu/emu_main.c, on the real kernels.
GPU_KERNEL_OBJ := $(BUILD)/tests/unit/tiny_model.o $(BUILD)/tests/unit/ops_guard.o
$(GPU_STAGE)/tests/cuda_kernels: tests/cuda_emu/emu_main.c $(GPU_KERNEL_OBJ) $(BUILD)/libftlab.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DFTLAB_KERNELS_ON_DEVICE $(LDFLAGS) -o $@ $< $(GPU_KERNEL_OBJ) \
	  $(BUILD)/libftlab.a $(GPU_LIBS)

# make test: a bundle from the main build's objects (relinking only; rebuilt when an input
# changes), checked by tests/unit/test_gpu_bundle.c; without nvcc it holds a CPU-only ftlab.
test: gpu-bundle-test
gpu-bundle-test: tests-build
	@$(MAKE) --no-print-directory gpu-bundle GPU_BUILD=$(BUILD) GPU_ARCH='$(ARCH)' \
	  GPU_BUNDLE=$(BUILD)/gpu-bundle-test GPU_BUNDLE_NO_CUDA=1 GPU_XZ=-1 GPU_SYNTH_FULL=0 \
	  FTLAB_NO_DEPS=1 >/dev/null
