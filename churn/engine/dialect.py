"""DuckDB SQL to Spark SQL: SQLGlot's transpiler plus the few rewrites that keep DuckDB's values.

The feature, snapshot and label SQL is written once, in DuckDB's dialect, in a portable subset
(no ASOF JOIN, QUALIFY, lambdas or ``date - date``; see ``docs/scaling.md``). SQLGlot turns it
into Spark SQL; where SQLGlot's output would run but *mean* something else on Spark, the AST is
rewritten here first, so there is still one definition and no hand-written Spark copy:

* ``date_diff('year' | 'month', a, b)`` counts calendar boundaries crossed in DuckDB; Spark's
  ``datediff(YEAR, a, b)`` counts whole years elapsed. Rewritten to ``year(b) - year(a)`` (and
  ``12 * years + month(b) - month(a)``), which is DuckDB's definition.
* ``d + to_years(n)`` / ``d + to_months(n)`` (DuckDB intervals from a number) become
  ``add_months(d, 12 * n)`` / ``add_months(d, n)``: both engines clamp to the month's last day.
* Decimal literals (``1000.0``) are DECIMAL on both engines, but DuckDB divides decimals as
  DOUBLE while Spark divides them as DECIMAL, rounding to its result scale. Every such literal in
  the subscription SQL meets a division or a DOUBLE, so on Spark it is cast to DOUBLE: the same
  IEEE operations in the same order, hence the same bits. A long decimal literal *multiplied*
  by an integer before a division would be exact in DuckDB and rounded on Spark, so the SQL
  has none: the generated trend ratios are integer arithmetic above a single division.
* Time zones: ``timezone('UTC', instant)`` (an instant as naive UTC wall time) becomes a cast
  to ``TIMESTAMP_NTZ`` and ``make_timestamp(micros)`` (naive in DuckDB, an instant in Spark) is
  cast to it too; both read the session zone, which the engine sets to UTC.
* ``list_distinct`` drops NULLs in DuckDB; Spark's ``array_distinct`` keeps one, so it
  becomes ``array_distinct(array_compact(...))``.
* CTEs of subqueries get unique names: SQLGlot lifts them to the top for Spark, where two
  subqueries' CTEs of the same name would clash.
* ``?`` placeholders become named ``:p1, :p2, ...``: SQLGlot may repeat an expression that holds
  a parameter (it expands DuckDB's ``generate_series`` bounds), which breaks positional binding.

What is *not* rewritten, because the portable SQL avoids it: ``CAST(double AS INTEGER)`` (DuckDB
rounds half to even, Spark truncates; the SQL only casts values already rounded). ``GROUP BY
ALL`` and ``count(*) FILTER (WHERE ...)`` need nothing: Spark 3.4+ runs both as DuckDB does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlglot
from sqlglot import exp

READ = "duckdb"
WRITE = "spark"


def _calendar_diff(node: exp.DateDiff) -> exp.Expression | None:
    """DuckDB's boundary-counting year/month ``date_diff`` as year/month arithmetic."""
    unit = node.unit.name.upper() if node.unit is not None else "DAY"
    if unit not in ("YEAR", "MONTH"):
        return None
    end, start = node.this, node.expression
    years = exp.Sub(
        this=exp.Year(this=end.copy()),
        expression=exp.Year(this=start.copy()),
    )
    if unit == "YEAR":
        return exp.Paren(this=years)
    months = exp.Sub(
        this=exp.Month(this=end.copy()),
        expression=exp.Month(this=start.copy()),
    )
    return exp.Paren(
        this=exp.Add(
            this=exp.Mul(this=exp.Paren(this=years), expression=exp.Literal.number(12)),
            expression=months,
        )
    )


def _interval_months(node: exp.Expression) -> exp.Expression | None:
    """``n`` months of a DuckDB ``to_years(n)`` / ``to_months(n)`` call, else None."""
    if not isinstance(node, exp.Anonymous):
        return None
    name = node.name.lower()
    if name not in ("to_years", "to_months") or len(node.expressions) != 1:
        return None
    count = exp.Paren(this=node.expressions[0].copy())
    if name == "to_years":
        return exp.Mul(this=exp.Literal.number(12), expression=count)
    return count


def _add_months(node: exp.Add) -> exp.Expression | None:
    for date, interval in ((node.this, node.expression), (node.expression, node.this)):
        months = _interval_months(interval)
        if months is not None:
            return exp.AddMonths(this=date.copy(), expression=months)
    return None


def _decimal_as_double(node: exp.Literal) -> exp.Expression | None:
    if node.is_string or ("." not in node.this and "e" not in node.this.lower()):
        return None
    return exp.Cast(this=node.copy(), to=exp.DataType.build("DOUBLE"))


NAIVE_TIMESTAMP = exp.DataType.build("TIMESTAMP_NTZ", dialect=WRITE)


def _utc_wall_time(node: exp.Anonymous) -> exp.Expression | None:
    """DuckDB's ``timezone('UTC', instant)`` (an instant as naive UTC wall time) is Spark's cast
    to ``TIMESTAMP_NTZ``, which reads the wall time in the session zone: UTC by construction."""
    if node.name.lower() != "timezone" or len(node.expressions) != 2:
        return None
    zone, value = node.expressions
    if not (isinstance(zone, exp.Literal) and zone.is_string and zone.this.upper() == "UTC"):
        return None
    return exp.Cast(this=value.copy(), to=NAIVE_TIMESTAMP.copy())


INTEGER_TYPES = (
    exp.DataType.Type.TINYINT,
    exp.DataType.Type.SMALLINT,
    exp.DataType.Type.INT,
    exp.DataType.Type.BIGINT,
)
TIME_TYPES = (
    exp.DataType.Type.DATE,
    exp.DataType.Type.TIMESTAMP,
    exp.DataType.Type.TIMESTAMPNTZ,
    exp.DataType.Type.TIMESTAMPTZ,
    exp.DataType.Type.TIMESTAMPLTZ,
)
FULL_DATE = r"^\s*[0-9]{4}[-/][0-9]{1,2}[-/][0-9]{1,2}"
"""DuckDB reads a date only with year, month and day (``-`` or ``/``); Spark also takes
``2025`` and ``2025-03``, which staging must reject as DuckDB does."""
JAVA_SUFFIX = r"[0-9.][dDfF]\s*$"
"""Java's number parser, behind Spark's, takes ``1.5d``; DuckDB does not."""


def _is_text(node: exp.Expression) -> bool:
    """Whether a cast's operand is text by construction: the staging rules only ever cast
    ``nullif(trim(...), '')``, a ``CAST(... AS VARCHAR)`` or a ``<column>__text``."""
    if isinstance(node, exp.Nullif | exp.Trim):
        return True
    if isinstance(node, exp.Cast):
        return node.to.is_type(*exp.DataType.TEXT_TYPES)
    if isinstance(node, exp.Literal):
        return node.is_string
    return isinstance(node, exp.Column) and node.name.endswith("__text")


def _try_cast(this: exp.Expression, to: exp.DataType) -> exp.TryCast:
    """A ``TRY_CAST`` as the parser builds one (``safe``, or Spark prints a plain ``CAST``)."""
    return exp.TryCast(this=this, to=to, safe=True)


def _try_cast_like_duckdb(node: exp.TryCast) -> exp.Expression | None:
    """``TRY_CAST`` keeping DuckDB's reading of text (and its rounding of DOUBLEs):

    * text to an integer: DuckDB reads ``12.5`` as 13 and ``1e3`` as 1000, Spark as NULL; the
      text goes through a DECIMAL and is rounded half away from zero, as DuckDB does;
    * a DOUBLE to an integer: DuckDB rounds half to even, Spark truncates: ``bround`` first;
    * text to a date or timestamp: only a full year-month-day (``/`` read as ``-``);
    * text to a DOUBLE: no Java ``d``/``f`` suffix.
    """
    value, to = node.this, node.to
    text = _is_text(value)
    if to.is_type(*INTEGER_TYPES):
        if text:
            decimal = _try_cast(this=value.copy(), to=exp.DataType.build("DECIMAL(38, 18)"))
            rounded: exp.Expression = exp.Round(this=decimal)
        else:
            rounded = exp.Anonymous(this="BROUND", expressions=[value.copy()])
        return _try_cast(this=rounded, to=to.copy())
    if not text:
        return None
    if to.is_type(*TIME_TYPES):
        slashes = exp.RegexpReplace(
            this=value.copy(),
            expression=exp.Literal.string(r"^(\s*[0-9]{4})/([0-9]{1,2})/"),
            replacement=exp.Literal.string("$1-$2-"),
        )
        guarded = exp.If(
            this=exp.RegexpLike(this=value.copy(), expression=exp.Literal.string(FULL_DATE)),
            true=slashes,
        )
        return _try_cast(this=exp.Case(ifs=[guarded]), to=to.copy())
    if to.is_type(exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT):
        guarded = exp.If(
            this=exp.Not(
                this=exp.RegexpLike(this=value.copy(), expression=exp.Literal.string(JAVA_SUFFIX))
            ),
            true=value.copy(),
        )
        return _try_cast(this=exp.Case(ifs=[guarded]), to=to.copy())
    return None


def _rewrite_values(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.TryCast):  # bottom-up: a rewritten cast is never visited again
        return _try_cast_like_duckdb(node) or node
    if isinstance(node, exp.Anonymous):
        return _utc_wall_time(node) or node
    if isinstance(node, exp.UnixToTime) and node.parent is not None:
        # make_timestamp(micros) is a naive TIMESTAMP in DuckDB, an instant in Spark.
        if not (isinstance(node.parent, exp.Cast) and node.parent.is_type("timestamp_ntz")):
            return exp.Cast(this=node.copy(), to=NAIVE_TIMESTAMP.copy())
        return node
    if isinstance(node, exp.ArrayDistinct) and not isinstance(node.this, exp.ArrayCompact):
        # DuckDB's list_distinct drops NULLs; Spark's array_distinct keeps one.
        return exp.ArrayDistinct(this=exp.ArrayCompact(this=node.this.copy()))
    if isinstance(node, exp.DateDiff):
        return _calendar_diff(node) or node
    if isinstance(node, exp.Literal) and not isinstance(node.parent, exp.Interval):
        return _decimal_as_double(node) or node
    return node


def _rewrite_intervals(node: exp.Expression) -> exp.Expression:
    return (_add_months(node) or node) if isinstance(node, exp.Add) else node


def _name_placeholders(sql: str) -> str:
    """Every anonymous ``?`` renamed ``$p1, $p2, ...`` in the order of the text, as DuckDB
    binds them (found by SQLGlot's tokenizer, so a ``?`` inside a string literal stays)."""
    tokens = sqlglot.Dialect.get_or_raise(READ).tokenize(sql)
    pieces, position, count = [], 0, 0
    for token in tokens:
        if token.token_type == sqlglot.TokenType.PLACEHOLDER and token.text == "?":
            count += 1
            pieces.append(sql[position : token.start])
            pieces.append(f"$p{count}")
            position = token.end + 1
    pieces.append(sql[position:])
    return "".join(pieces)


def _unique_nested_ctes(tree: exp.Expression) -> None:
    """Rename the CTEs of every subquery ``q<n>__<name>``: Spark does not take a WITH inside a
    subquery, so SQLGlot lifts them all to the top, where two subqueries' ``snap`` would clash
    (the subscription and generated families are two such subqueries joined)."""
    for number, with_ in enumerate(
        [w for w in tree.find_all(exp.With) if w.parent is not tree], start=1
    ):
        scope = with_.parent
        names = {cte.alias_or_name: f"q{number}__{cte.alias_or_name}" for cte in with_.expressions}
        for cte in with_.expressions:
            cte.set("alias", exp.TableAlias(this=exp.to_identifier(names[cte.alias_or_name])))
        for table in scope.find_all(exp.Table):
            if table.name in names and not table.args.get("db"):
                table.set("this", exp.to_identifier(names[table.name]))


def to_spark(sql: str) -> str:
    """One DuckDB statement (a query) as Spark SQL with DuckDB's meaning kept."""
    tree = sqlglot.parse_one(_name_placeholders(sql), read=READ)
    _unique_nested_ctes(tree)
    # Two passes: the second copies subtrees the first has already rewritten.
    tree = _bottom_up(_bottom_up(tree, _rewrite_values), _rewrite_intervals)
    return tree.sql(dialect=WRITE)


def _bottom_up(node: exp.Expression, rewrite) -> exp.Expression:
    """``rewrite`` applied to every node, children first: a rewritten node may copy its
    operands (a cast wrapped in ``bround``), and those must already be rewritten."""
    for child in list(node.iter_expressions()):
        new = _bottom_up(child, rewrite)
        if new is not child:
            child.replace(new)
    return rewrite(node)


def spark_args(params: Sequence[Any] | Mapping[str, Any] | None) -> dict[str, Any]:
    """DuckDB parameters (a list for ``?``, a mapping for ``$name``) as Spark's named args."""
    if params is None:
        return {}
    if isinstance(params, Mapping):
        return dict(params)
    return {f"p{i}": value for i, value in enumerate(params, start=1)}


def referenced_tables(sql: str) -> list[str]:
    """The relations a query reads (CTE names excluded), in first-use order: what the Spark
    engine must export from the warehouse before running it."""
    tree = sqlglot.parse_one(sql, read=READ)
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    found: list[str] = []
    for table in tree.find_all(exp.Table):
        name = table.name
        if not name or name in ctes or name in found or not isinstance(table.this, exp.Identifier):
            continue
        found.append(name)
    return found
