"""The agent of Direct delivery: `tmpfs-secrets agent`, a native sidecar in each opted-in pod.

It holds one long-lived HTTPS stream to the operator, authenticated with the pod's projected
ServiceAccount token, and writes each key set it receives into a memory-backed volume the way
kubelet's atomic writer does. It uses the standard library only (an import contract checks it),
so it starts fast and stays small: the values never pass through the Kubernetes API.
"""
