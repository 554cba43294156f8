"""Where and how a run computes: device, precision, memory format and determinism [ours].

``resolve_runtime`` turns the ``runtime`` settings (with their ``auto`` values) into concrete choices
for this machine without changing the configuration it is given; the choices are recorded in
metrics.json and in the checkpoint fingerprint, so a checkpoint written on one device is never
resumed with the random streams of another.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from wscl.settings.config import Config, ConfigError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    bf16: bool              # bf16 autocast around the network (losses stay fp32)
    channels_last: bool     # NHWC memory format for images and convolution weights
    deterministic: bool     # deterministic kernels (cuDNN, cuBLAS workspace, torch's checks)
    compile: bool = False   # the training steps' network compiled with torch.compile
    cuda_graphs: bool = False  # ... and replayed as CUDA graphs (torch.compile's mode reduce-overhead)

    @property
    def compile_mode(self) -> str | None:
        """torch.compile's mode for the training steps; None: eager."""
        if not self.compile:
            return None
        return "reduce-overhead" if self.cuda_graphs else "default"

    def describe(self) -> dict:
        return {**asdict(self), "device": str(self.device)}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"runtime.device={name!r} but CUDA is not available here; use auto or cpu")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigError(f"runtime.device={name!r} but this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1}); use one of those or auto")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 in hardware; emulated bf16 (V100, T4, a CPU without bf16 instructions)
    is slower than fp32. A CPU is judged by the instructions it reports (AVX-512 BF16, AMX tiles), not its name."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return cpu_has_bf16()


def cpu_has_bf16() -> bool:
    """Whether this CPU reports bf16 instructions: AVX-512 BF16 or AMX (as cpuinfo reads them for torch)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_runtime(cfg: Config) -> Runtime:
    rt, reference = cfg.runtime, cfg.fidelity == "reference"
    device = resolve_device(str(rt.device))
    auto = {
        "channels_last": device.type == "cuda",
        # [code] the authors train in fp32: reference runs use bf16 only when a run asks for it explicitly.
        "bf16": native_bf16(device) and not reference,
        # Reference runs promise the same numbers for the same seed on every device, at some speed cost.
        "deterministic": reference,
        # [ours] Compiling changes the float arithmetic (fused kernels), so reference runs, which promise the
        # authors' numbers, stay eager unless asked; on a CPU the compile time outweighs the gain at the
        # sizes measured (docs/performance.md, "Compiled steps").
        "compile": device.type == "cuda" and not reference,
    }
    chosen = {key: auto[key] if getattr(rt, key) == "auto" else bool(getattr(rt, key)) for key in auto}
    # CUDA graphs need a compiled step on a GPU: on by default there, never on a CPU.
    graphs = rt.cuda_graphs
    chosen["cuda_graphs"] = chosen["compile"] and device.type == "cuda" and (graphs == "auto" or bool(graphs))
    return Runtime(device, **chosen)


def prepare_runtime(cfg: Config) -> Runtime:
    """The run's runtime, resolved for this machine, with its determinism applied and, when it compiles, the
    study's shared cache of compiled code."""
    runtime = resolve_runtime(cfg)
    if runtime.compile:
        share_compiled_code()
    apply_determinism(runtime)
    return runtime


def apply_determinism(runtime: Runtime) -> None:
    """Process-wide switches; ``warn_only`` so an op without a deterministic kernel warns instead of failing."""
    if runtime.deterministic and runtime.device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS creates its handle
    torch.use_deterministic_algorithms(runtime.deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = runtime.deterministic
    torch.backends.cudnn.benchmark = runtime.device.type == "cuda" and not runtime.deterministic


# The compiled-code cache folder the process was started with, if any: torch writes its own default into the
# environment once asked (torch.use_deterministic_algorithms asks), so only the value at import is the caller's.
CALLERS_CACHE_DIR = os.environ.get("TORCHINDUCTOR_CACHE_DIR")


def compiled_code_folder() -> Path:
    """The shared cache of compiled code, one folder per torch version and CPU kernel kind: code compiled where
    torch runs AVX-512 kernels is never reused where it runs AVX2 ones (such a reuse gave NaN losses)."""
    kind = f"torch-{torch.__version__}-{torch.backends.cpu.get_cpu_capability().lower()}"
    return Path.home() / ".cache" / "wscl" / "inductor" / kind


def share_compiled_code() -> None:
    """Compiled kernels go to one cache folder that every run of every study reuses (inductor's FX-graph and
    AOTAutograd caches): a study pays each compile once, not once per run. ``TORCHINDUCTOR_CACHE_DIR`` set by
    the caller wins (e.g. a folder on a cluster's shared file system: one per CPU kind, as here)."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = CALLERS_CACHE_DIR or str(compiled_code_folder())
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; a CPU has nothing queued)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def timed(timings: dict, phase: str, device: torch.device):
    """Add the wall time of the block to ``timings[phase]`` (seconds)."""
    start = time.perf_counter()
    yield
    synchronize(device)  # phase boundaries only: accurate wall time per phase
    timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start
