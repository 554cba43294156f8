"""GPU cost of the paper grid (config/paper.yaml): prints the cost tables of docs/performance.md.

  python scripts/cost_estimate.py --bench E2E.json [E2E.json ...] [--shares SHARES.json | --speedup-per-k F]
                                  [--runs-per-gpu K] [--gpus 1 8]      # measured
  python scripts/cost_estimate.py [--gpu-tflops 15] [--gpus 8 64]      # estimated from an assumed rate

Measured (``--bench``: JSON files of ``wscl speed --end-to-end``, e.g. ``--width 64 --image-size 32`` and
``--width 64 --image-size 256``; ``bash scripts/gpu/check.sh`` makes both). From each file:

- R, images trained per second: the base ER-ACE run's images trained (incoming and replayed, counted by the
  speed measurement) / the seconds of its wake phase;
- O, the protocol's overhead factor: a run's whole wall time / that base run's wake seconds; O_base from the
  base run, O_wscl from the ER-ACE + WSCL run (``authors``: the whole protocol as the authors' code runs
  it).

A paper run trains E x N x r images (E epochs, N training images of the benchmark, r = 2 with a replay
buffer: each stream batch comes with an equally sized replay batch; r = 1 for the buffer-free wake_rem),
and takes E x N x r / R seconds of wake training alone (the lower figure of each range) and E x N x r / R x O
for its whole protocol (the upper figure: O_base for preset base, O_wscl for every other preset). The
speed JSON measures at one epoch per task, so evaluation and the freezing trial (one epoch per task)
weigh more there than in a paper run of E epochs: the upper figure errs high. Each benchmark takes R and O
from the file at its resolution and width; without one, from the file at the nearest resolution, R scaled
by the ratio of forward multiply-accumulates (said in the table). ER-ACE's rates stand for ER and DER++,
batch 32 for every benchmark (Seq-FG-ImageNet's ER-ACE and DER++ runs use batch 8).

K runs per GPU (``runtime.runs_per_gpu``, ``--runs-per-gpu``) together progress F times as fast as one run
alone: F measured (``--shares``: the JSON of scripts/gpu/shares.py, for the benchmarks at its resolution;
1.0 for the others), or assumed (``--speedup-per-k F``, for every benchmark; default 1.0: no gain). Then
GPU-hours = the runs' hours alone / F, and the wall time on G GPUs = GPU-hours / G, never shorter than one
run at K per GPU (its hours alone x K / F), perfectly packed.

Estimated (no ``--bench``): work per run = wake training only, epochs x training images x r, each image
costing 3x the forward multiply-accumulates of the Mammoth ResNet-18 at the benchmark's resolution (counted
here), at an assumed sustained rate (``--gpu-tflops``). Freezing trials, NREM, REM and evaluation are not
counted.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
import yaml

from wscl.method.backbone import ResNet18
from wscl.settings.config import defaults
from wscl.study.studies import Study

ROOT = Path(__file__).resolve().parents[1]
# Training images and resolution of each benchmark as prepared by `wscl data prepare`.
TRAIN_IMAGES = {"seq-cifar10": (50_000, 32), "seq-cifar100": (50_000, 32), "seq-tinyimg-half": (50_000, 64),
                "seq-fg-imagenet": (128_000, 256)}


@cache
def forward_macs(size: int, width: int = 64) -> int:
    """Multiply-accumulates of one forward pass (convolutions and the classifier)."""
    model, total = ResNet18(n_heads=100, width=width), []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            total.append(output.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1])
        elif isinstance(module, torch.nn.Linear):
            total.append(module.in_features * module.out_features)

    for module in model.modules():
        module.register_forward_hook(count)
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return sum(total)


@dataclass
class Runs:
    """One benchmark's runs in the grid."""
    name: str
    image_size: int
    width: int
    images: list[int]       # images trained per run: epochs x training images x r
    wscl: list[bool]        # per run: a preset other than base (its overhead is O_wscl)

    @property
    def count(self) -> int:
        return len(self.images)


def job_limit_hours(config: Path) -> float | None:
    """A training job's time limit in the study (``resources.train.runtime``, minutes), in hours."""
    with open(config) as f:
        runtime = (yaml.safe_load(f).get("resources") or {}).get("train", {}).get("runtime")
    return None if runtime is None else runtime / 60


def grid(config: Path) -> list[Runs]:
    with open(config) as f:
        study = Study(yaml.safe_load(f))
    out: dict[str, Runs] = {}
    for key in study.runs():
        cfg = study.run_config(key)
        n, size = TRAIN_IMAGES[key.benchmark]
        runs = out.setdefault(key.benchmark, Runs(key.benchmark, size, cfg.model.width, [], []))
        if cfg.model.width != runs.width:
            sys.exit(f"{key.benchmark}: runs of different widths; the cost model takes one per benchmark")
        runs.images.append(cfg.training.epochs * n * (2 if key.buffer > 0 else 1))
        runs.wscl.append(key.preset != "base")
    return list(out.values())


@dataclass
class Bench:
    """What one `wscl speed --end-to-end` JSON measured."""
    path: str
    image_size: int
    width: int
    device: str
    rate: float             # R: images trained per second of the base run's wake phase
    overhead_base: float    # O_base: the base run's wall time / its wake seconds
    overhead_wscl: float    # O_wscl: the ER-ACE + WSCL run's wall time / the base run's wake seconds
    peak_mb: float | None   # the larger peak device memory of the two runs (None on the CPU)


def read_bench(path: str) -> Bench:
    saved = json.loads(Path(path).read_text())
    runs = {r["preset"]: r for r in saved["runs"]}
    base, wscl = runs["base"], runs["authors"]
    wake = base["phase_seconds"]["wake"]
    peaks = [r.get("peak_device_memory_mb") for r in runs.values() if r.get("peak_device_memory_mb") is not None]
    return Bench(path, saved["setup"]["image"][1], saved["setup"]["width"], saved.get("device", "?"),
                 base["images_trained"] / wake, base["wall_seconds"] / wake, wscl["wall_seconds"] / wake,
                 max(peaks) if peaks else None)


def rate_for(runs: Runs, benches: list[Bench]) -> tuple[Bench, float, str]:
    """The measurement a benchmark uses, its R at the benchmark's resolution and width, and where R comes from."""
    bench = min(benches, key=lambda b: (abs(math.log(b.image_size / runs.image_size)),
                                        abs(math.log(b.width / runs.width))))
    if (bench.image_size, bench.width) == (runs.image_size, runs.width):
        return bench, bench.rate, f"measured at {bench.image_size}x{bench.image_size}, width {bench.width}"
    scale = forward_macs(bench.image_size, bench.width) / forward_macs(runs.image_size, runs.width)
    return (bench, bench.rate * scale,
            f"scaled from {bench.image_size}x{bench.image_size}, width {bench.width} by MACs (x{scale:.4g})")


@dataclass
class Sharing:
    """Runs per GPU and the throughput factor F of that many runs on one GPU, per image size."""
    k: int
    factor: float           # F for every benchmark not in ``measured``
    measured: dict          # image size -> measured F
    source: str

    def factor_at(self, image_size: int) -> float:
        return self.measured.get(image_size, self.factor)


def sharing(k: int, shares: str | None, speedup: float | None) -> Sharing:
    if speedup is not None:
        return Sharing(k, speedup, {}, f"assumed F = {speedup:g} at K = {k} (--speedup-per-k)")
    if shares is None:
        return Sharing(k, 1.0, {}, f"assumed F = 1 at K = {k}: no gain from sharing (neither --shares nor "
                                   "--speedup-per-k)")
    saved = json.loads(Path(shares).read_text())
    batch = {b["k"]: b for b in saved["batches"] if b.get("throughput_factor")}
    if k not in batch:
        sys.exit(f"{shares} has no measured throughput factor at K = {k} (measured at K = {sorted(batch)})")
    size = saved["setup"]["image"][1]
    factor = batch[k]["throughput_factor"]
    return Sharing(k, 1.0, {size: factor}, f"measured F = {factor:.2f} at K = {k} for {size}x{size} "
                                           f"({saved.get('label', '?')}, {shares}); F = 1 at other sizes")


@dataclass
class Cost:
    """One benchmark's measured cost; each pair is (wake training alone, whole protocol), in hours."""
    runs: Runs
    bench: Bench
    rate: float
    source: str
    factor: float
    per_run: tuple[float, float]    # the longest run, alone
    gpu_hours: tuple[float, float]  # every run, alone
    k: int

    @property
    def shared_gpu_hours(self) -> tuple[float, float]:
        return self.gpu_hours[0] / self.factor, self.gpu_hours[1] / self.factor

    @property
    def job_at_k(self) -> tuple[float, float]:
        """The longest run's wall time while K runs share its GPU."""
        return self.per_run[0] * self.k / self.factor, self.per_run[1] * self.k / self.factor

    def wall(self, gpus: int) -> tuple[float, float]:
        return tuple(max(h / gpus, job) for h, job in zip(self.shared_gpu_hours, self.job_at_k))


def costs(benchmarks: list[Runs], benches: list[Bench], share: Sharing) -> list[Cost]:
    out = []
    for runs in benchmarks:
        bench, rate, source = rate_for(runs, benches)
        lo = [n / rate / 3600 for n in runs.images]
        hi = [n / rate * (bench.overhead_wscl if wscl else bench.overhead_base) / 3600
              for n, wscl in zip(runs.images, runs.wscl)]
        out.append(Cost(runs, bench, rate, source, share.factor_at(runs.image_size), (max(lo), max(hi)),
                        (sum(lo), sum(hi)), share.k))
    return out


def total_wall(costs: list[Cost], gpus: int) -> tuple[float, float]:
    """All benchmarks' runs on ``gpus`` GPUs, perfectly packed, never shorter than the longest run at K."""
    return tuple(max(sum(c.shared_gpu_hours[i] for c in costs) / gpus, max(c.job_at_k[i] for c in costs))
                 for i in (0, 1))


def span(pair, digits: int = 1) -> str:
    return f"{pair[0]:,.{digits}f}–{pair[1]:,.{digits}f} h"


def measured_table(benchmarks: list[Runs], benches: list[Bench], share: Sharing, gpus: list[int],
                   job_limit: float | None = None) -> str:
    k, rows = share.k, costs(benchmarks, benches, share)
    walls = " | ".join(f"wall on {n} GPU{'s' if n > 1 else ''}, K = {k}" for n in gpus)
    lines = ["GPU cost of config/paper.yaml, measured: " + "; ".join(
                 f"{b.path}: {b.device}, {b.image_size}x{b.image_size}, width {b.width}" for b in benches),
             f"Runs per GPU: {share.source}.", "",
             f"| benchmark | runs | images trained per run | R (images trained/s) | R from | O_base, O_wscl | "
             f"peak device memory | longest run, alone | GPU-hours, alone | F | {walls} |",
             "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(gpus)]
    for c in rows:
        images = " or ".join(f"{n:,}" for n in sorted(set(c.runs.images)))
        peak = "n/a (CPU)" if c.bench.peak_mb is None else f"{c.bench.peak_mb:,.0f} MB"
        wall = " | ".join(span(c.wall(n)) for n in gpus)
        lines.append(f"| {c.runs.name} | {c.runs.count} | {images} | {c.rate:,.4g} | {c.source} | "
                     f"{c.bench.overhead_base:.2f}, {c.bench.overhead_wscl:.2f} | {peak} | {span(c.per_run, 2)} | "
                     f"{span(c.gpu_hours, 0)} | {c.factor:.2f} | {wall} |")
    gpu_hours = tuple(sum(c.gpu_hours[i] for c in rows) for i in (0, 1))
    shared = tuple(sum(c.shared_gpu_hours[i] for c in rows) for i in (0, 1))
    wall = " | ".join(span(total_wall(rows, n)) for n in gpus)
    lines.append(f"| all | {sum(c.runs.count for c in rows)} | | | | | | | {span(gpu_hours, 0)} | | {wall} |")
    lines += ["", "Each range: wake training alone – the whole protocol at the benchmark's proportions "
              f"(scripts/cost_estimate.py, docstring). GPU-hours at K = {k} per GPU: {span(shared, 0)}; "
              f"the longest run at K = {k} per GPU: "
              + ", ".join(f"{c.runs.name} {span(c.job_at_k)}" for c in rows) + "."]
    over = [c.runs.name for c in rows if job_limit is not None and c.job_at_k[1] > job_limit]
    if over:
        lines.append(f"Beyond the study's job limit (resources.train.runtime, {job_limit:g} h) at K = {k}: "
                     f"{', '.join(over)} (a job stopped at its limit resumes from its checkpoint when rerun).")
    return "\n".join(lines)


def estimated_table(benchmarks: list[Runs], tflops: float, gpus: list[int]) -> str:
    walls = " | ".join(f"wall time on {n} GPUs" for n in gpus)
    lines = [f"GPU cost of config/paper.yaml: estimated (assumed {tflops:g} TFLOP/s), not measured", "",
             f"| benchmark | jobs | GPU-hours per job (estimate) | GPU-hours (estimate) | {walls} |",
             "|---|---|---|---|" + "---|" * len(gpus)]
    total_hours = 0.0
    for runs in benchmarks:
        flops_per_image = 2 * 3 * forward_macs(runs.image_size, runs.width)
        job_hours = [n * flops_per_image / (tflops * 1e12) / 3600 for n in runs.images]
        hours_sum, per_job = sum(job_hours), max(job_hours)
        total_hours += hours_sum
        lines.append(f"| {runs.name} | {runs.count} | {per_job:.2f} | {hours_sum:.0f} | "
                     f"{wall_times(hours_sum, per_job, gpus)} |")
    lines.append(f"| all | {sum(r.count for r in benchmarks)} | | {total_hours:.0f} | "
                 f"{wall_times(total_hours, 0, gpus)} |")
    return "\n".join(lines)


def wall_times(hours: float, longest_job: float, gpus: list[int]) -> str:
    """Perfectly packed, but never shorter than one job."""
    return " | ".join(f"{max(hours / n, longest_job):.1f} h" for n in gpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config" / "paper.yaml"), help="the study (default: the "
                        "paper grid)")
    parser.add_argument("--bench", nargs="+", metavar="FILE",
                        help="`wscl speed --end-to-end` JSON files: measured rates (else the assumed --gpu-tflops)")
    parser.add_argument("--gpu-tflops", type=float, default=15.0, help="without --bench: assumed sustained "
                        "training rate (default: %(default)s)")
    parser.add_argument("--gpus", type=int, nargs="+", help="wall time on this many GPUs (default: 1 8 with "
                        "--bench, else 8 64)")
    parser.add_argument("--runs-per-gpu", type=int, default=defaults()["runtime"]["runs_per_gpu"],
                        help="with --bench: K, runs sharing one GPU (default: runtime.runs_per_gpu's, %(default)s)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--shares", metavar="FILE", help="with --bench: measured throughput factors of K runs per GPU "
                       "(scripts/gpu/shares.py's JSON)")
    group.add_argument("--speedup-per-k", type=float, metavar="F", help="with --bench: assumed throughput factor "
                       "F of K runs on one GPU against one run alone")
    args = parser.parse_args(argv)
    benchmarks = grid(Path(args.config))
    if args.bench:
        share = sharing(args.runs_per_gpu, args.shares, args.speedup_per_k)
        print(measured_table(benchmarks, [read_bench(p) for p in args.bench], share, args.gpus or [1, 8],
                             job_limit_hours(Path(args.config))))
    else:
        print(estimated_table(benchmarks, args.gpu_tflops, args.gpus or [8, 64]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
