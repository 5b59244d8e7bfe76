# kiln — build, test and release targets. `make test` is the project's test command.
SHELL := /bin/bash
GO ?= go
BIN ?= bin/kiln
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --verify -q HEAD 2>/dev/null || echo unknown)
DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X github.com/kiln-dev/kiln/pkg/buildinfo.version=$(VERSION) -X github.com/kiln-dev/kiln/pkg/buildinfo.commit=$(COMMIT) -X github.com/kiln-dev/kiln/pkg/buildinfo.date=$(DATE)
FUZZ_EXECS ?= 20000
TEST_TIMEOUT ?= 20m
# kiln is pure Go and must be static (it is the in-memory OS's /init). Builds
# and tests share one configuration so the Go build cache compiles the large
# Kubernetes dependency tree once per run; goreleaser adds -trimpath for releases.
export CGO_ENABLED := 0

.PHONY: all build agent gateway test lint fuzz-smoke release-snapshot clean generate e2e bench-netboot hook lab-image test-compat bench-proxy bench-grpc bench-image2disk crds bootstrap-smoke

all: lint build test

# CRD manifests are generated from Go API types by controller-gen (pinned in
# pkg/crds/crds.go's go:generate line) and embedded into kiln; they are not
# committed. The stamp regenerates them only when the API types or go.mod change.
CRD_STAMP := pkg/crds/manifests/.generated
$(CRD_STAMP): go.mod go.sum pkg/crds/crds.go $(shell find pkg/apis -name '*.go' 2>/dev/null)
	$(GO) generate ./pkg/crds
	@touch $@

crds: $(CRD_STAMP)

build: crds
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kiln

# kiln-agent: the provisioning agent alone, the in-memory OS's /init (no
# Kubernetes control plane, so the initramfs stays small).
AGENT_BIN ?= bin/kiln-agent
agent:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(AGENT_BIN) ./cmd/kiln-agent

# kiln-gateway: the API gateway alone, the data plane's image (no
# provisioning, no Kubernetes: about an eighth of kiln's size and memory).
GATEWAY_BIN ?= bin/kiln-gateway
gateway:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(GATEWAY_BIN) ./cmd/kiln-gateway

# Acceptance check of the embedded bootstrap cluster with the real binary and
# kubectl: create (returns with the API running), list CRDs, delete.
bootstrap-smoke: build
	@set -euo pipefail; bin=$$(pwd)/$(BIN); d=$$(mktemp -d); cd $$d; \
	trap '$$bin bootstrap delete --name t >/dev/null 2>&1 || true; rm -rf $$d' EXIT; \
	$$bin bootstrap create --name t --bootstrap embedded && \
	kubectl --kubeconfig t/generated/bootstrap.kubeconfig get crds && \
	$$bin bootstrap delete --name t

# Unit and integration tests (integration tests use loopback, network
# namespaces and loop devices; they need root and say so when skipped).
test: crds
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	# The proxy once more without event loops (--event-loops -1).
	KILN_TEST_EVENT_LOOPS=-1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./pkg/proxy/server/... ./pkg/proxy/plugins/...

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files --others --exclude-standard '*.go' 2>/dev/null)); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Netboot benchmark: kiln vs dnsmasq on DHCP (perfdhcp) and TFTP (1 MiB),
# printed as a ratio table. Needs root, dnsmasq, kea-admin (perfdhcp), curl.
bench-netboot:
	$(GO) build -o bin/kiln-bench ./cmd/kiln
	KILN_BIN=$(CURDIR)/bin/kiln-bench bash scripts/bench-netboot.sh

# Runs every Fuzz* target in the module for $(FUZZ_EXECS) executions each
# (a count, not a duration: see scripts/fuzz-smoke.sh).
fuzz-smoke:
	GO=$(GO) FUZZ_EXECS=$(FUZZ_EXECS) bash scripts/fuzz-smoke.sh

# go-kong v0.66.0's own integration tests against `kiln gateway run` with
# SQLite, PostgreSQL and DB-less; fails below the floors in
# e2e/kongcompat/floors.txt (results: docs/compatibility.md); then the issue's
# httpie seed commands (e2e/httpie/seed.sh).
test-compat: build
	$(GO) run ./e2e/compatrun -kiln $(BIN)
	KILN=$(BIN) e2e/httpie/seed.sh

release-snapshot:
	@if command -v goreleaser >/dev/null 2>&1; then goreleaser release --snapshot --clean --config goreleaser.yaml; \
	else echo "goreleaser is not installed; install it (go install github.com/goreleaser/goreleaser/v2@<version>) to build release archives"; exit 1; fi

# The in-memory OS (kernel + initramfs with kiln-agent as /init) and the lab's test
# disk image; both need a Debian kernel (linux-image-amd64), see docs/lab.md.
HOOK_DIR ?= out/hook
LAB_IMAGE ?= out/lab-image.raw
hook: build agent
	$(BIN) build hook --agent-binary $(AGENT_BIN) --output-dir $(HOOK_DIR)

lab-image: build
	$(BIN) build lab-image --output-file $(LAB_IMAGE)

# End-to-end tests: QEMU (TCG) VMs netbooting from kiln inside network
# namespaces, and the lab's full provisioning run. Need root and the apt
# packages in .ci/packages.txt (.ci/run installs them).
E2E_TIMEOUT ?= 20m
e2e:
	$(GO) test -count=1 -tags e2e -timeout $(E2E_TIMEOUT) -v ./e2e/...

clean:
	rm -rf bin dist out $(CRD_STAMP) pkg/crds/manifests/*.yaml

# Regenerates committed gRPC code from pkg/workerapi/*/*.proto. Needs protoc
# and the well-known types (apt: protobuf-compiler libprotobuf-dev); the Go
# plugins are installed at pinned versions into bin/.
PROTOC_GEN_GO_VERSION ?= v1.36.11
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.0
generate:
	GOBIN=$(CURDIR)/bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(CURDIR)/bin $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	for d in pkg/workerapi/proto pkg/workerapi/kilnpb pkg/workerapi/legacypb; do \
	  PATH=$(CURDIR)/bin:$$PATH protoc -I $$d -I /usr/include \
	    --go_out=$$d --go_opt=paths=source_relative \
	    --go-grpc_out=$$d --go-grpc_opt=paths=source_relative \
	    $$d/*.proto || exit 1; \
	done

# wrk against kiln's gateway, nginx, haproxy and caddy on loopback (not run in
# CI; needs wrk nginx-light haproxy caddy openssl). Knobs: DURATION CONNS THREADS
# ROUNDS PAIRED NEWCONN TLS RATES IDLE KILN_BASE (see bench/bench-proxy.sh).
bench-proxy: gateway
	$(GO) build -o bin/fixedrate ./bench/fixedrate
	$(GO) build -o bin/idleconns ./bench/idleconns
	KILN=$(GATEWAY_BIN) FIXEDRATE=bin/fixedrate IDLECONNS=bin/idleconns bench/bench-proxy.sh

# gRPC through kiln and nginx's grpc_pass to one grpc-go upstream (h2load;
# apt-get install nghttp2-client nginx-light). Knobs: DURATION CONNS
# STREAMS ROUNDS (see bench/bench-grpc.sh).
bench-grpc: gateway
	$(GO) build -o bin/grpcecho ./bench/grpcecho
	KILN=$(GATEWAY_BIN) GRPCECHO=bin/grpcecho bench/bench-grpc.sh

# image2disk throughput against a bare decoder+io.Copy peer in the same run
# (3 rounds, best of each, to damp a shared machine's noise); prints MB/s for
# both and the kiln/peer ratio per compression format.
bench-image2disk:
	@$(GO) test -run '^$$' -bench '^BenchmarkImage2Disk$$' -benchtime 5x -count 3 ./pkg/agent/actions/ | tee /dev/stderr | \
	  awk '/MB\/s/ { split($$1, p, "/"); f=p[3]; sub(/-[0-9]+$$/, "", f); for (i=1;i<=NF;i++) if ($$i=="MB/s") v=$$(i-1); k=p[2] "/" f; if (v+0 > r[k]+0) r[k]=v; fs[f]=1 } \
	  END { for (f in fs) printf "image2disk %-5s kiln %8.1f MB/s  peer %8.1f MB/s  ratio kiln/peer %.2f\n", f, r["kiln/" f], r["peer/" f], r["kiln/" f]/r["peer/" f] }'
