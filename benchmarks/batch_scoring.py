"""Offline scoring speed: ``customer_scores``' own code path over 100k customers, with reasons.

``python -m benchmarks.batch_scoring [--rows 100000] [--repeats 3]`` in a home whose store holds
a champion and whose warehouse holds ``customer_features`` (``make pipeline``); prints JSON.

The rows are the warehouse's real feature rows, repeated under new customer ids up to
``--rows`` (the default data has ~45k). Timed, median of ``--repeats``:

* ``score_frame``: :func:`churn.scoring.batch.score_frame`, exactly what the asset runs (encode
  the frame, the service's vectorized Scorer in 2,000-row chunks, reasons as columns, expected
  value), ending in the DataFrame the asset hands to DuckDB; wall clock and CPU time (this
  process), because on a shared machine the wall clock also counts waiting for a core;
* ``score_frame_and_write``: the same plus loading it into a DuckDB table (in memory);
* ``scorer_in_1000_row_batches``: the same rows through ``Scorer.score`` in 1,000-row record
  batches, i.e. the work of ``/score_batch`` without HTTP and JSON: the like-for-like ratio.

The ratio to the served ``/score_batch`` (HTTP, 1,000 rows a request) is taken by
``python -m benchmarks`` from its own serving measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _rows(rows: int):
    """``rows`` real feature rows (repeated under suffixed ids when the warehouse has fewer)."""
    import duckdb
    import pandas as pd

    from churn.settings import load_settings

    con = duckdb.connect(str(load_settings().warehouse_location), read_only=True)
    try:
        frame = con.sql(
            "SELECT * FROM customer_features ORDER BY observation_date, customer_id"
        ).df()
    finally:
        con.close()
    copies = -(-rows // len(frame))
    parts = [
        frame.assign(customer_id=frame["customer_id"] + (f"-{copy}" if copy else ""))
        for copy in range(copies)
    ]
    return pd.concat(parts, ignore_index=True).iloc[:rows]


def _median_seconds(function, repeats: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        started = clock()
        function()
        times.append(clock() - started)
    return statistics.median(times)


def measure(rows: int = 100_000, repeats: int = 3) -> dict:
    import duckdb

    from churn import registry
    from churn.modeling.card import card_economics
    from churn.scoring.batch import score_frame
    from churn.scoring.scorer import Scorer

    champion = registry.load_model()
    scorer = Scorer(champion.model, champion.card, champion.version)
    economics = card_economics(champion.card)
    frame = _rows(rows)

    def offline():
        return score_frame(scorer, frame, economics)

    def offline_and_write():
        con = duckdb.connect()
        scored = offline()
        con.register("scored", scored)
        con.execute("CREATE TABLE customer_scores AS SELECT * FROM scored")
        con.close()

    names = scorer.feature_order  # every feature the champion reads, declared and generated
    ids = frame["customer_id"].tolist()
    records = frame[names].astype(object).where(frame[names].notna(), None).to_dict("records")

    def service_path():
        for start in range(0, len(records), 1000):
            scorer.score(ids[start : start + 1000], records[start : start + 1000])

    offline()  # warm-up: TreeSHAP tables, imports
    seconds = _median_seconds(offline, repeats)
    cpu_seconds = _median_seconds(offline, repeats, time.process_time)
    with_write = _median_seconds(offline_and_write, repeats)
    service = _median_seconds(service_path, repeats)
    return {
        "rows": len(frame),
        "model": champion.tag,
        "model_kind": champion.model.kind,
        "repeats": repeats,
        "score_frame_seconds": round(seconds, 3),
        "score_frame_rows_per_second": round(len(frame) / seconds),
        "score_frame_cpu_seconds": round(cpu_seconds, 3),
        "load_average": list(os.getloadavg()),
        "score_frame_and_write_seconds": round(with_write, 3),
        "scorer_in_1000_row_batches_seconds": round(service, 3),
        "scorer_in_1000_row_batches_rows_per_second": round(len(frame) / service),
        "offline_over_in_process_batches": round(service / seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_scoring")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.rows, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
