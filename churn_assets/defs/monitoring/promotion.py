"""Promoting a challenger on realized results: ``promote_challenger_job`` and its sensor.

``model_performance`` compares champion and challenger on the same matured customers (paired
bootstrap, ``churn.monitoring.challenger``); its ``challenger_promotion`` check *fails* (WARN)
when the challenger is better beyond the noise — the failure is the recommendation, so it shows
up in the UI as something to act on. ``challenger_promotion_sensor`` turns that into one run of
``promote_challenger_job`` per (champion, challenger) pair, which:

1. checks the store still has that champion and that challenger (a stale request fails),
2. relabels the store (challenger -> champion, champion -> retired:
   ``churn.registry.roles.promote``),
3. records it in ``model_registry`` (``role``, ``promoted_at``, ``retired_at``,
   ``promotion_evidence``: ``churn.registry.history``),
4. rebuilds the Bento for the new champion (``churn_service:<its version>``, champion only) and
   reports materializations of ``champion_model`` and ``churn_bento``, so the catalog, the
   next ``churn_bento`` run and the eager monitoring assets all follow the new champion.

The job can also be launched by hand (Launchpad, or ``dagster job execute -j
promote_challenger_job``) with an empty config: it then promotes the store's current challenger.
"""

import contextlib
import json

import dagster as dg

from churn_assets.check_events import evaluation_metadata, new_check_evaluation
from churn_assets.resources import WAREHOUSE_POOL, WarehouseResource

PROMOTION_CHECK = dg.AssetCheckKey(dg.AssetKey("model_performance"), "challenger_promotion")


class PromoteConfig(dg.Config):
    challenger_tag: str = ""
    """The challenger to promote; empty: the store's current challenger."""
    expected_champion_tag: str = ""
    """Refuse unless this is still the champion (the sensor sets it); empty: no check."""
    evidence: str = "{}"
    """JSON recorded in model_registry.promotion_evidence (the sensor passes the comparison)."""
    rebuild_bento: bool = True


@dg.op(
    pool=WAREHOUSE_POOL,
    description="Challenger -> champion in the store and model_registry, then rebuild the Bento.",
)
def promote_challenger(
    context: dg.OpExecutionContext, config: PromoteConfig, warehouse: WarehouseResource
):
    from churn.registry import history, roles

    current_challenger = roles.challenger_tag()
    challenger = config.challenger_tag or current_challenger
    if challenger is None:
        raise dg.Failure("no challenger in the model store: nothing to promote")
    if challenger != current_challenger:
        raise dg.Failure(
            f"{challenger} is not the current challenger ({current_challenger}); not promoted"
        )
    champion = roles.champion_tag()
    if config.expected_champion_tag and champion != config.expected_champion_tag:
        raise dg.Failure(
            f"the champion changed since the recommendation ({config.expected_champion_tag} -> "
            f"{champion}); not promoted"
        )
    evidence = json.loads(config.evidence or "{}")
    result = roles.promote(challenger)
    context.log.info(f"promoted {result.champion}; retired {result.previous_champion}")
    with warehouse.connect(context) as con:
        history.record_promotion(con, result, evidence)
    yield dg.AssetMaterialization(
        asset_key="champion_model",
        description=f"challenger {result.champion} promoted on realized results",
        metadata={
            "model_tag": result.champion,
            "role": "champion",
            "previous_champion": result.previous_champion or "none",
            "challenger_tag": "none",
            "promotion": dg.MetadataValue.json(evidence),
        },
    )
    if config.rebuild_bento:
        import bentoml
        from bentoml.exceptions import NotFound

        from churn_assets.defs.model.bento import BENTO_NAME, build_bento

        version = result.champion.split(":", 1)[1]
        with contextlib.suppress(NotFound):  # same champion rebuilt: replace its Bento
            bentoml.bentos.delete(f"{BENTO_NAME}:{version}")
        bento_tag = build_bento(result.champion, version)
        context.log.info(f"rebuilt {bento_tag}; serve it with `bentoml serve {bento_tag}`")
        yield dg.AssetMaterialization(
            asset_key="churn_bento",
            description="rebuilt after a promotion",
            metadata={
                "bento_tag": bento_tag,
                "model_tag": result.champion,
                "challenger_tag": "none",
                "serve": dg.MetadataValue.md(f"`bentoml serve {bento_tag}`"),
            },
        )
    yield dg.Output(result.champion)


@dg.job(
    description="Promote the challenger to champion (store labels, model_registry, Bento). "
    "Launched by challenger_promotion_sensor when realized results favour the challenger.",
    tags={"churn/trigger": "promotion"},
)
def promote_challenger_job():
    promote_challenger()


@dg.sensor(
    name="challenger_promotion_sensor",
    job=promote_challenger_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="A challenger_promotion check that recommends promotion (the challenger beats "
    "the champion beyond the bootstrap noise) launches promote_challenger_job, once per pair.",
)
def challenger_promotion_sensor(context: dg.SensorEvaluationContext):
    latest = new_check_evaluation(context, PROMOTION_CHECK)
    if isinstance(latest, dg.SkipReason):
        return latest
    request = promotion_request(evaluation_metadata(latest))
    return request or dg.SkipReason("no promotion recommended")


def promotion_request(metadata: dict) -> dg.RunRequest | None:
    """The run for a check evaluation's metadata, or None when it recommends nothing."""

    def value(name: str):
        entry = metadata.get(name)
        return getattr(entry, "value", entry)

    if not value("recommend_promotion"):
        return None
    challenger, champion = str(value("challenger_tag")), str(value("champion_tag"))
    evidence = value("evidence") or {}
    return dg.RunRequest(
        run_key=f"promote-{challenger}-over-{champion}",
        run_config={
            "ops": {
                "promote_challenger": {
                    "config": {
                        "challenger_tag": challenger,
                        "expected_champion_tag": champion,
                        "evidence": json.dumps(evidence),
                    }
                }
            }
        },
        tags={"churn/trigger": "promotion", "churn/challenger": challenger},
    )


def challenger_evaluation(
    con, champion, *, min_rows: int, min_gain: float, n_boot: int
) -> tuple[list, dg.AssetCheckResult]:
    """For ``model_performance``: every paired comparison, and the ``challenger_promotion``
    check for the store's current (champion, challenger) pair."""
    from churn import registry
    from churn.monitoring import challenger as paired
    from churn.registry import roles

    challenger_tag = roles.challenger_tag()
    challenger = registry.load_model(challenger_tag) if challenger_tag else None
    found = paired.comparisons(
        con, champion, challenger, min_rows=min_rows, min_gain=min_gain, n_boot=n_boot
    )
    verdict = paired.decide_promotion(
        found, champion.version, challenger.version if challenger else None
    )
    recommend = bool(verdict is not None and verdict.recommend_promotion)
    if challenger is None:
        description = "no challenger in the model store"
    elif verdict is None:
        description = f"no matured rows scored by both {champion.tag} and {challenger_tag} yet"
    else:
        description = verdict.reason
    check = dg.AssetCheckResult(
        check_name="challenger_promotion",
        passed=not recommend,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "recommend_promotion": recommend,
            "champion_tag": champion.tag,
            "challenger_tag": challenger_tag or "none",
            "evidence": dg.MetadataValue.json(verdict.to_dict() if verdict else {}),
        },
    )
    return found, check


PROMOTION_CHECK_SPEC = dg.AssetCheckSpec(
    "challenger_promotion",
    asset="model_performance",
    description="Fails (WARN) when the challenger beats the champion on the same matured "
    "customers beyond the noise (paired-bootstrap AUC interval above promotion_min_gain): the "
    "recommendation that challenger_promotion_sensor acts on.",
)
