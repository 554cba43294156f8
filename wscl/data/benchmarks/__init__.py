"""The benchmarks, one declaration per module of this folder (``BENCHMARK = Benchmark(...)``, see
wscl/data/declaration.py), found by listing the folder: adding a benchmark is adding one file. And the dataset a
run trains on (``from_config``)."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from wscl.core.errors import DatasetError
from wscl.data.canonical import CanonicalDataset, load
from wscl.data.declaration import Benchmark
from wscl.data.synthetic import synthetic
from wscl.data.verify import verify_prepared
from wscl.settings.config import Config, Layer, build


def registry() -> dict[str, Benchmark]:
    """Every declared benchmark by name, in module-name order (imports each module of this folder once)."""
    found: dict[str, Benchmark] = {}
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
        if module in OWN_NAMES:  # importing it would hide this package's own name
            raise DatasetError(f"{__name__}.{module}: the module name {module!r} is taken by the registry; rename "
                               "the file")
        declared = getattr(importlib.import_module(f"{__name__}.{module}"), "BENCHMARK", None)
        if not isinstance(declared, Benchmark):
            raise DatasetError(f"{__name__}.{module} declares no BENCHMARK = Benchmark(...); every module of "
                               f"{Path(__file__).parent} declares one benchmark")
        if declared.name in found:
            raise DatasetError(f"{__name__}.{module}: benchmark {declared.name!r} is declared twice")
        found[declared.name] = declared
    return found


def get(name: str) -> Benchmark:
    benchmarks = registry()
    if name not in benchmarks:
        raise DatasetError(f"unknown benchmark {name!r}; choose one of {', '.join(sorted(benchmarks))} "
                           f"(declared in {Path(__file__).parent})")
    return benchmarks[name]


def task_structure(name: str) -> dict:
    """The declared task structure of benchmark ``name`` as trainer settings; {} for a dataset that no module
    declares (a prepared folder of one's own: the trainer's defaults apply)."""
    declared = registry().get(name)
    return declared.task_structure if declared else {}


def run_config(layers: list[Layer]) -> Config:
    """A run's configuration from its layers, with the declared task structure of the benchmark it names as the
    `benchmark` layer: `wscl train --dataset NAME` and a study's runs on NAME alike."""
    return build(layers, declared=task_structure)


# The smallest image side the ResNet trains on in batches of any size: it halves an image three times, and
# BatchNorm needs more than one value per channel, so 8 pixels (a 1 x 1 last stage) fail on a one-image batch
# (docs/method.md, assumptions). dataset.synthetic.size starts here too.
MIN_IMAGE_SIDE = 9


def check_image_side(ds: CanonicalDataset, folder: Path) -> None:
    side = min(ds.image_shape[1:])
    if side < MIN_IMAGE_SIDE:
        raise DatasetError(f"{folder}: images of {side} pixels; the network trains on images of at least "
                           f"{MIN_IMAGE_SIDE} pixels (a one-image batch fails below that): prepare it larger")


def from_config(cfg: Config) -> CanonicalDataset:
    """The dataset a run trains on: generated for `synthetic`, else loaded from ``dataset.root``."""
    d = cfg.dataset
    if d.name == "synthetic":
        return synthetic(**d.synthetic.to_dict())
    folder = Path(d.root) / d.name
    sha256 = verify_prepared(folder, d.mmap_above_mb)  # stops the run on damaged data, naming the file
    ds = load(folder, mmap_above_mb=d.mmap_above_mb)
    ds.sha256 = sha256 or ds.sha256
    check_image_side(ds, folder)
    declared = registry().get(d.name)
    if declared and declared.augment and declared.augment.padding is not None:
        ds.crop_padding = declared.augment.padding  # meta.json does not record it; the declaration does
    return ds


# This package's own names, before any declaration module is imported (importing one adds its name here too).
OWN_NAMES = frozenset(globals())
