"""Train / validation / test splits that respect time.

Snapshots of the same customer a month apart are nearly identical, so a random row split would
let the model see the test customers' near-duplicates and flatter every metric. Splitting by
observation date instead measures what deployment does: learn from the past, score the future.
The embargo removes any date whose label window is still open when the next block starts,
because a label that was not yet known at that point could not have been trained on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np


@dataclass(frozen=True)
class TimeSplit:
    """Observation dates per block, ascending; ``embargoed`` were dropped to avoid overlap."""

    train_dates: tuple[date, ...]
    validation_dates: tuple[date, ...]
    test_dates: tuple[date, ...]
    embargoed: tuple[date, ...] = ()

    def masks(self, observation_dates: Iterable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boolean row masks (train, validation, test) for a column of observation dates."""
        days = _as_days(observation_dates)
        return tuple(  # type: ignore[return-value]
            np.isin(days, _as_days(block))
            for block in (self.train_dates, self.validation_dates, self.test_dates)
        )

    def to_dict(self) -> dict[str, str | list[str]]:
        return {
            "kind": "time",
            "train_dates": [d.isoformat() for d in self.train_dates],
            "validation_dates": [d.isoformat() for d in self.validation_dates],
            "test_dates": [d.isoformat() for d in self.test_dates],
            "embargoed": [d.isoformat() for d in self.embargoed],
        }


def _as_days(values: Iterable) -> np.ndarray:
    """Any date-like column (dates, datetimes, strings, pandas/numpy datetimes) as datetime64[D]."""
    array = np.asarray(list(values) if not hasattr(values, "__array__") else values)
    if array.dtype.kind == "M":
        return array.astype("datetime64[D]")
    return np.array([np.datetime64(str(value)[:10], "D") for value in array.ravel()])


def _to_date(day: np.datetime64) -> date:
    return date.fromisoformat(str(day.astype("datetime64[D]")))


def time_split(
    observation_dates: Iterable,
    *,
    validation_months: int = 1,
    test_months: int = 2,
    horizon_days: int = 30,
) -> TimeSplit:
    """Test = the last ``test_months`` distinct dates, validation = the ones before, train =
    the rest; then embargo train/validation dates whose label window ends after the next
    block's first date (``date + horizon > next_start``)."""
    distinct = np.unique(_as_days(observation_dates))
    needed = validation_months + test_months + 1
    if validation_months < 1 or test_months < 1:
        raise ValueError("time_split needs at least one validation and one test month")
    if distinct.size < needed:
        raise ValueError(
            f"time_split needs at least {needed} matured observation dates (1 train, "
            f"{validation_months} validation, {test_months} test); got {distinct.size}"
        )
    test = distinct[-test_months:]
    validation = distinct[-needed + 1 : -test_months]
    train = distinct[: -needed + 1]
    horizon = np.timedelta64(horizon_days, "D")
    kept_validation = validation[validation + horizon <= test[0]]
    kept_train = train[train + horizon <= validation[0]]
    if kept_train.size == 0 or kept_validation.size == 0:
        spaced = _spaced_split(distinct, validation_months, test_months, horizon)
        if spaced is not None:
            return spaced
        raise ValueError(
            f"a {horizon_days}-day label horizon overlaps the next block for every "
            f"{'training' if kept_train.size == 0 else 'validation'} date; use more months"
        )
    embargoed = np.concatenate(
        [np.setdiff1d(train, kept_train), np.setdiff1d(validation, kept_validation)]
    )
    return TimeSplit(
        train_dates=tuple(_to_date(d) for d in kept_train),
        validation_dates=tuple(_to_date(d) for d in kept_validation),
        test_dates=tuple(_to_date(d) for d in test),
        embargoed=tuple(_to_date(d) for d in np.sort(embargoed)),
    )


def _spaced_split(
    distinct: np.ndarray, validation_months: int, test_months: int, horizon: np.timedelta64
) -> TimeSplit | None:
    """For a label horizon longer than the gap between dates (an inactivity definition of 90
    days on monthly dates): validation is the last dates whose labels close before the test
    block starts, train the dates whose labels close before validation starts; the dates in
    between are embargoed. None when there are too few dates for that."""
    test = distinct[-test_months:]
    before_test = distinct[distinct + horizon <= test[0]]
    if before_test.size <= validation_months:
        return None
    validation = before_test[-validation_months:]
    train = before_test[before_test + horizon <= validation[0]]
    if train.size == 0:
        return None
    used = np.concatenate([train, validation, test])
    return TimeSplit(
        train_dates=tuple(_to_date(d) for d in train),
        validation_dates=tuple(_to_date(d) for d in validation),
        test_dates=tuple(_to_date(d) for d in test),
        embargoed=tuple(_to_date(d) for d in np.setdiff1d(distinct, used)),
    )


@dataclass(frozen=True)
class IndexSplit:
    """Row indices per block, each sorted ascending."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def stratified_split(
    y: Iterable,
    *,
    validation_share: float = 0.15,
    test_share: float = 0.15,
    seed: int = 42,
    groups: Iterable | None = None,
) -> IndexSplit:
    """Random split for data without a time axis (flat customer tables), stratified so each
    block keeps the base rate: with a few percent positives an unlucky draw could otherwise
    leave validation with almost no churners.

    ``groups`` (the customer ids) keeps every row of one group in one block: a flat table that
    grew by snapshots holds the same customer at several dates, and a customer seen in training
    and again in test would make the test score an in-sample one. Groups are stratified by
    whether any of their rows is positive.
    """
    if not (0 < validation_share < 1 and 0 < test_share < 1 and validation_share + test_share < 1):
        raise ValueError("validation_share and test_share must be in (0, 1) and sum below 1")
    labels = np.asarray(list(y) if not hasattr(y, "__array__") else y)
    if groups is None:
        group_of = np.arange(labels.size)
        group_labels = labels
    else:
        _, group_of = np.unique(
            np.asarray(list(groups), dtype=object).astype(str), return_inverse=True
        )
        group_labels = np.zeros(group_of.max() + 1 if group_of.size else 0, dtype=labels.dtype)
        np.maximum.at(group_labels, group_of, labels)
    rng = np.random.default_rng(seed)
    block_of_group = np.zeros(group_labels.size, dtype=np.int8)  # 0 train, 1 validation, 2 test
    for value in np.unique(group_labels):
        members = rng.permutation(np.flatnonzero(group_labels == value))
        n_test = round(test_share * members.size)
        n_validation = round(validation_share * members.size)
        block_of_group[members[:n_test]] = 2
        block_of_group[members[n_test : n_test + n_validation]] = 1
    block = block_of_group[group_of]
    train, validation, test = (np.flatnonzero(block == b) for b in (0, 1, 2))
    if min(train.size, validation.size, test.size) == 0:
        raise ValueError(f"too few rows ({labels.size}) for a three-way split")
    return IndexSplit(train, validation, test)


@dataclass(frozen=True)
class StratifiedSplit:
    """A row split for data without a time axis (a flat customer table observed once).

    ``to_dict`` keeps the date keys of :class:`TimeSplit` (every block holds the one
    observation date) so consumers of a model card's ``data_window`` read both alike, and says
    ``kind: stratified`` so nobody mistakes it for an out-of-time estimate.
    """

    index: IndexSplit
    observation_dates: tuple[date, ...]
    validation_share: float
    test_share: float
    seed: int
    cv_folds: int = 0

    def masks(self, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        masks = []
        for block in (self.index.train, self.index.validation, self.index.test):
            mask = np.zeros(rows, dtype=bool)
            mask[block] = True
            masks.append(mask)
        return masks[0], masks[1], masks[2]

    def to_dict(self) -> dict:
        dates = [d.isoformat() for d in self.observation_dates]
        return {
            "kind": "stratified",
            "train_dates": dates,
            "validation_dates": dates,
            "test_dates": dates,
            "embargoed": [],
            "validation_share": self.validation_share,
            "test_share": self.test_share,
            "seed": self.seed,
            "cv_folds": self.cv_folds,
        }
