"""The C allocator keeps freed memory for the next step (allocator.py): fewer page faults, same numbers."""
import json
import os
import subprocess
import sys

import pytest
from conftest import numbers

from wscl import cli
from wscl.run import allocator

# A training step's pattern, in C so that no other allocation lands between its blocks: 32 activation-sized
# blocks (2.4 MB) written, then freed. Left to itself, glibc gives the freed heap top back to the kernel
# once it exceeds twice the largest block freed so far, so each step faults its pages in again.
STEPS = """
import ctypes, resource, sys
from wscl.run import allocator
applied = allocator.retain_freed_memory() if sys.argv[1] == "retain" else False
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
def step(size=2_400_000):
    blocks = [libc.malloc(size) for _ in range(32)]
    for block in blocks:
        ctypes.memset(block, 1, size)
    for block in blocks:
        libc.free(block)
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in allocator.USER_SETTINGS}
    return {**env, **extra}


def page_faults(mode: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True,
                          env=clean_env())
    applied, faults = done.stdout.split()
    return applied, int(faults)


def test_retaining_freed_memory_spares_the_page_faults_of_repeated_steps():
    assert allocator.is_glibc()  # the project's Linux machines; elsewhere the setting is a no-op
    default_applied, default = page_faults("default")
    applied, retained = page_faults("retain")
    assert (default_applied, applied) == ("False", "True")
    assert default > 20 * 32 * 2_400_000 // (2 << 20)  # faulted in again every step, even in 2 MiB huge pages
    assert retained < default / 20, (retained, default)


@pytest.mark.parametrize("name", ["MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "LD_PRELOAD"])
def test_an_allocator_configured_by_the_user_is_left_alone(monkeypatch, name):
    monkeypatch.setenv(name, "")
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: pytest.fail("mallopt was called"))
    assert allocator.retain_freed_memory() is False


def test_the_command_line_sets_the_allocator_before_main(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "retain_freed_memory", lambda: calls.append("allocator"))
    monkeypatch.setattr(cli, "main", lambda: calls.append("main") or 0)
    monkeypatch.setattr(cli.gc, "freeze", lambda: None)  # keep this test process's collector untouched
    with pytest.raises(SystemExit) as exc:
        cli.run_cli()
    assert exc.value.code == 0 and calls == ["allocator", "main"]


def test_a_run_with_the_allocator_setting_gives_the_same_numbers_and_weights(tmp_path, tiny):
    """The same tiny run through the ``wscl`` entry point, once with the setting and once with glibc's
    defaults (any glibc tunables in the environment, even none, turn it off): identical metrics and final
    weights."""
    import torch
    cfg = json.dumps(tiny(seed=3).to_dict())
    runs = {}
    for name, env in [("retained", clean_env()), ("default", clean_env(GLIBC_TUNABLES=""))]:
        out = tmp_path / name
        subprocess.run([sys.executable, "-m", "wscl", "train", "--config-json", cfg, "--out", str(out), "--quiet",
                        "--mlflow-uri", "none"], check=True, env=env, capture_output=True)
        runs[name] = (numbers(json.loads((out / "metrics.json").read_text())),
                      torch.load(out / "checkpoint.pt", weights_only=False))
    (metrics_a, state_a), (metrics_b, state_b) = runs.values()
    assert metrics_a == metrics_b
    weights_a, weights_b = (s["state"]["learner"]["net"] for s in (state_a, state_b))
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
