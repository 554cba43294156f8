"""``wscl data prepare NAME``: raw files -> a benchmark in the canonical format; ``wscl data info``.

Raw files are kept under ``ROOT/raw/RAW`` (RAW = the raw dataset's name); the benchmark is written
to ``ROOT/NAME``. Each builder below states which raw datasets it needs and how it maps them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import numpy as np

import shutil
from importlib import resources

import yaml

from wscl.data import canonical as data
from wscl.data.synthetic import synthetic
from wscl.core.safe_io import translated
from wscl.data import cifar
from wscl.data import fashion_mnist
from wscl.data import imagenet
from wscl.data import tinyimagenet
from wscl.data.archives import ArchiveSource, ensure_extracted
from wscl.data.images import resize
from wscl.data.sources import RawFile, fetch


@dataclass
class Context:
    root: Path
    mirrors: dict[str, list[Path]] = field(default_factory=dict)
    verify: bool = True
    log: Callable[[str], None] = print

    def raw_dir(self, raw: str) -> Path:
        return self.root / "raw" / raw

    def fetch_all(self, raw: str, files: list[RawFile], default_mirrors: list[Path] = ()) -> dict[str, Path]:
        mirrors = self.mirrors.get(raw, []) + [m for m in default_mirrors if Path(m).is_dir()]
        return {f.name: fetch(f, self.raw_dir(raw), mirrors, self.verify, self.log) for f in files}

    def extracted(self, source: ArchiveSource) -> Path:
        return ensure_extracted(source, self.raw_dir(source.raw), self.mirrors.get(source.raw, []), self.verify,
                                self.log)

    def dataset(self, name: str, extra: dict | None = None, **arrays) -> data.CanonicalDataset:
        return data.CanonicalDataset(name=name, checksums_verified=self.verify, extra=extra or {},
                                     **AUTHORS_NORMALISATION.get(name, {}), **arrays)


# [code] The authors normalise with fixed per-dataset constants (Tiny: the whole Tiny-ImageNet-200's;
# FG-ImageNet: ImageNet's), dreams with the primary dataset's. Benchmarks not listed here use the
# statistics of their own training images [ours].
AUTHORS_NORMALISATION = {
    "seq-cifar10": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2615]},
    "seq-cifar100": {"mean": [0.5071, 0.4867, 0.4408], "std": [0.2675, 0.2565, 0.2761]},
    "seq-tinyimg-half": {"mean": [0.4802, 0.4480, 0.3975], "std": [0.2770, 0.2691, 0.2821]},
    "seq-fg-imagenet": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
}


def synsets(which: str) -> list[str]:
    """The FG-ImageNet primary or auxiliary synsets, in label order (wscl/resources/imagenet100_*.yml)."""
    mapping = yaml.safe_load(resources.files("wscl.data").joinpath(f"resources/imagenet100_{which}.yml").read_text())
    return [wnid for wnid, _ in sorted(mapping.items(), key=lambda item: item[1])]


def cifar100_dream_superclasses(ctx: Context):
    """CIFAR-100 training images of the 12 superclasses that do not resemble CIFAR-10 classes [code]."""
    splits, _, coarse_names = cifar.load_cifar100(ctx.extracted(cifar.CIFAR100))
    keep = [c for c in coarse_names if c not in cifar.EXCLUDED_SUPERCLASSES]
    x, _, coarse = splits["train"]
    new_label = {coarse_names.index(c): i for i, c in enumerate(keep)}
    rows = np.flatnonzero(np.isin(coarse, list(new_label)))
    return x[rows], np.array([new_label[c] for c in coarse[rows]], dtype=np.int64), keep


def build_seq_cifar10(ctx: Context) -> data.CanonicalDataset:
    """CIFAR-10 (5 x 2); dreams: the 12 non-overlapping CIFAR-100 superclasses (the run draws 10) [code]."""
    train_x, train_y, test_x, test_y, names = cifar.load_cifar10(ctx.extracted(cifar.CIFAR10))
    dream_x, dream_y, dream_names = cifar100_dream_superclasses(ctx)
    return ctx.dataset("seq-cifar10", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                       classes=names, dream_x=dream_x, dream_y=dream_y, dream_classes=dream_names, augment=True,
                       source="CIFAR-10 python archive; dreams: CIFAR-100 coarse superclasses minus 8 [code]")


def build_seq_cifar100(ctx: Context) -> data.CanonicalDataset:
    """CIFAR-100 (10 x 10); dreams: the auxiliary ImageNet-100 synsets resized to 32x32 [code]."""
    splits, fine_names, _ = cifar.load_cifar100(ctx.extracted(cifar.CIFAR100))
    root = imagenet.find_root(ctx.mirrors.get("imagenet", []))
    aux = synsets("aux")
    dream_x, dream_y = imagenet.load_images(imagenet.split_files(root, "train", aux), aux, 32)
    (train_x, train_y, _), (test_x, test_y, _) = splits["train"], splits["test"]
    return ctx.dataset("seq-cifar100", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                       classes=fine_names, dream_x=dream_x, dream_y=dream_y, dream_classes=aux, augment=True,
                       source=f"CIFAR-100 python archive; dreams: ImageNet-100 auxiliary synsets from {root} at 32x32")


def build_seq_tinyimg_half(ctx: Context) -> data.CanonicalDataset:
    """Tiny-ImageNet classes 0-99 (wnids.txt order) as 5 x 20, test = official validation split; the
    other 100 classes' training images are the dreams [code]."""
    train_x, train_y, test_x, test_y, wnids, words = tinyimagenet.load(ctx.extracted(tinyimagenet.TINY))
    half = len(wnids) // 2
    primary, dream = train_y < half, train_y >= half
    test = test_y < half
    return ctx.dataset("seq-tinyimg-half", train_x=train_x[primary], train_y=train_y[primary],
                       test_x=test_x[test], test_y=test_y[test], classes=words[:half],
                       dream_x=train_x[dream], dream_y=train_y[dream] - half, dream_classes=words[half:],
                       augment=True, source="Tiny-ImageNet-200 zip (classes 0-99 primary, 100-199 dreams)",
                       extra={"wnids": wnids[:half], "dream_wnids": wnids[half:]})


def build_seq_fg_imagenet(ctx: Context) -> data.CanonicalDataset:
    """The 100 primary synsets at 256x256 (20 x 5), dreams from the 100 auxiliary synsets [code]; built in
    memory-mapped scratch files under ROOT/raw/imagenet-scratch so that it never sits in memory whole."""
    root = imagenet.find_root(ctx.mirrors.get("imagenet", []))
    scratch = ctx.raw_dir("imagenet-scratch")
    scratch.mkdir(parents=True, exist_ok=True)

    def memmap(name):
        return lambda n, shape: np.lib.format.open_memmap(scratch / f"{name}.npy", mode="w+", dtype=np.uint8,
                                                          shape=(n, *shape))
    primary, aux = synsets("primary"), synsets("aux")
    train_x, train_y = imagenet.load_images(imagenet.split_files(root, "train", primary), primary, 256, memmap("train"))
    test_x, test_y = imagenet.load_images(imagenet.split_files(root, "val", primary), primary, 256, memmap("test"))
    dream_x, dream_y = imagenet.load_images(imagenet.split_files(root, "train", aux), aux, 256, memmap("dream"))
    return ctx.dataset("seq-fg-imagenet", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                       classes=primary, dream_x=dream_x, dream_y=dream_y, dream_classes=aux, augment=False,
                       source=f"ImageNet ILSVRC-2012 from {root}: 100 primary / 100 auxiliary synsets at 256x256",
                       extra={"scratch": str(scratch)})


def build_seq_fashion_mnist(ctx: Context) -> data.CanonicalDataset:
    """Fashion-MNIST 28x28x1 (5 tasks x 2 classes) with scikit-learn digits, resized to 28x28, as dreams."""
    paths = ctx.fetch_all("fashion-mnist", fashion_mnist.FILES, fashion_mnist.DEFAULT_MIRRORS)
    train_x, train_y, test_x, test_y = fashion_mnist.load(paths)
    dream_x, dream_y, dream_classes = fashion_mnist.digits()
    return ctx.dataset(
        "seq-fashion-mnist", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
        classes=fashion_mnist.CLASSES, dream_x=resize(dream_x, 28), dream_y=dream_y, dream_classes=dream_classes,
        augment=False, source="Fashion-MNIST (official IDX files); dreams: scikit-learn digits resized to 28x28")


def build_synthetic(ctx: Context) -> data.CanonicalDataset:
    """The seeded synthetic set with the trainer's default sizes (for trying the format)."""
    return synthetic()


BUILDERS: dict[str, Callable[[Context], data.CanonicalDataset]] = {
    "seq-cifar10": build_seq_cifar10,
    "seq-cifar100": build_seq_cifar100,
    "seq-tinyimg-half": build_seq_tinyimg_half,
    "seq-fg-imagenet": build_seq_fg_imagenet,
    "seq-fashion-mnist": build_seq_fashion_mnist,
    "synthetic": build_synthetic,
}


def prepare(name: str, root: str | Path, mirrors: dict[str, list[Path]] | None = None, verify: bool = True,
            log: Callable[[str], None] = print) -> Path:
    if name not in BUILDERS:
        raise data.DatasetError(f"unknown benchmark {name!r}; choose one of {', '.join(sorted(BUILDERS))}")
    ctx = Context(Path(root), mirrors or {}, verify, log)
    # Raw files, extraction and the prepared folder are each written to a temporary name and renamed into
    # place, so a full disk or a read-only folder leaves no half-written benchmark: one line says which file
    # and why, and rerunning resumes (downloads after their last byte, finished raw files kept).
    rerun = f"rerun `wscl data prepare {name} --root {root}`"
    with translated(ctx.root / name, after=rerun):
        ds = BUILDERS[name](ctx)
    if not verify:
        log(f"{name}: raw checksums were NOT verified; the metadata records checksums_verified: false")
    scratch = ds.extra.pop("scratch", None)
    with translated(ctx.root / name, after=rerun, name_from_os=False):  # not its temporary sibling
        folder = data.save(ds, ctx.root / name)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"prepared {name}: {len(ds.train_y)} train / {len(ds.test_y)} test images of shape {ds.image_shape}, "
        f"{len(ds.dream_y)} dream images -> {folder}")
    return folder


def info(folder: str | Path) -> dict:
    ds = data.load(folder, mmap_above_mb=0)
    meta = json.loads((Path(folder) / "meta.json").read_text())

    def per_class(labels: np.ndarray, names: list[str]) -> dict[str, int]:
        counts = np.bincount(np.asarray(labels), minlength=len(names))
        return {names[i]: int(c) for i, c in enumerate(counts)}

    def channel_means(x: np.ndarray, y: np.ndarray, names: list[str]) -> dict[str, list[float]]:
        y = np.asarray(y)
        out = {}
        for c, name in enumerate(names):
            rows = np.flatnonzero(y == c)[:500]
            out[name] = (np.asarray(x[rows], dtype=np.float64).mean(axis=(0, 2, 3)).round(2).tolist()
                         if len(rows) else [])
        return out

    return {
        "name": meta["name"], "image_shape": meta["image_shape"], "channels": meta["channels"],
        "classes": meta["classes"], "train_per_class": per_class(ds.train_y, ds.classes),
        "test_per_class": per_class(ds.test_y, ds.classes), "dream_classes": meta["dream_classes"],
        "dream_per_class": per_class(ds.dream_y, ds.dream_classes),
        "mean_pixel_per_channel": channel_means(ds.train_x, ds.train_y, ds.classes),
        "dream_mean_pixel_per_channel": channel_means(ds.dream_x, ds.dream_y, ds.dream_classes),
        "source": meta["source"], "checksums_verified": meta["checksums_verified"], "sha256": meta.get("sha256"),
    }
