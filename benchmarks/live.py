"""Live-session latency: from a bar's arrival to the session's orders handed to the broker.

Run with ``make bench-live`` after ``make demo`` (it replays the demo's data: the default day of
``ats live``, the champion the demo promoted, its 150 active tickers and 40 focus tickers).
Each bar's latency is measured inside ``LiveSession.run`` from the moment the bar is in the
panel to the moment the last of its decisions has been handed to the broker: the simulated
broker's fills for the bar, booking them, marking equity, the model's predictions (every 5th
minute, for the focus and held tickers, with the sequence models' history), the engine's
decision and the pre-trade guards (torch on one thread, as the live job runs it). Broker network time is excluded by construction (the
simulated broker is in process). The day is replayed ``REPLAYS`` times as fast as possible;
the table gives p50, p99 and the maximum over all bars, over the bars with predictions, and
over the others. Target on the 2-core development machine: p99 <= 20 ms.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

REPLAYS = 3
TARGET_P99_MS = 20.0


def main() -> int:
    import dagster as dg

    from ats_assets.cli import UsageError, default_live_day
    from ats_resources.settings import Settings, build_resources
    from live.location.session import SessionError, inference_threads, prepare_session

    if not os.environ.get("DAGSTER_HOME"):
        print("bench-live: DAGSTER_HOME is not set; run it with `make bench-live`", file=sys.stderr)
        return 2
    resources = build_resources(Settings.from_env())
    warehouse = resources["warehouse"]
    try:
        day = default_live_day(warehouse)
    except UsageError as error:
        print(f"bench-live: {error}", file=sys.stderr)
        return 2
    samples, sampled_mask, info = [], [], {}
    with dg.DagsterInstance.get() as instance:
        for _ in range(REPLAYS):
            began = time.perf_counter()
            try:
                prepared = prepare_session(
                    instance=instance,
                    warehouse=warehouse,
                    model_store=resources["model_store"],
                    market_data=resources["market_data"],
                    day=day,
                    notify_fills=False,
                )
            except SessionError as error:
                print(f"bench-live: {error}", file=sys.stderr)
                return 2
            prepare_s = time.perf_counter() - began
            session = prepared.session
            began = time.perf_counter()
            with inference_threads():
                result = session.run()
            run_s = time.perf_counter() - began
            predicted = np.array(
                [session.updater.sampled(ts) for ts in session.panel.ts], dtype=bool
            )
            samples.append(result.latency_ms)
            sampled_mask.append(predicted)
            info = {
                "day": day,
                "champion": prepared.champion.label,
                "tickers": len(session.panel.tickers),
                "focus": len(prepared.plan.focus),
                "bars": result.bars,
                "orders": len(result.records.orders),
                "fills": len(result.records.fills),
                "prepare_s": prepare_s,
                "run_s": run_s,
            }
    latency = np.concatenate(samples)
    predicted = np.concatenate(sampled_mask)
    print(
        f"replay of {info['day']}: champion {info['champion']}; {info['tickers']} tickers, "
        f"{info['focus']} focus; {info['bars']} bars x {REPLAYS} replays; {info['orders']} orders, "
        f"{info['fills']} fills per replay; preparing {info['prepare_s']:.1f} s, "
        f"session {info['run_s']:.1f} s"
    )
    print()
    print("| bars | count | p50 ms | p99 ms | max ms | mean ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, mask in (
        ("all", np.ones_like(predicted)),
        ("with predictions (every 5th minute)", predicted),
        ("without predictions", ~predicted),
    ):
        values = latency[mask]
        print(
            f"| {label} | {len(values)} | {np.percentile(values, 50):.2f} | "
            f"{np.percentile(values, 99):.2f} | {values.max():.2f} | {values.mean():.2f} |"
        )
    p99 = float(np.percentile(latency, 99))
    verdict = "meets" if p99 <= TARGET_P99_MS else "misses"
    print(f"\np99 {p99:.2f} ms {verdict} the target of {TARGET_P99_MS:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
