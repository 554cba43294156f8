"""Small copies of raw datasets in their exact official on-disk formats, written from arrays: what the
benchmark declarations' ``fake`` writers (wscl/data/benchmarks/) and the format tests
(tests/test_datasets.py) build their fakes from."""
from __future__ import annotations

import csv
import gzip
import io
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


class Python2Pickler(pickle._Pickler):
    """Writes str as Python 2 byte strings (SHORT_BINSTRING / BINSTRING), as the official CIFAR files have them."""
    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        data = obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str


def py2_pickle(obj, path: Path) -> None:
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue())


def marked_images(labels: np.ndarray, size: int = 32) -> np.ndarray:
    """(N, 3, size, size): image i has value 10*label in red everywhere, and a white pixel at row 1, col 5."""
    images = np.zeros((len(labels), 3, size, size), np.uint8)
    images[:, 0] = (10 * labels)[:, None, None]
    images[:, 2] = 7
    images[:, :, 1, 5] = 255
    return images


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """The official row format: 1024 red, 1024 green, 1024 blue values per image."""
    return images.reshape(len(images), -1)


def write_tar(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def fake_cifar10(where: Path, per_class: int = 3) -> Path:
    folder = where / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for i in range(1, 6):
        labels = np.tile(np.arange(10), per_class)
        py2_pickle({"batch_label": f"training batch {i} of 5", "labels": labels.tolist(),
                    "data": cifar_rows(marked_images(labels)),
                    "filenames": [f"img_{i}_{k}.png" for k in range(len(labels))]},
                   folder / f"data_batch_{i}")
    labels = np.tile(np.arange(10), 2)
    py2_pickle({"batch_label": "testing batch 1 of 1", "labels": labels.tolist(),
                "data": cifar_rows(marked_images(labels)), "filenames": ["t.png"] * len(labels)}, folder / "test_batch")
    py2_pickle({"label_names": names, "num_cases_per_batch": 30, "num_vis": 3072}, folder / "batches.meta")
    return folder


COARSE = ["aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
          "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
          "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
          "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
          "vehicles_1", "vehicles_2"]


def fake_cifar100(where: Path, per_class: int = 2) -> Path:
    folder = where / "cifar-100-python"
    folder.mkdir(parents=True)
    fine = np.arange(100)
    coarse_of_fine = fine // 5  # five fine classes per superclass
    for split, n in (("train", per_class), ("test", 1)):
        labels = np.tile(fine, n)
        py2_pickle({"filenames": ["x.png"] * len(labels), "batch_label": f"{split} batch",
                    "fine_labels": labels.tolist(), "coarse_labels": coarse_of_fine[labels].tolist(),
                    "data": cifar_rows(marked_images(labels % 20))}, folder / split)
    py2_pickle({"fine_label_names": [f"fine_{i}" for i in range(100)], "coarse_label_names": COARSE},
               folder / "meta")
    return folder


def jpeg(path: Path, color, size: int = 64) -> None:
    """A two-colour image: ``color`` on the left half, blue on the right half."""
    img = np.zeros((size, size, 3), np.uint8)
    img[:, : size // 2] = color
    img[:, size // 2:] = (0, 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, "JPEG", quality=95)


def fake_tiny(where: Path, wnids=("n00000001", "n00000002", "n00000003", "n00000004"), per_class: int = 3) -> Path:
    root = where / "tiny-imagenet-200"
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\tthing {i}\n" for i, w in enumerate(wnids)) + "n09999999\tother\n")
    annotations = []
    for i, wnid in enumerate(wnids):
        for k in range(per_class):
            jpeg(root / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", ((40 * (i + 1)) % 256, 0, 0))
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        name = f"val_{i}.JPEG"
        jpeg(root / "val" / "images" / name, ((40 * (i + 1)) % 256, 0, 0))
        annotations.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    return root


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder.parent))
    return archive


def fake_imagenet(root: Path, wnids, per_class: int = 2, flat_val: bool = False, size: int = 80) -> Path:
    for i, wnid in enumerate(wnids):
        for k in range(per_class):
            jpeg(root / "train" / wnid / f"{wnid}_{k}.JPEG", ((20 + 20 * i) % 256, 0, 0), size)
    rows = []
    for i, wnid in enumerate(wnids):
        if flat_val:
            image_id = f"ILSVRC2012_val_{i:08d}"
            jpeg(root / "val" / f"{image_id}.JPEG", ((20 + 20 * i) % 256, 0, 0), size)
            rows.append({"ImageId": image_id, "PredictionString": f"{wnid} 1 2 3 4"})
        else:
            jpeg(root / "val" / wnid / "v.JPEG", ((20 + 20 * i) % 256, 0, 0), size)
    if flat_val:
        with open(root / "LOC_val_solution.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["ImageId", "PredictionString"])
            writer.writeheader()
            writer.writerows(rows)
    return root


def idx_gz(path: Path, array: np.ndarray) -> Path:
    """An IDX file (as Fashion-MNIST's), gzipped."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())
    return path
