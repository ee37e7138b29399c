"""The generator's simulation state on disk, so the world can be advanced a month later.

``truth/state.npz`` holds every latent array of the :class:`~churn.synthetic.generator.Simulation`
(population traits, usage levels, failure and ticket windows, pending retries, running
contacts); ``truth/state.json`` the configuration, the random generator's exact state, how many
days and months have been simulated and the next free event, payment, ticket and session
numbers. Restoring both and simulating on draws exactly what an uninterrupted run would have
drawn next, so the same seed and the same contact lists always give the same months.

Both files are written to ``*.part`` first and renamed; the JSON, renamed last, names the day
the arrays belong to, so a crash between the two renames is detected on load instead of
silently mixing two months.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from datetime import date
from pathlib import Path

import numpy as np

from churn.synthetic.activity import US_PER_DAY
from churn.synthetic.generator import GeneratorConfig, Simulation, day_of_month, month_starts
from churn.synthetic.population import EPOCH, Population

STATE_ARRAYS = "state.npz"
STATE_META = "state.json"
FORMAT = 1
SIMULATION_ARRAYS = (
    "static_lp",
    "price_lp",
    "annual",
    "decay",
    "noise",
    "shock",
    "loglam",
    "habit",
    "cancel_day",
    "churn_type",
    "reason",
    "retry_day",
    "fail_ring",
    "fail_60d",
    "ticket_ring",
    "tickets_30d",
    "treated_until",
)


class StateError(ValueError):
    """The saved state is missing or does not belong together; the message says which file."""


@dataclass
class World:
    """A restored simulation and what continues from it."""

    sim: Simulation
    counters: dict[str, int]
    months: int
    """Calendar months simulated since the start (the generator's ``months``, then +1 each
    advance)."""

    @property
    def base_window_days(self) -> int:
        """The first generation's window: newcomer and decay rates are per day of it."""
        from churn.synthetic.generator import data_end

        config = self.sim.config
        return (data_end(config) - config.start_date).days


def _replace(path: Path, write) -> None:
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as handle:
        write(handle)
    os.replace(partial, path)


def save(sim: Simulation, counters: dict[str, int], truth_dir: Path, *, months: int) -> None:
    """Write ``sim`` and the id counters next to the truth table (atomically, see above)."""
    arrays = {name: getattr(sim, name) for name in SIMULATION_ARRAYS}
    for field in fields(Population):
        values = getattr(sim.pop, field.name)
        arrays[f"pop_{field.name}"] = values.astype(str) if field.name == "ids" else values
    config = asdict(sim.config) | {"start_date": sim.config.start_date.isoformat()}
    meta = {
        "format": FORMAT,
        "config": config,
        "days": sim.days,
        "months": months,
        "next_session": sim.next_session,
        "counters": counters,
        "rng": sim.rng.bit_generator.state,
    }
    _replace(truth_dir / STATE_ARRAYS, lambda handle: np.savez(handle, days=sim.days, **arrays))
    _replace(
        truth_dir / STATE_META,
        lambda handle: handle.write(json.dumps(meta, indent=1).encode()),
    )


def load(truth_dir: Path) -> World:
    """The saved world, or :class:`StateError` naming the missing or mismatched file."""
    meta_path, arrays_path = truth_dir / STATE_META, truth_dir / STATE_ARRAYS
    for path in (meta_path, arrays_path):
        if not path.exists():
            raise StateError(
                f"{path}: no saved generator state; generate the synthetic world first "
                "(python -m churn.synthetic, or the raw_tables asset), then advance it"
            )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise StateError(f"{meta_path}: state format {meta.get('format')!r}, expected {FORMAT}")
    with np.load(arrays_path, allow_pickle=False) as saved:  # plain arrays only, never objects
        arrays = {name: saved[name] for name in saved.files}
    saved_day = int(arrays.pop("days"))
    if saved_day != meta["days"]:
        raise StateError(
            f"{arrays_path} is for day {saved_day} but {meta_path} for day "
            f"{meta['days']}: an advance was interrupted; restore both from the same month"
        )
    config = GeneratorConfig(
        **(meta["config"] | {"start_date": date.fromisoformat(meta["config"]["start_date"])})
    )
    rng = np.random.default_rng()
    rng.bit_generator.state = meta["rng"]
    sim = Simulation.__new__(Simulation)
    sim.config, sim.rng, sim.days = config, rng, meta["days"]
    pop = {field.name: arrays.pop(f"pop_{field.name}") for field in fields(Population)}
    pop["ids"] = pop["ids"].astype(object)
    sim.pop = Population(**pop)
    for name in SIMULATION_ARRAYS:
        setattr(sim, name, arrays[name])
    sim.epoch_day = (config.start_date - EPOCH).days
    sim.epoch_us = sim.epoch_day * US_PER_DAY
    sim.day_of_month = day_of_month(config, sim.days)
    sim.month_starts = month_starts(config, meta["months"])
    sim.next_session = meta["next_session"]
    return World(sim=sim, counters=dict(meta["counters"]), months=meta["months"])
