import numpy as np
import pytest
import torch

import wscl.freezing as freezing
from wscl.trainer import Run


def run_with_scores(tiny, tmp_path, monkeypatch, score_of_depth, **overrides):
    """A tiny run whose freezing copies are scored by ``score_of_depth(copy_depth, current_depth)``."""
    calls = []

    def fake_score(learner, source, validation, freeze_buffer, mode, reference, batch_size, seed):
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

    monkeypatch.setattr("wscl.trainer.adopt", adopt_and_raise_target)
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

    monkeypatch.setattr("wscl.trainer.adopt", adopt_and_snapshot)
    run.run()
    assert run.learner.frozen_blocks == 3
    net = run.learner.net
    now = [p.detach() for stage in net.stages[:4] for p in stage.parameters()]
    assert len(now) == len(snapshots) and all(torch.equal(a, b) for a, b in zip(snapshots, now))
    assert all(not p.requires_grad for stage in net.stages[:4] for p in stage.parameters())
    assert all(p.requires_grad for stage in net.stages[4:] for p in stage.parameters())

def test_scoring_uses_the_validation_split_and_previous_freezing_buffer(tiny, tmp_path, monkeypatch):
    seen = []

    def record(net, source, rows, heads, preprocess, batch_size, reference, generator):
        seen.append(np.array(rows))
        return 1.0

    monkeypatch.setattr(freezing, "mean_cross_entropy", record)
    run = Run(tiny(), tmp_path, quiet=True, log=lambda *_: None)
    run.run()
    sc = run.scenario
    # training_and_buff: per copy, the current task's validation split then the previous task's buffer.
    assert len(seen) == 2 * 7 * 2
    for i, rows in enumerate(seen):
        task = 1 if i < 14 else 2
        expected = sc.val_idx[task] if i % 2 == 0 else sc.freeze_idx[task - 1]
        assert np.array_equal(rows, expected)
    train_rows = np.concatenate(sc.train_idx)
    assert not np.isin(np.concatenate(sc.val_idx + sc.freeze_idx), train_rows).any()


@pytest.mark.parametrize("mode,expected_calls", [("training", 14), ("buffer", 14), ("training_and_buff", 28)])
def test_freezing_modes_score_on_their_sets(tiny, tmp_path, monkeypatch, mode, expected_calls):
    seen = []
    monkeypatch.setattr(freezing, "mean_cross_entropy", lambda net, source, rows, *a: seen.append(rows) or 1.0)
    run = Run(tiny(wscl={"freezing": {"mode": mode}}), tmp_path, quiet=True, log=lambda *_: None)
    run.run()
    assert len(seen) == expected_calls
    if mode == "buffer":
        assert np.array_equal(seen[0], run.scenario.freeze_idx[0])


def test_reference_fidelity_keeps_epoch0_samples_out_of_the_main_memory(tiny, tmp_path):
    """Spec §2b.1: with one epoch per task the authors' memory holds only task-0 samples."""
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
