from tmpfs_secrets.api.external_secret import DataItem, Find, RemoteRef
from tmpfs_secrets.engine.assemble import ItemKeys, assemble
from tmpfs_secrets.errors import Reason, SourceError

A = DataItem("A", RemoteRef("a"))
B = DataItem("B", RemoteRef("b"))
F = Find("/p/")
GONE = SourceError("secret b does not exist", Reason.SOURCE_NOT_FOUND)
THROTTLED = SourceError("throttled", Reason.THROTTLED)


def keys(**kv: str) -> ItemKeys:
    return ItemKeys({k: v.encode() for k, v in kv.items()}, dict.fromkeys(kv, "1"))


def test_all_fresh() -> None:
    out = assemble([A, B], [keys(A="1"), keys(B="2")], {}, delete_gone=False)
    assert out.complete and not out.errors and out.data == {"A": b"1", "B": b"2"}


def test_first_sync_with_a_failure_delivers_nothing() -> None:
    out = assemble([A, B], [keys(A="1"), THROTTLED], {}, delete_gone=False)
    assert not out.complete and out.errors == [THROTTLED]


def test_failure_keeps_last_good_of_that_item_only() -> None:
    out = assemble([A, B], [keys(A="new"), THROTTLED], {0: keys(A="old"), 1: keys(B="old")}, False)
    assert out.complete and out.data == {"A": b"new", "B": b"old"}
    assert out.errors[0].reason is Reason.THROTTLED


def test_retain_keeps_a_gone_key_and_says_so() -> None:
    out = assemble([A, B], [keys(A="1"), GONE], {1: keys(B="old")}, delete_gone=False)
    assert out.data == {"A": b"1", "B": b"old"}
    assert out.errors[0].reason is Reason.SOURCE_NOT_FOUND and "Retain" in out.errors[0].message


def test_delete_drops_a_gone_key() -> None:
    out = assemble([A, B], [keys(A="1"), GONE], {1: keys(B="old")}, delete_gone=True)
    assert out.complete and not out.errors and out.data == {"A": b"1"}


def test_delete_does_not_hide_a_key_that_never_existed() -> None:
    out = assemble([A, B], [keys(A="1"), GONE], {}, delete_gone=True)
    assert not out.complete and out.errors == [GONE]


def test_find_retains_vanished_parameters_under_retain() -> None:
    out = assemble([F], [keys(x="2")], {0: keys(x="1", y="1")}, delete_gone=False)
    assert out.data == {"x": b"2", "y": b"1"}
    assert out.errors and "y" in out.errors[0].message
    deleted = assemble([F], [keys(x="2")], {0: keys(x="1", y="1")}, delete_gone=True)
    assert deleted.data == {"x": b"2"} and not deleted.errors


def test_explicit_data_wins_over_data_from() -> None:
    out = assemble([F, A], [keys(A="from-find"), keys(A="explicit")], {}, False)
    assert out.data == {"A": b"explicit"}


def test_pending_items_use_last_good_silently() -> None:
    out = assemble([A, B], [keys(A="1"), None], {1: keys(B="old")}, False)
    assert out.complete and not out.errors
    assert not assemble([A, B], [keys(A="1"), None], {}, False).complete
