"""Small rules every layer shares: the 'unknown' key, time grains, key lengths, cache keys.

Kept apart from `xrdagg.db.tables` so that pure code (the resolver, the topology files) needs no
database layer to know them.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

# SPEC §2: Oracle stores '' as NULL, and NULL never matches in a join or MERGE, so every key
# column is NOT NULL and a missing value is this literal.
UNKNOWN = "unknown"

# SPEC §4: time grains, in seconds.
BIN_SECONDS = 600
DAY_SECONDS = 86400
# SPEC §2: a transfer longer than this is clipped to it.
MAX_TRANSFER_SECONDS = 7 * DAY_SECONDS
# A 7-day transfer touches at most this many extra bins after its first.
MAX_BIN_OFFSET = MAX_TRANSFER_SECONDS // BIN_SECONDS

# Key lengths, in bytes on Oracle. Every statistics key must fit one index entry (Oracle allows
# about 6,400 bytes), so keys are shorter than the 1000-byte raw columns and the aggregation
# truncates longer values; real values are far shorter.
SITE_LEN = 256  # as SERVER_SITE
DOMAIN_LEN = 255  # a DNS name has at most 253 characters
USER_LEN = 512
VO_LEN = 64
NAME_LEN = 1000  # raw string columns, SPEC §1

# SPEC §4: bins are counted in whole seconds from here (naive UTC datetimes at the edges).
EPOCH = datetime(1970, 1, 1)


def seconds_since_epoch(moment: datetime) -> int:
    """Whole seconds from 1970-01-01 UTC to `moment` (a naive UTC datetime)."""
    return int((moment - EPOCH).total_seconds())


def at_epoch_seconds(seconds: int) -> datetime:
    """The naive UTC datetime `seconds` whole seconds after 1970-01-01."""
    return EPOCH + timedelta(seconds=int(seconds))


def midnight(moment: datetime) -> datetime:
    """The start of the UTC day of `moment` (a naive UTC datetime)."""
    return datetime.combine(moment.date(), time())


# Stands for a NULL raw host/domain in the resolution cache's keys (no host is spelled '~').
NULL_KEY = "~"
# In the topology-change work table: a site named through the SERVER_SITE alias map, whatever
# the domain.
ANY_DOMAIN = "*"
