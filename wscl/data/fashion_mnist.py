"""Fashion-MNIST (Xiao et al. 2017) from its official IDX files, and scikit-learn's 8x8 digits."""
from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

import numpy as np

from wscl.data.sources import RawFile

URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# Archive MD5s as torchvision lists them; content MD5s of the decompressed files (Debian's package
# recompresses the archives, so only the content matches there).
FILES = [
    RawFile("train-images-idx3-ubyte.gz", URL + "train-images-idx3-ubyte.gz",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    RawFile("train-labels-idx1-ubyte.gz", URL + "train-labels-idx1-ubyte.gz",
            "25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
    RawFile("t10k-images-idx3-ubyte.gz", URL + "t10k-images-idx3-ubyte.gz",
            "bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
    RawFile("t10k-labels-idx1-ubyte.gz", URL + "t10k-labels-idx1-ubyte.gz",
            "bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
]
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]
DEFAULT_MIRRORS = [Path("/usr/share/datasets/fashion-mnist")]  # Debian's dataset-fashion-mnist


def _read(path: Path, reader) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / path.stem
        with gzip.open(path, "rb") as src, open(raw, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return reader(str(raw)).numpy()


def load(paths: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images as uint8 (N, 1, 28, 28) and labels as int64, train then test."""
    from torchvision.datasets.mnist import read_image_file, read_label_file  # torchvision only when preparing
    train_x = _read(paths["train-images-idx3-ubyte.gz"], read_image_file)[:, None]
    train_y = _read(paths["train-labels-idx1-ubyte.gz"], read_label_file).astype(np.int64)
    test_x = _read(paths["t10k-images-idx3-ubyte.gz"], read_image_file)[:, None]
    test_y = _read(paths["t10k-labels-idx1-ubyte.gz"], read_label_file).astype(np.int64)
    return train_x, train_y, test_x, test_y


def digits() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's digits (1,797 images, 8x8, values 0-16) as uint8 (N, 1, 8, 8) on the 0-255 scale."""
    from sklearn.datasets import load_digits
    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    return images, d.target.astype(np.int64), [f"digit {k}" for k in range(10)]
