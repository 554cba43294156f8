import torch
import torch.nn.functional as F

from wscl.method.augment import Preprocess
from wscl.method.backbone import ResNet18
from wscl.method.learners.er_ace import ERACE, ace_mask
from wscl.method.memory import ReservoirMemory


def test_ace_mask_keeps_present_heads_and_heads_from_highest_seen_upward():
    seen = torch.zeros(10, dtype=torch.bool)
    seen[:4] = True
    keep = ace_mask(torch.tensor([1, 3]), seen, 10)
    assert torch.nonzero(keep).flatten().tolist() == [1, 3, 4, 5, 6, 7, 8, 9]


def test_ace_mask_keeps_only_present_heads_once_the_last_head_was_seen():
    seen = torch.zeros(10, dtype=torch.bool)
    seen[[0, 1, 9]] = True
    keep = ace_mask(torch.tensor([2, 5]), seen, 10)
    assert torch.nonzero(keep).flatten().tolist() == [2, 5]


def make_learner():
    torch.manual_seed(0)
    net = ResNet18(6, 1, width=4)
    pre = Preprocess([0.5], [0.25], augment=False, device=torch.device("cpu"))
    return ERACE(net, ReservoirMemory(8, (1, 8, 8), 6, "cpu"), pre, lr=0.1, n_heads=6)


def test_incoming_batch_loss_ignores_absent_heads_for_later_tasks():
    learner = make_learner()
    x = torch.randn(4, 1, 8, 8)
    labels = torch.tensor([2, 3, 2, 3])
    learner.seen_heads[5] = True  # last head seen: only the present heads stay unmasked
    learner.task = 1
    loss, _ = learner.loss(x, labels, [])
    logits = learner.net(x)
    expected = F.cross_entropy(logits[:, [2, 3]], labels - 2)
    assert torch.allclose(loss, expected, atol=1e-5)
    learner.task = 0  # first task: no masking at all
    loss0, _ = learner.loss(x, labels, [])
    assert torch.allclose(loss0, F.cross_entropy(logits, labels), atol=1e-5)


def test_replay_loss_uses_all_heads():
    learner = make_learner()
    learner.task = 1
    learner.seen_heads[5] = True
    learner.memory.x[:2] = torch.randint(0, 255, (2, 1, 8, 8), dtype=torch.uint8)
    learner.memory.y[:2] = torch.tensor([0, 4])
    learner.memory.num_seen = 2
    x = torch.randn(4, 1, 8, 8)
    labels = torch.tensor([2, 3, 2, 3])
    replay = learner.replay_batch(torch.tensor([0, 1]), None)
    loss, _ = learner.loss(x, labels, [replay])
    buf = learner.preprocess(learner.memory.x[:2], None)
    expected = F.cross_entropy(learner.net(x)[:, [2, 3]], labels - 2) + F.cross_entropy(
        learner.net(buf), torch.tensor([0, 4]))
    assert torch.allclose(loss, expected, atol=1e-5)
