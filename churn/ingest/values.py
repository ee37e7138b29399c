"""How a value as it arrived becomes a typed value: one rule for validation, landing and staging.

Validating an ``incoming/`` file, appending it to a typed raw table and staging a raw table used
to apply three slightly different rules, so a value could pass one and fail the next (a
whitespace-only number passed validation, then broke the append with ``Could not convert string
'   ' to DOUBLE``). Every one of them now builds its SQL from these functions:

* text: trimmed, and blank means missing (NULL);
* a timestamp with an offset (``2025-11-30 22:00:00-05:00``) or a ``TIMESTAMPTZ`` column is
  converted to UTC and stored naive, the warehouse's convention (naive = UTC); DuckDB's own
  ``CAST(... AS TIMESTAMP)`` would silently drop the offset, moving the event by hours and
  possibly across an observation date;
* anything else is ``TRY_CAST``: a value that does not parse is NULL, which validation counts
  and staging rejects with a reason.
"""

from __future__ import annotations

OFFSET_PATTERN = r"[0-9]:[0-9]{2}(:[0-9]{2}(\.[0-9]*)?)? ?([zZ]|[+-][0-9]{2}(:?[0-9]{2})?)$"
"""A time of day followed by a UTC offset or ``Z``: the text names its own time zone."""

_ZONED_TYPES = ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ")


def is_timestamp(sql_type: str) -> bool:
    """TIMESTAMP, TIMESTAMP_NS, TIMESTAMP_MS, ... (naive); not the zoned type."""
    upper = sql_type.upper()
    return upper.startswith("TIMESTAMP") and upper not in _ZONED_TYPES


def is_zoned(sql_type: str) -> bool:
    return sql_type.upper() in _ZONED_TYPES


def text_value(expression: str) -> str:
    """The value as trimmed text; blank (or whitespace only) is missing."""
    return f"nullif(trim(CAST({expression} AS VARCHAR)), '')"


def typed_value(text: str, sql_type: str) -> str:
    """``text`` (an expression from :func:`text_value`) as ``sql_type``; NULL when it does not
    parse. Timestamps with an offset are converted to UTC, then stored naive."""
    if is_timestamp(sql_type):
        return (
            f"CASE WHEN regexp_matches({text}, '{OFFSET_PATTERN}') "
            f"THEN CAST(timezone('UTC', TRY_CAST({text} AS TIMESTAMPTZ)) AS {sql_type}) "
            f"ELSE TRY_CAST({text} AS {sql_type}) END"
        )
    return f"TRY_CAST({text} AS {sql_type})"


def converted(expression: str, arrived_type: str, sql_type: str) -> str:
    """A column that arrived as ``arrived_type`` as ``sql_type``: unchanged when the types
    match, a zoned timestamp shifted to UTC, anything else through the text rule."""
    if arrived_type.upper() == sql_type.upper():
        return expression
    if is_zoned(arrived_type) and is_timestamp(sql_type):
        return f"CAST(timezone('UTC', {expression}) AS {sql_type})"
    return typed_value(text_value(expression), sql_type)


def unparsable(expression: str, sql_type: str) -> str:
    """TRUE for a value that is present but not a ``sql_type``: the row cannot be typed."""
    text = text_value(expression)
    return f"({text} IS NOT NULL AND {typed_value(text, sql_type)} IS NULL)"
