"""LightGBM's TreeSHAP values, precomputed per tree so a batch costs a few numpy gathers.

Why: the service returns each score's top reasons, and LightGBM's ``pred_contrib`` walks every
tree's paths for every row, which costs about ten times the rest of a batch request (``make bench``
times both). Our trees are small (``num_leaves`` 7: six splits), and for a fixed tree the path-
dependent TreeSHAP values of a row depend only on which way the row goes at each split: at most
``2**6 = 64`` *split patterns*. So we compute, once per model, the SHAP values of every (tree,
pattern) pair with the exact Shapley formula over the tree's own features, and a request only has
to

1. bin each feature value against the thresholds the trees use (one ``searchsorted`` per column),
2. look up every split's decision in a per-split table indexed by bin (one gather),
3. pack each tree's eight decision bytes into its pattern number (one uint64 multiply), and
4. gather that pattern's SHAP values and add them up per feature (one gather, one ``reduceat``).

The values are the ones ``pred_contrib`` returns (same cover weights, same missing-value rules,
parity tested to 1e-9), not an approximation. Shapes we do not handle (more than eight splits in
a tree, ``zero_as_missing``, multiclass, a big-endian machine) make :func:`build_explainer` raise
:class:`UnsupportedModel`, and the model keeps calling ``pred_contrib``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from math import factorial
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import lightgbm

MAX_SPLITS_PER_TREE = 8
"""A tree's decisions are eight bytes, read as one uint64 to make its pattern number."""


@dataclass(frozen=True)
class _Split:
    index: int  # LightGBM's split_index: the bit this split's decision occupies
    feature: int
    categorical: bool
    threshold: float  # numeric splits
    categories: frozenset[int]  # categorical splits: codes that go left
    default_left: bool
    missing_type: str


class UnsupportedModel(ValueError):
    """The booster uses a feature this module does not reproduce exactly."""


@dataclass(frozen=True)
class TreeExplainer:
    """The tables; :meth:`contributions` is the only thing a request calls."""

    n_features: int
    bin_edges: tuple[np.ndarray, ...]  # per feature: sorted thresholds (numeric) or empty
    categorical: np.ndarray  # per feature: bool
    n_bins: np.ndarray  # per feature: bins including the trailing missing bin
    slot_feature: np.ndarray  # (trees * 8,) feature each decision slot reads
    slot_offset: np.ndarray  # (trees * 8,) where the slot's table starts in ``decision_table``
    decision_table: np.ndarray  # flat bool: goes left, per (split, bin)
    pattern_base: np.ndarray  # (trees,) row offset of each tree in ``phi``
    phi: np.ndarray  # (sum of 2**splits, features per tree) SHAP values per pattern
    phi_feature_order: np.ndarray  # columns of the flattened gather, sorted by feature
    phi_feature_starts: np.ndarray  # reduceat boundaries, one per feature that trees use
    phi_features: np.ndarray  # which feature each reduceat segment belongs to

    @property
    def n_trees(self) -> int:
        return len(self.pattern_base)

    def bins(self, X: np.ndarray) -> np.ndarray:
        """Each value's bin: numeric by threshold rank, categorical by code; missing last."""
        result = np.empty(X.shape, dtype=np.int32)
        for j in range(self.n_features):
            column = X[:, j]
            missing = self.n_bins[j] - 1
            if self.categorical[j]:
                # LightGBM truncates the value to int; NaN, negatives and unseen codes go right,
                # exactly like the shared "missing" bin, whose table entries are all False.
                with np.errstate(invalid="ignore"):
                    valid = (column > -1) & (column < missing)
                result[:, j] = np.where(valid, np.trunc(np.nan_to_num(column)), missing)
            else:
                binned = np.searchsorted(self.bin_edges[j], column, side="left")
                result[:, j] = np.where(np.isnan(column), missing, binned)
        return result

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature SHAP values in log-odds, ``(rows, features)``, like ``pred_contrib``
        without its last (expected value) column."""
        n = X.shape[0]
        slots = np.take(self.bins(X), self.slot_feature, axis=1)
        goes_left = self.decision_table[slots + self.slot_offset]  # (n, trees * 8) bool
        rows = _pack_decisions(goes_left).astype(np.intp) + self.pattern_base  # (n, trees)
        flat = np.take(self.phi, rows, axis=0).reshape(n, -1)
        result = np.zeros((n, self.n_features), dtype=np.float64)
        if len(self.phi_features):
            ordered = np.take(flat, self.phi_feature_order, axis=1)
            result[:, self.phi_features] = np.add.reduceat(ordered, self.phi_feature_starts, axis=1)
        return result


_BYTE_BITS_TO_BYTE = np.uint64(0x0102040810204080)
"""Multiplying eight 0/1 bytes (one uint64) by this moves byte i's bit to bit 56 + i."""


def _pack_decisions(goes_left: np.ndarray) -> np.ndarray:
    """Each tree's eight decisions (bit i = split i went left) as one pattern number.

    ``np.packbits`` does this but is a per-row loop in C over bits; reading the eight bools as
    one little-endian uint64 and multiplying gathers the bits in one vectorized step, about
    fifty times faster.
    """
    words = np.ascontiguousarray(goes_left).view(np.uint64)
    return (words * _BYTE_BITS_TO_BYTE) >> np.uint64(56)


def build_explainer(booster: lightgbm.Booster, n_features: int) -> TreeExplainer:
    """Tables for ``booster``'s trees; raises :class:`UnsupportedModel` for shapes we don't
    reproduce exactly, so callers can keep ``pred_contrib``."""
    if sys.byteorder != "little":
        raise UnsupportedModel("decision packing assumes a little-endian machine")
    dump = booster.dump_model()
    if dump.get("num_tree_per_iteration", 1) != 1:
        raise UnsupportedModel("multiclass boosters are not supported")
    trees = [info["tree_structure"] for info in dump["tree_info"]]
    splits_per_tree = [_splits(tree) for tree in trees]
    categorical, bin_edges, n_bins = _feature_bins(splits_per_tree, n_features)

    tables: list[np.ndarray] = [np.zeros(int(n_bins.max()), dtype=bool)]  # padding slots
    slot_feature = np.zeros((len(trees), MAX_SPLITS_PER_TREE), dtype=np.intp)
    slot_offset = np.zeros((len(trees), MAX_SPLITS_PER_TREE), dtype=np.int32)
    offset = len(tables[0])
    phi_blocks: list[np.ndarray] = []
    phi_slots_feature: list[np.ndarray] = []
    pattern_base = np.zeros(len(trees), dtype=np.intp)
    slots = max([1, *(len({s.feature for s in splits}) for splits in splits_per_tree)])
    row = 0
    for t, (tree, splits) in enumerate(zip(trees, splits_per_tree, strict=True)):
        for split in splits:
            table = _decision_table(split, bin_edges[split.feature], int(n_bins[split.feature]))
            slot_feature[t, split.index] = split.feature
            slot_offset[t, split.index] = offset
            tables.append(table)
            offset += len(table)
        features = sorted({split.feature for split in splits})
        block = np.zeros((2 ** len(splits), slots), dtype=np.float64)
        block[:, : len(features)] = _pattern_shap(tree, splits, features)
        phi_blocks.append(block)
        # Unused slots point at feature index n_features, a column dropped after the sum.
        phi_slots_feature.append(np.array(features + [n_features] * (slots - len(features))))
        pattern_base[t] = row
        row += len(block)

    slot_feature_flat = np.concatenate(phi_slots_feature) if phi_slots_feature else np.array([])
    order = np.argsort(slot_feature_flat, kind="stable")
    sorted_features = slot_feature_flat[order]
    used = sorted_features < n_features
    order, sorted_features = order[used], sorted_features[used]
    features_present, starts = np.unique(sorted_features, return_index=True)
    return TreeExplainer(
        n_features=n_features,
        bin_edges=bin_edges,
        categorical=categorical,
        n_bins=n_bins,
        slot_feature=slot_feature.reshape(-1),
        slot_offset=slot_offset.reshape(-1),
        decision_table=np.concatenate(tables),
        pattern_base=pattern_base,
        phi=np.concatenate(phi_blocks) if phi_blocks else np.zeros((0, slots)),
        phi_feature_order=order.astype(np.intp),
        phi_feature_starts=starts.astype(np.intp),
        phi_features=features_present.astype(np.intp),
    )


def _feature_bins(
    splits_per_tree: list[list[_Split]], n_features: int
) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
    """Per feature: whether it is split as a category, the sorted thresholds the trees use
    (numeric), and its number of bins: ``len(thresholds) + 1`` value bins or one per category
    code, plus a last bin for missing values."""
    categorical = np.zeros(n_features, dtype=bool)
    thresholds: list[set[float]] = [set() for _ in range(n_features)]
    n_categories = np.zeros(n_features, dtype=np.int64)
    for splits in splits_per_tree:
        if len(splits) > MAX_SPLITS_PER_TREE:
            raise UnsupportedModel(f"a tree has {len(splits)} splits (> {MAX_SPLITS_PER_TREE})")
        for split in splits:
            if split.missing_type == "Zero":
                raise UnsupportedModel("zero_as_missing splits are not supported")
            if split.categorical:
                categorical[split.feature] = True
                n_categories[split.feature] = max(
                    n_categories[split.feature], max(split.categories, default=-1) + 1
                )
            else:
                thresholds[split.feature].add(split.threshold)
    if any(categorical[j] and thresholds[j] for j in range(n_features)):
        raise UnsupportedModel("a feature is split both as numeric and as categorical")
    bin_edges = tuple(np.array(sorted(t), dtype=np.float64) for t in thresholds)
    n_bins = np.array(
        [
            (n_categories[j] if categorical[j] else len(bin_edges[j]) + 1) + 1
            for j in range(n_features)
        ],
        dtype=np.int64,
    )
    return categorical, bin_edges, n_bins


def _splits(node: dict[str, Any]) -> list[_Split]:
    """Every split of a dumped tree, in no particular order (``index`` says where it goes)."""
    if "split_index" not in node:
        return []
    categorical = node["decision_type"] == "=="
    split = _Split(
        index=int(node["split_index"]),
        feature=int(node["split_feature"]),
        categorical=categorical,
        threshold=float("nan") if categorical else float(node["threshold"]),
        categories=(
            frozenset(int(c) for c in str(node["threshold"]).split("||"))
            if categorical
            else frozenset()
        ),
        default_left=bool(node["default_left"]),
        missing_type=str(node["missing_type"]),
    )
    return [split, *_splits(node["left_child"]), *_splits(node["right_child"])]


def _decision_table(split: _Split, edges: np.ndarray, n_bins: int) -> np.ndarray:
    """Whether a value in each bin goes left at ``split`` (LightGBM's decision rules)."""
    missing = n_bins - 1
    if split.categorical:
        table = np.zeros(n_bins, dtype=bool)
        table[[c for c in split.categories if c < missing]] = True
        return table  # the missing bin (NaN, negative, unseen) goes right
    rank = int(np.searchsorted(edges, split.threshold, side="left"))
    table = np.arange(n_bins) <= rank  # bin b holds values in (edges[b-1], edges[b]]
    if split.missing_type == "NaN":
        table[missing] = split.default_left
    else:  # "None": LightGBM reads NaN as 0.0
        table[missing] = split.threshold >= 0.0
    return table


def _node_count(node: dict[str, Any]) -> float:
    return float(node["internal_count"] if "split_index" in node else node["leaf_count"])


def _pattern_shap(tree: dict[str, Any], splits: list[_Split], features: list[int]) -> np.ndarray:
    """SHAP values ``(2**splits, len(features))`` of one tree for every split pattern.

    Path-dependent TreeSHAP is the Shapley value of ``v(S)``: walk the tree, follow the row at
    splits on features in ``S`` and average the children by training cover elsewhere. With at
    most eight splits and features, all ``v(S)`` for all patterns is a small array computation.
    """
    n_patterns, m = 2 ** len(splits), len(features)
    patterns = np.arange(n_patterns)
    subsets = np.arange(2**m)
    local = {feature: k for k, feature in enumerate(features)}

    def value(node: dict[str, Any]) -> np.ndarray:  # (subsets, patterns)
        if "split_index" not in node:
            return np.full((len(subsets), n_patterns), float(node["leaf_value"]))
        left, right = value(node["left_child"]), value(node["right_child"])
        goes_left = ((patterns >> int(node["split_index"])) & 1).astype(bool)
        known = ((subsets >> local[int(node["split_feature"])]) & 1).astype(bool)
        followed = np.where(goes_left[None, :], left, right)
        total = float(node["internal_count"])
        averaged = (
            _node_count(node["left_child"]) * left + _node_count(node["right_child"]) * right
        ) / total
        return np.where(known[:, None], followed, averaged)

    if not splits:
        return np.zeros((n_patterns, 0))
    v = value(tree)
    sizes = np.array([bin(s).count("1") for s in subsets])
    weights = np.array([factorial(k) * factorial(m - k - 1) / factorial(m) for k in range(m)])
    phi = np.empty((n_patterns, m))
    for k in range(m):
        without = subsets[((subsets >> k) & 1) == 0]
        phi[:, k] = weights[sizes[without]] @ (v[without | (1 << k)] - v[without])
    return phi
