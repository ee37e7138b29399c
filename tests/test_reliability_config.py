"""Bad source configs fail at load with a :class:`SourceConfigError` naming the key, and a label
with one class fails at staging naming ``label.positive`` (issue 17, item 13)."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import duckdb
import pytest

from churn.ingest.flat import stage_flat
from churn.ingest.landing import land_flat
from churn.sources.config import SourceConfigError, load_source

FLAT = """\
shape: flat
table: c.csv
id_column: id
label: {column: y, positive: "1"}
"""
EVENTS = """\
shape: events
observation: {start: 2024-04-01, end: 2025-03-01}
tables:
  customers: c.csv
  payments: c.csv
  tickets: c.csv
  cancellations: c.csv
"""


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (FLAT + "columns: 5\n", "c.yaml: columns: must be a mapping"),
        (FLAT + "columns: {ignore: 5}\n", "c.yaml: columns.ignore: must be a list"),
        (FLAT + "evaluation: {cv_folds: abc}\n", "c.yaml: evaluation.cv_folds: must be a whole"),
        (FLAT + "evaluation: {seed: 1.5}\n", "c.yaml: evaluation.seed: must be a whole number"),
        (FLAT + "evaluation: 3\n", "c.yaml: evaluation: must be a mapping"),
        (FLAT + "as_of: 2025-13-45\n", "c.yaml: as_of: must be a date YYYY-MM-DD"),
        (
            FLAT + "evaluation: {test_share: 1.5}\n",
            "c.yaml: evaluation.test_share: must be a share",
        ),
        (FLAT + "evaluation: {test_share: 1}\n", "c.yaml: evaluation.test_share: must be a share"),
        (
            FLAT + "evaluation: {validation_share: -0.1}\n",
            "c.yaml: evaluation.validation_share: must be a share",
        ),
        (
            FLAT + "evaluation: {validation_share: abc}\n",
            "c.yaml: evaluation.validation_share: must be a share",
        ),
        (
            FLAT + "evaluation: {validation_share: 0.6, test_share: 0.5}\n",
            "validation_share + test_share must leave rows to train on",
        ),
        (FLAT.replace("column: y", "column: [y]"), "c.yaml: label.column: must be a column name"),
        (FLAT.replace('positive: "1"', "positive: {a: 1}"), "c.yaml: label.positive: must be"),
        (FLAT + "time_column: 7\n", "c.yaml: time_column: must be a column name"),
        (FLAT + "name: [a]\n", "c.yaml: name: must be text"),
        (
            FLAT + "time_column: t\nobservation: {start: 2024-13-01, end: 2025-01-01}\n",
            "c.yaml: observation.start: must be a date",
        ),
        (
            FLAT + "time_column: t\nobservation: {end: 2025-01-01}\n",
            "c.yaml: observation.start: required key is missing",
        ),
        (EVENTS + "  events: 5\n", "c.yaml: tables.events: must be a mapping"),
        (
            EVENTS + "  events: {path: c.csv, columns: 5}\n",
            "c.yaml: tables.events.columns: must be a mapping",
        ),
        (
            EVENTS + "  events: {path: c.csv, columns: {event_time: [a]}}\n",
            "c.yaml: tables.events.columns.event_time: must be a column name",
        ),
    ],
)
def test_a_bad_source_config_fails_at_load_naming_the_key(tmp_path, yaml_text, message):
    (tmp_path / "c.csv").write_text("id,y\n1,1\n")
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    with pytest.raises(SourceConfigError) as raised:
        load_source(config)
    assert message in str(raised.value)


def test_dates_still_parse_when_yaml_keeps_them_as_text(tmp_path):
    (tmp_path / "c.csv").write_text("id,y\n1,1\n")
    config = tmp_path / "c.yaml"
    config.write_text(FLAT + "as_of: 2025-06-01\n")
    assert load_source(config).flat.as_of == date(2025, 6, 1)


@pytest.mark.parametrize(
    ("labels", "positive", "message"),
    [
        (["no", "no", "stay", "no"], "yes", "none of its values is label.positive ('yes')"),
        (["yes", "Yes", "YES", "yes"], "yes", "every row is label.positive ('yes')"),
    ],
)
def test_a_label_with_one_class_fails_at_staging_naming_label_positive(
    tmp_path: Path, labels, positive, message
):
    rows = "\n".join(f"c{i},{label},{i % 3}" for i, label in enumerate(labels))
    table = tmp_path / "customers.csv"
    table.write_text(f"id,churn,tenure\n{rows}\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            shape: flat
            table: customers.csv
            id_column: id
            label: {{column: churn, positive: {positive}}}
            """
        )
    )
    source = load_source(config).flat
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        land_flat(con, table)
        with pytest.raises(SourceConfigError) as raised:
            stage_flat(con, source, date(2025, 6, 1))
        assert message in str(raised.value) and "churn" in str(raised.value)
        staged = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'stg_%'"
        ).fetchone()[0]
        assert staged == 0  # raised inside staging's transaction: nothing replaced
