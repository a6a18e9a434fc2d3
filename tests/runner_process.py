"""`python -m tests.runner_process [--sleep S] [--kill] -- xrdagg args…`

Runs the real `xrdagg` command line in this process, with the aggregation of a window made slow
(--sleep) or followed by SIGKILL before the commit (--kill): how the tests hold a job's lock for
a while, or crash a run after it wrote everything and committed nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from xrdagg.jobs import runner


def main() -> None:
    args = sys.argv[1:]
    sleep, kill = 0.0, False
    while args and args[0] != "--":
        option = args.pop(0)
        if option == "--sleep":
            sleep = float(args.pop(0))
        elif option == "--kill":
            kill = True
    args = args[1:]
    original = runner.aggregate_window

    def aggregate_window(*a, **kw):  # type: ignore[no-untyped-def]
        original(*a, **kw)
        print("aggregated", flush=True)
        time.sleep(sleep)
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)

    runner.aggregate_window = aggregate_window  # type: ignore[assignment]
    from xrdagg.cli import main as cli_main

    cli_main(args)


if __name__ == "__main__":
    main()
