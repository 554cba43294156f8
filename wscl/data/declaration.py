"""What a benchmark declares, in one file of ``wscl/data/benchmarks/`` (``BENCHMARK = Benchmark(...)``), and the
context its builder reads the raw files through.

A declaration holds everything that makes the benchmark: its task structure, its normalisation, its
augmentation, what its dream set is, the raw datasets it reads with the builder that maps them to the
canonical arrays, and a writer of a small copy of those raw files in their official on-disk format.
Everything else follows from it: ``wscl data prepare NAME`` and ``wscl data list``, the metadata of the
prepared folder (normalisation, augmentation), the crop padding of a run, and the task structure of every run
on it, `wscl train --dataset NAME` and a study's alike (the builder's `benchmark` layer: benchmarks.run_config).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wscl.data.archives import ArchiveSource, ensure_extracted
from wscl.data.canonical import CanonicalDataset
from wscl.data.sources import RawFile, fetch


@dataclass(frozen=True)
class CropFlip:
    """Training-time augmentation: a random crop of the image padded by ``padding`` zero pixels on each side,
    then a random horizontal flip (torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()``).
    ``padding=None``: the dataset sets its own (the generated `synthetic` one, in proportion to its size)."""
    padding: int | None = 4


@dataclass(frozen=True)
class Benchmark:
    name: str                # `wscl data prepare NAME`, the prepared folder ROOT/NAME, a study's `dataset`
    n_tasks: int             # the task structure of runs on it unless a later layer sets `scenario`
    classes_per_task: int
    build: Callable[[Context], CanonicalDataset]  # raw files -> canonical arrays (through ``ctx.dataset``)
    about: str = ""          # one line: what the benchmark is, with its labels ([code], [paper], [ours])
    dreams: str = ""         # what its dream (auxiliary) set is
    raw: tuple[str, ...] = ()  # raw datasets it reads: folders ROOT/raw/RAW and the keys of ``--mirror RAW=PATH``
    mean: tuple[float, ...] | None = None  # fixed per-channel normalisation; None: its training images' own
    std: tuple[float, ...] | None = None
    augment: CropFlip | None = None        # None: no augmentation
    # Writes a small copy of the raw files in their official on-disk formats under the folder given and returns
    # the mirrors to prepare it from (``prepare(NAME, root, mirrors, verify=False)``; the official checksums
    # are those of the real files). None: nothing to fake (generated data).
    fake: Callable[[Path], dict[str, list[Path]]] | None = None

    def __post_init__(self):
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"benchmark {self.name!r}: declare both mean and std, or neither")
        if self.n_tasks < 1 or self.classes_per_task < 1:
            raise ValueError(f"benchmark {self.name!r}: n_tasks and classes_per_task must be positive")

    @property
    def task_structure(self) -> dict:
        """The trainer settings of its task structure: the bottom layer of a study's run configuration."""
        return {"scenario": {"n_tasks": self.n_tasks, "classes_per_task": self.classes_per_task}}


@dataclass
class Context:
    """What a builder reads its raw files through: ROOT/raw/RAW, local mirrors first, checksums verified."""
    root: Path
    mirrors: dict[str, list[Path]] = field(default_factory=dict)
    verify: bool = True
    log: Callable[[str], None] = print
    benchmark: Benchmark | None = None  # the declaration being built: ``dataset`` takes its declared settings

    def raw_dir(self, raw: str) -> Path:
        return self.root / "raw" / raw

    def fetch_all(self, raw: str, files: list[RawFile], default_mirrors: list[Path] = ()) -> dict[str, Path]:
        mirrors = self.mirrors.get(raw, []) + [m for m in default_mirrors if Path(m).is_dir()]
        return {f.name: fetch(f, self.raw_dir(raw), mirrors, self.verify, self.log) for f in files}

    def extracted(self, source: ArchiveSource) -> Path:
        return ensure_extracted(source, self.raw_dir(source.raw), self.mirrors.get(source.raw, []), self.verify,
                                self.log)

    def dataset(self, extra: dict | None = None, **arrays) -> CanonicalDataset:
        """The canonical dataset of the arrays, classes and source the builder read, with what the benchmark
        declares: its name, normalisation and augmentation."""
        b = self.benchmark
        norm = {} if b.mean is None else {"mean": list(b.mean), "std": list(b.std)}
        augment = {"augment": b.augment is not None}
        if b.augment is not None and b.augment.padding is not None:
            augment["crop_padding"] = b.augment.padding
        return CanonicalDataset(name=b.name, checksums_verified=self.verify, extra=extra or {}, **norm, **augment,
                                **arrays)
