"""The Mammoth-style ResNet-18 [code]: 3x3 stride-1 stem, no max-pool, widths w-2w-4w-8w,
global average pooling and one linear layer over all N heads.

``stages`` lists the network's parts in execution order (stem, then each residual block), which is
what dynamic freezing needs: "freeze everything up to and including block k" is a prefix of it.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self._shortcut(x))

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.shortcut) and x.device.type == "cpu" and is_channels_last(x):
            # torch's CPU backward of a strided 1x1 convolution in channels_last corrupts the heap for
            # small batches (reproduced with torch alone: docs/gpu.md). The same convolution, computed
            # on the subsampled input with stride 1, avoids that kernel; CUDA keeps the strided one.
            conv, bn = self.shortcut
            stride = conv.stride
            return bn(F.conv2d(x[:, :, :: stride[0], :: stride[1]], conv.weight))
        return self.shortcut(x)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is laid out channels-last (and not merely ambiguous, as a 1x1 image is)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class Stem(nn.Module):
    def __init__(self, in_channels: int, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn1(self.conv1(x)))


class ResNet18(nn.Module):
    # Residual blocks before the last stage may be frozen (docs/method.md §2.3, dynamic freezing).
    N_FREEZABLE_BLOCKS = 6
    compile_mode: str | None = None  # set by the learner when the run compiles its training steps

    def __init__(self, n_heads: int, in_channels: int = 3, width: int = 64):
        super().__init__()
        self.stem = Stem(in_channels, width)
        widths = [width, 2 * width, 4 * width, 8 * width]
        blocks, in_planes = [], width
        for i, planes in enumerate(widths):
            for j in range(2):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Linear(in_planes, n_heads)

    @property
    def stages(self) -> list[nn.Module]:
        return [self.stem, *self.blocks]

    def block_names(self) -> list[str]:
        """Names in the paper's terms: layer1.0, layer1.1, ..., layer4.1."""
        return [f"layer{i // 2 + 1}.{i % 2}" for i in range(len(self.blocks))]

    def freeze_through(self, n_blocks: int) -> None:
        """Freeze the stem and the first ``n_blocks`` residual blocks (0 = nothing frozen)."""
        if not 0 <= n_blocks <= self.N_FREEZABLE_BLOCKS:
            raise ValueError(f"can freeze 0..{self.N_FREEZABLE_BLOCKS} blocks, not {n_blocks}")
        frozen = self.stages[: n_blocks + 1] if n_blocks else []
        for stage in self.stages:
            trainable = not any(stage is f for f in frozen)
            for p in stage.parameters():
                p.requires_grad_(trainable)

    def features(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Pooled features; ``start`` > 0: ``x`` is already the output of ``stages[start - 1]``."""
        for stage in self.stages[start:]:
            x = stage(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        # Training steps run compiled when the run compiles (``runtime.compile``); evaluation stays eager.
        if self.compile_mode is not None and self.training and torch.is_grad_enabled():
            return compiled_forward(self.compile_mode)(self, x, start)
        return logits_of(self, x, start)


def logits_of(net: ResNet18, x: torch.Tensor, start: int = 0) -> torch.Tensor:
    return net.classifier(net.features(x, start))


_COMPILED: dict[str, object] = {}
COMPILE_BACKEND = "inductor"  # torch.compile's backend; dynamo decides graphs, breaks and recompiles before it
RECOMPILE_LIMIT = 64  # compiled variants per process (shapes x frozen depths x trial suffixes), then eager


def uses_cuda_graphs(net: nn.Module) -> bool:
    """Whether ``net`` (or the network a freezing copy wraps) replays its training steps as CUDA graphs."""
    return getattr(getattr(net, "net", net), "compile_mode", None) == "reduce-overhead"


def compile_counts() -> dict[str, int]:
    """torch.compile's counts in this process so far: frames compiled (the first compile and every recompile),
    graphs captured and graph breaks."""
    from torch._dynamo.utils import counters
    return {"frames_compiled": int(counters["frames"]["ok"]), "graphs": int(counters["stats"]["unique_graphs"]),
            "graph_breaks": int(sum(counters["graph_break"].values()))}


def compiled_forward(mode: str):
    """``logits_of`` compiled with torch.compile in ``mode`` (``default``; ``reduce-overhead``: CUDA graphs),
    one per process and mode: every network and every copy of it shares the compiled code (a network's
    parameters are inputs of the graph, not constants), and inductor's caches share it across processes."""
    if mode not in _COMPILED:
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        backend = {"backend": COMPILE_BACKEND} if COMPILE_BACKEND != "inductor" else {"mode": mode}
        # Static shapes: each batch size (a task's short last batch, the buffer's fill-up) gets its own graph,
        # a few per run. Graphs with a symbolic batch size gave ER-ACE's wake step gradients 3% off eager's
        # (torch 2.14, CPU, inductor) where static graphs agree to 1e-5 (tests/test_compile.py); dynamo's
        # default would turn the batch size symbolic at its first change.
        _COMPILED[mode] = torch.compile(logits_of, dynamic=False, **backend)
    return _COMPILED[mode]
