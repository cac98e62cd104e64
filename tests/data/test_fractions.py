"""Properties of the label split: stratified, nested across fractions, seeded, disjoint from validation, bounded."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ssl_lightning.data.fractions import carve_validation, make_label_split, nested_fraction
from ssl_lightning.errors import UserError

PAPER_FRACTIONS = (0.05, 0.25, 0.5, 1.0)
SETTINGS = settings(max_examples=50, deadline=None)


def shuffled_labels(counts: list[int], order_seed: int) -> np.ndarray:
    """Labels with `counts[c]` images of class c, in a shuffled order (real data sets are not sorted by class)."""
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(order_seed).permutation(labels)


def class_names(count: int) -> list[str]:
    return [f"kind-{chr(ord('a') + c)}" for c in range(count)]


@st.composite
def labelled_sets(draw, min_class: int = 2, max_class: int = 60, max_classes: int = 6) -> np.ndarray:
    counts = draw(st.lists(st.integers(min_class, max_class), min_size=1, max_size=max_classes))
    return shuffled_labels(counts, draw(st.integers(0, 2**16)))


seeds = st.integers(0, 2**31 - 1)
val_splits = st.sampled_from([0.0, 0.1, 0.2, 0.5])


def per_class(labels: np.ndarray, indices: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(labels[indices], minlength=num_classes)


@SETTINGS
@given(labels=labelled_sets(min_class=12), fraction=st.floats(0.05, 1.0), seed=seeds, val_split=val_splits)
def test_labelled_subset_is_stratified(labels, fraction, seed, val_split):
    num_classes = int(labels.max()) + 1
    pool_counts = per_class(labels, carve_validation(labels, val_split, seed)[0], num_classes)
    assume(fraction * pool_counts.min() > 0.5 + 1e-6)  # otherwise a class would get no image (tested below)
    split = make_label_split(labels, fraction, seed, val_split)
    np.testing.assert_array_equal(per_class(labels, split.pool, num_classes), pool_counts)
    labelled_counts = per_class(labels, split.labeled, num_classes)
    assert np.all(np.abs(labelled_counts - fraction * pool_counts) <= 1.0)
    assert np.all(labelled_counts >= 1)


@SETTINGS
@given(labels=labelled_sets(min_class=12), seed=seeds, val_split=st.sampled_from([0.0, 0.1]))
def test_fractions_are_nested_for_one_split_seed(labels, seed, val_split):
    subsets = [set(make_label_split(labels, f, seed, val_split).labeled.tolist()) for f in PAPER_FRACTIONS]
    for smaller, larger in zip(subsets, subsets[1:], strict=False):
        assert smaller <= larger
    assert subsets[-1] == set(make_label_split(labels, 1.0, seed, val_split).pool.tolist())


@SETTINGS
@given(labels=labelled_sets(min_class=4), low=st.floats(0.3, 1.0), high=st.floats(0.3, 1.0), seed=seeds)
def test_any_two_fractions_are_nested(labels, low, high, seed):
    low, high = sorted((low, high))
    small = make_label_split(labels, low, seed, 0.1).labeled
    large = make_label_split(labels, high, seed, 0.1).labeled
    assert set(small.tolist()) <= set(large.tolist())


@SETTINGS
@given(labels=labelled_sets(), fraction=st.floats(0.5, 1.0), seed=seeds, val_split=val_splits)
def test_same_split_seed_gives_the_same_split(labels, fraction, seed, val_split):
    first = make_label_split(labels, fraction, seed, val_split)
    again = make_label_split(labels.copy(), fraction, seed, val_split)
    for name in ("labeled", "pool", "val"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))


@SETTINGS
@given(labels=labelled_sets(min_class=40, max_class=80, max_classes=4), seeds_pair=st.lists(seeds, min_size=2,
       max_size=2, unique=True))
def test_different_split_seeds_give_different_subsets(labels, seeds_pair):
    first, second = (make_label_split(labels, 0.5, seed, 0.1) for seed in seeds_pair)
    assert not np.array_equal(first.labeled, second.labeled)
    assert not np.array_equal(first.val, second.val)


@SETTINGS
@given(labels=labelled_sets(min_class=1), fraction=st.floats(0.5, 1.0), seed=seeds, val_split=val_splits)
def test_pool_and_val_partition_train_and_labelled_stays_in_pool(labels, fraction, seed, val_split):
    split = make_label_split(labels, fraction, seed, val_split)
    pool, val, labelled = (set(a.tolist()) for a in (split.pool, split.val, split.labeled))
    assert len(pool) == len(split.pool) and len(val) == len(split.val) and len(labelled) == len(split.labeled)
    assert not pool & val
    assert pool | val == set(range(len(labels)))
    assert labelled <= pool
    assert not labelled & val


@SETTINGS
@given(labels=labelled_sets(min_class=1), val_split=st.sampled_from([0.1, 0.2, 0.5]), seed=seeds)
def test_validation_split_is_per_class_and_keeps_every_class_in_the_pool(labels, val_split, seed):
    pool, val = carve_validation(labels, val_split, seed)
    num_classes = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=num_classes)
    val_counts = per_class(labels, val, num_classes)
    assert np.all(per_class(labels, pool, num_classes) >= 1)
    assert np.all(val_counts[sizes >= 2] >= 1)  # every class is seen during model selection
    assert np.all(np.abs(val_counts - val_split * sizes) <= 1.0)


out_of_range = st.one_of(
    st.floats(max_value=0.0, allow_nan=False),
    st.floats(min_value=1.0, exclude_min=True, allow_nan=False),
    st.just(math.nan),
)


@SETTINGS
@given(labels=labelled_sets(), fraction=out_of_range, seed=seeds)
def test_fraction_outside_unit_interval_is_a_user_error(labels, fraction, seed):
    with pytest.raises(UserError, match="data.fraction"):
        make_label_split(labels, fraction, seed, 0.1)
    with pytest.raises(UserError, match="data.fraction"):
        nested_fraction(labels, np.arange(len(labels)), fraction, seed)


@SETTINGS
@given(counts=st.lists(st.integers(2, 200), min_size=2, max_size=6), order_seed=st.integers(0, 999),
       scale=st.floats(0.05, 0.8), seed=seeds)
def test_fraction_leaving_a_class_empty_names_that_class(counts, order_seed, scale, seed):
    labels = shuffled_labels(counts, order_seed)
    names = class_names(len(counts))
    pool, _ = carve_validation(labels, 0.1, seed)
    pool_sizes = per_class(labels, pool, len(counts))
    fraction = scale * 0.5 / pool_sizes.max()  # every class gets under half an image
    with pytest.raises(UserError) as caught:
        make_label_split(labels, fraction, seed, 0.1, names)
    message = str(caught.value)
    assert "data.fraction" in message
    assert any(f"'{name}'" in message for name in names)


@SETTINGS
@given(counts=st.lists(st.integers(2, 200), min_size=2, max_size=6), order_seed=st.integers(0, 999),
       fraction=st.floats(0.001, 1.0), seed=seeds)
def test_small_fraction_fails_exactly_when_some_class_would_be_empty(counts, order_seed, fraction, seed):
    labels = shuffled_labels(counts, order_seed)
    names = class_names(len(counts))
    pool, _ = carve_validation(labels, 0.1, seed)
    expected_share = fraction * per_class(labels, pool, len(counts))
    assume(np.all(np.abs(expected_share - 0.5) > 1e-6))  # stay off the rounding boundary
    empty = [name for name, share in zip(names, expected_share, strict=True) if share < 0.5]
    if empty:
        with pytest.raises(UserError) as caught:
            make_label_split(labels, fraction, seed, 0.1, names)
        assert f"'{empty[0]}'" in str(caught.value)
    else:
        split = make_label_split(labels, fraction, seed, 0.1, names)
        assert min(split.labeled_per_class(labels, names).values()) >= 1


def test_labelled_per_class_reports_counts_by_name():
    labels = shuffled_labels([30, 20, 10], order_seed=3)
    split = make_label_split(labels, 0.5, 0, 0.0, ["x", "y", "z"])
    assert split.labeled_per_class(labels, ["x", "y", "z"]) == {"x": 15, "y": 10, "z": 5}


@SETTINGS
@given(labels=labelled_sets(min_class=20), seed=seeds, per_label=st.sampled_from([0.2, 0.5, 1.0, 3.0]))
def test_validation_subset_is_sized_to_the_labels_and_nested(labels, seed, per_label):
    splits = [make_label_split(labels, f, seed, 0.2, val_per_label=per_label) for f in (0.25, 0.5, 1.0)]
    for split in splits:
        assert set(split.selection_val.tolist()) <= set(split.val.tolist())
        for cls in np.unique(labels):
            wanted = math.floor(per_label * (labels[split.labeled] == cls).sum() + 0.5)
            pool = (labels[split.val] == cls).sum()
            assert (labels[split.selection_val] == cls).sum() == min(max(wanted, 1), pool)
    for smaller, larger in zip(splits, splits[1:], strict=False):
        assert set(smaller.selection_val.tolist()) <= set(larger.selection_val.tolist())
    assert all(np.array_equal(split.val, splits[0].val) for split in splits)  # one pool, whatever the fraction


def test_without_val_per_label_the_whole_pool_selects():
    labels = shuffled_labels([30, 30], 0)
    split = make_label_split(labels, 0.5, 0, 0.2)
    assert np.array_equal(split.selection_val, split.val)


def test_balance_cuts_every_class_to_the_smallest_with_the_split_seed():
    labels = shuffled_labels([10, 40, 25], 1)
    balanced = [make_label_split(labels, 1.0, seed, 0.1, balance=True) for seed in (0, 0, 1)]
    counts = per_class(labels, balanced[0].labeled, 3)
    assert counts.tolist() == [counts.min()] * 3 == [9] * 3
    assert np.array_equal(balanced[0].labeled, balanced[1].labeled)
    assert not np.array_equal(balanced[0].labeled, balanced[2].labeled)
    assert len(balanced[0].pool) == len(make_label_split(labels, 1.0, 0, 0.1).pool)  # pretext keeps every image
