# moengage-sync — every target installs what it needs (Python venv with moto, cargo-lambda, SAM
# CLI and cfn-lint) and stops every process it starts.

SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: fuzz all demo test unit lint-template check-deploy-guide check-cycles lint bench bench-delivery checkov build release clean help venv redrive

help:
	@echo "make demo   - local stack (moto + MoEngage emulator + cargo lambda watch), one sample export, readable summary"
	@echo "make test   - the whole suite: template lint + unit + end-to-end tests"
	@echo "make lint   - clippy (warnings are errors) and rustfmt check"
	@echo "make bench  - throughput and memory benchmarks (release build)"
	@echo "make bench-delivery - share of MoEngage's budget spent at 50/150/500 ms round trips (release build)"
	@echo "make fuzz   - cargo-fuzz on every input parser, FUZZ_SECS each (default 60; nightly)"
	@echo "make redrive STACK=<stack>        - replay the deployed dead-letter queue"
	@echo "make redrive INVOKE_PORT=<port>   - replay through a running 'cargo lambda watch'"

# The venv is rebuilt whenever the pinned requirements change.
$(STAMP): requirements-dev.txt
	@command -v python3 >/dev/null || { echo "python3 is required (apt-get install python3 python3-venv)"; exit 1; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# Both workspace members' binaries, one package at a time: a `--workspace` build would unify the
# emulator's features (tokio signal, hyper server) into moengage-sync's dependencies, and
# `cargo lambda watch` (which builds moengage-sync alone) would then recompile most of them.
build:
	cargo build -p moengage-sync --bins
	cargo build -p moengage-emulator --bins

demo: $(STAMP) build
	VENV=$(VENV) scripts/demo.sh

# sam validate, cfn-lint (plain and SAM-transformed: cycles), and scripts/check-iam.py: every AWS
# SDK operation in src/ is granted to the function's role.
lint-template: $(STAMP)
	VENV=$(VENV) scripts/lint-template.sh

# docs/deploy.md against template.yaml and the Makefile (Parameters answered, outputs and alarms
# named, sh blocks parse). `sam build` is not run here: a cold release build takes 4-18 minutes.
check-deploy-guide: $(STAMP)
	VENV=$(VENV) scripts/check-deploy-guide.sh

unit:
	cargo test --workspace --lib

# The integration tests start moto from the venv, one server per test, on ephemeral ports.
# Benchmarks are left to `make bench`: `cargo test --all-targets` would run them in full.
# --workspace: the emulator crate's own tests run too.
test: $(STAMP) lint-template check-deploy-guide check-cycles
	MOTO_SERVER=$(abspath $(VENV))/bin/moto_server cargo test --workspace --lib --bins --tests

# Import cycles between files: dependencies point one way (src/lib.rs's layout).
check-cycles:
	python3 scripts/crate_cycles.py src
	python3 scripts/crate_cycles.py crates/moengage-emulator/src

lint: check-cycles
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# Replays dead-letter messages (events/redrive.json): delivered ones are deleted, the rest stay and
# are listed with their reason in the response.
redrive: $(STAMP)
	@if [ -n "$(STACK)" ]; then \
	  SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam remote invoke MoEngageSyncFunction --stack-name "$(STACK)" --event-file events/redrive.json; \
	else \
	  PATH="$(abspath $(VENV))/bin:$$PATH" cargo lambda invoke moengage-sync --invoke-address 127.0.0.1 \
	    --invoke-port "$(or $(INVOKE_PORT),9000)" --data-file events/redrive.json; \
	fi

# Release build; the generated exports are kept in target/bench-data between runs (delete it to
# regenerate). Prints markdown tables: see docs/benchmarks.md.
bench: $(STAMP)
	cargo build --release --bin moengage-sync
	MOTO_SERVER=$(abspath $(VENV))/bin/moto_server BENCH_BIN=target/release/moengage-sync cargo bench --bench pipeline | tee target/bench-results.md
	cargo bench --bench sync_state | tee -a target/bench-results.md
	MOTO_SERVER=$(abspath $(VENV))/bin/moto_server cargo bench --bench warm_state | tee -a target/bench-results.md
	MOTO_SERVER=$(abspath $(VENV))/bin/moto_server cargo bench --bench state_memory | tee -a target/bench-results.md

# The handler against the emulator with injected latency and a strict window: achieved ÷ budget,
# 429s and peak RSS per API and latency (about 4 minutes).
bench-delivery: $(STAMP)
	cargo build --release -p moengage-emulator
	MOTO_SERVER=$(abspath $(VENV))/bin/moto_server cargo bench --bench delivery | tee target/bench-delivery.md

# cargo-fuzz (nightly Rust, libFuzzer): the CSV, NDJSON and Parquet decoders, the cell conversions,
# the sync state's bases and deltas as read from S3,
# the invocation payloads and the dead-letter parser, FUZZ_SECS each. Not part of `make test`.
# A crash lands in fuzz/artifacts/<target>/; turn it into a regression test before fixing it.
FUZZ_SECS ?= 60
FUZZ_TARGETS := csv ndjson parquet cells invocation dead_letter shard
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && cargo +nightly fuzz build -O
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t; \
	  cargo +nightly fuzz run -O $$t corpus/$$t seeds/$$t -- -max_total_time=$(FUZZ_SECS) -rss_limit_mb=2048 -max_len=262144 || exit 1; \
	done

# checkov on template.yaml (not part of `make test`: it is a large install). Every skip is
# justified beside its resource and in docs/deploy.md.
checkov: $(STAMP)
	$(VENV)/bin/pip install -q checkov
	$(VENV)/bin/checkov -f template.yaml --framework cloudformation --compact --quiet

clean:
	cargo clean
	rm -rf $(VENV) .demo
