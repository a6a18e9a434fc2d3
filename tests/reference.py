"""SPEC §2-§5 computed from scratch in plain Python and pandas, independently of xrdagg's jobs.

The tests compare the database's statistics with this after any sequence of runs (SPEC §6).
Nothing here imports xrdagg's job or topology code: a mistake would have to be made twice.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BIN = 600
DAY = 86400
EPOCH = datetime(1970, 1, 1)


def _secs(value: datetime) -> int:
    return int((value - EPOCH).total_seconds())


def _date(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def _blank(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or not str(value).strip(" ")
    )


@dataclass
class RefTopology:
    patterns: list[tuple[int, str, str]]
    domains: dict[str, str]
    aliases: dict[str, str]

    @classmethod
    def from_dir(cls, directory: Path) -> RefTopology:
        def read(name: str) -> list[dict[str, str]]:
            path = directory / name
            return json.loads(path.read_text()) if path.exists() else []

        patterns = [
            (i, e["pattern"], e["site"]) for i, e in enumerate(read("topology_patterns.json"), 1)
        ]
        domains = {
            e["from_value"].strip().lower().rstrip("."): e["to_value"]
            for e in read("site_topology.json")
        }
        aliases: dict[str, str] = {}
        for e in sorted(read("vo_sites.json"), key=lambda e: e["site"]):
            aliases.setdefault(e["vo_site"].upper(), e["site"])
        return cls(patterns, domains, aliases)

    def side(self, host: Any, domain: Any) -> tuple[str, str]:
        """(site, domain) of one side, SPEC §2-3 rules 2-4."""

        def clean(v: Any) -> str | None:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return None
            v = str(v).strip().lower().rstrip(".")
            return v or None

        h, d = clean(host), clean(domain)
        if h and d:
            fqdn = h if (h == d or h.endswith("." + d)) else h + "." + d
        else:
            fqdn = h or d
        if d is None and h and "." in h:
            d = h.split(".", 1)[1]
        shown = d or "unknown"
        if fqdn is None:
            return "unknown", shown
        best = None
        for rule_id, pattern, site in self.patterns:
            m = re.search(pattern, fqdn, re.IGNORECASE)
            if m:
                rank = (len(m.group(0)), len(pattern), -rule_id)
                if best is None or rank > best[0]:
                    best = (rank, site)
        if best:
            return best[1], shown
        labels = fqdn.split(".")
        for i in range(len(labels)):
            if ".".join(labels[i:]) in self.domains:
                return self.domains[".".join(labels[i:])], shown
        return "unknown", shown


def normalise(
    raw: pd.DataFrame, topo: RefTopology, watermark: datetime | None
) -> list[dict[str, Any]]:
    rows = []
    for r in raw.to_dict(orient="records"):
        insert, end, start = r["insert_date"], r["end_date"], r["start_date"]
        if insert is None or pd.isna(insert) or watermark is None:
            continue
        insert, end = pd.Timestamp(insert).to_pydatetime(), pd.Timestamp(end).to_pydatetime()
        if insert > watermark or end > insert + timedelta(days=1):
            continue
        if start is None or pd.isna(start) or pd.Timestamp(start).to_pydatetime() > end:
            start = end
        start = max(pd.Timestamp(start).to_pydatetime(), end - timedelta(days=7))

        def first(*values: Any) -> float:
            for v in values:
                if v is not None and not (isinstance(v, float) and math.isnan(v)):
                    return max(float(v), 0.0)
            return 0.0

        src_site, src_domain = topo.side(r["server_host"], r["server_domain"])
        if not _blank(r["server_site"]):
            name = str(r["server_site"]).strip(" ")
            src_site = topo.aliases.get(name.upper(), name)
        dst_site, dst_domain = topo.side(r["client_host"], r["client_domain"])
        user = next(
            (str(v).strip(" ") for v in (r["user_dn"], r["server_username"]) if not _blank(v)),
            "unknown",
        )
        size = r["file_size"]
        rows.append(
            dict(
                insert=_secs(insert), end=_secs(end), start=_secs(start),
                read=first(r["read_bytes_at_close"], r["read_bytes"]),
                write=first(r["write_bytes_at_close"], r["write_bytes"]),
                src_site=src_site, src_domain=src_domain, dst_site=dst_site, dst_domain=dst_domain,
                vo="unknown" if _blank(r["user_vo"]) else str(r["user_vo"]).strip(" ").lower(),
                user=user,
                size=None if size is None or pd.isna(size) else float(size),
                single_b=first(r["read_single_bytes"]), single_o=first(r["read_single_operations"]),
                vector_b=first(r["read_vector_bytes"]), vector_o=first(r["read_vector_operations"]),
                write_o=first(r["write_operations"]),
                read_min=None if r["read_min"] is None or pd.isna(r["read_min"]) else float(r["read_min"]),
                read_max=None if r["read_max"] is None or pd.isna(r["read_max"]) else float(r["read_max"]),
            )
        )  # fmt: skip
    return rows


def stats_avg(rows: list[dict[str, Any]], source: str) -> dict[tuple, list[float]]:
    out: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0, 0])
    for r in rows:
        d = r["end"] - r["start"]
        first_bin, end_bin = r["start"] // BIN * BIN, r["end"] // BIN * BIN
        for b in range(first_bin, end_bin + 1, BIN):
            overlap = min(r["end"], b + BIN) - max(r["start"], b)
            key = (
                _date(b),
                source,
                r["src_site"],
                r["src_domain"],
                r["dst_site"],
                r["dst_domain"],
                r["vo"],
            )
            acc = out[key]
            acc[0] += r["read"] if d == 0 else r["read"] * overlap / d
            acc[1] += r["write"] if d == 0 else r["write"] * overlap / d
            acc[2] += overlap
            acc[3] += 1
            acc[4] += 1 if b == end_bin else 0
    return out


def compute(fed: pd.DataFrame, eos: pd.DataFrame, topo: RefTopology,
            fed_watermark: datetime | None, eos_watermark: datetime | None) -> dict[str, pd.DataFrame]:  # fmt: skip
    """Every statistics table of SPEC §5 from the raw rows, as the jobs should have left them."""
    fed_rows = normalise(fed, topo, fed_watermark)
    eos_rows = normalise(eos, topo, eos_watermark)
    avg = {**stats_avg(fed_rows, "FED"), **stats_avg(eos_rows, "EOS")}
    t_avg = pd.DataFrame(
        [(*k, *v) for k, v in avg.items()],
        columns=["bin_start", "source", "src_site", "src_domain", "dst_site", "dst_domain", "vo",
                 "read_bytes", "write_bytes", "active_seconds", "transfers_active", "transfers_ended"],
    )  # fmt: skip

    ua: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    ap: dict[tuple, dict[str, Any]] = {}
    for r in fed_rows:
        b = _date(r["end"] // BIN * BIN)
        acc = ua[(b, r["user"], r["vo"], r["src_site"], r["dst_site"])]
        acc[0] += 1
        acc[1] += r["read"]
        acc[2] += r["write"]
        a = ap.setdefault((b, r["src_site"], r["dst_site"], r["vo"]), _empty_pattern())
        _add_pattern(a, r)
    t_ua = pd.DataFrame(
        [(*k, *v) for k, v in ua.items()],
        columns=[
            "bin_start",
            "user_dn",
            "vo",
            "src_site",
            "dst_site",
            "accesses",
            "read_bytes",
            "write_bytes",
        ],
    )
    t_ap = _pattern_frame(ap, "bin_start")

    msg: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for source, rows in (("FED", fed_rows), ("EOS", eos_rows)):
        for r in rows:
            acc = msg[(_date(r["insert"] // BIN * BIN), source, r["src_domain"])]
            delay = max(r["insert"] - r["end"], 0)
            acc[0] += 1
            acc[1] += delay
            acc[2] = max(acc[2], delay)
    t_msg = pd.DataFrame(
        [(*k, *v) for k, v in msg.items()],
        columns=["bin_start", "source", "domain", "messages", "delay_seconds", "max_delay_seconds"],
    )

    # Daily tables, rolled up from the 10-minute ones (SPEC §5).
    ap_a: dict[tuple, dict[str, Any]] = {}
    for (b, src, dst, vo), a in ap.items():
        day = b.replace(hour=0, minute=0, second=0)
        _merge_pattern(ap_a.setdefault((day, src, dst, vo), _empty_pattern()), a)
    t_ap_a = _pattern_frame(ap_a, "day")

    site: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0, 0, 0.0])
    for k, v in avg.items():
        b, source, src, _, dst, _, _ = k
        day = b.replace(hour=0, minute=0, second=0)
        local = v[0] if src == dst and src != "unknown" else 0.0
        for role, s in (("SERVER", src), ("CLIENT", dst)):
            acc = site[(day, s, role, source)]
            acc[0] += v[0]
            acc[1] += v[1]
            acc[2] += v[4]
            acc[3] += local
    users: dict[tuple, set[str]] = defaultdict(set)
    for b, user, _, src, dst in ua:
        day = b.replace(hour=0, minute=0, second=0)
        users[(day, src, "SERVER")].add(user)
        users[(day, dst, "CLIENT")].add(user)
    t_site_stats = pd.DataFrame(
        [
            (*k, v[0], v[1], v[2], v[3], v[0] - v[3],
             len(users.get((k[0], k[1], k[2]), ())) if k[3] == "FED" else None)
            for k, v in site.items()
        ],
        columns=["day", "site", "role", "source", "read_bytes", "write_bytes", "transfers",
                 "local_read_bytes", "remote_read_bytes", "users"],
    )  # fmt: skip
    pairs: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for (b, source, src, _, dst, _, vo), v in avg.items():
        acc = pairs[(b.replace(hour=0, minute=0, second=0), source, src, dst, vo)]
        for i, value in enumerate((v[0], v[1], v[2], v[4])):
            acc[i] += value
    t_pairs = pd.DataFrame(
        [(*k, *v) for k, v in pairs.items()],
        columns=["day", "source", "src_site", "dst_site", "vo",
                 "read_bytes", "write_bytes", "active_seconds", "transfers_ended"],
    )  # fmt: skip
    unresolved: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for (b, source, src, src_dom, dst, dst_dom, vo), v in avg.items():
        day = b.replace(hour=0, minute=0, second=0)
        for side, site, domain in (("server", src, src_dom), ("client", dst, dst_dom)):
            if site == "unknown":
                acc = unresolved[(day, source, side, domain, vo)]
                acc[0] += v[4]
                acc[1] += v[0]
                acc[2] += v[1]
    t_unresolved = pd.DataFrame(
        [(*k, *v) for k, v in unresolved.items()],
        columns=["day", "source", "side", "domain", "vo",
                 "transfers_ended", "read_bytes", "write_bytes"],
    )  # fmt: skip
    return {
        "t_unresolved_day": t_unresolved,
        "t_site_pair_day": t_pairs,
        "t_stats_avg": t_avg,
        "t_user_activity": t_ua,
        "t_stats_access_pattern": t_ap,
        "t_msg_rate": t_msg,
        "t_stats_access_pattern_a": t_ap_a,
        "mv_site_stats": t_site_stats,
    }


_SUMS = ["accesses", "file_size", "read_bytes", "read_single_bytes", "read_single_ops",
         "read_vector_bytes", "read_vector_ops", "write_bytes", "write_ops",
         "n_frac_lt10", "n_frac_10_50", "n_frac_50_100", "n_frac_ge100", "n_frac_unknown"]  # fmt: skip


def _empty_pattern() -> dict[str, Any]:
    return {**dict.fromkeys(_SUMS, 0.0), "read_min": None, "read_max": None}


def _add_pattern(a: dict[str, Any], r: dict[str, Any]) -> None:
    size, read = r["size"], r["read"]
    known = size is not None and size > 0
    a["accesses"] += 1
    a["file_size"] += size if known else 0
    a["read_bytes"] += read
    a["read_single_bytes"] += r["single_b"]
    a["read_single_ops"] += r["single_o"]
    a["read_vector_bytes"] += r["vector_b"]
    a["read_vector_ops"] += r["vector_o"]
    a["write_bytes"] += r["write"]
    a["write_ops"] += r["write_o"]
    if not known:
        a["n_frac_unknown"] += 1
    else:
        fraction = read / size
        bucket = (
            "n_frac_lt10"
            if fraction < 0.1
            else "n_frac_10_50"
            if fraction < 0.5
            else ("n_frac_50_100" if fraction < 1 else "n_frac_ge100")
        )
        a[bucket] += 1
    if r["read_min"] is not None:
        a["read_min"] = (
            r["read_min"] if a["read_min"] is None else min(a["read_min"], r["read_min"])
        )
    if r["read_max"] is not None:
        a["read_max"] = (
            r["read_max"] if a["read_max"] is None else max(a["read_max"], r["read_max"])
        )


def _merge_pattern(a: dict[str, Any], b: dict[str, Any]) -> None:
    for k in _SUMS:
        a[k] += b[k]
    for k, pick in (("read_min", min), ("read_max", max)):
        if b[k] is not None:
            a[k] = b[k] if a[k] is None else pick(a[k], b[k])


def _pattern_frame(ap: dict[tuple, dict[str, Any]], time_column: str) -> pd.DataFrame:
    return pd.DataFrame(
        [(*k, *(a[s] for s in _SUMS), a["read_min"], a["read_max"]) for k, a in ap.items()],
        columns=[time_column, "src_site", "dst_site", "vo", *_SUMS, "read_min", "read_max"],
    )


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame, keys: list[str], table: str) -> None:
    """Same keys; measures equal (relative 1e-9: spread bytes are sums of fractions)."""
    actual = actual.sort_values(keys, kind="stable").reset_index(drop=True)
    expected = (
        expected[list(actual.columns)].sort_values(keys, kind="stable").reset_index(drop=True)
    )
    for frame in (actual, expected):
        for k in keys:
            if k in ("bin_start", "day"):
                frame[k] = pd.to_datetime(frame[k])
    a_keys = list(map(tuple, actual[keys].to_numpy()))
    e_keys = list(map(tuple, expected[keys].to_numpy()))
    missing, extra = set(e_keys) - set(a_keys), set(a_keys) - set(e_keys)
    assert not missing and not extra, (
        f"{table}: missing rows {sorted(missing)[:5]}, extra rows {sorted(extra)[:5]}"
    )
    for column in actual.columns:
        if column in keys:
            continue
        a = pd.to_numeric(actual[column], errors="coerce").to_numpy(dtype=float)
        e = pd.to_numeric(expected[column], errors="coerce").to_numpy(dtype=float)
        same = np.isclose(a, e, rtol=1e-9, atol=1e-6, equal_nan=True)
        if not same.all():
            i = int(np.argmin(same))
            raise AssertionError(
                f"{table}.{column} at {a_keys[i]}: database {a[i]!r}, reference {e[i]!r}"
            )
