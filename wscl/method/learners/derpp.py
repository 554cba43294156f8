"""DER++ [code]: replay of stored logits and labels, as in Mammoth (`models/derpp.py`)."""
from __future__ import annotations

import torch.nn.functional as F

from wscl.method.learners import Learner

# Read by wscl/settings without importing this file: a literal. `order`: its place in the lists of methods;
# `hparams`: the constructor's keyword arguments, set as training.derpp.<name>.
DECLARATION = {
    "about": "DER++, replay of stored logits (MSE) and labels (cross-entropy)",
    "order": 3,
    "hparams": {
        "alpha": {"default": 0.1, "range": [0.0, 100.0], "about": "[code] weight of the MSE on stored logits"},
        "beta": {"default": 0.5, "range": [0.0, 100.0], "about": "[code] weight of the cross-entropy on stored labels"},
    },
}


class DERPP(Learner):
    """DER++: cross-entropy + alpha * MSE on stored logits + beta * cross-entropy on stored labels."""
    method = "derpp"
    replay_draws = 2
    stores_logits = True

    def __init__(self, *args, alpha: float, beta: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha, self.beta = alpha, beta

    def loss(self, inputs, labels, replays):
        outputs = self.forward(inputs)
        loss = F.cross_entropy(outputs, labels)
        if replays:
            buf_x, _, buf_logits = replays[0]
            loss = loss + self.alpha * F.mse_loss(self.forward(buf_x).float(), buf_logits)
            buf_x, buf_y, _ = replays[1]
            loss = loss + self.beta * F.cross_entropy(self.forward(buf_x), buf_y)
        return loss, outputs
