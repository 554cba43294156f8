import numpy as np
import torch
from scipy.stats import chisquare

from wscl.method.memory import ReservoirMemory, ShortTermMemory
from wscl.run.trainer import Run


def test_reservoir_inclusion_probability_is_uniform():
    stream, capacity, trials, batch = 300, 30, 400, 16
    rng = np.random.default_rng(1234)
    hits = np.zeros(stream)
    for _ in range(trials):
        mem = ReservoirMemory(capacity, (1, 1, 1), n_heads=2, device="cpu")
        seen = 0
        for start in range(0, stream, batch):
            ids = np.arange(start, min(start + batch, stream))
            slots, seen = mem.reservoir_slots(np.ones(len(ids), bool), seen, rng)
            mem.write(torch.as_tensor(slots), torch.zeros(len(ids), 1, 1, 1, dtype=torch.uint8),
                      torch.zeros(len(ids), dtype=torch.long), torch.as_tensor(ids))
        mem.num_seen = seen
        stored = mem.stored()["sample_id"].numpy()
        assert len(set(stored.tolist())) == capacity  # no sample stored twice
        hits[stored] += 1
    assert hits.sum() == trials * capacity
    # Every sample is kept with probability capacity/stream: a chi-square test of uniformity.
    assert chisquare(hits).pvalue > 0.001
    early, late = hits[:capacity].mean(), hits[-capacity:].mean()
    assert abs(early - late) < 0.35 * trials * capacity / stream


def test_dream_rows_never_enter_the_reservoir():
    mem = ReservoirMemory(4, (1, 1, 1), 2, "cpu")
    slots, seen = mem.reservoir_slots(np.array([True, False, True, False]), 0, np.random.default_rng(0))
    assert slots.tolist() == [0, mem.discard_slot, 1, mem.discard_slot]
    assert seen == 2


def test_stm_is_a_reservoir_of_its_size():
    stm = ShortTermMemory(5)
    stm.observe(np.arange(100), np.random.default_rng(0))
    assert len(stm) == 5 and len(set(stm.indices.tolist())) == 5
    stm.clear()
    assert len(stm) == 0


def test_memory_holds_only_real_unaugmented_samples_after_training(tiny, tmp_path):
    cfg = tiny(wscl={"nrem": {"enabled": False}, "plasticity": {"enabled": False}}, fidelity="corrected")
    run = Run(cfg, tmp_path, quiet=True, log=lambda *_: None)
    run.run()
    stored = run.learner.memory.stored()
    ids = stored["sample_id"].numpy()
    assert len(ids) == cfg.training.buffer_size
    assert (ids >= 0).all()  # dream samples carry id -1
    # Stored pixels are the dataset's pixels: no augmentation at storage time.
    assert torch.equal(stored["x"], torch.as_tensor(run.dataset.train_x[ids]))
    # Labels are the heads of the samples' classes.
    assert stored["y"].tolist() == run.book.heads_of(run.train_y[ids]).tolist()
    # Only training rows, never held-out ones.
    held = np.concatenate(run.scenario.val_idx + run.scenario.freeze_idx)
    assert not np.isin(ids, held).any()
