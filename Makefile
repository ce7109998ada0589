# provision: `make help` lists the targets.
#
# `make test` is what CI runs (through .ci/run): it installs Dendrite and slapd when
# missing and requires them and the age command, so that no end-to-end test passes by skipping.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
FUZZTIME ?= 20s

.DEFAULT_GOAL := help
.PHONY: help build test fmt-check vet dendrite slapd demo bench fuzz clean

help: ## list the targets
	@echo 'usage: make TARGET'
	@awk 'BEGIN { FS = ":.*## " } /^[a-z-]+:.*## / { printf "  %-10s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## build the CLI into bin/provision
	$(GO) build -o bin/provision ./cmd/provision

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

# Required, not optional: a test that cannot find Dendrite, slapd or age fails instead
# of skipping.
test: export PROVISION_REQUIRE_DENDRITE := 1
test: export PROVISION_REQUIRE_SLAPD := 1
test: export PROVISION_REQUIRE_AGE := 1
test: fmt-check vet dendrite slapd ## gofmt -s check, go vet, then go test -race against a real Dendrite and slapd
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

clean: ## remove bin/, demo-out/ and coverage files (Dendrite's cache stays: see scripts/dendrite bin)
	rm -rf bin demo-out coverage.out coverage.html *.coverprofile
