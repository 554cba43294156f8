"""GPU cost of the paper grid (config/paper.yaml), estimated: prints the cost table of docs/performance.md.

  python scripts/cost_estimate.py [--gpu-tflops 15] [--gpus 8 64]

Work per run = wake training only: epochs x training images x 2 (each stream batch comes with an equally
sized replay batch; the buffer-free wake_rem runs have none), each image costing 3x the forward
multiply-accumulates of the Mammoth ResNet-18 at the benchmark's resolution (counted here). Freezing
trials, NREM, REM and evaluation are not counted. The GPU's sustained rate is an assumption
(--gpu-tflops); replace it with a measured one (`wscl bench --device cuda` reports images/s).
"""
from __future__ import annotations

import argparse
from collections import Counter

import torch
import yaml

from wscl.method.backbone import ResNet18
from wscl.study.studies import Study

# Training images and resolution of each benchmark as prepared by `wscl data prepare`.
TRAIN_IMAGES = {"seq-cifar10": (50_000, 32), "seq-cifar100": (50_000, 32), "seq-tinyimg-half": (50_000, 64),
                "seq-fg-imagenet": (128_000, 256)}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu-tflops", type=float, default=15.0, help="assumed sustained training rate")
    parser.add_argument("--gpus", type=int, nargs="+", default=[8, 64], help="wall time on this many GPUs")
    args = parser.parse_args()
    with open("config/paper.yaml") as f:
        study = Study(yaml.safe_load(f))
    jobs = Counter(key.benchmark for key in study.runs())
    replay = Counter(key.benchmark for key in study.runs() if key.buffer > 0)
    walls = " | ".join(f"wall time on {n} GPUs" for n in args.gpus)
    print(f"| benchmark | jobs | GPU-hours per job (estimate) | GPU-hours (estimate) | {walls} |")
    print("|---|---|---|---|" + "---|" * len(args.gpus))
    total_hours = 0.0
    for name, count in jobs.items():
        images, size = TRAIN_IMAGES[name]
        epochs = study.trainer_config(next(k for k in study.runs() if k.benchmark == name))["training"]["epochs"]
        flops_per_pass = 2 * 3 * forward_macs(size) * epochs * images
        passes = 2 * replay[name] + (count - replay[name])
        hours = passes * flops_per_pass / (args.gpu_tflops * 1e12) / 3600
        total_hours += hours
        per_job = 2 * flops_per_pass / (args.gpu_tflops * 1e12) / 3600
        print(f"| {name} | {count} | {per_job:.2f} | {hours:.0f} | {wall_times(hours, per_job, args.gpus)} |")
    print(f"| all | {sum(jobs.values())} | | {total_hours:.0f} | {wall_times(total_hours, 0, args.gpus)} |")


def wall_times(hours: float, longest_job: float, gpus: list[int]) -> str:
    """Perfectly packed, but never shorter than one job."""
    return " | ".join(f"{max(hours / n, longest_job):.1f} h" for n in gpus)


if __name__ == "__main__":
    main()
