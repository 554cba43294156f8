"""`wscl train` and `wscl speed`: the run's configuration from its layers, the process around a training run."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from wscl.core.errors import ExitCode, exit_code, exit_codes_help
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


def train_parser(sub) -> None:
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
