"""Seq-TinyImg-half: Tiny-ImageNet-200's classes 0-99 (wnids.txt order) in 5 tasks of 20, tested on the official
validation split; dreams: the training images of the other 100 classes [code]."""
from __future__ import annotations

from pathlib import Path

from wscl.data import tinyimagenet
from wscl.data.canonical import CanonicalDataset
from wscl.data.declaration import Benchmark, Context, CropFlip
from wscl.data.fakes import fake_tiny


def build(ctx: Context) -> CanonicalDataset:
    train_x, train_y, test_x, test_y, wnids, words = tinyimagenet.load(ctx.extracted(tinyimagenet.TINY))
    half = len(wnids) // 2
    primary, dream = train_y < half, train_y >= half
    test = test_y < half
    return ctx.dataset(train_x=train_x[primary], train_y=train_y[primary], test_x=test_x[test], test_y=test_y[test],
                       classes=words[:half], dream_x=train_x[dream], dream_y=train_y[dream] - half,
                       dream_classes=words[half:],
                       source="Tiny-ImageNet-200 zip (classes 0-99 primary, 100-199 dreams)",
                       extra={"wnids": wnids[:half], "dream_wnids": wnids[half:]})


def fake(where: Path) -> dict[str, list[Path]]:
    """The extracted Tiny-ImageNet-200 layout: 200 wnids with one training and one validation image each."""
    wnids = tuple(f"n{i:08d}" for i in range(1, 201))
    return {"tinyimagenet": [fake_tiny(where / "tinyimagenet", wnids, per_class=1).parent]}


BENCHMARK = Benchmark(
    name="seq-tinyimg-half", n_tasks=5, classes_per_task=20, build=build, fake=fake,
    about="Tiny-ImageNet-200's first 100 classes, 64x64 [code]",
    dreams="the training images of Tiny-ImageNet-200's other 100 classes [code]",
    raw=("tinyimagenet",),
    # [code] the authors' constants: those of the whole Tiny-ImageNet-200
    mean=(0.4802, 0.4480, 0.3975), std=(0.2770, 0.2691, 0.2821),
    augment=CropFlip(padding=4),  # [code] Mammoth's RandomCrop(64, padding=4) + RandomHorizontalFlip
)
