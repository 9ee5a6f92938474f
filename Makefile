# The one command set: CI, the README and developers all use these targets.
PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
NODE_DIR := tests/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed
NPM := $(shell command -v npm 2>/dev/null)
LITELLM_VENV := .venv-litellm
LITELLM_STAMP := $(LITELLM_VENV)/.installed

.PHONY: install node-deps litellm-deps serve test lint typecheck unit format clean lock bench bench-smoke web-vendor

# Re-install whenever the dependency list or the lock changes.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The Vercel AI SDK (from the npm registry) that the UI-stream conformance tests parse with.
$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

ifeq ($(NPM),)
node-deps:
	@echo "npm not found: the AI SDK conformance tests will be skipped (CI installs nodejs and npm)"
else
node-deps: $(NODE_STAMP)
endif

# LiteLLM's proxy (pinned, in a venv of its own: it brings its own FastAPI and SDK versions), a
# real third-party OpenAI-compatible server the upstream tests put in front of chainserve.
$(LITELLM_STAMP): tests/litellm/requirements.lock
	test -x $(LITELLM_VENV)/bin/python || $(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(LITELLM_VENV)/bin/python -m pip install --quiet -r tests/litellm/requirements.lock
	touch $(LITELLM_STAMP)

litellm-deps: $(LITELLM_STAMP)

serve: install
	$(BIN)/chainserve serve --host $(HOST) --port $(PORT)

test: install lint typecheck unit

lint: install
	$(BIN)/ruff check chainserve tests bench
	$(BIN)/ruff format --check chainserve tests bench

typecheck: install
	$(BIN)/mypy

# Two workers, a test file each at a time (module fixtures such as LiteLLM's proxy start once).
TEST_WORKERS ?= 2
unit: install node-deps litellm-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

format: install
	$(BIN)/ruff check --fix chainserve tests bench
	$(BIN)/ruff format chainserve tests bench

# The benchmark's extras (matplotlib, psutil), pinned by the same lock.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# Streaming benchmark (bench/README.md): chainserve and three baselines against a mock upstream,
# about 22 minutes; writes bench/results/latest.{md,json} and the plots.
bench: install $(BENCH_STAMP)
	$(BIN)/python -m bench.run

# The same, tiny (about a minute), into a fresh temp dir so committed results stay untouched.
bench-smoke: install $(BENCH_STAMP)
	$(BIN)/python -m bench.run --smoke --out "$$(mktemp -d)"

# Refresh the pinned versions after changing dependencies in pyproject.toml.
lock: install
	$(BIN)/python -m pip freeze --exclude-editable --exclude chainserve > requirements.lock

clean:
	rm -rf $(VENV) $(LITELLM_VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info $(NODE_DIR)/node_modules

# The developer page's browser libraries, committed in chainserve/api/static/vendor (no CDN, no build step).
# Bump a version here, run this, and look at the page (README: "The developer page").
WEB_VENDOR := marked@18.2.1 dompurify@3.5.0 @highlightjs/cdn-assets@11.12.0
web-vendor:
	@tmp=$$(mktemp -d) && out=$(CURDIR)/chainserve/api/static/vendor && cd $$tmp \
	  && npm pack --silent $(WEB_VENDOR) >/dev/null \
	  && for f in *.tgz; do mkdir "$${f%.tgz}" && tar xzf "$$f" -C "$${f%.tgz}"; done \
	  && sed '/sourceMappingURL/d' marked-*/package/lib/marked.esm.js > $$out/marked.js \
	  && sed '/sourceMappingURL/d' dompurify-*/package/dist/purify.es.mjs > $$out/purify.js \
	  && cp highlightjs-cdn-assets-*/package/es/highlight.min.js $$out/highlight.js \
	  && cp highlightjs-cdn-assets-*/package/styles/github.min.css $$out/highlight-light.css \
	  && cp highlightjs-cdn-assets-*/package/styles/github-dark.min.css $$out/highlight-dark.css \
	  && cp marked-*/package/LICENSE $$out/LICENSE.marked \
	  && cp dompurify-*/package/LICENSE $$out/LICENSE.dompurify \
	  && cp highlightjs-cdn-assets-*/package/LICENSE $$out/LICENSE.highlight \
	  && rm -rf $$tmp && echo "updated $$out from $(WEB_VENDOR)"
