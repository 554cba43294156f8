"""Command line: ``python -m wscl {train,speed,data,verify-archive,...}``.

Only light modules are imported before the arguments are parsed: ``wscl --help`` loads no torch, pandas
or MLflow. Each command imports what it needs.
"""

from __future__ import annotations

import argparse
import gc
import sys
from typing import NoReturn

from wscl import __version__
from wscl.cli.study import (
    cmd_aggregate,
    cmd_archive,
    cmd_data,
    cmd_evaluate,
    cmd_mlflow_setup,
    cmd_mlflow_sync,
    cmd_pilot,
    cmd_readme_results,
    cmd_report,
    cmd_schema,
    cmd_select,
    cmd_snapshot,
    cmd_verify_archive,
    snapshot_parsers,
)
from wscl.cli.train import cmd_speed, cmd_train, train_parser
from wscl.core.errors import ExitCode, exit_code, exit_codes_help
from wscl.run import allocator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wscl", description="Wake-Sleep Consolidated Learning (WSCL): train, "
                                     "aggregate and archive the runs of a study.", epilog=exit_codes_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train_parser(sub)
    # `bench`: the command's earlier name, kept for scripts and habits
    b = sub.add_parser("speed", aliases=["bench"],
                       help="trainer throughput and efficiency ratio on a fixed synthetic setup")
    b.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    b.add_argument("--out", help="result JSON (default: results/speed.json, with --end-to-end "
                                 "results/speed_end_to_end.json)")
    b.add_argument("--steps", type=int, default=60, help="training steps per measured task (default: %(default)s)")
    b.add_argument("--end-to-end", action="store_true",
                   help="whole runs (base ER-ACE, ER-ACE + WSCL) against the work their protocol requires")
    b.add_argument("--quick", action="store_true", help="with --end-to-end: a tiny size, for tests")
    # the defaults are wscl/run/speed.py's WIDTH and SIZE (not imported here: they would load torch)
    b.add_argument("--width", type=int, default=20,
                   help="ResNet-18 width (model.width; the paper's is 64) (default: %(default)s)")
    b.add_argument("--image-size", type=int, default=32,
                   help="side of the square synthetic images, e.g. 32 (CIFAR) or 256 (FG-ImageNet) "
                        "(default: %(default)s)")
    b.add_argument("--compile", choices=["auto", "true", "false"], default="auto",
                   help="runtime.compile of the measured runs (default: %(default)s)")
    b.add_argument("--cuda-graphs", choices=["auto", "true", "false"], default="auto",
                   help="runtime.cuda_graphs of the measured runs (default: %(default)s)")
    b.add_argument("--no-exit-probe", action="store_true",
                   help="with --end-to-end: skip timing a training process's exit")
    d = sub.add_parser("data", help="prepare a benchmark in the canonical format, or describe one")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dp = dsub.add_parser("prepare", help="fetch (mirror first), verify and convert a benchmark")
    dp.add_argument("name", help="a declared benchmark (`wscl data list`), e.g. seq-fashion-mnist, seq-cifar10")
    dp.add_argument("--root", required=True, help="data folder: raw files go to ROOT/raw/, the benchmark to ROOT/NAME")
    dp.add_argument("--mirror", action="append", default=[], metavar="RAW=PATH",
                    help="local copy of a raw dataset (official archive or extracted layout); repeatable")
    dp.add_argument("--no-verify", action="store_true", help="accept files whose checksums do not match")
    dsub.add_parser("list", help="the declared benchmarks (wscl/data/benchmarks/): tasks, raw datasets, dreams")
    di = dsub.add_parser("info", help="JSON summary of a prepared benchmark")
    di.add_argument("folder", help="the prepared benchmark's folder (holds meta.json)")
    m = sub.add_parser("mlflow-setup", help="create a study's experiment and parent runs (idempotent)")
    m.add_argument("--uri", required=True, help="MLflow tracking URI (sqlite:///... or http(s)://...)")
    m.add_argument("--experiment", required=True, help="experiment name (the study's name)")
    m.add_argument("--artifact-root", help="artifact location of a new experiment (a local store's folder)")
    m.add_argument("--group", action="append", default=[], help="parent run group (repeatable)")
    m.add_argument("--out", help="write the experiment and parent ids as JSON here")
    sy = sub.add_parser("mlflow-sync", help="log a study's finished runs to the destination of its MLflow setup "
                                            "(idempotent: runs already there are skipped)")
    sy.add_argument("--study-json", help="the study configuration (workflow config) as JSON")
    sy.add_argument("--setup", help="setup.json written by mlflow-setup --out")
    sy.add_argument("--run", action="append", default=[], metavar="RUN_DIR",
                    help="instead of a study: log this run folder if it is marked pending (repeatable)")
    sy.add_argument("--out", help="write what was logged and skipped as JSON here")
    se = sub.add_parser("select", help="choose each sweep's point on the tuning split (never on test)",
                        description="Per swept benchmark/buffer/method/preset/fidelity, the point with the best mean "
                                    "Class-IL final accuracy on the tuning split over seeds (wscl/study/selection.py).")
    se.add_argument("--study-json", required=True, help="the study configuration (workflow config) as JSON")
    se.add_argument("--out", required=True, help="the selection JSON to write (sealed)")
    pi = sub.add_parser("pilot", help="the pilot of a study whose seeds are chosen by precision",
                        description="Per comparison, the sd of the pilot seeds' paired differences, which fixes its "
                                    "total seed count (Stein's procedure, wscl/study/comparisons.py).")
    pi.add_argument("--study-json", required=True, help="the study configuration (workflow config) as JSON")
    pi.add_argument("--out", required=True, help="the pilot JSON to write (sealed)")
    for name, helptext in (("aggregate", "tables and plots over a study's runs"),
                           ("report", "one-page HTML report of a study")):
        a = sub.add_parser(name, help=helptext)
        a.add_argument("--study-json", required=True, help="the study configuration (workflow config) as JSON")
        a.add_argument("--tables", required=True, help="tables folder (written by aggregate, read by report)")
        a.add_argument("--plots", required=True, help="plots folder (written by aggregate, read by report)")
        if name == "report":
            a.add_argument("--out", required=True, help="the HTML file to write")
        else:
            a.add_argument("--mlflow-uri", help="also record each run's MLflow run id and summarize the parent "
                                                "runs (seed mean/std, verdicts) in this store")
    ar = sub.add_parser("archive", help="pack a study into one checksummed tar.gz")
    ar.add_argument("--study-json", required=True, help="the study configuration (workflow config) as JSON")
    ar.add_argument("--mlflow-uri", required=True, help="the study's MLflow store, exported into the archive")
    ar.add_argument("--out", required=True, help="the tar.gz to write")
    va = sub.add_parser("verify-archive", help="check every checksum of an archive",
                        description="Check an archive against its manifest; each missing, extra or changed file is "
                                    f"named and the exit code is {int(ExitCode.ARCHIVE_INVALID)}.")
    va.add_argument("file", help="the archive (tar.gz written by wscl archive)")
    ev = sub.add_parser("evaluate", help="evaluate a released model (a run's model.pt) on its prepared benchmark",
                        description="Rebuild a run's final network from its model.pt (wscl/run/release.py) and score "
                                    "every task's test images of the benchmark it trained on; says whether the row "
                                    "equals the one the run recorded.")
    ev.add_argument("model", help="the model file (RUN_DIR/model.pt, with its model.pt.sha256 beside it)")
    ev.add_argument("--dataset-root", help="folder of prepared datasets (default: the run's dataset.root)")
    ev.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ev.add_argument("--out", help="also write the result as JSON to this file")
    sc = sub.add_parser("schema", help="print the JSON schema of the trainer settings",
                        description="JSON schema (draft 2020-12) of a trainer configuration, generated from "
                                    "wscl/settings/defaults.yaml, the learners' declarations and the presets; the "
                                    "workflow validates a study's trainer sections against it. With --readme, write "
                                    "config/README.md's tables instead (make docs).")
    sc.add_argument("--out", help="write it to this file instead of standard output")
    sc.add_argument("--readme", help="instead, rewrite the generated tables of this file (config/README.md, below its "
                                     "marker line) from the study schema and the package's settings and presets")
    sc.add_argument("--study-schema", default="rules/config.schema.yaml",
                    help="the study schema for --readme (default: rules/config.schema.yaml)")
    snapshot_parsers(sub)
    return parser


COMMANDS = {"train": cmd_train, "speed": cmd_speed, "bench": cmd_speed, "data": cmd_data,
            "mlflow-setup": cmd_mlflow_setup, "mlflow-sync": cmd_mlflow_sync, "pilot": cmd_pilot, "select": cmd_select,
            "aggregate": cmd_aggregate, "report": cmd_report,
            "archive": cmd_archive, "verify-archive": cmd_verify_archive, "evaluate": cmd_evaluate,
            "schema": cmd_schema, "snapshot": cmd_snapshot, "readme-results": cmd_readme_results}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(COMMANDS[args.command](args))
    except Exception as exc:
        code = exit_code(exc)
        if code is None:
            raise
        print(f"wscl {args.command}: error: {exc}", file=sys.stderr)
        return int(code)


def run_cli() -> NoReturn:
    """The ``wscl`` executable and ``python -m wscl``: ``main``, then exit with its code.

    Freezing the garbage collector's objects spares the interpreter's collections at exit a walk over
    every object that torch and its compiler stack created (0.7 s after a small training in ``wscl speed
    --end-to-end``); exit handlers (logging, MLflow, temporary folders) still run. The rule this sets for
    all code under ``main``: when it returns, every file is written and closed (``with`` blocks, explicit
    cleanup), since objects left in reference cycles are no longer finalized at exit. Before ``main``, the
    C allocator is told to keep freed memory for the next training step (see ``allocator``)."""
    allocator.retain_freed_memory()
    code = main()
    gc.freeze()
    sys.exit(code)
