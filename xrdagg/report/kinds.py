"""The report kinds and output formats, without pandas: the command line lists them even on a
base install, where `xrdagg report` then asks for the `data` extra."""

from __future__ import annotations

KINDS = ("matrix", "throughput", "users", "sites", "access", "unresolved")
FORMATS = ("table", "json", "csv")
