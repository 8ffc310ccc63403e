"""Where values come from: a narrow provider interface and its AWS implementations.

Knows nothing of Kubernetes (an import-linter contract enforces it): credentials that need
Kubernetes (ServiceAccount tokens, static keys in a Secret) come in as plain async callables.
"""
