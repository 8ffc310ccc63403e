"""The kopf layer: the only package that imports kopf.

Handlers are tiny: they translate watch events into calls on the engine and on the Kubernetes
side's index, and configure kopf so it writes as little as possible to the objects it watches.
"""
