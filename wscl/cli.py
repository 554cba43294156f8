"""Command line: ``python -m wscl {train,speed,data,verify-archive,...}``.

Only light modules are imported before the arguments are parsed: ``wscl --help`` loads no torch, pandas
or MLflow. Each command imports what it needs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path
from typing import NoReturn

from wscl import __version__
from wscl.core.errors import ExitCode, exit_code, exit_codes_help
from wscl.core.safe_io import atomic_write_text
from wscl.run import allocator
from wscl.settings.config import (
    CHOICES,
    METHODS,
    PRESETS,
    Config,
    ConfigError,
    Layer,
    load_file,
    parse_set,
)


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train one run and write metrics.json (resumes from its checkpoint)",
                       description="Train one run. Settings, later wins: the defaults (config/README.md) -> preset "
                                   "-> the benchmark's declared task structure -> --study-settings -> --point-from "
                                   "-> --config -> --config-json -> shortcuts -> --set.",
                       epilog=exit_codes_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="run configuration YAML (the trainer's keys: config/README.md or `wscl schema`)")
    p.add_argument("--config-json", help="run settings as a JSON object (applied after --config)")
    p.add_argument("--study-settings", metavar="JSON",
                   help="the run's settings from its study as a JSON object (what the workflow passes); they apply "
                        "under --point-from, --config, --config-json and --set")
    p.add_argument("--out", required=True, help="output folder (metrics.json, checkpoint.pt)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting by its dotted path, e.g. training.lr=0.1 (repeatable; the value is "
                        "read as YAML)")
    p.add_argument("--dataset", help="shortcut for --set dataset.name=...: a prepared dataset folder under "
                                     "dataset.root, or synthetic")
    p.add_argument("--preset", choices=PRESETS, help="shortcut for --set preset=...")
    p.add_argument("--method", choices=METHODS, help="shortcut for --set training.method=...")
    p.add_argument("--seed", type=int, help="shortcut for --set seed=...")
    p.add_argument("--fidelity", choices=CHOICES["fidelity"], help="shortcut for --set fidelity=...")
    p.add_argument("--device", help="shortcut for --set runtime.device=...: auto, cpu, cuda or cuda:N")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI; neither set, or "
                                        "--mlflow-uri none: no MLflow)")
    p.add_argument("--mlflow-experiment", help="experiment name when no parent run is given")
    p.add_argument("--mlflow-parent", help="parent run id; the run is logged as its child")
    p.add_argument("--mlflow-parent-group", help="find the parent run by its wscl.group tag (see mlflow-setup)")
    p.add_argument("--mlflow-setup", metavar="SETUP_JSON",
                   help="destination and parent ids written by mlflow-setup --out (overrides --mlflow-uri/"
                        "--mlflow-experiment; with --mlflow-parent-group, no search of the store)")
    p.add_argument("--point-from", metavar="SELECTION_JSON",
                   help="train at the sweep point selected for --point-group (written by `wscl select`)")
    p.add_argument("--point-group", help="the swept group (benchmark/bufferB/method/preset/fidelity) whose selected "
                                         "point to train at")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (for pipelines)")
    p.add_argument("--record-failure", action="store_true",
                   help="on a training failure (exit 5), write metrics.json with status failed and the message, "
                        "and exit 0 (what a study's runs do: the study goes on and its tables name the failed seed)")


def json_settings(text: str, option: str) -> dict:
    try:
        given = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(given, dict):
        raise ConfigError(f"{option} must be a JSON object of settings, e.g. '{{\"training\": {{\"lr\": "
                          f"0.1}}}}', not a {type(given).__name__}")
    return given


def config_layers(args) -> list[Layer]:
    """The layers of the run's settings that the command line gives (the builder orders them: study, tuned
    selection, config file, JSON, then the shortcut options and --set)."""
    layers = []
    if args.study_settings:
        layers.append(Layer("study", json_settings(args.study_settings, "--study-settings"), "--study-settings"))
    if args.point_from:  # a point chosen on the tuning split
        from wscl.study.selection import read_selection
        from wscl.study.sweeps import as_overrides
        group = read_selection(args.point_from)["groups"].get(args.point_group)
        if group is None:
            raise ConfigError(f"--point-group {args.point_group!r} is not a swept group of {args.point_from}")
        layers.append(Layer("tuned selection", as_overrides(group["settings"]), f"--point-from {args.point_from}"))
    if args.config:
        layers.append(Layer("config file", load_file(args.config), f"config file {args.config}"))
    if args.config_json:
        layers.append(Layer("json", json_settings(args.config_json, "--config-json"), "--config-json"))
    shortcuts = {"dataset.name": args.dataset, "preset": args.preset, "training.method": args.method,
                 "seed": args.seed, "fidelity": args.fidelity, "runtime.device": args.device}
    layers.append(Layer("set", parse_set([f"{k}={v}" for k, v in shortcuts.items() if v is not None]),
                        "the shortcut options (--dataset, --preset, ...)"))
    layers.append(Layer("set", parse_set(args.set), "--set"))
    return layers


def resolved_config(args) -> Config:
    from wscl.data.benchmarks import run_config
    return run_config(config_layers(args))


def usable_out(folder: str) -> Path:
    """``--out`` as a folder this process can write into, or one line saying why not and what to do. Nothing is
    created here: a run stopped by a later check leaves no folder behind."""
    out = Path(folder)
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"--out {folder}: {existing} is a file, not a folder; choose another --out")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        where = "the folder" if existing == out else f"{existing}, where it would be created,"
        raise ConfigError(f"--out {folder}: {where} is not writable; choose a writable --out or fix its "
                          "permissions")
    return out


def check_threads(threads: int | None) -> None:
    cpus = os.cpu_count() or 1
    if threads is not None and not 1 <= threads <= cpus:
        raise ConfigError(f"--threads {threads}: give a number of CPU threads from 1 to {cpus} (this machine's "
                          "CPUs), or leave it out for torch's choice")


def cmd_train(args) -> int:
    from wscl.run import placement
    check_threads(args.threads)
    cfg = resolved_config(args)
    usable_out(args.out)
    share = placement.place_run(cfg.runtime)  # before CUDA starts: the GPU share this run computes on, if any
    if share is not None and placement.device_in_share(cfg.runtime.device) != cfg.runtime.device:
        cfg = cfg.with_settings({"runtime": {"device": placement.device_in_share(cfg.runtime.device)}},
                                "the GPU share")
    import torch

    from wscl.run.memory_limit import named_out_of_memory
    from wscl.run.preemption import StopRequest
    from wscl.run.trainer import Process, train
    from wscl.tracking.live import live_run, mlflow_destination
    from wscl.tracking.pending import log_finished
    if args.threads:
        torch.set_num_threads(args.threads)
    uri, parent = mlflow_destination(args.mlflow_setup, args.mlflow_parent_group, args.mlflow_parent,
                                     args.mlflow_uri, args.mlflow_experiment)
    placement.announce(cfg)
    live = live_run(cfg, args.out, uri, args.mlflow_experiment, parent)
    try:
        with (StopRequest().installed() as stop, live.system_metrics(cfg),  # SIGTERM/SIGUSR1: checkpoint, exit 75
              named_out_of_memory(cfg, cfg.runtime.device)):
            metrics = train(cfg, args.out, quiet=args.quiet,
                            process=Process(stop, live.task_end, share and share.describe()))
    except Exception as exc:
        if not args.record_failure or exit_code(exc) != ExitCode.TRAINING_FAILED:
            raise
        return _record_failure(cfg, Path(args.out), str(exc))
    if uri:  # metrics.json is written: a store that cannot be reached marks the run pending, the job succeeds
        destination = {"tracking_uri": uri, "experiment": args.mlflow_experiment, "parent_run_id": parent}
        run_id = log_finished(Path(args.out) / "metrics.json", destination, live.run_id, live.tasks,
                              log=lambda msg: print(msg, file=sys.stderr))
        if run_id:
            print(f"logged to MLflow run {run_id} at {uri}", file=sys.stderr)
    c, t = metrics["class_il"], metrics["task_il"]
    where = metrics["device"] + (f", GPU {share.gpu} share {share.slot + 1}/{share.runs_per_gpu}" if share else "")
    print(f"final average accuracy: Class-IL {c['final_avg_acc']:.2f}  Task-IL {t['final_avg_acc']:.2f}  "
          f"(forgetting {c['forgetting']:.2f}, fidelity {metrics['fidelity']}, on {where}) -> "
          f"{Path(args.out) / 'metrics.json'}")
    return 0


def _record_failure(cfg: Config, out: Path, message: str) -> int:
    """A study's run that failed in training: a sealed metrics.json saying so, so that the study goes on and
    its tables, report and MLflow parents name the failed seed (wscl/study/run_failures.py)."""
    from wscl.core.provenance import run_provenance
    from wscl.core.safe_io import atomic_write_json
    from wscl.method.metrics import failed_run_metrics
    from wscl.settings.runtime import resolve_device
    device = resolve_device(cfg.runtime.device)
    provenance = {"device": str(device), **run_provenance(device)}
    atomic_write_json(out / "metrics.json", failed_run_metrics(cfg, message, provenance), sealed=True)
    print(f"training failed: {message}\nrecorded as a failed run in {out / 'metrics.json'} (--record-failure); "
          "delete it to train this run again", file=sys.stderr)
    return ExitCode.OK


def cmd_speed(args) -> int:
    switch = {"auto": "auto", "true": True, "false": False}
    device = {"device": args.device, "compile": switch[args.compile], "cuda_graphs": switch[args.cuda_graphs]}
    if args.end_to_end:
        from wscl.run.speed_e2e import run_end_to_end
        run_end_to_end(device=device, out=args.out or "results/speed_end_to_end.json",
                       size="quick" if args.quick else "full", width=args.width, image_size=args.image_size,
                       exit_probe=not args.no_exit_probe)
        return 0
    from wscl.run.speed import run_speed
    run_speed(device=device, out=args.out or "results/speed.json", steps=args.steps, width=args.width,
              image_size=args.image_size)
    return 0


def parse_mirrors(items: list[str]) -> dict[str, list[Path]]:
    mirrors: dict[str, list[Path]] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--mirror {item!r}: expected RAW=PATH, "
                              "e.g. fashion-mnist=/usr/share/datasets/fashion-mnist")
        raw, path = item.split("=", 1)
        mirrors.setdefault(raw, []).append(Path(path))
    return mirrors


def cmd_data(args) -> int:
    from wscl.data.prepare import info, listing, prepare
    if args.data_command == "prepare":
        prepare(args.name, args.root, parse_mirrors(args.mirror), verify=not args.no_verify,
                log=lambda msg: print(msg, file=sys.stderr))
    elif args.data_command == "list":
        print("\n".join(listing()))
    else:
        print(json.dumps(info(args.folder), indent=2))
    return 0


def _study(args):
    from wscl.study.studies import Study
    return Study(json.loads(args.study_json))


def cmd_mlflow_setup(args) -> int:
    from wscl.tracking.parents import setup_study
    result = setup_study(args.uri, args.experiment, args.artifact_root, args.group)
    text = json.dumps(result, indent=2) + "\n"
    if args.out:  # sealed: every training job reads it (tracking.parents.load_setup)
        atomic_write_text(Path(args.out), text, sealed=True)
    print(text)
    return 0


def cmd_mlflow_sync(args) -> int:
    from wscl.tracking.parents import load_setup
    from wscl.tracking.pending import sync_pending
    from wscl.tracking.sync import sync_runs
    if args.run:  # run folders marked pending by `wscl train --mlflow-...`, each to its recorded destination
        done = sync_pending(args.run, log=lambda msg: print(msg, file=sys.stderr))
        print(f"{len(done['logged'])} pending run(s) logged, {len(done['failed'])} still pending"
              + (f", {len(done['invalid'])} with an unreadable metrics.json" if done["invalid"] else ""))
        if done["invalid"]:
            return ExitCode.RUN_RESULT_INVALID
        return ExitCode.TRACKING if done["failed"] else ExitCode.OK  # still unreachable: sync again later
    if not (args.study_json and args.setup):
        raise ConfigError("mlflow-sync needs --study-json and --setup (a study), or --run RUN_DIR (pending runs)")
    study = _study(args)
    runs = [(key.group, study.run_dir(key)) for key in study.runs()]
    report = sync_runs(load_setup(args.setup), runs, log=lambda msg: print(msg, file=sys.stderr))
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        atomic_write_text(Path(args.out), text)
    print(f"{len(report['logged'])} run(s) logged, {len(report['unchanged'])} already there, "
          f"{len(report['missing'])} not trained yet -> {report['tracking_uri']}")
    return 0


def cmd_aggregate(args) -> int:
    from wscl.study.aggregate import aggregate
    aggregate(_study(args), Path(args.tables), Path(args.plots), mlflow_uri=args.mlflow_uri)
    return 0


def cmd_pilot(args) -> int:
    from wscl.study.pilot import pilot_result, write_pilot
    study = _study(args)
    result = pilot_result(study)
    write_pilot(result, args.out)
    for _, a, b in study.comparisons():
        print(f"{a} - {b}: pilot sd {result['pilot_sd'][f'{a} - {b}']:.2f}")
    return 0


def cmd_select(args) -> int:
    from wscl.study.selection import select, write_selection
    selection = select(_study(args))
    write_selection(selection, args.out)
    for group, chosen in selection["groups"].items():
        print(f"{group}: {chosen['selected']} (tuning accuracy "
              f"{chosen['points'][chosen['selected']]['tune_class_il_final_avg_acc_mean']:.2f})")
    return 0


def cmd_report(args) -> int:
    from wscl.study.report import build_report
    build_report(_study(args), Path(args.tables), Path(args.plots), Path(args.out))
    return 0


def cmd_archive(args) -> int:
    from wscl.study.archive import write_archive
    print(write_archive(_study(args), args.mlflow_uri, Path(args.out)))
    return 0


def cmd_verify_archive(args) -> int:
    from wscl.study.archive import verify_archive
    problems = verify_archive(Path(args.file))
    for line in problems:
        print(line)
    print(f"{args.file}: {'OK, every checksum matches' if not problems else f'{len(problems)} problem(s)'}")
    return ExitCode.ARCHIVE_INVALID if problems else ExitCode.OK


def cmd_evaluate(args) -> int:
    from wscl.run.release import evaluate, load_model
    result = evaluate(load_model(args.model), args.dataset_root, args.device)
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        atomic_write_text(Path(args.out), text)
    for setting, row in result["final_accuracy"].items():
        print(f"{setting}: " + "  ".join(f"{v:.2f}" for v in row) + f"  (mean {sum(row) / len(row):.2f})")
    verdict = ("the same row as recorded when the run finished" if result["matches_recorded"] else
               "differs from the row recorded when the run finished (another machine kind or device gives other "
               "float results)")
    print(f"{args.model}: {verdict}")
    return ExitCode.OK


def cmd_schema(args) -> int:
    from wscl.settings.schema import trainer_schema, write_config_readme
    if args.readme:
        changed = write_config_readme(args.readme, args.study_schema)
        print(f"{args.readme}: {'written' if changed else 'already current'}")
        return ExitCode.OK
    text = json.dumps(trainer_schema(), indent=2) + "\n"
    if args.out:
        atomic_write_text(args.out, text)
    else:
        print(text, end="")
    return ExitCode.OK


def cmd_snapshot(args) -> int:
    from wscl.study.snapshot import make_snapshot, write_snapshot
    snapshot = make_snapshot(Path(args.runs), Path(args.selection) if args.selection else None)
    write_snapshot(snapshot, Path(args.out))
    print(f"{args.out}: {len(snapshot['runs'])} runs, commit {snapshot['git_commit']}, "
          f"{snapshot['machine']['device_name']}")
    return ExitCode.OK


def cmd_readme_results(args) -> int:
    from wscl.study.snapshot import read_snapshot, readme_block, readme_with
    from wscl.study.sweep_summary import readme_with_sweep, sweep_block
    readme = Path(args.readme)
    text = readme.read_text()
    snapshot = read_snapshot(Path(args.snapshot))
    if "selection" in snapshot:  # a sweep's snapshot: the README's sweep paragraph
        wanted = readme_with_sweep(text, sweep_block(snapshot, args.snapshot), readme)
    else:
        wanted = readme_with(text, readme_block(snapshot, args.snapshot), readme)
    if args.check:
        if wanted != text:
            print(f"{readme}: its results table differs from {args.snapshot}; write it with "
                  f"`wscl readme-results` (make readme-results)", file=sys.stderr)
            return ExitCode.RUN_RESULT_INVALID
        print(f"{readme}: its results table matches {args.snapshot}")
        return ExitCode.OK
    atomic_write_text(readme, wanted)
    print(f"{readme}: {'written' if wanted != text else 'already current'}")
    return ExitCode.OK


def _snapshot_parsers(sub) -> None:
    sn = sub.add_parser("snapshot", help="record a finished study's per-run figures, machine and commit (the source "
                                         "of the README's numbers)")
    sn.add_argument("--runs", default="results/tables/all_runs.csv",
                    help="the study's all_runs.csv (default: %(default)s)")
    sn.add_argument("--out", default="docs/snapshot/default.json", help="the snapshot to write (default: %(default)s)")
    sn.add_argument("--selection", help="a sweep study's tables/selection.json: its points on the tuning split and "
                                        "the one chosen go into the snapshot (the README's sweep paragraph)")
    rr = sub.add_parser("readme-results", help="write the README's results table (or, from a sweep's snapshot, its "
                                               "sweep paragraph) from a results snapshot")
    rr.add_argument("--snapshot", default="docs/snapshot/default.json", help="default: %(default)s")
    rr.add_argument("--readme", default="README.md", help="default: %(default)s")
    rr.add_argument("--check", action="store_true", help="write nothing; exit 9 when the README differs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wscl", description="Wake-Sleep Consolidated Learning (WSCL): train, "
                                     "aggregate and archive the runs of a study.", epilog=exit_codes_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub)
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
    _snapshot_parsers(sub)
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
