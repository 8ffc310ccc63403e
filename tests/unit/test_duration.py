import pytest

from tmpfs_secrets.api.duration import parse_duration
from tmpfs_secrets.errors import Reason, SpecError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h", 3600),
        ("5m30s", 330),
        ("90s", 90),
        ("1.5h", 5400),
        ("0", 0),
        (0, 0),
        ("300ms", 0.3),
        ("1h2m3s", 3723),
        ("+2m", 120),
    ],
)
def test_go_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "5m 30s", "-1h", "1h-2m", "abc", 60, True, None])
def test_invalid_durations_say_how_to_write_one(text: object) -> None:
    with pytest.raises(SpecError) as err:
        parse_duration(text)
    assert err.value.reason is Reason.INVALID_SPEC
    assert "refreshInterval" in err.value.message
