# kiln — build, test and release targets. `make test` is the project's test command.
SHELL := /bin/bash
GO ?= go
BIN ?= bin/kiln
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --verify -q HEAD 2>/dev/null || echo unknown)
DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X github.com/kiln-dev/kiln/pkg/buildinfo.version=$(VERSION) -X github.com/kiln-dev/kiln/pkg/buildinfo.commit=$(COMMIT) -X github.com/kiln-dev/kiln/pkg/buildinfo.date=$(DATE)
FUZZTIME ?= 5s
TEST_TIMEOUT ?= 20m

.PHONY: all build test lint fuzz-smoke release-snapshot clean generate

all: lint build test

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kiln

# Unit and integration tests (integration tests use loopback, network
# namespaces and loop devices; they need root and say so when skipped).
test:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files --others --exclude-standard '*.go' 2>/dev/null)); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Runs every Fuzz* target in the module for $(FUZZTIME) each.
fuzz-smoke:
	@set -euo pipefail; found=0; \
	for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for fn in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    found=$$((found+1)); echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done; echo "fuzz-smoke: $$found targets run"

release-snapshot:
	@if command -v goreleaser >/dev/null 2>&1; then goreleaser release --snapshot --clean --config goreleaser.yaml; \
	else echo "goreleaser is not installed; install it (go install github.com/goreleaser/goreleaser/v2@<version>) to build release archives"; exit 1; fi

clean:
	rm -rf bin dist

# Regenerates committed gRPC code from pkg/workerapi/*/*.proto. Needs protoc
# and the well-known types (apt: protobuf-compiler libprotobuf-dev); the Go
# plugins are installed at pinned versions into bin/.
PROTOC_GEN_GO_VERSION ?= v1.36.11
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.0
generate:
	GOBIN=$(CURDIR)/bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(CURDIR)/bin $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	for d in pkg/workerapi/proto pkg/workerapi/kilnpb; do \
	  PATH=$(CURDIR)/bin:$$PATH protoc -I $$d -I /usr/include \
	    --go_out=$$d --go_opt=paths=source_relative \
	    --go-grpc_out=$$d --go-grpc_opt=paths=source_relative \
	    $$d/*.proto || exit 1; \
	done
