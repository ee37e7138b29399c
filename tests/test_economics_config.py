"""The source config's ``economics:`` block: defaults that keep today's synthetic numbers, the
forms a value and a capacity may take, and errors that name the key.

Fast unit tests: YAML files in a temp dir, no warehouse, no Dagster run.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import jsonschema
import pytest

from churn.modeling.training import Economics
from churn.sources.config import EconomicsConfig, SourceConfigError, json_schema, load_source

FLAT = """\
shape: flat
table: customers.csv
id_column: id
label: {column: churned, positive: "yes"}
"""
EVENT_LOG = """\
shape: events
observation: {start: 2024-04-01, end: 2025-03-01}
churn: {inactive_days: 90}
tables:
  events: {path: events.csv, measures: [amount]}
"""


def _load(folder: Path, text: str):
    (folder / "customers.csv").write_text("id,churned,monthly\nc1,yes,20\n")
    (folder / "events.csv").write_text("customer_id,event_time,amount\nc1,2024-05-01,3\n")
    config = folder / "source.yaml"
    config.write_text(textwrap.dedent(text))
    return load_source(config)


def _problems(folder: Path, text: str) -> list[str]:
    with pytest.raises(SourceConfigError) as raised:
        _load(folder, text)
    return str(raised.value).splitlines()


def test_without_a_block_the_synthetic_numbers_hold(tmp_path):
    economics = _load(tmp_path, FLAT).economics
    assert economics == EconomicsConfig()
    default = Economics()
    assert (economics.intervention_cost, economics.success_rate, economics.retained_value) == (
        default.intervention_cost,
        default.success_rate,
        default.retained_value,
    )
    assert economics.holdout_share == 0.1
    assert economics.capacity_count is None and economics.capacity_share is None


@pytest.mark.parametrize(
    ("capacity", "count", "share"),
    [("500", 500, None), ('"10%"', None, 0.1), ("0.1", None, 0.1), ("1.0", None, 1.0)],
)
def test_capacity_is_a_count_or_a_share(tmp_path, capacity, count, share):
    economics = _load(tmp_path, FLAT + f"economics: {{capacity: {capacity}}}\n").economics
    assert (economics.capacity_count, economics.capacity_share) == (count, share)


def test_the_value_comes_from_a_measure_with_a_fallback(tmp_path):
    text = EVENT_LOG + (
        "economics:\n  intervention_cost: 5\n  success_rate: 0.2\n  holdout_share: 0\n"
        "  retained_value: {measure: amount, months: 6, default: 100}\n"
    )
    economics = _load(tmp_path, text).economics
    assert economics == EconomicsConfig(
        intervention_cost=5,
        success_rate=0.2,
        retained_value=100,
        retained_value_measure="amount",
        retained_value_months=6,
        holdout_share=0,
    )


def test_a_flat_table_takes_its_value_from_a_column(tmp_path):
    text = FLAT + "economics: {retained_value: {measure: monthly, months: 12}}\n"
    economics = _load(tmp_path, text).economics
    assert (economics.retained_value_measure, economics.retained_value_months) == ("monthly", 12)
    assert economics.retained_value == 240


@pytest.mark.parametrize(
    ("base", "block", "line"),
    [
        (FLAT, "{intervention_cost: -1}", "economics.intervention_cost: must be a number >= 0"),
        (FLAT, '{intervention_cost: "10"}', "economics.intervention_cost: must be a number >= 0"),
        (FLAT, "{success_rate: 0}", "economics.success_rate: must be a share in (0, 1]"),
        (FLAT, "{success_rate: 1.5}", "economics.success_rate: must be a share in (0, 1]"),
        (FLAT, "{holdout_share: 1}", "economics.holdout_share: must be a share with 0 <= share"),
        (FLAT, "{holdout_share: -0.1}", "economics.holdout_share: must be a share with 0"),
        (FLAT, "{capacity: -5}", "economics.capacity: must be a count >= 0"),
        (FLAT, "{capacity: 1.5}", "economics.capacity: a share must be in (0, 1]"),
        (FLAT, '{capacity: "120%"}', "economics.capacity: a share must be in (0, 1]"),
        (FLAT, "{capacity: lots}", "economics.capacity: must be a count (500) or a share"),
        (FLAT, "{retained_value: 0}", "economics.retained_value: must be a number > 0"),
        (FLAT, "{retained_value: {months: 12}}", "economics.retained_value.measure: required"),
        (
            FLAT,
            "{retained_value: {measure: monthly, months: 0}}",
            "economics.retained_value.months: must be a number > 0",
        ),
        (
            FLAT,
            "{retained_value: {measure: monthly, month: 12}}",
            "economics.retained_value: unknown key(s) month",
        ),
        (FLAT, "{budget: 5}", "economics: unknown key(s) budget"),
        (
            FLAT,
            "{retained_value: {measure: churned}}",
            "economics.retained_value.measure: 'churned' is the id, the label",
        ),
        (
            EVENT_LOG,
            "{retained_value: {measure: price}}",
            "economics.retained_value.measure: 'price' is not a measure of tables.events "
            "(allowed: amount)",
        ),
    ],
)
def test_a_bad_value_names_its_key(tmp_path, base, block, line):
    problems = _problems(tmp_path, base + f"economics: {block}\n")
    assert any(problem.startswith(f"source.yaml: {line}") for problem in problems), problems


def test_the_schema_knows_the_block():
    schema = json_schema()
    document = {
        "shape": "flat",
        "table": "customers.csv",
        "id_column": "id",
        "label": {"column": "churned", "positive": "yes"},
        "economics": {
            "intervention_cost": 5,
            "retained_value": {"measure": "monthly", "months": 12},
            "capacity": "10%",
            "holdout_share": 0.1,
        },
    }
    jsonschema.validate(document, schema)
    document["economics"]["holdout_share"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)
