import numpy as np
import pytest
import torch

import wscl.method.freezing as freezing
from wscl.run.trainer import Run


def run_with_scores(tiny, tmp_path, monkeypatch, score_of_depth, **overrides):
    """A tiny run whose freezing copies are scored by ``score_of_depth(copy_depth, current_depth)``."""
    calls = []

    def fake_score(learner, spec):
        calls.append(learner.frozen_blocks)
        return score_of_depth(learner.frozen_blocks)

    monkeypatch.setattr(freezing, "score", fake_score)
    run = Run(tiny(**overrides), tmp_path, quiet=True, log=lambda *_: None)
    return run, calls


def test_ties_go_to_the_least_freezing(tiny, tmp_path, monkeypatch):
    run, calls = run_with_scores(tiny, tmp_path, monkeypatch, lambda depth: 1.0)
    metrics = run.run()
    assert metrics["frozen_blocks_per_task"] == [0, 0, 0]
    assert calls == list(range(7)) * 2  # tasks 1 and 2 each try depths 0..6


def test_freezing_accumulates_across_tasks(tiny, tmp_path, monkeypatch):
    # Prefer exactly one more block than before: task 1 freezes 1 block, task 2 a second one.
    state = {"target": 1}
    run, calls = run_with_scores(tiny, tmp_path, monkeypatch, lambda depth: abs(depth - state["target"]))
    original = freezing.adopt

    def adopt_and_raise_target(learner, result, reference):
        state["target"] += 1
        return original(learner, result, reference)

    monkeypatch.setattr(freezing, "adopt", adopt_and_raise_target)
    metrics = run.run()
    assert metrics["frozen_blocks_per_task"] == [0, 1, 2]
    assert calls == list(range(0, 7)) + list(range(1, 7))  # already-frozen blocks are no candidates
    assert metrics["frozen_block_names_per_task"][-1] == ["layer1.0", "layer1.1"]


@pytest.mark.parametrize("fidelity", ["reference", "corrected"])
def test_frozen_parameters_do_not_change_over_the_rest_of_training(tiny, tmp_path, monkeypatch, fidelity):
    run, _ = run_with_scores(tiny, tmp_path, monkeypatch, lambda depth: abs(depth - 3), fidelity=fidelity)
    snapshots = []
    original = freezing.adopt

    def adopt_and_snapshot(learner, result, reference):
        adopted = original(learner, result, reference)
        if not snapshots:  # task 1: what the chosen copy froze, right after the trial
            frozen = adopted.net.stages[: adopted.frozen_blocks + 1]
            snapshots.extend(p.detach().clone() for stage in frozen for p in stage.parameters())
        return adopted

    monkeypatch.setattr(freezing, "adopt", adopt_and_snapshot)
    run.run()
    assert run.learner.frozen_blocks == 3
    net = run.learner.net
    now = [p.detach() for stage in net.stages[:4] for p in stage.parameters()]
    assert len(now) == len(snapshots) and all(torch.equal(a, b) for a, b in zip(snapshots, now))
    assert all(not p.requires_grad for stage in net.stages[:4] for p in stage.parameters())
    assert all(p.requires_grad for stage in net.stages[4:] for p in stage.parameters())

@pytest.mark.parametrize("fidelity", ["reference", "corrected"])
def test_scoring_uses_the_previous_freezing_buffer_then_the_validation_split(tiny, tmp_path, monkeypatch, fidelity):
    seen = []

    def record(net, scored, reference, generator):
        seen.append(np.array(scored.rows))
        return [1.0], len(scored.rows)

    monkeypatch.setattr(freezing, "batch_cross_entropies", record)
    run = Run(tiny(fidelity=fidelity), tmp_path, quiet=True, log=lambda *_: None)
    run.run()
    sc = run.scenario
    # training_and_buff [code]: per copy, the previous task's freezing buffer, then the current validation split.
    assert len(seen) == 2 * 7 * 2
    for i, rows in enumerate(seen):
        task = 1 if i < 14 else 2
        expected = sc.freeze_idx[task - 1] if i % 2 == 0 else sc.val_idx[task]
        assert np.array_equal(rows, expected)
    train_rows = np.concatenate(sc.train_idx)
    assert not np.isin(np.concatenate(sc.freeze_idx), train_rows).any()
    # [code] reference: the last validation image of each class is trained on too (tasks 1, 2 x 2 classes).
    assert np.isin(np.concatenate(sc.val_idx), train_rows).sum() == (4 if fidelity == "reference" else 0)


@pytest.mark.parametrize("mode,expected_calls", [("training", 14), ("buffer", 14), ("training_and_buff", 28)])
def test_freezing_modes_score_on_their_sets(tiny, tmp_path, monkeypatch, mode, expected_calls):
    seen = []
    monkeypatch.setattr(freezing, "batch_cross_entropies",
                        lambda net, scored, *a: seen.append(scored.rows) or ([1.0], len(scored.rows)))
    run = Run(tiny(wscl={"freezing": {"mode": mode}}), tmp_path, quiet=True, log=lambda *_: None)
    run.run()
    assert len(seen) == expected_calls
    if mode == "buffer":
        assert np.array_equal(seen[0], run.scenario.freeze_idx[0])


def test_reference_fidelity_keeps_epoch0_samples_out_of_the_main_memory(tiny, tmp_path):
    """docs/method.md §2b.1: with one epoch per task the authors' memory holds only task-0 samples."""
    heads_in_memory = {}
    for fidelity in ("reference", "corrected"):
        cfg = tiny(fidelity=fidelity, training={"epochs": 1}, preset="no_nrem",
                   wscl={"plasticity": {"enabled": False}})
        run = Run(cfg, tmp_path / fidelity, quiet=True, log=lambda *_: None)
        run.run()
        ids = run.learner.memory.stored()["sample_id"].numpy()
        heads_in_memory[fidelity] = set(run.train_y[ids].tolist())
    assert heads_in_memory["reference"] == {0, 1}
    assert heads_in_memory["corrected"] > {0, 1}


def score_with(monkeypatch, mode, reference, buffer_batches, validation_batches, batch_size=4):
    """freezing.score on hand-made per-batch losses (the freezing buffer's and the validation split's)."""
    calls = []

    def fake(net, scored, ref, generator):
        rows, bs = scored.rows, scored.batch_size
        which = "buffer" if rows is BUFFER.rows else "validation"
        calls.append(which)
        losses = buffer_batches if which == "buffer" else validation_batches
        return list(losses), sum(min(bs, len(rows) - s) for s in range(0, len(rows), bs))

    monkeypatch.setattr(freezing, "batch_cross_entropies", fake)
    learner = type("L", (), {"net": None, "preprocess": None})()
    spec = freezing.TrialSpec(type("S", (), {"device": "cpu"})(), VALIDATION, BUFFER, mode, reference, batch_size,
                              0, checks=None, where=None)
    value = freezing.score(learner, spec)
    return value, calls


BUFFER = freezing.HeldOut(np.arange(6), torch.zeros(6, dtype=torch.long))       # batches of 4 and 2
VALIDATION = freezing.HeldOut(np.arange(8), torch.zeros(8, dtype=torch.long))   # batches of 4 and 4


def test_reference_score_is_the_authors_arithmetic(monkeypatch):
    # validation: mean(0.333, 0.338) = 0.3355 -> round 0.34 (Python's round); buffer: mean(0.1, 0.3) = 0.2
    # (per-batch means, no weighting by batch size, not rounded); combined: round(mean(0.34, 0.2), 2) = 0.27
    value, calls = score_with(monkeypatch, "training_and_buff", True, [0.1, 0.3], [0.333, 0.338])
    assert calls == ["buffer", "validation"] and value == 0.27
    assert score_with(monkeypatch, "training", True, [0.1, 0.3], [0.333, 0.338])[0] == 0.34
    assert score_with(monkeypatch, "buffer", True, [0.1, 0.3], [0.333, 0.338])[0] == pytest.approx(0.2)


def test_corrected_score_is_the_unrounded_per_image_mean(monkeypatch):
    # buffer: (4 * 0.1 + 2 * 0.3) / 6 = 1/6; validation: (0.333 + 0.338) / 2; combined: their plain mean
    value, _ = score_with(monkeypatch, "training_and_buff", False, [0.1, 0.3], [0.333, 0.338])
    assert value == pytest.approx(((1.0 / 6) + 0.3355) / 2)


def test_rounding_makes_a_tie_that_goes_to_the_least_freezing(tiny, tmp_path, monkeypatch):
    # Unrounded, deeper freezing would win (lower loss); rounded to 2 decimals all copies tie at 0.5.
    def fake(net, scored, ref, generator):
        depth = fake.learner_depth()
        return [0.5 - 0.0001 * depth], len(scored.rows)  # all round to 0.50

    run = Run(tiny(), tmp_path, quiet=True, log=lambda *_: None)
    fake.learner_depth = lambda: 0
    original_score = freezing.score

    def score(learner, *args):
        fake.learner_depth = lambda: learner.frozen_blocks
        return original_score(learner, *args)

    monkeypatch.setattr(freezing, "batch_cross_entropies", fake)
    monkeypatch.setattr(freezing, "score", score)
    assert run.run()["frozen_blocks_per_task"] == [0, 0, 0]
    corrected = Run(tiny(fidelity="corrected"), tmp_path / "c", quiet=True, log=lambda *_: None)
    frozen = corrected.run()["frozen_blocks_per_task"]
    assert frozen[0] == 0 and frozen[1] > 0 and frozen[2] >= frozen[1]  # unrounded: deeper freezing wins
