"""Command line: ``python -m churn.synthetic --customers N --months M --seed S --out DIR``.

Writes ``DIR/raw/*.parquet`` and ``DIR/truth/churn_truth.parquet`` and shows a one-line
progress display on stderr, so a long run is visibly alive without a tqdm dependency.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TextIO

from churn.ingest.schema import TRUTH_FILE
from churn.synthetic.generator import GenerationSummary, GeneratorConfig, generate

BAR_WIDTH = 30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = GeneratorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m churn.synthetic", description="Generate synthetic churn data."
    )
    parser.add_argument("--customers", type=int, default=defaults.customers)
    parser.add_argument("--months", type=int, default=defaults.months)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--start-date", type=date.fromisoformat, default=defaults.start_date, metavar="YYYY-MM-DD"
    )
    parser.add_argument("--horizon-days", type=int, default=defaults.horizon_days)
    parser.add_argument("--burn-in-months", type=int, default=defaults.burn_in_months)
    parser.add_argument("--out", type=Path, required=True, help="output root directory")
    return parser.parse_args(argv)


def progress_line(stream: TextIO) -> Callable[[str, float], None]:
    """A carriage-return progress bar: one line that keeps updating in place."""
    began = time.perf_counter()

    def show(stage: str, fraction: float) -> None:
        filled = round(BAR_WIDTH * fraction)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        elapsed = time.perf_counter() - began
        stream.write(f"\r{stage:<9} [{bar}] {100 * fraction:5.1f}%  {elapsed:6.1f}s")
        stream.flush()

    return show


def describe(summary: GenerationSummary, raw_dir: Path, truth_dir: Path) -> str:
    lines = [f"data window: {summary.data_start} .. {summary.data_end} (exclusive)"]
    lines += [f"  {name:<14}{count:>12,}" for name, count in summary.rows.items()]
    lines.append(f"generated in {summary.seconds:.1f}s")
    lines.append(f"raw tables:  {raw_dir}")
    lines.append(f"truth:       {truth_dir / TRUTH_FILE}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = GeneratorConfig(
        customers=args.customers,
        months=args.months,
        seed=args.seed,
        start_date=args.start_date,
        horizon_days=args.horizon_days,
        burn_in_months=args.burn_in_months,
    )
    raw_dir, truth_dir = args.out / "raw", args.out / "truth"
    summary = generate(config, raw_dir, truth_dir, progress=progress_line(sys.stderr))
    sys.stderr.write("\n")
    print(describe(summary, raw_dir, truth_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
