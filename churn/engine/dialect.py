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
  IEEE operations in the same order, hence the same bits. (A long decimal literal *multiplied*
  by a large integer before a division is exact in DuckDB and rounded on Spark: equal to a few
  units in the last place, which is why the parity tests compare DOUBLEs to 1e-9 relative.)
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


def _rewrite_values(node: exp.Expression) -> exp.Expression:
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
    tree = tree.transform(_rewrite_values).transform(_rewrite_intervals)
    return tree.sql(dialect=WRITE)


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
