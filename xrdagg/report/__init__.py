"""`xrdagg report`: the statistics as tables, JSON, CSV, plots and one HTML page.

`query` reads (one function per report kind, a DataFrame out), `output` formats, `plots` draws
(matplotlib, the optional `plots` extra), `html` assembles the page. `xrdagg/reports.py` keeps
the operational summaries (job status, invalid rows) the other commands print.
"""
