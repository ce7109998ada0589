# provision: `make help` lists the targets.
#
# `make test` is what CI runs (through .ci/run): it installs Dendrite and slapd when
# missing and requires them and the age command (the installed one, else `go tool age`),
# so that no end-to-end test passes by skipping. It needs Go and a C compiler, nothing else.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
FUZZTIME ?= 20s

.DEFAULT_GOAL := help
.PHONY: help build release cc-check test fmt-check vet dendrite slapd demo bench fuzz clean

# The version stamped into the binary by build and release (`provision version`
# prints it); without git or tags, the version Go records is printed instead.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
VERSION_LDFLAGS := $(if $(VERSION),-X main.version=$(VERSION))
RELEASE_PLATFORMS := linux/amd64 linux/arm64 darwin/arm64

help: ## list the targets
	@echo 'usage: make TARGET'
	@awk 'BEGIN { FS = ":.*## " } /^[a-z-]+:.*## / { printf "  %-10s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## build the CLI into bin/provision
	$(GO) build -ldflags '$(VERSION_LDFLAGS)' -o bin/provision ./cmd/provision

# Static (CGO_ENABLED=0) binaries with no build paths in them, for machines without Go;
# SHA256SUMS is in sha256sum's format, so `cd dist && sha256sum -c SHA256SUMS` checks them.
release: ## static binaries for linux/amd64, linux/arm64, darwin/arm64 in dist/, with SHA256SUMS
	rm -rf dist
	mkdir -p dist
	@for platform in $(RELEASE_PLATFORMS); do \
		os=$${platform%/*} arch=$${platform#*/}; \
		echo "GOOS=$$os GOARCH=$$arch CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w $(VERSION_LDFLAGS)' -o dist/provision-$$os-$$arch ./cmd/provision"; \
		GOOS=$$os GOARCH=$$arch CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w $(VERSION_LDFLAGS)' \
			-o "dist/provision-$$os-$$arch" ./cmd/provision; \
	done
	cd dist && if command -v sha256sum >/dev/null; then sha256sum provision-*; else shasum -a 256 provision-*; fi >SHA256SUMS
	@echo "dist/: provision $(or $(VERSION),(no git version)) for $(RELEASE_PLATFORMS), and SHA256SUMS"

fmt-check: ## fail, listing them, if files need gofmt -s
	@echo 'gofmt -s -l (every .go file outside testdata)'
	@files=$$(find . -name '*.go' -not -path './.*' -not -path '*/testdata/*' -not -path './vendor/*' -print0 | xargs -0 -r gofmt -s -l); \
	if [[ -n $$files ]]; then \
		echo 'these files need gofmt -s (run: gofmt -s -w FILE):'; echo "$$files"; exit 1; \
	fi

vet: ## go vet ./...
	$(GO) vet ./...

dendrite: ## build Dendrite v0.13.8 into the cache (no-op if there)
	bash scripts/dendrite install

slapd: ## apt-get install slapd and ldap-utils for the directory tests (no-op if there; root)
	bash scripts/slapd install

# cgo builds `go test -race` and Dendrite's SQLite: say so before anything else runs.
cc-check:
	@cc=$$($(GO) env CC); command -v "$$cc" >/dev/null || { \
		echo "make test needs Go and a C compiler: cgo is needed for go test -race and Dendrite's SQLite."; \
		echo "no C compiler found ($(GO) env CC is '$$cc'): install one (Debian/Ubuntu: apt-get install gcc libc6-dev), or set CC"; \
		exit 1; }

# Required, not optional: a test that cannot find Dendrite, slapd or age fails instead
# of skipping.
test: export PROVISION_REQUIRE_DENDRITE := 1
test: export PROVISION_REQUIRE_SLAPD := 1
test: export PROVISION_REQUIRE_AGE := 1
test: cc-check fmt-check vet dendrite slapd ## gofmt -s check, go vet, then go test -race against a real Dendrite and slapd
	$(GO) test -race -count=1 ./...

demo: ## run the CLI against a throwaway Dendrite (scripts/demo)
	bash scripts/demo

bench: ## measure against the targets (~10 min) into docs/BENCHMARKS.md; BENCH_ARGS='-only rate,storm' for some
	bash scripts/bench $(BENCH_ARGS)

fuzz: ## run each Fuzz target for FUZZTIME (default 20s)
	@list=$$($(GO) test -list '^Fuzz' ./...) || { echo "$$list"; exit 1; }; \
	targets=$$(awk '/^Fuzz/ { names = names " " $$1; next } /^ok/ { if (names != "") print $$2 names; names = "" }' <<<"$$list"); \
	if [[ -z $$targets ]]; then echo 'no Fuzz targets found'; exit 0; fi; \
	while read -r pkg names; do \
		for name in $$names; do \
			echo "$(GO) test -run '^$$' -fuzz '^$$name\$$' -fuzztime $(FUZZTIME) $$pkg"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done <<<"$$targets"

clean: ## remove bin/, dist/, demo-out/ and coverage files (Dendrite's cache stays: see scripts/dendrite bin)
	rm -rf bin dist demo-out coverage.out coverage.html *.coverprofile
