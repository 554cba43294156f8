"""Whether runs packed K to a GPU give exactly the numbers of the same run alone (fidelity reference).

  python scripts/gpu/compare_metrics.py --alone ALONE/metrics.json --packed K4/run*/metrics.json --out FILE.json

Compares the Class-IL and Task-IL accuracy matrices of each packed run's metrics.json with the lone run's,
value for value; prints one line per run and exits 1 when any differs (or a file is missing).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SETTINGS = ("class_il", "task_il")


def matrices(path: Path) -> dict:
    metrics = json.loads(path.read_text())
    return {s: metrics[s]["accuracy_matrix"] for s in SETTINGS} | {"device": metrics.get("device"),
                                                                   "gpu_share": metrics.get("gpu_share")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alone", required=True, help="metrics.json of the run alone (K = 1)")
    parser.add_argument("--packed", nargs="+", required=True, help="metrics.json of each packed run")
    parser.add_argument("--out", required=True, help="where to write the comparison (JSON)")
    args = parser.parse_args(argv)
    alone_path = Path(args.alone)
    if not alone_path.exists():
        print(f"no run alone to compare with ({alone_path} is missing)")
        Path(args.out).write_text(json.dumps({"identical": None, "missing": str(alone_path)}, indent=1))
        return 1
    alone = matrices(alone_path)
    result = {"alone": str(alone_path), "alone_share": alone["gpu_share"], "device": alone["device"], "runs": []}
    for name in args.packed:
        path = Path(name)
        if not path.exists():
            result["runs"].append({"packed": name, "identical": None, "missing": True})
            print(f"{name}: missing")
            continue
        packed = matrices(path)
        same = {s: packed[s] == alone[s] for s in SETTINGS}
        result["runs"].append({"packed": name, "gpu_share": packed["gpu_share"], **{f"{s}_identical": v
                                                                                   for s, v in same.items()},
                               "identical": all(same.values())})
        print(f"{name} (share {packed['gpu_share']}): " + ", ".join(
            f"{s} accuracy matrix {'identical' if v else 'DIFFERS'}" for s, v in same.items()))
    result["identical"] = bool(result["runs"]) and all(r["identical"] for r in result["runs"])
    print(f"packed runs identical to the run alone: {result['identical']} ({len(result['runs'])} runs, "
          f"device {alone['device']})")
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
