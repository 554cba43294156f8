"""Every switch a GPU run turns on by default (channels_last, bf16 autocast, memory-mapped data,
deterministic kernels), exercised on CPU."""
import numpy as np
import pytest
import torch

from wscl.method.augment import Preprocess, random_crop_flip
from wscl.run.trainer import Run
from wscl.settings.config import METHODS, PRESETS, ConfigError, fingerprint
from wscl.settings.runtime import resolve_runtime


def run(tiny, tmp_path, **overrides):
    return Run(tiny(**overrides), tmp_path, quiet=True, log=lambda *_: None).run()


# Every preset (with ER-ACE) and every learner (with `full`) trains with all of a GPU run's switches on
# together: channels_last, bf16 autocast, deterministic kernels, on a memory-mapped dataset. Each case runs
# through the command line in a process of its own, as a GPU job does.
CASES = [(preset, "er_ace") for preset in sorted(PRESETS)] + [("full", m) for m in METHODS if m != "er_ace"]
GPU_SWITCHES = {"bf16": True, "channels_last": True, "deterministic": True}


@pytest.fixture(scope="module")
def mapped_root(tmp_path_factory):
    from conftest import TINY

    from wscl.data.canonical import save
    from wscl.data.synthetic import synthetic
    from wscl.settings.config import defaults
    syn = {**defaults()["dataset"]["synthetic"], **TINY["dataset"]["synthetic"], "classes": 4, "dream_classes": 4,
           "contrast": 90.0, "noise": 30.0}  # clearly learnable in 2 epochs
    syn.pop("seed")
    root = tmp_path_factory.mktemp("data")
    save(synthetic(**syn), root / "syn")
    return root


def train_alone(tiny, tmp_path, mapped_root, preset, method, switches, mapped: bool) -> dict:
    import json
    import subprocess
    import sys
    cfg = tiny(preset=preset, training={"method": method}, scenario={"n_tasks": 2}, runtime=switches,
               dataset={"name": "syn", "root": str(mapped_root), "mmap_above_mb": 0 if mapped else 2048})
    done = subprocess.run([sys.executable, "-m", "wscl", "train", "--config-json", json.dumps(cfg.to_dict()), "--quiet",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    recorded = {k: v for k, v in metrics["runtime"].items() if not k.startswith("eval_")}  # less the eval layout
    assert recorded == {"device": "cpu", "compile": False, "cuda_graphs": False, **switches}  # auto: eager on a CPU
    assert metrics["dataset_sha256"]  # the prepared dataset, not generated data
    accs = metrics["class_il"]["accuracy_matrix"]
    assert all(np.isfinite(v) for row in accs for v in row if v is not None)
    return metrics


def just_learned(metrics: dict) -> float:
    """Mean Task-IL accuracy on each task right after training it (the diagonal of the matrix)."""
    R = metrics["task_il"]["accuracy_matrix"]
    return float(np.mean([R[t][t] for t in range(len(R))]))


@pytest.mark.parametrize("preset,method", CASES)
def test_every_preset_and_learner_trains_with_every_gpu_switch_on(tiny, tmp_path, mapped_root, preset, method):
    metrics = train_alone(tiny, tmp_path, mapped_root, preset, method, GPU_SWITCHES, mapped=True)
    assert just_learned(metrics) > 60.0  # chance is 50% (2 classes per task)


def test_the_cpu_channels_last_shortcut_computes_the_strided_convolution():
    """On CPU in channels_last the residual shortcut avoids torch's strided 1x1 kernel (its backward corrupts
    the heap); forward and gradients equal those of the strided convolution in the default format."""
    from wscl.method.backbone import BasicBlock, is_channels_last
    torch.manual_seed(0)
    block = BasicBlock(8, 16, stride=2)
    x = torch.randn(3, 8, 12, 12)
    g = torch.randn(3, 16, 6, 6)
    ref_in = x.clone().requires_grad_()
    block.shortcut(ref_in).backward(g)
    ref_w = block.shortcut[0].weight.grad.clone()
    block.zero_grad()
    nhwc = block.to(memory_format=torch.channels_last)
    x_cl = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    assert is_channels_last(x_cl)
    out = nhwc._shortcut(x_cl)
    out.backward(g.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out, block.shortcut(x), atol=1e-5)
    assert torch.allclose(x_cl.grad, ref_in.grad, atol=1e-5)
    assert torch.allclose(nhwc.shortcut[0].weight.grad, ref_w, atol=1e-4)


# Over a whole continual run, float-level differences flip near-tied decisions (the freezing trial's
# rounded scores, greedy head assignment) and the runs diverge; so the formats are compared on one task
# of training, where no such decision is taken, with a stated tolerance on the test accuracy.
ONE_TASK = dict(preset="full", scenario={"n_tasks": 1}, dataset={"synthetic": {"classes": 2, "dream_classes": 2}})


def test_channels_last_gives_the_metrics_of_the_default_format(tiny, tmp_path):
    """Tolerance: 2 of the 60 test images (conv kernels differ in summation order only)."""
    base = run(tiny, tmp_path / "a", runtime={"channels_last": False}, **SETTLED_TASK)
    nhwc = run(tiny, tmp_path / "b", runtime={"channels_last": True}, **SETTLED_TASK)
    assert nhwc["class_il"]["final_avg_acc"] == pytest.approx(base["class_il"]["final_avg_acc"],
                                                              abs=100 * 2 / 60 + 1e-6)


# Enough steps (38) for BatchNorm's running statistics to settle: after 20, a float-level difference can
# still tip the eval-mode network (docs/determinism.md). Measured on an AMD EPYC (AVX2), seeds 0-2: bf16
# within 1, 2 and 0 test images of fp32 (80 images per class: 10, 1, 0).
SETTLED_TASK = dict(preset="full", scenario={"n_tasks": 1},
                    dataset={"synthetic": {"classes": 2, "dream_classes": 2, "train_per_class": 150}})


def test_bf16_autocast_stays_close_to_fp32(tiny, tmp_path):
    """Tolerance: 4 of the 60 test images (bf16 keeps 8 bits of mantissa)."""
    fp32 = run(tiny, tmp_path / "a", runtime={"bf16": False}, **SETTLED_TASK)
    bf16 = run(tiny, tmp_path / "b", runtime={"bf16": True}, **SETTLED_TASK)
    assert bf16["class_il"]["final_avg_acc"] == pytest.approx(fp32["class_il"]["final_avg_acc"],
                                                              abs=100 * 4 / 60 + 1e-6)


def test_losses_are_fp32_under_bf16_autocast(tiny, tmp_path):
    r = Run(tiny(runtime={"bf16": True}), tmp_path, quiet=True, log=lambda *_: None)
    x = torch.zeros(4, 3, 12, 12)
    logits = r.learner.forward(x)
    assert logits.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert r.learner.net(x).dtype == torch.bfloat16  # the network itself does run in bf16


def test_augmentation_returns_channels_last_without_changing_values():
    images = torch.randint(0, 256, (5, 3, 10, 10), dtype=torch.uint8)
    a = random_crop_flip(images, torch.Generator().manual_seed(0))
    b = random_crop_flip(images, torch.Generator().manual_seed(0), memory_format=torch.channels_last)
    assert b.is_contiguous(memory_format=torch.channels_last) and torch.equal(a, b)
    pre = Preprocess([0.5] * 3, [0.25] * 3, True, torch.device("cpu"), channels_last=True)
    out = pre(images, torch.Generator().manual_seed(0))
    assert out.is_contiguous(memory_format=torch.channels_last)
    plain = Preprocess([0.5] * 3, [0.25] * 3, True, torch.device("cpu"))(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, plain)


def test_memory_mapped_data_gives_the_metrics_of_in_memory_data(tiny, tmp_path):
    from wscl.data.canonical import save
    from wscl.data.synthetic import synthetic
    from wscl.settings.config import defaults
    syn = defaults()["dataset"]["synthetic"] | tiny().dataset.synthetic.to_dict()
    syn.pop("seed")
    save(synthetic(**syn), tmp_path / "data/syn")
    common = dict(preset="full", dataset={"name": "syn", "root": str(tmp_path / "data")})
    in_memory = run(tiny, tmp_path / "a", **common)
    mapped = run(tiny, tmp_path / "b", **{**common, "dataset": {**common["dataset"], "mmap_above_mb": 0}})
    assert mapped["class_il"]["accuracy_matrix"] == in_memory["class_il"]["accuracy_matrix"]


def test_runtime_auto_resolves_without_touching_the_config(tiny):
    cfg = tiny()
    rt = resolve_runtime(cfg)
    assert cfg.runtime.bf16 == "auto" and cfg.runtime.channels_last == "auto"
    assert (rt.bf16, rt.channels_last, rt.deterministic) == (False, False, True)  # cpu, reference
    assert resolve_runtime(tiny(fidelity="corrected")).deterministic is False


def test_fingerprint_hashes_the_resolved_runtime_not_auto(tiny):
    cfg = tiny()
    cpu = resolve_runtime(cfg).describe()
    gpu = {**cpu, "device": "cuda", "bf16": True, "channels_last": True}
    assert fingerprint(cfg, cpu) != fingerprint(cfg, gpu)


def test_a_missing_cuda_device_fails_at_start_naming_the_setting(tiny):
    with pytest.raises(ConfigError, match="runtime.device='cuda:3'"):
        resolve_runtime(tiny(runtime={"device": "cuda:3"}))


def test_derpp_keeps_each_samples_own_logits_through_the_stm_merge(tiny, tmp_path, monkeypatch):
    """After the STM->LTM merge every stored row's logits belong to that row's sample."""
    from wscl.method import nrem
    captured = {}
    original = nrem.merge_stm_into_ltm

    def merge(learner, pool, stm, rng):
        mem = learner.memory
        before = {int(i): mem.logits[k].clone() for k, i in enumerate(mem.stored()["sample_id"])}
        original(learner, pool, stm, rng)
        captured["before"], captured["after"] = before, mem.stored()["sample_id"].clone()
        captured["logits"] = mem.logits[: mem.n_stored].clone()

    monkeypatch.setattr(nrem, "merge_stm_into_ltm", merge)
    run(tiny, tmp_path, preset="full", training={"method": "derpp"}, scenario={"n_tasks": 2})
    kept = [(k, int(i)) for k, i in enumerate(captured["after"]) if int(i) in captured["before"]]
    new = [k for k, i in enumerate(captured["after"]) if int(i) not in captured["before"]]
    assert kept and new
    for k, sample in kept:
        assert torch.equal(captured["logits"][k], captured["before"][sample])
    assert all(captured["logits"][k].abs().sum() > 0 for k in new)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_auto_only_on_gpus_with_native_bf16_and_never_under_reference(tiny, monkeypatch, native):
    """A GPU that only emulates bf16 (V100, T4) trains in fp32; `reference` trains in fp32 as the authors."""
    import wscl.settings.runtime as runtime
    monkeypatch.setattr(runtime, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation or native)
    assert resolve_runtime(tiny(fidelity="corrected", runtime={"device": "cuda"})).bf16 is native
    assert resolve_runtime(tiny(fidelity="reference", runtime={"device": "cuda"})).bf16 is False
    assert resolve_runtime(tiny(fidelity="reference", runtime={"device": "cuda", "bf16": True})).bf16 is True


@pytest.mark.parametrize("reports", [True, False])
def test_bf16_auto_on_a_cpu_follows_the_bf16_instructions_it_reports(tiny, tmp_path, monkeypatch, reports):
    """On a CPU, `auto` decides as on a GPU, by what the processor reports (AVX-512 BF16 or AMX), not by its name;
    `reference` stays fp32; the decision and what it rested on are in metrics.json."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: reports)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert resolve_runtime(tiny(fidelity="corrected")).bf16 is reports
    assert resolve_runtime(tiny(fidelity="reference")).bf16 is False
    m = run(tiny, tmp_path, fidelity="corrected", scenario={"n_tasks": 2})
    assert m["runtime"]["bf16"] is reports and m["native_bf16"] is reports
    assert m["runtime"]["channels_last"] is False  # CPU default: the strided-shortcut workaround is not needed


def test_bf16_in_channels_last_on_the_cpu_trains_through_the_shortcut_workaround(tiny, tmp_path):
    """The CPU's channels_last workaround (backbone.py: a strided 1x1 shortcut computed on the subsampled input)
    holds under bf16 autocast: the run trains and learns."""
    m = run(tiny, tmp_path, fidelity="corrected", runtime={"bf16": True, "channels_last": True}, **SETTLED_TASK)
    assert m["runtime"]["bf16"] and m["runtime"]["channels_last"]
    assert m["class_il"]["final_avg_acc"] > 75  # two classes: chance is 50
