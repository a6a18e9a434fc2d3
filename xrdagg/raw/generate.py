"""Realistic synthetic raw records for the demo, the tests and the benchmarks.

Vectorised with NumPy so that a million rows take seconds. The shape follows what WLCG
collectors see: real site domains (the shipped topology's), a few domains no topology knows,
Zipf-skewed users and servers, transfer durations from seconds to hours (some over the 7-day
clip), arrival delays from seconds to days, and a small share of every oddity SPEC §2 and §6 name:
NULL or inverted start dates, negative byte counts, empty domains and VOs, SERVER_SITE given as a
CMS name, NULL INSERT_DATE, and END_DATE far after INSERT_DATE (a collector's clock error).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from xrdagg.db.tables import RAW_COLUMNS

# (domain, host prefix) pairs of real WLCG storage and worker nodes, resolvable by the shipped
# topology; the last ones are not in it, and show up as unresolved.
SERVER_DOMAINS = [
    ("cern.ch", "eosatlas-fst"), ("cern.ch", "lxfsre"), ("bnl.gov", "dcdoor"),
    ("gridka.de", "f01-080-1"), ("in2p3.fr", "ccxrdpli"), ("in2p3.fr", "lapp-se"),
    ("pp.rl.ac.uk", "heplnx"), ("rl.ac.uk", "ceph-gw"), ("desy.de", "dcache-door"),
    ("desy.de", "grid-lab105"), ("pic.es", "dcdoor"), ("unl.edu", "xrootd-local"),
    ("jinr-t1.ru", "se"), ("sara.nl", "fly"), ("infn.it", "xrootd.cnaf"),
    ("fnal.gov", "cmsstor"), ("example-university.edu", "storage"),
]  # fmt: skip
CLIENT_DOMAINS = [
    ("cern.ch", "b6"), ("cern.ch", "lxplus"), ("bnl.gov", "acas"), ("gridka.de", "wn"),
    ("in2p3.fr", "ccwsge"), ("pp.rl.ac.uk", "heplnv"), ("gla.scotgrid.ac.uk", "node"),
    ("desy.de", "bird"), ("unl.edu", "red-c"), ("jinr-t1.ru", "wna"), ("ihep.ac.cn", "wn"),
    ("mwt2.org", "uct2-c"), ("aglt2.org", "c-"), ("ultralight.org", "compute"),
    ("cluster.local", "worker"), ("isp-customer.net", "dyn"),
]  # fmt: skip
VOS = ["atlas", "cms", "cms", "atlas", "lhcb", "ATLAS", "CMS", "alice"]
SERVER_SITE_NAMES = ["T2_CH_CERN", "T2_US_Nebraska", "T1_FR_CCIN2P3", "T2_XX_Unlisted"]


@dataclass(frozen=True)
class Profile:
    """Shares of each oddity, per row."""

    null_start: float = 0.01
    start_after_end: float = 0.005
    zero_duration: float = 0.02
    over_seven_days: float = 0.0001  # stuck connections: rare, but each spans 1009 bins
    negative_bytes: float = 0.002
    empty_domain: float = 0.01
    empty_vo: float = 0.02
    server_site: float = 0.05
    null_insert: float = 0.002
    clock_error: float = 0.002
    late_arrival: float = 0.03


def generate(
    rows: int,
    *,
    start: datetime,
    days: float = 1.0,
    seed: int = 0,
    source: str = "fed",
    profile: Profile | None = None,
) -> pd.DataFrame:
    """`rows` raw records whose transfers end in [start, start + days), with RAW_COLUMNS."""
    p = profile or Profile()
    rng = np.random.default_rng(seed)
    n = rows
    span = days * 86400.0
    t0 = pd.Timestamp(start).value // 10**9

    end_s = t0 + np.floor(rng.uniform(0, span, n))
    duration = np.round(rng.lognormal(mean=4.8, sigma=1.6, size=n))  # median ~2 min, tail to hours
    duration[rng.random(n) < p.zero_duration] = 0
    long = rng.random(n) < p.over_seven_days
    duration[long] = np.round(rng.uniform(7.5, 10, long.sum()) * 86400)
    start_s = end_s - duration
    inverted = rng.random(n) < p.start_after_end
    start_s[inverted] = end_s[inverted] + rng.integers(1, 3600, inverted.sum())

    delay = np.round(rng.exponential(30, n)) + 1  # collectors insert seconds after the close
    late = rng.random(n) < p.late_arrival
    delay[late] = np.round(rng.uniform(600, 3 * 86400, late.sum()))  # a collector catching up
    insert_s = end_s + delay
    clock = rng.random(n) < p.clock_error
    insert_s[clock] = end_s[clock] - np.round(rng.uniform(1.1, 5, clock.sum()) * 86400)

    server = _zipf_choice(rng, len(SERVER_DOMAINS), n, 1.1)
    client = _zipf_choice(rng, len(CLIENT_DOMAINS), n, 0.9)
    server_domain = np.array([d for d, _ in SERVER_DOMAINS], dtype=object)[server]
    server_host = np.char.add(
        np.array([h for _, h in SERVER_DOMAINS])[server], rng.integers(1, 40, n).astype(str)
    ).astype(object)
    client_domain = np.array([d for d, _ in CLIENT_DOMAINS], dtype=object)[client]
    client_host = np.char.add(
        np.array([h for _, h in CLIENT_DOMAINS])[client], rng.integers(1, 2000, n).astype(str)
    ).astype(object)
    # Some collectors send the FQDN as the host, some the short name.
    fqdn_hosts = rng.random(n) < 0.3
    server_host[fqdn_hosts] = server_host[fqdn_hosts] + "." + server_domain[fqdn_hosts]
    empty_client = rng.random(n) < p.empty_domain
    client_domain[empty_client] = rng.choice(
        np.array([None, "", " "], dtype=object), empty_client.sum()
    )
    empty_server = rng.random(n) < p.empty_domain / 2
    server_domain[empty_server] = None

    users = _zipf_choice(rng, 300, n, 1.2)
    user_dn = np.array(
        [f"/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=user{u:03d}" for u in range(300)],
        dtype=object,
    )[users]
    vo = np.array(VOS, dtype=object)[rng.integers(0, len(VOS), n)]
    vo[rng.random(n) < p.empty_vo] = None

    file_size = np.round(rng.lognormal(np.log(1.5e9), 1.0, n))
    file_size[rng.random(n) < 0.03] = np.nan
    fraction = rng.choice([0.02, 0.3, 0.75, 1.0], size=n, p=[0.35, 0.25, 0.15, 0.25]) * rng.uniform(
        0.8, 1.0, n
    )
    read_bytes = np.round(np.nan_to_num(file_size, nan=5e8) * fraction)
    negative = rng.random(n) < p.negative_bytes
    read_bytes[negative] = -rng.integers(1, 10**6, negative.sum())
    vector_share = rng.uniform(0, 1, n)
    write_bytes = np.where(rng.random(n) < 0.05, np.round(rng.lognormal(18, 2, n)), 0)

    server_site = np.full(n, None, dtype=object)
    named = rng.random(n) < p.server_site
    server_site[named] = rng.choice(SERVER_SITE_NAMES, named.sum())

    frame = pd.DataFrame(
        {
            "unique_id": [f"{source}-{seed}-{i:09d}" for i in range(n)],
            "file_lfn": np.char.add(
                "/store/data/Run2024/file", (np.arange(n) % 50000).astype(str)
            ).astype(object),
            "file_size": file_size,
            "client_domain": client_domain,
            "client_host": client_host,
            "server_domain": server_domain,
            "server_host": server_host,
            "read_bytes_at_close": np.where(rng.random(n) < 0.9, read_bytes, np.nan),
            "read_bytes": read_bytes,
            "read_operations": np.round(np.abs(read_bytes) / 2e6) + 1,
            "read_min": np.round(rng.uniform(1e3, 1e5, n)),
            "read_max": np.round(rng.uniform(1e6, 5e7, n)),
            "read_single_bytes": np.round(np.abs(read_bytes) * (1 - vector_share)),
            "read_single_operations": np.round(np.abs(read_bytes) * (1 - vector_share) / 1e6),
            "read_vector_bytes": np.round(np.abs(read_bytes) * vector_share),
            "read_vector_operations": np.round(np.abs(read_bytes) * vector_share / 8e6),
            "write_bytes_at_close": write_bytes,
            "write_bytes": write_bytes,
            "write_operations": np.round(write_bytes / 4e6),
            "server_username": np.where(rng.random(n) < 0.5, "xrootd", None),  # type: ignore[call-overload]
            "user_dn": np.where(rng.random(n) < 0.97, user_dn, None),
            "user_vo": vo,
            "app_info": None,
            "start_time": start_s,
            "end_time": end_s,
            "start_date": pd.to_datetime(start_s, unit="s"),
            "end_date": pd.to_datetime(end_s, unit="s"),
            "insert_date": pd.to_datetime(insert_s, unit="s"),
            "server_site": server_site,
        }
    )
    frame.loc[rng.random(n) < p.null_start, "start_date"] = pd.NaT
    frame.loc[rng.random(n) < p.null_insert, "insert_date"] = pd.NaT
    for column in RAW_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    return frame[list(RAW_COLUMNS)].sort_values("insert_date", na_position="first", kind="stable")


def _zipf_choice(rng: np.random.Generator, k: int, n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1) ** exponent
    return rng.choice(k, size=n, p=weights / weights.sum())
