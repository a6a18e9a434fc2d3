"""What every statistics table and column holds (SPEC §5, docs/spec.md), as database comments.

Revision 0006 writes them into the schema (COMMENT ON … on Oracle and PostgreSQL), so that a DBA
or a dashboard author browsing the data dictionary reads the contract where the data are;
`xrdagg.db.tables` declares them too, so that the migrations and the declared schema agree.
No `&` (SQL*Plus substitution) and no double quotes: the Oracle script runs in SQL*Plus as is.
"""

from __future__ import annotations

_BIN = "Start of the 10-minute bin [t, t+600 s), UTC"
_DAY = "The UTC day (its midnight)"
_SOURCE = "Raw source: FED (federation collectors, T_RAW_FED) or EOS (T_RAW_EOS)"
_SRC_SITE = "Server-side (read from) WLCG site, or unknown when unresolved"
_DST_SITE = "Client-side (read by) WLCG site, or unknown when unresolved"
_VO = "Virtual organisation, lower case, or unknown"
_READ = "Bytes read (READ_BYTES_AT_CLOSE, else READ_BYTES; negative counts as 0)"
_WRITE = "Bytes written (WRITE_BYTES_AT_CLOSE, else WRITE_BYTES; negative counts as 0)"

_ACCESS_PATTERN = {
    "src_site": _SRC_SITE,
    "dst_site": _DST_SITE,
    "vo": _VO,
    "accesses": "Transfers (raw rows)",
    "file_size": "Sum of the known file sizes (FILE_SIZE > 0)",
    "read_bytes": _READ,
    "read_single_bytes": "Sum of READ_SINGLE_BYTES",
    "read_single_ops": "Sum of READ_SINGLE_OPERATIONS",
    "read_vector_bytes": "Sum of READ_VECTOR_BYTES",
    "read_vector_ops": "Sum of READ_VECTOR_OPERATIONS",
    "write_bytes": _WRITE,
    "write_ops": "Sum of WRITE_OPERATIONS",
    "read_min": "Minimum of READ_MIN",
    "read_max": "Maximum of READ_MAX",
    "n_frac_lt10": "Transfers that read less than 10 % of the file",
    "n_frac_10_50": "Transfers that read 10 % to 50 % of the file",
    "n_frac_50_100": "Transfers that read 50 % to 100 % of the file",
    "n_frac_ge100": "Transfers that read the whole file or more",
    "n_frac_unknown": "Transfers of a file of unknown size (NULL or <= 0)",
}

TABLE_COMMENTS = {
    "t_stats_avg": "Transfer matrix per 10-minute bin, each transfer spread over the bins it "
    "was active in (SPEC 5)",
    "t_user_activity": "Transfers per user per 10-minute bin of their end (FED)",
    "t_stats_access_pattern": "Access patterns per 10-minute bin of the transfers' end (FED)",
    "t_stats_access_pattern_a": "Access patterns per day, rolled up from T_STATS_ACCESS_PATTERN",
    "t_msg_rate": "Monitoring messages per 10-minute bin of their arrival (INSERT_DATE)",
    "t_site": "Every site seen in T_STATS_AVG, with its country and roles",
    "mv_site_stats": "Daily statistics per site and role, from T_STATS_AVG and T_USER_ACTIVITY",
    "t_agent": "Per job: the watermark (INSERT_DATE processed up to) and its lock row",
    "t_job_run": "Run log: one row per run of a job",
    "t_host_site": "Resolution cache: the site of each raw (host, domain) pair, and the rule",
}

COLUMN_COMMENTS: dict[str, dict[str, str]] = {
    "t_stats_avg": {
        "bin_start": _BIN,
        "source": _SOURCE,
        "src_site": _SRC_SITE,
        "src_domain": "Server domain, or unknown",
        "dst_site": _DST_SITE,
        "dst_domain": "Client domain, or unknown",
        "vo": _VO,
        "read_bytes": _READ + ", spread over the bins in proportion to the overlap",
        "write_bytes": _WRITE + ", spread over the bins in proportion to the overlap",
        "active_seconds": "Sum of the transfers' seconds in the bin: /600 = mean concurrent",
        "transfers_active": "Transfers active in the bin",
        "transfers_ended": "Transfers whose end is in the bin",
    },
    "t_user_activity": {
        "bin_start": _BIN + ", of the transfer's end",
        "user_dn": "USER_DN, else SERVER_USERNAME, else unknown",
        "vo": _VO,
        "src_site": _SRC_SITE,
        "dst_site": _DST_SITE,
        "accesses": "Transfers (raw rows)",
        "read_bytes": _READ,
        "write_bytes": _WRITE,
    },
    "t_stats_access_pattern": {"bin_start": _BIN + ", of the transfer's end", **_ACCESS_PATTERN},
    "t_stats_access_pattern_a": {"day": _DAY, **_ACCESS_PATTERN},
    "t_msg_rate": {
        "bin_start": _BIN + ", of the message's INSERT_DATE",
        "source": _SOURCE,
        "domain": "Server domain, or unknown",
        "messages": "Raw rows that arrived in the bin",
        "delay_seconds": "Sum of INSERT_DATE - END_DATE in seconds, never below 0",
        "max_delay_seconds": "Largest INSERT_DATE - END_DATE in seconds",
    },
    "t_site": {
        "site": "WLCG (GOCDB) site name",
        "country": "Country from the loaded topology, or unknown",
        "is_server": "Y when the site was seen as a server (SRC_SITE)",
        "is_client": "Y when the site was seen as a client (DST_SITE)",
        "first_seen": "First 10-minute bin with the site",
        "last_seen": "Last 10-minute bin with the site",
    },
    "mv_site_stats": {
        "day": _DAY,
        "site": "WLCG site",
        "role": "SERVER (the site as SRC_SITE) or CLIENT (as DST_SITE)",
        "source": _SOURCE,
        "read_bytes": _READ,
        "write_bytes": _WRITE,
        "transfers": "Transfers that ended that day",
        "local_read_bytes": "Bytes read with SRC_SITE = DST_SITE, both resolved",
        "remote_read_bytes": "READ_BYTES - LOCAL_READ_BYTES",
        "users": "Distinct users that day (T_USER_ACTIVITY); NULL for EOS",
    },
    "t_agent": {
        "job_name": "Job, as declared in jobs/*.toml",
        "watermark": "Raw rows with INSERT_DATE up to this are processed (UTC)",
    },
}
