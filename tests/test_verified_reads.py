"""Every file a later job reads back carries its SHA-256 and is checked on read: a byte changed on disk without
changing the size stops the reader with one line naming the file and the fix (a checkpoint falls back
instead: tests/test_checkpoint_faults.py)."""
import json
import shutil

import pytest
import torch
from disk_faults import flip_middle_bytes

from wscl.cli import main
from wscl.core.errors import ExitCode, RunResultError
from wscl.core.safe_io import (
    DamagedFile,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    read_verified,
    save_figure,
    seal_path,
)
from wscl.method.metrics import read_metrics


def write_figure(path):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, path, sealed=True)
    plt.close(fig)


WRITERS = {"text": lambda p: atomic_write_text(p, "a,b\n" + "1,2\n" * 50, sealed=True),
           "json": lambda p: atomic_write_json(p, {"x": list(range(100))}, sealed=True),
           "torch": lambda p: atomic_torch_save({"w": torch.arange(200.0)}, p, sealed=True),
           "figure": write_figure}


@pytest.mark.parametrize("kind", WRITERS)
def test_a_sealed_file_reads_back_and_a_changed_byte_of_unchanged_size_is_refused(tmp_path, kind):
    path = tmp_path / f"file.{kind}"
    WRITERS[kind](path)
    assert read_verified(path) == path.read_bytes()
    line = seal_path(path).read_text()
    assert line.endswith(f"  {path.name}\n") and len(line.split()[0]) == 64  # sha256sum's format
    flip_middle_bytes(path)
    with pytest.raises(DamagedFile, match="differs from its digest in"):
        read_verified(path)
    seal_path(path).unlink()
    with pytest.raises(DamagedFile, match=r"has no digest \(file\..*\.sha256 is missing\)"):
        read_verified(path)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished tiny run's folder (trained once for this module)."""
    from conftest import tiny_config

    from wscl.run.trainer import Run
    out = tmp_path_factory.mktemp("finished") / "run"
    Run(tiny_config(scenario={"n_tasks": 2}, training={"epochs": 1}), out, quiet=True, log=lambda *_: None).run()
    return out


def test_a_changed_byte_in_metrics_json_is_named_with_the_fix(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    read_metrics(run / "metrics.json")
    flip_middle_bytes(run / "metrics.json", n=1)
    with pytest.raises(RunResultError) as caught:
        read_metrics(run / "metrics.json")
    message = str(caught.value)
    assert message.startswith(f"{run / 'metrics.json'} differs from its digest in metrics.json.sha256")
    assert f"--out {run}" in message and "resumes from the run's checkpoint.pt" in message


def test_a_damaged_mlflow_setup_stops_training_before_it_starts(tmp_path, capsys):
    setup = tmp_path / "setup.json"
    atomic_write_json(setup, {"tracking_uri": f"sqlite:///{tmp_path}/m.db", "experiment": "e",
                              "parents": {"g": "0123456789abcdef"}}, sealed=True)
    flip_middle_bytes(setup, n=2)
    code = main(["train", "--out", str(tmp_path / "run"), "--mlflow-setup", str(setup),
                 "--mlflow-parent-group", "g", "--dataset", "synthetic", "--device", "cpu"])  # no GPU share line
    err = capsys.readouterr().err.strip()
    assert code == ExitCode.RUN_RESULT_INVALID and len(err.splitlines()) == 1
    assert f"{setup} differs from its digest" in err and "mlflow_setup rule writes it again" in err
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_a_damaged_table_figure_or_run_stops_the_report_and_the_archive_naming_it(smoke, tmp_path, monkeypatch,
                                                                                  capsys):
    """On a copy of the finished smoke study: one damaged file at a time, each reader names it and exits 9."""
    import yaml
    work = tmp_path / "study"
    shutil.copytree(smoke / "results", work / "results")
    shutil.copytree(smoke / "config", work / "config")
    monkeypatch.chdir(work)  # run folders are relative to the working directory, as in the workflow
    study = json.dumps(yaml.safe_load((work / "config/smoke.yaml").read_text()))
    tables, plots = work / "results/tables", work / "results/plots"
    table = sorted(tables.glob("*_buffer*.csv"))[0]
    figure = sorted(plots.glob("*_loss_curve.png"))[0]
    metrics = sorted((work / "results/runs").glob("**/metrics.json"))[0]
    report = ["report", "--study-json", study, "--tables", str(tables), "--plots", str(plots),
              "--out", str(tmp_path / "report.html")]
    archive = ["archive", "--study-json", study, "--mlflow-uri", f"sqlite:///{tmp_path}/none.db",
               "--out", str(tmp_path / "a.tar.gz")]
    for damaged, command in ((table, report), (figure, report), (metrics, archive)):
        original = damaged.read_bytes()
        flip_middle_bytes(damaged)
        assert main(command) == ExitCode.RUN_RESULT_INVALID
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "differs from its digest" in err, err
        assert damaged.name in err and "rerun the workflow" in err
        damaged.write_bytes(original)
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "a.tar.gz").exists()
    assert main(report) == ExitCode.OK  # restored, every file reads again
    # on request the archive also carries every run's released model, covered by its manifest
    with_models = json.loads(study)
    with_models["archive"] = {"models": True}
    assert main([*archive[:2], json.dumps(with_models), *archive[3:]]) == ExitCode.OK
    import tarfile
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        models = [m.name for m in tar.getmembers() if m.name.endswith("/model.pt")]
    assert len(models) == len(list((work / "results/runs").glob("**/metrics.json")))
    assert main(["verify-archive", str(tmp_path / "a.tar.gz")]) == ExitCode.OK


def test_a_damaged_pending_marker_is_named_and_the_run_stays_for_the_studys_sync(finished_run, tmp_path,
                                                                                  monkeypatch, capsys):
    """A run finished while the store was unreachable carries a sealed marker; damaged, `mlflow-sync --run`
    names it (exit 9) instead of logging to wherever the damaged bytes point."""
    from wscl.tracking import pending as tracking_pending
    from wscl.tracking import runs as tracking_runs
    monkeypatch.chdir(tmp_path)
    shutil.copytree(finished_run, "run")
    tracking_pending.mark_pending("run", {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "e"},
                          RuntimeError("database is locked"))
    flip_middle_bytes(tmp_path / "run" / tracking_pending.PENDING, n=4)
    monkeypatch.setattr(tracking_runs, "_log_run", lambda *a, **k: pytest.fail("logged from a damaged marker"))
    assert main(["mlflow-sync", "--run", "run"]) == ExitCode.RUN_RESULT_INVALID
    err = capsys.readouterr().err
    assert f"run/{tracking_pending.PENDING} differs from its digest" in err and "mlflow_sync rule" in err
    assert (tmp_path / "run" / tracking_pending.PENDING).exists()
