"""A study (the Snakemake config): its runs and each run's trainer configuration.

Kept in the package, not in the Snakefile, so that the same logic is tested and used by the
aggregation. Precedence of trainer settings, later wins: the task structure its dataset's declaration
states (wscl/data/benchmarks/) -> study ``trainer`` -> benchmark ``trainer`` -> matching ``overrides`` in
order -> the run's own coordinates (dataset, method, buffer, preset, fidelity, seed). The coordinates
come only from the grid, the benchmarks and the seeds: a coordinate key set in a ``trainer`` section is
refused, since it would be overwritten.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from collections.abc import Iterator

from wscl.data.benchmarks import task_structure
from wscl.settings.config import PRESETS, ConfigError, check_settings, deep_merge, defaults, flatten, resolve
from wscl.study.outputs import ALL_RUNS, PLOTS, TABLE_FORMATS, plot_file, table_file

# Presets that fix the replay buffer themselves: they run once per benchmark, at that buffer.
FIXED_BUFFER = {name: p["training"]["buffer_size"] for name, p in PRESETS.items()
                if "buffer_size" in p.get("training", {})}
PRESET_KEYS = sorted({key for p in PRESETS.values() for key in flatten(p)})
# Trainer keys that are a run's coordinates, and where a study sets them instead.
COORDINATE_KEYS = {
    "fidelity": "the study's `fidelity` or a grid entry's `fidelities`",
    "seed": "the study's `seeds`",
    "preset": "a grid entry's `presets`",
    "training.method": "a grid entry's `methods`",
    "training.buffer_size": "a benchmark's `buffers`",
    "dataset.name": "a benchmark's `dataset`",
}


def trainer_sections(config: dict, with_overrides: bool = True) -> dict[str, dict]:
    """Where a study sets trainer settings -> the settings; parts that are not mappings are left to the schema."""
    sections = {"trainer": config.get("trainer", {})}
    benchmarks = config.get("benchmarks")
    for name, bench in (benchmarks.items() if isinstance(benchmarks, dict) else ()):
        sections[f"benchmarks.{name}.trainer"] = bench.get("trainer", {}) if isinstance(bench, dict) else {}
    overrides = config.get("overrides", []) if with_overrides else []
    for i, rule in enumerate(overrides if isinstance(overrides, list) else []):
        sections[f"overrides[{i}].trainer"] = rule.get("trainer", {}) if isinstance(rule, dict) else {}
    return {where: tree for where, tree in sections.items() if isinstance(tree, dict)}


def check_trainer_sections(config: dict) -> None:
    """The trainer's own check of every trainer section: its messages name the nearest valid key."""
    for where, tree in trainer_sections(config).items():
        try:
            check_settings(tree)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def declared_task_structure(dataset: str) -> dict:
    """The task structure that ``dataset``'s declaration states (wscl/data/benchmarks/), where it differs from the
    trainer's defaults: what equals them is left to them, so that a run's configuration (and Snakemake's record of
    it) stays the same whether a value comes from the defaults or from a declaration that repeats them."""
    default = defaults()["scenario"]
    differs = {key: value for key, value in task_structure(dataset).get("scenario", {}).items()
               if value != default[key]}
    return {"scenario": differs} if differs else {}


@dataclass(frozen=True, order=True)
class RunKey:
    benchmark: str
    buffer: int
    method: str
    preset: str
    fidelity: str
    seed: int

    @property
    def group(self) -> str:
        """The MLflow parent run: all seeds of one benchmark/buffer/method/preset/fidelity."""
        return f"{self.benchmark}/buffer{self.buffer}/{self.method}/{self.preset}/{self.fidelity}"


class Study:
    def __init__(self, config: dict):
        self.config = config
        self.results = config.get("results", "results")
        check_trainer_sections(config)
        self._check_coordinate_keys()
        self._check_preset_keys()

    def _check_coordinate_keys(self) -> None:
        """A run coordinate set in a trainer section would be overwritten by the run's own value."""
        for where, tree in trainer_sections(self.config).items():
            for key in sorted(set(flatten(tree)) & set(COORDINATE_KEYS)):
                raise ConfigError(f"{where} sets {key}, which is a run coordinate and would be ignored; "
                                  f"set it through {COORDINATE_KEYS[key]}")

    def _check_preset_keys(self) -> None:
        """A preset-controlled setting in a study-wide section would silently undo an ablation."""
        for where, tree in trainer_sections(self.config, with_overrides=False).items():
            clash = sorted(set(flatten(tree)) & set(PRESET_KEYS))
            if clash:
                raise ConfigError(f"{where} sets {', '.join(clash)}, which the presets control; set it under "
                                  "`overrides` with a `match: {preset: ...}` instead")

    def fidelities(self, entry: dict) -> list[str]:
        """A grid entry's fidelities: its own list, else the study's one fidelity (default reference)."""
        return entry.get("fidelities") or [self.config.get("fidelity", defaults()["fidelity"])]

    def runs(self) -> Iterator[RunKey]:
        seen = set()
        for name, bench in self.config["benchmarks"].items():
            for entry in self.config["grid"]:
                for method, preset, fidelity in itertools.product(entry["methods"], entry["presets"],
                                                                  self.fidelities(entry)):
                    buffers = [FIXED_BUFFER[preset]] if preset in FIXED_BUFFER else bench["buffers"]
                    for buffer, seed in itertools.product(buffers, self.config["seeds"]):
                        key = RunKey(name, buffer, method, preset, fidelity, seed)
                        if key not in seen:
                            seen.add(key)
                            yield key

    def groups(self) -> list[str]:
        return sorted({key.group for key in self.runs()})

    def run_dir(self, key: RunKey) -> str:
        return (f"{self.results}/runs/{key.benchmark}/buffer{key.buffer}/{key.method}/{key.preset}/{key.fidelity}"
                f"/seed{key.seed}")

    def data_root(self) -> str:
        return self.config.get("data", {}).get("root", "data")

    def dataset_marker(self, benchmark: str) -> list[str]:
        dataset = self.config["benchmarks"][benchmark]["dataset"]
        return [] if dataset == "synthetic" else [f"{self.data_root()}/{dataset}/meta.json"]

    def trainer_config(self, key: RunKey) -> dict:
        bench = self.config["benchmarks"][key.benchmark]
        cfg = deep_merge(declared_task_structure(bench["dataset"]), self.config.get("trainer", {}))
        cfg = deep_merge(cfg, bench.get("trainer", {}))
        for rule in self.config.get("overrides", []):
            match = rule["match"]
            if all(getattr(key, field) == value for field, value in match.items()):
                cfg = deep_merge(cfg, rule["trainer"])
        cfg = deep_merge(cfg, {
            "dataset": {"name": bench["dataset"], "root": self.data_root()},
            "training": {"method": key.method, "buffer_size": key.buffer},
            "preset": key.preset, "seed": key.seed, "fidelity": key.fidelity,
        })
        resolve(cfg)  # fail at planning time, naming the setting, rather than in a job
        return cfg

    def runs_per_gpu(self) -> int:
        """Training runs per local GPU: the study's ``trainer.runtime.runs_per_gpu``, else the trainer's default."""
        study = self.config.get("trainer", {}).get("runtime", {})
        return int(study.get("runs_per_gpu", defaults()["runtime"]["runs_per_gpu"]))

    def tracking_uri(self) -> str:
        uri = self.config.get("mlflow", {}).get("tracking_uri")
        return uri or f"sqlite:///{self.results}/mlflow/mlflow.db"

    def key(self, wildcards) -> RunKey:
        return RunKey(wildcards.benchmark, int(wildcards.buffer), wildcards.method, wildcards.preset,
                      wildcards.fidelity, int(wildcards.seed))

    def tables(self) -> list[tuple[str, int]]:
        """(benchmark, buffer) of every table: buffer-free runs appear in each of their benchmark's tables."""
        return [(name, buffer) for name, bench in self.config["benchmarks"].items() for buffer in bench["buffers"]]

    def table_outputs(self) -> list[tuple[str, str, int, str]]:
        """(path, benchmark, buffer, format) of every table file."""
        return [(f"{self.results}/tables/{table_file(name, buffer, fmt)}", name, buffer, fmt)
                for name, buffer in self.tables() for fmt in TABLE_FORMATS]

    def table_files(self) -> list[str]:
        return [path for path, *_ in self.table_outputs()]

    def all_runs_file(self) -> str:
        return f"{self.results}/tables/{ALL_RUNS}"

    def plot_outputs(self) -> list[tuple[str, str, int, str]]:
        """(path, benchmark, buffer, figure) of every figure file."""
        return [(f"{self.results}/plots/{plot_file(name, buffer, plot)}", name, buffer, plot)
                for name, buffer in self.tables() for plot in PLOTS]

    def plot_files(self) -> list[str]:
        return [path for path, *_ in self.plot_outputs()]

