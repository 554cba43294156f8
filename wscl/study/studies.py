"""A study (the Snakemake config): its runs and each run's trainer configuration.

Kept in the package, not in the Snakefile, so that the same logic is tested and used by the
aggregation. Precedence of trainer settings, later wins: the task structure its dataset's declaration
states (wscl/data/benchmarks/) -> study ``trainer`` -> benchmark ``trainer`` -> matching ``overrides`` in
order -> the settings of the run's sweep point (study/sweeps.py) -> the run's own coordinates (dataset,
method, buffer, preset, fidelity, seed). The coordinates come only from the grid, the benchmarks, the seeds
and the sweeps: a coordinate key set in a ``trainer`` section is refused, since it would be overwritten.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from wscl.core.safe_io import read_json_result
from wscl.data.benchmarks import run_config
from wscl.settings.config import (
    PRESETS,
    Config,
    ConfigError,
    Layer,
    check_settings,
    deep_merge,
    defaults,
    flatten,
)
from wscl.study.comparisons import comparison_pairs, parse_seeds, stein_seeds
from wscl.study.outputs import (
    ALL_RUNS,
    COMPARISONS,
    PILOT,
    PLOTS,
    SELECTION,
    TABLE_FORMATS,
    comparisons_table_file,
    plot_file,
    selection_table_file,
    sensitivity_plot,
    table_file,
)
from wscl.study.sweeps import TUNED, Sweep, as_overrides, parse_sweeps, point_names, split_variant, variant

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


@dataclass(frozen=True, order=True)
class RunKey:
    benchmark: str
    buffer: int
    method: str
    preset: str
    fidelity: str
    seed: int
    point: str = ""  # a sweep point's name (study/sweeps.py), `tuned`, or "" outside sweeps

    @property
    def variant(self) -> str:
        """The preset with its sweep point: the run's folder and its group's name."""
        return variant(self.preset, self.point)

    @property
    def group(self) -> str:
        """The MLflow parent run: all seeds of one benchmark/buffer/method/preset[@point]/fidelity."""
        return f"{self.benchmark}/buffer{self.buffer}/{self.method}/{self.variant}/{self.fidelity}"

    @property
    def coordinates(self) -> dict:
        return {"benchmark": self.benchmark, "buffer": self.buffer, "method": self.method, "preset": self.preset,
                "fidelity": self.fidelity}


class Study:
    def __init__(self, config: dict):
        self.config = config
        self.results = config.get("results", "results")
        check_trainer_sections(config)
        self._check_coordinate_keys()
        self._check_preset_keys()
        self.sweeps: list[Sweep] = parse_sweeps(config, COORDINATE_KEYS, PRESET_KEYS)
        self._points: dict[str, dict] = {}  # point name -> its settings, filled as runs are enumerated
        self.seeds, self.precision = parse_seeds(config["seeds"])
        if self.precision and self.sweeps:
            raise ConfigError("seeds: {pilot, half_width, max} with a sweep: a sweep's point is chosen on a fixed seed "
                              "count; give `seeds` as a list or a count")

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
        """Every run; with seeds chosen by precision, the pilot's seeds until the pilot's result (pilot.json)
        fixes each group's total, then those."""
        stamp = self._pilot_stamp()
        if not hasattr(self, "_runs") or self._runs_stamp != stamp:
            counts = self.seed_counts() if stamp else {}
            runs = list(self._enumerate_runs(lambda key: list(range(counts[key.group])) if key.group in counts
                                             else self.seeds))  # once per pilot result: points resolve settings
            self._check_variants(runs)
            self._runs, self._runs_stamp = runs, stamp
        return iter(self._runs)

    def pilot_file(self) -> str:
        """The pilot's result (study/comparisons.py): each comparison's pilot sd of its paired differences."""
        return f"{self.results}/tables/{PILOT}"

    def _pilot_stamp(self) -> tuple | None:
        path = Path(self.pilot_file())
        if self.precision is None or not path.is_file():
            return None
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size

    def comparisons(self) -> list[tuple[str, str, str]]:
        """(title, group a, group b) of every paired comparison: two presets of comparison_pairs at the same
        benchmark, buffer, method, fidelity and point."""
        groups = {key.group: key for key in self._enumerate_runs(lambda key: self.seeds[:1])}
        out = []
        for key in groups.values():
            for title, a, b in comparison_pairs():
                if key.preset == a:
                    other = replace(key, preset=b, buffer=FIXED_BUFFER.get(b, key.buffer)).group
                    if other in groups:
                        out.append((title, key.group, other))
        return sorted(out, key=lambda c: (c[1], c[2]))

    def seed_counts(self) -> dict[str, int]:
        """Seeds of each group: the most that any of its comparisons needs (Stein's total from the pilot's sd)."""
        pilot = read_json_result(self.pilot_file(), "delete it and rerun the workflow (the pilot rule writes it "
                                                    "again from the pilot's runs)")
        counts: dict[str, int] = {}
        for _, a, b in self.comparisons():
            sd = pilot["pilot_sd"].get(f"{a} - {b}")
            n = stein_seeds(sd, self.precision)[0] if sd is not None else self.precision.pilot
            for group in (a, b):
                counts[group] = max(counts.get(group, self.precision.pilot), n)
        return counts

    def pilot_runs(self) -> list[RunKey]:
        """The runs the pilot reads: the pilot seeds of every group."""
        return list(self._enumerate_runs(lambda key: self.seeds))

    def describe_comparisons(self) -> str:
        p = self.precision
        if p is None:
            return "paired t interval"
        return f"Stein's two-stage interval: pilot {p.pilot} seeds, target ±{p.half_width:g}, at most {p.max} seeds"

    def describe_seeds(self) -> str:
        p = self.precision
        if p is None:
            return ", ".join(map(str, self.seeds))
        return (f"chosen by precision: pilot {p.pilot}, every comparison's 95% interval at most ±{p.half_width:g} "
                f"points or {p.max} seeds (Stein's two-stage procedure)")

    def _check_variants(self, runs: list[RunKey]) -> None:
        """Each table row comes from one place (the preset plainly, swept, or at a tuned point), and a run at a
        tuned point has a swept group to take its point from, whose swept keys its own preset leaves alone."""
        kinds: dict[str, set[str]] = {}
        for key in runs:
            kind = "at the tuned point" if key.point == TUNED else "swept" if key.point else "plainly"
            kinds.setdefault(replace(key, point="", seed=0).group, set()).add(kind)
        for group, found in kinds.items():
            if len(found) > 1:
                raise ConfigError(f"{group} would run {' and '.join(sorted(found))}, two rows for one preset of a "
                                  "table; list the preset in one grid entry only")
        swept = {replace(k, point="", seed=0).group for k in runs if k.point and k.point != TUNED}
        for key in (k for k in runs if k.point == TUNED and k.seed == runs[0].seed):
            source = self.tuned_from(key)
            if source.group not in swept:
                raise ConfigError(f"{key.group}: `tuned_from: {source.preset}`, but no sweep expands {source.group}; "
                                  "add a sweep that matches it (e.g. `match: {preset: " + source.preset + "}`)")
            keys = {k for sweep in self.sweeps if sweep.applies(source.coordinates) for k in sweep.settings}
            clash = sorted(keys & set(flatten(PRESETS[key.preset])))
            if clash:
                raise ConfigError(f"{key.group}: preset {key.preset} sets {', '.join(clash)} itself, which the sweep "
                                  f"of {source.preset} varies; it cannot run at {source.preset}'s tuned point")

    def _enumerate_runs(self, seeds_of: Callable[[RunKey], list[int]]) -> Iterator[RunKey]:
        """The runs, with ``seeds_of(run key of seed 0)`` the seeds of each group."""
        seen = set()
        for name, bench in self.config["benchmarks"].items():
            for entry in self.config["grid"]:
                for method, preset, fidelity in itertools.product(entry["methods"], entry["presets"],
                                                                  self.fidelities(entry)):
                    buffers = [FIXED_BUFFER[preset]] if preset in FIXED_BUFFER else bench["buffers"]
                    for buffer in buffers:
                        plain = RunKey(name, buffer, method, preset, fidelity, 0)
                        points = [TUNED] if entry.get("tuned_from") else self.points_of(plain)
                        for point in points or [""]:
                            for seed in seeds_of(replace(plain, point=point)):
                                key = RunKey(name, buffer, method, preset, fidelity, seed, point)
                                if key not in seen:
                                    seen.add(key)
                                    yield key

    def points_of(self, plain: RunKey) -> list[str]:
        """The sweep points a run (outside any sweep) expands into; [] when no sweep matches it."""
        found: dict[str, dict] = {}
        for sweep in self.sweeps:
            if sweep.applies(plain.coordinates):
                resolved = flatten(self.run_config(plain).to_dict())
                if not resolved.get("scenario.tune_per_class"):
                    raise ConfigError(f"a sweep expands {plain.group}, but its runs hold out no tuning split: a "
                                      "point is chosen on it, never on test; set trainer.scenario.tune_per_class > 0")
                points = sweep.points({key: resolved[key] for key in sweep.settings})
                found.update(zip(point_names(points), points))
        self._points.update(found)
        return list(found)

    def point_settings(self, point: str) -> dict:
        """A sweep point's settings (dotted keys), by its name."""
        list(self.runs())  # names are known once the runs are enumerated
        return self._points[point]

    def swept_keys(self, benchmark: str, buffer: int) -> list[str]:
        """The swept settings of a table's runs, in sorted order."""
        keys: list[str] = []
        for k in self.runs():
            if k.benchmark == benchmark and k.buffer == buffer and k.point not in ("", TUNED):
                keys += [key for key in self.point_settings(k.point) if key not in keys]
        return keys

    def tuned_from(self, key: RunKey) -> RunKey:
        """The run whose selected point a `tuned` run takes: the grid entry's `tuned_from` preset (same
        benchmark, buffer, method, fidelity)."""
        sources = {entry["tuned_from"] for entry in self.config["grid"] if entry.get("tuned_from")
                   and key.preset in entry["presets"] and key.method in entry["methods"]
                   and key.fidelity in self.fidelities(entry)}
        if len(sources) != 1:
            raise ConfigError(f"{key.group}: {'several' if sources else 'no'} grid entries run {key.preset} with "
                              f"`tuned_from` ({', '.join(sorted(sources))}); one must")
        return RunKey(key.benchmark, key.buffer, key.method, sources.pop(), key.fidelity, key.seed)

    def swept_groups(self) -> list[str]:
        """Groups without their point (benchmark/buffer/method/preset/fidelity) that a sweep expands."""
        return sorted({replace(k, point="").group for k in self.runs() if k.point and k.point != TUNED})

    def selection_file(self) -> str:
        return f"{self.results}/tables/{SELECTION}"

    def groups(self) -> list[str]:
        return sorted({key.group for key in self.runs()})

    def run_dir(self, key: RunKey) -> str:
        return (f"{self.results}/runs/{key.benchmark}/buffer{key.buffer}/{key.method}/{key.variant}/{key.fidelity}"
                f"/seed{key.seed}")

    def data_root(self) -> str:
        return self.config.get("data", {}).get("root", "data")

    def dataset_marker(self, benchmark: str) -> list[str]:
        dataset = self.config["benchmarks"][benchmark]["dataset"]
        return [] if dataset == "synthetic" else [f"{self.data_root()}/{dataset}/meta.json"]

    def trainer_layers(self, key: RunKey) -> list[Layer]:
        """The layers of a run's settings that the study gives, in order: its trainer section, the benchmark's,
        each matching override, the sweep point and the run's coordinates."""
        bench = self.config["benchmarks"][key.benchmark]
        layers = [Layer("study", self.config.get("trainer", {}), "the study's trainer section"),
                  Layer("study", bench.get("trainer", {}), f"benchmarks.{key.benchmark}.trainer")]
        for i, rule in enumerate(self.config.get("overrides", [])):
            if all(getattr(key, field) == value for field, value in rule["match"].items()):
                layers.append(Layer("study", rule["trainer"], f"overrides[{i}].trainer"))
        if key.point and key.point != TUNED:
            point = as_overrides(self.point_settings(key.point))
            layers.append(Layer("sweep point", point, f"sweep point {key.point}"))
        layers.append(Layer("sweep point", {  # last: a run's coordinates are never swept
            "dataset": {"name": bench["dataset"], "root": self.data_root()},
            "training": {"method": key.method, "buffer_size": key.buffer},
            "preset": key.preset, "seed": key.seed, "fidelity": key.fidelity}, "the run's coordinates"))
        return layers

    def trainer_config(self, key: RunKey) -> dict:
        """The study's settings of a run as one mapping: what its job passes to `wscl train --study-settings`."""
        layers = self.trainer_layers(key)
        run_config(layers)  # fail at planning time, naming the setting, rather than in a job
        merged: dict = {}
        for layer in layers:
            merged = deep_merge(merged, layer.settings)
        return merged

    def run_config(self, key: RunKey) -> Config:
        """A run's whole configuration, built as its job builds it (the benchmark's declaration included): at
        planning time a bad setting fails here, naming it, rather than in a job."""
        return run_config(self.trainer_layers(key))

    def runs_per_gpu(self) -> int:
        """Training runs per local GPU: the study's ``trainer.runtime.runs_per_gpu``, else the trainer's default."""
        study = self.config.get("trainer", {}).get("runtime", {})
        return int(study.get("runs_per_gpu", defaults()["runtime"]["runs_per_gpu"]))

    def device(self) -> str:
        """The study's ``trainer.runtime.device``, else the trainer's default: which local GPUs its runs share."""
        study = self.config.get("trainer", {}).get("runtime", {})
        return str(study.get("device", defaults()["runtime"]["device"]))

    def tracking_uri(self) -> str:
        uri = self.config.get("mlflow", {}).get("tracking_uri")
        return uri or f"sqlite:///{self.results}/mlflow/mlflow.db"

    def key(self, wildcards) -> RunKey:
        preset, point = split_variant(wildcards.variant)
        return RunKey(wildcards.benchmark, int(wildcards.buffer), wildcards.method, preset,
                      wildcards.fidelity, int(wildcards.seed), point)

    def tables(self) -> list[tuple[str, int]]:
        """(benchmark, buffer) of every table: buffer-free runs appear in each of their benchmark's tables."""
        return [(name, buffer) for name, bench in self.config["benchmarks"].items() for buffer in bench["buffers"]]

    def table_outputs(self) -> list[tuple[str, str, int, str]]:
        """(path, benchmark, buffer, format) of every table file."""
        return [(f"{self.results}/tables/{table_file(name, buffer, fmt)}", name, buffer, fmt)
                for name, buffer in self.tables() for fmt in TABLE_FORMATS]

    def selection_outputs(self) -> list[tuple[str, str, int, str]]:
        """(path, benchmark, buffer, format) of each swept table's selection table (every point, the chosen one)."""
        return [(f"{self.results}/tables/{selection_table_file(name, buffer, fmt)}", name, buffer, fmt)
                for name, buffer in self.tables() if self.swept_keys(name, buffer) for fmt in ("csv", "md")]

    def comparison_outputs(self) -> list[tuple[str, str, int, str]]:
        """(path, benchmark, buffer, format) of each table's paired comparisons."""
        return [(f"{self.results}/tables/{comparisons_table_file(name, buffer, fmt)}", name, buffer, fmt)
                for name, buffer in self.tables() for fmt in ("csv", "md")]

    def table_files(self) -> list[str]:
        return [path for path, *_ in self.table_outputs() + self.selection_outputs() + self.comparison_outputs()]

    def all_runs_file(self) -> str:
        return f"{self.results}/tables/{ALL_RUNS}"

    def plot_outputs(self) -> list[tuple[str, str, int, str]]:
        """(path, benchmark, buffer, figure) of every figure file."""
        return [(f"{self.results}/plots/{plot_file(name, buffer, plot)}", name, buffer, plot)
                for name, buffer in self.tables()
                for plot in [*PLOTS, COMPARISONS, *map(sensitivity_plot, self.swept_keys(name, buffer))]]

    def plot_files(self) -> list[str]:
        return [path for path, *_ in self.plot_outputs()]

