"""Exceptions that carry a message meant for an operator, not a traceback."""


class XrdaggError(Exception):
    """Base class: the CLI prints the message and exits non-zero, without a traceback."""


class ConfigError(XrdaggError):
    """A setting is missing or malformed; the message names the setting and the reason."""


class TopologyError(XrdaggError):
    """A topology file is malformed; the message names the file, the entry and the reason."""


class RebuildRefusedError(XrdaggError):
    """A rebuild stopped before changing anything: it could not rebuild exactly what it would
    delete (raw rows purged, a statistics table trimmed where another was kept)."""


class JobBusyError(XrdaggError):
    """Another run of the same job holds its T_AGENT row."""


class JobPausedError(JobBusyError):
    """A rebuild (recompute, topology apply) holds the job: its runs skip until it ends."""
