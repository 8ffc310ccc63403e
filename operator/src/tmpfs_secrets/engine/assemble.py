"""Turn the per-item outcomes of one ExternalSecret into the key set to deliver.

Items are the `dataFrom` entries in order, then the `data` entries, so an explicit `data` key
wins over the same key from extract/find. Failure never loses values: an item whose source fails
contributes its last good keys, and the set is delivered only when every item has keys (fresh or
last good). With `deletionPolicy: Delete`, an item whose source is gone (SourceNotFound) after it
had been delivered contributes nothing, so its keys are removed; with Retain its last keys stay
and the status says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tmpfs_secrets.api.external_secret import DataItem, Extract, Find
from tmpfs_secrets.engine import keys
from tmpfs_secrets.errors import PropertyError, Reason, SourceError, SyncError
from tmpfs_secrets.providers.base import Fetched, Found, Source, Value

Item = DataItem | Extract | Find


@dataclass(frozen=True, slots=True)
class ItemKeys:
    data: dict[str, bytes]
    versions: dict[str, str]
    # Keys the item could not deliver (e.g. not valid Secret keys); the others are delivered.
    problems: tuple[SyncError, ...] = ()


Outcome = ItemKeys | SyncError | None  # None: not fetched yet


@dataclass(slots=True)
class Assembly:
    data: dict[str, bytes] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    errors: list[SyncError] = field(default_factory=list)
    complete: bool = True
    last_good: dict[int, ItemKeys] = field(default_factory=dict)


def item_keys(item: Item, source: Source, value: Value) -> ItemKeys:
    """The keys one item yields from its fetched value; raises PropertyError."""
    what = source.describe()
    if isinstance(item, Find):
        if not isinstance(value, Found):
            raise PropertyError(f"{what}: expected a path listing")
        if not value.parameters:
            raise SourceError(f"{what}: none exist; check dataFrom.find", Reason.SOURCE_NOT_FOUND)
        data, versions, problems = keys.found_keys(value)
        data = {k: keys.decode(v, item.decoding_strategy, f"key {k} of {what}") for k, v in data.items()}
        return ItemKeys(data, versions, problems)
    if not isinstance(value, Fetched):
        raise PropertyError(f"{what}: expected a single value")
    if isinstance(item, Extract):
        data, problems = keys.extract(value, what, item.property)
        data = {k: keys.decode(v, item.decoding_strategy, f"key {k} of {what}") for k, v in data.items()}
        return ItemKeys(data, dict.fromkeys(data, value.version), problems)
    prop = item.remote.property
    raw = keys.lookup_property(value, prop, what) if prop else value.value
    raw = keys.decode(raw, item.remote.decoding_strategy, what)
    return ItemKeys({item.secret_key: raw}, {item.secret_key: value.version})


def assemble(
    items: list[Item], outcomes: list[Outcome], last_good: dict[int, ItemKeys], delete_gone: bool
) -> Assembly:
    out = Assembly()
    for i, (item, outcome) in enumerate(zip(items, outcomes, strict=True)):
        previous = last_good.get(i)
        if isinstance(outcome, ItemKeys):
            if isinstance(item, Find) and previous is not None and not delete_gone:
                outcome = _retain_vanished(item, outcome, previous, out)
            out.last_good[i] = outcome
            out.errors.extend(outcome.problems)
            _merge(out, outcome)
        elif isinstance(outcome, SyncError):
            gone = outcome.reason is Reason.SOURCE_NOT_FOUND
            if gone and delete_gone and previous is not None:
                continue  # its keys disappear from the set: the Delete policy
            if previous is not None:
                out.last_good[i] = previous
                _merge(out, previous)
                if gone:
                    outcome = SourceError(
                        f"{outcome.message}; its last keys are kept because deletionPolicy is Retain",
                        Reason.SOURCE_NOT_FOUND,
                    )
            else:
                out.complete = False
            out.errors.append(outcome)
        elif previous is not None:
            out.last_good[i] = previous
            _merge(out, previous)
        else:
            out.complete = False
    return out


def _retain_vanished(item: Find, fresh: ItemKeys, previous: ItemKeys, out: Assembly) -> ItemKeys:
    vanished = sorted(set(previous.data) - set(fresh.data))
    if not vanished:
        return fresh
    out.errors.append(
        SourceError(
            f"keys {', '.join(vanished[:5])} of dataFrom.find {item.query} no longer exist; they are kept "
            "because deletionPolicy is Retain (set Delete to remove them)",
            Reason.SOURCE_NOT_FOUND,
        )
    )
    data = dict(fresh.data)
    versions = dict(fresh.versions)
    for key in vanished:
        data[key] = previous.data[key]
        versions[key] = previous.versions.get(key, "")
    return ItemKeys(data, versions)


def _merge(out: Assembly, keys_: ItemKeys) -> None:
    out.data.update(keys_.data)
    out.versions.update(keys_.versions)
