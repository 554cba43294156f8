"""The training step every phase shares [ours]: wake (and the freezing trial's copies), NREM and staged REM.

One step is: the phase's loss of one prepared batch -> backward -> an optional look at the gradients
(plasticity's importance) -> the optimiser step, when the phase updates the weights. Every phase builds
its batches on the host's schedule (augmentation included) and hands the step a loss function of tensors
only, so nothing in a step waits for the device. The network inside the loss runs compiled when
``runtime.compile`` says so (wscl/method/backbone.py, ``compiled_forward``).

After a phase, ``check_finite`` looks once at what the phase produced: every weight, every BatchNorm
statistic and the outputs of one probe forward pass. Weights that are finite but so large that the outputs
are not are caught there too, in the phase that made them, not in the next task's first step.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from wscl.core.errors import NonFiniteLossError
from wscl.method.backbone import uses_cuda_graphs
from wscl.method.failures import PHASE_SETTINGS


def train_step(learner, loss_of: Callable[[], torch.Tensor | tuple], update: bool = True,
               after_backward: Callable[[], None] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One optimisation step of ``learner`` on the loss ``loss_of()`` returns (alone, or with the outputs the
    phase keeps). Returns the detached loss (left on the device: the phase checks losses at its sync points)
    and those outputs (None when the phase keeps none)."""
    if uses_cuda_graphs(learner.net):
        torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs may be overwritten now
    learner.opt.zero_grad(set_to_none=True)
    result = loss_of()
    loss, outputs = result if isinstance(result, tuple) else (result, None)
    loss.backward()
    if after_backward is not None:
        after_backward()
    if update:
        learner.opt.step()
    return loss.detach(), outputs


@torch.no_grad()
def all_finite(net: torch.nn.Module, probe: torch.Tensor | None, forward: Callable) -> bool:
    """Whether every weight and BatchNorm statistic of ``net`` is finite, and so are its outputs on ``probe``
    (in eval mode: the probe changes no statistic). One device sync."""
    flags = [torch.isfinite(t).all() for t in (*net.parameters(), *net.buffers()) if t.is_floating_point()]
    if probe is not None and len(probe):
        was_training = net.training
        net.eval()
        flags.append(torch.isfinite(forward(probe)).all())
        net.train(was_training)
    return bool(torch.stack(flags).all()) if flags else True


def check_finite(learner, probe: torch.Tensor | None, task: int, phase: str) -> None:
    """Stop the run (exit 5) when ``phase`` of task ``task`` left non-finite weights, statistics or outputs."""
    if all_finite(learner.net, probe, learner.forward):
        return
    settings = PHASE_SETTINGS[phase.split(" (")[0]]  # "freezing trial (copy 2)" -> the trial's settings
    raise NonFiniteLossError(f"non-finite weights or outputs after {phase} of task {task}; lower {settings}")
