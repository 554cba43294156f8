"""ER-ACE [code]: asymmetric cross-entropy, as in Mammoth (`models/er_ace.py`); the default method."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from wscl.method.learners import Learner

# Read by wscl/settings without importing this file: a literal. `order`: its place in the lists of methods.
DECLARATION = {
    "about": "ER-ACE, asymmetric cross-entropy (the default method)",
    "order": 2,
}


def ace_mask(labels: torch.Tensor, seen_heads: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Heads whose logits stay unmasked in ER-ACE's incoming-batch loss [code]: the heads present in
    the batch, plus every head from the highest seen so far upward unless that is the last head."""
    present = torch.zeros(n_heads, dtype=torch.bool, device=labels.device)
    present[labels] = True
    seen = seen_heads | present
    heads = torch.arange(n_heads, device=labels.device)
    highest = torch.where(seen, heads, torch.zeros_like(heads)).max()
    upward = (heads >= highest) & (highest < n_heads - 1)
    return present | upward


class ERACE(Learner):
    """ER-ACE: asymmetric cross-entropy; absent heads masked on the incoming batch for t > 0."""
    method = "er_ace"
    replays_from_first_task = False

    def loss(self, inputs, labels, replays):
        logits = self.forward(inputs)
        if self.task > 0:
            keep = ace_mask(labels, self.seen_heads, self.n_heads)
            logits = logits.masked_fill(~keep, torch.finfo(logits.dtype).min)
        loss = F.cross_entropy(logits, labels)
        if replays:
            buf_x, buf_y, _ = replays[0]
            loss = loss + F.cross_entropy(self.forward(buf_x), buf_y)
        return loss, None
