import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest

import wscl
from wscl.cli import build_parser, main
from wscl.core.errors import ExitCode, exit_code
from wscl.core.safe_io import atomic_write_json
from wscl.settings.config import CHOICES, METHODS, PRESETS, ConfigError, parse_set, resolve

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pandas", "mlflow", "matplotlib", "torchvision")


def _modules_after(argv: list[str]) -> set[str]:
    code = (f"import sys\nfrom wscl.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write(' '.join(sorted(sys.modules)))")  # stdout holds the help text
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return set(done.stderr.split())


def test_version_comes_from_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"wscl {version('wscl')}" == f"wscl {wscl.__version__}"


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["verify-archive", "--help"]])
def test_help_imports_no_heavy_module(argv):
    loaded = _modules_after(argv)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


@pytest.mark.parametrize("entry", ["runpy.run_module('wscl', run_name='__main__')",  # python -m wscl
                                   "from wscl.cli import run_cli; run_cli()"])  # the wscl executable
def test_the_command_line_exits_with_mains_code_its_objects_frozen(tmp_path, entry):
    """The exit skips the interpreter's last collections (gc.freeze) and still runs the exit handlers."""
    code = ("import atexit, gc, runpy, sys\n"
            "atexit.register(lambda: sys.stderr.write(f'frozen objects: {gc.get_freeze_count()}'))\n"
            "sys.argv = ['wscl', 'verify-archive', 'missing.tar.gz']\n" + entry)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == ExitCode.ARCHIVE_INVALID, done.stderr
    assert "no such archive: missing.tar.gz" in done.stderr
    assert int(re.search(r"frozen objects: (\d+)", done.stderr).group(1)) > 1000


def test_the_installed_wscl_command_is_run_cli():
    from importlib.metadata import entry_points
    assert entry_points(group="console_scripts")["wscl"].value == "wscl.cli:run_cli"


def _actions(parser: argparse.ArgumentParser, where: str = "wscl"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{where} {name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield where, action


def test_every_option_has_help_text():
    missing = [f"{where} {action.dest}" for where, action in _actions(build_parser()) if not action.help]
    assert not missing


def test_train_shortcuts_offer_the_registries_as_choices(capsys):
    train = {action.dest: action for where, action in _actions(build_parser()) if where == "wscl train"}
    assert tuple(train["preset"].choices) == tuple(PRESETS)
    assert tuple(train["method"].choices) == METHODS
    assert tuple(train["fidelity"].choices) == CHOICES["fidelity"]
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", "x", "--method", "sgd"])
    assert exc.value.code == ExitCode.USAGE and "invalid choice: 'sgd'" in capsys.readouterr().err


def test_exit_codes_are_distinct_and_documented_in_help_and_readme(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    readme = (REPO / "README.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", readme, flags=re.M))
    assert sorted(int(code) for code in rows) == sorted(int(code) for code in ExitCode)
    for code in ExitCode:
        assert re.search(rf"^  {int(code)}\s+{re.escape(code.meaning)}$", shown, flags=re.M), code
    # 10 to 63 are left to wrappers; 75 is sysexits' EX_TEMPFAIL, which schedulers read as "try again"
    assert all(code < 10 for code in ExitCode if code != ExitCode.REQUEUE) and ExitCode.REQUEUE == 75


def test_runtime_failures_get_their_own_exit_codes():
    from wscl.core.errors import DatasetError, NonFiniteLossError, TrackingError
    from wscl.method.scenario import ScenarioError
    assert exit_code(ConfigError("x")) == exit_code(ScenarioError("x")) == ExitCode.CONFIG
    assert exit_code(DatasetError("x")) == ExitCode.DATA
    assert exit_code(NonFiniteLossError("x")) == ExitCode.TRAINING_FAILED
    assert exit_code(TrackingError("x")) == ExitCode.TRACKING
    from wscl.core.errors import ArchiveError
    from wscl.core.safe_io import WriteError
    assert exit_code(ArchiveError("x")) == ExitCode.ARCHIVE_INVALID
    from wscl.core.errors import Preempted
    assert exit_code(Preempted("x")) == ExitCode.REQUEUE
    assert exit_code(WriteError("f", OSError(28, "No space left on device"))) == ExitCode.WRITE_FAILED
    from wscl.core.errors import RunResultError
    assert exit_code(RunResultError("x")) == ExitCode.RUN_RESULT_INVALID
    assert exit_code(KeyError("x")) is None


def test_a_tracking_error_exits_with_its_code(tmp_path, capsys):
    setup = tmp_path / "setup.json"
    atomic_write_json(setup, {"tracking_uri": f"sqlite:///{tmp_path}/m.db", "parents": {}}, sealed=True)
    code = main(["train", "--out", str(tmp_path / "run"), "--mlflow-setup", str(setup),
                 "--mlflow-parent-group", "no/such/group"])
    assert code == ExitCode.TRACKING and "no/such/group" in capsys.readouterr().err


def test_set_parses_yaml_types_and_nested_keys():
    tree = parse_set(["training.lr=0.1", "training.epochs=3", "wscl.nrem.enabled=false", "dataset.name=seq-cifar10",
                      "runtime.device=cuda:1", "wscl.nrem.stm_fraction=auto", "dataset.root="])
    assert tree == {"training": {"lr": 0.1, "epochs": 3}, "wscl": {"nrem": {"enabled": False, "stm_fraction": "auto"}},
                    "dataset": {"name": "seq-cifar10", "root": ""}, "runtime": {"device": "cuda:1"}}
    assert type(tree["training"]["lr"]) is float and type(tree["training"]["epochs"]) is int
    assert parse_set(["training.lr=1=2"]) == {"training": {"lr": "1=2"}}  # only the first = splits
    cfg = resolve(None, parse_set(["training.derpp.alpha=0.3", "seed=7"]))
    assert cfg.training.derpp.to_dict() == {"alpha": 0.3, "beta": 0.5} and cfg.seed == 7


@pytest.mark.parametrize("item, message", [
    ("training.lr", r"--set 'training.lr': expected KEY=VALUE"),
    ("training.lr=fast", r"training.lr='fast' must be a number"),
    ("training.epochs=2.5", r"training.epochs=2.5 must be a whole number"),
    ("wscl.nrem.enabled=maybe", r"wscl.nrem.enabled='maybe' must be true or false"),
    ("training.lrr=0.1", r"unknown config key 'training.lrr'; did you mean 'training.lr'"),
    ("training.lr.x=1", r"config key 'training.lr' is a single setting, not a mapping; it has no key 'x'"),
    ("training=1", r"config key 'training' must be a mapping with keys method, epochs"),
    ("training.derpp.gamma=1", r"unknown config key 'training.derpp.gamma'"),
])
def test_set_errors_name_the_key(item, message):
    with pytest.raises(ConfigError, match=message):
        resolve(None, parse_set([item]))


def _write_archive(tmp_path, monkeypatch, files: dict[str, bytes]) -> Path:
    import wscl.study.archive as archive
    monkeypatch.setattr(archive, "_members", lambda study, uri: dict(files))
    return archive.write_archive(None, "", tmp_path / "study.tar.gz")


def _rewrite(path: Path, change, extra: dict[str, bytes] | None = None) -> None:
    """Rewrite an archive's members through ``change(name, data) -> data or None (dropped)``, plus ``extra``."""
    with tarfile.open(path, "r:gz") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [*members, *(extra or {}).items()]:
            data = change(name, data)
            if data is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_verify_archive_names_a_tampered_file(tmp_path, monkeypatch, capsys):
    files = {"runs/a/metrics.json": b'{"acc": 71.2}', "tables/t.csv": b"a,b\n1,2\n", "config.yaml": b"study: s\n"}
    path = _write_archive(tmp_path, monkeypatch, files)
    assert main(["verify-archive", str(path)]) == ExitCode.OK
    assert "OK, every checksum matches" in capsys.readouterr().out

    _rewrite(path, lambda name, data: data.replace(b"71.2", b"99.9") if name.endswith("metrics.json") else data)
    assert main(["verify-archive", str(path)]) == ExitCode.ARCHIVE_INVALID
    out = capsys.readouterr().out
    assert "checksum differs: runs/a/metrics.json" in out and "1 problem(s)" in out

    _rewrite(path, lambda name, data: None if name.endswith("t.csv") else data, extra={"study/extra.txt": b"x"})
    assert main(["verify-archive", str(path)]) == ExitCode.ARCHIVE_INVALID
    out = capsys.readouterr().out
    assert "missing: tables/t.csv" in out and "not in manifest: extra.txt" in out


def test_schema_command_prints_the_generated_schema(tmp_path, capsys):
    from wscl.settings.schema import trainer_schema
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == trainer_schema()
    assert main(["schema", "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text()) == trainer_schema()


def test_a_learner_declared_in_its_own_file_reaches_config_schema_and_cli(tmp_path):
    """A new learner is one file in wscl/method/learners/: no other list needs an edit."""
    package = tmp_path / "wscl"
    shutil.copytree(REPO / "wscl", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "method" / "learners" / "toy.py").write_text(
        "from wscl.method.learners.er import ER\n\n"
        "DECLARATION = {'about': 'a test learner', 'hparams': {\n"
        "    'gamma': {'default': 0.3, 'range': [0.0, 1.0], 'about': '[ours] a weight'}}}\n\n\n"
        "class Toy(ER):\n    method = 'toy'\n\n"
        "    def __init__(self, *args, gamma: float, **kwargs):\n"
        "        super().__init__(*args, **kwargs)\n        self.gamma = gamma\n")
    code = """
import json
from wscl.settings import config
from wscl.settings import schema
from wscl.cli import build_parser
from wscl.method.learners import LEARNERS
from wscl.settings.config import ConfigError, resolve
cfg = resolve({"training": {"method": "toy", "toy": {"gamma": 0.5}}})
try:
    resolve({"training": {"toy": {"gamma": 2.0}}})
    rejected = False
except ConfigError as exc:
    rejected = "training.toy.gamma=2.0 is out of range" in str(exc)
s = schema.trainer_schema()
args = build_parser().parse_args(["train", "--out", "x", "--method", "toy"])
print(json.dumps({"methods": config.METHODS, "gamma": cfg.training.toy.gamma, "rejected": rejected,
                  "enum": s["$defs"]["method"]["enum"],
                  "schema": s["properties"]["training"]["properties"]["toy"]["properties"]["gamma"],
                  "cli": args.method, "class": LEARNERS["toy"].__name__}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["methods"][-1] == "toy" and "toy" in out["enum"] and out["cli"] == "toy" and out["class"] == "Toy"
    assert out["gamma"] == 0.5 and out["rejected"]
    assert out["schema"]["minimum"] == 0.0 and out["schema"]["maximum"] == 1.0
