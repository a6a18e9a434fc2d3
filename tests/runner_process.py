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
    sleep, kill, kill_chunk = 0.0, False, 0
    while args and args[0] != "--":
        option = args.pop(0)
        if option == "--sleep":
            sleep = float(args.pop(0))
        elif option == "--kill":
            kill = True
        elif option == "--kill-in-chunk":  # SIGKILL inside the N-th recompute chunk
            kill_chunk = int(args.pop(0))
    args = args[1:]
    original = runner.aggregate_window

    def aggregate_window(*a, **kw):  # type: ignore[no-untyped-def]
        original(*a, **kw)
        print("aggregated", flush=True)
        time.sleep(sleep)
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)

    runner.aggregate_window = aggregate_window  # type: ignore[assignment]
    if kill_chunk:
        from xrdagg.jobs import recompute

        rebuild, calls = recompute.rebuild_chunk, [0]

        def rebuild_chunk(*a, **kw):  # type: ignore[no-untyped-def]
            calls[0] += 1
            rows = rebuild(*a, **kw)
            if calls[0] == kill_chunk:  # written, not committed
                os.kill(os.getpid(), signal.SIGKILL)
            return rows

        recompute.rebuild_chunk = rebuild_chunk  # type: ignore[assignment]
    from xrdagg.cli import main as cli_main

    cli_main(args)


if __name__ == "__main__":
    main()
