"""Hand-computed cases for every rule of SPEC §2-§6, on every backend."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.helpers import T0, Harness, at, fed

UNTIL = datetime(2024, 4, 1)


def run_fed(db: Harness, *rows) -> None:
    db.insert_raw("fed", list(rows))
    db.run("fed10", UNTIL)


def avg_rows(db: Harness) -> list[tuple]:
    frame = db.table("t_stats_avg")
    return [
        (
            r.bin_start,
            round(r.read_bytes, 6),
            r.active_seconds,
            r.transfers_active,
            r.transfers_ended,
        )
        for r in frame.itertuples()
    ]


def test_a_transfer_spanning_three_bins_is_split_by_overlap(db: Harness) -> None:
    run_fed(db, fed(start_date=at(5), end_date=at(25), read_bytes_at_close=1200))
    assert avg_rows(db) == [
        (at(0), 300.0, 300, 1, 0),
        (at(10), 600.0, 600, 1, 0),
        (at(20), 300.0, 300, 1, 1),
    ]


@pytest.mark.parametrize(
    "start",
    [at(7), None, at(9)],  # zero duration; missing start; start after end (9 > 7)
    ids=["zero-duration", "missing-start", "start-after-end"],
)
def test_rows_without_a_positive_duration_put_everything_in_the_end_bin(db: Harness, start) -> None:
    run_fed(db, fed(start_date=start, end_date=at(7), read_bytes_at_close=500))
    assert avg_rows(db) == [(at(0), 500.0, 0, 1, 1)]


def test_a_nine_day_transfer_is_clipped_to_seven_days(db: Harness) -> None:
    end = at(0, day=9)
    run_fed(
        db,
        fed(
            start_date=at(0),
            end_date=end,
            insert_date=end + timedelta(minutes=1),
            read_bytes_at_close=7 * 86400,
        ),
    )
    rows = avg_rows(db)
    assert rows[0][0] == at(0, day=2)  # end - 7 days
    assert len(rows) == 7 * 144 + 1  # every bin of the 7 days, and the end bin
    assert sum(r[1] for r in rows) == pytest.approx(7 * 86400)
    assert all(r[1] == 600.0 and r[2] == 600 for r in rows[:-1])
    assert rows[-1] == (end, 0.0, 0, 1, 1)  # ends on a bin boundary: zero overlap, ended here


def test_a_transfer_ending_on_a_bin_boundary_is_active_with_zero_seconds_in_its_end_bin(
    db: Harness,
) -> None:
    run_fed(db, fed(start_date=at(10), end_date=at(20), read_bytes_at_close=600))
    assert avg_rows(db) == [(at(10), 600.0, 600, 1, 0), (at(20), 0.0, 0, 1, 1)]


@pytest.mark.parametrize(
    ("at_close", "plain", "expected"),
    [(-5, 100, 0.0), (None, 7, 7.0), (None, None, 0.0), (None, -3, 0.0), (40, 100, 40.0)],
)
def test_read_bytes_fall_back_and_negative_values_count_as_zero(
    db: Harness, at_close, plain, expected
) -> None:
    run_fed(db, fed(start_date=at(30), read_bytes_at_close=at_close, read_bytes=plain))
    assert db.table("t_user_activity").read_bytes.tolist() == [expected]


def test_missing_domains_vo_and_user_become_unknown(db: Harness) -> None:
    run_fed(
        db,
        fed(
            client_host="wn7", client_domain=None, user_vo="  ", user_dn=None, server_username=None
        ),
        fed(
            client_host=None, client_domain=None, user_vo=None, user_dn="", server_username="xrootd"
        ),
        fed(
            client_host="node3.example.org",
            client_domain=None,
            user_vo=" CMS ",
            user_dn=" /CN=bob ",
        ),
    )
    ua = db.table("t_user_activity")
    assert sorted(zip(ua.user_dn, ua.vo, ua.dst_site, strict=True)) == [
        ("/CN=bob", "cms", "unknown"),
        ("unknown", "unknown", "unknown"),
        ("xrootd", "unknown", "unknown"),
    ]
    avg = db.table("t_stats_avg")
    # wn7 has no domain and no dot; node3.example.org gives its own domain. The first two rows
    # share every key (unknown site, domain and VO) and merge into one row.
    assert sorted(zip(avg.dst_domain, avg.transfers_ended, strict=True)) == [
        ("example.org", 1),
        ("unknown", 2),
    ]


def test_invalid_rows_are_excluded_and_counted(db: Harness) -> None:
    db.insert_raw(
        "fed",
        [
            fed(insert_date=None, end_date=at(30)),  # NULL INSERT_DATE
            fed(
                end_date=at(0, day=3), insert_date=at(0, day=1)
            ),  # END_DATE 2 days after INSERT_DATE
            fed(
                end_date=at(0, day=1) + timedelta(hours=23), insert_date=at(0, day=1)
            ),  # 23 h: valid
        ],
    )
    report = db.run("fed10", UNTIL)
    assert (report.rows_read, report.rows_bad_insert, report.rows_bad_clock) == (1, 1, 1)
    assert db.table("t_user_activity").accesses.sum() == 1
    assert db.table("t_msg_rate").messages.sum() == 1


def test_an_end_a_day_after_arrival_is_valid_a_second_more_is_not(db: Harness) -> None:
    arrived = at(0, day=1)
    db.insert_raw(
        "fed",
        [
            fed(end_date=arrived + timedelta(days=1), insert_date=arrived),
            fed(end_date=arrived + timedelta(days=1, seconds=1), insert_date=arrived),
        ],
    )
    report = db.run("fed10", UNTIL)
    assert (report.rows_read, report.rows_bad_clock) == (1, 1)
    assert db.table("t_msg_rate").messages.sum() == 1


@pytest.mark.parametrize(
    ("server_site", "expected"),
    [("T2_CH_CERN", "CERN-PROD"), ("t1_fr_ccin2p3", "IN2P3-CC"), ("T2_XX_Unlisted", "T2_XX_Unlisted"),
     ("BNL-ATLAS", "BNL-ATLAS"), ("", "CERN-PROD"), (None, "CERN-PROD")],
)  # fmt: skip
def test_server_site_wins_through_the_alias_map(db: Harness, server_site, expected) -> None:
    run_fed(db, fed(server_site=server_site))
    assert db.table("t_stats_avg").src_site.tolist() == [expected]
    assert db.table("t_stats_avg").src_domain.tolist() == ["cern.ch"]  # the domain stays visible


@pytest.mark.parametrize(
    ("host", "domain", "site", "shown_domain"),
    [
        (
            "x.pp.rl.ac.uk",
            None,
            "UKI-SOUTHGRID-RALPP",
            "pp.rl.ac.uk",
        ),  # longer match, listed second
        ("srm", "rl.ac.uk", "RAL-LCG2", "rl.ac.uk"),
        ("grid-lab105.desy.de", None, "GRID-LAB", "desy.de"),
        ("dcache-door-1", "desy.de", "DESY-HH", "desy.de"),
        ("a.lal.in2p3.fr", None, "GRIF", "lal.in2p3.fr"),  # domain map, longest parent first
        ("ccxrd", "in2p3.fr", "IN2P3-CC", "in2p3.fr"),
        ("LAPP-SE1.in2p3.fr.", "IN2P3.FR", "IN2P3-LAPP", "in2p3.fr"),  # case, trailing dot
        ("special-host", "fnal.gov", "USCMS-FNAL-WC1", "fnal.gov"),  # an FQDN in the domain map
        ("cmsstor359", "fnal.gov", "unknown", "fnal.gov"),  # unresolved: the domain stays visible
    ],
)
def test_client_side_resolution(db: Harness, host, domain, site, shown_domain) -> None:
    run_fed(db, fed(client_host=host, client_domain=domain))
    row = db.table("t_stats_avg").iloc[0]
    assert (row.dst_site, row.dst_domain) == (site, shown_domain)


def test_access_pattern_fractions_sizes_and_operations(db: Harness) -> None:
    rows = [
        fed(file_size=1000, read_bytes_at_close=50, read_min=10, read_max=20),  # < 10 %
        fed(file_size=1000, read_bytes_at_close=100, read_min=5, read_max=None),  # exactly 10 %
        fed(file_size=1000, read_bytes_at_close=500),  # exactly 50 %
        fed(file_size=1000, read_bytes_at_close=999, read_single_bytes=600, read_single_operations=6,
            read_vector_bytes=399, read_vector_operations=2),  # 50-100 %
        fed(file_size=1000, read_bytes_at_close=1500, write_bytes_at_close=30, write_operations=3),  # >= 100 %
        fed(file_size=1000, read_bytes_at_close=1000),  # exactly 100 %
        fed(file_size=None, read_bytes_at_close=10),  # unknown size
        fed(file_size=0, read_bytes_at_close=10, read_max=99),  # size <= 0: unknown
    ]  # fmt: skip
    run_fed(db, *rows)
    ap = db.table("t_stats_access_pattern")
    assert len(ap) == 1
    r = ap.iloc[0]
    assert (r.accesses, r.file_size, r.read_bytes) == (
        8,
        6000,
        50 + 100 + 500 + 999 + 1500 + 1000 + 10 + 10,
    )
    # 5 % | 10 % | 50 %, 99.9 % | 150 %, 100 % | no size, size 0
    assert (r.n_frac_lt10, r.n_frac_10_50, r.n_frac_50_100, r.n_frac_ge100, r.n_frac_unknown) == (
        1,
        1,
        2,
        2,
        2,
    )
    assert (r.read_single_bytes, r.read_single_ops, r.read_vector_bytes, r.read_vector_ops) == (
        600,
        6,
        399,
        2,
    )
    assert (r.write_bytes, r.write_ops, r.read_min, r.read_max) == (30, 3, 5, 99)


def test_message_rate_counts_arrivals_and_delays(db: Harness) -> None:
    run_fed(
        db,
        fed(end_date=at(1), insert_date=at(12)),  # 11 min late, arrives in the 00:10 bin
        fed(end_date=at(15), insert_date=at(15.5)),  # 30 s
        fed(end_date=at(19), insert_date=at(18)),  # inserted before it ended: delay 0, not negative
    )
    msg = db.table("t_msg_rate")
    assert msg[
        ["bin_start", "domain", "messages", "delay_seconds", "max_delay_seconds"]
    ].values.tolist() == [[at(10), "cern.ch", 3, 660 + 30, 660]]


def test_late_rows_land_in_the_bins_they_belong_to(db: Harness) -> None:
    db.insert_raw(
        "fed", [fed(start_date=at(0), end_date=at(5), read_bytes_at_close=10, insert_date=at(6))]
    )
    db.run("fed10", at(0, day=1))
    # Ended on day 0, inserted on day 20 (a collector catching up): counted in day 0's bin.
    late = fed(start_date=at(0), end_date=at(5), read_bytes_at_close=5, insert_date=at(0, day=20))
    db.insert_raw("fed", [late])
    db.run("fed10", UNTIL)
    assert avg_rows(db) == [(at(0), 15.0, 600, 2, 2)]


def test_daily_tables_and_site_list(db: Harness) -> None:
    run_fed(
        db,
        fed(user_dn="/CN=a", read_bytes_at_close=100),
        fed(user_dn="/CN=b", read_bytes_at_close=50, client_host="wn2", client_domain="cern.ch"),  # local
        fed(user_dn="/CN=a", read_bytes_at_close=10, end_date=at(0, day=1) + timedelta(minutes=5),
            insert_date=at(0, day=1) + timedelta(minutes=6)),
    )  # fmt: skip
    db.run("daily", UNTIL)
    stats = db.table("mv_site_stats")
    day0 = stats[stats.day == T0].set_index(["site", "role"])
    assert day0.loc[("CERN-PROD", "SERVER")].tolist()[2:] == [150.0, 0.0, 2, 50.0, 100.0, 2]
    assert day0.loc[("BNL-ATLAS", "CLIENT")].tolist()[2:] == [100.0, 0.0, 1, 0.0, 100.0, 1]
    assert day0.loc[("CERN-PROD", "CLIENT")].tolist()[2:] == [50.0, 0.0, 1, 50.0, 0.0, 1]
    daily = db.table("t_stats_access_pattern_a")
    assert daily.groupby("day").accesses.sum().to_dict() == {T0: 2, T0 + timedelta(days=1): 1}
    sites = db.table("t_site").set_index("site")
    assert sites.loc["CERN-PROD"][["country", "is_server", "is_client"]].tolist() == [
        "Switzerland",
        "Y",
        "Y",
    ]
    assert sites.loc["BNL-ATLAS"][["is_server", "is_client"]].tolist() == ["N", "Y"]
    assert sites.loc["CERN-PROD"].last_seen == T0 + timedelta(days=1)
    assert "unknown" not in sites.index


def test_eos_rows_feed_only_their_tables(db: Harness) -> None:
    db.insert_raw("eos", [fed(read_bytes_at_close=42)])
    db.run("eos10", UNTIL)
    db.run("daily", UNTIL)
    assert db.table("t_stats_avg")[["source", "read_bytes"]].values.tolist() == [["EOS", 42.0]]
    assert db.table("t_user_activity").empty and db.table("t_stats_access_pattern").empty
    assert db.table("t_msg_rate").source.tolist() == ["EOS"]
    eos_stats = db.table("mv_site_stats")
    assert set(eos_stats.source) == {"EOS"} and eos_stats.users.isna().all()
