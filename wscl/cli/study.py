"""The study's commands: data, MLflow, pilot, select, aggregate, report, archive, evaluate, schema, snapshot."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from wscl.core.errors import ExitCode
from wscl.core.safe_io import atomic_write_text
from wscl.settings.config import (
    ConfigError,
)


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
    snapshot = make_snapshot(Path(args.runs), Path(args.selection) if args.selection else None,
                             Path(args.study_config) if args.study_config else None)
    write_snapshot(snapshot, Path(args.out))
    print(f"{args.out}: {len(snapshot['runs'])} runs, commit {snapshot['git_commit']}, "
          f"{snapshot['machine']['device_name']}")
    return ExitCode.OK


def cmd_readme_results(args) -> int:
    from wscl.study.ablation_summary import ablation_block, readme_with_ablation
    from wscl.study.snapshot import read_snapshot, readme_block, readme_with
    from wscl.study.sweep_summary import readme_with_sweep, sweep_block
    readme = Path(args.readme)
    text = readme.read_text()
    snapshot = read_snapshot(Path(args.snapshot))
    if "selection" in snapshot:  # a sweep's snapshot: the README's sweep paragraph
        wanted = readme_with_sweep(text, sweep_block(snapshot, args.snapshot), readme)
    elif "comparisons" in snapshot:  # a study's comparisons: the README's ablation paragraph
        wanted = readme_with_ablation(text, ablation_block(snapshot, args.snapshot), readme)
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


def snapshot_parsers(sub) -> None:
    sn = sub.add_parser("snapshot", help="record a finished study's per-run figures, machine and commit (the source "
                                         "of the README's numbers)")
    sn.add_argument("--runs", default="results/tables/all_runs.csv",
                    help="the study's all_runs.csv (default: %(default)s)")
    sn.add_argument("--out", default="docs/snapshot/default.json", help="the snapshot to write (default: %(default)s)")
    sn.add_argument("--selection", help="a sweep study's tables/selection.json: its points on the tuning split and "
                                        "the one chosen go into the snapshot (the README's sweep paragraph)")
    sn.add_argument("--study-config", help="the study config file that ran the runs: its seed rule goes into the "
                                           "snapshot, and the README's ablation paragraph is written from it")
    rr = sub.add_parser("readme-results", help="write a README block from a results snapshot: the results table; "
                                               "from a sweep's snapshot the sweep paragraph; from one made with "
                                               "--study-config the ablation paragraph")
    rr.add_argument("--snapshot", default="docs/snapshot/default.json", help="default: %(default)s")
    rr.add_argument("--readme", default="README.md", help="default: %(default)s")
    rr.add_argument("--check", action="store_true", help="write nothing; exit 9 when the README differs")
