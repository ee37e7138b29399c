"""[staging] Typed, deduplicated, validated tables, with every rejected row and its reason.

One factory builds the staging asset of each raw table from :mod:`churn.ingest.schema`. The asset
checks read what staging found in the raw rows: a rule broken by a few rows warns (the rows sit
in the rejects table with their reason); a reject share above the limit is an error that blocks
everything downstream, because it means the source itself is broken.
"""

from datetime import date

import dagster as dg

from churn.features.events import features, vocabulary_rows
from churn.ingest.flat import InferredColumn
from churn.ingest.landing import SourceFileError
from churn.ingest.schema import CUSTOMERS, EVENTS, RAW_TABLES, Table
from churn.ingest.staging import StagingResult, raw_name, rejects_name, staged_name
from churn.settings import load_settings, today
from churn.sources.base import CalendarError, Source
from churn.sources.config import SourceConfigError
from churn.sources.registry import landed
from churn_assets.defs.raw.assets import column_descriptions
from churn_assets.metadata import markdown_table, table_metadata
from churn_assets.partitions import SINGLE_RUN, sync_calendar
from churn_assets.resources import WAREHOUSE_POOL, EngineResource, WarehouseResource

RULE_CHECKS: dict[str, tuple[str, ...]] = {
    "required_fields_present": ("missing_required",),
    "types_valid": ("invalid_type",),
    "values_in_range": ("out_of_range",),
    "categories_allowed": ("not_allowed",),
}
REFERENCE_CHECK = "customers_known"
KEY_CHECK = "keys_unique"
SHARE_CHECK = "reject_share_below_limit"

REJECT_DESCRIPTIONS = {
    "reject_reason": "Every rule the row broke, e.g. 'out_of_range: age=7 is below 16'.",
    "reject_rules": "Names of the broken rules (what the asset checks count).",
}


class StagingConfig(dg.Config):
    max_reject_share: float = 0.05
    """Above this share of rejected rows the source is considered broken and downstream waits."""


def _check_names(table: Table) -> list[str]:
    names = [KEY_CHECK, *RULE_CHECKS]
    if table.references_customers:
        names.append(REFERENCE_CHECK)
    return [*names, SHARE_CHECK]


def _check_specs(table: Table) -> list[dg.AssetCheckSpec]:
    descriptions = {
        KEY_CHECK: f"Each {', '.join(table.key)} appears once; conflicting versions are reported.",
        "required_fields_present": "Raw rows missing a required field (rejected with reason).",
        "types_valid": "Raw values that cannot be cast to their type (rejected with reason).",
        "values_in_range": "Raw numbers outside their allowed range (rejected with reason).",
        "categories_allowed": "Raw categories outside the allowed set (rejected with reason).",
        REFERENCE_CHECK: "Rows whose customer_id is not a staged customer (rejected).",
        SHARE_CHECK: "Rejected share of raw rows stays below the configured limit.",
    }
    return [
        dg.AssetCheckSpec(
            name=name,
            asset=staged_name(table),
            description=descriptions[name],
            blocking=name == SHARE_CHECK,
        )
        for name in _check_names(table)
    ]


def _rule_check(table: Table, name: str, rules: tuple[str, ...], result: StagingResult):
    broken = sum(result.rejects_by_rule[rule] for rule in rules)
    return dg.AssetCheckResult(
        asset_key=staged_name(table),
        check_name=name,
        passed=broken == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if broken == 0 else f"{broken} rows rejected, see {rejects_name(table)}",
        metadata={"rejected_rows": broken},
    )


def _check_results(
    table: Table, result: StagingResult, duplicate_keys_left: int, max_share: float
) -> list[dg.AssetCheckResult]:
    results = [
        dg.AssetCheckResult(
            asset_key=staged_name(table),
            check_name=KEY_CHECK,
            passed=duplicate_keys_left == 0 and result.conflicting_keys == 0,
            severity=dg.AssetCheckSeverity.ERROR
            if duplicate_keys_left
            else dg.AssetCheckSeverity.WARN,
            metadata={
                "duplicate_keys_in_staged_table": duplicate_keys_left,
                "keys_with_conflicting_versions": result.conflicting_keys,
                "exact_duplicates_dropped": result.duplicates_dropped,
            },
        )
    ]
    results += [_rule_check(table, name, rules, result) for name, rules in RULE_CHECKS.items()]
    if table.references_customers:
        results.append(_rule_check(table, REFERENCE_CHECK, ("unknown_customer",), result))
    results.append(
        dg.AssetCheckResult(
            asset_key=staged_name(table),
            check_name=SHARE_CHECK,
            passed=result.reject_share <= max_share,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(f"{result.reject_share:.1%} of raw rows rejected (limit {max_share:.1%})"),
            metadata={"reject_share": result.reject_share, "limit": max_share},
        )
    )
    return results


def _reject_summary(con, table: Table) -> str:
    rows = con.execute(
        f"SELECT reject_reason, count(*) AS rows FROM {rejects_name(table)} "
        "GROUP BY ALL ORDER BY rows DESC, reject_reason LIMIT 10"
    ).fetchall()
    return markdown_table(["reason", "rows"], rows) if rows else "No rejected rows."


def _flat_metadata(inferred: list[InferredColumn]) -> dict:
    """What type inference decided, for the UI: kept features and dropped columns."""
    kept = [c for c in inferred if c.role == "feature"]
    dropped = [c for c in inferred if c.role in ("constant", "identifier", "ignored")]
    rows = [
        (c.source, c.role, c.name if c.role == "feature" else "", c.kind or "", c.reason)
        for c in inferred
    ]
    return {
        "inferred_features": dg.MetadataValue.json([c.name for c in kept]),
        "dropped_columns": dg.MetadataValue.json({c.source: c.role for c in dropped}),
        "text_number_columns": dg.MetadataValue.json([c.source for c in kept if c.text_numbers]),
        "column_inference": dg.MetadataValue.md(
            markdown_table(["column", "role", "feature", "kind", "why"], rows)
        ),
    }


def _sync_calendar(context: dg.AssetExecutionContext, con, source: Source) -> tuple[date, dict]:
    """Write the source's observation calendar (from what just landed, and today) into the
    instance's partitions: a new month of data is a new partition, with no restart."""
    try:
        first, last = source.calendar(con, load_settings(), today())
    except CalendarError as error:
        raise dg.Failure(description=str(error)) from error
    change = sync_calendar(context.instance, first, last)
    context.log.info(f"observation calendar {first} .. {last}: {change.describe()}")
    return last, {
        "observation_calendar": f"{first} .. {last}",
        "calendar_change": change.describe(),
    }


def _decide_event_features(con, source: Source, last: date) -> dict:
    """Fix the generated feature family (vocabulary, measures, profile, churn definition) from
    the staged events: every later step, and the model card, reads this decision."""
    settings = load_settings()
    spec = source.decide_features(
        con, last_observation_date=last, horizon_days=settings.horizon_days
    )
    if spec is None:
        return {"generated_features": 0}
    return {
        "event_vocabulary_rule": f"the {source.top_event_types} most frequent event types before "
        f"{last} (the last observation date), by count alone: no label is read"
        + (", the cancellation event excluded" if spec.churn.cancellation_event else ""),
        "event_vocabulary": dg.MetadataValue.md(
            markdown_table(["event_type", "code", "feature_slug"], vocabulary_rows(spec))
            if spec.event_types
            else "No event types (the log has no event_type column)."
        ),
        "churn_definition": dg.MetadataValue.json(spec.churn.to_dict()),
        "generated_features": len(features(spec)),
    }


def _absent(context: dg.AssetExecutionContext, source: Source, table: Table):
    """A table the source does not have: no table is created (an empty stand-in would claim
    the source has one), yet both assets report a materialization saying why, because the
    downstream steps depend on them in the same run and Dagster skips a step whose upstream
    output was not yielded. Its checks yield no result (optional outputs of a subsettable
    multi-asset): there is no row to evaluate, and a pass on zero rows could never fail.
    Dagster logs them as not executed, and downstream proceeds without gating on them."""
    reason = source.absence_reason(table)
    context.log.info(f"{staged_name(table)}: no table, {reason}; its checks are not evaluated")
    metadata = {"table": "none", "note": reason, "source_shape": source.kind}
    yield dg.MaterializeResult(asset_key=staged_name(table), metadata=metadata)
    yield dg.MaterializeResult(asset_key=rejects_name(table), metadata=metadata)


def build_staging_asset(table: Table) -> dg.AssetsDefinition:
    deps = [raw_name(table)] + ([staged_name(CUSTOMERS)] if table.references_customers else [])

    @dg.multi_asset(
        name=f"stage_{table.name}",
        specs=[
            dg.AssetSpec(
                staged_name(table),
                group_name="staging",
                description=f"{table.description} Typed, validated and deduplicated on "
                f"{', '.join(table.key)}.",
                deps=deps,
                kinds={"duckdb"},
                owners=["team:data-engineering"],
            ),
            dg.AssetSpec(
                rejects_name(table),
                group_name="staging",
                description=f"Rows of {raw_name(table)} that broke a rule, as they arrived, "
                "with every reason.",
                deps=deps,
                kinds={"duckdb"},
                owners=["team:data-engineering"],
            ),
        ],
        check_specs=_check_specs(table),
        # Subsettable so that its checks are optional outputs: a table the source lacks has no
        # rows to check, and a check must not report a pass it could never fail. The body
        # yields only what was selected.
        can_subset=True,
        pool=WAREHOUSE_POOL,
        backfill_policy=SINGLE_RUN,
    )
    def _stage(
        context: dg.AssetExecutionContext,
        config: StagingConfig,
        warehouse: WarehouseResource,
        engine: EngineResource,
    ):
        compute = engine.engine()
        with warehouse.connect(context) as con:
            source = landed(con)
            if not source.has_table(table):
                source.forget_staged(con, table)
                yield from _selected(context, _absent(context, source, table))
                return
            try:
                staged = source.stage(con, table, compute)
            except SourceFileError as error:
                raise dg.Failure(description=str(error)) from error
            except SourceConfigError as error:
                name = source.config.config_path.name if source.config else source.name
                raise dg.Failure(description=f"{name}: {error}") from error
            result, key = staged.result, staged.key
            extra: dict = {"source_shape": source.kind, "engine": compute.name}
            if staged.inferred is not None:
                extra |= _flat_metadata(staged.inferred)
            if staged.time_formats:
                extra["time_format"] = dg.MetadataValue.json(staged.time_formats)
            extra |= {
                key: dg.MetadataValue.json(v) if isinstance(v, list | dict) else v
                for key, v in staged.metadata.items()
            }
            if table is source.calendar_table:
                last, calendar = _sync_calendar(context, con, source)
                extra |= calendar
                if table is EVENTS:
                    extra |= _decide_event_features(con, source, last)
            duplicate_keys_left = con.execute(
                f"SELECT count(*) - count(DISTINCT ({key})) FROM {staged_name(table)}"
            ).fetchone()[0]
            context.log.info(
                f"{staged_name(table)}: {result.staged_rows:,} staged, "
                f"{result.rejected_rows:,} rejected, {result.duplicates_dropped:,} duplicates"
            )
            yield from _selected(
                context, _materializations(con, table, result, extra, compute.name)
            )
        yield from _selected(
            context, _check_results(table, result, duplicate_keys_left, config.max_reject_share)
        )

    return _stage


def _selected(context: dg.AssetExecutionContext, results):
    """The results of the assets and checks this run selected (the multi-asset subsets)."""
    for result in results:
        if isinstance(result, dg.AssetCheckResult):
            key = dg.AssetCheckKey(result.asset_key, result.check_name)
            if key in context.selected_asset_check_keys:
                yield result
        elif result.asset_key in context.selected_asset_keys:
            yield result


def _materializations(con, table: Table, result: StagingResult, extra: dict, engine: str):
    descriptions = column_descriptions(table.name)
    yield dg.MaterializeResult(
        asset_key=staged_name(table),
        metadata=table_metadata(con, staged_name(table), descriptions)
        | {
            "raw_rows": result.raw_rows,
            "rejected_rows": result.rejected_rows,
            "duplicates_dropped": result.duplicates_dropped,
        }
        | extra,
    )
    yield dg.MaterializeResult(
        asset_key=rejects_name(table),
        metadata=table_metadata(con, rejects_name(table), descriptions | REJECT_DESCRIPTIONS)
        | {"reasons": dg.MetadataValue.md(_reject_summary(con, table)), "engine": engine},
    )


staging_assets = [build_staging_asset(table) for table in RAW_TABLES]
