"""The operator's Kubernetes side, without kopf: API access, the engine's reads, and its sink.

Everything here talks to the API server through its own async client (`rest`), so the event loop
never blocks.
The kopf handlers (in `tmpfs_secrets.handlers`) only translate watch events into calls on this
package and on the engine.
"""
