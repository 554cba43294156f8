"""Seq-CIFAR-100: CIFAR-100 in 10 tasks of 10 classes; dreams: the 100 auxiliary ImageNet-100 synsets resized to
32x32 [code]."""
from __future__ import annotations

from pathlib import Path

from wscl.data import cifar, imagenet
from wscl.data.canonical import CanonicalDataset
from wscl.data.declaration import Benchmark, Context, CropFlip
from wscl.data.fakes import fake_cifar100, fake_imagenet


def build(ctx: Context) -> CanonicalDataset:
    splits, fine_names, _ = cifar.load_cifar100(ctx.extracted(cifar.CIFAR100))
    root = imagenet.find_root(ctx.mirrors.get("imagenet", []))
    aux = imagenet.synsets("aux")
    dream_x, dream_y = imagenet.load_images(imagenet.split_files(root, "train", aux), aux, 32)
    (train_x, train_y, _), (test_x, test_y, _) = splits["train"], splits["test"]
    return ctx.dataset(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, classes=fine_names,
                       dream_x=dream_x, dream_y=dream_y, dream_classes=aux,
                       source=f"CIFAR-100 python archive; dreams: ImageNet-100 auxiliary synsets from {root} at 32x32")


def fake(where: Path) -> dict[str, list[Path]]:
    """The extracted CIFAR-100 python layout, and one small training image per auxiliary ImageNet synset."""
    return {"cifar100": [fake_cifar100(where / "cifar100").parent],
            "imagenet": [fake_imagenet(where / "imagenet", imagenet.synsets("aux"), per_class=1, size=40)]}


BENCHMARK = Benchmark(
    name="seq-cifar100", n_tasks=10, classes_per_task=10, build=build, fake=fake,
    about="CIFAR-100, 32x32 [code]", dreams="the 100 auxiliary ImageNet-100 synsets at 32x32 [code]",
    raw=("cifar100", "imagenet"),
    mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761),  # [code] the authors' fixed constants
    augment=CropFlip(padding=4),  # [code]
)
