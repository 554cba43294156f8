"""Synaptic plasticity [paper; rule ours]: strengthen important connections, weaken unimportant ones.

Importance of a weight = |w * dL/dw| accumulated over the NREM replay batches. Per layer, the top
``strengthen_frac`` of weights are multiplied by ``1 + strengthen`` and the bottom ``weaken_frac`` by
``1 - weaken``. Only trainable convolution and linear weights take part: frozen weights, biases and
normalisation layers are left alone.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def plastic_parameters(net: nn.Module) -> dict[str, nn.Parameter]:
    params = {}
    for module_name, module in net.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.weight.requires_grad:
            params[f"{module_name}.weight"] = module.weight
    return params


class Importance:
    def __init__(self, net: nn.Module):
        self.params = plastic_parameters(net)
        self.scores = {name: torch.zeros_like(p) for name, p in self.params.items()}

    def accumulate(self) -> None:
        """Add |w * grad| of the current gradients (call after backward)."""
        for name, p in self.params.items():
            if p.grad is not None:
                self.scores[name].add_((p.detach() * p.grad.detach()).abs())


@torch.no_grad()
def apply_plasticity(importance: Importance, strengthen_frac: float, strengthen: float,
                     weaken_frac: float, weaken: float) -> dict[str, dict[str, int]]:
    """Scale the most and least important weights of every layer; returns the counts per layer."""
    report = {}
    for name, p in importance.params.items():
        scores = importance.scores[name].flatten()
        n = scores.numel()
        n_up, n_down = int(strengthen_frac * n), int(weaken_frac * n)
        order = torch.argsort(scores, stable=True)  # ascending importance, in the weight's logical order
        factor = torch.ones(n, dtype=p.dtype, device=p.device)
        factor[order[n - n_up:]] = 1.0 + strengthen
        factor[order[:n_down]] = 1.0 - weaken
        # In place on the parameter itself, whatever its memory format (channels_last conv weights cannot be
        # flattened by a view, and a reshaped copy would leave the weights unchanged).
        p.mul_(factor.view(p.shape))
        report[name] = {"strengthened": n_up, "weakened": n_down, "weights": n}
    return report
