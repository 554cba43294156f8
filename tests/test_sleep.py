"""Sleep: NREM replay of STM and LTM, the STM->LTM merge, staged REM and noise dreams."""
import numpy as np
import pytest
import torch

from wscl.data.synthetic import synthetic
from wscl.method import nrem, rem
from wscl.method.failures import FailurePolicy, LossChecks
from wscl.method.feed import ImageSource, Pool
from wscl.method.memory import ReservoirMemory, ShortTermMemory
from wscl.method.night import Night
from wscl.run.trainer import Run
from wscl.settings.config import ConfigError


def quiet_run(tiny, tmp_path, **overrides) -> Run:
    return Run(tiny(**overrides), tmp_path, quiet=True, log=lambda *_: None)


def night(run: Run, pool: Pool) -> Night:
    """Task 0's sleep context with fixed generators, as the run's own would be."""
    checks = LossChecks(1, float("inf"), FailurePolicy("stop"))
    return Night(0, run.learner, pool, np.random.default_rng(0), torch.Generator().manual_seed(0), checks)


def first_task(run: Run, stm_size: int = 20) -> tuple[Pool, ShortTermMemory]:
    """Task 0's heads and pool, and an STM filled from the pool."""
    run.assign_heads(0, 0)
    pool = run.task_pool(0)
    stm = ShortTermMemory(stm_size)
    stm.observe(np.arange(pool.n_real), np.random.default_rng(0))
    return pool, stm


def fill_ltm(run: Run, pool: Pool, n: int, head: int) -> None:
    """Put ``n`` pool images into the LTM, labelled ``head``, with sample ids 10_000.. (not in the pool)."""
    mem = run.learner.memory
    x = pool.images[:n]
    mem.replace_contents(x, torch.full((n,), head), torch.arange(10_000, 10_000 + n))


def count_batches(learner, monkeypatch) -> list[int]:
    sizes = []
    original = learner.forward
    monkeypatch.setattr(learner, "forward", lambda x: sizes.append(len(x)) or original(x))
    return sizes


# -- NREM replay -------------------------------------------------------------------------------------

def test_nrem_replays_the_stm_alone_while_the_ltm_is_empty(tiny, tmp_path, monkeypatch):
    run = quiet_run(tiny, tmp_path)
    pool, stm = first_task(run, stm_size=20)
    sizes = count_batches(run.learner, monkeypatch)
    seen = torch.as_tensor(run.book.head_taken)
    n = nrem.replay_stm_ltm(night(run, pool), stm, seen, nrem.Passes(2, 16, 0.25), None)
    assert n == 2 * 20 and sizes == [16, 4, 16, 4]  # two passes over the STM in batches of 16


def test_nrem_batches_mix_stm_and_ltm_by_the_stm_fraction(tiny, tmp_path, monkeypatch):
    run = quiet_run(tiny, tmp_path)
    pool, stm = first_task(run, stm_size=20)
    fill_ltm(run, pool, 30, head=5)
    sizes = count_batches(run.learner, monkeypatch)
    seen = torch.as_tensor(run.book.head_taken)
    seen[5] = True
    n = nrem.replay_stm_ltm(night(run, pool), stm, seen, nrem.Passes(1, 16, 0.25), None)
    # 4 STM + 12 LTM images per batch: 5 batches cover the 20 STM samples once.
    assert sizes == [16] * 5 and n == 80


def test_nrem_trains_only_the_heads_seen_so_far(tiny, tmp_path):
    run = quiet_run(tiny, tmp_path)
    pool, stm = first_task(run)
    head = run.learner.net.classifier
    before = head.weight.detach().clone(), head.bias.detach().clone()
    seen = torch.as_tensor(run.book.head_taken)
    nrem.replay_stm_ltm(night(run, pool), stm, seen, nrem.Passes(1, 8, 1.0), None)
    changed = ~torch.isclose(head.weight, before[0]).all(1) | ~torch.isclose(head.bias, before[1])
    assert changed.tolist() == seen.tolist()  # rows of unseen heads get no gradient at all


def test_nrem_without_update_measures_importance_but_keeps_the_weights(tiny, tmp_path):
    from wscl.method.plasticity import Importance
    run = quiet_run(tiny, tmp_path)
    pool, stm = first_task(run)
    before = {k: v.clone() for k, v in run.learner.net.state_dict().items() if v.is_floating_point()}
    importance = Importance(run.learner.net)
    nrem.replay_stm_ltm(night(run, pool), stm, torch.as_tensor(run.book.head_taken),
                        nrem.Passes(1, 8, 1.0, update=False), importance)
    after = run.learner.net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if "running" not in k)
    assert all(s.sum() > 0 for s in importance.scores.values())


@pytest.mark.parametrize("nrem_on,plasticity_on,expected", [
    (True, True, {"epochs": 3, "update": True}),
    (True, False, {"epochs": 3, "update": True}),
    (False, True, {"epochs": 1, "update": False}),  # plasticity alone: one pass that only measures
    (False, False, None),
])
def test_nrem_policy_decides_passes_updates_and_whether_an_stm_exists(tiny, monkeypatch, nrem_on, plasticity_on,
                                                                      expected):
    wscl = tiny(wscl={"nrem": {"enabled": nrem_on, "epochs": 3}, "plasticity": {"enabled": plasticity_on},
                      "stm": {"size": 7}}).wscl
    calls, merged = [], []
    monkeypatch.setattr(nrem, "replay_stm_ltm", lambda night, stm, seen, passes, importance: calls.append(
        {"epochs": passes.epochs, "fraction": passes.stm_fraction, "update": passes.update,
         "importance": importance is not None}))
    monkeypatch.setattr(nrem, "merge_stm_into_ltm", lambda *args: merged.append(True))
    learner = type("L", (), {"net": torch.nn.Linear(2, 2), "forward": None,
                             "memory": type("M", (), {"logits": None})()})()
    nrem.sleep(Night(2, learner, None, None, None, None), ShortTermMemory(0), None, wscl, 16)
    assert nrem.stm_size(wscl) == (7 if expected else 0)
    assert merged == [True]
    if expected is None:
        assert calls == []
    else:
        assert calls == [{**expected, "fraction": pytest.approx(1 / 3), "importance": plasticity_on}]


# -- STM -> LTM merge --------------------------------------------------------------------------------

def test_balanced_selection_takes_classes_round_robin():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 7)
    rng = np.random.default_rng(0)
    for capacity, counts in ((9, [3, 3, 3]), (12, [5, 3, 4]), (30, [10, 3, 7])):
        chosen = nrem.balanced_selection(labels, capacity, rng)
        assert np.all(np.diff(chosen) > 0)  # sorted positions, none twice
        assert np.bincount(labels[chosen], minlength=3).tolist() == counts


class MergeLearner:
    """What the merge reads of a learner: its memory (and the network only for DER++ logits)."""

    def __init__(self, memory):
        self.memory = memory


def merge_setup(capacity: int, ltm_ids: list[int], ltm_labels: list[int]):
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 2, 2).contiguous()
    source = ImageSource(images.numpy(), torch.device("cpu"), False)
    rows = np.arange(20, 40)
    pool = Pool([(source, rows, (rows // 10).astype(np.int64), rows)], torch.device("cpu"))  # heads 2, 3
    mem = ReservoirMemory(capacity, (1, 2, 2), 4, "cpu")
    ids = torch.as_tensor(ltm_ids, dtype=torch.long)
    mem.replace_contents(images[ids], torch.as_tensor(ltm_labels, dtype=torch.long), ids)
    if len(ltm_ids) == capacity:
        mem.num_seen = 100  # a full memory after a longer stream
    return MergeLearner(mem), pool


def test_merge_keeps_a_class_balanced_ltm_of_old_and_new_samples():
    learner, pool = merge_setup(8, [0, 1, 2, 3, 10, 11, 12, 13], [0, 0, 0, 0, 1, 1, 1, 1])  # head = id // 10
    stm = ShortTermMemory(20)
    stm.observe(np.arange(20), np.random.default_rng(0))  # pool rows: sample ids 20..39, heads 2 and 3
    nrem.merge_stm_into_ltm(learner, pool, stm, np.random.default_rng(1))
    stored = learner.memory.stored()
    ids, labels = stored["sample_id"].numpy(), stored["y"].numpy()
    assert len(ids) == 8 and len(set(ids.tolist())) == 8  # full, no sample twice
    assert np.bincount(labels, minlength=4).tolist() == [2, 2, 2, 2]  # two of each of the four classes
    assert np.array_equal(labels, ids // 10)  # every label is its own sample's head
    assert np.array_equal(stored["x"][:, 0, 0, 0].numpy(), ids)  # and every image its own sample's
    assert len(stm) == 0 and learner.memory.num_seen == 100  # STM emptied; stream count kept


def test_merge_drops_stm_samples_the_ltm_already_holds():
    learner, pool = merge_setup(10, [20, 21, 30], [2, 2, 3])
    stm = ShortTermMemory(20)
    stm.observe(np.array([0, 1, 10]), np.random.default_rng(0))  # sample ids 20, 21, 30: all already stored
    nrem.merge_stm_into_ltm(learner, pool, stm, np.random.default_rng(0))
    assert sorted(learner.memory.stored()["sample_id"].tolist()) == [20, 21, 30]


def test_merge_into_a_memory_of_capacity_zero_only_empties_the_stm():
    learner, pool = merge_setup(0, [], [])
    stm = ShortTermMemory(5)
    stm.observe(np.arange(5), np.random.default_rng(0))
    nrem.merge_stm_into_ltm(learner, pool, stm, np.random.default_rng(0))
    assert len(stm) == 0 and learner.memory.n_stored == 0


# -- REM ---------------------------------------------------------------------------------------------

def test_staged_rem_trains_the_free_heads_on_their_dreams_only(tiny, tmp_path, monkeypatch):
    run = quiet_run(tiny, tmp_path, wscl={"rem": {"schedule": "staged", "epochs": 2}})
    run.assign_heads(0, 0)
    assert rem.interleaved_part(run.dreams, run.book, run.wscl.rem) is None  # no dreams during wake
    dreams = rem.staged_pool(run.dreams, run.book, run.wscl.rem, run.device)
    free = run.book.free_heads
    assert len(dreams) == free.sum() * 20 and set(dreams.labels.tolist()) == set(np.flatnonzero(free).tolist())
    head = run.learner.net.classifier
    before = head.weight.detach().clone()
    n = rem.run_staged_rem(night(run, dreams), dreams, torch.as_tensor(free), 2, 16, 16)
    assert n == 2 * len(dreams)
    changed = ~torch.isclose(head.weight, before).all(1)
    assert changed.tolist() == free.tolist()  # empty LTM: the taken heads learn nothing from dreams


@pytest.mark.parametrize("rem_cfg", [{"schedule": "interleaved"}, {"schedule": "staged", "epochs": 0},
                                     {"schedule": "staged", "source": "none"}])
def test_no_staged_rem_stage_unless_scheduled(tiny, tmp_path, rem_cfg):
    run = quiet_run(tiny, tmp_path, wscl={"rem": rem_cfg})
    run.assign_heads(0, 0)
    assert rem.staged_pool(run.dreams, run.book, run.wscl.rem, run.device) is None


def test_noise_dreams_are_seeded_uint8_blocks_one_per_free_head(tiny, tmp_path):
    images, labels = rem.noise_images(3, 5, (1, 4, 4), np.random.default_rng(0))
    again, _ = rem.noise_images(3, 5, (1, 4, 4), np.random.default_rng(0))
    other, _ = rem.noise_images(3, 5, (1, 4, 4), np.random.default_rng(1))
    assert images.shape == (15, 1, 4, 4) and images.dtype == np.uint8 and labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert np.array_equal(images, again) and not np.array_equal(images, other)
    assert images.min() < 30 and images.max() > 225  # spread over the whole 0..255 range
    run = quiet_run(tiny, tmp_path, preset="rem_noise", wscl={"rem": {"noise_per_class": 7}})
    run.assign_heads(0, 0)
    pool = run.task_pool(0)
    assert run.dreams.n_classes == run.scenario.n_heads
    assert len(pool) - pool.n_real == 4 * 7  # the four free heads, 7 noise images each
    assert set(pool.labels[pool.n_real:].tolist()) == {2, 3, 4, 5}


def test_aux_dreams_need_a_dataset_with_a_dream_set(tiny):
    ds = synthetic(classes=4, dream_classes=0, train_per_class=5, test_per_class=2, size=8)
    with pytest.raises(ConfigError, match="use source noise or none"):
        rem.dream_set(ds, tiny().wscl.rem, 4, torch.device("cpu"), np.random.default_rng(0))
