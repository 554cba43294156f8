"""Held-out sets and plain baselines (docs/method.md §1, [code] hold-outs), independent random streams."""
import dataclasses

import numpy as np
import pytest

from wscl.data.synthetic import synthetic
from wscl.method import scenario
from wscl.settings.config import ConfigError, resolve

DS = synthetic(classes=4, dream_classes=0, train_per_class=20, test_per_class=5, size=8)


SIZES = scenario.Sizes(n_tasks=2, classes_per_task=2, val_per_task=6, freeze_buffer_per_task=2)


def build(seed=0, reference=False, **sizes):
    return scenario.build(DS, dataclasses.replace(SIZES, **sizes), seed, reference=reference)


def of_class(rows, cls):
    return rows[np.asarray(DS.train_y)[rows] == cls]


@pytest.mark.parametrize("reference", [True, False])
def test_hold_outs_per_class_freezing_buffer_then_validation(reference):
    # 6 validation and 2 freezing-buffer images per task: 3 and 1 per class, of 20 images per class.
    sc = build(reference=reference)
    # task 0: no validation split; only the validation share (3) leaves training, the buffer image among it
    assert len(sc.val_idx[0]) == 0
    for cls in (0, 1):
        assert len(of_class(sc.freeze_idx[0], cls)) == 1 and len(of_class(sc.train_idx[0], cls)) == 17
    assert not np.isin(sc.freeze_idx[0], sc.train_idx[0]).any()
    # task 1: training loses buffer + validation (4 per class)
    for cls in (2, 3):
        fb, va, tr = (of_class(rows[1], cls) for rows in (sc.freeze_idx, sc.val_idx, sc.train_idx))
        assert (len(fb), len(va), len(tr)) == (1, 3, 16)
        assert not np.isin(fb, np.concatenate([va, tr])).any()
        everything = np.flatnonzero(np.asarray(DS.train_y) == cls)
        if reference:  # [code] one image in neither set, and one validation image also trained on
            assert np.isin(va, tr).sum() == 1
            assert len(np.setdiff1d(everything, np.concatenate([fb, va, tr]))) == 1
        else:          # [ours] the three sets split the class
            assert not np.isin(va, tr).any()
            assert sorted(np.concatenate([fb, va, tr])) == sorted(everything)


SUBSETS = ("train_idx", "val_idx", "freeze_idx", "test_idx", "tune_idx")


def changed(a, b) -> set[str]:
    return {name for name in SUBSETS
            if not all(np.array_equal(x, y) for x, y in zip(getattr(a, name), getattr(b, name)))}


@pytest.mark.parametrize("reference", [True, False])
def test_a_subsets_size_changes_that_subset_only(reference):
    """Each subset draws from a stream of its own (run seed, its name, class)."""
    base = {"tune_per_class": 2, "test_per_class": 3}
    plain = build(reference=reference, **base)
    assert changed(plain, build(reference=reference, **base)) == set()
    assert changed(plain, build(reference=reference, **{**base, "test_per_class": 4})) == {"test_idx"}
    assert changed(plain, build(reference=reference, **base, train_per_class=10)) == {"train_idx"}
    # held-out sets leave training; one drawn earlier (tuning, then buffer, then validation) moves a later one
    # only by the images both drew
    assert changed(plain, build(reference=reference, **base, val_per_task=4)) == {"val_idx", "train_idx"}
    for bigger in ({"freeze_buffer_per_task": 4}, {"tune_per_class": 5}):
        other = build(reference=reference, **{**base, **bigger})
        grown = "freeze_idx" if "freeze_buffer_per_task" in bigger else "tune_idx"
        assert grown in changed(plain, other)
        assert not changed(plain, other) & ({"test_idx", "tune_idx"} - {grown})
        for t in range(2):  # what a later set loses is only what the grown set took
            lost = np.setdiff1d(plain.val_idx[t], other.val_idx[t])
            assert np.isin(lost, getattr(other, grown)[t]).all()
    assert changed(plain, build(seed=1, reference=reference, **base)) == set(SUBSETS)


def test_authors_preset_is_freezing_and_interleaved_dreams_only():
    cfg = resolve({"preset": "authors"})
    w = cfg.wscl
    assert w.freezing.enabled and w.rem.source == "aux" and w.rem.schedule == "interleaved"
    assert w.stm.size == 0 and not w.nrem.enabled and not w.plasticity.enabled
    assert cfg.scenario.hold_out is True and cfg.scenario.head_assignment == "greedy"


@pytest.mark.parametrize("fidelity", ["reference", "corrected"])
def test_plain_baseline_holds_nothing_out_and_keeps_heads_in_class_order(tiny, tmp_path, fidelity):
    from wscl.run.trainer import Run
    cfg = tiny(preset="base", fidelity=fidelity)
    assert cfg.scenario.hold_out is False and cfg.scenario.head_assignment == "class_order"
    run = Run(cfg, tmp_path, quiet=True, log=lambda *_: None)
    metrics = run.run()
    assert all(len(v) == 0 for v in run.scenario.val_idx + run.scenario.freeze_idx)
    assert sum(map(len, run.scenario.train_idx)) == 6 * 80
    assert [t["heads"] for t in metrics["tasks"]] == [[0, 1], [2, 3], [4, 5]]


def test_freezing_without_held_out_images_fails_at_config_time():
    with pytest.raises(ConfigError, match="scenario.hold_out is false"):
        resolve({"preset": "authors", "scenario": {"hold_out": False}})
    with pytest.raises(ConfigError, match="scenario.val_per_task is 0"):
        resolve({"scenario": {"val_per_task": 0}})


# -- the tuning split [ours] (docs/method.md, Tuning split) ----------------------------------------------------

@pytest.mark.parametrize("reference", [True, False])
def test_the_tuning_split_is_apart_from_every_other_set(reference):
    sc = build(reference=reference, tune_per_class=4)
    for t in range(2):
        assert len(sc.tune_idx[t]) == 8
        for other in (sc.train_idx[t], sc.val_idx[t], sc.freeze_idx[t]):
            assert not np.isin(sc.tune_idx[t], other).any()
    assert not build(reference=reference).has_tune


def test_too_few_images_for_the_tuning_split_name_its_setting():
    # task 1, per class: 1 buffer image + 3 validation images, one skipped [code]: 5 held, 15 left to share
    with pytest.raises(scenario.ScenarioError, match=r"has 20 training images, too few to hold out 3 "
                       r"\(scenario.val_per_task\) \+ 1 \(scenario.freeze_buffer_per_task\) \+ 15 "
                       r"\(scenario.tune_per_class\)"):
        build(reference=True, tune_per_class=15)
    sc = build(reference=True, tune_per_class=14)
    assert [len(rows) for rows in sc.tune_idx] == [28, 28]
    assert issubclass(scenario.ScenarioError, ConfigError)
