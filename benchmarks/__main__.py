"""``make bench`` / ``python -m benchmarks``: every figure of docs/performance.md, with ratios.

1. ``make pipeline`` end to end on the default synthetic data, into a temporary home (its step
   times give training, the drift report and the default-size feature build). The Bento it
   builds is the one the serving benchmarks serve. Then the same full materialization launched
   the way the UI does it (``dagster dev`` + the backfill mutation), into another home.
2. Generator rows/s; the customer_features SQL at 10k and 100k customers x 12 months, with and
   without its leakage check; the generated event-log features over a minimal purchase log of
   100k customers x 12 months (~5M events).
3. The feature SQL on DuckDB and on local Spark (``benchmarks/engines.py``): a minimal source
   at 10k, 100k and 1M customers x 12 months (``--engine-sizes``), the same SQL on both engines,
   rows compared. The 1M size alone takes the better part of an hour on two cores.
4. Serving: the Bento vs a bare Starlette app vs a typical FastAPI+pandas service on ``/score``
   at concurrency 1, 8, 32, plus ``/score_batch`` rows/s and ``/score_events`` latency.
5. Offline scoring: ``customer_scores``' code path over 100k customers with reasons
   (``benchmarks/batch_scoring.py``), and its ratio to ``/score_batch`` rows/s.

Durations: ``BENCH_SECONDS`` (default 20) of load per system and concurrency, cut into
``BENCH_SLICES`` (default 4) slices that alternate between the systems. ``--quick`` runs 4 s in
2 slices and the feature build at 10k only (a smoke test of the suite, not a measurement).
``--home DIR`` reuses (or creates) a benchmark home; with a Bento already in it the pipeline is
not re-run. Results: a table on stdout and JSON in ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks import engines, pipeline, serving
from benchmarks.servers import REPO_ROOT

RESULTS = REPO_ROOT / "benchmarks" / "results"

TARGETS = {
    "score_c8_vs_bare": 0.7,
    "score_c8_vs_fastapi": 2.0,
    "score_c1_p99_ms": 3.0,
    "score_max_ms": 50.0,
    "batch_rows_per_second": 150_000,
    "events_p50_ms": 10.0,
    "features_100k_seconds": 30.0,
    "make_pipeline_seconds": 45.0,  # issue 29: was 180 s
    "scores_100k_seconds": 10.0,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke run of every figure")
    parser.add_argument("--home", type=Path, default=None, help="benchmark home to (re)use")
    parser.add_argument("--skip-pipeline", action="store_true", help="no generator/feature runs")
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--skip-ui", action="store_true", help="no UI-launched pipeline run")
    parser.add_argument("--skip-scores", action="store_true", help="no offline scoring run")
    parser.add_argument("--skip-engines", action="store_true", help="no DuckDB vs Spark run")
    parser.add_argument(
        "--engine-sizes",
        type=int,
        nargs="+",
        default=[10_000, 100_000, 1_000_000],
        help="customers (x 12 months) of the DuckDB vs Spark feature runs",
    )
    parser.add_argument("--driver", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    return parser.parse_args(argv)


def _has_bento(env: dict[str, str]) -> str | None:
    """The newest churn_service Bento's model tag in this home's store, if any."""
    import subprocess

    listing = subprocess.run(
        [str(Path(sys.executable).parent / "bentoml"), "list", "churn_service", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        bentos = json.loads(listing.stdout or "[]")
    except json.JSONDecodeError:
        return None
    return bentos[0]["tag"] if bentos else None


def _champion_tag(env: dict[str, str]) -> str:
    import subprocess

    code = "from churn import registry; print(registry.latest_tag())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds = float(os.environ.get("BENCH_SECONDS", 4 if args.quick else 20))
    slices = int(os.environ.get("BENCH_SLICES", 2 if args.quick else 4))
    feature_sizes = [10_000] if args.quick else [10_000, 100_000]
    generator_size = 10_000 if args.quick else 100_000
    scratch = Path(tempfile.mkdtemp(prefix="churn-bench-"))
    home = args.home.resolve() if args.home else scratch / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = pipeline.home_env(home)
    started = datetime.now(UTC)
    results: dict = {
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": list(os.getloadavg()),
        },
        "targets": TARGETS,
    }
    try:
        bento = _has_bento(env)
        if bento is None:
            _say(f"make pipeline on the default data into {home} (builds the Bento) ...")
            results["make_pipeline"] = _guarded(
                results, "make_pipeline", pipeline.make_pipeline, home
            )
            bento = _has_bento(env)
        else:
            _say(f"reusing {bento} in {home}: make pipeline not re-run")
        results["bento"] = bento
        if not args.skip_ui:
            _say("the full pipeline launched as the UI does (dagster dev + backfill) ...")
            results["ui_run"] = _guarded(results, "ui_run", pipeline.ui_run, scratch / "ui-home")
        if not args.skip_pipeline:
            _say(f"generator: {generator_size:,} customers x 12 months ...")
            results["generator"] = _guarded(
                results, "generator", pipeline.generator, generator_size, 12
            )
            results["features"] = {}
            for size in feature_sizes:
                _say(f"features: {size:,} customers x 12 months ...")
                figures = _guarded(
                    results, f"features_{size}", pipeline.features, size, 12, scratch
                )
                if figures:
                    results["features"][str(size)] = figures
            size = feature_sizes[-1]
            _say(f"event-log features: {size:,} customers x 12 months of purchases ...")
            results["event_log_features"] = _guarded(
                results, "event_log_features", pipeline.event_log_features, size, 12, scratch
            )
        if not args.skip_engines:
            results["engines"] = []
            for size in [10_000] if args.quick else args.engine_sizes:
                _say(f"engines: features on DuckDB and Spark, {size:,} customers x 12 ...")
                figures = _guarded(
                    results, f"engines_{size}", engines.measure, size, 12, scratch, engines.ENGINES
                )
                if figures:
                    results["engines"].append(figures)
            engines.stop_sessions()
        if not args.skip_serving and bento is None:
            results.setdefault("errors", {})["serving"] = "not run: no Bento in the home"
        if not args.skip_serving and bento is not None:
            _say(f"serving: {seconds:g} s per cell in {slices} alternating slices ...")
            settings = {
                "seconds": seconds,
                "slices": slices,
                "driver": args.driver,
                "concurrency": args.concurrency,
            }
            results["serving"] = _guarded(
                results,
                "serving",
                serving.run,
                env,
                _champion_tag(env),
                home / "warehouse.duckdb",
                scratch,
                settings,
            )
            _say("shadow mode: champion only vs champion + challenger on /score ...")
            results["shadow_cost"] = _guarded(
                results, "shadow_cost", _shadow_cost, env, seconds / slices, slices
            )
        if not args.skip_scores:
            rows = 20_000 if args.quick else 100_000
            _say(f"offline scoring: customer_scores' path over {rows:,} rows ...")
            results["batch_scoring"] = _guarded(
                results, "batch_scoring", _batch_scoring, env, rows, 1 if args.quick else 3
            )
    finally:
        results["load_average_at_end"] = list(os.getloadavg())
        results["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        out = RESULTS / f"bench-{stamp}{'-quick' if args.quick else ''}.json"
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        if args.home is None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(render(results))
    print(f"\nJSON: {out.relative_to(REPO_ROOT)}")
    return 0


def _shadow_cost(env: dict[str, str], seconds: float, rounds: int) -> dict:
    """benchmarks/shadow_cost.py in the benchmark home (its store decides the two models)."""
    import subprocess

    command = [sys.executable, "-m", "benchmarks.shadow_cost", "--seconds", f"{seconds:g}"]
    command += ["--concurrency", "1", "8", "--rounds", str(rounds)]
    out = subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout[out.stdout.index("{") :])  # the JSON follows any chatter


def _batch_scoring(env: dict[str, str], rows: int, repeats: int) -> dict:
    """benchmarks/batch_scoring.py in the benchmark home (its store and warehouse)."""
    import subprocess

    command = [sys.executable, "-m", "benchmarks.batch_scoring", "--rows", str(rows)]
    command += ["--repeats", str(repeats)]
    out = subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout[out.stdout.index("{") :])


def _load() -> float:
    """The 1-minute load average, rounded: written beside every figure."""
    return round(os.getloadavg()[0], 2)


def _guarded(results: dict, name: str, function, *args):
    """Run one measurement with the 1-minute load average at its start and end (into the
    figure's dict as ``load_average``); a failure is recorded with its error text (a
    subprocess's stderr tail included) and that load, and the suite goes on."""
    start = _load()
    try:
        figures = function(*args)
    except Exception as error:  # reported in the table and the JSON; the suite goes on
        text = error_text(error)
        results.setdefault("errors", {})[name] = text
        results.setdefault("error_load_average", {})[name] = [start, _load()]
        _say(f"{name} failed: {text}")
        return None
    if isinstance(figures, dict):
        figures["load_average"] = [start, _load()]
    return figures


def error_text(error: BaseException) -> str:
    """What failed and why: the exception's type and text, and for a subprocess the tail of
    what it printed (``CalledProcessError``'s own text is only the command and exit code)."""
    import subprocess

    text = f"{type(error).__name__}: {error}"
    if isinstance(error, subprocess.CalledProcessError):
        output = "\n".join(
            part.decode(errors="replace") if isinstance(part, bytes) else part
            for part in (error.stdout, error.stderr)
            if part
        )
        text += "\n" + (pipeline.output_tail(output) or "(it printed nothing)")
    return text


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _check(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "ok" if ok else "MISSED"


def render(results: dict) -> str:
    """The table: every figure, its ratio or target, and whether the target is met."""
    lines: list[str] = []
    add = lines.append
    serving_results = results.get("serving")
    if serving_results:
        add(
            f"\n/score, one worker (load: {serving_results['driver']}, "
            f"{serving_results['seconds_per_cell']:g} s per cell in "
            f"{serving_results['slices']} alternating slices; medians)"
            f"{_load_note(serving_results)}"
        )
        add(
            f"{'system':36} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'max ms':>8} {'RSS MiB':>8} {'vs bare':>8} {'vs c':>6} {'err':>4}"
        )
        for concurrency, cells in serving_results["score"].items():
            bare = cells["bare"]["requests_per_second"]
            typical = cells["fastapi"]["requests_per_second"]
            for name in serving.SYSTEMS:
                cell = cells[name]
                rps = cell["requests_per_second"]
                add(
                    f"{serving.LABELS[name]:36} {concurrency:>4} {rps:>8.0f} "
                    f"{cell['p50_ms']:>8.2f} {cell['p99_ms']:>8.2f} {cell['max_ms']:>8.1f} "
                    f"{cell['rss_mib']:>8.0f} {rps / bare:>8.2f} {rps / typical:>6.1f} "
                    f"{cell['errors']:>4}{_load_note(cell)}"
                )
        add("")
        add(f"{'target':52} {'measured':>12} {'target':>10} {'':>7}")
        cells8 = serving_results["score"].get("8")
        if cells8:
            vs_bare = cells8["bento"]["requests_per_second"] / cells8["bare"]["requests_per_second"]
            vs_c = cells8["bento"]["requests_per_second"] / cells8["fastapi"]["requests_per_second"]
            c8 = cells8["bento"]
            add(_row("/score c=8 Bento / bare (x)", vs_bare, TARGETS["score_c8_vs_bare"], True, c8))
            add(_row("/score c=8 Bento / FastAPI+pandas (x)", vs_c, 2.0, True, c8))
        cells1 = serving_results["score"].get("1")
        if cells1:
            c1 = cells1["bento"]
            add(_row("/score c=1 Bento p99 (ms)", c1["p99_ms"], 3.0, False, c1))
            add(_row("/score c=1 Bento max (ms)", c1["max_ms"], 50.0, False, c1))
        batch = serving_results.get("score_batch", {})
        if "bento" in batch:
            add(
                _row(
                    "/score_batch Bento rows/s (1000/request)",
                    batch["bento"]["rows_per_second"],
                    TARGETS["batch_rows_per_second"],
                    True,
                    batch["bento"],
                )
            )
            add(f"{'  (bare app, same batches)':52} {batch['bare']['rows_per_second']:>12,.0f}")
        events = serving_results.get("score_events")
        if events:
            add(_row("/score_events p50 (ms), 1000 events", events["p50_ms"], 10.0, False, events))
            add(f"{'  p99 / max (ms)':52} {events['p99_ms']:>12.1f} {events['max_ms']:>10.1f}")
    make = results.get("make_pipeline")
    if make:
        label = "make pipeline, default data, end to end (s)"
        add(_row(label, make["seconds"], TARGETS["make_pipeline_seconds"], False, make))
        if make.get("cpu_seconds") is not None:
            add(f"{'  CPU time, user + system (s)':52} {make['cpu_seconds']:>12.1f}")
        if make.get("outside_steps_seconds") is not None:
            add(f"{'  outside the steps (s)':52} {make['outside_steps_seconds']:>12.1f}")
        for step, step_time in sorted(make["steps"].items(), key=lambda kv: -kv[1])[:8]:
            add(f"{'  step ' + step + ' (s)':52} {step_time:>12.1f}")
    ui = results.get("ui_run")
    if ui:
        add(f"{'UI-launched full run, default data (s)':52} {ui['seconds']:>12.1f}{_load_note(ui)}")
        label = f"  its {ui['runs']} runs, start to end (s)"
        add(f"{label:52} {ui['run_seconds']:>12.1f}")
        add(f"{'  executor':52} {ui['executor']:>12}")
        if make:
            add(f"{'  / make pipeline (x)':52} {ui['seconds'] / make['seconds']:>12.2f}")
    generator = results.get("generator")
    if generator:
        label = f"generator rows/s ({generator['customers']:,} customers x 12 months)"
        add(
            f"{label:52} {generator['rows_per_second']:>12,.0f}   ({generator['rows']:,} rows "
            f"in {generator['seconds']:.1f} s){_load_note(generator)}"
        )
    for size, figures in (results.get("features") or {}).items():
        label = f"features {int(size):,} x 12: SQL only (s)"
        target = TARGETS["features_100k_seconds"] if size == "100000" else None
        if target:
            add(_row(label, figures["feature_sql_seconds"], target, False, figures))
        else:
            add(f"{label:52} {figures['feature_sql_seconds']:>12.1f}{_load_note(figures)}")
        add(f"{'  + leakage check (s)':52} {figures['leakage_check_seconds']:>12.1f}")
        step = figures["asset_step_seconds"]
        if step is not None:
            add(f"{'  customer_features asset step (s)':52} {step:>12.2f}")
        else:
            error = figures.get("asset_step_error") or "no time recorded"
            add(f"{'  customer_features asset step: FAILED':52} {error[-300:]}")
        add(f"{'  snapshot rows':52} {figures['snapshot_rows']:>12,}")
        if figures.get("materialize_error"):
            add(f"  materialize FAILED: {figures['materialize_error'][-300:]}")
    if results.get("engines"):
        add("\nfeature SQL, DuckDB vs local Spark (minimal source, same SQL; seconds)")
        add(engines.render(results["engines"]))
    log = results.get("event_log_features")
    if log:
        label = f"event-log features {log['customers']:,} x 12: SQL only (s)"
        if log["customers"] == 100_000:
            target = TARGETS["features_100k_seconds"]
            add(_row(label, log["feature_sql_seconds"], target, False, log))
        else:
            add(f"{label:52} {log['feature_sql_seconds']:>12.1f}{_load_note(log)}")
        add(
            f"{'  events / snapshot rows / features':52} {log['events']:>12,} "
            f"{log['snapshot_rows']:>10,} {log['features']:>4}"
        )
        add(f"{'  + leakage check, 3 dates (s)':52} {log['leakage_check_seconds_3_dates']:>12.1f}")
    scores = results.get("batch_scoring")
    if scores:
        label = f"customer_scores path, {scores['rows']:,} rows with reasons (s)"
        target = TARGETS["scores_100k_seconds"] * scores["rows"] / 100_000
        add(_row(label, scores["score_frame_seconds"], target, False, scores))
        add(f"{'  rows/s':52} {scores['score_frame_rows_per_second']:>12,}")
        add(f"{'  CPU time of this process (s)':52} {scores['score_frame_cpu_seconds']:>12.2f}")
        add(f"{'  + write into DuckDB (s)':52} {scores['score_frame_and_write_seconds']:>12.2f}")
        add(
            f"{'  vs Scorer.score in 1000-row batches (x)':52} "
            f"{scores['offline_over_in_process_batches']:>12.2f}"
        )
        batch = (serving_results or {}).get("score_batch", {}).get("bento")
        if batch:
            ratio = scores["score_frame_rows_per_second"] / batch["rows_per_second"]
            add(f"{'  vs /score_batch Bento rows/s (x)':52} {ratio:>12.2f}")
    shadow = results.get("shadow_cost")
    if shadow:
        add(
            f"\nshadow mode cost on /score (challenger: {shadow['challenger_from']})"
            f"{_load_note(shadow)}"
        )
        for ratio in shadow["ratios"]:
            add(
                f"  concurrency {ratio['concurrency']}: requests/s shadow/off "
                f"{ratio['shadow_over_off_rps']:.2f}x, p99 shadow/off "
                f"{ratio['shadow_over_off_p99']:.2f}x"
            )
    for name, error in (results.get("errors") or {}).items():
        load = (results.get("error_load_average") or {}).get(name)
        add(f"FAILED {name}{_load_note({'load_average': load})}: {error}")
    add(
        f"\nload average at start / end: {results['machine']['load_average_at_start'][0]:.1f} / "
        f"{results['load_average_at_end'][0]:.1f}; total {results['seconds']:.0f} s"
    )
    return "\n".join(lines)


def _row(
    label: str, value: float, target: float, higher_is_better: bool, figures: dict | None = None
) -> str:
    """One figure against its target, with the load average it was measured under."""
    sign = ">=" if higher_is_better else "<="
    shown = f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"
    target_shown = f"{target:,.2f}" if target < 1000 else f"{target:,.0f}"
    return (
        f"{label:52} {shown:>12} {sign + ' ' + target_shown:>10} "
        f"{_check(value, target, higher_is_better):>7}{_load_note(figures)}"
    )


def _load_note(figures: dict | None) -> str:
    """``  [load 1.2 -> 1.5]``: the 1-minute load average at the figure's start and end."""
    load = (figures or {}).get("load_average")
    return f"  [load {load[0]:.1f} -> {load[1]:.1f}]" if load else ""


if __name__ == "__main__":
    sys.exit(main())
