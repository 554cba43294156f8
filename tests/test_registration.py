"""One way to register a thing: a learner is one file of wscl/method/learners/, a preset one YAML file of
wscl/settings/presets/. A toy of each, dropped into a copy of the package (the one the test's processes import,
so that no other test sees them), trains through `wscl train` alone and through a study that Snakemake runs;
malformed declarations are refused naming their file."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workflow_support import ENV, edit_smoke_config, snakemake, workflow_copy

import wscl
from wscl.core.errors import ExitCode
from wscl.method import learners
from wscl.settings import config, declarations
from wscl.settings.declarations import learner_declarations, preset_declarations, read_learner, read_preset

PACKAGE = Path(wscl.__file__).resolve().parent

# A user's new learner, whole: an ER variant whose replay cross-entropy is weighted by one hyper-parameter.
TOY_LEARNER = '''"""Toy ER [ours]: a test's learner (tests/test_registration.py puts it in a copy of the package)."""
import torch.nn.functional as F

from wscl.method.learners import Learner

DECLARATION = {
    "about": "[ours] toy ER: incoming cross-entropy plus the replay's, weighted by replay_weight",
    "hparams": {"replay_weight": {"default": 0.5, "range": [0.0, 2.0], "about": "[ours] weight of the replay loss"}},
}


class ToyER(Learner):
    method = "toy_er"

    def __init__(self, *args, replay_weight: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.replay_weight = replay_weight

    def loss(self, inputs, labels, replays):
        loss = F.cross_entropy(self.forward(inputs), labels)
        if replays:
            buf_x, buf_y, _ = replays[0]
            loss = loss + self.replay_weight * F.cross_entropy(self.forward(buf_x), buf_y)
        return loss, None
'''

# A user's new preset, whole: WSCL with dreams only (no freezing, STM, NREM or plasticity).
TOY_PRESET = """role: ablation
colour: "#ABCDEF"
about: "[ours] a test's preset: dreams alone, nothing frozen, no STM, NREM or plasticity"
settings:
  wscl: {freezing: {enabled: false}, stm: {size: 0}, nrem: {enabled: false}, plasticity: {enabled: false}}
"""
TOY_PRESET_SETTINGS = yaml.safe_load(TOY_PRESET)["settings"]

# Tiny synthetic runs (the smoke study's sizes).
TINY = {"dataset": {"synthetic": {"classes": 4, "dream_classes": 4, "train_per_class": 60, "test_per_class": 20,
                                  "dream_per_class": 10, "size": 9, "channels": 3, "contrast": 60.0, "noise": 40.0}},
        "scenario": {"n_tasks": 2, "classes_per_task": 2, "val_per_task": 8, "freeze_buffer_per_task": 4},
        "model": {"width": 8}, "training": {"epochs": 1, "batch_size": 16, "replay_batch_size": 16,
                                            "buffer_size": 20},
        "runtime": {"device": "cpu"}}


@pytest.fixture
def toys(tmp_path) -> dict:
    """The environment of processes that import a copy of the package holding the toy learner and preset."""
    root = tmp_path / "package"
    shutil.copytree(PACKAGE, root / "wscl", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "wscl" / "method" / "learners" / "toy_er.py").write_text(TOY_LEARNER)
    (root / "wscl" / "settings" / "presets" / "toy_preset.yaml").write_text(TOY_PRESET)
    return {**ENV, "PYTHONPATH": os.pathsep.join(p for p in (str(root), ENV.get("PYTHONPATH")) if p)}


def assert_toys_trained(metrics: dict, replay_weight: float) -> None:
    assert metrics["method"] == "toy_er" and metrics["preset"] == "toy_preset"
    assert metrics["config"]["training"]["toy_er"] == {"replay_weight": replay_weight}
    settings = config.flatten(metrics["config"])
    assert all(settings[key] == value for key, value in config.flatten(TOY_PRESET_SETTINGS).items())
    assert metrics["config"]["wscl"]["rem"]["source"] != "none"  # what the preset leaves alone stays
    assert len(metrics["class_il"]["accuracy_matrix"]) == 2 and metrics["class_il"]["final_avg_acc"] is not None


def wscl_train(env: dict, out: Path, *sets: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "wscl", "train", "--config-json", json.dumps(TINY), "--out", str(out), "--quiet",
           "--mlflow-uri", "none", "--method", "toy_er", "--preset", "toy_preset", *(f"--set={s}" for s in sets)]
    # run outside the repository: `python -m` puts the working folder first on the path, before PYTHONPATH
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out.parent)


def test_a_toy_learner_and_preset_train_through_wscl_train(tmp_path, toys):
    done = wscl_train(toys, tmp_path / "run", "training.toy_er.replay_weight=0.25")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_toys_trained(json.loads((tmp_path / "run" / "metrics.json").read_text()), 0.25)
    # The declared range is enforced: out of it, the run is refused before it starts, naming the setting.
    refused = wscl_train(toys, tmp_path / "refused", "training.toy_er.replay_weight=5")
    assert refused.returncode == ExitCode.CONFIG == 3, refused.stderr[-3000:]
    assert "training.toy_er.replay_weight=5 is out of range; allowed range is [0.0, 2.0]" in refused.stderr
    assert not (tmp_path / "refused" / "metrics.json").exists()


def test_a_toy_learner_and_preset_train_in_a_study_run_by_snakemake(tmp_path, toys):
    workdir = workflow_copy(tmp_path / "study")
    edit_smoke_config(workdir, {
        "seeds": [0], "grid": [{"methods": ["toy_er"], "presets": ["toy_preset"]}],
        "trainer.training.epochs": 1,
        "overrides": [{"match": {"preset": "toy_preset"},
                       "trainer": {"training": {"toy_er": {"replay_weight": 1.5}}}}]})
    target = "results/runs/synthetic/buffer20/toy_er/toy_preset/reference/seed0/metrics.json"
    snakemake(workdir, target, env=toys)
    assert_toys_trained(json.loads((workdir / target).read_text()), 1.5)


# -- malformed declarations are refused, naming the file ----------------------------------------------------------

def test_the_registries_keep_their_order():
    assert config.METHODS == ("er", "er_ace", "derpp")
    assert tuple(config.PRESETS) == ("base", "authors", "full", "no_freezing", "no_nrem", "no_plasticity", "no_rem",
                                     "rem_noise", "wake_rem")
    assert tuple(learners.LEARNERS) == config.METHODS
    assert all(cls.method == method for method, cls in learners.LEARNERS.items())


def test_learners_are_ordered_by_their_order_then_by_name(tmp_path):
    for name, order in (("b", None), ("a", None), ("c", 2), ("d", 1)):
        extra = "" if order is None else f", 'order': {order}"
        (tmp_path / f"{name}.py").write_text(f"DECLARATION = {{'about': 'x'{extra}}}\n")
    (tmp_path / "_helpers.py").write_text("X = 1\n")  # not a learner
    assert list(learner_declarations(tmp_path)) == ["d", "c", "a", "b"]


@pytest.mark.parametrize("source, message", [
    ("X = 1\n", r"no module-level DECLARATION"),
    ("DECLARATION = {'about': 'a'}\nDECLARATION = {'about': 'b'}\n", r"2 module-level DECLARATION"),
    ("ABOUT = 'a'\nDECLARATION = {'about': ABOUT}\n", r"line 2: DECLARATION is not a literal"),
    ("DECLARATION = {'about': 'a', 'hyperparams': {}}\n", r"unknown fields \['hyperparams'\]"),
    ("DECLARATION = {'hparams': {}}\n", r"no `about`"),
    ("DECLARATION = {'about': 'a', 'order': 'first'}\n", r"`order` must be a whole number"),
    ("DECLARATION = {'about': 'a', 'hparams': {'gamma': 0.5}}\n", r"`hparams` must map"),
    ("DECLARATION = {'about': 'a',\n", r"not valid Python"),
])
def test_a_malformed_learner_declaration_is_refused_naming_the_file(tmp_path, source, message):
    path = tmp_path / "toy.py"
    path.write_text(source)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}.*{message}"):
        read_learner(path)


def test_a_learners_hyper_parameters_are_checked_as_settings_naming_its_file(monkeypatch):
    shipped = config.LEARNER_SPECS
    toy = {"about": "t", "hparams": {"gamma": {"default": 0.5, "about": "[ours]"}}}
    monkeypatch.setattr(config, "LEARNER_SPECS", {**shipped, "toy": toy})
    with pytest.raises(ValueError, match=r"^wscl/method/learners/toy.py: training.toy.gamma: every number has a "):
        config._settings()
    monkeypatch.setattr(config, "LEARNER_SPECS", {**shipped, "lr": {"about": "t", "hparams": {}}})
    with pytest.raises(ValueError, match=r"^wscl/method/learners/lr.py: the method's name 'lr' is a key of training"):
        config._settings()


CLASS_MISMATCHES = [
    ("class Toy(Learner):\n    method = 'other'\n", r"class Toy has method = 'other', but the file's name makes it "
                                                    r"'toy_bad'"),
    ("X = 1\n", r"defines 0 Learner classes \(none\)"),
    ("class A(Learner):\n    method = 'toy_bad'\n\n\nclass B(Learner):\n    method = 'toy_bad'\n",
     r"defines 2 Learner classes \(A, B\)"),
    ("class Toy(Learner):\n    method = 'toy_bad'\n", r"DECLARATION's hparams are \['gamma'\], but Toy.__init__ takes "
                                                      r"the keyword-only arguments \[\]"),
]


@pytest.mark.parametrize("body, message", CLASS_MISMATCHES)
def test_a_learner_class_that_does_not_match_its_file_is_refused_naming_it(tmp_path, monkeypatch, body, message):
    (tmp_path / "toy_bad.py").write_text("from wscl.method.learners import Learner\n\n\n" + body)
    monkeypatch.setattr(learners, "__path__", [*learners.__path__, str(tmp_path)])
    monkeypatch.setitem(config.LEARNER_SPECS, "toy_bad", {"about": "t", "hparams": {"gamma": {}}})
    try:
        with pytest.raises(ValueError, match=rf"toy_bad.py: {message}"):
            learners._learner_of("toy_bad")
    finally:
        sys.modules.pop(f"{learners.__name__}.toy_bad", None)


@pytest.mark.parametrize("text, message", [
    ("role: ablation\ncolour: '#123456'\nabout: '[ours] x'\nsettings: {}\nclaim: y\n", r"unknown fields \['claim'\]"),
    ("role: ablation\ncolour: '#123456'\nsettings: {}\n", r"missing fields \['about'\]"),
    ("role: variant\ncolour: '#123456'\nabout: '[ours] x'\nsettings: {}\n", r"role 'variant' is not one of baseline"),
    ("role: ablation\ncolour: #123456\nabout: '[ours] x'\nsettings: {}\n", r"colour None is not a hex colour in "
                                                                            r"quotes"),
    ("role: ablation\ncolour: '#123456'\nabout: '[ours] x'\nsettings: [1]\n", r"`settings` must be a mapping"),
    ("- a\n", r"a preset is a mapping"),
    ("role: [\n", r"not valid YAML"),
])
def test_a_malformed_preset_file_is_refused_naming_it(tmp_path, text, message):
    path = tmp_path / "toy.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: {message}"):
        read_preset(path)


def test_a_preset_whose_settings_the_trainer_refuses_is_refused_naming_its_file(monkeypatch):
    spec = {"role": "ablation", "colour": "#123456", "about": "[ours] x", "settings": {"wscl": {"nremm": {}}}}
    monkeypatch.setitem(config.PRESET_SPECS, "toy_bad", spec)
    with pytest.raises(ValueError, match=r"^wscl/settings/presets/toy_bad.yaml: its settings are not trainer settings: "
                                         r"unknown config key 'wscl.nremm'; did you mean 'wscl.nrem'"):
        config._check_preset_settings()
    spec["settings"] = {"wscl": {"nrem": {"epochs": -1}}}
    with pytest.raises(ValueError, match=r"toy_bad.yaml: .*wscl.nrem.epochs=-1 is out of range"):
        config._check_preset_settings()


def test_presets_are_ordered_by_role_then_name(tmp_path):
    for name, role in (("zeta", "baseline"), ("beta", "ablation"), ("alpha", "ablation"), ("mid", "wscl")):
        (tmp_path / f"{name}.yaml").write_text(f"role: {role}\ncolour: '#123456'\nabout: x\nsettings: {{}}\n")
    assert list(preset_declarations(tmp_path)) == ["zeta", "mid", "alpha", "beta"]
    (tmp_path / "Bad-Name.yaml").write_text("role: wscl\ncolour: '#123456'\nabout: x\nsettings: {}\n")
    with pytest.raises(ValueError, match=r"Bad-Name.yaml: 'Bad-Name' is not a preset name"):
        preset_declarations(tmp_path)
    assert declarations.preset_file("full") == "wscl/settings/presets/full.yaml"
