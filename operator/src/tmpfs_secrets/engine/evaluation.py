"""Evaluation: from what the fetcher holds for each source of one ExternalSecret to the key set
to deliver (items, then the template) and the errors to report. No I/O."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tmpfs_secrets.api.external_secret import ExternalSecretSpec
from tmpfs_secrets.engine.assemble import Outcome, assemble, item_keys
from tmpfs_secrets.engine.fetching import Fetcher
from tmpfs_secrets.engine.render import apply_template
from tmpfs_secrets.engine.state import ObjectState
from tmpfs_secrets.errors import Reason, SyncError, internal_error, traceback_text
from tmpfs_secrets.ports import ObjectRef

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    data: dict[str, bytes] = field(default_factory=dict)  # empty: nothing to deliver
    versions: dict[str, str] = field(default_factory=dict)
    errors: list[SyncError] = field(default_factory=list)
    complete: bool = False  # every item has keys (fresh or last good)


def evaluate(ref: ObjectRef, state: ObjectState, spec: ExternalSecretSpec, fetcher: Fetcher) -> Evaluation:
    """The key set of `state`'s items now; updates `state.last_good`."""
    outcomes: list[Outcome] = []
    for item, src in zip(state.items, state.sources, strict=True):
        error = fetcher.error(src)
        entry = fetcher.entry(src)
        if error is not None:
            outcomes.append(error)
        elif entry is None:
            outcomes.append(None)
        else:
            try:
                outcomes.append(item_keys(item, src, entry.value))
            except SyncError as exc:
                outcomes.append(exc)
            except Exception as exc:
                log.error(
                    "turning %s into keys for %s/%s failed unexpectedly:\n%s",
                    src.describe(),
                    ref.namespace,
                    ref.name,
                    traceback_text(exc),
                )
                outcomes.append(internal_error(f"turning {src.describe()} into keys"))
    asm = assemble(state.items, outcomes, state.last_good, spec.target.deletion_policy == "Delete")
    state.last_good = asm.last_good
    out = Evaluation(asm.data, asm.versions, asm.errors, asm.complete)
    if asm.complete and asm.data and spec.target.template is not None:
        try:
            out.data, out.versions = apply_template(spec.target.template, asm.data, asm.versions)
        except SyncError as exc:  # a template reads a key the sources did not produce
            out.errors.append(exc)
            out.data = {}
    elif asm.complete and not asm.errors and not asm.data:
        out.errors.append(
            SyncError(
                "the sources produced no keys; nothing was delivered and the target "
                "is left as it is; check spec.data and spec.dataFrom",
                Reason.SOURCE_NOT_FOUND,
            )
        )
    return out
