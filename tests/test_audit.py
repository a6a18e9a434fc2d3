"""`xrdagg audit`: days whose statistics differ from the raw rows under the watermark (late
rows, deleted rows), found by counts, and repaired through the recompute machinery."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from tests.helpers import Harness, check_invariant, fed, generated_rows, raw_row
from xrdagg.db.tables import RAW_TABLES, t_job_run
from xrdagg.jobs.audit import audit, repair_in_transaction, source_jobs

T0 = datetime(2024, 3, 1)
UNTIL = T0 + timedelta(days=3)


def _loaded(db: Harness) -> list[tuple[str, dict]]:
    rows = [("fed", r) for r in generated_rows(1500, start=T0, days=2, seed=3)]
    rows += [("eos", r) for r in generated_rows(800, start=T0, days=2, seed=4, source="eos")]
    for source in ("fed", "eos"):
        db.insert_raw(source, [r for s, r in rows if s == source])
    db.run("fed10", UNTIL)
    db.run("eos10", UNTIL)
    db.run("daily")
    return rows


def _audit(db: Harness, **kwargs):  # type: ignore[no-untyped-def]
    with db.engine.begin() as conn:
        return audit(conn, source_jobs(db.jobs.values()), None, None, **kwargs)


def _late(day: int, minutes: int, inserted: datetime, **fields) -> dict:  # type: ignore[no-untyped-def]
    end = T0 + timedelta(days=day, minutes=minutes)
    return fed(end_date=end, start_date=end - timedelta(hours=5), insert_date=inserted, **fields)


def test_a_consistent_database_has_no_difference(db: Harness, cli) -> None:
    _loaded(db)
    result = _audit(db)
    assert result.consistent, result.summary()
    assert result.days_checked["fed"] >= 2 and result.raw_rows > 2000
    out = cli("audit")
    assert out.exit_code == 0, out.output
    assert "0 differ" in out.output


def test_late_and_deleted_rows_are_found_and_repaired(db: Harness, cli) -> None:
    rows = _loaded(db)
    # Behind the watermark: inserted long ago, never seen by a run. One ends on day 1 and
    # started on day 0 (spread over both), arriving on day 0.
    late = [
        _late(1, 120, T0 + timedelta(hours=20), read_bytes_at_close=1234),
        _late(1, 130, T0 + timedelta(hours=21)),
    ]
    db.insert_raw("fed", late)
    # Deleted from raw after they were counted: two EOS rows.
    counted = [
        r
        for s, r in rows
        if s == "eos"
        and r["insert_date"] is not None
        and r["end_date"] <= r["insert_date"] + timedelta(days=1)
    ]
    gone = counted[:2]
    with db.engine.begin() as conn:
        table = RAW_TABLES["eos"]
        conn.execute(delete(table).where(table.c.unique_id.in_([r["unique_id"] for r in gone])))
    remaining = [(s, r) for s, r in rows if r not in gone] + [("fed", r) for r in late]

    found = _audit(db)
    days = {(d.source, d.day) for d in found.differences}
    assert ("fed", T0) in days and ("fed", T0 + timedelta(days=1)) in days, found.summary()
    fed_day1 = next(d for d in found.differences if d.source == "fed" and d.day.day == 2)
    assert fed_day1.checks["ended"] == (
        fed_day1.checks["ended"][1] + 2,
        fed_day1.checks["ended"][1],
    )
    assert "late rows" in fed_day1.reason
    assert any(d.source == "eos" and "deleted" in d.reason for d in found.differences)

    out = cli("audit", "--json")
    assert out.exit_code == 1, out.output
    report = json.loads(out.output)
    assert not report["consistent"] and len(report["differences"]) == len(found.differences)

    out = cli("audit", "--repair")
    assert out.exit_code == 1, out.output
    assert "repaired" in out.output
    check_invariant(db, remaining)
    assert cli("audit").exit_code == 0


def test_from_to_and_source_limit_the_audit(db: Harness, cli) -> None:
    _loaded(db)
    db.insert_raw("fed", [_late(1, 300, T0 + timedelta(days=1, hours=6))])
    out = cli("audit", "--source", "eos")
    assert out.exit_code == 0, out.output
    out = cli("audit", "--from", "2024-03-01", "--to", "2024-03-01")
    assert out.exit_code == 0, out.output  # the late row ends, starts and arrives on day 1
    out = cli("audit", "--from", "2024-03-02", "--to", "2024-03-02", "--source", "fed")
    assert out.exit_code == 1 and "2024-03-02" in out.output
    out = cli("audit", "--from", "2024-03-03", "--to", "2024-03-02")
    assert out.exit_code == 2


def test_the_audit_job_repairs_in_its_run_and_logs_it(db: Harness) -> None:
    rows = _loaded(db)
    late = [_late(1, 200, T0 + timedelta(days=1, hours=1), read_bytes_at_close=99)]
    db.insert_raw("fed", late)
    job = replace(db.jobs["fed10"], name="audit", kind="audit", days=7, repair=False)
    # A look-only audit over a range that holds no data changes nothing and finds nothing.
    report = db.run(job)
    assert report.outcome == "OK" and "0 differ" in report.message
    # Over the data's days (days = everything back to T0):
    days = (datetime.utcnow() - T0).days + 2
    report = db.run(replace(job, days=days))
    assert "1 differ" in report.message or "2 differ" in report.message, report.message
    report = db.run(replace(job, days=days, repair=True))
    assert "repaired" in report.message, report.message
    db.run("daily")
    check_invariant(db, [*rows, *(("fed", r) for r in late)])
    report = db.run(replace(job, days=days))
    assert " 0 differ" in report.message, report.message
    with db.engine.connect() as conn:
        logged = conn.execute(
            select(t_job_run.c.message, t_job_run.c.outcome).where(t_job_run.c.job_name == "audit")
        ).all()
    assert len(logged) == 4 and all(r.outcome == "OK" for r in logged)
    assert any("repaired" in (r.message or "") for r in logged)


def test_audit_job_options_are_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from xrdagg.errors import ConfigError
    from xrdagg.jobs.specs import load_job_specs

    def specs(body: str):  # type: ignore[no-untyped-def]
        (tmp_path / "jobs.toml").write_text(body)
        return load_job_specs(tmp_path)

    [job] = specs('[[job]]\nname = "a"\nkind = "audit"\ndays = 3\nrepair = true\n')
    assert (job.kind, job.days, job.repair, job.has_watermark) == ("audit", 3, True, False)
    with pytest.raises(ConfigError, match="'repair' must be true or false"):
        specs('[[job]]\nname = "a"\nkind = "audit"\nrepair = "yes"\n')
    with pytest.raises(ConfigError, match="'days' must be a whole number"):
        specs('[[job]]\nname = "a"\nkind = "audit"\ndays = 0\n')
    with pytest.raises(ConfigError, match="belong to an audit job"):
        specs('[[job]]\nname = "f"\nkind = "fed"\nrepair = true\n')


def test_status_shows_the_audit_finding(db: Harness, cli) -> None:
    _loaded(db)
    db.insert_raw("fed", [_late(1, 300, T0 + timedelta(days=1, hours=6))])
    days = (datetime.utcnow() - T0).days + 2
    db.run(replace(db.jobs["audit"], days=days))
    out = cli("status")
    assert "audit: " in out.output and "checked, 1 differ" in out.output, out.output


def test_duplicates_in_raw_are_reported_not_repaired(db: Harness, cli) -> None:
    row = fed(end_date=T0 + timedelta(hours=3), insert_date=T0 + timedelta(hours=3, minutes=1))
    db.insert_raw("fed", [row, dict(row), fed()])  # the same UNIQUE_ID twice
    db.run("fed10", UNTIL)
    assert cli("audit").exit_code == 0  # SPEC §6 counts both copies: the statistics agree
    out = cli("audit", "--duplicates", "--json")
    assert out.exit_code == 1, out.output
    report = json.loads(out.output)
    assert report["consistent"]
    assert report["duplicates"] == [{"source": "fed", "day": "2024-03-01", "extra_copies": 1}]


def test_a_paused_source_is_not_audited_and_says_so(db: Harness, cli) -> None:
    from xrdagg.jobs.pause import PauseLease

    _loaded(db)
    lease = PauseLease(db.engine, ["fed10"], "recompute 99").acquire()
    try:
        out = cli("audit")
    finally:
        lease.release()
    assert (
        out.exit_code == 2 and "fed not audited: job fed10 is paused by recompute 99" in out.output
    )
    assert cli("audit").exit_code == 0


def test_a_late_row_cancelled_in_its_end_bin_by_a_deleted_one_is_repaired(db: Harness) -> None:
    # A row deleted from raw and a late row ending in the same bin, as long, under other keys:
    # their end day's counts cancel out, and only the days they arrived on differ. The repair
    # rebuilds the end day of the rows that arrived on such a day too (found by the property
    # test: EOS, with no read-bytes check to tell the two rows apart).
    end = T0 + timedelta(hours=5, minutes=3)
    counted = raw_row(server_host="wn1", server_domain="bnl.gov", client_host="x",
                      client_domain="rl.ac.uk", user_vo="atlas", end_date=end,
                      insert_date=end + timedelta(hours=20))  # fmt: skip
    db.insert_raw("eos", [counted])
    db.run("eos10", UNTIL)
    late = raw_row(client_host="grid-lab105.desy.de", end_date=end + timedelta(minutes=2),
                   insert_date=UNTIL - timedelta(hours=4))  # fmt: skip
    db.insert_raw("eos", [late])
    with db.engine.begin() as conn:
        table = RAW_TABLES["eos"]
        conn.execute(delete(table).where(table.c.unique_id == counted["unique_id"]))
    found = _audit(db)
    arrival_days = {T0 + timedelta(days=1), UNTIL - timedelta(days=1)}
    assert {d.day for d in found.differences} == arrival_days, found.summary()
    with db.engine.begin() as conn:
        result = audit(conn, source_jobs(db.jobs.values()), None, None, lock=True)
        repair_in_transaction(conn, source_jobs(db.jobs.values()), result)
    db.run("daily")
    check_invariant(db, [("eos", late)])
    assert _audit(db).consistent
