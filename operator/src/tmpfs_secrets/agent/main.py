"""`tmpfs-secrets agent` (or `python3 -m tmpfs_secrets.agent`): arguments, the startup-probe
check, and the process around `Agent`.

The arguments are parsed by hand: `argparse` alone would cost the agent more memory than its
work does. `tmpfs-secrets agent --help` shows them through the operator's CLI.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from tmpfs_secrets.agent.token import DEFAULT_PATH

CA_ENV = "TMPFS_SECRETS_CA"  # the CA bundle (PEM text) that signed the operator's certificate
URL_ENV = "TMPFS_SECRETS_URL"

USAGE = f"""usage: tmpfs-secrets agent --secret NAME=FOLDER [--secret ...] [--url URL] [--ca-file FILE]
                           [--token FILE] [--check]

  --secret NAME=FOLDER  write the ExternalSecret NAME (of the pod's namespace) into FOLDER; repeat
  --url URL             the operator's agent endpoint, https://HOST[:PORT] (default: ${URL_ENV})
  --ca-file FILE        CA bundle of the operator's certificate (default: the PEM text in ${CA_ENV})
  --token FILE          projected ServiceAccount token, audience tmpfs-secrets.io
                        (default: {DEFAULT_PATH})
  --check               exit 0 if every folder holds a key set, 1 otherwise (the startup probe)
"""


class Options:
    def __init__(self) -> None:
        self.secrets: list[tuple[str, str]] = []
        self.url: str | None = os.environ.get(URL_ENV)
        self.ca_file: str | None = None
        self.token = DEFAULT_PATH
        self.check = False


class UsageError(ValueError):
    pass


def parse(argv: Sequence[str]) -> Options:
    options = Options()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            sys.stdout.write(USAGE)
            raise SystemExit(0)
        if arg == "--check":
            options.check = True
            continue
        name, sep, value = arg.partition("=")
        if name not in ("--secret", "--url", "--ca-file", "--token"):
            raise UsageError(f"unknown argument {arg!r}")
        if not sep:
            if not args:
                raise UsageError(f"{name} needs a value")
            value = args.pop(0)
        if name == "--secret":
            secret, eq, folder = value.partition("=")
            if not eq or not secret or not folder.startswith("/"):
                raise UsageError(f"--secret expects NAME=/absolute/folder, got {value!r}")
            options.secrets.append((secret, folder))
        else:
            setattr(options, name[2:].replace("-", "_"), value)
    if not options.secrets:
        raise UsageError("name at least one --secret NAME=FOLDER")
    return options


def tls_context(ca_file: str | None) -> object:
    import ssl

    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    pem = os.environ.get(CA_ENV)
    if not pem:
        raise SystemExit(f"tmpfs-secrets agent: give --ca-file or set ${CA_ENV} to the operator's CA (PEM)")
    return ssl.create_default_context(cadata=pem)


def main(options: Options) -> int:
    from tmpfs_secrets.agent.writer import AtomicWriter

    writers = {name: AtomicWriter(folder) for name, folder in options.secrets}
    if options.check:
        return 0 if all(w.written() for w in writers.values()) else 1
    if not options.url:
        raise SystemExit(f"tmpfs-secrets agent: give --url or set ${URL_ENV}")
    from tmpfs_secrets.agent.log import say
    from tmpfs_secrets.agent.run import Agent
    from tmpfs_secrets.agent.token import TokenFile

    agent = Agent(options.url, tls_context(options.ca_file), TokenFile(options.token), writers)  # type: ignore[arg-type]
    # As process 1 Python ignores SIGTERM unless told: the files stay, the pod's end needs nothing.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    say("INFO", f"streaming {', '.join(sorted(writers))} from {options.url}")
    agent.run()
    return 0


def entry(argv: Sequence[str] | None = None) -> int:
    try:
        options = parse(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        sys.stderr.write(f"{USAGE}\ntmpfs-secrets agent: error: {e}\n")
        return 2
    return main(options)
