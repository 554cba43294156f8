"""Held-out sets and plain baselines (docs/method.md §1, [code] hold-outs)."""
import numpy as np
import pytest

from wscl.method import scenario
from wscl.settings.config import ConfigError, resolve
from wscl.data.synthetic import synthetic

DS = synthetic(classes=4, dream_classes=0, train_per_class=20, test_per_class=5, size=8)


def per_class_order(t_rng_seed=0):
    """The per-class random order scenario.build draws (same generator calls)."""
    rng = np.random.default_rng(t_rng_seed)
    orders = {}
    for t in range(2):
        for cls in (2 * t, 2 * t + 1):
            orders[cls] = rng.permutation(scenario.subsample_per_class(np.asarray(DS.train_y), [cls], 0, rng))
        scenario.subsample_per_class(np.asarray(DS.test_y), np.arange(2 * t, 2 * t + 2), 0, rng)
    return orders


@pytest.mark.parametrize("reference", [True, False])
def test_hold_outs_per_class_freezing_buffer_then_validation(reference):
    # 6 validation and 2 freezing-buffer images per task: 3 and 1 per class.
    sc = scenario.build(DS, 2, 2, 6, 2, np.random.default_rng(0), reference=reference)
    order = per_class_order()
    # task 0: the freezing buffer is the first image of each class; only the validation share (3) leaves training
    assert sorted(sc.freeze_idx[0]) == sorted([order[0][0], order[1][0]])
    assert len(sc.val_idx[0]) == 0
    assert sorted(sc.train_idx[0]) == sorted(np.concatenate([order[0][3:], order[1][3:]]))
    # task 1: buffer first; validation next [ours], or one image late [code]; training loses buffer + validation
    start = 2 if reference else 1
    assert sorted(sc.freeze_idx[1]) == sorted([order[2][0], order[3][0]])
    assert sorted(sc.val_idx[1]) == sorted(np.concatenate([order[2][start:start + 3], order[3][start:start + 3]]))
    assert sorted(sc.train_idx[1]) == sorted(np.concatenate([order[2][4:], order[3][4:]]))
    if reference:  # [code] one image per class in neither set, and the last validation image also trained on
        assert not np.isin([order[2][1], order[3][1]], np.concatenate([sc.val_idx[1], sc.train_idx[1]])).any()
        assert np.isin([order[2][4], order[3][4]], sc.val_idx[1]).all()


def test_authors_preset_is_freezing_and_interleaved_dreams_only():
    cfg = resolve({"preset": "authors"})
    w = cfg["wscl"]
    assert w["freezing"]["enabled"] and w["rem"]["source"] == "aux" and w["rem"]["schedule"] == "interleaved"
    assert w["stm"]["size"] == 0 and not w["nrem"]["enabled"] and not w["plasticity"]["enabled"]
    assert cfg["scenario"]["hold_out"] is True and cfg["scenario"]["head_assignment"] == "greedy"


@pytest.mark.parametrize("fidelity", ["reference", "corrected"])
def test_plain_baseline_holds_nothing_out_and_keeps_heads_in_class_order(tiny, tmp_path, fidelity):
    from wscl.run.trainer import Run
    cfg = tiny(preset="base", fidelity=fidelity)
    assert cfg["scenario"]["hold_out"] is False and cfg["scenario"]["head_assignment"] == "class_order"
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
def test_no_tuning_split_leaves_every_set_as_it_was(reference):
    before = scenario.build(DS, 2, 2, 6, 2, np.random.default_rng(0), reference=reference)
    none = scenario.build(DS, 2, 2, 6, 2, np.random.default_rng(0), reference=reference, tune_per_class=0)
    for name in ("train_idx", "val_idx", "freeze_idx", "test_idx"):
        assert all(np.array_equal(a, b) for a, b in zip(getattr(before, name), getattr(none, name))), name
    assert not none.has_tune and all(len(rows) == 0 for rows in none.tune_idx)


@pytest.mark.parametrize("reference", [True, False])
def test_the_tuning_split_is_the_end_of_each_class_order_and_leaves_the_other_sets_alone(reference):
    plain = scenario.build(DS, 2, 2, 6, 2, np.random.default_rng(0), reference=reference)
    sc = scenario.build(DS, 2, 2, 6, 2, np.random.default_rng(0), reference=reference, tune_per_class=4)
    order = per_class_order()
    for t in range(2):
        expected = np.concatenate([order[cls][-4:] for cls in (2 * t, 2 * t + 1)])
        assert sorted(sc.tune_idx[t]) == sorted(expected)
        for name in ("val_idx", "freeze_idx", "test_idx"):
            assert np.array_equal(getattr(sc, name)[t], getattr(plain, name)[t]), name
        # only the training images lose the tuning ones
        assert sorted(sc.train_idx[t]) == sorted(np.setdiff1d(plain.train_idx[t], expected))
        for other in (sc.train_idx[t], sc.val_idx[t], sc.freeze_idx[t]):
            assert not np.isin(sc.tune_idx[t], other).any()


def test_too_few_images_for_the_tuning_split_name_its_setting():
    # task 1, per class: 1 buffer image + 3 validation images, one skipped [code]: 5 held, 15 left to share
    with pytest.raises(scenario.ScenarioError, match=r"has 20 training images, too few to hold out 3 "
                       r"\(scenario.val_per_task\) \+ 1 \(scenario.freeze_buffer_per_task\) \+ 15 "
                       r"\(scenario.tune_per_class\)"):
        scenario.build(DS, 2, 2, 6, 2, np.random.default_rng(0), reference=True, tune_per_class=15)
    sc = scenario.build(DS, 2, 2, 6, 2, np.random.default_rng(0), reference=True, tune_per_class=14)
    assert [len(rows) for rows in sc.tune_idx] == [28, 28]
    assert issubclass(scenario.ScenarioError, ConfigError)
