# XRouter: every target is a thin wrapper around a script in scripts/. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help install run run-cluster test test-unit test-integration test-browser test-e2e check lint typecheck imports \
        proto proto-check bench bench-failover bench-budget bench-scaling dashboards deploy-check clean

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

install: ## Create .venv and install the services and dev tools (idempotent)
	@scripts/bootstrap.sh

run: install ## Start router + gateway on 127.0.0.1 (embedded mode, demo model) and print a key
	@scripts/run.sh

run-cluster: install ## The production topology on 127.0.0.1: Redis Cluster 3+3, PostgreSQL HA, 2 routers, gateway
	@scripts/apt-install.sh redis-server postgresql
	@$(PY) scripts/run_cluster.py

test: install ## Everything CI runs: checks, then unit, integration, browser and e2e tests
	@scripts/test.sh

test-unit: install ## Unit tests only (start nothing)
	@$(PY) -m pytest tests/unit -q

test-integration: install ## Integration tests (real gRPC/HTTP servers, fake upstreams)
	@$(PY) -m pytest tests/integration -q

test-browser: install ## The web console in Debian's Chromium (Playwright), embedded and cluster mode
	@scripts/apt-install.sh chromium redis-server postgresql
	@$(PY) -m pytest tests/browser -q

test-e2e: install ## e2e tests (both services as processes, official SDKs)
	@$(PY) -m pytest tests/e2e -q

check: lint typecheck imports proto-check ## Static checks: ruff, mypy strict, import boundaries, proto drift

lint: install ## ruff (style, complexity)
	@$(VENV)/bin/ruff check .

typecheck: install ## mypy --strict on hand-written code
	@$(VENV)/bin/mypy

imports: install ## Import boundaries (gateway never imports router; domain imports no driver)
	@$(VENV)/bin/lint-imports

proto: install ## Regenerate the gRPC stubs from protos/
	@scripts/proto.sh

proto-check: install ## Fail when generated stubs drift from protos/
	@scripts/proto-check.sh

deploy-check: install ## Offline checks of docker/, k8s/, helm/, terraform/, deploy/ (also in make test)
	@scripts/deploy-check.sh

bench: install ## Benchmark gateway+router against a fake upstream (nginx + wrk)
	@scripts/bench.sh

bench-failover: install ## Latency through a Redis master failover, ledger delay after a router SIGKILL (run-cluster topology)
	@scripts/apt-install.sh redis-server postgresql
	@$(PY) scripts/bench/failover.py

bench-scaling: install ## Requests/s of one gateway process and one router against 2 workers and 2 routers (cluster mode)
	@scripts/apt-install.sh nginx-light wrk redis-server postgresql
	@$(PY) scripts/bench/scaling.py

bench-budget: install ## Where a request's CPU goes, stage by stage (py-spy, perf); BENCH_MODE=cluster too
	@scripts/apt-install.sh nginx-light wrk linux-perf
	@if [ "$${BENCH_MODE:-embedded}" = cluster ]; then scripts/apt-install.sh redis-server postgresql; fi
	@$(PY) scripts/bench/budget.py

dashboards: install ## Draw docs/dashboards/*.svg from a real Prometheus (cluster leg of the live test)
	@scripts/dashboards.sh

clean: ## Remove the venv, caches and local data
	rm -rf $(VENV) .xrouter .pytest_cache .mypy_cache .ruff_cache bench-results
