"""Margins of the learning tests (tests/test_learning.py): every case's final Class-IL and Task-IL per
seed, the median over the three seeds and its margin above the test's bar, on this machine's CPU kernels.

    python scripts/learning_margins.py --out docs/figures/learning_margins_avx2.json
    ATEN_CPU_CAPABILITY=default python scripts/learning_margins.py --out docs/figures/learning_margins_default.json

The second line runs torch's portable (non-vectorised) kernels: other floating-point sums on the same
machine, a stand-in for another CPU kind. The JSON names the CPU, its vector flags and torch's kernel path.
"""
import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import tiny_config  # noqa: E402
from test_learning import CASES, SEEDS, figures, final  # noqa: E402

from wscl.core.provenance import cpu_description  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--cases", nargs="*", default=list(CASES), help="case ids (default: all)")
    args = parser.parse_args()
    rows = []
    for case in args.cases:
        overrides, bars = CASES[case]
        per_seed = {}
        for seed in SEEDS:
            with tempfile.TemporaryDirectory() as d:
                per_seed[seed] = figures(final(tiny_config(seed=seed, **overrides), Path(d)))
        for setting, bar in bars.items():
            values = [round(per_seed[s][setting], 2) for s in SEEDS]
            median = statistics.median(values)
            rows.append({"case": case, "setting": setting, "per_seed": values, "median": median,
                         "bar": round(bar, 2), "margin": round(median - bar, 2)})
            print(f"{case:24s} {setting:9s} seeds {values}  median {median:6.2f}  bar {bar:5.1f}  "
                  f"margin {median - bar:+6.2f}", flush=True)
    out = {"machine": cpu_description(), "torch": torch.__version__,
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "seeds": list(SEEDS), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    smallest = min(rows, key=lambda r: r["margin"])
    print(f"smallest margin {smallest['margin']:+.2f} ({smallest['case']}, {smallest['setting']}); wrote {args.out}")


if __name__ == "__main__":
    main()
