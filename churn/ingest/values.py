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
  and staging rejects with a reason;
* a JSON column DuckDB could not type (one number among strings) is read as the text of each
  value, without JSON's quotes: ``"C15"`` is ``C15``, ``15`` is ``15``.

The bounds every source and the service share live here too: times in
:data:`EARLIEST_TIME`..:data:`LATEST_TIME`, numbers finite and within :data:`MEASURE_BOUND`,
free text (an event type) at most :data:`MAX_TEXT_LENGTH` characters.
"""

from __future__ import annotations

OFFSET_PATTERN = r"[0-9]:[0-9]{2}(:[0-9]{2}(\.[0-9]*)?)? ?([zZ]|[+-][0-9]{2}(:?[0-9]{2})?)$"
"""A time of day followed by a UTC offset or ``Z``: the text names its own time zone."""

_ZONED_TYPES = ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ")

EARLIEST_TIME = "1900-01-01"
"""The first day a staged time may fall on (as the service's ``EARLIEST``)."""
LATEST_TIME = "2199-12-31"
"""The last day a staged time may fall on: a row dated 2205 would move the data's end and give
unmatured months labels; no real history is near either end."""
AFTER_LATEST = "2200-01-01"
MEASURE_BOUND = 1e15
"""The largest magnitude a number may have. ``inf``, ``1e400`` and ``NaN`` parse as DOUBLE but
break the integer casts of the feature SQL (``ConversionException ... INT64``), and so does a
sum of values near 9.2e18; 1e15 leaves room for sums over 1,000 rows of any real amount."""
MAX_TEXT_LENGTH = 256
"""The longest event type (or id) the service accepts; staging holds the same cap, so no type
becomes a feature that the service could not be sent."""


def is_timestamp(sql_type: str) -> bool:
    """TIMESTAMP, TIMESTAMP_NS, TIMESTAMP_MS, ... (naive); not the zoned type."""
    upper = sql_type.upper()
    return upper.startswith("TIMESTAMP") and upper not in _ZONED_TYPES


def is_zoned(sql_type: str) -> bool:
    return sql_type.upper() in _ZONED_TYPES


def json_text(expression: str) -> str:
    """A ``JSON`` value as the text it holds: strings without their quotes, numbers as
    written (``CAST(json AS VARCHAR)`` keeps the quotes, so ``"C15"`` never joined ``C15``)."""
    return f"json_extract_string({expression}, '$')"


def is_json(sql_type: str) -> bool:
    return sql_type.upper() == "JSON"


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


def in_calendar(expression: str, sql_type: str) -> str:
    """TRUE for a time (or date) inside :data:`EARLIEST_TIME`..:data:`LATEST_TIME`."""
    if sql_type.upper() == "DATE":
        return (
            f"({expression} >= CAST('{EARLIEST_TIME}' AS DATE) "
            f"AND {expression} <= CAST('{LATEST_TIME}' AS DATE))"
        )
    return (
        f"({expression} >= CAST('{EARLIEST_TIME}' AS TIMESTAMP) "
        f"AND {expression} < CAST('{AFTER_LATEST}' AS TIMESTAMP))"
    )


def is_sane_number(expression: str) -> str:
    """TRUE for a finite number within :data:`MEASURE_BOUND` (NaN compares above everything,
    so ``abs(NaN) <= bound`` is false in DuckDB and Spark alike)."""
    return f"(abs({expression}) <= {MEASURE_BOUND!r})"


def unparsable(expression: str, sql_type: str) -> str:
    """TRUE for a value that is present but not a ``sql_type``: the row cannot be typed."""
    text = text_value(expression)
    return f"({text} IS NOT NULL AND {typed_value(text, sql_type)} IS NULL)"
