"""The two raw sources, as values: what each reads and which statistics it feeds (SPEC §1, §5).

Code is handed a `Source` instead of the strings 'fed'/'eos', so that "which raw table", "which
label in the SOURCE columns" and "does it feed user activity" are decided here, once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table

from xrdagg.db.tables import (
    t_msg_rate,
    t_raw_eos,
    t_raw_fed,
    t_stats_access_pattern,
    t_stats_avg,
    t_user_activity,
)


@dataclass(frozen=True)
class Source:
    """One raw source: its name, its raw table and the 10-minute statistics tables it feeds."""

    name: str  # 'fed' / 'eos': job kinds and command-line values
    raw: Table  # the collectors' table it reads
    feeds: tuple[Table, ...]  # the 10-minute statistics tables its rows go into

    @property
    def label(self) -> str:
        """The value of the SOURCE key columns ('FED', 'EOS')."""
        return self.name.upper()

    @property
    def has_users(self) -> bool:
        """Whether it feeds the end-bin tables without SOURCE key (user activity, access)."""
        return t_user_activity in self.feeds

    def __str__(self) -> str:
        return self.name


# FED also feeds user activity and access pattern (SPEC §5); EOS only the matrix and the rates.
FED = Source("fed", t_raw_fed, (t_stats_avg, t_user_activity, t_stats_access_pattern, t_msg_rate))
EOS = Source("eos", t_raw_eos, (t_stats_avg, t_msg_rate))
SOURCES: dict[str, Source] = {s.name: s for s in (FED, EOS)}
