"""Seq-FG-ImageNet: the 100 primary ImageNet-100 synsets at 256x256 in 20 tasks of 5; dreams: the 100 auxiliary
synsets [code]. Built in memory-mapped scratch files under ROOT/raw/imagenet-scratch, so that it never sits in
memory whole."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from wscl.data import imagenet
from wscl.data.canonical import CanonicalDataset
from wscl.data.declaration import Benchmark, Context
from wscl.data.fakes import fake_imagenet


def build(ctx: Context) -> CanonicalDataset:
    root = imagenet.find_root(ctx.mirrors.get("imagenet", []))
    scratch = ctx.raw_dir("imagenet-scratch")
    scratch.mkdir(parents=True, exist_ok=True)

    def memmap(name):
        return lambda n, shape: np.lib.format.open_memmap(scratch / f"{name}.npy", mode="w+", dtype=np.uint8,
                                                          shape=(n, *shape))
    primary, aux = imagenet.synsets("primary"), imagenet.synsets("aux")
    train_x, train_y = imagenet.load_images(imagenet.split_files(root, "train", primary), primary, 256, memmap("train"))
    test_x, test_y = imagenet.load_images(imagenet.split_files(root, "val", primary), primary, 256, memmap("test"))
    dream_x, dream_y = imagenet.load_images(imagenet.split_files(root, "train", aux), aux, 256, memmap("dream"))
    return ctx.dataset(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, classes=primary,
                       dream_x=dream_x, dream_y=dream_y, dream_classes=aux,
                       source=f"ImageNet ILSVRC-2012 from {root}: 100 primary / 100 auxiliary synsets at 256x256",
                       extra={"scratch": str(scratch)})  # removed by `prepare` once the folder is saved


def fake(where: Path) -> dict[str, list[Path]]:
    """An ILSVRC-2012 root with one small training and one validation image per primary and auxiliary synset."""
    return {"imagenet": [fake_imagenet(where / "imagenet", imagenet.synsets("primary") + imagenet.synsets("aux"),
                                       per_class=1, size=32)]}


BENCHMARK = Benchmark(
    name="seq-fg-imagenet", n_tasks=20, classes_per_task=5, build=build, fake=fake,
    about="100 ImageNet synsets at 256x256 [code]", dreams="100 other ImageNet synsets [code]",
    raw=("imagenet",),
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),  # [code] ImageNet's
    augment=None,  # [code] the authors' FG-ImageNet transform neither crops nor flips
)
