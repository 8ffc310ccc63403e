"""`tmpfs-secrets agent`: its arguments, the startup-probe check, and the process around `Agent`.

Kept apart from the operator's CLI module so the agent process imports the standard library and
this package only (about 15 MiB resident instead of the operator's 60+).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import ssl
import sys
from collections.abc import Sequence

from tmpfs_secrets.agent.token import DEFAULT_PATH, TokenFile
from tmpfs_secrets.agent.writer import AtomicWriter

CA_ENV = "TMPFS_SECRETS_CA"  # the CA bundle (PEM text) that signed the operator's certificate
URL_ENV = "TMPFS_SECRETS_URL"


def _target(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder.startswith("/"):
        raise argparse.ArgumentTypeError(f"expected NAME=/absolute/folder, got {text!r}")
    return name, folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secret",
        dest="secrets",
        action="append",
        type=_target,
        default=[],
        required=True,
        metavar="NAME=FOLDER",
        help="write the ExternalSecret NAME (of the pod's namespace) into FOLDER; repeat for several",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV),
        help=f"the operator's agent endpoint, https://HOST[:PORT] (default: ${URL_ENV})",
    )
    parser.add_argument(
        "--ca-file",
        help=f"CA bundle that signed the operator's certificate (default: the PEM text in ${CA_ENV})",
    )
    parser.add_argument(
        "--token",
        default=DEFAULT_PATH,
        help="the projected ServiceAccount token, audience tmpfs-secrets.io (default: %(default)s)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 0 if every folder holds a key set, 1 otherwise (the sidecar's startup probe)",
    )


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    pem = os.environ.get(CA_ENV)
    if not pem:
        raise SystemExit(f"tmpfs-secrets agent: give --ca-file or set ${CA_ENV} to the operator's CA (PEM)")
    return ssl.create_default_context(cadata=pem)


def main(args: argparse.Namespace) -> int:
    writers = {name: AtomicWriter(folder) for name, folder in args.secrets}
    if args.check:
        return 0 if all(w.written() for w in writers.values()) else 1
    if not args.url:
        raise SystemExit(f"tmpfs-secrets agent: give --url or set ${URL_ENV}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    from tmpfs_secrets.agent.run import Agent

    agent = Agent(args.url, tls_context(args.ca_file), TokenFile(args.token), writers)
    # As process 1 Python ignores SIGTERM unless told: the files stay, the pod's end needs nothing.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    logging.getLogger("tmpfs_secrets.agent").info(
        "streaming %s from %s", ", ".join(sorted(writers)), args.url
    )
    agent.run()
    return 0


def entry(argv: Sequence[str] | None = None) -> int:
    """`python3 -m tmpfs_secrets.agent`: the same as `tmpfs-secrets agent`."""
    parser = argparse.ArgumentParser(prog="tmpfs-secrets agent")
    add_arguments(parser)
    return main(parser.parse_args(argv))
