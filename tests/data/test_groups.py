"""Splits by patient: no group on two sides, nested budgets of whole groups, the per-image split kept exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssl_lightning.data import load_dataset
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.fractions import make_label_split
from ssl_lightning.data.groups import folder_groups, parse_rule
from ssl_lightning.data.imagefolder import grouped_test_split
from ssl_lightning.data.leakage import check_group_leakage
from ssl_lightning.errors import UserError
from tests.data.patient_tree import PATIENT_TILES, write_patient_tree

FRACTIONS = (0.1, 0.25, 0.5, 1.0)  # the tree is small: 5% of a class rounds to no image
SETTINGS = settings(max_examples=40, deadline=None)


# --- the per-image split as it was before groups (a frozen reference) --------------------------------------------

def _ref_perm(members, seed, cls, purpose):
    return np.random.default_rng([seed, cls, purpose]).permutation(members)


def _ref_round(fraction, size):
    return int(np.floor(fraction * size + 0.5))


def reference_split(labels, fraction, seed, val_split, val_per_label=None):
    pool, val = [], []
    for cls in np.unique(labels):
        members = _ref_perm(np.flatnonzero(labels == cls), seed, int(cls), 0)
        n_val = min(max(1, _ref_round(val_split, len(members))), len(members) - 1) if val_split > 0 else 0
        val.extend(members[:n_val])
        pool.extend(members[n_val:])
    pool, val = np.sort(np.asarray(pool, dtype=np.int64)), np.sort(np.asarray(val, dtype=np.int64))
    labeled = []
    for cls in np.unique(labels):
        members = _ref_perm(pool[labels[pool] == cls], seed, int(cls), 1)
        labeled.extend(members[: _ref_round(fraction, len(members))])
    labeled = np.sort(np.asarray(labeled, dtype=np.int64))
    selection = val
    if val_per_label is not None and len(val):
        chosen = []
        for cls in np.unique(labels[val]):
            members = _ref_perm(val[labels[val] == cls], seed, int(cls), 2)
            wanted = _ref_round(val_per_label, int((labels[labeled] == cls).sum()))
            chosen.extend(members[: min(max(wanted, 1), len(members))])
        selection = np.sort(np.asarray(chosen, dtype=np.int64))
    return labeled, pool, val, selection


def reference_test_split(labels, test_split, seed):
    train, test = [], []
    for cls in np.unique(labels):
        members = np.random.default_rng([seed, int(cls)]).permutation(np.flatnonzero(labels == cls))
        n_test = max(1, int(round(test_split * len(members)))) if len(members) > 1 else 0
        test.extend(members[:n_test])
        train.extend(members[n_test:])
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(test, dtype=np.int64))


@SETTINGS
@given(counts=st.lists(st.integers(2, 80), min_size=1, max_size=5), order=st.integers(0, 999),
       fraction=st.sampled_from((0.05, 0.25, 0.37, 0.5, 0.8, 1.0)), seed=st.integers(0, 2**31 - 1),
       val_split=st.sampled_from([0.0, 0.1, 0.3]), per_label=st.sampled_from([None, 0.2, 1.0]))
def test_one_group_per_image_gives_exactly_the_per_image_split(counts, order, fraction, seed, val_split, per_label):
    labels = np.random.default_rng(order).permutation(np.repeat(np.arange(len(counts)), counts))
    expected = reference_split(labels, fraction, seed, val_split, per_label)
    if min(np.bincount(labels[expected[1]], minlength=len(counts))) * fraction < 0.5:
        return  # a class without labels: an error either way (test_fractions.py)
    split = make_label_split(labels, fraction, seed, val_split, val_per_label=per_label, groups=None)
    for got, want in zip((split.labeled, split.pool, split.val, split.selection_val), expected, strict=True):
        np.testing.assert_array_equal(got, want)


@SETTINGS
@given(counts=st.lists(st.integers(1, 60), min_size=1, max_size=5), order=st.integers(0, 999),
       test_split=st.sampled_from([0.1, 0.2, 0.5, 0.8]), seed=st.integers(0, 2**31 - 1))
def test_one_group_per_image_gives_exactly_the_per_image_test_split(counts, order, test_split, seed):
    labels = np.random.default_rng(order).permutation(np.repeat(np.arange(len(counts)), counts))
    classes = [str(c) for c in range(len(counts))]
    train, test = grouped_test_split(labels, None, test_split, seed, classes)
    want_train, want_test = reference_test_split(labels, test_split, seed)
    np.testing.assert_array_equal(train, want_train)
    np.testing.assert_array_equal(test, want_test)


# --- groups on a generated class/patient/x40 tree -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("patients")
    owner = write_patient_tree(root)
    return root, owner


def load_tree(root, **options):
    return load_dataset(DataConfig(name="imagefolder", root=str(root), include="**/x40/*.png", **options))


def parts(images, split) -> dict[str, set[str]]:
    groups = images.train_groups
    return {"labeled": set(groups[split.labeled]), "val": set(groups[split.val]), "pool": set(groups[split.pool]),
            "test": set(images.test_groups)}


@pytest.mark.parametrize("test_seed", [42, 7])
def test_no_patient_is_in_two_parts_for_any_seed_and_fraction(tree, test_seed):
    root, owner = tree
    images = load_tree(root, test_split_seed=test_seed)
    assert set(images.train_groups) | set(images.test_groups) == set(owner)
    labels = images.train_labels.numpy()
    for seed in range(6):
        for fraction in FRACTIONS:
            split = make_label_split(labels, fraction, seed, 0.1, images.classes, 0.2, groups=images.train_groups)
            found = parts(images, split)
            assert found["labeled"] <= found["pool"]
            for a, b in (("pool", "val"), ("pool", "test"), ("val", "test")):
                assert not found[a] & found[b], (seed, fraction, a, b)
            check_group_leakage(images, split.labeled, split.val, split.pool)  # the guard agrees
            # every class is on every side, and the test split holds a patient of every class
            for part in (split.val, split.labeled):
                assert set(labels[part]) == set(range(3))
            assert set(images.test_labels.tolist()) == set(range(3))


def test_fractions_are_nested_and_label_whole_patients(tree):
    root, _ = tree
    images = load_tree(root)
    labels, groups = images.train_labels.numpy(), images.train_groups
    for seed in range(5):
        splits = [make_label_split(labels, f, seed, 0.1, images.classes, groups=groups) for f in FRACTIONS]
        for smaller, larger in zip(splits, splits[1:], strict=False):
            assert set(smaller.labeled) <= set(larger.labeled)
        assert set(splits[-1].labeled) == set(splits[-1].pool)
        for split, fraction in zip(splits, FRACTIONS, strict=True):
            labelled_groups = set(groups[split.labeled])
            whole = {g for g in set(groups[split.pool]) if set(np.flatnonzero(groups == g)) <= set(split.labeled)}
            assert labelled_groups == whole  # a patient is labelled with all its tiles or not at all
            pool_counts = np.bincount(labels[split.pool], minlength=3)
            took = np.bincount(labels[split.labeled], minlength=3)
            assert np.all(took >= np.floor(fraction * pool_counts + 0.5))  # at least the share, whole patients
            share = split.labeled_share_per_class(labels, images.classes)
            assert list(share.values()) == [round(t / p, 4) for t, p in zip(took, pool_counts, strict=True)]


def test_group_by_none_reproduces_the_per_image_split(tree):
    root, _ = tree
    grouped, plain = load_tree(root), load_tree(root, group_by="none")
    assert plain.train_groups is None and plain.test_groups is None
    assert grouped.train_groups is not None
    train_files = np.concatenate([plain.train_files, plain.test_files])
    labels = np.concatenate([plain.train_labels.numpy(), plain.test_labels.numpy()])
    order = np.argsort(train_files)
    files, labels = train_files[order], labels[order]
    want_train, want_test = reference_test_split(labels, 0.2, 42)
    assert sorted(plain.train_files) == sorted(files[want_train])
    assert sorted(plain.test_files) == sorted(files[want_test])
    split = make_label_split(plain.train_labels.numpy(), 0.5, 3, 0.1, plain.classes, groups=plain.train_groups)
    expected = reference_split(plain.train_labels.numpy(), 0.5, 3, 0.1)
    np.testing.assert_array_equal(split.labeled, expected[0])
    np.testing.assert_array_equal(split.val, expected[2])


def test_built_in_data_sets_have_one_group_per_image():
    images = load_dataset(DataConfig(name="synthetic", train_size=40, test_size=8, image_size=8))
    assert images.train_groups is None and images.test_groups is None


def test_group_counts_are_logged_once(tree, caplog):
    root, _ = tree
    with caplog.at_level("INFO", logger="ssl_lightning"):
        load_tree(root)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("grouping by")]
    assert lines == ["grouping by the first folder below the class folder: 4 / 5 / 4 groups "
                     "(benign / malignant / normal)"]


# --- val_seed: one validation (and pretext) pool for every split seed -------------------------------------------

def test_validation_pool_follows_val_seed_not_split_seed(tree):
    root, _ = tree
    images = load_tree(root)
    labels, groups = images.train_labels.numpy(), images.train_groups
    splits = [make_label_split(labels, 0.25, s, 0.1, groups=groups, val_seed=0) for s in range(6)]
    assert all(np.array_equal(s.val, splits[0].val) and np.array_equal(s.pool, splits[0].pool) for s in splits)
    assert len({tuple(s.labeled) for s in splits}) > 1  # the label subsets still vary
    assert np.array_equal(make_label_split(labels, 0.25, 4, 0.1, groups=groups).val,
                          make_label_split(labels, 0.25, 9, 0.1, groups=groups, val_seed=4).val)  # None = split seed


def test_val_seed_defaults_to_the_split_seed_in_the_data_config():
    assert DataConfig(split_seed=5).validation_seed == 5
    assert DataConfig(split_seed=5, val_seed=2).validation_seed == 2


# --- labels_per_class ---------------------------------------------------------------------------------------------

@SETTINGS
@given(counts=st.lists(st.integers(12, 60), min_size=2, max_size=5), order=st.integers(0, 999),
       seed=st.integers(0, 2**31 - 1))
def test_labels_per_class_is_exact_and_nested(counts, order, seed):
    labels = np.random.default_rng(order).permutation(np.repeat(np.arange(len(counts)), counts))
    subsets = []
    for n in (1, 2, 5, 10):
        split = make_label_split(labels, 1.0, seed, 0.1, labels_per_class=n, val_per_label=0.2)
        assert np.bincount(labels[split.labeled], minlength=len(counts)).tolist() == [n] * len(counts)
        wanted = [min(max(int(np.floor(0.2 * n + 0.5)), 1), int((labels[split.val] == c).sum()))
                  for c in range(len(counts))]
        assert np.bincount(labels[split.selection_val], minlength=len(counts)).tolist() == wanted
        subsets.append(set(split.labeled.tolist()))
    assert all(a <= b for a, b in zip(subsets, subsets[1:], strict=False))
    fraction = make_label_split(labels, 0.5, seed, 0.1).labeled  # the same permutation as the fractions
    one = make_label_split(labels, 1.0, seed, 0.1, labels_per_class=1).labeled
    assert set(one.tolist()) <= set(fraction.tolist())


def test_labels_per_class_takes_whole_patients_until_n(tree):
    root, _ = tree
    images = load_tree(root)
    labels, groups = images.train_labels.numpy(), images.train_groups
    previous: set[int] = set()
    for n in (1, 3, 6):
        split = make_label_split(labels, 1.0, 0, 0.1, images.classes, labels_per_class=n, groups=groups)
        counts = np.bincount(labels[split.labeled], minlength=3)
        assert np.all(counts >= n)
        for g in set(groups[split.labeled]):
            assert set(np.flatnonzero(groups == g)) <= set(split.labeled)
        assert previous <= set(split.labeled.tolist())
        previous = set(split.labeled.tolist())


def test_labels_per_class_larger_than_a_class_names_it():
    labels = np.repeat(np.arange(2), [30, 8])
    with pytest.raises(UserError, match=r"labels_per_class=10 but class 'small' has only 7 .*<=7"):
        make_label_split(labels, 1.0, 0, 0.1, ["big", "small"], labels_per_class=10)


def test_labels_per_class_and_a_fraction_together_are_refused():
    with pytest.raises(UserError, match="both set the label budget"):
        DataConfig.from_mapping({"fraction": 0.25, "labels_per_class": 5})
    with pytest.raises(UserError, match="whole number >= 1"):
        DataConfig.from_mapping({"labels_per_class": 0})
    assert DataConfig.from_mapping({"labels_per_class": 5}).labels_per_class == 5


# --- rules and impossible splits ----------------------------------------------------------------------------------

def test_group_rules():
    relative = ["p1/x40/a.png", "p1/x40/b.png", "p2/x10/c.png", "d.png"]
    owners = ["c", "c", "c", "c"]
    assert folder_groups(parse_rule("auto"), relative, owners).tolist() == ["p1", "p1", "p2", "c/d.png"]
    assert folder_groups(parse_rule("auto"), ["a.png", "b.png"], owners[:2]) is None
    assert folder_groups(parse_rule("none"), relative, owners) is None
    assert folder_groups(parse_rule("folder:2"), relative[:3], owners[:3]).tolist() == ["x40", "x40", "x10"]
    assert folder_groups(parse_rule(r"^(p\d)/"), relative[:3], owners[:3]).tolist() == ["p1", "p1", "p2"]
    with pytest.raises(UserError, match="only 0 folder level"):
        folder_groups(parse_rule("folder:1"), relative, owners)
    with pytest.raises(UserError, match="finds no group id in d.png"):
        folder_groups(parse_rule(r"^(p\d)/"), relative, owners)
    for bad, message in (("p\\d", "no capture group"), ("(p", "not a valid regular expression"),
                         ("folder:0", "count from 1"), ("folder:x", "folder:<k>")):
        with pytest.raises(UserError, match=message):
            parse_rule(bad)


def test_a_class_with_one_patient_is_refused_naming_it(tmp_path):
    write_patient_tree(tmp_path, {"benign": [4, 5, 3], "rare": [6]}, magnifications=("x40",))
    with pytest.raises(UserError, match=r"class 'rare' has images in 1 group\(s\).*group_by=none"):
        load_tree(tmp_path)


def test_too_few_patients_for_a_validation_pool_is_refused(tmp_path):
    write_patient_tree(tmp_path, {"benign": [4, 5, 3, 4], "rare": [6, 5]}, magnifications=("x40",))
    images = load_tree(tmp_path)  # one 'rare' patient in test, one in training
    with pytest.raises(UserError, match=r"no validation pool for class 'rare'.*1 group\(s\)"):
        make_label_split(images.train_labels.numpy(), 0.5, 0, 0.1, images.classes, groups=images.train_groups)


def test_official_split_with_one_patient_on_both_sides_is_refused(tmp_path):
    write_patient_tree(tmp_path / "train", {"benign": [3, 4, 5], "malignant": [4, 4, 3]}, magnifications=("x40",))
    write_patient_tree(tmp_path / "test", {"benign": [2], "malignant": [1]}, magnifications=("x40",))
    (tmp_path / "test" / "benign" / "benign-p0").rename(tmp_path / "test" / "benign" / "benign-p7")
    images = load_tree(tmp_path)
    split = make_label_split(images.train_labels.numpy(), 1.0, 0, 0.1, images.classes, groups=images.train_groups)
    with pytest.raises(UserError, match=r"group 'malignant-p0' is in both the .* and the test split"):
        check_group_leakage(images, split.labeled, split.val, split.pool)


@SETTINGS
@given(sizes=st.lists(st.integers(1, 9), min_size=12, max_size=30), mix=st.integers(0, 999),
       seed=st.integers(0, 2**31 - 1), val_split=st.sampled_from([0.1, 0.3]))
def test_random_groups_never_cross_parts_and_budgets_nest(sizes, mix, seed, val_split):
    rng = np.random.default_rng(mix)
    groups = np.repeat([f"g{i}" for i in range(len(sizes))], sizes)
    group_class = rng.integers(0, 2, len(sizes))
    labels = np.repeat(group_class, sizes)
    noisy = rng.random(len(labels)) < 0.1  # a few tiles of the other class: mixed groups count for their majority
    labels = np.where(noisy, 1 - labels, labels)
    if len(set(group_class.tolist())) < 2 or min(np.bincount(group_class, minlength=2)) < 3:
        return
    previous: set[int] = set()
    for fraction in FRACTIONS:
        try:
            split = make_label_split(labels, fraction, seed, val_split, ["a", "b"], 0.2, groups=groups)
        except UserError:
            return  # too few images for a class at this fraction: reported, never silently leaked
        assert not set(groups[split.pool]) & set(groups[split.val])
        assert set(groups[split.selection_val]) <= set(groups[split.val])
        assert previous <= set(split.labeled.tolist())
        previous = set(split.labeled.tolist())
        for g in set(groups[split.labeled]):
            assert set(np.flatnonzero(groups == g)) <= previous


def test_tree_has_the_written_patients(tree):
    root, owner = tree
    images = load_tree(root)
    assert len(images.train_labels) + len(images.test_labels) == sum(map(sum, PATIENT_TILES.values()))
    for groups, labels in ((images.train_groups, images.train_labels), (images.test_groups, images.test_labels)):
        assert all(images.classes[label] == owner[g] for g, label in zip(groups, labels.tolist(), strict=True))
