"""Realistic synthetic raw records for the demo, the tests and the benchmarks.

Vectorised with NumPy so that a million rows take seconds. The shape follows what WLCG
collectors see: real site domains (the shipped topology's), a few domains no topology knows,
Zipf-skewed users and servers, transfer durations from seconds to hours (some over the 7-day
clip), arrival delays from seconds to days, and a small share of every oddity SPEC §2 and §6 name:
NULL or inverted start dates, negative byte counts, empty domains and VOs, SERVER_SITE given as a
CMS name, NULL INSERT_DATE, and END_DATE far after INSERT_DATE (a collector's clock error).

Two mixes of keys (who reads what from where), with the same oddities:

- ``realistic`` (the default): traffic comes from *tasks* (a user's jobs at one client site
  reading from one server for a few hours). Each user belongs to one VO, a few production
  accounts run most tasks, most tasks read from a few big servers and close to home, and a share
  of clients are opportunistic resources whose domains no topology knows. A collector that was
  down catches up all at once. Calibrated on a real CMS AAA day (113,815 rows): T_STATS_AVG,
  T_USER_ACTIVITY, T_STATS_ACCESS_PATTERN and T_MSG_RATE get about 0.21, 0.042, 0.021 and 0.009
  rows per raw row (`python -m bench.ratios` measures them).
- ``worst``: every key drawn independently per row (users, VO, server, client), which makes
  almost one statistics row per raw row: the worst case for the engine, kept for benchmarks.
  With the same seed it gives exactly the rows this module gave before mixes existed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
# Realistic mix: the SERVER_SITE a server's collector sends (always the same for one server).
SERVER_SITE_OF = {"cern.ch": "T2_CH_CERN", "unl.edu": "T2_US_Nebraska", "in2p3.fr": "T1_FR_CCIN2P3"}
# Realistic mix: suffixes of the opportunistic clients' domains (cloud, HPC, home), unresolved.
POOL_SUFFIXES = ["cloud-provider.com", "isp-customer.net", "hpc-centre.example.org"]
MIXES = ("realistic", "worst")


@dataclass(frozen=True)
class Profile:
    """Shares of each oddity, per row, and the mix of keys (see the module's docstring)."""

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

    mix: str = "realistic"
    # The realistic mix (the worst one draws 300 users, Zipf 1.2, and everything else per row).
    users: int = 120
    user_exponent: float = 1.6  # of tasks per user: production accounts run most of them
    tasks_per_day: float = 70.0
    task_hours: float = 3.0  # median length of a task; lognormal
    server_exponent: float = 1.6  # tasks per server: a few big storage sites serve most reads
    client_exponent: float = 1.2  # remote tasks per client site
    local_share: float = 0.5  # tasks whose clients are at the server's own domain
    pool_tasks: float = 0.2  # tasks on opportunistic clients: one unresolved domain each row
    pool_share: float = 0.08  # rows of those tasks (when one is running)
    pool_domains: int = 20_000
    catch_up_hours: float = 6.0  # a late row arrives at the next of these catch-ups

    def __post_init__(self) -> None:
        if self.mix not in MIXES:
            raise ValueError(f"unknown mix {self.mix!r}: one of {', '.join(MIXES)}")

    @classmethod
    def realistic(cls) -> Profile:
        """Production-like traffic: tasks of one user at one client site reading from one server."""
        return cls(mix="realistic")

    @classmethod
    def worst_case(cls) -> Profile:
        """Every key drawn independently per row: about one statistics row per raw row."""
        return cls(mix="worst")


def generate(
    rows: int,
    *,
    start: datetime,
    days: float = 1.0,
    seed: int = 0,
    source: str = "fed",
    profile: Profile | None = None,
    mix: str | None = None,
) -> pd.DataFrame:
    """`rows` raw records whose transfers end in [start, start + days), with RAW_COLUMNS.

    `mix` ("realistic", the default, or "worst") overrides the profile's."""
    p = profile or Profile()
    if mix is not None:
        p = replace(p, mix=mix)
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
    if p.mix == "realistic":
        # A collector that was down sends its backlog at once: the next catch-up after the row.
        step = p.catch_up_hours * 3600
        insert_s[late] = t0 + np.ceil((insert_s[late] - t0) / step) * step
    clock = rng.random(n) < p.clock_error
    insert_s[clock] = end_s[clock] - np.round(rng.uniform(1.1, 5, clock.sum()) * 86400)

    if p.mix == "worst":
        server = _zipf_choice(rng, len(SERVER_DOMAINS), n, 1.1)
        client = _zipf_choice(rng, len(CLIENT_DOMAINS), n, 0.9)
        keys = {}
    else:
        # Its own stream, so that the worst mix keeps drawing exactly what it always drew.
        keys = _realistic_keys(np.random.default_rng([seed, 1]), p, end_s, t0, span)
        server, client = keys["server"], keys["client"]
    server_domain = np.array([d for d, _ in SERVER_DOMAINS], dtype=object)[server]
    server_host = np.char.add(
        np.array([h for _, h in SERVER_DOMAINS])[server], rng.integers(1, 40, n).astype(str)
    ).astype(object)
    # Index -1 is the opportunistic pool (the realistic mix's only): last in the arrays.
    client_domain = np.array([d for d, _ in CLIENT_DOMAINS] + [""], dtype=object)[client]
    client_host = np.char.add(
        np.array([h for _, h in CLIENT_DOMAINS] + ["vm"])[client],
        rng.integers(1, 2000, n).astype(str),
    ).astype(object)
    if keys:
        client_domain[client == -1] = keys["pool_domain"]
    # Some collectors send the FQDN as the host, some the short name.
    fqdn_hosts = rng.random(n) < 0.3
    server_host[fqdn_hosts] = server_host[fqdn_hosts] + "." + server_domain[fqdn_hosts]
    empty_client = rng.random(n) < p.empty_domain
    client_domain[empty_client] = rng.choice(
        np.array([None, "", " "], dtype=object), empty_client.sum()
    )
    empty_server = rng.random(n) < p.empty_domain / 2
    server_domain[empty_server] = None

    if keys:
        users, vo = keys["user"], keys["vo"]
    else:
        users = _zipf_choice(rng, 300, n, 1.2)
        vo = np.array(VOS, dtype=object)[rng.integers(0, len(VOS), n)]
    user_dn = np.array(
        [
            f"/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=user{u:03d}"
            for u in range(max(300, p.users))
        ],
        dtype=object,
    )[users]
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
    if p.mix == "worst":
        server_site[named] = rng.choice(SERVER_SITE_NAMES, named.sum())
    else:  # a server's collector always sends the same name (a few send an unlisted one)
        names = [
            SERVER_SITE_OF.get(d, SERVER_SITE_NAMES[i % len(SERVER_SITE_NAMES)])
            for i, (d, _) in enumerate(SERVER_DOMAINS)
        ]
        server_site[named] = np.array(names, dtype=object)[server[named]]

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


def _tasks(rng: np.random.Generator, p: Profile, t0: int, span: float) -> dict[str, np.ndarray]:
    """The realistic mix's tasks: who (user, VO) reads from where (server) to where (client), when
    (a window of hours) and how much (a weight). Client -1 is the opportunistic pool."""
    lead = 2 * p.task_hours * 3600  # tasks already running when the span begins
    k = max(1, int(np.ceil(p.tasks_per_day * (span + lead) / 86400)))
    begin = t0 - lead + rng.uniform(0, span + lead, k)
    length = rng.lognormal(np.log(p.task_hours * 3600), 0.7, k)
    user = _zipf_choice(rng, p.users, k, p.user_exponent)
    vo_of_user = np.array(VOS, dtype=object)[rng.integers(0, len(VOS), p.users)]
    server = _zipf_choice(rng, len(SERVER_DOMAINS), k, p.server_exponent)
    client = _zipf_choice(rng, len(CLIENT_DOMAINS), k, p.client_exponent)
    kind = rng.random(k)
    for s in range(len(SERVER_DOMAINS)):
        home = [c for c, (d, _) in enumerate(CLIENT_DOMAINS) if d == SERVER_DOMAINS[s][0]]
        local = (server == s) & (kind < p.local_share)
        if home and local.any():
            client[local] = rng.choice(home, local.sum())
    client[(kind >= p.local_share) & (kind < p.local_share + p.pool_tasks)] = -1
    return {
        "begin": begin,
        "end": begin + length,
        "weight": rng.lognormal(0, 1, k),
        "user": user,
        "vo": vo_of_user[user],
        "server": server,
        "client": client,
    }


def _realistic_keys(
    rng: np.random.Generator, p: Profile, end_s: np.ndarray, t0: int, span: float
) -> dict[str, np.ndarray]:
    """Per row: server and client index (-1: the pool), its pool domain, user and VO."""
    tasks = _tasks(rng, p, t0, span)
    task = _task_of_rows(rng, tasks, end_s, t0, p.pool_share)
    pooled = int((tasks["client"][task] == -1).sum())
    k = rng.integers(0, p.pool_domains, pooled)
    suffix = np.array(POOL_SUFFIXES, dtype=object)[k % len(POOL_SUFFIXES)]
    return {
        **{key: tasks[key][task] for key in ("server", "client", "user", "vo")},
        "pool_domain": np.char.add("n", k.astype(str)).astype(object) + "." + suffix,
    }


def _task_of_rows(
    rng: np.random.Generator,
    tasks: dict[str, np.ndarray],
    end_s: np.ndarray,
    t0: int,
    pool_share: float,
) -> np.ndarray:
    """Each row's task: one running in the hour the row ends, drawn by the tasks' weights;
    `pool_share` of the rows go to opportunistic tasks (client -1) when one is running."""
    hour = ((end_s - t0) // 3600).astype(np.int64)
    task = np.zeros(len(end_s), dtype=np.int64)
    every = np.arange(len(tasks["weight"]))
    pool = tasks["client"] == -1
    for h in np.unique(hour):
        rows = np.flatnonzero(hour == h)
        lo = t0 + h * 3600
        running = (tasks["begin"] < lo + 3600) & (tasks["end"] > lo)
        if not running.any():
            running = np.ones_like(running)
        # The pool's share of rows stays steady, whatever the weights of its tasks.
        to_pool = rng.random(rows.size) < pool_share
        for chosen, side in ((to_pool, running & pool), (~to_pool, running & ~pool)):
            if not side.any():
                side = running
            weight = tasks["weight"][side]
            task[rows[chosen]] = rng.choice(every[side], chosen.sum(), p=weight / weight.sum())
    return task
