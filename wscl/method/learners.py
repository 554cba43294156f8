"""Base learners [code]: ER, ER-ACE (default) and DER++, each one ``observe`` step as in Mammoth.

A learner owns everything that learns: the network, its optimiser, the replay memory (LTM) and, for
ER-ACE, the record of heads seen so far. The dynamic-freezing trial copies whole learners.
Each learner's name and hyper-parameters (with their defaults and ranges) are declared in
wscl/settings/learners.yaml; ``build_learner`` passes ``training.<method>.*`` to its constructor.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from wscl.method.augment import Preprocess
from wscl.method.backbone import ResNet18
from wscl.method.memory import ReservoirMemory
from wscl.method.step import train_step
from wscl.settings.config import Config


@dataclass
class Step:
    """One planned training step: batch rows, their memory slots and the replay draws (all on device)."""
    index: int
    batch: torch.Tensor
    slots: torch.Tensor
    replay: list[torch.Tensor]


class Learner:
    method = "base"
    replay_draws = 1          # replay minibatches drawn per step
    stores_logits = False     # whether the memory keeps the logits of each stored sample
    replays_from_first_task = True

    def __init__(self, net: ResNet18, memory: ReservoirMemory, preprocess: Preprocess, lr: float,
                 n_heads: int, bf16: bool = False):
        self.net = net
        self.memory = memory
        self.preprocess = preprocess
        self.opt = torch.optim.SGD(net.parameters(), lr=lr)
        self.n_heads = n_heads
        self.task = 0
        self.bf16 = bf16
        device = next(net.parameters()).device
        self.seen_heads = torch.zeros(n_heads, dtype=torch.bool, device=device)
        self.frozen_blocks = 0

    # -- helpers ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits in fp32: only the network runs under bf16 autocast, every loss is computed in fp32."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.net(x)
        return logits.float()

    def replays_now(self, n_stored: int) -> bool:
        """Whether a step replays, given how many samples the memory holds at that step."""
        return n_stored > 0 and (self.replays_from_first_task or self.task > 0)

    def replay_batch(self, rows: torch.Tensor, generator: torch.Generator):
        x = self.preprocess(self.memory.x[rows], generator)
        logits = self.memory.logits[rows] if self.memory.logits is not None else None
        return x, self.memory.y[rows], logits

    def freeze_through(self, n_blocks: int) -> None:
        self.net.freeze_through(n_blocks)
        self.frozen_blocks = n_blocks

    # -- one step --------------------------------------------------------------------------------
    def observe(self, raw: torch.Tensor, labels: torch.Tensor, sample_ids: torch.Tensor, step: Step,
                generator: torch.Generator) -> torch.Tensor:
        """Train on one incoming batch (uint8 ``raw``, not augmented) and update the memory."""
        self.net.train()
        # Every random draw of the step first, in the order the learners always drew them: the incoming
        # batch's augmentation, then each replay batch's.
        inputs = self.preprocess(raw, generator)
        replays = [self.replay_batch(rows, generator) for rows in step.replay]
        loss, outputs = train_step(self, partial(self.loss, inputs, labels, replays))
        self.seen_heads[labels] = True
        self.memory.write(step.slots, raw, labels, sample_ids, outputs.detach() if outputs is not None else None)
        return loss

    def loss(self, inputs: torch.Tensor, labels: torch.Tensor, replays: list[tuple]) -> tuple:
        """(loss, the incoming batch's logits when the memory stores them, else None); ``replays``: the
        step's replay batches (images, labels, stored logits), augmented."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "memory": self.memory.state_dict(),
                "seen_heads": self.seen_heads.cpu(), "task": self.task, "frozen_blocks": self.frozen_blocks}

    def load_state_dict(self, state: dict) -> None:
        self.freeze_through(state["frozen_blocks"])
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.memory.load_state_dict(state["memory"])
        self.seen_heads.copy_(state["seen_heads"])
        self.task = state["task"]


class ER(Learner):
    """Experience replay: incoming and replayed samples in one batch, one cross-entropy."""
    method = "er"

    def loss(self, inputs, labels, replays):
        if replays:
            buf_x, buf_y, _ = replays[0]
            inputs, labels = torch.cat([inputs, buf_x]), torch.cat([labels, buf_y])
        return F.cross_entropy(self.forward(inputs), labels), None


def ace_mask(labels: torch.Tensor, seen_heads: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Heads whose logits stay unmasked in ER-ACE's incoming-batch loss [code]: the heads present in
    the batch, plus every head from the highest seen so far upward unless that is the last head."""
    present = torch.zeros(n_heads, dtype=torch.bool, device=labels.device)
    present[labels] = True
    seen = seen_heads | present
    heads = torch.arange(n_heads, device=labels.device)
    highest = torch.where(seen, heads, torch.zeros_like(heads)).max()
    upward = (heads >= highest) & (highest < n_heads - 1)
    return present | upward


class ERACE(Learner):
    """ER-ACE: asymmetric cross-entropy; absent heads masked on the incoming batch for t > 0."""
    method = "er_ace"
    replays_from_first_task = False

    def loss(self, inputs, labels, replays):
        logits = self.forward(inputs)
        if self.task > 0:
            keep = ace_mask(labels, self.seen_heads, self.n_heads)
            logits = logits.masked_fill(~keep, torch.finfo(logits.dtype).min)
        loss = F.cross_entropy(logits, labels)
        if replays:
            buf_x, buf_y, _ = replays[0]
            loss = loss + F.cross_entropy(self.forward(buf_x), buf_y)
        return loss, None


class DERPP(Learner):
    """DER++: cross-entropy + alpha * MSE on stored logits + beta * cross-entropy on stored labels."""
    method = "derpp"
    replay_draws = 2
    stores_logits = True

    def __init__(self, *args, alpha: float, beta: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha, self.beta = alpha, beta

    def loss(self, inputs, labels, replays):
        outputs = self.forward(inputs)
        loss = F.cross_entropy(outputs, labels)
        if replays:
            buf_x, _, buf_logits = replays[0]
            loss = loss + self.alpha * F.mse_loss(self.forward(buf_x).float(), buf_logits)
            buf_x, buf_y, _ = replays[1]
            loss = loss + self.beta * F.cross_entropy(self.forward(buf_x), buf_y)
        return loss, outputs


LEARNERS = {cls.method: cls for cls in (ER, ERACE, DERPP)}


def hyperparameters(training) -> dict:
    """The method's own hyper-parameters (``training.<method>``) as keyword arguments; none for most."""
    own = getattr(training, training.method, None)
    return own.to_dict() if own is not None else {}


def build_learner(cfg: Config, n_heads: int, image_shape, preprocess: Preprocess, device,
                  bf16: bool = False) -> Learner:
    t = cfg.training
    cls = LEARNERS[t.method]
    net = ResNet18(n_heads, in_channels=image_shape[0], width=cfg.model.width).to(device)
    if preprocess.memory_format == torch.channels_last:
        net = net.to(memory_format=torch.channels_last)
    memory = ReservoirMemory(t.buffer_size, image_shape, n_heads, device, store_logits=cls.stores_logits)
    return cls(net, memory, preprocess, lr=t.lr, n_heads=n_heads, bf16=bf16, **hyperparameters(t))
