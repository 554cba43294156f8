"""Image helpers shared by the dataset builders."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize(images: np.ndarray, size: int, batch: int = 2048) -> np.ndarray:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size), bilinear with antialiasing (as torchvision's Resize)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = np.empty((len(images), images.shape[1], size, size), dtype=np.uint8)
    for start in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[start: start + batch])).float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start: start + batch] = y.round().clamp(0, 255).to(torch.uint8).numpy()
    return out

