"""The synthetic world's next calendar month, simulated by its own generator.

``python -m churn.synthetic.advance --home $CHURN_HOME [--contacts FILE]
[--shift usage_drop --region north --pct 90]``

It restores the generator's saved state (``truth/state.*``, see :mod:`churn.synthetic.state`),
simulates the next calendar month day by day with the same latent hazards, and writes that
month's new rows as ``incoming/<table>/<table>_<YYYY-MM>_advance.parquet`` (``*.part`` first,
then renamed, so ``incoming_files_sensor`` never sees half a file), the truth for the next
observation date into ``truth/churn_truth.parquet``, and the state again. The same seed and the
same contact lists give the same months, byte for byte.

What continues, so that a stationary world stays stationary:

* **newcomers** sign up at the first window's rate (its new customers per day), drawn like
  everyone else; their profiles are the month's ``customers`` file;
* **disengagement** starts for customers whose usage never decayed at the first window's rate
  (a quarter of customers per window), the generator's main churn story;
* everything else (usage, billing, tickets, the daily hazard) is the generator's own code.

**Contacts** (``--contacts``): a scores export (CSV or Parquet) with ``customer_id`` and a
boolean ``contact``; the customers with ``contact`` true are contacted on the month's first day,
which multiplies their voluntary hazard by ``CONTACT_HAZARD_RATIO`` (0.6) for ``CONTACT_DAYS``
(90). The true effect on each contacted customer's probability of churning within the horizon
(``p_untreated - p_treated``, from the hazards the generator knows, state frozen at that date as
for ``true_churn_probability``) goes to ``truth/contact_effect.parquet``.

**Shifts** (``--shift``, the drift walkthrough's kinds, applied to the advanced month):

* ``usage_drop``: the region loses ``--pct`` of its product events (an outage: the events are
  missing from the files; the customers' latent habits, hence their churn, are unchanged);
* ``price_rise``: the region's fee rises by ``--pct`` from this month on (profile and payments;
  the hazard's price term reacts);
* ``payment_failure``: every charge to ``--method`` fails this month (a broken provider; two
  failures in a row end a subscription, as always).

``churn.synthetic.shift`` (copy the last month forward) stays for homes without saved state.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn.ingest.schema import PAYMENT_METHODS, REGIONS, TRUTH_FILE
from churn.synthetic import state
from churn.synthetic.activity import EventRows, TicketRows
from churn.synthetic.generator import (
    CONTACT_DAYS,
    PaymentRows,
    Simulation,
    _concat,
    _simulate_day,
    add_months,
    cancellations_table,
    customers_table,
    events_table,
    payments_table,
    tickets_table,
    truth_table,
)
from churn.synthetic.output import dates
from churn.synthetic.population import NO_DECAY, PRE_EXISTING_SHARE, newcomers

SHIFT_KINDS = ("usage_drop", "price_rise", "payment_failure")
DECAY_SHARE = 0.25
"""Share of customers whose usage starts to decay within one first window (``draw_decay``)."""
CONTACT_EFFECT_FILE = "contact_effect.parquet"
SUFFIX = "advance"


@dataclass(frozen=True)
class Shift:
    """A drift to inject into the advanced month (see the module docstring)."""

    kind: str
    region: str = "north"
    pct: float = 30.0
    method: str = "card"

    def __post_init__(self) -> None:
        if self.kind not in SHIFT_KINDS:
            raise ValueError(f"shift kind {self.kind!r}: must be one of {', '.join(SHIFT_KINDS)}")
        if self.region not in REGIONS:
            raise ValueError(f"shift region {self.region!r}: must be one of {', '.join(REGIONS)}")
        if self.method not in PAYMENT_METHODS:
            raise ValueError(
                f"shift method {self.method!r}: must be one of {', '.join(PAYMENT_METHODS)}"
            )
        if not 0 <= self.pct <= 100 and self.kind == "usage_drop":
            raise ValueError(f"shift pct {self.pct}: a usage drop is 0 to 100 percent")


@dataclass(frozen=True)
class Advanced:
    """What one advance simulated and wrote."""

    month: date  # the simulated month's first day
    observation_date: date  # the next month's first day: the snapshot that sees the month
    files: list[Path]
    contacted: int
    mean_true_effect: float | None


def read_contacts(path: Path, sim: Simulation) -> np.ndarray:
    """Indices of the customers ``path`` marks ``contact`` true (CSV or Parquet).

    Errors name the file and the column; an id the world never had is an error (a list for
    another world), one that has left since is simply not contacted."""
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    for column in ("customer_id", "contact"):
        if column not in frame.columns:
            raise ValueError(
                f"{path.name}: no '{column}' column (contacts need customer_id and contact)"
            )
    contact = frame["contact"]
    if contact.dtype != bool:
        text = contact.astype(str).str.strip().str.lower()
        if not text.isin(["true", "false", "1", "0"]).all():
            bad = contact[~text.isin(["true", "false", "1", "0"])].iloc[0]
            raise ValueError(f"{path.name}: column 'contact' must be boolean, found {bad!r}")
        contact = text.isin(["true", "1"])
    chosen = frame.loc[contact.to_numpy(), "customer_id"].astype(str).to_numpy()
    position = {customer: i for i, customer in enumerate(sim.pop.ids)}
    unknown = [customer for customer in chosen if customer not in position]
    if unknown:
        raise ValueError(
            f"{path.name}: {len(unknown)} customer_id(s) not in this synthetic world, "
            f"e.g. {unknown[0]!r}"
        )
    return np.array(sorted(position[customer] for customer in chosen), dtype=np.int64)


def contact(sim: Simulation, day: int, idx: np.ndarray) -> pa.Table:
    """Contact ``idx`` (those still active) on ``day``; return the true effect per customer:
    the horizon's churn probability without this contact (an earlier one still running
    counts) minus with it."""
    active = idx[sim.cancel_day[idx] > day]
    untreated = sim.churn_probability(day, active)
    sim.treated_until[active] = day + CONTACT_DAYS
    treated = sim.churn_probability(day, active)
    return pa.table(
        {
            "customer_id": pa.array(sim.pop.ids[active].astype(str), pa.string()),
            "observation_date": dates(np.full(len(active), sim.epoch_day + day)),
            "p_untreated": pa.array(untreated, pa.float64()),
            "p_treated": pa.array(treated, pa.float64()),
            "true_effect": pa.array(untreated - treated, pa.float64()),
        }
    )


def _grow(world: state.World, first_day: int, end_day: int) -> None:
    """Newcomers and new decay onsets for ``[first_day, end_day)`` at the first window's rates."""
    sim, rng = world.sim, world.sim.rng
    per_day = 1.0 / world.base_window_days
    days = end_day - first_day
    expected = sim.config.customers * (1 - PRE_EXISTING_SHARE) * per_day * days
    joining = newcomers(
        rng,
        int(rng.poisson(expected)),
        sim.config.start_date,
        first_day,
        end_day,
        sim.config.horizon_days,
        first_number=sim.pop.size + 1,
    )
    sim.extend(end_day, world.months + 1, joining)
    pop = sim.pop
    never = np.flatnonzero((pop.decay_onset >= NO_DECAY) & (sim.cancel_day > first_day))
    starts = never[rng.random(len(never)) < DECAY_SHARE * per_day * days]
    onset = np.maximum(rng.integers(first_day, end_day, len(starts)), pop.signup[starts] + 14)
    decay_onset, decay_end, decay_rate = (
        pop.decay_onset.copy(),
        pop.decay_end.copy(),
        pop.decay_rate.copy(),
    )
    decay_onset[starts] = onset
    decay_end[starts] = onset + rng.integers(21, 90, len(starts))
    decay_rate[starts] = rng.uniform(0.01, 0.03, len(starts))
    sim.pop = replace(pop, decay_onset=decay_onset, decay_end=decay_end, decay_rate=decay_rate)


def _raise_prices(sim: Simulation, shift: Shift) -> np.ndarray:
    """The region's fee rises from now on; returns who was repriced (for the profile file)."""
    region = np.flatnonzero(sim.pop.region == REGIONS.index(shift.region))
    factor = 1 + shift.pct / 100
    fee, ratio = sim.pop.fee.copy(), sim.pop.price_ratio.copy()
    fee[region] = np.round(fee[region] * factor, 2)
    ratio[region] *= factor
    sim.pop = replace(sim.pop, fee=fee, price_ratio=ratio)
    sim.refresh_static()
    return region


def _write(table: pa.Table, folder: Path, name: str) -> Path | None:
    """``folder/<table>/<name>`` via ``*.part``; an empty month writes nothing (the sensor
    quarantines files without rows)."""
    if table.num_rows == 0:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    partial = final.with_name(final.name + ".part")
    pq.write_table(table, partial, store_schema=False)
    os.replace(partial, final)
    return final


def _append(path: Path, rows: pa.Table) -> None:
    """Append ``rows`` to a truth table (rewritten via ``*.part``: readers see old or new)."""
    if path.exists():
        old = pq.read_table(path)
        rows = pa.concat_tables([old, rows.cast(old.schema)])
    else:
        rows = rows.cast(
            pa.schema(
                [
                    (f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
                    for f in rows.schema
                ]
            )
        )
    partial = path.with_name(path.name + ".part")
    pq.write_table(rows, partial, store_schema=False)
    os.replace(partial, path)


def advance(home: Path, contacts: Path | None = None, shift: Shift | None = None) -> Advanced:
    """Simulate the month after the saved state and write it for ``incoming/`` (see above)."""
    truth_dir, incoming = home / "truth", home / "incoming"
    world = state.load(truth_dir)
    sim = world.sim
    first_day = sim.days
    month = add_months(sim.config.start_date, world.months)
    following = add_months(month, 1)
    end_day = (following - sim.config.start_date).days
    if first_day != (month - sim.config.start_date).days:
        raise state.StateError(
            f"{truth_dir / state.STATE_META}: day {first_day} is not the first of {month}"
        )
    effect = None
    if contacts is not None:
        effect = contact(sim, first_day, read_contacts(contacts, sim))
    before = sim.pop.size
    _grow(world, first_day, end_day)
    joined = np.arange(before, sim.pop.size)
    repriced = np.empty(0, dtype=np.int64)
    if shift is not None and shift.kind == "price_rise":
        repriced = _raise_prices(sim, shift)
    saved_failures = (sim.pop.p_fail1, sim.pop.p_fail2)
    if shift is not None and shift.kind == "payment_failure":
        broken = sim.pop.method == PAYMENT_METHODS.index(shift.method)
        sim.pop = replace(
            sim.pop,
            p_fail1=np.where(broken, 1.0, sim.pop.p_fail1),
            p_fail2=np.where(broken, 1.0, sim.pop.p_fail2),
        )
    events: list[EventRows] = []
    payments: list[PaymentRows] = []
    tickets: list[TicketRows] = []
    # decisions on the month's last day take effect on the next month's first (one past the
    # state's window); the cancellations file of the month after lists them
    sim.days = end_day + 1
    for day in range(first_day, end_day):
        _simulate_day(sim, day, events, payments, tickets)
    sim.days = end_day
    sim.pop = replace(sim.pop, p_fail1=saved_failures[0], p_fail2=saved_failures[1])
    truth = truth_table(sim, [(end_day, *sim.truth(end_day))])
    month_events = _concat(events, EventRows)
    if shift is not None and shift.kind == "usage_drop":
        month_events = _drop_usage(sim, month_events, shift, end_day)
    customer_dict = pa.array(sim.pop.ids, pa.string())
    counters = world.counters
    tables = {
        "customers": customers_table(
            sim, np.union1d(joined, repriced[sim.cancel_day[repriced] > first_day])
        ),
        "events": events_table(month_events, customer_dict, counters["event"]),
        "payments": payments_table(
            _concat(payments, PaymentRows), sim, customer_dict, counters["payment"]
        ),
        "tickets": tickets_table(_concat(tickets, TicketRows), customer_dict, counters["ticket"]),
        "cancellations": cancellations_table(sim, first_day, end_day),
    }
    counters["event"] += len(month_events.customer)
    counters["payment"] += tables["payments"].num_rows
    counters["ticket"] += tables["tickets"].num_rows
    label = SUFFIX if shift is None else f"{SUFFIX}-{shift.kind}"
    files = [
        path
        for name, table in tables.items()
        if (path := _write(table, incoming / name, f"{name}_{month:%Y-%m}_{label}.parquet"))
    ]
    _append(truth_dir / TRUTH_FILE, truth)
    if effect is not None and effect.num_rows:
        _append(truth_dir / CONTACT_EFFECT_FILE, effect)
    state.save(sim, counters, truth_dir, months=world.months + 1)
    return Advanced(
        month=month,
        observation_date=following,
        files=files,
        contacted=0 if effect is None else effect.num_rows,
        mean_true_effect=(
            None
            if effect is None or not effect.num_rows
            else float(np.mean(effect["true_effect"].to_numpy()))
        ),
    )


def _drop_usage(sim: Simulation, rows: EventRows, shift: Shift, end_day: int) -> EventRows:
    """Remove ``pct`` percent of the region's events, with a generator of its own so the
    world's draws (and every later month) stay what they would have been."""
    rng = np.random.default_rng([sim.config.seed, end_day])
    in_region = sim.pop.region[rows.customer] == REGIONS.index(shift.region)
    lost = in_region & (rng.random(len(rows.customer)) < shift.pct / 100)
    return EventRows(
        **{name: getattr(rows, name)[~lost] for name in EventRows.__dataclass_fields__}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m churn.synthetic.advance", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--home", type=Path, required=True, help="the CHURN_HOME to advance")
    parser.add_argument("--contacts", type=Path, help="scores export with customer_id, contact")
    parser.add_argument("--shift", choices=SHIFT_KINDS, help="inject a drift into the month")
    parser.add_argument("--region", choices=REGIONS, default="north")
    parser.add_argument("--method", choices=PAYMENT_METHODS, default="card")
    parser.add_argument("--pct", type=float, default=30.0, help="size of the shift in percent")
    args = parser.parse_args(argv)
    shift = Shift(args.shift, args.region, args.pct, args.method) if args.shift else None
    try:
        result = advance(args.home, args.contacts, shift)
    except (state.StateError, ValueError, FileNotFoundError) as error:
        sys.stderr.write(f"advance: {error}\n")
        return 2
    for path in result.files:
        sys.stdout.write(f"{path}\n")
    sys.stderr.write(
        f"simulated {result.month:%Y-%m}; the snapshot that sees it is "
        f"{result.observation_date}: it joins the calendar when these files land"
        + (f"; {result.contacted} contacted" if result.contacted else "")
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
