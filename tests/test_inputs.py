"""Every input of `wscl train` ends in one of its exit codes with a few lines, never a traceback.

A property-based walk (hypothesis) over every trainer setting of the schema (each declared bound, just
outside it, huge values, NaN, infinities and wrong types, given by --set, --config-json or a config file) and
over the command line's other inputs (malformed --config, --config-json and --set, --threads, --out). An input
that passes validation only has to start training: the run stops at its STARTED_STEPS-th optimiser step, on a
tiny synthetic benchmark, so that the whole walk takes seconds. That step lies after the first task's sleep, so
the walk reaches NREM and plasticity too (a plasticity factor that overflows float32 fails there).
"""
import contextlib
import io
import json
import math
import tempfile
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wscl.cli import main
from wscl.core.errors import ExitCode, OutOfMemoryError
from wscl.run.memory_limit import named_out_of_memory
from wscl.settings.config import AUTO_OR_NUMBER, CHOICES, PATTERNS, RANGES, SETTINGS, defaults, flatten, resolve

ANSWERS = {ExitCode.OK, ExitCode.CONFIG, ExitCode.DATA, ExitCode.TRAINING_FAILED, ExitCode.WRITE_FAILED}
MAX_STDERR_LINES = 3
STARTED_STEPS = 8
# A run of a few steps: 2 tasks of 2 classes, 8 images per class of 9 x 9 pixels, width 4.
TINY = {"dataset": {"synthetic": {"classes": 4, "dream_classes": 4, "train_per_class": 8, "test_per_class": 2,
                                  "dream_per_class": 2, "size": 9}},
        "scenario": {"n_tasks": 2, "classes_per_task": 2, "val_per_task": 2, "freeze_buffer_per_task": 2},
        "model": {"width": 4}, "training": {"epochs": 1, "batch_size": 8, "replay_batch_size": 8, "buffer_size": 8},
        "wscl": {"stm": {"size": 8}}, "runtime": {"device": "cpu", "progress": False}}
# In-range values that only make a run slower or bigger, not different in kind, are walked up to a ceiling: a
# 1024-wide network (3 billion weights) would start no faster than it trains. Out-of-range values are walked
# in full.
CEILINGS = {"model.width": 16, "dataset.synthetic.train_per_class": 200, "dataset.synthetic.test_per_class": 200,
            "dataset.synthetic.dream_per_class": 200, "dataset.synthetic.classes": 40,
            "dataset.synthetic.dream_classes": 40, "dataset.synthetic.size": 32, "wscl.rem.noise_per_class": 200}
# Compiling only makes a run start later (tests/test_compile.py covers it): not walked.
SLOWER_ONLY = {("runtime.compile", True)}
HUGE = [10**30, 1.0e+39, 1.0e+308, -(10**30), 2**63, 2**64]
NOT_NUMBERS = [math.nan, math.inf, -math.inf, "x", "", None, True, [1, 2], {"a": 1}]


class Started(Exception):
    """Training has started: the walk does not need the rest of the run."""


def number_values(path: str) -> list:
    low, high = RANGES[path]
    whole = isinstance(SETTINGS[path]["default"], int) and path not in AUTO_OR_NUMBER
    step = 1 if whole else 1e-6
    values = [v for v in (low, high) if v is not None]
    values += [low - step] if low is not None else []
    values += [high + step] if high is not None else []
    values += [0.5] if whole else [0]
    return values + HUGE + NOT_NUMBERS + (["auto"] if path in AUTO_OR_NUMBER else [])


def setting_values(path: str) -> list:
    if path in RANGES:
        return number_values(path)
    if CHOICES.get(path):
        return list(CHOICES[path]) + ["nope", 1, None, [1, 2], {"a": 1}]
    if isinstance(SETTINGS[path]["default"], bool):
        return [True, False, "yes", 1, None]
    if path in PATTERNS:
        return ["auto", "cpu", "cuda", "cuda:7", "gpu", 3, None]
    return ["synthetic", "no-such-dataset", "../..", "", 5, None, [1]]


def within_ceiling(path: str, value) -> bool:
    if any(path == slow and value is on for slow, on in SLOWER_ONLY):
        return False
    ceiling = CEILINGS.get(path)
    low, high = RANGES.get(path, (None, None))
    inside = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and (low is None or value >= low) and (high is None or value <= high))
    return ceiling is None or not inside or value <= ceiling


PATHS = sorted(flatten(defaults()))
SECTIONS = sorted({path.rsplit(".", 1)[0] for path in PATHS if "." in path})
settings_and_values = st.sampled_from(PATHS).flatmap(
    lambda path: st.tuples(st.just(path), st.sampled_from([v for v in setting_values(path)
                                                           if within_ceiling(path, v)])))


def nested(path: str, value) -> dict:
    tree: dict = value
    for key in reversed(path.split(".")):
        tree = {key: tree}
    return tree


def run_cli(argv: list[str]) -> tuple[int | str, str]:
    """The exit code (or "started") and the standard error of `wscl train ARGV`, stopped once it trains."""
    real_step, steps = torch.optim.SGD.step, []

    def step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        steps.append(1)
        if len(steps) >= STARTED_STEPS:
            raise Started
        return result

    err = io.StringIO()
    with mock.patch.object(torch.optim.SGD, "step", step), contextlib.redirect_stderr(err):
        try:
            code: int | str = main(["train", "--quiet", "--threads", "1", *argv])
        except Started:
            code = "started"
    return code, err.getvalue()


def assert_answered(code, err: str) -> None:
    assert "Traceback" not in err
    assert code == "started" or code in ANSWERS, (code, err)
    if code != "started" and code != ExitCode.OK:
        assert err.startswith("wscl train: error: ") or "error" in err, err
    assert len([line for line in err.splitlines() if not line.startswith("warning:")]) <= MAX_STDERR_LINES, err


def given_as(channel: str, path: str, value, folder: Path) -> list[str]:
    """``path: value`` on top of TINY, through one of the ways a setting reaches the trainer."""
    base = ["--config-json", json.dumps(TINY)]
    if channel == "set":
        return base + ["--set", f"{path}={yaml.safe_dump(value, default_flow_style=True).strip()}"
                       .removesuffix("\n...")]
    if channel == "json":
        tree = json.loads(json.dumps(TINY))
        node = tree
        *sections, key = path.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
        return ["--config-json", json.dumps(tree)]
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(nested(path, value)))
    return base + ["--config", str(config)]


WALK = dict(deadline=None, derandomize=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=100, **WALK)
@given(setting=settings_and_values, channel=st.sampled_from(["set", "json", "file"]))
@example(setting=("wscl.plasticity.strengthen", 1.0e+39), channel="set")
@example(setting=("dataset.synthetic.noise", math.nan), channel="file")
@example(setting=("runtime.collapse_share", math.nan), channel="json")
@example(setting=("training.derpp.alpha", math.nan), channel="set")
@example(setting=("training.batch_size", 1), channel="set")
@example(setting=("training.buffer_size", 10**30), channel="set")
@example(setting=("wscl.stm.size", 2**64), channel="json")
@example(setting=("dataset.synthetic.train_per_class", 10**30), channel="file")
@example(setting=("preset", [1, 2]), channel="set")
def test_every_setting_is_answered_in_a_few_lines(tmp_path, setting, channel):
    path, value = setting
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # one per example: no run resumes another's checkpoint
    code, err = run_cli(given_as(channel, path, value, folder) + ["--out", str(folder / "run")])
    assert_answered(code, err)


def test_nan_and_infinities_are_refused_naming_the_setting(tmp_path):
    for path in ("dataset.synthetic.noise", "runtime.collapse_share", "runtime.loss_explosion_factor",
                 "training.derpp.alpha", "wscl.nrem.stm_fraction"):
        for value in (".nan", ".inf", "-.inf"):
            code, err = run_cli(["--set", f"{path}={value}", "--out", str(tmp_path)])
            assert code == ExitCode.CONFIG and f"{path}=" in err and "finite" in err, err


def test_a_section_given_as_a_single_value_is_refused_whatever_else_sets_it(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("training: 5\n")
    for argv in (["--config", str(config), "--set", "training.lr=0.1"],
                 ["--config", str(config), "--config-json", '{"training": {"lr": 0.1}}'],
                 ["--config-json", '{"training": 5}', "--set", "training.lr=0.1"],
                 ["--set", "training=5", "--set", "training.lr=0.1"]):
        code, err = run_cli(argv + ["--out", str(tmp_path / "run")])
        assert code == ExitCode.CONFIG and "'training'" in err, (argv, err)


def file_under_a_file(tmp_path: Path) -> str:
    (tmp_path / "plain").write_text("x")
    return str(tmp_path / "plain" / "run")


CLI_INPUTS = st.one_of(
    st.tuples(st.just("--config"), st.binary(max_size=40)),
    st.tuples(st.just("--config-json"), st.one_of(st.text(max_size=30), st.sampled_from(
        ["[1, 2]", "5", "null", '"x"', '{"training": 5}', '{"training": {"lr": NaN}}', "{", "{}"]))),
    st.tuples(st.just("--set"), st.one_of(st.text(max_size=30), st.sampled_from(
        ["training.lr=[", "preset=[1,2]", "=", "training.=1", ".=1", "training.lr", "a.b.c=1", "seed=:"]))),
    st.tuples(st.just("--threads"), st.sampled_from(["-1", "0", "1", "2", "1000000000", str(2**40)])),
    st.tuples(st.just("--out"), st.sampled_from(["under-a-file", "a-file", "fresh"])),
)


@settings(max_examples=50, **WALK)  # most of these start training
@given(cli_input=CLI_INPUTS)
@example(cli_input=("--config", b"training: {lr: \xff}\n"))
@example(cli_input=("--config", b"training: [1, 2\n"))
@example(cli_input=("--config-json", "[1, 2]"))
@example(cli_input=("--set", "training.lr=["))
@example(cli_input=("--set", "preset=[1,2]"))
@example(cli_input=("--threads", "-1"))
@example(cli_input=("--threads", str(2**40)))
@example(cli_input=("--out", "under-a-file"))
def test_every_command_line_input_is_answered_in_a_few_lines(tmp_path, cli_input):
    option, given = cli_input
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path))  # one per example
    out = str(tmp_path / "run")
    argv = ["--config-json", json.dumps(TINY)]
    if option == "--config":
        (tmp_path / "c.yaml").write_bytes(given)
        argv += ["--config", str(tmp_path / "c.yaml")]
    elif option == "--out":
        out = {"under-a-file": file_under_a_file(tmp_path), "a-file": str(tmp_path / "plain"),
               "fresh": str(tmp_path / "fresh")}[given]
        (tmp_path / "plain").write_text("x")
    elif option == "--config-json":
        argv = ["--config-json", given]
    else:
        argv += [option, given]
    code, err = run_cli(argv + ["--out", out])
    assert_answered(code, err)


@pytest.mark.parametrize("argv, names", [
    (["--config-json", "[1, 2]"], "--config-json"), (["--set", "training.lr=["], "--set 'training.lr=['"),
    (["--set", "preset=[1,2]"], "preset="), (["--threads", "-1"], "--threads -1"),
    (["--threads", "1000000000"], "--threads 1000000000")])
def test_a_bad_command_line_input_is_one_line_naming_it(tmp_path, argv, names):
    code, err = run_cli(argv + ["--out", str(tmp_path / "run")])
    assert code == ExitCode.CONFIG and err.count("\n") == 1 and names in err, err


def test_an_out_folder_under_a_file_is_one_line_naming_it(tmp_path):
    code, err = run_cli(["--out", file_under_a_file(tmp_path)])
    assert code == ExitCode.CONFIG and err.count("\n") == 1
    assert f"--out {tmp_path / 'plain' / 'run'}: {tmp_path / 'plain'} is a file" in err


def test_a_config_file_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_bytes(b"training: {lr: \xff}\n")
    code, err = run_cli(["--config", str(config), "--out", str(tmp_path / "run")])
    assert code == ExitCode.CONFIG and err.count("\n") == 1 and "is not UTF-8" in err and str(config) in err


@pytest.mark.parametrize("failure", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.00 GiB"),
                                     RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: "
                                                  "can't allocate memory: you tried to allocate 12884901888 bytes"),
                                     MemoryError("Unable to allocate 80.0 GiB")])
def test_running_out_of_memory_names_the_settings_that_size_the_run(failure):
    cfg = resolve({"model": {"width": 1024}})
    with pytest.raises(OutOfMemoryError) as caught, named_out_of_memory(cfg, "cpu"):
        raise failure
    message = str(caught.value)
    assert "out of memory on cpu" in message and "model.width=1024" in message
    assert "training.batch_size=32" in message and "dataset.synthetic.train_per_class=300" in message


def test_another_runtime_error_is_not_taken_for_running_out_of_memory():
    with pytest.raises(RuntimeError, match="shape mismatch"), named_out_of_memory(resolve(), "cpu"):
        raise RuntimeError("shape mismatch")


def test_the_smallest_allowed_image_side_is_the_prepared_datasets_limit_and_trains_on_one_image(tmp_path):
    from wscl.data.benchmarks import MIN_IMAGE_SIDE
    from wscl.method.backbone import ResNet18
    assert RANGES["dataset.synthetic.size"][0] == MIN_IMAGE_SIDE
    net = ResNet18(2, in_channels=3, width=4).train()
    net(torch.rand(1, 3, MIN_IMAGE_SIDE, MIN_IMAGE_SIDE)).sum().backward()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        net(torch.rand(1, 3, MIN_IMAGE_SIDE - 1, MIN_IMAGE_SIDE - 1))


def test_a_prepared_dataset_of_too_small_images_is_refused_naming_it(tmp_path):
    from wscl.data.canonical import save
    from wscl.data.synthetic import synthetic
    save(synthetic(classes=4, dream_classes=2, train_per_class=8, test_per_class=2, dream_per_class=2, size=8),
         tmp_path / "small")
    code, err = run_cli(["--config-json", json.dumps(TINY), "--set", "dataset.name=small", "--set",
                         f"dataset.root={tmp_path}", "--out", str(tmp_path / "run")])
    assert code == ExitCode.DATA and "images of 8 pixels" in err and str(tmp_path / "small") in err
