"""Base learners [code]: ER, ER-ACE (default) and DER++, each one ``observe`` step as in Mammoth.

A learner owns everything that learns: the network, its optimiser, the replay memory (LTM) and, for
ER-ACE, the record of heads seen so far. The dynamic-freezing trial copies whole learners.

A learner is one module of this folder, found by listing the folder: adding a learner is adding one file. The
file's name is the method's name (`er.py` is `er`); it holds the learner's class (a ``Learner`` whose ``method``
is that name) and its ``DECLARATION``, a literal dict: its ``about`` line, its place in the lists of methods
(``order``) and its hyper-parameters (``hparams``: each a default, range and about). The settings read that
declaration from the file's source without importing it (wscl/settings/declarations.py); ``build_learner``
passes ``training.<method>.*`` to the class's constructor as keyword arguments.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from wscl.method.augment import Preprocess
from wscl.method.backbone import ResNet18
from wscl.method.memory import ReservoirMemory
from wscl.method.step import train_step
from wscl.settings.config import LEARNER_SPECS, METHODS, Config
from wscl.settings.declarations import shown


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


def _learner_of(module: str) -> type[Learner]:
    """The one Learner class that module ``module`` of this folder defines, checked against its name and its
    declared hyper-parameters."""
    loaded = importlib.import_module(f"{__name__}.{module}")
    where = shown(Path(loaded.__file__))
    classes = [obj for obj in vars(loaded).values()
               if isinstance(obj, type) and issubclass(obj, Learner) and obj.__module__ == loaded.__name__]
    if len(classes) != 1:
        raise ValueError(f"{where}: defines {len(classes)} Learner classes "
                         f"({', '.join(c.__name__ for c in classes) or 'none'}); a learner's file defines one")
    cls = classes[0]
    if cls.method != module:
        raise ValueError(f"{where}: class {cls.__name__} has method = {cls.method!r}, but the file's name makes it "
                         f"{module!r}; the file's name is the method's name: set method = {module!r} or rename the "
                         "file")
    declared = set(LEARNER_SPECS[module].get("hparams", {}))
    taken = {p.name for p in inspect.signature(cls.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY}
    if declared != taken:
        raise ValueError(f"{where}: DECLARATION's hparams are {sorted(declared)}, but {cls.__name__}.__init__ takes "
                         f"the keyword-only arguments {sorted(taken)}; each hyper-parameter is one of them")
    return cls


def _discover() -> dict[str, type[Learner]]:
    """Every learner of this folder by method, in the settings' order of METHODS (imports each module once)."""
    modules = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    if modules != sorted(METHODS):  # both list this folder; they differ only if it changed meanwhile
        raise ValueError(f"{shown(Path(__file__).parent)}: modules {modules}, but the settings read the methods "
                         f"{list(METHODS)} from it")
    return {method: _learner_of(method) for method in METHODS}


# Method -> its class, from the modules of this folder.
LEARNERS: dict[str, type[Learner]] = _discover()


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
