"""Generated FED and EOS rows, aggregated once per backend, with the reference tables computed
from the same raw rows (tests/reference.py): the data of the report and dashboard tests."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from tests.backends import Backend
from tests.helpers import T0, Harness, generated_rows
from tests.reference import RefTopology, compute
from xrdagg.config import PROJECT_ROOT
from xrdagg.db.tables import RAW_COLUMNS

TOPOLOGY = PROJECT_ROOT / "topology"  # the shipped one: most sites resolve, some do not
UNTIL = T0 + timedelta(days=5)
DAY1, DAY2 = T0, T0 + timedelta(days=1)


class Loaded:
    """A database holding generated FED and EOS rows, aggregated, and the reference tables."""

    def __init__(self, db: Harness) -> None:
        self.db = db
        fed = generated_rows(3000, start=T0, days=3, seed=11, source="fed")
        eos = generated_rows(1000, start=T0, days=3, seed=12, source="eos")
        db.load_topology(TOPOLOGY)
        db.insert_raw("fed", fed)
        db.insert_raw("eos", eos)
        db.run_all(UNTIL)
        frames = [pd.DataFrame(rows, columns=list(RAW_COLUMNS)) for rows in (fed, eos)]
        self.ref = compute(
            *frames, RefTopology.from_dir(TOPOLOGY), db.watermark("fed10"), db.watermark("eos10")
        )
        for frame in self.ref.values():
            for column in ("bin_start", "day"):
                if column in frame:
                    frame[column] = pd.to_datetime(frame[column])
        self.rows = len(fed) + len(eos)


_LOADED: dict[str, Loaded] = {}


@pytest.fixture
def data(backend: Backend) -> Loaded:
    """Loaded once per backend; loaded again when another test module emptied the database."""
    from sqlalchemy import func, select

    from xrdagg.db.tables import t_raw_eos, t_raw_fed, t_stats_avg

    loaded = _LOADED.get(backend.name)
    if loaded is not None:
        with backend.engine.connect() as conn:
            counts = [
                conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (t_raw_fed, t_raw_eos)
            ]
            stats = conn.execute(select(func.count()).select_from(t_stats_avg)).scalar_one()
        if sum(counts) == loaded.rows and stats:
            return loaded
    backend.clear()
    _LOADED[backend.name] = Loaded(Harness(backend))
    return _LOADED[backend.name]
