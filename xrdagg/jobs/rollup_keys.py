"""Which daily rows a roll-up rebuilds, when it rebuilds only some keys of its days.

The daily job rolls whole days up. A topology apply changes the 10-minute statistics of a few
keys only (those with a delta site), so it rolls up only the daily rows those keys feed: every
daily row is computed from the 10-minute rows with the same key in its day (sums, a distinct
count of users, T_SITE's first and last bins), so a subset of daily rows chosen by key alone is
rebuilt exactly from the 10-minute rows with those keys, whatever the other keys hold. The
filters below test key columns only, for that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, or_, true


@dataclass(frozen=True)
class KeyFilter:
    """The daily rows to roll up again: `site` keeps a site (MV_SITE_STATS and T_SITE by their
    site, T_STATS_ACCESS_PATTERN_A and T_SITE_PAIR_DAY by either side's); `unresolved` keeps a
    (domain, site) key of a side whose site is 'unknown' (T_UNRESOLVED_DAY, by its domain)."""

    site: Callable[[Any], ColumnElement[bool]]
    unresolved: Callable[[Any, Any], ColumnElement[bool]]


def of_site(keys: KeyFilter | None, site: Any) -> ColumnElement[bool]:
    """The rows of `site` that `keys` rolls up (all of them without a filter)."""
    return true() if keys is None else keys.site(site)


def of_either_site(keys: KeyFilter | None, src_site: Any, dst_site: Any) -> ColumnElement[bool]:
    """The rows with either site among those `keys` rolls up (all of them without a filter)."""
    return true() if keys is None else or_(keys.site(src_site), keys.site(dst_site))


def of_unresolved(keys: KeyFilter | None, domain: Any, site: Any) -> ColumnElement[bool]:
    """The unresolved rows of `domain` (their side's `site` is 'unknown') that `keys` rolls up."""
    return true() if keys is None else keys.unresolved(domain, site)
