"""The generated `synthetic` benchmark [ours]: learnable images from a seed, for tests and small studies."""
from __future__ import annotations

import numpy as np

from wscl.data.canonical import CanonicalDataset
from wscl.data.layout import in_memory_digest
from wscl.settings.config import defaults


def default_settings() -> dict:
    """``dataset.synthetic``'s defaults, from the trainer's one source of them."""
    return defaults()["dataset"]["synthetic"]


def synthetic(**settings) -> CanonicalDataset:
    """A learnable dataset from a seed: each class is a smooth random prototype (``contrast`` around mid-grey);
    samples add per-pixel noise and a one-pixel shift. ``settings`` are those of ``dataset.synthetic``; the
    ones not given take the trainer's defaults (settings/defaults.yaml).

    Dream classes come from the same generator with their own prototypes, so they are disjoint.
    """
    unknown = set(settings) - set(default_settings())
    if unknown:
        raise TypeError(f"synthetic() got unknown settings {sorted(unknown)}; known: {sorted(default_settings())}")
    p = {**default_settings(), **settings}
    classes, dream_classes, size, channels = p["classes"], p["dream_classes"], p["size"], p["channels"]
    noise, contrast, seed = p["noise"], p["contrast"], p["seed"]
    train_per_class, test_per_class, dream_per_class = p["train_per_class"], p["test_per_class"], p["dream_per_class"]
    rng = np.random.default_rng(seed)

    def prototypes(n: int) -> np.ndarray:
        coarse = 127.5 + rng.uniform(-contrast, contrast, size=(n, channels, 4, 4))
        return np.kron(coarse, np.ones((1, 1, size // 4 + 1, size // 4 + 1)))[:, :, :size, :size]

    def draw(protos: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(len(protos)), per_class)
        images = protos[labels] + rng.normal(0, noise, size=(len(labels), channels, size, size))
        shifts = rng.integers(-1, 2, size=(len(labels), 2))
        for axis in (0, 1):  # a one-pixel jitter makes the task less trivial than template matching
            for s in (-1, 1):
                sel = shifts[:, axis] == s
                images[sel] = np.roll(images[sel], s, axis=2 + axis)
        return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64)

    primary = prototypes(classes)
    dream = prototypes(dream_classes)
    train_x, train_y = draw(primary, train_per_class)
    test_x, test_y = draw(primary, test_per_class)
    dream_x, dream_y = draw(dream, dream_per_class) if dream_classes else (
        np.zeros((0, channels, size, size), np.uint8), np.zeros(0, np.int64))
    arrays = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y, "dream_x": dream_x,
              "dream_y": dream_y}
    return CanonicalDataset(
        name="synthetic", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
        classes=[f"class_{i}" for i in range(classes)], dream_x=dream_x, dream_y=dream_y,
        dream_classes=[f"dream_{i}" for i in range(dream_classes)], augment=True,
        # [ours] the crop's padding in proportion to the image, as CIFAR's 4 px are to its 32 px: 4 px around
        # a 12 px image make a third of every training crop black, whose BatchNorm statistics then no longer
        # fit the unpadded test images (docs/determinism.md, "Why a tiny run collapsed")
        crop_padding=max(1, size // 8), source=f"wscl.data.synthetic(seed={seed})",
        sha256=in_memory_digest(arrays))
