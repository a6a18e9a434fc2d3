"""The command groups of `xrdagg`, one module each."""
