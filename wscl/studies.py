"""A study (the Snakemake config): its runs and each run's trainer configuration.

Kept in the package, not in the Snakefile, so that the same logic is tested and used by the
aggregation. Precedence of trainer settings, later wins: study ``trainer`` -> benchmark ``trainer``
-> matching ``overrides`` in order -> the run's own coordinates (dataset, method, buffer, preset, seed,
fidelity).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .config import PRESETS, ConfigError, deep_merge, flatten, resolve

# Presets that fix the replay buffer themselves: they run once per benchmark, at that buffer.
FIXED_BUFFER = {name: p["training"]["buffer_size"] for name, p in PRESETS.items()
                if "buffer_size" in p.get("training", {})}
PRESET_KEYS = sorted({key for p in PRESETS.values() for key in flatten(p)})


@dataclass(frozen=True, order=True)
class RunKey:
    benchmark: str
    buffer: int
    method: str
    preset: str
    seed: int

    @property
    def group(self) -> str:
        """The MLflow parent run: all seeds of one benchmark/buffer/method/preset."""
        return f"{self.benchmark}/buffer{self.buffer}/{self.method}/{self.preset}"


class Study:
    def __init__(self, config: dict):
        self.config = config
        self.results = config.get("results", "results")
        self._check_preset_keys()

    def _check_preset_keys(self) -> None:
        """A preset-controlled setting in a study-wide section would silently undo an ablation."""
        sections = {"trainer": self.config.get("trainer", {})}
        for name, bench in self.config["benchmarks"].items():
            sections[f"benchmarks.{name}.trainer"] = bench.get("trainer", {})
        for where, tree in sections.items():
            clash = sorted(set(flatten(tree)) & set(PRESET_KEYS))
            if clash:
                raise ConfigError(f"{where} sets {', '.join(clash)}, which the presets control; set it under "
                                  "`overrides` with a `match: {preset: ...}` instead")

    def runs(self) -> Iterator[RunKey]:
        seen = set()
        for name, bench in self.config["benchmarks"].items():
            for group in self.config["grid"]:
                for method in group["methods"]:
                    for preset in group["presets"]:
                        buffers = [FIXED_BUFFER[preset]] if preset in FIXED_BUFFER else bench["buffers"]
                        for buffer in buffers:
                            for seed in self.config["seeds"]:
                                key = RunKey(name, buffer, method, preset, seed)
                                if key not in seen:
                                    seen.add(key)
                                    yield key

    def groups(self) -> list[str]:
        return sorted({key.group for key in self.runs()})

    def run_dir(self, key: RunKey) -> str:
        return f"{self.results}/runs/{key.benchmark}/buffer{key.buffer}/{key.method}/{key.preset}/seed{key.seed}"

    def data_root(self) -> str:
        return self.config.get("data", {}).get("root", "data")

    def dataset_marker(self, benchmark: str) -> list[str]:
        dataset = self.config["benchmarks"][benchmark]["dataset"]
        return [] if dataset == "synthetic" else [f"{self.data_root()}/{dataset}/meta.json"]

    def trainer_config(self, key: RunKey) -> dict:
        bench = self.config["benchmarks"][key.benchmark]
        cfg = deep_merge(self.config.get("trainer", {}), bench.get("trainer", {}))
        for rule in self.config.get("overrides", []):
            match = rule["match"]
            if all(getattr(key, field) == value for field, value in match.items()):
                cfg = deep_merge(cfg, rule["trainer"])
        cfg = deep_merge(cfg, {
            "dataset": {"name": bench["dataset"], "root": self.data_root()},
            "training": {"method": key.method, "buffer_size": key.buffer},
            "preset": key.preset, "seed": key.seed, "fidelity": self.config.get("fidelity", "reference"),
        })
        resolve(cfg)  # fail at planning time, naming the setting, rather than in a job
        return cfg

    def tracking_uri(self) -> str:
        uri = self.config.get("mlflow", {}).get("tracking_uri")
        return uri or f"sqlite:///{self.results}/mlflow/mlflow.db"

    def key(self, wildcards) -> RunKey:
        return RunKey(wildcards.benchmark, int(wildcards.buffer), wildcards.method, wildcards.preset,
                      int(wildcards.seed))

    def tables(self) -> list[tuple[str, int]]:
        """(benchmark, buffer) of every table: buffer-free runs appear in each of their benchmark's tables."""
        return [(name, buffer) for name, bench in self.config["benchmarks"].items() for buffer in bench["buffers"]]

    def table_files(self) -> list[str]:
        return [f"{self.results}/tables/{name}_buffer{buffer}.{ext}" for name, buffer in self.tables()
                for ext in ("csv", "md", "tex")]

    PLOTS = ("accuracy_matrix", "avg_acc_curve", "ablation", "frozen_blocks")

    def plot_files(self) -> list[str]:
        return [f"{self.results}/plots/{name}_buffer{buffer}_{plot}.png" for name, buffer in self.tables()
                for plot in self.PLOTS]
