"""Figures of runs in docs/performance.md are written by scripts/cpu_switch.py and scripts/compile_breakeven.py
from the raw files committed beside them (docs/figures/), never by hand."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def script(name: str):
    """scripts/NAME.py, imported as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_switch():
    return script("cpu_switch")


def test_the_table_sums_each_presets_seconds_and_averages_its_accuracy_off_against_on(tmp_path):
    runs = [{"run": f"b/buffer200/er_ace/{preset}/corrected/seed{seed}", "on": on, "process_seconds": seconds,
             "class_il": accuracy}
            for preset, values in {"base": [(10.0, 50.0, 8.0, 52.0), (12.0, 54.0, 9.0, 50.0)],
                                   "full": [(20.0, 70.0, 15.0, 71.0), (22.0, 72.0, 17.0, 71.0)]}.items()
            for seed, (off_s, off_acc, on_s, on_acc) in enumerate(values)
            for on, seconds, accuracy in ((False, off_s, off_acc), (True, on_s, on_acc))]
    result = {"machine": "Some CPU (AVX2)", "git_commit": "abcdef123456", "setting": "runtime.compile", "runs": runs}
    block = cpu_switch().table(result, "docs/figures/x.json")
    assert "| preset (2 seeds) | eager: seconds, Class-IL | compiled: seconds, Class-IL |" in block
    assert "| `base` | 22.0 s, 52.0 ± 2.8 | 17.0 s, 51.0 ± 1.4 |" in block
    assert "| `full` | 42.0 s, 71.0 ± 1.4 | 32.0 s, 71.0 ± 0.0 |" in block
    assert "| all 4 | **64.0 s** | **49.0 s (1.31x)** |" in block and "Some CPU (AVX2), commit `abcdef1234`" in block
    raw = tmp_path / "x.json"
    raw.write_text(json.dumps(result))
    doc = tmp_path / "doc.md"
    doc.write_text("# Page\n\n<!-- x: begin -->\n<!-- x: end -->\n\nafter\n")
    module = cpu_switch()
    assert module.write_table(str(raw), str(doc), check=True) == 1
    assert module.write_table(str(raw), str(doc), check=False) == 0
    assert "| `base` | 22.0 s" in doc.read_text() and doc.read_text().endswith("\n\nafter\n")
    assert module.write_table(str(raw), str(doc), check=True) == 0
    doc.write_text(doc.read_text().replace("22.0 s", "20.0 s"))
    assert module.write_table(str(raw), str(doc), check=True) == 1


def test_performance_md_shows_the_bf16_table_of_its_raw_file():
    source = "docs/figures/bf16_cpu_intel_amx.json"
    table = cpu_switch().table(json.loads((ROOT / source).read_text()), source)
    assert table in (ROOT / "docs" / "performance.md").read_text()


def compile_breakeven():
    return script("compile_breakeven")


def test_the_breakeven_table_splits_what_compiling_saves_in_the_steps_from_what_a_new_process_pays(tmp_path):
    # (arm, cache, in process) -> seconds: eager 20 s in a new process, 15 s again (5 s of process start);
    # compiled 14 s again (1 s saved in the steps), 24 s in a new process with a warm cache (5 s start + 5 s).
    seconds = {("eager", "empty", 0): 20.0, ("eager", "empty", 1): 15.0, ("compiled", "empty", 0): 90.0,
               ("compiled", "warm", 0): 24.0, ("compiled", "warm", 1): 14.0}
    rows = [{"preset": "base", "arm": arm, "cache": cache, "in_process": i, "seconds": s}
            for (arm, cache, i), s in seconds.items()]
    result = {"machine": "Some CPU (AVX2)", "git_commit": "abcdef123456", "seeds": {"base": 3}, "runs": rows}
    module = compile_breakeven()
    block = module.table(result, "docs/figures/y.json")
    assert "| `base` | 20.0 | 15.0 | 90.0 | 24.0 | 14.0 | +1.0 | +5.0 |" in block
    assert "Some CPU (AVX2), one thread, commit `abcdef1234`" in block
    # 3 runs: eager 3 x 20 s; compiled 90 s for the first, 24 s for each of the two others
    assert "The study's 3 corrected runs of these presets" in block and "eager 60 s, compiled 138 s." in block
    doc = tmp_path / "doc.md"
    doc.write_text("# Page\n\n<!-- y: begin -->\n<!-- y: end -->\n")
    raw = tmp_path / "y.json"
    raw.write_text(json.dumps(result))
    assert module.write_table(str(raw), str(doc), check=True) == 1
    assert module.write_table(str(raw), str(doc), check=False) == 0
    assert module.write_table(str(raw), str(doc), check=True) == 0


def test_performance_md_shows_the_compile_breakeven_table_of_its_raw_file():
    source = "docs/figures/compile_breakeven_cpu_amd_epyc_zen4.json"
    table = compile_breakeven().table(json.loads((ROOT / source).read_text()), source)
    assert table in (ROOT / "docs" / "performance.md").read_text()
