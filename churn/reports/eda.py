"""Exploratory analysis of the feature table and its labels, computed in DuckDB.

What an analyst checks before trusting any model: how complete and how spread each feature is,
which segments churn more, how churners differ from stayers, which features move with churn or
duplicate each other, and whether the churn rate is stable over time.

Nothing here knows the synthetic source's feature list. Which columns are features, and whether
each is numeric or categorical, comes from the caller (the source's declared features, or a
model card's ``feature_schema``): a flat table's 0/1 flag staged as a category, or an event
source's generated counts, are then analysed as what the model treats them as. Without that, the
warehouse's own types decide. Segments are the categorical features themselves (the few-valued
ones), not a list of synthetic profile names, so a user's own ``internet`` or ``country`` column
gets its churn-by-segment panel like ``plan`` does. Every aggregate is
one SQL statement over all rows (one scan per section, not one query per feature); pandas and
matplotlib only ever see the small aggregated results. Dagster-free, so it can run from a notebook.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Literal

import duckdb

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ColumnKind = Literal["numeric", "categorical", "other"]

KEY_COLUMNS = ("customer_id", "observation_date")
MAX_SEGMENT_CARDINALITY = 30
"""A categorical feature is a segment when it has at most this many values; more (a city, a
product code) make a churn-by-value chart unreadable and the small groups' rates mostly noise."""
MAX_SEGMENTS = 8
"""Segment panels in the report, the first categorical features in feature order (plus tenure)."""
TENURE_COLUMN = "tenure_days"
TENURE_SEGMENT = "tenure_band"
TENURE_BANDS: tuple[tuple[str, int | None], ...] = (
    ("<3m", 91),
    ("3-12m", 365),
    ("1-2y", 730),
    ("2y+", None),
)
"""Band label and exclusive upper bound in days; the last band is open."""
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
MAX_SEGMENT_VALUES = 20
"""Segments with more values keep only the largest."""
MAX_PAIR_FEATURES = 60
"""Feature-to-feature correlations grow quadratically; beyond this, keep the churn-relevant."""
MAX_HISTOGRAM_BINS = 30

_NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
    "BOOLEAN",
)
_CATEGORICAL_TYPES = ("VARCHAR", "ENUM")


@dataclass(frozen=True)
class Column:
    """A feature column as the warehouse types it."""

    name: str
    sql_type: str
    kind: ColumnKind

    @property
    def sql(self) -> str:
        return _quote(self.name)

    @property
    def as_double(self) -> str:
        """Numeric value as DOUBLE; booleans become 0/1 so they correlate like any number."""
        return f"CAST({self.sql} AS DOUBLE)"


@dataclass(frozen=True)
class FeatureSummary:
    name: str
    sql_type: str
    kind: ColumnKind
    missing_share: float
    distinct: int
    mean: float | None = None
    quantiles: tuple[float | None, ...] = ()
    top_value: str | None = None
    top_share: float | None = None


@dataclass(frozen=True)
class SegmentRate:
    segment: str
    value: str
    rows: int
    churned: int
    churn_rate: float


@dataclass(frozen=True)
class Correlation:
    left: str
    right: str
    r: float


@dataclass(frozen=True)
class MonthRate:
    observation_date: date
    rows: int
    labeled: int
    churn_rate: float | None

    @property
    def matured(self) -> bool:
        return self.labeled > 0


@dataclass(frozen=True)
class Histogram:
    """Share of stayers and of churners per bin: shares, not counts, because churners are few."""

    feature: str
    edges: tuple[float, ...]
    stayed: tuple[float, ...]
    churned: tuple[float, ...]
    integer: bool


@dataclass
class EdaResult:
    """Everything the report shows, as plain numbers the tests can compare to SQL."""

    rows: int
    labeled_rows: int
    churn_rate: float | None
    features: list[FeatureSummary]
    segments: list[SegmentRate]
    label_correlations: list[Correlation]
    feature_pairs: list[Correlation]
    months: list[MonthRate]
    histograms: list[Histogram]
    images: dict[str, bytes] = field(default_factory=dict)

    @property
    def matured_months(self) -> list[MonthRate]:
        return [m for m in self.months if m.matured]

    @property
    def excluded_months(self) -> list[MonthRate]:
        return [m for m in self.months if not m.matured]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _kind(sql_type: str) -> ColumnKind:
    base = sql_type.upper().split("(")[0].strip()
    if base in _NUMERIC_TYPES:
        return "numeric"
    if base in _CATEGORICAL_TYPES:
        return "categorical"
    return "other"


def feature_columns(
    con: duckdb.DuckDBPyConnection,
    table: str = "customer_features",
    kinds: Mapping[str, str] | None = None,
) -> list[Column]:
    """The features of ``table`` with their kinds.

    With ``kinds`` (feature name -> ``numeric``/``categorical``, in the model's order): those
    features, in that order, of the kind given; a "numeric" column DuckDB cannot cast to a number
    is ``other`` rather than an SQL error. Without: every column but the keys, in table order,
    of the kind its DuckDB type implies.
    """
    described = {
        name: str(sql_type) for name, sql_type, *_ in con.execute(f"DESCRIBE {table}").fetchall()
    }
    if kinds is None:
        return [
            Column(name, sql_type, _kind(sql_type))
            for name, sql_type in described.items()
            if name not in KEY_COLUMNS
        ]
    columns = []
    for name, kind in kinds.items():
        if name not in described:
            continue
        sql_type = described[name]
        if kind == "categorical":
            columns.append(Column(name, sql_type, "categorical"))
        else:
            numeric = _kind(sql_type) == "numeric"
            columns.append(Column(name, sql_type, "numeric" if numeric else "other"))
    return columns


def _create_view(
    con: duckdb.DuckDBPyConnection, features: str, labels: str, label: str
) -> tuple[str, ...]:
    """``_eda``: every feature row with its 0/1 label, NULL while the label has not matured.

    A temp view, so it works on a read-only connection and copies nothing.
    """
    columns = {row[0] for row in con.execute(f"DESCRIBE {features}").fetchall()}
    keys = tuple(k for k in KEY_COLUMNS if k in columns)
    using = ", ".join(keys)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW _eda AS SELECT f.*, "
        f"CAST(CAST(l.{_quote(label)} AS INTEGER) AS DOUBLE) AS _label "
        f"FROM {features} f LEFT JOIN {labels} l USING ({using})"
    )
    return keys


def summarize_features(
    con: duckdb.DuckDBPyConnection, columns: Sequence[Column]
) -> list[FeatureSummary]:
    """Type, missing share, distinct values, quantiles and mean (or top value): one scan."""
    parts = ["count(*)"]
    for c in columns:
        common = f"count(*) FILTER (WHERE {c.sql} IS NULL), count(DISTINCT {c.sql})"
        if c.kind == "numeric":
            q = ", ".join(str(x) for x in QUANTILES)
            parts.append(f"{common}, avg({c.as_double}), quantile_cont({c.as_double}, [{q}])")
        else:
            parts.append(f"{common}, CAST(mode({c.sql}) AS VARCHAR), NULL")
    row = con.execute(f"SELECT {', '.join(parts)} FROM _eda").fetchone()
    total, values = row[0], row[1:]
    summaries = []
    for i, c in enumerate(columns):
        missing, distinct, a, b = values[4 * i : 4 * i + 4]
        share = missing / total if total else 0.0
        if c.kind == "numeric":
            summaries.append(
                FeatureSummary(c.name, c.sql_type, c.kind, share, distinct, a, tuple(b or ()))
            )
        else:
            summaries.append(
                FeatureSummary(c.name, c.sql_type, c.kind, share, distinct, top_value=a)
            )
    return _with_top_shares(con, columns, summaries, total)


def _with_top_shares(
    con: duckdb.DuckDBPyConnection,
    columns: Sequence[Column],
    summaries: list[FeatureSummary],
    total: int,
) -> list[FeatureSummary]:
    """Share of the most frequent value of each categorical column, in one more scan."""
    tops = [(c, s) for c, s in zip(columns, summaries, strict=True) if s.top_value is not None]
    if not tops or not total:
        return summaries
    counts = con.execute(
        "SELECT "
        + ", ".join(f"count(*) FILTER (WHERE CAST({c.sql} AS VARCHAR) = ?)" for c, _ in tops)
        + " FROM _eda",
        [s.top_value for _, s in tops],
    ).fetchone()
    shares = {c.name: n / total for (c, _), n in zip(tops, counts, strict=True)}
    return [
        FeatureSummary(**{**s.__dict__, "top_share": shares[s.name]}) if s.name in shares else s
        for s in summaries
    ]


def _tenure_band_sql(column: str) -> str:
    cases = " ".join(
        f"WHEN {column} < {upper} THEN '{label}'" for label, upper in TENURE_BANDS if upper
    )
    return f"CASE WHEN {column} IS NULL THEN NULL {cases} ELSE '{TENURE_BANDS[-1][0]}' END"


def segment_expressions(
    columns: Sequence[Column], summaries: Sequence[FeatureSummary]
) -> dict[str, str]:
    """Which segments this table supports: its few-valued categorical features (at most
    ``MAX_SEGMENTS``, in feature order), and tenure bands when there is a tenure in days."""
    distinct = {s.name: s.distinct for s in summaries}
    by_name = {c.name: c for c in columns}
    chosen = [
        c
        for c in columns
        if c.kind == "categorical" and 0 < distinct.get(c.name, 0) <= MAX_SEGMENT_CARDINALITY
    ][:MAX_SEGMENTS]
    segments = {c.name: f"CAST({c.sql} AS VARCHAR)" for c in chosen}
    if TENURE_COLUMN in by_name and by_name[TENURE_COLUMN].kind == "numeric":
        segments[TENURE_SEGMENT] = _tenure_band_sql(by_name[TENURE_COLUMN].sql)
    return segments


def churn_by_segment(con: duckdb.DuckDBPyConnection, segments: dict[str, str]) -> list[SegmentRate]:
    """Matured-label churn rate per segment value; NULLs shown as their own ``(missing)`` value."""
    if not segments:
        return []
    band_order = {label: i for i, (label, _) in enumerate(TENURE_BANDS)}
    names = list(segments)
    # Segments are numbered in the SQL and named back here: a user's column name never
    # becomes an SQL string literal.
    selects = " UNION ALL ".join(
        f"SELECT {i} AS segment, coalesce({expr}, '(missing)') AS value, "
        "count(*) AS n, sum(_label) AS churned, avg(_label) AS rate "
        "FROM _eda WHERE _label IS NOT NULL GROUP BY ALL"
        for i, expr in enumerate(segments.values())
    )
    rows = con.execute(
        f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY segment ORDER BY n DESC, value)"
        f" AS rank FROM ({selects})) WHERE rank <= {MAX_SEGMENT_VALUES}"
    ).fetchall()
    rows.sort(key=lambda r: (r[0], band_order.get(r[1], -1), r[1]))
    return [SegmentRate(names[i], v, int(n), int(k), float(rate)) for i, v, n, k, rate, _ in rows]


def _correlations(
    con: duckdb.DuckDBPyConnection, pairs: Sequence[tuple[str, str, str, str]]
) -> list[Correlation]:
    """Pearson r for each (name, expression, name, expression) pair, in one scan; constant
    columns (r undefined) are dropped."""
    if not pairs:
        return []
    row = con.execute(
        "SELECT " + ", ".join(f"corr({a}, {b})" for _, a, _, b in pairs) + " FROM _eda"
    ).fetchone()
    found = [
        Correlation(left, right, float(r))
        for (left, _, right, _), r in zip(pairs, row, strict=True)
        if r is not None and math.isfinite(r)
    ]
    return sorted(found, key=lambda c: -abs(c.r))


def label_correlations(
    con: duckdb.DuckDBPyConnection, columns: Sequence[Column]
) -> list[Correlation]:
    """Point-biserial correlation (Pearson with the 0/1 label) of every numeric feature,
    strongest first. ``corr`` skips rows where either side is NULL, i.e. unmatured labels."""
    pairs = [(c.name, c.as_double, "churned", "_label") for c in columns if c.kind == "numeric"]
    return _correlations(con, pairs)


def feature_pairs(
    con: duckdb.DuckDBPyConnection, columns: Sequence[Column], ranked: Sequence[Correlation]
) -> list[Correlation]:
    """Pearson r between numeric features, strongest first: near-duplicates a model will split
    credit between. Capped to the features most related to churn to bound the quadratic cost."""
    numeric = {c.name: c for c in columns if c.kind == "numeric"}
    names = [c.left for c in ranked if c.left in numeric][:MAX_PAIR_FEATURES]
    pairs = [
        (a, numeric[a].as_double, b, numeric[b].as_double)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]
    return _correlations(con, pairs)


def churn_by_month(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> list[MonthRate]:
    """Rows, matured labels and churn rate per observation date; a month without matured labels
    (the newest, whose horizon runs past the data) has rate ``None``."""
    if "observation_date" not in keys:
        return []
    rows = con.execute(
        "SELECT observation_date, count(*), count(_label), avg(_label) FROM _eda "
        "GROUP BY ALL ORDER BY 1"
    ).fetchall()
    return [MonthRate(d, int(n), int(k), r) for d, n, k, r in rows]


def histograms(
    con: duckdb.DuckDBPyConnection, columns: Sequence[Column], features: Sequence[str]
) -> list[Histogram]:
    """Binned distributions of ``features`` for stayers vs churners (matured rows only).

    Bins span the 1st–99th percentile, so one extreme customer does not squash the plot; values
    outside land in the edge bins. Integer features with a small range get one bin per value.
    """
    by_name = {c.name: c for c in columns}
    chosen = [by_name[f] for f in features if f in by_name and by_name[f].kind == "numeric"]
    if not chosen:
        return []
    bounds = con.execute(
        "SELECT "
        + ", ".join(
            f"quantile_cont({c.as_double}, [0.01, 0.99]), min({c.as_double}), max({c.as_double})"
            for c in chosen
        )
        + " FROM _eda WHERE _label IS NOT NULL"
    ).fetchone()
    result = []
    for c, (qs, low, high) in zip(chosen, _triples(bounds), strict=True):
        if qs is None or low is None:
            continue
        if qs[1] <= qs[0]:  # a rare count (mostly zeros): the full range says more
            qs = (low, high)
        if qs[1] > qs[0]:
            result.append(_histogram(con, c, float(qs[0]), float(qs[1])))
    return result


def _triples(values: Sequence) -> list[tuple]:
    return [tuple(values[i : i + 3]) for i in range(0, len(values), 3)]


def _histogram(
    con: duckdb.DuckDBPyConnection, column: Column, low: float, high: float
) -> Histogram:
    integer = column.sql_type.upper() in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "BOOLEAN")
    if integer:
        low, high = math.floor(low), math.ceil(high)
    if integer:  # bins aligned on whole numbers: misaligned ones alternate 1 and 2 values
        step = math.ceil((high - low + 1) / MAX_HISTOGRAM_BINS)
        bins = math.ceil((high - low + 1) / step)
        edges = [low - 0.5 + i * step for i in range(bins + 1)]
    else:
        bins = MAX_HISTOGRAM_BINS
        edges = [low + (high - low) * i / bins for i in range(bins + 1)]
    width = (edges[-1] - edges[0]) / bins
    rows = con.execute(
        f"""
        SELECT _label, least(greatest(CAST(floor(({column.as_double} - $start) / $width)
            AS INTEGER), 0), $last) AS bin, count(*) AS n
        FROM _eda WHERE _label IS NOT NULL AND {column.sql} IS NOT NULL
        GROUP BY ALL
        """,
        {"start": edges[0], "width": width, "last": bins - 1},
    ).fetchall()
    counts = {0.0: [0] * bins, 1.0: [0] * bins}
    for label, b, n in rows:
        counts[label][b] = n
    shares = {k: tuple(n / max(sum(v), 1) for n in v) for k, v in counts.items()}
    return Histogram(column.name, tuple(edges), shares[0.0], shares[1.0], integer)


def analyze(
    con: duckdb.DuckDBPyConnection,
    *,
    features_table: str = "customer_features",
    labels_table: str = "churn_labels",
    label_column: str = "churned",
    kinds: Mapping[str, str] | None = None,
    histogram_features: int = 6,
    render_plots: bool = True,
) -> EdaResult:
    """Run every section of the report over the warehouse (read-only is enough).

    ``kinds``: the features and their kinds (see :func:`feature_columns`); the source's
    declared features or a model card's schema.
    """
    keys = _create_view(con, features_table, labels_table, label_column)
    columns = feature_columns(con, features_table, kinds)
    rows, labeled, rate = con.execute(
        "SELECT count(*), count(_label), avg(_label) FROM _eda"
    ).fetchone()
    ranked = label_correlations(con, columns)
    top = [c.left for c in ranked[:histogram_features]]
    summaries = summarize_features(con, columns)
    result = EdaResult(
        rows=int(rows),
        labeled_rows=int(labeled),
        churn_rate=rate,
        features=summaries,
        segments=churn_by_segment(con, segment_expressions(columns, summaries)),
        label_correlations=ranked,
        feature_pairs=feature_pairs(con, columns, ranked),
        months=churn_by_month(con, keys),
        histograms=histograms(con, columns, top),
    )
    con.execute("DROP VIEW IF EXISTS _eda")
    if render_plots:
        result.images = render_images(result)
    return result


# --- plots ---------------------------------------------------------------------------------

DPI = 100


def _render(draw: Callable[[Figure], None], size: tuple[float, float]) -> bytes:
    """PNG bytes from a Figure on an Agg canvas: no pyplot global state, safe in workers."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _short(text: str, width: int = 22) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _unit(feature: str) -> str:
    """An axis label with the unit the feature's name implies; names without a known unit
    (a user's own columns) are shown as they are."""
    tokens = set(feature.lower().split("_"))
    units = (
        ({"minutes"}, "minutes"),
        ({"trend"}, "ratio"),
        ({"ewm", "per"}, "events per day"),
        ({"days", "day"}, "days"),
        ({"age"}, "years"),
        ({"fee", "amount", "paid"}, "currency units"),
    )
    for markers, unit in units:
        if tokens & markers:
            return f"{feature} ({unit})"
    if re.search(r"_\d+d$", feature):
        return f"{feature} (count in window)"
    return feature


def _percent_axis(ax: Axes, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0, decimals=1))


def plot_churn_by_month(result: EdaResult) -> bytes | None:
    months = result.matured_months
    if not months:
        return None
    excluded = ", ".join(m.observation_date.isoformat() for m in result.excluded_months)

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        labels = [m.observation_date.strftime("%Y-%m") for m in months]
        rates = [m.churn_rate for m in months]
        ax.plot(labels, rates, marker="o", color="tab:red", label="monthly churn rate")
        if result.churn_rate is not None:
            ax.axhline(
                result.churn_rate,
                linestyle="--",
                color="grey",
                label=f"overall {result.churn_rate:.1%}",
            )
        note = f"\n(excluded, labels not matured yet: {excluded})" if excluded else ""
        ax.set(
            title="Churn rate per observation month (matured labels)",
            xlabel=f"Observation month{note}",
            ylabel="Churned within horizon (% of active)",
        )
        ax.set_ylim(0, max(r for r in rates if r is not None) * 1.25 or 1)
        _percent_axis(ax)
        if len(labels) > 8:
            ax.tick_params(axis="x", labelrotation=45)
            for tick in ax.get_xticklabels():
                tick.set_horizontalalignment("right")
        ax.legend(loc="lower left")

    return _render(draw, (7.0, 4.2))


def plot_churn_by_segment(result: EdaResult) -> bytes | None:
    segments: dict[str, list[SegmentRate]] = {}
    for s in result.segments:
        segments.setdefault(s.segment, []).append(s)
    if not segments:
        return None
    columns = min(3, len(segments))
    rows = math.ceil(len(segments) / columns)

    def draw(figure: Figure) -> None:
        top = max(s.churn_rate for s in result.segments) * 1.6 or 1  # room for the labels
        for i, (name, values) in enumerate(segments.items()):
            ax = figure.add_subplot(rows, columns, i + 1)
            labels = [_short(v.value, 14) for v in values][::-1]
            rates = [v.churn_rate for v in values][::-1]
            bars = ax.barh(labels, rates, color="tab:blue")
            for bar, v in zip(bars, values[::-1], strict=True):
                ax.text(
                    bar.get_width(),
                    bar.get_y() + bar.get_height() / 2,
                    f" {v.churn_rate:.1%} (n={v.rows:,})",
                    va="center",
                    fontsize=7,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.8},
                )
            if result.churn_rate is not None:
                ax.axvline(result.churn_rate, linestyle="--", color="grey", label="overall")
            ax.set_xlim(0, top)
            ax.set_title(f"by {name}", fontsize=10)
            ax.set_xlabel("Churn rate (%)")
            _percent_axis(ax, "x")
            ax.tick_params(axis="both", labelsize=8)
            if i == 0:
                ax.legend(loc="lower right", fontsize=7)
        figure.suptitle("Churn rate by segment (matured labels; dashed line = overall)")

    return _render(draw, (4.2 * columns, 0.5 + 2.6 * rows))


def plot_label_correlations(result: EdaResult, top: int = 15) -> bytes | None:
    shown = result.label_correlations[:top][::-1]
    if not shown:
        return None

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        colors = ["tab:red" if c.r > 0 else "tab:green" for c in shown]
        ax.barh([_short(c.left, 28) for c in shown], [c.r for c in shown], color=colors)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set(
            title=f"Correlation with churn (top {len(shown)} by |r|)",
            xlabel="Point-biserial r (red: more churn, green: less churn)",
            ylabel="Feature",
        )
        ax.tick_params(axis="y", labelsize=8)

    return _render(draw, (7.0, max(3.5, 0.3 * len(shown) + 1.2)))


def plot_distributions(result: EdaResult) -> bytes | None:
    shown = result.histograms
    if not shown:
        return None
    columns = min(3, len(shown))
    rows = math.ceil(len(shown) / columns)

    from matplotlib.ticker import MaxNLocator

    def draw(figure: Figure) -> None:
        for i, h in enumerate(shown):
            ax = figure.add_subplot(rows, columns, i + 1)
            for shares, label, color in (
                (h.stayed, "stayed", "tab:blue"),
                (h.churned, "churned", "tab:red"),
            ):
                # stairs, not bars: one artist per group instead of one per bin (4x faster)
                ax.stairs(shares, h.edges, fill=True, alpha=0.35, color=color)
                ax.stairs(shares, h.edges, color=color, linewidth=1.2, label=label)
            ax.set_title(_short(h.feature, 32), fontsize=10)
            ax.set_xlabel(_unit(h.feature), fontsize=8)
            if h.integer:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if max(h.stayed + h.churned) > 0.6:  # one dominant value (mostly zeros): log scale
                ax.set_yscale("log")
                ax.set_ylim(bottom=min(v for v in h.stayed + h.churned if v > 0) / 2)
                ax.set_ylabel("% of group (log scale)", fontsize=8)
            else:
                ax.set_ylabel("% of group", fontsize=8)
            _percent_axis(ax)
            ax.tick_params(axis="both", labelsize=7)
            if i == 0:
                ax.legend(fontsize=8)
        figure.suptitle(
            "Features most correlated with churn: stayers vs churners "
            "(values beyond the 1st/99th percentile counted in the edge bins)"
        )

    return _render(draw, (4.2 * columns, 0.6 + 3.0 * rows))


def render_images(result: EdaResult) -> dict[str, bytes]:
    """Every plot of the report that has data, by name."""
    images = {
        "churn_by_month": plot_churn_by_month(result),
        "churn_by_segment": plot_churn_by_segment(result),
        "label_correlations": plot_label_correlations(result),
        "distributions_by_label": plot_distributions(result),
    }
    return {name: png for name, png in images.items() if png is not None}
