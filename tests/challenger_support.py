"""Shared by the champion/challenger tests: a genuinely different challenger in the session's
model store (the candidate that lost to the champion), and its removal afterwards."""

from __future__ import annotations

import pandas as pd

from churn import registry
from churn.registry import roles
from tests.graph import GraphRun


def plant_challenger(materialized: GraphRun) -> tuple[str, str]:
    """Save the losing candidate as the challenger of the current champion; returns (champion
    tag, challenger tag). Same features and card as the champion, another estimator."""
    champion = registry.load_model()
    candidates = materialized.result.output_for_node("candidate_models")["models"]
    kind = next(name for name in candidates if name != champion.card["model_kind"])
    card = dict(champion.card) | {"model_kind": kind}
    card["lineage"] = dict(card.get("lineage", {})) | {"gate": "planted by the tests"}
    reference = pd.read_parquet(champion.reference_path)
    tag = registry.save_model(
        candidates[kind], card, reference, labels={"kind": kind, roles.ROLE_LABEL: "challenger"}
    )
    assert roles.challenger_tag() == tag and roles.champion_tag() == champion.tag
    return champion.tag, tag


def remove_challenger(champion: str, challenger: str) -> None:
    """Undo :func:`plant_challenger` (and any promotion of it): the store as it was."""
    import bentoml

    roles.set_role(champion, roles.CHAMPION)
    bentoml.models.delete(challenger)
    assert roles.champion_tag() == champion
