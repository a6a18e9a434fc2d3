"""`python -m tests.runner_process [--hold FILE] [--hold-chunk FILE] [--hold-apply FILE] [--kill]
[--hold-after-chunk FILE] [--kill-in-chunk N] -- xrdagg args…`

Runs the real `xrdagg` command line in this process, with each window's aggregation (before the
run commits) followed by a line `aggregated`, then:
  --hold FILE        waiting until FILE exists: how the tests keep a job's lock, or a run in
                     flight, for exactly as long as they need;
  --kill             SIGKILL: a run that wrote everything and committed nothing;
  --kill-in-chunk N  SIGKILL inside the N-th chunk of `xrdagg recompute`, written, not committed;
  --hold-chunk FILE  after each recompute chunk is written (not committed), a line `chunk written`,
                     then waiting until FILE exists;
  --hold-after-chunk FILE  the same once each chunk has committed (line `chunk committed`): the
                     recompute then holds its pause, and no database lock;
  --hold-apply FILE  after `xrdagg topology apply` has rebuilt (not committed), a line
                     `apply written`, then waiting until FILE exists (SIGTERM it there).
The functions wrapped are the seams of tests/seams.py.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from tests.seams import AGGREGATE_WINDOW, APPLY_REBUILD, CHUNK_COMMITTED, REBUILD_CHUNK, wrap

HOLD_LIMIT_S = 300  # a test that never releases its hold does not leave this process behind


def _hold(release: Path) -> None:
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not release.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"held for {HOLD_LIMIT_S} s and {release} never appeared")
        time.sleep(0.02)


def main() -> None:
    args = sys.argv[1:]
    hold: Path | None = None
    hold_chunk: Path | None = None
    hold_apply: Path | None = None
    hold_after_chunk: Path | None = None
    kill, kill_chunk = False, 0
    while args and args[0] != "--":
        option = args.pop(0)
        if option == "--hold":
            hold = Path(args.pop(0))
        elif option == "--hold-chunk":
            hold_chunk = Path(args.pop(0))
        elif option == "--hold-after-chunk":
            hold_after_chunk = Path(args.pop(0))
        elif option == "--hold-apply":
            hold_apply = Path(args.pop(0))
        elif option == "--kill":
            kill = True
        elif option == "--kill-in-chunk":
            kill_chunk = int(args.pop(0))
        else:
            sys.exit(f"runner_process: unknown option {option}")
    args = args[1:]

    def after_aggregation(_result: object) -> None:
        print("aggregated", flush=True)
        if hold is not None:
            _hold(hold)
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)

    wrap(*AGGREGATE_WINDOW, after=after_aggregation)
    if kill_chunk:
        chunks = [0]

        def after_chunk(_rows: object) -> None:
            chunks[0] += 1
            if chunks[0] == kill_chunk:  # written, not committed
                os.kill(os.getpid(), signal.SIGKILL)

        wrap(*REBUILD_CHUNK, after=after_chunk)
    if hold_chunk is not None:
        chunk_release = hold_chunk

        def hold_in_chunk(_rows: object) -> None:
            print("chunk written", flush=True)
            _hold(chunk_release)

        wrap(*REBUILD_CHUNK, after=hold_in_chunk)
    if hold_after_chunk is not None:
        committed_release = hold_after_chunk

        def hold_after_commit(_result: object) -> None:
            print("chunk committed", flush=True)
            _hold(committed_release)

        wrap(*CHUNK_COMMITTED, after=hold_after_commit)
    if hold_apply is not None:
        apply_release = hold_apply

        def hold_in_apply(_report: object) -> None:
            print("apply written", flush=True)
            _hold(apply_release)

        wrap(*APPLY_REBUILD, after=hold_in_apply)
    from xrdagg.cli import main as cli_main

    cli_main(args)


if __name__ == "__main__":
    main()
