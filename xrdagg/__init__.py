"""xrdagg: incremental aggregation of XRootD monitoring records into WLCG dashboard statistics."""

__version__ = "0.1.0"
