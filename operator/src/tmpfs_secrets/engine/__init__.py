"""The sync engine: registry of stores and ExternalSecrets, and the orchestration between the
scheduler, the value cache, the providers and the `Sink` (see docs/engine.md)."""

from tmpfs_secrets.engine.engine import Engine
from tmpfs_secrets.engine.settings import EngineSettings

__all__ = ["Engine", "EngineSettings"]
