"""Every method and preset learns: clearly above chance on the synthetic dataset, in seconds."""
import pytest

from wscl.config import PRESETS
from wscl.trainer import Run

CHANCE_CLASS_IL = 100 / 6
CHANCE_TASK_IL = 100 / 2


def final(cfg, tmp_path):
    cfg["dataset"]["synthetic"]["train_per_class"] = 150  # enough data for stable numbers across methods
    m = Run(cfg, tmp_path, quiet=True, log=lambda *_: None).run()
    return m["class_il"]["final_avg_acc"], m["task_il"]["final_avg_acc"], m


@pytest.mark.parametrize("method", ["er", "er_ace", "derpp"])
@pytest.mark.parametrize("preset", ["base", "full"])
def test_methods_beat_chance(tiny, tmp_path, method, preset):
    cil, til, _ = final(tiny(preset=preset, training={"method": method}), tmp_path)
    assert cil > 2 * CHANCE_CLASS_IL and til > 1.3 * CHANCE_TASK_IL


@pytest.mark.parametrize("preset", [p for p in PRESETS if p not in ("base", "full")])
def test_presets_beat_chance(tiny, tmp_path, preset):
    cil, til, m = final(tiny(preset=preset), tmp_path)
    assert til > 1.3 * CHANCE_TASK_IL
    if preset != "wake_rem":  # buffer-free: forgets earlier tasks in Class-IL by design
        assert cil > 1.5 * CHANCE_CLASS_IL  # ablations may be weaker than `full`, but clearly above chance
    else:
        assert m["config"]["training"]["buffer_size"] == 0 and m["tasks"][1]["wake_pool"]["dream"] > 0


@pytest.mark.parametrize("overrides", [
    {"wscl": {"rem": {"schedule": "staged", "epochs": 1}}},
    {"fidelity": "corrected"},
    {"scenario": {"head_assignment": "hungarian"}},
])
def test_variants_beat_chance(tiny, tmp_path, overrides):
    cil, til, m = final(tiny(**overrides), tmp_path)
    assert cil > 2 * CHANCE_CLASS_IL and til > 1.3 * CHANCE_TASK_IL
    if "wscl" in overrides:
        assert m["wall_seconds"]["rem"] > 0 and m["tasks"][0]["wake_pool"]["dream"] == 0
