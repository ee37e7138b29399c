"""[model] The champion packaged as a Bento (``churn_bento``).

The build is ``bentoml build`` in a subprocess, from the repo root's ``bentofile.yaml``:

* a fresh process imports ``serving.service`` with ``CHURN_MODEL_TAG`` and the ``model_tag``
  build argument set to the champion's exact tag, so the schemas come from that model's card and
  no module cached in this (long-lived) Dagster process can leak a previous champion into it;
* the Bento's version is the model's version, so ``churn_service:<v>`` serves ``churn_model:<v>``
  and either tag leads to the other. Rebuilding for the same champion (a code change) replaces
  that Bento;
* ``lock_packages`` stays on: the Bento records exact versions for ``bentoml containerize``. The
  lock costs about a second against the package index; the whole build takes ~5 s, most of it
  importing BentoML and the service (measured on the 2-core dev machine).

The warehouse is never opened here: the only input is the model store.
"""

import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from churn.settings import child_environment, prepend_path
from churn_assets.partitions import SINGLE_RUN

BENTO_NAME = "churn_service"
REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_TIMEOUT_SECONDS = 600


def recorded_champion(context: dg.AssetExecutionContext) -> tuple[str, bool]:
    """The tag ``champion_model`` recorded, else the newest ``churn_model`` (the champion by
    construction: only promoted models are saved); and whether that run kept the champion
    unchanged (nothing new to learn)."""
    from churn import registry

    event = context.instance.get_latest_materialization_event(dg.AssetKey("champion_model"))
    if event is not None and event.asset_materialization is not None:
        metadata = event.asset_materialization.metadata
        recorded = metadata.get("model_tag")
        if recorded is not None:
            unchanged = metadata.get("unchanged")
            return str(recorded.value), bool(unchanged is not None and unchanged.value)
    tag = registry.latest_tag()
    if tag is None:
        raise registry.ModelNotFoundError("No churn_model in the store: run champion_model first.")
    return tag, False


def build_bento(model_tag: str, version: str, challenger_tag: str | None = None) -> str:
    """Run ``bentoml build`` for ``model_tag`` (and a challenger packaged beside it); returns the
    Bento tag. Raises with the build's own output when it fails, so the Dagster log shows why."""
    bin_dir = str(Path(sys.executable).parent)  # bentoml and uv of this environment
    env = child_environment(
        PATH=prepend_path(bin_dir),
        CHURN_MODEL_TAG=model_tag,
        CHURN_CHALLENGER_TAG=challenger_tag or "none",
        CHURN_SERVING_MODE=None,  # a serve-time setting; the build serves nothing
    )
    bentoml = Path(bin_dir) / "bentoml"
    command = [
        str(bentoml) if bentoml.exists() else "bentoml",
        "build",
        "--version",
        version,
        "--arg",
        f"model_tag={model_tag}",
        "--arg",
        f"challenger_tag={challenger_tag or 'none'}",
        "--output",
        "tag",
    ]
    completed = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(command)}` failed ({completed.returncode}):\n"
            f"{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}"
        )
    for line in completed.stdout.splitlines():
        if line.startswith("__tag__:"):
            return line.removeprefix("__tag__:").strip()
    raise RuntimeError(f"`bentoml build` printed no tag:\n{completed.stdout[-4000:]}")


@dg.asset(
    deps=["champion_model"],
    group_name="model",
    kinds={"bentoml"},
    owners=["team:ml-platform"],
    backfill_policy=SINGLE_RUN,
    description="The champion and the scoring service built into a Bento named churn_service, "
    "versioned like the model (bentofile.yaml); serve it with "
    "`bentoml serve churn_service:latest`.",
)
def churn_bento(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    import bentoml
    from bentoml.exceptions import NotFound

    from churn.registry import roles

    model_tag, unchanged = recorded_champion(context)
    version = model_tag.split(":", 1)[1]
    # The store's challenger rides along when it challenges this champion (registry roles); the
    # Bento is then churn_service:<champion version>-vs-<challenger version>.
    challenger = roles.challenger_tag() if roles.champion_tag() == model_tag else None
    if challenger is not None:
        version = f"{version}-vs-{challenger.split(':', 1)[1]}"
    if unchanged:
        # The champion stayed (nothing new to learn): its Bento, when built, is the one to keep,
        # so the service that follows the store does not switch to an identical rebuild.
        try:
            bento = bentoml.bentos.get(f"{BENTO_NAME}:{version}")
        except NotFound:
            bento = None
        if bento is not None:
            context.log.info(f"kept {bento.tag}: the champion {model_tag} is unchanged")
            return dg.MaterializeResult(
                metadata={
                    "bento_tag": str(bento.tag),
                    "model_tag": model_tag,
                    "challenger_tag": challenger or "none",
                    "bento_path": dg.MetadataValue.path(str(bento.path)),
                    "rebuilt": False,
                }
            )
    try:
        bentoml.bentos.delete(f"{BENTO_NAME}:{version}")
        context.log.info(f"replacing the existing Bento {BENTO_NAME}:{version}")
    except NotFound:
        pass
    started = time.perf_counter()
    bento_tag = build_bento(model_tag, version, challenger)
    seconds = time.perf_counter() - started
    bento = bentoml.bentos.get(bento_tag)
    context.log.info(
        f"built {bento_tag} in {seconds:.1f} s at {bento.path}; "
        f"serve it with `bentoml serve {bento_tag}`"
    )
    return dg.MaterializeResult(
        metadata={
            "bento_tag": bento_tag,
            "model_tag": model_tag,
            "challenger_tag": challenger or "none",
            "bento_path": dg.MetadataValue.path(str(bento.path)),
            "size_bytes": bento.total_size(),
            "build_seconds": round(seconds, 2),
            "serve": dg.MetadataValue.md(f"`bentoml serve {bento_tag}`"),
        }
    )
