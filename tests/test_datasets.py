"""Benchmarks prepared from fakes in the official on-disk formats (no network)."""
import dataclasses
import http.server
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import wscl.data.prepare as prepare_mod
from wscl.cli import main
from wscl.core.errors import DatasetError, ExitCode
from wscl.data import cifar, fashion_mnist, imagenet, tinyimagenet
from wscl.data.benchmarks import seq_fashion_mnist
from wscl.data.canonical import load
from wscl.data.fakes import fake_cifar10, fake_cifar100, fake_imagenet, fake_tiny, write_tar, zip_folder
from wscl.data.sources import ChecksumError, MissingSourceError, RawFile, fetch, md5_of

quiet = lambda *_: None  # noqa: E731


def official(source, archive: Path):
    """The source with the fake archive's checksum as the official one (per-file checksums dropped)."""
    raw = dataclasses.replace(source.archive, md5=md5_of(archive))
    return dataclasses.replace(source, archive=raw, file_md5={})


@pytest.fixture
def cifar_mirrors(tmp_path, monkeypatch):
    mirror10, mirror100 = tmp_path / "m10", tmp_path / "m100"
    mirror10.mkdir()
    mirror100.mkdir()
    a10 = write_tar(fake_cifar10(tmp_path / "src10"), mirror10 / "cifar-10-python.tar.gz")
    a100 = write_tar(fake_cifar100(tmp_path / "src100"), mirror100 / "cifar-100-python.tar.gz")
    monkeypatch.setattr(cifar, "CIFAR10", official(cifar.CIFAR10, a10))
    monkeypatch.setattr(cifar, "CIFAR100", official(cifar.CIFAR100, a100))
    return {"cifar10": [mirror10], "cifar100": [mirror100]}


def test_seq_cifar10_counts_labels_orientation_and_excluded_superclasses(tmp_path, cifar_mirrors):
    folder = prepare_mod.prepare("seq-cifar10", tmp_path / "data", cifar_mirrors, log=quiet)
    ds = load(folder)
    assert ds.image_shape == (3, 32, 32) and ds.augment
    assert len(ds.train_y) == 5 * 30 and np.bincount(ds.train_y).tolist() == [15] * 10
    assert ds.classes[:2] == ["airplane", "automobile"]
    # Channel order and orientation: red = 10 * label, blue = 7, a white pixel at row 1, column 5.
    for i in (0, 17, 149):
        img = ds.train_x[i]
        assert img[0, 0, 0] == 10 * ds.train_y[i] and img[2, 0, 0] == 7 and img[1, 0, 0] == 0
        assert (img[:, 1, 5] == 255).all() and img[1, 5, 1] == 0
    assert len(ds.dream_classes) == 12
    assert not set(ds.dream_classes) & set(cifar.EXCLUDED_SUPERCLASSES)
    assert set(ds.dream_y.tolist()) == set(range(12)) and len(ds.dream_y) == 12 * 5 * 2
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["checksums_verified"] is True
    # [code] the authors' fixed CIFAR-10 constants, not the statistics of these (fake) images
    assert meta["mean"] == [0.4914, 0.4822, 0.4465] and meta["std"] == [0.2470, 0.2435, 0.2615]


def test_checksum_mismatch_is_a_clear_error_and_leaves_nothing(tmp_path, cifar_mirrors, monkeypatch):
    wrong = dataclasses.replace(cifar.CIFAR10, archive=dataclasses.replace(cifar.CIFAR10.archive, md5="0" * 32))
    monkeypatch.setattr(cifar, "CIFAR10", wrong)
    with pytest.raises(ChecksumError, match=r"cifar-10-python.tar.gz: checksum mismatch .*expected 0{32}"):
        prepare_mod.prepare("seq-cifar10", tmp_path / "data", cifar_mirrors, log=quiet)
    raw = tmp_path / "data/raw/cifar10"
    assert sorted(p.name for p in raw.iterdir()) == []  # no archive, no .part, no extracted folder
    assert not (tmp_path / "data/seq-cifar10").exists()
    # --no-verify accepts the custom copy and records it.
    folder = prepare_mod.prepare("seq-cifar10", tmp_path / "data", cifar_mirrors, verify=False, log=quiet)
    assert json.loads((folder / "meta.json").read_text())["checksums_verified"] is False


def test_extracted_cifar_layout_in_a_mirror_is_verified_per_file(tmp_path, monkeypatch):
    src = fake_cifar10(tmp_path / "mirror")
    files = {p.name: md5_of(p) for p in src.iterdir()}
    monkeypatch.setattr(cifar, "CIFAR10", dataclasses.replace(cifar.CIFAR10, file_md5=files))
    folder = prepare_mod.Context(tmp_path / "data", {"cifar10": [tmp_path / "mirror"]}, True, quiet).extracted(
        cifar.CIFAR10)
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    (tmp_path / "data/raw/cifar10/cifar-10-batches-py/test_batch").write_bytes(b"corrupt")
    shutil.rmtree(tmp_path / "mirror")
    with pytest.raises(Exception, match="cifar-10-python.tar.gz"):  # corrupt copy dropped; no source left
        prepare_mod.Context(tmp_path / "data", {}, True, quiet).extracted(
            dataclasses.replace(cifar.CIFAR10, archive=dataclasses.replace(cifar.CIFAR10.archive, url=None)))


def test_seq_tinyimg_half_splits_classes_by_wnids_order(tmp_path, monkeypatch, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archive = zip_folder(fake_tiny(tmp_path / "src"), mirror / "tiny-imagenet-200.zip")
    monkeypatch.setattr(tinyimagenet, "TINY", official(tinyimagenet.TINY, archive))
    folder = prepare_mod.prepare("seq-tinyimg-half", tmp_path / "data", {"tinyimagenet": [mirror]}, log=quiet)
    ds = load(folder)
    assert ds.image_shape == (3, 64, 64)
    assert ds.classes == ["thing 0", "thing 1"] and ds.dream_classes == ["thing 2", "thing 3"]
    assert np.bincount(ds.train_y).tolist() == [3, 3] and np.bincount(ds.dream_y).tolist() == [3, 3]
    assert ds.test_y.tolist() == [0, 1]  # from val_annotations.txt, only the primary half
    # Left half red = 40 * (wnid index + 1), right half blue: orientation and channel order survive JPEG.
    img = ds.dream_x[ds.dream_y == 1][0].astype(int)
    assert abs(img[0, 10, 5] - 160) < 8 and img[2, 10, 5] < 8 and img[2, 10, 60] > 245 and img[0, 10, 60] < 8
    assert main(["data", "info", str(folder)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["train_per_class"] == {"thing 0": 3, "thing 1": 3} and info["checksums_verified"] is True
    assert info["dream_per_class"] == {"thing 2": 3, "thing 3": 3} and info["image_shape"] == [3, 64, 64]
    assert abs(info["mean_pixel_per_channel"]["thing 1"][0] - 40) < 6  # 80 on the left half, 0 on the right


def test_imagenet_based_benchmarks_resize_and_memory_map(tmp_path, monkeypatch, cifar_mirrors):
    primary, aux = ["n01000001", "n01000002"], ["n02000001", "n02000002", "n02000003"]
    monkeypatch.setattr(imagenet, "synsets", lambda which: primary if which == "primary" else aux)
    root = fake_imagenet(tmp_path / "ilsvrc", primary + aux, flat_val=True)
    mirrors = {**cifar_mirrors, "imagenet": [root]}
    fg = load(prepare_mod.prepare("seq-fg-imagenet", tmp_path / "data", mirrors, log=quiet), mmap_above_mb=0)
    assert fg.image_shape == (3, 256, 256) and not fg.augment
    assert isinstance(fg.train_x, np.memmap)
    assert fg.classes == primary and fg.dream_classes == aux
    assert fg.train_y.tolist() == [0, 0, 1, 1] and fg.test_y.tolist() == [0, 1]  # flat val + LOC_val_solution.csv
    assert abs(int(fg.test_x[1][0, 100, 20]) - 40) < 8 and fg.test_x[1][2, 100, 250] > 245
    assert not (tmp_path / "data/raw/imagenet-scratch").exists()
    c100 = load(prepare_mod.prepare("seq-cifar100", tmp_path / "data", mirrors, log=quiet))
    assert c100.dream_x.shape[1:] == (3, 32, 32) and c100.dream_classes == aux
    assert len(c100.classes) == 100 and np.bincount(c100.dream_y).tolist() == [2, 2, 2]


def test_missing_imagenet_root_says_what_layout_is_expected(tmp_path, cifar_mirrors):
    with pytest.raises(MissingSourceError, match=r"--mirror imagenet=ROOT.*ROOT/train/<wnid>/\*\.JPEG"):
        prepare_mod.prepare("seq-fg-imagenet", tmp_path / "data", cifar_mirrors, log=quiet)


class RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    cut_after = None  # close the connection after this many bytes of the first response
    ranges: list = []

    def do_GET(self):
        start = 0
        header = self.headers.get("Range")
        RangeHandler.ranges.append(header)
        if header:
            start = int(header.split("=")[1].split("-")[0])
        body = self.payload[start:]
        self.send_response(206 if header else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if RangeHandler.cut_after is not None:
            body, RangeHandler.cut_after = body[: RangeHandler.cut_after], None
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    RangeHandler.payload = bytes(range(256)) * 4000
    RangeHandler.ranges = []
    httpd = http.server.HTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/file.bin"
    httpd.shutdown()


def test_interrupted_download_is_resumed_and_verified(tmp_path, server):
    import hashlib
    raw = RawFile("file.bin", server, hashlib.md5(RangeHandler.payload).hexdigest())
    RangeHandler.cut_after = 300_000  # the connection drops after 300 kB
    with pytest.raises(DatasetError, match="partial file .* is kept"):
        fetch(raw, tmp_path, [], True, quiet)
    part = tmp_path / "file.bin.part"
    assert part.exists() and 0 < part.stat().st_size < len(RangeHandler.payload)
    assert not (tmp_path / "file.bin").exists()
    have = part.stat().st_size
    path = fetch(raw, tmp_path, [], True, quiet)
    assert RangeHandler.ranges[-1] == f"bytes={have}-"
    assert path.read_bytes() == RangeHandler.payload and not part.exists()


def fashion_mirror(tmp_path: Path) -> Path:
    """The four IDX files of the benchmark's fake: 20 training and 10 test images."""
    return seq_fashion_mnist.fake(tmp_path)["fashion-mnist"][0]


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_fashion_mnist_file_fails_naming_the_file(tmp_path, capsys, damage):
    """The real files (Debian's dataset-fashion-mnist, installed by .ci/run), one of them damaged."""
    mirror = tmp_path / "fm"
    shutil.copytree(DEBIAN_FASHION_MNIST, mirror)
    victim = mirror / "train-labels-idx1-ubyte.gz"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] if damage == "truncated" else data[:-100] + bytes(100))
    code = main(["data", "prepare", "seq-fashion-mnist", "--root", str(tmp_path / "data"),
                 "--mirror", f"fashion-mnist={mirror}"])
    err = capsys.readouterr().err
    assert code == ExitCode.DATA and "train-labels-idx1-ubyte.gz: checksum mismatch" in err
    assert not (tmp_path / "data/seq-fashion-mnist").exists()
    raw = tmp_path / "data/raw/fashion-mnist"
    assert sorted(p.name for p in raw.iterdir()) == ["train-images-idx3-ubyte.gz"]  # verified; nothing half-written


def test_fashion_mnist_from_a_recompressing_mirror_matches_content_checksums(tmp_path, monkeypatch):
    mirror = fashion_mirror(tmp_path)
    files = [dataclasses.replace(f, md5="0" * 32, content_md5=md5_of(mirror / f.name, gunzip=True))
             for f in fashion_mnist.FILES]
    monkeypatch.setattr(fashion_mnist, "FILES", files)
    monkeypatch.setattr(fashion_mnist, "DEFAULT_MIRRORS", [])
    ds = load(prepare_mod.prepare("seq-fashion-mnist", tmp_path / "data", {"fashion-mnist": [mirror]}, log=quiet))
    assert ds.image_shape == (1, 28, 28) and len(ds.train_y) == 20 and ds.dream_x.shape[1:] == (1, 28, 28)
    assert ds.dream_x.max() > 200  # digits rescaled from 0-16 to 0-255
    corrupt = (mirror / "t10k-labels-idx1-ubyte.gz")
    corrupt.write_bytes(corrupt.read_bytes()[:-3] + b"xyz")
    shutil.rmtree(tmp_path / "data")
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.gz"):
        prepare_mod.prepare("seq-fashion-mnist", tmp_path / "data", {"fashion-mnist": [mirror]}, log=quiet)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[
    pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")])])
def test_paper_config_trains_on_a_prepared_benchmark(tmp_path, cifar_mirrors, device):
    """A paper-grid run of seq-cifar10 (its settings from config/paper.yaml), shrunk to the fake's size."""
    import yaml

    from wscl.run.trainer import Run
    from wscl.study.studies import RunKey, Study
    prepare_mod.prepare("seq-cifar10", tmp_path / "data", cifar_mirrors, log=quiet)
    study = Study(yaml.safe_load((Path(__file__).parents[1] / "config/paper.yaml").read_text()))
    cfg = study.run_config(RunKey("seq-cifar10", 200, "er_ace", "full", "reference", 0))
    assert cfg.dataset.name == "seq-cifar10" and cfg.scenario.n_tasks == 5
    cfg = cfg.with_settings({"dataset": {"root": str(tmp_path / "data")}, "model": {"width": 4},
                             "training": {"epochs": 2}, "scenario": {"val_per_task": 4, "freeze_buffer_per_task": 2},
                             "runtime": {"device": device, "progress": False}}, "the fake's size")
    run = Run(cfg, tmp_path / "run", quiet=True, log=quiet)
    metrics = run.run()
    assert len(metrics["class_il"]["accuracy_matrix"]) == 5
    # 10 heads, 12 dream superclasses: the run bound 10 distinct ones, task 0's heads released theirs.
    bound = metrics["tasks"][0]["dream_binding"]
    assert len(bound) == 8 and len(set(bound.values())) == 8 and set(bound.values()) <= set(range(12))
    assert metrics["tasks"][0]["wake_pool"]["dream"] == 8 * 10  # 10 training images per superclass in the fake
