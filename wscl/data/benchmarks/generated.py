"""`synthetic` [ours]: images generated from a seed (wscl/data/synthetic.py), for tests and small studies. A run
generates them from its ``dataset.synthetic`` settings; ``wscl data prepare synthetic`` writes the default ones."""
from __future__ import annotations

from wscl.data.canonical import CanonicalDataset
from wscl.data.declaration import Benchmark, Context, CropFlip
from wscl.data.synthetic import synthetic


def build(ctx: Context) -> CanonicalDataset:
    return synthetic()


BENCHMARK = Benchmark(
    name="synthetic", n_tasks=5, classes_per_task=2, build=build,  # the default dataset.synthetic.classes: 10
    about="class prototypes plus noise and one-pixel shifts [ours]",
    dreams="prototypes of their own, disjoint from the primary ones [ours]",
    augment=CropFlip(padding=None),  # [ours] size // 8 pixels, as CIFAR's 4 are to its 32 (the generator sets it)
)
