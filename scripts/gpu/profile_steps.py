"""A torch.profiler trace of ten training steps of a CIFAR-shaped run, deterministic kernels on or off.

  python scripts/gpu/profile_steps.py --out PREFIX --deterministic on|off [--device auto] [--quick]

The run: synthetic 32x32x3 images, ResNet-18 width 64, base ER-ACE, batch 32 (``--quick``: 16x16, width 8),
``runtime.deterministic`` as given. Steps 4 to 13 of its first task are profiled (one step skipped, two of
warm-up, each step one ``Learner.observe``: the incoming batch and, once the buffer holds images, the replayed
one); the run stops after them. Writes PREFIX.trace.json.gz (the Chrome trace: chrome://tracing or
https://ui.perfetto.dev), PREFIX.txt (the operators by their own device time, on the CPU by their own CPU
time) and PREFIX.json (the setting, the device and the ten steps' wall time).
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WAIT, WARMUP, ACTIVE = 1, 2, 10


class Profiled(BaseException):
    """Raised after the last profiled step: ends the run (not an Exception, so no handler of the run takes it)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="prefix of the files written")
    parser.add_argument("--deterministic", choices=["on", "off"], required=True)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="16x16 images, width 8 (a dry check on the CPU)")
    args = parser.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    from wscl.method import learners
    from wscl.run.speed import ModelShape, Workload, synthetic_config
    from wscl.run.trainer import Run
    from wscl.settings.runtime import synchronize

    width, size = (8, 16) if args.quick else (64, 32)
    per_class = {"train_per_class": 250, "test_per_class": 20, "dream_per_class": 6}  # 15 steps in task 0
    cfg = synthetic_config("base", args.device, Workload(2, per_class, val_per_task=20, epochs=1),
                           ModelShape(width, size), fidelity="reference",
                           runtime={"device": args.device, "progress": False,
                                    "deterministic": args.deterministic == "on"})
    prefix = Path(args.out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    steps, marks = 0, []
    with tempfile.TemporaryDirectory(prefix="wscl-profile-") as tmp:
        run = Run(cfg, tmp, quiet=True, log=lambda *_: None)
        device = run.runtime.device
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        observe = learners.Learner.observe
        with profile(activities=activities, schedule=schedule(wait=WAIT, warmup=WARMUP, active=ACTIVE)) as prof:
            def profiled_observe(learner, *a, **kw):
                nonlocal steps
                result = observe(learner, *a, **kw)
                synchronize(device)
                marks.append(time.perf_counter())
                steps += 1
                prof.step()
                if steps == WAIT + WARMUP + ACTIVE:
                    raise Profiled
                return result

            learners.Learner.observe = profiled_observe
            try:
                run.run()
            except Profiled:
                pass
            finally:
                learners.Learner.observe = observe
        if steps < WAIT + WARMUP + ACTIVE:
            print(f"the run ended after {steps} steps, before the profile's {WAIT + WARMUP + ACTIVE}")
            return 1
    trace = prefix.with_name(prefix.name + ".trace.json")
    prof.export_chrome_trace(str(trace))
    with open(trace, "rb") as src, gzip.open(f"{trace}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    trace.unlink()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=40)
    active = marks[-1] - marks[WAIT + WARMUP - 1]
    summary = {"deterministic": run.runtime.deterministic, "device": str(device), "width": width,
               "image": [3, size, size], "batch": cfg.training.batch_size, "profiled_steps": ACTIVE,
               "profiled_seconds": round(active, 4), "seconds_per_step": round(active / ACTIVE, 5),
               "torch": torch.__version__}
    prefix.with_name(prefix.name + ".txt").write_text(
        f"ten training steps, deterministic {args.deterministic}, {device}, width {width}, {size}x{size}; "
        f"{summary['seconds_per_step'] * 1000:.2f} ms per step (profiler on)\n\n{table}\n")
    prefix.with_name(prefix.name + ".json").write_text(json.dumps(summary, indent=1))
    print(f"deterministic {args.deterministic} on {device}: {summary['seconds_per_step'] * 1000:.2f} ms per step "
          f"(profiler on) -> {prefix}.trace.json.gz, .txt, .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
