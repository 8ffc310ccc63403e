# tmpfs-secrets: every target sets up what it needs itself (virtual environment, cluster binaries).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
IMG ?= tmpfs-secrets:dev
KUBECTL ?= kubectl
PYTEST_ARGS ?=
CLUSTER_ARGS ?=
DEMO_ARGS ?=
KEEP ?=
BENCH_ARGS ?=
RELEASE ?= tmpfs-secrets
NAMESPACE ?= tmpfs-secrets
HELM_ARGS ?=
# The project's helm (found or built like the cluster binaries) unless HELM names another.
HELM ?= $$($(PY) -c 'from tests.cluster import binaries; print(binaries.path("helm"))')

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

.PHONY: deps
deps: venv ## Install the Debian packages the cluster needs (libseccomp-dev, busybox-static, iptables, ...) when missing.
	$(PY) -m tests.cluster.sysdeps

.PHONY: tools
tools: deps ## Build (or find) the cluster binaries from Go modules, and print how long it took.
	$(PY) -m tests.cluster.binaries

.PHONY: images
images: deps ## Build the node tests' images from Debian packages (the operator's, python3, nodejs) when missing; print sizes.
	$(PY) -m tests.cluster.app_images
	$(PY) -m tests.cluster.operator_image

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
test: lint tools images image ## Run every check and test against a real local control plane and emulated AWS.
	$(PY) -m tests.cluster.bubble -- $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## Only the tests that need neither Kubernetes nor AWS.
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: cluster
cluster: tools ## Start the local cluster (with a node) in its network bubble; prints KUBECONFIG and IMAGE. CLUSTER_ARGS=--no-node
	$(PY) -m tests.cluster $(CLUSTER_ARGS)

KIND ?= $(CURDIR)/.cache/tools/kind-$(KIND_VERSION)/kind
KIND_VERSION ?= v0.33.0

$(KIND):
	GOBIN=$(dir $(KIND)) CGO_ENABLED=0 go install sigs.k8s.io/kind@$(KIND_VERSION)

.PHONY: e2e-kind
e2e-kind: tools images $(KIND) ## On a machine with Docker: kind (built from its Go module), the local images loaded, the chart installed (docs/e2e-kind.md).
	$(KIND) create cluster --name tmpfs-secrets-e2e --kubeconfig .cache/kind.kubeconfig --wait 120s
	$(KIND) load image-archive --name tmpfs-secrets-e2e \
	  $$($(PY) -c 'from tests.cluster.images import busybox_images; print(busybox_images().archive)')
	$(KIND) load image-archive --name tmpfs-secrets-e2e \
	  $$($(PY) -c 'from tests.cluster import debian_image, operator_image; print(debian_image.require(operator_image.recipe()).archive)')
	image=$$($(PY) -c 'from tests.cluster import debian_image, operator_image; print(debian_image.require(operator_image.recipe()).image)'); \
	$(HELM) upgrade --install $(RELEASE) charts/tmpfs-secrets --kubeconfig .cache/kind.kubeconfig \
	  --namespace $(NAMESPACE) --create-namespace --wait --timeout 5m \
	  --set image.repository=$${image%:*} --set image.tag=$${image##*:} --set image.pullPolicy=Never $(HELM_ARGS)
	@echo "export KUBECONFIG=$(CURDIR)/.cache/kind.kubeconfig"
	@echo "IMAGE=$$($(PY) -c 'from tests.cluster.images import busybox_images; print(busybox_images().workload)')"
	@echo "remove it with: $(KIND) delete cluster --name tmpfs-secrets-e2e"

.PHONY: demo
demo: tools images ## In the bubble: sync the shop's AWS values into injected pods, rotate one, watch them see it; one restartWorkloads restart (KEEP=1, DEMO_ARGS=--no-node).
	$(PY) -m tests.cluster.demo $(if $(KEEP),--keep) $(DEMO_ARGS)

.PHONY: bench
bench: tools ## Benchmark 1,000 ExternalSecrets over 100 sources: readiness, AWS calls, requests, memory (BENCH_ARGS="--n 10000 --m 1000", --help).
	$(PY) -m bench.sync_scale $(BENCH_ARGS)

.PHONY: bench-rotation
bench-rotation: tools ## Rotate a two-key secret in AWS K times under a pod reading its files: delay p50/max, torn reads, restarts (BENCH_ARGS=--help).
	$(PY) -m tests.cluster.bubble -- $(PY) -m bench.rotation $(BENCH_ARGS)

.PHONY: bench-webhook
bench-webhook: tools ## Pods created at a steady rate with and without injection: webhook latency p50/p99, extra time to Running (BENCH_ARGS=--help).
	$(PY) -m tests.cluster.bubble -- $(PY) -m bench.webhook $(BENCH_ARGS)

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

.PHONY: deploy
deploy: venv ## Install or upgrade the Helm chart (CRDs included) into the cluster of the current kubeconfig.
	$(HELM) upgrade --install $(RELEASE) charts/tmpfs-secrets --namespace $(NAMESPACE) --create-namespace $(HELM_ARGS)

.PHONY: undeploy
undeploy: venv ## Uninstall the Helm release (the CRDs and your objects stay; `make uninstall` removes them).
	$(HELM) uninstall $(RELEASE) --namespace $(NAMESPACE) --ignore-not-found

.PHONY: image
image: deps ## Build the operator image without Docker (Debian python3 + PyPI wheels, OCI archive in .cache/images/); print its size and build time.
	$(PY) -m tests.cluster.operator_image

.PHONY: docker-build
docker-build: ## Build the operator image with Docker.
	docker build -t $(IMG) -f operator/Dockerfile .
