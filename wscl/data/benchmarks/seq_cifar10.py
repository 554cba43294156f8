"""Seq-CIFAR-10: CIFAR-10 in 5 tasks of 2 classes; dreams: CIFAR-100 training images of the 12 superclasses that
resemble no CIFAR-10 class (a run draws as many as it has heads) [code]."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from wscl.data import cifar
from wscl.data.canonical import CanonicalDataset
from wscl.data.declaration import Benchmark, Context, CropFlip
from wscl.data.fakes import fake_cifar10, fake_cifar100


def dream_superclasses(ctx: Context):
    """CIFAR-100 training images of the superclasses not in ``cifar.EXCLUDED_SUPERCLASSES``, labelled in the
    official superclass order [code]."""
    splits, _, coarse_names = cifar.load_cifar100(ctx.extracted(cifar.CIFAR100))
    keep = [c for c in coarse_names if c not in cifar.EXCLUDED_SUPERCLASSES]
    x, _, coarse = splits["train"]
    new_label = {coarse_names.index(c): i for i, c in enumerate(keep)}
    rows = np.flatnonzero(np.isin(coarse, list(new_label)))
    return x[rows], np.array([new_label[c] for c in coarse[rows]], dtype=np.int64), keep


def build(ctx: Context) -> CanonicalDataset:
    train_x, train_y, test_x, test_y, names = cifar.load_cifar10(ctx.extracted(cifar.CIFAR10))
    dream_x, dream_y, dream_names = dream_superclasses(ctx)
    return ctx.dataset(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, classes=names,
                       dream_x=dream_x, dream_y=dream_y, dream_classes=dream_names,
                       source="CIFAR-10 python archive; dreams: CIFAR-100 coarse superclasses minus 8 [code]")


def fake(where: Path) -> dict[str, list[Path]]:
    """Extracted CIFAR-10 and CIFAR-100 python layouts with a few images per class."""
    return {"cifar10": [fake_cifar10(where / "cifar10").parent], "cifar100": [fake_cifar100(where / "cifar100").parent]}


BENCHMARK = Benchmark(
    name="seq-cifar10", n_tasks=5, classes_per_task=2, build=build, fake=fake,
    about="CIFAR-10, 32x32 [code]", dreams="CIFAR-100's 12 superclasses unlike CIFAR-10 classes [code]",
    raw=("cifar10", "cifar100"),
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2615),  # [code] the authors' fixed constants
    augment=CropFlip(padding=4),  # [code] Mammoth's RandomCrop(32, padding=4) + RandomHorizontalFlip
)
