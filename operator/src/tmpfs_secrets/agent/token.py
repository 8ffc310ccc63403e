"""The pod's projected ServiceAccount token, read from its file whenever it is needed.

kubelet rewrites the file before the token expires (at 80% of its lifetime); reading it again for
every connection and acknowledgement means the agent always presents the newest one. The token
itself is never logged or put in an exception.
"""

from __future__ import annotations

DEFAULT_PATH = "/var/run/secrets/tmpfs-secrets.io/agent/token"


class TokenMissing(OSError):
    """The token file can't be read; the message names the file only."""


class TokenFile:
    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> str:
        try:
            with open(self.path, encoding="ascii") as stream:
                token = stream.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise TokenMissing(
                f"can't read the ServiceAccount token at {self.path}: {type(e).__name__}"
            ) from None
        if not token:
            raise TokenMissing(f"the ServiceAccount token file {self.path} is empty")
        return token
