# pinfer: one build for the userspace (libpinfer, the engine, tools/pinfer),
# the kernel module, the tests and the set-up steps. `make help` lists targets.

VERSION := 0.1.0
BUILD ?= build
CC ?= cc
PYTHON_SYS ?= /usr/bin/python3

# Shipped code is baseline x86-64: never -march=native. SIMD kernels live in
# files named *_avx2.c / *_avx512.c (engine/kernels/), compiled with their
# own flags and chosen at run time (runtime/cpu.c). The engine's folders are
# included by path from engine/ ("model/model.h"): Documentation/architecture.md.
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wvla
CPPFLAGS += -D_GNU_SOURCE -DPINFER_VERSION='"$(VERSION)"' \
	-Iuapi -Iruntime -Iengine -Itools
# -ffp-contract=off (C11's default, said outright): no a * b + c fused
# behind our back, so every kernel keeps the float order it states
# (engine/kernels/quant.h: packed, plain and reference dot products agree bit for bit).
ALL_CFLAGS = -std=c11 -ffp-contract=off $(WARN) $(CFLAGS) $(SAN_CFLAGS) -MMD -MP
LDLIBS += -luring -lnuma -lm -lpthread -ldl
TOOL_LDLIBS := -lcjson -lmicrohttpd
AVX2_FLAGS := -mavx2 -mfma -mf16c
AVX512_FLAGS := $(AVX2_FLAGS) -mavx512f -mavx512bw -mavx512dq -mavx512vl \
	-mavx512vnni

# `make SAN=1 ...` builds everything with AddressSanitizer and UBSan in
# build/asan (used by `make check-asan`).
ifeq ($(SAN),1)
BUILD := build/asan
SAN_CFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif

RUNTIME_SRC := $(wildcard runtime/*.c)
ENGINE_SRC := $(wildcard engine/*/*.c)
TOOL_SRC := $(wildcard tools/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
HELPER_SRC := $(wildcard tests/unit/print_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIBPINFER := $(BUILD)/libpinfer.a
LIBENGINE := $(BUILD)/libpinfer-engine.a
PINFER := $(BUILD)/pinfer
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
HELPER_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(HELPER_SRC))

# The CUDA backend (engine/cuda/, Documentation/cuda.md): a shared library
# that pinfer opens only for GPU layers (-ngl), built whenever nvcc is there
# (`make cuda` insists). Code for each GPU generation pinfer supports.
NVCC ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
CUDA_ARCHS ?= 80 86 89 90
NVCCFLAGS ?= -O2
LIBCUDA := $(BUILD)/libpinfer-cuda.so

.PHONY: all cuda help deps venv model demo check check-asan fuzz kmod kmod-clean \
	checkpatch clean distclean tests vm-kernels vm-setup dkms-install bench-runtime bench-kernels \
	bench-tokenize

all: $(PINFER) $(if $(NVCC),$(if $(filter 1,$(SAN)),,$(LIBCUDA)))

$(LIBCUDA): $(wildcard engine/cuda/*.cu engine/cuda/*.h)
	@test -n "$(NVCC)" || { echo "make cuda: no nvcc: install the CUDA toolkit, or set NVCC=" >&2; exit 1; }
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -std=c++17 -Iengine -shared -Werror all-warnings \
		-Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Wextra \
		$(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
		-gencode arch=compute_$(lastword $(CUDA_ARCHS)),code=compute_$(lastword $(CUDA_ARCHS)) \
		-o $@ $(filter %.cu,$^)

cuda: $(LIBCUDA)

# Keep objects that pattern rules chain through (test objects).
.SECONDARY:

help:
	@echo "make             build libpinfer, the engine and $(PINFER) (and the CUDA"
	@echo "                 backend $(LIBCUDA) when nvcc is there)"
	@echo "make cuda        build the CUDA backend (needs the CUDA toolkit)"
	@echo "make demo        deps, build, default model, then answer a prompt with it"
	@echo "make check       deps, build, model, and every test (what CI runs)"
	@echo "make check-asan  the C tests again under ASan + UBSan"
	@echo "make deps        install the Debian packages the project needs"
	@echo "make model       fetch the default model into models/"
	@echo "make kmod        build kmod/pinfer.ko (KDIR=... to choose headers)"
	@echo "make dkms-install install the module with dkms (root)"
	@echo "make checkpatch  run the kernel's checkpatch.pl --strict on kmod/ and uapi/"
	@echo "make vm-setup    fetch the test kernels, build the VM test programs and disk"
	@echo "make fuzz        fuzz each target (GGUF, model, text) for FUZZ_SECONDS (default 300)"
	@echo "make clean       remove build outputs (keeps models/ and the venv)"

# ---- userspace ------------------------------------------------------------

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/obj/%_avx2.o: %_avx2.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(AVX2_FLAGS) -c -o $@ $<

$(BUILD)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(AVX512_FLAGS) -c -o $@ $<

$(LIBPINFER): $(call obj,$(RUNTIME_SRC))
	@mkdir -p $(@D)
	rm -f $@ && $(AR) rcs $@ $^

$(LIBENGINE): $(call obj,$(ENGINE_SRC))
	@mkdir -p $(@D)
	rm -f $@ && $(AR) rcs $@ $^

$(PINFER): $(call obj,$(TOOL_SRC)) $(LIBENGINE) $(LIBPINFER)
	$(CC) $(LDFLAGS) -o $@ $^ $(TOOL_LDLIBS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIBENGINE) $(LIBPINFER)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# pinfer doctor's checks, without the CLI (and its JSON and HTTP libraries)
$(BUILD)/tests/test_doctor: $(BUILD)/obj/tests/unit/test_doctor.o $(BUILD)/obj/tools/doctor_checks.o $(BUILD)/obj/tools/sysfile.o \
		$(LIBENGINE) $(LIBPINFER)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# pinfer stat's readings, likewise
$(BUILD)/tests/test_stat: $(BUILD)/obj/tests/unit/test_stat.o $(BUILD)/obj/tools/stat_collect.o \
		$(BUILD)/obj/tools/sysfile.o $(LIBENGINE) $(LIBPINFER)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The benchmark programs are built with the tests (not run), so that they
# keep compiling.
BENCH_BINS := $(BUILD)/bench/kernels $(BUILD)/bench/tokenize $(BUILD)/bench/load \
	$(BUILD)/bench/barrier

# The CUDA backend's contract carried out on the CPU (tests/gpu/emul.c), so
# that the engine's side of -ngl runs in the tests of a machine without a GPU.
EMUL := $(BUILD)/tests/libpinfer-cuda-emul.so
$(EMUL): tests/gpu/emul.c $(wildcard engine/cuda/*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -fPIC -shared -fvisibility=hidden $(LDFLAGS) -o $@ $< -lm

tests: $(PINFER) $(UNIT_BINS) $(HELPER_BINS) $(EMUL) $(if $(filter 1,$(SAN)),,$(BENCH_BINS))

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---- set-up: packages, Python virtualenv, default model --------------------

deps:
	@tools/scripts/deps.sh

VENV := build/venv
$(VENV)/.stamp: tests/requirements.txt
	@tools/scripts/venv.sh $(VENV) $<
venv: $(VENV)/.stamp

model:
	@tools/scripts/fetch-model.sh models

DEFAULT_MODEL := models/SmolLM2-135M-Instruct.Q4_1.gguf

demo: deps
	@$(MAKE) --no-print-directory all model
	$(PINFER) run -m $(DEFAULT_MODEL) -p "Name the three primary colors." -n 64 --temp 0

# ---- tests ----------------------------------------------------------------

# Everything, from a fresh clone: what README's test command and CI run.
check: deps
	@$(MAKE) --no-print-directory all tests venv model vm-setup
	@$(MAKE) --no-print-directory SAN=1 tests
	@tests/run-tests.sh

# Only the C tests under the sanitizers (no set-up).
check-asan:
	@$(MAKE) --no-print-directory SAN=1 tests
	@PINFER_TEST_BUILD=build/asan tests/run-tests.sh --unit-only

# ---- benchmarks (programs that print figures; see README) ----------------------

$(BUILD)/bench/barrier: bench/barrier.c bench/bench.h $(LIBPINFER)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -std=c11 $(WARN) $(CFLAGS) -fopenmp -o $@ $(filter-out %.h,$^) $(LDLIBS)

$(BUILD)/bench/load: bench/load.c bench/bench.h $(LIBPINFER)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -std=c11 $(WARN) $(CFLAGS) -o $@ $(filter-out %.h,$^) $(LDLIBS)

$(BUILD)/bench/kernels: bench/kernels.c bench/bench.h $(LIBENGINE) $(LIBPINFER)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests/unit -std=c11 $(WARN) $(CFLAGS) -o $@ $(filter-out %.h,$^) $(LDLIBS)

bench-kernels: $(BUILD)/bench/kernels
	@$(BUILD)/bench/kernels

bench-runtime: $(BUILD)/bench/barrier $(BUILD)/bench/load
	@bench/runtime.sh

$(BUILD)/bench/tokenize: bench/tokenize.c $(LIBENGINE) $(LIBPINFER)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -std=c11 $(WARN) $(CFLAGS) -o $@ $^ $(LDLIBS)

bench-tokenize: $(BUILD)/bench/tokenize model
	@$(BUILD)/bench/tokenize

FUZZ_SECONDS ?= 300
fuzz: all venv model
	@tests/fuzz/run-fuzz.sh $(FUZZ_SECONDS)

# ---- kernel module ----------------------------------------------------------

# The running kernel's headers, or else an installed Debian header tree
# (this project's machines run a kernel without module support or headers).
KDIR ?= $(shell tools/scripts/find-kdir.sh)

kmod:
	@test -n "$(KDIR)" || { echo "make kmod: no kernel headers found; install linux-headers-\$$(uname -r) or set KDIR=" >&2; exit 1; }
	@echo "make kmod: building against $(KDIR)"
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

# Install the module with dkms for every kernel (as root): the source goes
# to /usr/src/pinfer-$(VERSION); dkms builds, installs, and runs
# kmod/dkms-post-install.sh (group pinfer, udev rule).
dkms-install:
	rm -rf /usr/src/pinfer-$(VERSION)
	mkdir -p /usr/src/pinfer-$(VERSION)
	cp -r Kbuild kmod uapi dkms.conf /usr/src/pinfer-$(VERSION)/
	dkms install pinfer/$(VERSION)

kmod-clean:
	@test -z "$(KDIR)" || $(MAKE) -C $(KDIR) M=$(CURDIR) clean

checkpatch:
	@tests/kmod/test_checkpatch.sh

# ---- the VM test bench (tests/vm) -------------------------------------------

# Test programs that run inside the VM: static, so the initramfs needs no
# libraries; built with the kernel's kselftest harness (-Wall, its own rule).
VM_CFLAGS := -std=gnu11 -O2 -g -Wall -Werror -D_GNU_SOURCE -static -Iuapi -Iengine \
	-Ibuild/linux-source/tools/testing/selftests
VM_BINS := build/vm/bin/pinfer_test build/vm/bin/test_region \
	build/vm/bin/test_loader build/vm/bin/test_pool build/vm/bin/test_stream \
	build/vm/bin/test_doctor build/vm/bin/test_stat

build/linux-source/.stamp:
	@tools/scripts/linux-source.sh >/dev/null

build/vm/bin/%: tests/kmod/%.c uapi/pinfer.h build/linux-source/.stamp
	@mkdir -p $(@D)
	$(CC) $(VM_CFLAGS) -o $@ $< -luring

# The runtime's own tests, static, to run again on the kmod provider.
build/vm/bin/test_%: tests/unit/test_%.c $(RUNTIME_SRC) $(wildcard runtime/*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -std=c11 $(WARN) $(CFLAGS) -static -o $@ $< $(RUNTIME_SRC) $(LDLIBS)

# The doctor's checks, static, to see the module from inside the VM.
build/vm/bin/test_doctor: $(BUILD)/obj/tests/unit/test_doctor.o $(BUILD)/obj/tools/doctor_checks.o $(BUILD)/obj/tools/sysfile.o \
		$(LIBENGINE) $(LIBPINFER)
	@mkdir -p $(@D)
	$(CC) -static -o $@ $^ $(LDLIBS)

build/vm/bin/test_stat: $(BUILD)/obj/tests/unit/test_stat.o $(BUILD)/obj/tools/stat_collect.o \
		$(BUILD)/obj/tools/sysfile.o $(LIBENGINE) $(LIBPINFER)
	@mkdir -p $(@D)
	$(CC) -static -o $@ $^ $(LDLIBS)

# The engine's streaming test: the same objects as on the host, linked static.
build/vm/bin/test_stream: $(BUILD)/obj/tests/unit/test_stream.o $(LIBENGINE) $(LIBPINFER)
	@mkdir -p $(@D)
	$(CC) -static -o $@ $^ $(LDLIBS)

build/vm/bin/%: bench/%.c bench/bench.h uapi/pinfer.h
	@mkdir -p $(@D)
	$(CC) $(VM_CFLAGS) -o $@ $< -luring

$(DEFAULT_MODEL):
	@tools/scripts/fetch-model.sh models

build/vm/disk.img: tests/vm/mkdisk.sh $(DEFAULT_MODEL)
	@mkdir -p $(@D)
	rm -f $@
	tests/vm/mkdisk.sh $@ 0 $(DEFAULT_MODEL)

vm-kernels:
	@tools/scripts/vm-kernels.sh

vm-setup: vm-kernels $(VM_BINS) build/vm/disk.img

clean: kmod-clean
	rm -rf build/obj build/tests build/asan build/kmod build/vm/bin $(PINFER) $(LIBPINFER) $(LIBENGINE)

distclean:
	rm -rf build models
