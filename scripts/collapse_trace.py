"""Trace a tiny synthetic run step by step, to see why it collapses (docs/determinism.md).

    python scripts/collapse_trace.py --method derpp --seed 4 --out docs/figures/derpp_seed4_trace_avx2.json

Per training step: the loss and, for DER++, its three parts (cross-entropy on the batch, alpha's MSE on
stored logits, beta's cross-entropy on stored labels), the mean logit norm, the share of dead pooled units
(zero for the whole batch), the gradient norm. At every task end: the evaluation's predicted heads in eval
mode (BatchNorm running statistics) and with the statistics recomputed on the seen tasks' training images
(weights unchanged), and each BatchNorm layer's distance between running and test-batch statistics. The
run is the learning test's (tests/test_learning.py): the same computation, only observed.
"""
import argparse
import copy
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import tiny_config  # noqa: E402

from wscl.core.provenance import cpu_description  # noqa: E402
from wscl.data import benchmarks  # noqa: E402
from wscl.method import learners  # noqa: E402
from wscl.run.trainer import Process, Run  # noqa: E402

STEPS: list[dict] = []


def traced_derpp_loss(self, inputs, labels, replays):
    """DERPP.loss with the same operations in the same order, recording its parts."""
    features = self.net.features(inputs)
    outputs = self.net.classifier(features)
    ce = F.cross_entropy(outputs, labels)
    row = {"task": self.task, "ce": ce.item(), "logit_norm": float(outputs.detach().norm(dim=1).mean()),
           "dead_units": float((features.detach().amax(0) <= 0).float().mean())}
    loss = ce
    if replays:
        buf_x, _, buf_logits = replays[0]
        mse = F.mse_loss(self.forward(buf_x).float(), buf_logits)
        loss = loss + self.alpha * mse
        buf_x, buf_y, _ = replays[1]
        buffer_ce = F.cross_entropy(self.forward(buf_x), buf_y)
        loss = loss + self.beta * buffer_ce
        row.update(mse=mse.item(), buffer_ce=buffer_ce.item(),
                   stored_logit_norm=float(buf_logits.norm(dim=1).mean()))
    self.traced = row
    return loss, outputs


def traced_observe(observe):
    def wrapper(self, raw, labels, sample_ids, step, generator):
        self.traced = {"task": self.task}
        loss = observe(self, raw, labels, sample_ids, step, generator)
        grads = [p.grad.norm() ** 2 for p in self.net.parameters() if p.grad is not None]
        STEPS.append({**self.traced, "step": step.index, "loss": float(loss),
                      "grad_norm": float(torch.stack(grads).sum().sqrt())})
        return loss
    return wrapper


def batchnorm_mismatch(net, x: torch.Tensor) -> dict:
    """Per BatchNorm layer, on the test batch ``x``: the largest |batch mean - running mean| in batch
    standard deviations, and the range of batch variance / running variance over channels."""
    found, hooks = {}, []
    for name, module in net.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            def hook(mod, inputs, _, name=name):
                a = inputs[0]
                mean, var = a.mean((0, 2, 3)), a.var((0, 2, 3))
                offset = (mean - mod.running_mean).abs() / (var + 1e-5).sqrt()
                ratio = var / (mod.running_var + 1e-5)
                found[name] = {"mean_offset_in_sd": float(offset.max()),
                               "var_ratio": [float(ratio.min()), float(ratio.max())]}
            hooks.append(module.register_forward_hook(hook))
    net.eval()
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return found


def recalibrated(net, run: Run, tasks: int):
    """A copy of ``net`` whose BatchNorm statistics are recomputed (cumulative mean) on the seen tasks'
    training images, without augmentation; the weights are unchanged."""
    copy_ = copy.deepcopy(net)
    for m in copy_.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    rows = np.concatenate([run.scenario.train_idx[j] for j in range(tasks)])
    copy_.train()
    with torch.no_grad():
        for start in range(0, len(rows), 16):
            copy_(run.tests.preprocess(run.train_source.take(rows[start: start + 16]), None, train=False))
    return copy_.eval()


def task_end_report(run: Run, t: int) -> dict:
    net, tests = run.learner.net, run.tests
    x = torch.cat([tests.preprocess(tests.images[j], None, train=False) for j in range(t + 1)])
    net.eval()
    with torch.no_grad():
        heads = np.bincount(net(x).argmax(1).numpy(), minlength=run.scenario.n_heads).tolist()
    fixed = recalibrated(net, run, t + 1)
    return {"task": t, "eval_mode_predicted_heads": heads,
            "accuracy": [tests.evaluate(net, j, run.book.heads_of) for j in range(t + 1)],
            "accuracy_with_recomputed_bn_statistics": [tests.evaluate(fixed, j, run.book.heads_of)
                                                       for j in range(t + 1)],
            "batchnorm_mismatch": batchnorm_mismatch(net, x)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="derpp", choices=list(learners.LEARNERS))
    parser.add_argument("--preset", default="base")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-per-class", type=int, default=150, help="150: the learning test's run")
    parser.add_argument("--crop-padding", type=int, default=None,
                        help="the synthetic images' crop padding instead of the dataset's (4: as before the fix)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.crop_padding is not None:
        generate = benchmarks.synthetic
        benchmarks.synthetic = lambda **kw: dataclasses.replace(generate(**kw), crop_padding=args.crop_padding)
    learners.Learner.observe = traced_observe(learners.Learner.observe)
    if args.method == "derpp":
        learners.LEARNERS["derpp"].loss = traced_derpp_loss
    cfg = tiny_config(preset=args.preset, seed=args.seed, training={"method": args.method})
    cfg = cfg.with_settings({"dataset": {"synthetic": {"train_per_class": args.train_per_class}}}, "--train-per-class")
    ends = []
    with tempfile.TemporaryDirectory() as d:
        run = Run(cfg, d, quiet=True, log=lambda *_: None,
                  process=Process(on_task_end=lambda _m, t: ends.append(task_end_report(run, t))))
        m = run.run()
    out = {"machine": cpu_description(), "torch": torch.__version__, "method": args.method, "preset": args.preset,
           "seed": args.seed, "crop_padding": run.dataset.crop_padding,
           "class_il_final": m["class_il"]["final_avg_acc"], "task_il_final": m["task_il"]["final_avg_acc"],
           "training_failures": m["training_failures"], "task_ends": ends, "steps": STEPS}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for end in ends:
        print(f"after task {end['task']}: eval-mode predicted heads {end['eval_mode_predicted_heads']}")
        print("   Class-IL / Task-IL per task:", [[round(a, 1) for a in acc] for acc in end["accuracy"]])
        print("   same weights, BN statistics recomputed:",
              [[round(a, 1) for a in acc] for acc in end["accuracy_with_recomputed_bn_statistics"]])
        worst = max(end["batchnorm_mismatch"].items(), key=lambda kv: kv[1]["mean_offset_in_sd"])
        print(f"   largest BN mean offset: {worst[0]} {worst[1]['mean_offset_in_sd']:.2f} sd")
    failures = [f"{f['kind']} task {f['task']}" for f in m["training_failures"]]
    print(f"final Class-IL {out['class_il_final']:.2f}, Task-IL {out['task_il_final']:.2f}; failures {failures}; "
          f"{len(STEPS)} steps -> {args.out}")


if __name__ == "__main__":
    main()
