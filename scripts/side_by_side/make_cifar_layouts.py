#!/usr/bin/env python3
"""Build offline stand-ins for CIFAR-10 and CIFAR-100 in their OFFICIAL python on-disk layouts.

Used by the side-by-side comparison of this project with the authors' public WSCL code
(scripts/side_by_side/README.md), where no official dataset server is reachable. Both codes read
exactly the same bytes:

* ``OUT/cifar10/cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``, ``batches.meta``) and
  ``OUT/cifar10/cifar-10-python.tar.gz``: 10 classes of Fashion-MNIST (Debian's
  ``dataset-fashion-mnist`` IDX files), ``--train-per-class`` / ``--test-per-class`` images per class
  drawn with ``--seed``, zero-padded from 28x28 to 32x32 and replicated to 3 channels (uint8).
* ``OUT/cifar100/cifar-100-python/`` (``train``, ``test``, ``meta``) and
  ``OUT/cifar100/cifar-100-python.tar.gz``: 100 fine classes with the official CIFAR-100 fine names
  (alphabetical label order), coarse labels by the standard fine -> superclass mapping, and the
  official 20 superclass names. Images come from scikit-learn's ``load_digits()`` (8x8, 0..16):
  fine class f shows digit ``f % 10``, upscaled to 28x28 and padded to 32x32, coloured with a
  foreground hue fixed by its superclass and a background shade fixed by its position inside the
  superclass, rotated by ``k * 90`` degrees (``k`` = position % 4; position 4 is mirrored), and
  per image shifted by up to +-2 pixels with light Gaussian noise. ``--c100-train-per-fine`` /
  ``--c100-test-per-fine`` images per fine class (default 50 / 10, a tenth of the official 500 / 100,
  the same tenth as the CIFAR-10 stand-in's default 500 / 100 of 5000 / 1000). The dream set
  (CIFAR-100 superclasses minus the 8 that resemble CIFAR-10) therefore has real, digit-based images
  disjoint from the clothing images of the primary set.

The pickles are protocol-2 dicts with the official keys (``data`` as a uint8 array of rows of 1024 red,
1024 green, 1024 blue values; ``labels`` / ``fine_labels`` / ``coarse_labels`` lists; the meta name
lists). The archives are written deterministically (sorted members, mtime 0, uid/gid 0, gzip mtime 0),
so the same arguments always give the same bytes; the SHA-256 of every produced file is written to
``OUT/SHA256SUMS`` and printed.

Example (the exact command of the side-by-side study)::

    .venv/bin/python scripts/side_by_side/make_cifar_layouts.py --out /tmp/sbs_data --seed 0
"""
from __future__ import annotations

import argparse
import colorsys
import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

FASHION_NAMES = ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                 "ankle_boot"]

# The official CIFAR-100 superclasses and their five fine classes (https://www.cs.toronto.edu/~kriz/cifar.html).
SUPERCLASSES = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}
COARSE_NAMES = sorted(SUPERCLASSES)                       # official coarse label order (alphabetical)
FINE_NAMES = sorted(n for names in SUPERCLASSES.values() for n in names)   # official fine label order
COARSE_OF_FINE = np.array([next(COARSE_NAMES.index(c) for c, names in SUPERCLASSES.items() if n in names)
                           for n in FINE_NAMES], dtype=np.int64)


# ----------------------------------------------------------------------------------------------- helpers
def read_idx_gz(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def rows(images_hwc: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) uint8 -> official rows: 1024 red, 1024 green, 1024 blue values per image."""
    return np.ascontiguousarray(images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), -1), dtype=np.uint8)


def dump(obj, path: Path) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def deterministic_tar_gz(folder: Path, archive: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(folder.name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
        tar.addfile(info)
        for file in sorted(folder.iterdir()):
            data = file.read_bytes()
            info = tarfile.TarInfo(f"{folder.name}/{file.name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    with open(archive, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
        gz.write(buffer.getvalue())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------ CIFAR-10
def build_cifar10(fmnist: Path, out: Path, train_per_class: int, test_per_class: int, rng: np.random.Generator):
    folder = out / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, prefix, n in (("train", "train", train_per_class), ("test", "t10k", test_per_class)):
        images = read_idx_gz(fmnist / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx_gz(fmnist / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
        chosen = np.concatenate([np.sort(rng.choice(np.flatnonzero(labels == c), n, replace=False))
                                 for c in range(10)])
        chosen = chosen[rng.permutation(len(chosen))]
        x = np.pad(images[chosen], ((0, 0), (2, 2), (2, 2)))           # 28x28 -> 32x32, zero border
        splits[split] = (np.repeat(x[..., None], 3, axis=3), labels[chosen])
    x, y = splits["train"]
    for i, part in enumerate(np.array_split(np.arange(len(y)), 5), start=1):
        dump({"batch_label": f"training batch {i} of 5", "labels": y[part].tolist(), "data": rows(x[part]),
              "filenames": [f"fmnist_train_{k:06d}.png" for k in part]}, folder / f"data_batch_{i}")
    x, y = splits["test"]
    dump({"batch_label": "testing batch 1 of 1", "labels": y.tolist(), "data": rows(x),
          "filenames": [f"fmnist_test_{k:06d}.png" for k in range(len(y))]}, folder / "test_batch")
    dump({"label_names": FASHION_NAMES, "num_cases_per_batch": int(np.ceil(len(splits["train"][1]) / 5)),
          "num_vis": 3072}, folder / "batches.meta")
    deterministic_tar_gz(folder, out / "cifar10" / "cifar-10-python.tar.gz")
    return folder


# ----------------------------------------------------------------------------------------- CIFAR-100
def digit_image(digit8: np.ndarray, fg, bg, rot: int, mirror: bool, shift, noise) -> np.ndarray:
    gray = Image.fromarray((digit8 * (255.0 / 16.0)).astype(np.uint8)).resize((28, 28), Image.BILINEAR)
    alpha = np.pad(np.asarray(gray, dtype=np.float64) / 255.0, 2)              # 32x32 in [0, 1]
    alpha = np.rot90(alpha, rot)
    if mirror:
        alpha = alpha[:, ::-1]
    alpha = np.roll(alpha, shift, axis=(0, 1))
    img = alpha[..., None] * np.asarray(fg)[None, None] + (1 - alpha[..., None]) * np.asarray(bg)[None, None]
    return np.clip(np.rint((img + noise) * 255.0), 0, 255).astype(np.uint8)


def build_cifar100(out: Path, train_per_fine: int, test_per_fine: int, rng: np.random.Generator):
    from sklearn.datasets import load_digits

    digits = load_digits()
    dx, dy = digits.images, digits.target
    folder = out / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    data = {"train": ([], []), "test": ([], [])}
    for fine, name in enumerate(FINE_NAMES):
        coarse = int(COARSE_OF_FINE[fine])
        position = SUPERCLASSES[COARSE_NAMES[coarse]].index(name)
        fg = colorsys.hsv_to_rgb(coarse / 20.0, 0.85, 1.0)
        bg = colorsys.hsv_to_rgb((coarse / 20.0 + 0.5) % 1.0, 0.5, 0.15 + 0.1 * position)
        pool = np.flatnonzero(dy == fine % 10)
        chosen = rng.choice(pool, train_per_fine + test_per_fine, replace=len(pool) < train_per_fine + test_per_fine)
        for k, idx in enumerate(chosen):
            img = digit_image(dx[idx], fg, bg, rot=position % 4, mirror=position == 4,
                              shift=tuple(int(s) for s in rng.integers(-2, 3, size=2)),
                              noise=rng.normal(0.0, 0.04, size=(32, 32, 3)))
            split = "train" if k < train_per_fine else "test"
            data[split][0].append(img)
            data[split][1].append(fine)
    for split, (images, fines) in data.items():
        order = rng.permutation(len(fines))
        x = np.stack(images)[order]
        fine = np.asarray(fines, dtype=np.int64)[order]
        dump({"filenames": [f"digits_{split}_{k:06d}.png" for k in range(len(fine))],
              "batch_label": f"{split}ing batch 1 of 1", "fine_labels": fine.tolist(),
              "coarse_labels": COARSE_OF_FINE[fine].tolist(), "data": rows(x)}, folder / split)
    dump({"fine_label_names": FINE_NAMES, "coarse_label_names": COARSE_NAMES}, folder / "meta")
    deterministic_tar_gz(folder, out / "cifar100" / "cifar-100-python.tar.gz")
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (cifar10/, cifar100/, SHA256SUMS)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--fashion-mnist", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="folder with the four gzipped Fashion-MNIST IDX files")
    parser.add_argument("--train-per-class", type=int, default=500, help="CIFAR-10 stand-in train images per class")
    parser.add_argument("--test-per-class", type=int, default=100, help="CIFAR-10 stand-in test images per class")
    parser.add_argument("--c100-train-per-fine", type=int, default=50, help="CIFAR-100 train images per fine class")
    parser.add_argument("--c100-test-per-fine", type=int, default=10, help="CIFAR-100 test images per fine class")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    build_cifar10(args.fashion_mnist, args.out, args.train_per_class, args.test_per_class, rng)
    build_cifar100(args.out, args.c100_train_per_fine, args.c100_test_per_fine, rng)
    files = sorted(p for p in args.out.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    lines = [f"{sha256(p)}  {p.relative_to(args.out)}" for p in files]
    (args.out / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
