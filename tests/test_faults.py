"""Faults during long runs end in one actionable line or a transparent recovery: a full disk or read-only
folder under every writer, a damaged prepared dataset, a missing archive, MLflow stopped mid-study."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from wscl.cli import main
from wscl.core.errors import DatasetError, ExitCode
from wscl.core.safe_io import (
    WriteError,
    atomic_save_npy,
    atomic_tar_gz,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    save_figure,
    seal_path,
)
from wscl.data.canonical import save
from wscl.data.synthetic import synthetic


def figure():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(np.random.default_rng(0).random((400, 400)))  # incompressible: a large PNG
    return fig


BIG = np.random.default_rng(0).integers(0, 255, 300_000, dtype=np.uint8)  # ~300 KB, incompressible
WRITERS = {
    "text": lambda p: atomic_write_text(p, BIG.tobytes().hex()),
    "json": lambda p: atomic_write_json(p, {"x": BIG.tobytes().hex()}),
    "npy": lambda p: atomic_save_npy(p, BIG),
    "torch": lambda p: atomic_torch_save({"x": __import__("torch").from_numpy(BIG)}, p),
    "figure": lambda p: save_figure(figure(), p, dpi=100),
    "tar": lambda p: atomic_tar_gz(p, {"a.bin": BIG.tobytes()}, top="study", mtime=0),
}


def result(folder, kind):
    return folder / f"result.{ {'figure': 'png', 'tar': 'tar.gz'}.get(kind, kind)}"


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_full_disk_names_the_file_removes_the_temp_and_keeps_the_old_file(disk, kind):
    target = result(disk.path / "out", kind)
    target.parent.mkdir()
    target.write_bytes(b"old")
    filler = disk.fill(leave_kb=60)
    with pytest.raises(WriteError) as caught:
        WRITERS[kind](target)
    message = str(caught.value)
    assert message.startswith(f"cannot write {target}: the disk is full") and "\n" not in message
    assert "free space under" in message and "rerun" in message
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no .tmp left behind
    filler.unlink()  # space freed: the same write now completes
    WRITERS[kind](target)
    assert target.stat().st_size > 1000 and sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_writers_of_the_same_file_at_once_do_not_take_each_others_temporary_file(tmp_path):
    """Every Slurm job rewrites the workflow's schemas when it parses the Snakefile: concurrent atomic writes
    of one target each complete, and the file ends as one writer's whole content."""
    from concurrent.futures import ThreadPoolExecutor
    target = tmp_path / "trainer.schema.json"
    contents = [str(i) * 200_000 for i in range(8)]

    def write_often(text):
        for _ in range(25):
            atomic_write_text(target, text)

    with ThreadPoolExecutor(len(contents)) as pool:
        list(pool.map(write_often, contents))  # re-raises any writer's error
    assert target.read_text() in contents
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_temporary_files_of_killed_writers_are_removed_by_the_next_write_and_live_ones_kept(tmp_path):
    from wscl.core.safe_io import STALE_TEMP_S
    target = tmp_path / "metrics.json"
    killed, live = tmp_path / ".metrics.json.4242-0badcafe.tmp", tmp_path / ".metrics.json.4343-00c0ffee.tmp"
    other = tmp_path / ".metrics.json.bak.1-2.tmp"  # another file's temporary: not this target's
    for path in (killed, live, other):
        path.write_text("partial")
    past = time.time() - STALE_TEMP_S - 60
    for path in (killed, other):
        os.utime(path, (past, past))
    atomic_write_json(target, {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, live.name, other.name])


def test_an_archive_names_itself_in_its_gzip_header_and_is_the_same_bytes_when_rewritten(tmp_path):
    import gzip
    target = tmp_path / "study.tar.gz"
    atomic_tar_gz(target, {"a.txt": b"x"}, top="study", mtime=1_700_000_000)
    first = target.read_bytes()
    with gzip.open(target) as gz:
        assert gz.read()
    assert first[3] & 0x08 and first[10:20] == b"study.tar\0"  # FNAME after the 10-byte header, less ".gz"
    atomic_tar_gz(target, {"a.txt": b"x"}, top="study", mtime=1_700_000_000)
    assert target.read_bytes() == first


@pytest.mark.parametrize("kind", ["text", "npy", "figure"])
@pytest.mark.parametrize("folder_exists", [True, False])
def test_a_read_only_folder_is_named_with_what_to_do(disk, kind, folder_exists):
    target = result(disk.path / "tables", kind)
    target.parent.mkdir(exist_ok=folder_exists) if folder_exists else None
    disk.read_only()
    with pytest.raises(WriteError) as caught:
        WRITERS[kind](target)
    assert str(caught.value).startswith(f"cannot write {target}: the folder is on a read-only file system; make ")
    assert "writable or choose another output folder, and rerun" in str(caught.value)
    disk.read_only(False)
    assert not target.exists() and (not folder_exists or list(target.parent.iterdir()) == [])


def test_data_prepare_on_a_full_disk_is_one_line_and_a_rerun_after_freeing_space_completes(disk, capsys):
    argv = ["data", "prepare", "synthetic", "--root", str(disk.path)]
    assert main(argv) == ExitCode.WRITE_FAILED
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"cannot write {disk.path / 'synthetic'}: the disk is full" in err
    assert f"rerun `wscl data prepare synthetic --root {disk.path}`" in err
    assert list(disk.path.iterdir()) == []  # the temporary folder is gone
    disk.resize(20_000)
    assert main(argv) == 0
    from wscl.data.verify import verify_prepared
    meta = json.loads((disk.path / "synthetic/meta.json").read_text())
    assert verify_prepared(disk.path / "synthetic") == meta["sha256"]


def test_mlflow_setup_output_in_a_read_only_folder_is_one_line(disk, tmp_path, capsys):
    from wscl.core.safe_io import mount_point
    disk.read_only()
    out = disk.path / "mlflow" / "setup.json"
    code = main(["mlflow-setup", "--uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--experiment", "e",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after MLflow's own INFO lines
    assert code == ExitCode.WRITE_FAILED
    assert err == (f"wscl mlflow-setup: error: cannot write {out}: the folder is on a read-only file "
                                 f"system; make {mount_point(out)} writable or choose "
                                 "another output folder, and rerun the same command: finished work is kept")
    disk.read_only(False)


# -- archives ------------------------------------------------------------------------------------------

def test_verify_archive_of_a_missing_or_truncated_file_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nothing.tar.gz"
    assert main(["verify-archive", str(missing)]) == ExitCode.ARCHIVE_INVALID
    assert capsys.readouterr().err.strip() == f"wscl verify-archive: error: no such archive: {missing}"
    archive = tmp_path / "study.tar.gz"
    atomic_tar_gz(archive, {"a": BIG.tobytes()}, top="study", mtime=0)
    archive.write_bytes(archive.read_bytes()[:1000])
    assert main(["verify-archive", str(archive)]) == ExitCode.ARCHIVE_INVALID
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"wscl verify-archive: error: {archive} is not a readable tar.gz archive") and "\n" not in err


# -- prepared datasets ---------------------------------------------------------------------------------

def prepared(tmp_path, tiny):
    cfg = tiny(scenario={"n_tasks": 2})
    folder = save(synthetic(**cfg.dataset.synthetic.to_dict()), tmp_path / "data" / "syn")
    return folder, lambda **d: tiny(scenario={"n_tasks": 2},
                                    dataset={"name": "syn", "root": str(tmp_path / "data"), **d})


def flip_4k(path, offset=2048):
    """Overwrite 4 KB in place: the size stays, the content does not."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        block = fh.read(4096)
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in block))


def test_a_damaged_prepared_array_stops_the_run_naming_the_file_and_the_rebuild(tmp_path, tiny, capsys):
    folder, cfg = prepared(tmp_path, tiny)
    flip_4k(folder / "train_x.npy")
    out = tmp_path / "run"
    code = main(["train", "--config-json", json.dumps(cfg().to_dict()), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == ExitCode.DATA and len(err) == 1
    assert err[0] == (f"wscl train: error: {folder / 'train_x.npy'} does not match the content sha256 in "
                      f"{folder / 'meta.json'}: the prepared data was changed or damaged after preparation; "
                      f"rebuild it with `wscl data prepare syn --root {folder.parent}`")
    assert not (out / "metrics.json").exists()


def test_every_run_records_the_verified_dataset_sha256_in_metrics_and_mlflow(tmp_path, tiny, monkeypatch):
    from mlflow.tracking import MlflowClient
    folder, cfg = prepared(tmp_path, tiny)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["train", "--config-json", json.dumps(cfg().to_dict()), "--out", "run", "--quiet", "--mlflow-uri", uri,
                 "--mlflow-experiment", "e"]) == 0
    sha = json.loads((folder / "meta.json").read_text())["sha256"]
    assert json.loads((tmp_path / "run/metrics.json").read_text())["dataset_sha256"] == sha
    client = MlflowClient(uri)
    (child,) = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert child.data.tags["dataset_sha256"] == sha
    assert sha.startswith(child.inputs.dataset_inputs[0].dataset.digest)


def test_a_memory_mapped_dataset_is_hashed_once_until_a_file_changes(tmp_path, tiny, monkeypatch):
    from wscl.data import verify
    from wscl.data.benchmarks import from_config
    folder, cfg = prepared(tmp_path, tiny)
    calls = []
    real = verify.digests
    monkeypatch.setattr(verify, "digests", lambda f: calls.append(f) or real(f))
    sha = json.loads((folder / "meta.json").read_text())["sha256"]
    assert from_config(cfg(mmap_above_mb=0)).sha256 == sha
    assert (folder / verify.RECORD).exists() and len(calls) == 1
    from_config(cfg(mmap_above_mb=0))
    assert len(calls) == 1  # the record vouches for the unchanged folder
    from_config(cfg())  # small enough for memory: hashed at every job start
    assert len(calls) == 2
    time.sleep(0.05)  # past the file system's timestamp granularity, as any later damage is
    flip_4k(folder / "test_x.npy", offset=200)  # same size, new mtime: the record no longer holds
    with pytest.raises(DatasetError, match=r"test_x\.npy does not match the content sha256"):
        from_config(cfg(mmap_above_mb=0))
    assert len(calls) == 3


# -- MLflow unreachable ----------------------------------------------------------------------------------

def children(uri, experiment):
    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_a_locked_store_past_the_retries_marks_the_run_pending_and_a_sync_logs_it_once(tmp_path, tiny,
                                                                                          monkeypatch, capsys):
    from wscl.tracking import client as tracking_client
    from wscl.tracking import pending as tracking_pending
    from wscl.tracking import runs as tracking_runs
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tracking_client.time, "sleep", lambda s: None)
    real = tracking_runs._log_run

    def locked(*args, **kwargs):
        raise RuntimeError("(sqlite3.OperationalError) database is locked")
    monkeypatch.setattr(tracking_runs, "_log_run", locked)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["train", "--config-json", json.dumps(tiny(scenario={"n_tasks": 2}).to_dict()), "--out", "run", "--quiet",
            "--mlflow-uri", uri, "--mlflow-experiment", "e"]
    assert main(argv) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert len(err) == 1 and "database is locked" in err[0] and "wscl mlflow-sync" in err[0]
    marker = json.loads((tmp_path / "run" / tracking_pending.PENDING).read_text())
    assert marker["tracking_uri"] == uri and marker["experiment"] == "e"
    assert main(["mlflow-sync", "--run", "run"]) == ExitCode.TRACKING  # still locked: the marker stays
    assert "0 pending run(s) logged, 1 still pending" in capsys.readouterr().out.splitlines()[-1]
    assert (tmp_path / "run" / tracking_pending.PENDING).exists()
    monkeypatch.setattr(tracking_runs, "_log_run", real)
    assert main(["mlflow-sync", "--run", "run"]) == 0
    assert main(["mlflow-sync", "--run", "run"]) == 0  # nothing pending any more: logs nothing
    assert "0 pending run(s) logged" in capsys.readouterr().out.splitlines()[-1]
    assert not (tmp_path / "run" / tracking_pending.PENDING).exists()
    (child,) = children(uri, "e")
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    assert child.data.metrics["class_il/final_avg_acc"] == metrics["class_il"]["final_avg_acc"]


@pytest.mark.parametrize("damage, problem", [("truncate", "differs from its digest in metrics.json.sha256"),
                                              ("delete", "is missing"), ("unsealed", "has no digest"),
                                              ("replace", "does not hold a run's metrics"),
                                              ("strip", "does not hold a run's metrics (missing: config, "),
                                              ("not_json", "is not valid JSON")])
def test_a_pending_run_whose_metrics_are_damaged_is_named_and_keeps_its_marker(tmp_path, tiny, monkeypatch,
                                                                              capsys, damage, problem):
    """mlflow-sync of a pending run: a damaged metrics.json is the run's problem, not the store's."""
    from wscl.tracking import client as tracking_client
    from wscl.tracking import pending as tracking_pending
    from wscl.tracking import runs as tracking_runs
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tracking_client.time, "sleep", lambda s: None)
    monkeypatch.setattr(tracking_runs, "_log_run", lambda *a, **k: pytest.fail("logged a damaged run"))
    metrics = tmp_path / "run/metrics.json"
    metrics.parent.mkdir()
    atomic_write_json(metrics, {"class_il": {}, "task_il": {}}, sealed=True)
    tracking_pending.mark_pending("run", {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "e"},
                          RuntimeError("database is locked"))
    # truncate: a changed file; unsealed: its digest lost; the others sealed as written, yet not a run's metrics
    {"truncate": lambda: metrics.write_text('{"class_il": {"final'), "delete": metrics.unlink,
     "unsealed": seal_path(metrics).unlink,
     "replace": lambda: atomic_write_text(metrics, "[]", sealed=True),
     "not_json": lambda: atomic_write_text(metrics, '{"class_il": {"final', sealed=True),
     "strip": lambda: atomic_write_json(metrics, {"class_il": {"accuracy_matrix": []}, "task_il": {}},
                                        sealed=True)}[damage]()
    assert main(["mlflow-sync", "--run", "run"]) == ExitCode.RUN_RESULT_INVALID
    out, err = capsys.readouterr()
    assert f"run/metrics.json {problem}" in err and "wscl train" in err and "--out run" in err
    assert "Traceback" not in err and "1 with an unreadable metrics.json" in out
    assert (tmp_path / "run" / tracking_pending.PENDING).exists()


def start_server(root, port):
    from conftest import wait_until_healthy
    from workflow_support import BIN
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    with open(root / "server.log", "a") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, process_group=0)
    wait_until_healthy(f"http://127.0.0.1:{port}", server, root / "server.log")
    return server


def stop_server(server):
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_a_tracking_server_stopped_mid_study_loses_no_run(tmp_path, tiny, monkeypatch, capsys):
    """Run a is logged; the server stops after run b's first task (logged live); b still succeeds, marked
    pending; once the server is back, a sync logs b: one child run per folder, complete."""
    from workflow_support import free_port

    from wscl.tracking import live
    from wscl.tracking import pending as tracking_pending
    from wscl.tracking import runs as tracking_runs
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast; the default backs off for minutes
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port)
    try:
        cfg = json.dumps(tiny(scenario={"n_tasks": 2}).to_dict())

        def train(out):
            return main(["train", "--config-json", cfg, "--out", out, "--quiet", "--mlflow-uri", uri,
                         "--mlflow-experiment", "study"])
        assert train("runs/a") == 0
        live_task_end = live.LiveRun.on_task_end

        def stop_after_first_task(self, metrics_so_far, task):
            live_task_end(self, metrics_so_far, task)
            if task == 0:
                stop_server(server)
        monkeypatch.setattr(live.LiveRun, "on_task_end", stop_after_first_task)
        capsys.readouterr()
        assert train("runs/b") == 0
        err = capsys.readouterr().err
        assert "marked as not yet logged" in err and "Traceback" not in err
        assert (tmp_path / "runs/b/metrics.json").exists() and (tmp_path / "runs/b" / tracking_pending.PENDING).exists()
        server = start_server(tmp_path, port)
        done = tracking_pending.sync_pending(["runs/a", "runs/b"], log=lambda *_: None)  # `wscl mlflow-sync --run`
        assert done == {"logged": ["runs/b"], "failed": [], "busy": [], "invalid": []}
        assert tracking_pending.sync_pending(["runs/a", "runs/b"], log=lambda *_: None)["logged"] == []
        by_key = {}
        for run in children(uri, "study"):
            by_key.setdefault(run.data.tags["wscl.run_key"], []).append(run)
        assert sorted(by_key) == ["runs/a", "runs/b"] and all(len(v) == 1 for v in by_key.values())
        b = by_key["runs/b"][0]
        metrics = json.loads((tmp_path / "runs/b/metrics.json").read_text())
        assert b.info.status == "FINISHED"
        assert b.data.metrics["class_il/final_avg_acc"] == metrics["class_il"]["final_avg_acc"]
        assert b.data.tags[tracking_runs.DIGEST_TAG] == tracking_runs.metrics_digest(tmp_path / "runs/b/metrics.json")
    finally:
        stop_server(server)
