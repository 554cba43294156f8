"""The run's checkpoint: its whole state after every finished task, tied to the configuration.

The file holds the fingerprint of the resolved configuration and runtime (``config.fingerprint``) and
``RunState.state_dict()``. A checkpoint of another configuration, or one whose fields differ from
``RunState``'s, is never loaded: the run starts from its first task instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .state import RunState

FILE_NAME = "checkpoint.pt"


def save(state: RunState, path: Path, fingerprint: str) -> None:
    """Write atomically: a run killed while saving keeps its previous checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"fingerprint": fingerprint, "state": state.state_dict()}, tmp)
    os.replace(tmp, path)


def restore(state: RunState, path: Path, fingerprint: str, device: torch.device, log=print) -> bool:
    """Load the checkpoint at ``path`` into ``state``; False (``state`` untouched) when there is none or
    it belongs to another configuration."""
    if not path.exists():
        return False
    saved = torch.load(path, map_location=device, weights_only=False)
    if saved.get("fingerprint") != fingerprint or set(saved.get("state", {})) != state.field_names():
        log(f"{path}: checkpoint of a different configuration; starting this run from task 1")
        return False
    state.load_state_dict(saved["state"])
    return True
