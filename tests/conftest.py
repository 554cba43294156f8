import copy

import pytest

from wscl.config import resolve

TINY = {
    "seed": 0,
    "dataset": {"synthetic": {"classes": 6, "dream_classes": 6, "train_per_class": 80, "test_per_class": 30,
                              "dream_per_class": 20, "size": 12, "channels": 3,
                              "contrast": 60.0, "noise": 40.0}},
    "scenario": {"n_tasks": 3, "classes_per_task": 2, "val_per_task": 10, "freeze_buffer_per_task": 6},
    "model": {"width": 8},
    "training": {"epochs": 2, "batch_size": 16, "replay_batch_size": 16},
    "runtime": {"device": "cpu", "progress": False},
}


def tiny_config(**sections) -> dict:
    """The tiny synthetic run used across tests, with nested overrides."""
    from wscl.config import deep_merge
    return resolve(deep_merge(copy.deepcopy(TINY), sections))


@pytest.fixture
def tiny():
    return tiny_config
