# tmpfs-secrets: every target sets up what it needs itself (virtual environment, cluster binaries).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
IMG ?= tmpfs-secrets:dev
KUBECTL ?= kubectl
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	# The system pip can be too old to parse current package metadata.
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create the virtual environment with the project and its test tools.

.PHONY: tools
tools: venv ## Build (or find) the cluster binaries from Go modules, and print how long it took.
	$(PY) -m tests.cluster.binaries

.PHONY: lint
lint: venv ## ruff, mypy (strict) and the import-linter layer contracts.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: fmt
fmt: venv ## Format and autofix with ruff.
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: test
test: lint tools ## Run every check and test against a real local control plane and emulated AWS.
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## Only the tests that need neither Kubernetes nor AWS.
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: cluster
cluster: tools ## Start the local cluster in the foreground and print its KUBECONFIG.
	$(PY) -m tests.cluster

##@ Deployment

.PHONY: install
install: ## Install the CRDs into the cluster of the current kubeconfig.
	$(KUBECTL) apply --server-side -f crds/

.PHONY: uninstall
uninstall: ## Remove the CRDs (and with them every ExternalSecret and store).
	$(KUBECTL) delete --ignore-not-found -f crds/

.PHONY: run
run: venv ## Run the operator against the cluster of the current kubeconfig.
	$(VENV)/bin/tmpfs-secrets run

.PHONY: docker-build
docker-build: ## Build the operator image with Docker.
	docker build -t $(IMG) -f operator/Dockerfile .
