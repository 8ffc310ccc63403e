"""Read values that tmpfs-secrets delivered into a pod, from the application's side.

Applications import this one module; it uses the standard library only, so an app image needs
neither the operator's dependencies nor an install of the whole project (copy this file).

    from tmpfs_secrets.client import Secrets

    db = Secrets("shop-db")                # /var/run/secrets/tmpfs-secrets.io/shop-db
    password = db.get("RDS_PASSWORD")      # the file's text; cached in memory for `ttl` seconds

The folder is a Secret volume, which kubelet writes with its atomic writer: each version of the
key set lives in a timestamped directory, `..data` is a symlink to the current one, and each key
is a symlink `KEY -> ..data/KEY`. An update makes a new directory and renames a new `..data` link
over the old one, then deletes the old directory. So a reader:

- checks `..data` at most once per `ttl` (one `readlink`), and reads files again only when it
  points somewhere new;
- reads every key through the directory it resolved, never through `..data` twice, so the keys
  it returns belong to one version, and retries when kubelet removed that directory mid-read.

When the folder is not there at all (local development, tests outside Kubernetes), values come
from environment variables of the same name, as the app read them before.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["DEFAULT_ROOT", "ROOT_ENV", "SecretNotFound", "Secrets"]

DEFAULT_ROOT = "/var/run/secrets/tmpfs-secrets.io"
ROOT_ENV = "TMPFS_SECRETS_ROOT"  # overrides DEFAULT_ROOT, for mounts at another `mount.path` parent
DATA_LINK = "..data"
DEFAULT_TTL = 2.0  # seconds between checks of `..data`; kubelet itself updates files far less often
_ATTEMPTS = 100  # resolutions of `..data` tried while versions keep being swapped under a read


class SecretNotFound(KeyError):
    """No value for a key: neither in the mounted folder nor (when allowed) in the environment.

    The message names the key and where it was looked for, never a value.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "secret not found"


class Secrets:
    """The values of one mounted folder (one ExternalSecret's target), cached for `ttl` seconds.

    `name` is the ExternalSecret's name: the folder is `<root>/<name>`, where root is
    `$TMPFS_SECRETS_ROOT` or `/var/run/secrets/tmpfs-secrets.io` (the default `mount.path`).
    `path` names the folder directly instead. With `env_fallback` (the default), a missing folder
    means "not on Kubernetes": `get` then reads environment variables. A folder that exists but
    lacks the key raises `SecretNotFound`, so a typo never silently reads a stale variable.

    Thread-safe; one instance per folder is enough for a whole process.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        ttl: float = DEFAULT_TTL,
        env_fallback: bool = True,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if path is None:
            if not name:
                raise ValueError("give the ExternalSecret's name (Secrets('shop-db')) or a folder (path=...)")
            path = Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT) / name
        self.path = Path(path)
        self.ttl = ttl
        self.env_fallback = env_fallback
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._version: str | None = None  # the `..data` target the cache belongs to
        self._values: dict[str, bytes] = {}

    # --- public ----------------------------------------------------------------------------------

    def get(self, key: str, default: str | None = None) -> str:
        """The value of `key` as text (UTF-8), from the folder or, without a folder, the environment.

        With `default` given, a missing key returns it instead of raising `SecretNotFound`.
        """
        try:
            return self.get_bytes(key).decode()
        except SecretNotFound:
            if default is not None:
                return default
            raise

    def get_bytes(self, key: str) -> bytes:
        """The value of `key` as bytes, exactly as delivered (binary values included)."""
        _check_key(key)
        with self._lock:
            self._refresh()
            if key in self._values:
                return self._values[key]
            if self._version is None and not self.path.is_dir():
                return self._from_env(key)
            value = self._read_key(key)
            self._values[key] = value
            return value

    def get_all(self, keys: list[str] | tuple[str, ...]) -> dict[str, str]:
        """Several values that belong together (a user and its password), all from one version.

        Separate `get` calls may straddle a rotation and return an old user with a new password;
        this reads every key through the same `..data` target, starting over if kubelet swaps it.
        """
        for key in keys:
            _check_key(key)
        with self._lock:
            self._refresh()
            if self._version is None and not self.path.is_dir():
                return {key: self._from_env(key).decode() for key in keys}
            for _ in range(_ATTEMPTS):
                version = self._version
                out = {}
                for key in keys:
                    if key not in self._values:
                        self._values[key] = self._read_key(key)
                    out[key] = self._values[key]
                if self._version == version:
                    return {key: value.decode() for key, value in out.items()}
            raise OSError(errno.EAGAIN, f"{self.path} changed on every attempt to read it; try again")

    def version(self) -> str | None:
        """An opaque token that changes whenever kubelet delivers a new key set (None: no folder).

        Compare it with an earlier one to learn that values changed, for example to reconnect
        a database pool with a new password. Checks the folder at most once per `ttl`.
        """
        with self._lock:
            self._refresh()
            return self._version

    def keys(self) -> list[str]:
        """The keys the folder holds now (sorted), or [] without a folder."""
        with self._lock:
            self._refresh()
            return self._keys()

    def invalidate(self) -> None:
        """Forget cached values: the next `get` checks the folder at once (e.g. after a login failed)."""
        with self._lock:
            self._checked_at = None

    # --- internals -------------------------------------------------------------------------------

    def _refresh(self) -> None:
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self.ttl:
            return
        version = self._resolve()
        if version != self._version or version is None:
            # A new key set (or a plain folder with no version to compare): read files again.
            self._values.clear()
        self._version = version
        self._checked_at = now

    def _resolve(self) -> str | None:
        """The directory `..data` points to, relative to the folder; None without an atomic writer."""
        try:
            target = os.readlink(self.path / DATA_LINK)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # `..data` is not a symlink: a plain folder
                return None
            raise
        return target

    def _read_key(self, key: str) -> bytes:
        """Read `key` through the version directory resolved last, following kubelet's swaps."""
        for _ in range(_ATTEMPTS):
            folder = self.path / self._version if self._version else self.path
            try:
                return (folder / key).read_bytes()
            except FileNotFoundError:
                version = self._resolve()
                if version is None or version == self._version:
                    break  # the version is current and lacks the key
                # kubelet swapped `..data` and removed the directory we resolved: values read
                # so far belong to the old version, so start over on the new one.
                self._values.clear()
                self._version = version
                self._checked_at = self._clock()
        there = ", ".join(self._keys()) or "none"
        raise SecretNotFound(f"no key {key!r} in {self.path} (keys there: {there})")

    def _keys(self) -> list[str]:
        folder = self.path / self._version if self._version else self.path
        try:
            return sorted(n for n in os.listdir(folder) if not n.startswith(".."))
        except OSError:
            return []

    def _from_env(self, key: str) -> bytes:
        if self.env_fallback and key in self._environ:
            return os.fsencode(self._environ[key])
        where = f"{self.path} does not exist"
        hint = f" and there is no environment variable {key}" if self.env_fallback else ""
        raise SecretNotFound(f"no value for {key!r}: {where}{hint}")


def _check_key(key: str) -> None:
    # A key is one file name; anything else could read outside the folder.
    if not key or key.startswith("..") or "/" in key or "\0" in key or key == ".":
        raise ValueError(f"{key!r} is not a key name: use the file name, e.g. 'RDS_PASSWORD'")
