"""How a fetch error bears on scheduling: this key alone, the whole call, or throttling.

Kept apart from the plan so the plan stays free of error types: the plan only knows scopes.
"""

from __future__ import annotations

from tmpfs_secrets.errors import Reason, SyncError
from tmpfs_secrets.scheduler.plan import CALL, KEY, THROTTLED, Outcome


def outcome_of(error: SyncError) -> Outcome:
    """Throttling slows the whole group; AWS unreachable or a server error backs the whole group
    off when no key of the call succeeded; anything else (missing, denied, a bad value) is the
    key's own trouble."""
    if error.reason is Reason.THROTTLED:
        scope = THROTTLED
    elif error.reason is Reason.PROVIDER_ERROR:
        scope = CALL
    else:
        scope = KEY
    return Outcome(False, scope, error.retry_after, error.attempts)
