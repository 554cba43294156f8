"""Seq-Fashion-MNIST [ours]: Fashion-MNIST (Xiao et al. 2017), 28x28x1, in 5 tasks of 2 classes; dreams:
scikit-learn's 8x8 digits resized to 28x28. Offline: Debian's dataset-fashion-mnist is a default mirror."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from wscl.data import fashion_mnist
from wscl.data.canonical import CanonicalDataset
from wscl.data.declaration import Benchmark, Context
from wscl.data.fakes import idx_gz


def build(ctx: Context) -> CanonicalDataset:
    from wscl.data.images import resize
    paths = ctx.fetch_all("fashion-mnist", fashion_mnist.FILES, fashion_mnist.DEFAULT_MIRRORS)
    train_x, train_y, test_x, test_y = fashion_mnist.load(paths)
    dream_x, dream_y, dream_classes = fashion_mnist.digits()
    return ctx.dataset(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, classes=fashion_mnist.CLASSES,
                       dream_x=resize(dream_x, 28), dream_y=dream_y, dream_classes=dream_classes,
                       source="Fashion-MNIST (official IDX files); dreams: scikit-learn digits resized to 28x28")


def fake(where: Path) -> dict[str, list[Path]]:
    """The four gzipped IDX files with two training images and one test image per class."""
    folder = where / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    idx_gz(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (20, 28, 28)))
    idx_gz(folder / "train-labels-idx1-ubyte.gz", np.arange(20) % 10)
    idx_gz(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (10, 28, 28)))
    idx_gz(folder / "t10k-labels-idx1-ubyte.gz", np.arange(10))
    return {"fashion-mnist": [folder]}


BENCHMARK = Benchmark(
    name="seq-fashion-mnist", n_tasks=5, classes_per_task=2, build=build, fake=fake,
    about="Fashion-MNIST, 28x28x1: the offline default study's benchmark [ours]",
    dreams="scikit-learn's digits resized to 28x28 [ours]", raw=("fashion-mnist",),
    augment=None,  # [ours] normalised with its own training images' statistics (no mean/std declared)
)
