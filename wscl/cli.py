"""Command line: ``python -m wscl {train,bench,data,verify-archive,...}``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ConfigError, deep_merge, load_file, parse_set, resolve


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train one run and write metrics.json (resumes from its checkpoint)")
    p.add_argument("--config", help="run configuration YAML (keys as in wscl/defaults.yaml)")
    p.add_argument("--out", required=True, help="output folder (metrics.json, checkpoint.pt)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting by its dotted path, e.g. training.lr=0.1 (repeatable)")
    p.add_argument("--dataset", help="shortcut for --set dataset.name=...")
    p.add_argument("--preset", help="shortcut for --set preset=...")
    p.add_argument("--method", help="shortcut for --set training.method=...")
    p.add_argument("--seed", type=int, help="shortcut for --set seed=...")
    p.add_argument("--fidelity", choices=["reference", "corrected"], help="shortcut for --set fidelity=...")
    p.add_argument("--device", help="shortcut for --set runtime.device=...")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI; none = no MLflow)")
    p.add_argument("--mlflow-experiment", help="experiment name when no parent run is given")
    p.add_argument("--mlflow-parent", help="parent run id; the run is logged as its child")
    p.add_argument("--quiet", action="store_true", help="no progress bars (for pipelines)")


def resolved_config(args) -> dict:
    file_cfg = load_file(args.config) if args.config else {}
    shortcuts = {"dataset.name": args.dataset, "preset": args.preset, "training.method": args.method,
                 "seed": args.seed, "fidelity": args.fidelity, "runtime.device": args.device}
    sets = parse_set([f"{k}={v}" for k, v in shortcuts.items() if v is not None])
    return resolve(file_cfg, deep_merge(sets, parse_set(args.set)))


def cmd_train(args) -> int:
    from .trainer import train
    from .tracking import log_run, tracking_uri
    cfg = resolved_config(args)
    metrics = train(cfg, args.out, quiet=args.quiet)
    uri = tracking_uri(args.mlflow_uri)
    if uri:
        run_id = log_run(metrics, args.out, uri, args.mlflow_experiment, args.mlflow_parent)
        print(f"logged to MLflow run {run_id} at {uri}", file=sys.stderr)
    c, t = metrics["class_il"], metrics["task_il"]
    print(f"final average accuracy: Class-IL {c['final_avg_acc']:.2f}  Task-IL {t['final_avg_acc']:.2f}  "
          f"(forgetting {c['forgetting']:.2f}, fidelity {metrics['fidelity']}) -> {Path(args.out) / 'metrics.json'}")
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench
    run_bench(device=args.device, out=args.out, steps=args.steps)
    return 0


def parse_mirrors(items: list[str]) -> dict[str, list[Path]]:
    mirrors: dict[str, list[Path]] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--mirror {item!r}: expected RAW=PATH, e.g. fashion-mnist=/usr/share/datasets/fashion-mnist")
        raw, path = item.split("=", 1)
        mirrors.setdefault(raw, []).append(Path(path))
    return mirrors


def cmd_data(args) -> int:
    from .datasets.prepare import info, prepare
    if args.data_command == "prepare":
        prepare(args.name, args.root, parse_mirrors(args.mirror), verify=not args.no_verify,
                log=lambda msg: print(msg, file=sys.stderr))
    else:
        print(json.dumps(info(args.folder), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wscl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    b = sub.add_parser("bench", help="trainer throughput and efficiency ratio on a fixed synthetic setup")
    b.add_argument("--device", default="auto")
    b.add_argument("--out", default="results/bench.json")
    b.add_argument("--steps", type=int, default=60, help="training steps per measured task")
    d = sub.add_parser("data", help="prepare a benchmark in the canonical format, or describe one")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dp = dsub.add_parser("prepare", help="fetch (mirror first), verify and convert a benchmark")
    dp.add_argument("name", help="benchmark name, e.g. seq-fashion-mnist, seq-cifar10")
    dp.add_argument("--root", required=True, help="data folder: raw files go to ROOT/raw/, the benchmark to ROOT/NAME")
    dp.add_argument("--mirror", action="append", default=[], metavar="RAW=PATH",
                    help="local copy of a raw dataset (official archive or extracted layout); repeatable")
    dp.add_argument("--no-verify", action="store_true", help="accept files whose checksums do not match")
    di = dsub.add_parser("info", help="JSON summary of a prepared benchmark")
    di.add_argument("folder")
    return parser


COMMANDS = {"train": cmd_train, "bench": cmd_bench, "data": cmd_data}


def main(argv: list[str] | None = None) -> int:
    from .data import DatasetError
    from .scenario import ScenarioError
    from .wake import NonFiniteLossError
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, DatasetError, ScenarioError, NonFiniteLossError) as exc:
        print(f"wscl {args.command}: error: {exc}", file=sys.stderr)
        return 2
