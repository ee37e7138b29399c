"""The cost of shadow mode on ``POST /score``: the same service, champion + challenger packaged,
served once with ``CHURN_SERVING_MODE=off`` (champion only) and once with ``shadow`` (the
challenger scores every row off the response path); closed-loop load on each in turn with
``benchmarks.score_load``'s generator; requests/s and p50/p99, and the shadow/off ratios::

    python -m benchmarks.shadow_cost --seconds 5 --concurrency 1 8 --rounds 3

Both servers run side by side and the measurement blocks alternate (off, shadow, off, ...), so
load from anything else on the machine hits both modes alike; medians over the rounds.

Models: the store's champion and challenger (``churn.registry.roles``).
Without a challenger, the newest
other ``churn_model`` stands in, else the champion itself (a retrained model of the same kind
costs the same to score, which is what is measured). The request body is the first row of the
champion's training reference sample. Only 127.0.0.1; each server is stopped after its run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.score_load import run
from benchmarks.servers import Server, free_port


def pick_models() -> tuple[str, str, str]:
    """(champion, challenger, where the challenger came from)."""
    import bentoml

    from churn import registry
    from churn.registry import roles

    champion = roles.champion_tag()
    if champion is None:
        raise SystemExit("no churn_model in the store: run `make pipeline` first")
    challenger = roles.challenger_tag()
    if challenger is not None:
        return champion, challenger, "the store's challenger"
    others = sorted(
        (m for m in bentoml.models.list(registry.MODEL_NAME) if str(m.tag) != champion),
        key=lambda m: m.info.creation_time,
    )
    if others:
        return champion, str(others[-1].tag), "the newest other churn_model (stand-in)"
    return champion, champion, "the champion itself (stand-in: same kind, same cost)"


def request_body(champion: str) -> bytes:
    import pandas as pd

    from churn import registry

    model = registry.load_model(champion)
    row = pd.read_parquet(model.reference_path).dropna().iloc[0].to_dict()
    features = {}
    for spec in model.model.specs:
        value = row[spec.name]
        if spec.kind == "categorical":
            features[spec.name] = str(value)
        else:
            features[spec.name] = int(value) if spec.dtype == "integer" else float(value)
    return json.dumps({"customer_id": "bench-1", "features": features}, default=str).encode()


def serve(mode: str, champion: str, challenger: str, home: Path) -> Server:
    bin_dir = Path(sys.executable).parent
    port = free_port()
    env = os.environ | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "CHURN_HOME": str(home / mode),
        "CHURN_MODEL_TAG": champion,
        "CHURN_CHALLENGER_TAG": challenger,
        "CHURN_SERVING_MODE": mode,
    }
    for name in ("CHURN_API_KEYS", "CHURN_RATE_LIMIT", "CHURN_RATE_LIMIT_KEYS"):
        env.pop(name, None)
    command = [str(bin_dir / "bentoml"), "serve", "serving.service:ChurnService"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    return Server(f"shadow-cost-{mode}", command, env, port, home / f"{mode}.log")


def measure(seconds: float, concurrencies: list[int], rounds: int) -> dict:
    """Both servers up at once (an idle one costs nothing); measurement blocks alternate
    off/shadow ``rounds`` times so background load hits both alike; medians are reported."""
    champion, challenger, origin = pick_models()
    body = request_body(champion)
    headers = {"content-type": "application/json"}
    results: dict = {"champion": champion, "challenger": challenger, "challenger_from": origin}
    with tempfile.TemporaryDirectory(prefix="shadow-cost-") as tmp:
        servers = {mode: serve(mode, champion, challenger, Path(tmp)) for mode in ("off", "shadow")}
        try:
            for server in servers.values():
                server.start("/model", b"{}")
            urls = {mode: f"http://127.0.0.1:{s.port}" for mode, s in servers.items()}
            for url in urls.values():
                run(url, body, 1, 2.0, headers)  # warm-up
            samples: dict[tuple[str, int], list[dict]] = {}
            for _ in range(rounds):
                for concurrency in concurrencies:
                    for mode, url in urls.items():
                        sample = run(url, body, concurrency, seconds, headers)
                        samples.setdefault((mode, concurrency), []).append(sample)
            for mode, server in servers.items():
                card = json.loads(server.post("/model", b"{}"))
                keys = ("serving_mode", "shadow_scored_rows", "shadow_shed_rows")
                results[f"{mode}_card"] = {k: card.get(k) for k in keys}
        finally:
            for server in servers.values():
                server.stop()
    for mode in ("off", "shadow"):
        results[mode] = [_median(samples[(mode, c)]) for c in concurrencies]
    results["ratios"] = [
        {
            "concurrency": off["concurrency"],
            "shadow_over_off_rps": round(
                shadow["requests_per_second"] / off["requests_per_second"], 3
            ),
            "shadow_over_off_p99": round(shadow["p99_ms"] / off["p99_ms"], 3),
        }
        for off, shadow in zip(results["off"], results["shadow"], strict=True)
    ]
    return results


def _median(samples: list[dict]) -> dict:
    keys = ("requests_per_second", "p50_ms", "p99_ms", "max_ms")
    out = {"concurrency": samples[0]["concurrency"], "rounds": len(samples)}
    out |= {k: round(statistics.median(s[k] for s in samples), 2) for k in keys}
    out["errors"] = sum(s["errors"] for s in samples)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3, help="alternating off/shadow blocks")
    args = parser.parse_args()
    results = measure(args.seconds, args.concurrency, args.rounds)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
