"""One `wscl train` of the authors' configuration (preset authors, ER-ACE, fidelity reference) at the paper's
width 64 on CIFAR-shaped synthetic data (32x32x3, 5 tasks x 2 classes, 1 epoch), compiled or eager.

  python scripts/gpu/train_authors.py --out DIR --compile {false,true} [--device cuda] [--quick] [--threads 2]

``--compile`` is passed as ``--set runtime.compile=VALUE``; ``--quick`` is a tiny size (width 4, 9x9) for a
dry check on the CPU. The run's metrics.json lands in DIR.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

SIZES = {"full": {"per_class": {"train_per_class": 200, "test_per_class": 100, "dream_per_class": 20},
                  "val_per_task": 100, "width": 64, "image_size": 32},
         "quick": {"per_class": {"train_per_class": 40, "test_per_class": 10, "dream_per_class": 4},
                   "val_per_task": 10, "width": 4, "image_size": 9}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the run's folder")
    parser.add_argument("--compile", required=True, help="runtime.compile: false, true or auto")
    parser.add_argument("--device", default="cuda", help="runtime.device (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a tiny run (for a dry check on the CPU)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: %(default)s)")
    args = parser.parse_args(argv)
    from wscl.cli import main as wscl
    from wscl.run.speed import ModelShape, Workload, synthetic_config
    s = SIZES["quick" if args.quick else "full"]
    cfg = synthetic_config("authors", args.device, Workload(5, s["per_class"], val_per_task=s["val_per_task"],
                                                            epochs=1),
                           ModelShape(s["width"], s["image_size"]), fidelity="reference")
    return wscl(["train", "--config-json", json.dumps(cfg.to_dict()), "--set", f"runtime.compile={args.compile}",
                 "--quiet", "--threads", str(args.threads), "--mlflow-uri", "none", "--out", args.out])


if __name__ == "__main__":
    sys.exit(main())
