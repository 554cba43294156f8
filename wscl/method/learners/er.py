"""ER [code]: experience replay, as in Mammoth (`models/er.py`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from wscl.method.learners import Learner

# Read by wscl/settings without importing this file: a literal. `order`: its place in the lists of methods.
DECLARATION = {
    "about": "experience replay, incoming and replayed samples in one cross-entropy",
    "order": 1,
}


class ER(Learner):
    """Experience replay: incoming and replayed samples in one batch, one cross-entropy."""
    method = "er"

    def loss(self, inputs, labels, replays):
        if replays:
            buf_x, buf_y, _ = replays[0]
            inputs, labels = torch.cat([inputs, buf_x]), torch.cat([labels, buf_y])
        return F.cross_entropy(self.forward(inputs), labels), None
