"""Benchmark ``record=True``: the same replays with recording off and on, interleaved.

``bench/engine.py`` times each replay once, so on a shared machine its recording overhead
moves by 10-20 points between runs. This script runs the vectorisable and the streaming SMA
cross of ``bench/engine.py`` (same bars, same strategies, a ``RunRecorder`` on the default
store, ``velox.store.open_store()``) ``--repeats`` times each, recording off and on in turn, and
reports per replay:

- wall time until every record is written (the median and the best of the repeats) and the
  overhead of recording over the same replay unrecorded (goal ≤ 15 %, issue 9), for the
  replay's recorder (``RunRecorder.for_replay``: the engine's thread writes each batch in
  turn) and, as the reference, a recorder with a writer thread beside the engine;
- CPU time of the engine's thread (``time.thread_time``, which excludes waiting for the GIL or
  a core; it includes the writes the replay's recorder makes in turn) and of the writer
  thread (its CPU clock read just before ``close()``, which then writes the last batch on the
  caller's thread): CPU times are what a change to the recorder moves, even when the
  machine's load makes wall times noisy.

Run ``python bench/record_overhead.py [--bars 1000000] [--repeats 3]``; run it with
``PYTHONPATH`` pointing at two checkouts in turn to compare code before and after a change.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine as bench  # noqa: E402  (bench/engine.py: bars, strategies, the replay)

from velox.brokers.sim import SimBroker  # noqa: E402
from velox.engine import Engine  # noqa: E402
from velox.feeds import BarReplay  # noqa: E402
from velox.risk import RiskEngine, RiskLimits  # noqa: E402

#: Each replay unrecorded, recorded as ``velox.replay(record=True)`` does (the engine's thread
#: writes in turn), and recorded by a writer thread beside the engine (paper's and live's way,
#: and replays' until 2026-12-07): the reference that shows what the writer thread cost.
VARIANTS = ("off", "record=True", "writer thread")


def replay(
    bars: object, strategy: object, store: object = None, *, thread: bool = False
) -> tuple[float, float, float]:
    """Return (wall s, engine-thread CPU s, writer-thread CPU s) of one replay (recorded with
    ``store``: as ``velox.replay(record=True)`` does, or with ``thread`` by a writer thread as
    paper and live runs record), timed until every record is written."""
    sim = SimBroker({bench.STOCK.id: bench.STOCK}, initial_cash=1e9, cost_model=bench.ZeroCost())
    recorder, run_id = None, "R1"
    if store is not None:
        from velox.engine.core import strategy_record
        from velox.store import RunRecorder

        run_id = store.create_run(  # type: ignore[attr-defined]
            mode="replay", initial_cash=1e9, strategies=[strategy_record(strategy)]
        )
        recorder = (
            RunRecorder(store, run_id, alerts=False)  # type: ignore[arg-type]
            if thread
            else RunRecorder.for_replay(store, run_id)  # type: ignore[arg-type]
        )
    engine = Engine(
        [strategy],  # type: ignore[list-item]
        broker=sim,
        feed=BarReplay({(bench.STOCK.id, "1m"): bars}),
        instruments={bench.STOCK.id: bench.STOCK},
        initial_cash=1e9,
        risk=RiskEngine(RiskLimits(daily_loss_limit=1e12)),
        reconcile_every=86_400.0,
        run_id=run_id,
        journal=recorder,
    )
    gc.collect()
    t, cpu = time.perf_counter(), time.thread_time()
    engine.run()
    writer = 0.0
    if recorder is not None:
        if recorder.thread is not None:
            writer = time.clock_gettime(time.pthread_getcpuclockid(recorder.thread.ident))
        recorder.close()
    wall, cpu = time.perf_counter() - t, time.thread_time() - cpu
    if store is not None:
        store.finish_run(run_id, status="finished", summary={})  # type: ignore[attr-defined]
    return wall, cpu, writer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--skip-thread", action="store_true", help="skip the writer-thread recorder (reference)"
    )
    args = parser.parse_args()
    logging.getLogger("velox").setLevel(logging.ERROR)
    from velox.store import open_store

    store = open_store()
    bars = bench.make_bars(args.bars)
    strategies = {
        "vectorised": lambda: bench.SmaCross(instruments=("NSE:BENCH",), timeframe="1m"),
        "on_bar streaming": bench.StreamingSmaCross,
    }
    for make in strategies.values():
        replay(bars.iloc[:30_000], make())  # warm-up
        replay(bars.iloc[:30_000], make(), store)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"{len(bars):,} bars, {args.repeats} repeats, load average {load}")
    for label, make in strategies.items():
        runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in VARIANTS}
        for _ in range(args.repeats):
            runs["off"].append(replay(bars, make()))
            runs["record=True"].append(replay(bars, make(), store))
            if not args.skip_thread:
                runs["writer thread"].append(replay(bars, make(), store, thread=True))
        off_med = statistics.median(r[0] for r in runs["off"])
        off_best = min(r[0] for r in runs["off"])
        off_cpu = statistics.median(r[1] for r in runs["off"])
        print(f"{label}: off {off_med:.2f} s (median; best {off_best:.2f} s), engine-thread "
              f"CPU {off_cpu:.2f} s")  # fmt: skip
        for variant in VARIANTS[1:]:
            if not runs[variant]:
                continue
            med = statistics.median(r[0] for r in runs[variant])
            best = min(r[0] for r in runs[variant])
            cpu = statistics.median(r[1] for r in runs[variant])
            writer = statistics.median(r[2] for r in runs[variant])
            print(
                f"  {variant:13s}: {med:6.2f} s (median, {med / off_med - 1:+.1%}; best "
                f"{best:.2f} s, {best / off_best - 1:+.1%}); engine-thread CPU {cpu:.2f} s "
                f"({cpu / off_cpu - 1:+.1%}), writer-thread CPU {writer:.2f} s"
            )
    with open("/proc/loadavg") as f:
        print(f"load average after: {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    main()
