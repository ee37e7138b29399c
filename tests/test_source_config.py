"""The source config (``churn.sources.config``): errors that name the file and the key, the
defaults a short YAML gets, and the published JSON Schema kept current.

Fast unit tests: YAML files in a temp dir, no warehouse, no Dagster run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import jsonschema
import pydantic
import pytest

from churn.sources.config import (
    DEFAULT_TOP_EVENT_TYPES,
    SourceConfig,
    SourceConfigError,
    json_schema,
    load_source,
    read_yaml,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMA_FILE = REPO / "docs" / "source.schema.json"
EXAMPLE_CONFIGS = sorted((REPO / "examples").glob("*/source.yaml"))

FLAT = """\
shape: flat
table: customers.csv
id_column: id
label: {column: churned, positive: "yes"}
"""
EVENT_LOG = """\
shape: events
observation: {start: 2024-04-15, end: 2025-03-01}
churn: {inactive_days: 90}
tables:
  events: events.csv
"""


def _load(folder: Path, text: str) -> SourceConfig:
    (folder / "customers.csv").write_text("id,churned\nc1,yes\n")
    (folder / "events.csv").write_text("customer_id,event_time\nc1,2024-05-01\n")
    config = folder / "source.yaml"
    config.write_text(textwrap.dedent(text))
    return load_source(config)


def _problems(folder: Path, text: str) -> list[str]:
    with pytest.raises(SourceConfigError) as raised:
        _load(folder, text)
    return str(raised.value).splitlines()


# --- errors name the file and the dotted key --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            FLAT + "evaluaton: {cv_folds: 5}\n",
            "source.yaml: unknown key(s) evaluaton (allowed: as_of, columns, economics, evaluation, "
            "id_column, label, model, name, observation, shape, table, time_column)",
        ),
        (
            EVENT_LOG.replace(
                "events: events.csv", "events: {path: events.csv, columns: {customer: cust}}"
            ),
            "source.yaml: tables.events.columns: unknown key(s) customer (allowed: customer_id, "
            "event_id, event_time, event_type, session_id)",
        ),
        (
            EVENT_LOG.replace(
                "events: events.csv", "events: {path: events.csv, columns: {customer_id: [cust]}}"
            ),
            "source.yaml: tables.events.columns.customer_id: must be a column name (text), "
            "got ['cust']",
        ),
        (
            FLAT + "as_of: 2025-02-30\n",
            "source.yaml: as_of: must be a date YYYY-MM-DD, got '2025-02-30'",
        ),
        (
            EVENT_LOG.replace("end: 2025-03-01", "end: March"),
            "source.yaml: observation.end: must be a date YYYY-MM-DD, got 'March'",
        ),
        (
            FLAT + "evaluation: {test_share: 0}\n",
            "source.yaml: evaluation.test_share: must be a share between 0 and 1 (exclusive), "
            "got 0.0",
        ),
        (
            FLAT + "evaluation: {cv_folds: 1}\n",
            "source.yaml: evaluation.cv_folds: must be 0 (off) or at least 2, got 1",
        ),
        (
            FLAT + "time_column: snapshot\n",
            "source.yaml: observation: a flat table with time_column needs observation: "
            "{start, end} (the monthly calendar its rows fall into)",
        ),
        (
            EVENT_LOG.replace("churn: {inactive_days: 90}\n", ""),
            "source.yaml: churn: without a cancellations table, say what churn is: "
            "inactive_days: N and/or cancellation_event: <event type>",
        ),
        ("shape: wide\n", "source.yaml: shape: must be 'flat' or 'events', got 'wide'"),
    ],
)
def test_a_problem_is_one_line_naming_the_file_and_the_key(tmp_path, text, line):
    assert _problems(tmp_path, text) == [line]


def test_a_missing_data_file_names_its_key_and_the_resolved_path(tmp_path):
    text = EVENT_LOG.replace("events: events.csv", "events: {path: clicks.csv}")
    assert _problems(tmp_path, text) == [
        f"source.yaml: tables.events.path: file {tmp_path / 'clicks.csv'} does not exist"
    ]


def test_every_problem_is_reported_at_once(tmp_path):
    text = """\
        shape: events
        observation: {start: 2024-04-01}
        features: {top_event_types: -1}
        tables:
          events: {path: events.txt, measures: amount}
          customers: 5
        """
    assert _problems(tmp_path, text) == [
        "source.yaml: tables.events.path: events.txt is not a .csv or .parquet or .jsonl or "
        ".json file",
        "source.yaml: tables.events.measures: must be a list of column names, got 'amount'",
        "source.yaml: tables.customers: must be a mapping, got 5",
        "source.yaml: features.top_event_types: must be a whole number >= 0, got -1",
    ]


def test_five_tables_are_chosen_by_payments_or_tickets_and_then_all_are_required(tmp_path):
    text = EVENT_LOG + "  payments: events.csv\n"
    assert _problems(tmp_path, text) == [
        f"source.yaml: tables.{name}: required key is missing"
        for name in ("customers", "tickets", "cancellations")
    ]


def test_a_missing_config_file_names_the_variable(tmp_path):
    with pytest.raises(SourceConfigError, match=r"CHURN_SOURCE=.*nowhere\.yaml: no such file"):
        load_source(tmp_path / "nowhere.yaml")


def test_yaml_that_does_not_parse_names_the_file(tmp_path):
    (tmp_path / "source.yaml").write_text("shape: [flat\n")
    with pytest.raises(SourceConfigError, match=r"^source\.yaml: not valid YAML"):
        load_source(tmp_path / "source.yaml")


def test_yaml_tags_that_build_objects_are_refused(tmp_path):
    (tmp_path / "source.yaml").write_text("shape: !!python/object/apply:os.system [echo]\n")
    with pytest.raises(SourceConfigError, match="not valid YAML"):
        load_source(tmp_path / "source.yaml")


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    """A 'billion laughs' file: nine levels of nine aliases would be 9**9 strings in memory."""
    levels = ["a0: &a0 [lol]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)
    ]
    bomb = tmp_path / "source.yaml"
    bomb.write_text("\n".join(levels) + "\nshape: flat\n")
    assert bomb.stat().st_size < 1000
    with pytest.raises(SourceConfigError, match=r"aliases \(\*name\) are not allowed"):
        load_source(bomb)


def test_a_huge_config_file_is_refused_by_size(tmp_path):
    (tmp_path / "source.yaml").write_text("shape: flat\n" + "# padding\n" * 200_000)
    with pytest.raises(SourceConfigError, match=r"^source\.yaml: .* bytes; a source config"):
        load_source(tmp_path / "source.yaml")


# --- defaults and the meaning of a short YAML ---------------------------------------------------


def test_a_flat_config_gets_the_documented_defaults(tmp_path):
    config = _load(tmp_path, FLAT)
    flat = config.flat
    assert config.shape == "flat" and config.name == tmp_path.name and config.observation is None
    assert flat.path == (tmp_path / "customers.csv").resolve()
    assert (flat.id_column, flat.label_column, flat.positive) == ("id", "churned", ("yes",))
    assert (flat.time_column, flat.as_of) == (None, None)
    assert (flat.categorical, flat.numeric, flat.ignore) == ((), (), ())
    assert (flat.cv_folds, flat.validation_share, flat.test_share, flat.seed) == (
        0,
        0.15,
        0.15,
        42,
    )


def test_positive_values_are_text_and_yes_no_stay_words(tmp_path):
    flat = _load(tmp_path, FLAT.replace('positive: "yes"', "positive: [yes, 1, true]")).flat
    assert flat.positive == ("yes", "1", "true")


def test_an_event_log_gets_defaults_and_a_month_start_calendar(tmp_path):
    config = _load(tmp_path, EVENT_LOG)
    assert config.shape == "events" and config.is_event_log and not config.has_cancellations
    assert (config.observation.start, config.observation.end) == (
        date(2024, 4, 1),
        date(2025, 3, 1),
    )
    assert config.top_event_types == DEFAULT_TOP_EVENT_TYPES
    assert config.churn.inactive_days == 90 and config.churn.cancellation_event is None
    events = config.tables["events"]
    assert events.path == (tmp_path / "events.csv").resolve()
    assert events.file_column("event_time") == "event_time" and events.measures == ()


def test_the_config_is_frozen(tmp_path):
    config = _load(tmp_path, FLAT)
    with pytest.raises(pydantic.ValidationError):
        config.name = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        config.flat.seed = 7  # type: ignore[misc]


# --- the published JSON Schema ------------------------------------------------------------------


def test_the_checked_in_schema_is_what_the_command_writes_now():
    written = subprocess.run(
        [sys.executable, "-m", "churn.sources.config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(written) == json_schema()
    assert SCHEMA_FILE.read_text(encoding="utf-8") == written, (
        "docs/source.schema.json is stale: run `make schema`"
    )


@pytest.mark.parametrize("config", EXAMPLE_CONFIGS, ids=lambda path: path.parent.name)
def test_the_schema_accepts_every_example_config(config):
    jsonschema.validate(read_yaml(config), json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def test_the_examples_are_all_there_and_the_flat_one_loads():
    assert {path.parent.name for path in EXAMPLE_CONFIGS} >= {
        "flat",
        "events",
        "purchases",
        "streaming",
    }
    assert load_source(REPO / "examples" / "flat" / "source.yaml").flat.cv_folds == 5


def test_the_schema_rejects_what_the_loader_rejects():
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    flat = {"shape": "flat", "table": "c.csv", "id_column": "id"}
    flat |= {"label": {"column": "churned", "positive": "yes"}}
    jsonschema.validate(flat, schema)
    for broken in (
        flat | {"evaluaton": {}},
        flat | {"evaluation": {"test_share": 1.5}},
        flat | {"label": {"column": "churned"}},
        {k: v for k, v in flat.items() if k != "id_column"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
