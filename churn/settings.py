"""Where state lives and which source feeds the pipeline, read from the environment.

Every process (Dagster steps, the sensors, the BentoML service, the tests) resolves paths through
this one module, so pointing ``CHURN_HOME`` at a temp dir isolates a whole run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from churn.sources.config import SourceConfig
    from churn.synthetic import GeneratorConfig

DEFAULT_HOME = "./data"
BENTOML_HOME_ENV = "BENTOML_HOME"


def churn_home(env: Mapping[str, str] | None = None) -> Path:
    """``CHURN_HOME`` as an absolute path (default ``./data`` of the working directory)."""
    env = os.environ if env is None else env
    return Path(env.get("CHURN_HOME") or DEFAULT_HOME).resolve()


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
    """The parsed YAML when ``CHURN_SOURCE`` names one (read at load: partitions follow it)."""
    incoming_check_max_bytes: int = 50_000_000
    """``CHURN_INCOMING_CHECK_MAX_BYTES``: files in ``incoming/`` up to this size are fully
    validated by the sensor; larger ones get only the cheap checks there (name, suffix,
    header) and are validated by the landing run, so a big file never times out a tick."""

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


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the ``CHURN_*`` variables; unset variables take the documented defaults."""
    env = os.environ if env is None else env
    defaults = SyntheticSize()
    start_raw = env.get("CHURN_START_DATE") or defaults.start_date.isoformat()
    try:
        start_date = date.fromisoformat(start_raw)
    except ValueError as error:
        raise ValueError(f"CHURN_START_DATE must be YYYY-MM-DD, got {start_raw!r}") from error
    synthetic = SyntheticSize(
        customers=_int(env, "CHURN_CUSTOMERS", defaults.customers),
        months=_int(env, "CHURN_MONTHS", defaults.months),
        seed=_int(env, "CHURN_SEED", defaults.seed, minimum=0),
        start_date=start_date,
    )
    source = env.get("CHURN_SOURCE") or "synthetic"
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
        horizon_days=_int(env, "CHURN_HORIZON_DAYS", 30),
        warehouse=warehouse,
        source_config=source_config,
        incoming_check_max_bytes=_int(env, "CHURN_INCOMING_CHECK_MAX_BYTES", 50_000_000),
    )
