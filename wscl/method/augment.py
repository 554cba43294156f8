"""Batched, seeded image augmentation on tensors (no per-sample PIL, no worker processes).

Random crop with zero padding and horizontal flip, as torchvision's ``RandomCrop(size, padding=4)``
and ``RandomHorizontalFlip()`` do per image, here done for a whole uint8 batch on its device.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4,
                     memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """images: uint8 (B, C, H, W) on any device; returns a new batch of the same shape in ``memory_format``."""
    b, _, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=generator.device).to(device)
    rows = offsets[0, :, None] + torch.arange(h, device=device)            # (B, H)
    cols = offsets[1, :, None] + torch.arange(w, device=device)            # (B, W)
    flip = torch.rand(b, generator=generator, device=generator.device).to(device) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=device)[:, None, None]
    # Advanced indexing picks (B, H, W, C); moving channels back to dim 1 gives a channels_last batch
    # without a copy, so only the default format pays one.
    crops = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return crops.permute(0, 3, 1, 2).contiguous(memory_format=memory_format)


class Preprocess:
    """uint8 batch -> normalised float batch, with optional augmentation."""

    def __init__(self, mean, std, augment: bool, device: torch.device, channels_last: bool = False,
                 padding: int = 4):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.augment, self.padding = augment, padding
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None, train: bool = True) -> torch.Tensor:
        # The layout is set on the uint8 batch; the float ops below keep it (no fp32 copy).
        if train and self.augment and generator is not None:
            images = random_crop_flip(images, generator, self.padding, self.memory_format)
        else:
            images = images.contiguous(memory_format=self.memory_format)
        x = (images.float().div_(255.0) - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)
