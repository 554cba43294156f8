import torch
import torch.nn as nn

from wscl.method.plasticity import Importance, apply_plasticity, plastic_parameters


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))


def test_exactly_the_configured_fractions_are_scaled():
    model = net()
    imp = Importance(model)
    before = {n: p.detach().clone() for n, p in plastic_parameters(model).items()}
    for score in imp.scores.values():
        score.copy_(torch.arange(score.numel(), dtype=torch.float32).view_as(score))  # importance = position
    apply_plasticity(imp, strengthen_frac=0.25, strengthen=0.5, weaken_frac=0.1, weaken=0.2)
    for name, p in plastic_parameters(model).items():
        old, new = before[name].flatten(), p.detach().flatten()
        n = old.numel()
        n_up, n_down = int(0.25 * n), int(0.1 * n)
        assert torch.allclose(new[n - n_up:], old[n - n_up:] * 1.5)
        assert torch.allclose(new[:n_down], old[:n_down] * 0.8)
        assert torch.equal(new[n_down: n - n_up], old[n_down: n - n_up])


def test_frozen_weights_biases_and_norm_layers_are_untouched():
    model = net()
    model[0].weight.requires_grad_(False)
    frozen, bias, bn = model[0].weight.clone(), model[3].bias.clone(), model[1].weight.clone()
    imp = Importance(model)
    assert set(imp.params) == {"3.weight"}
    x = torch.randn(8, 1, 6, 6)
    model(x).sum().backward()
    imp.accumulate()
    apply_plasticity(imp, 0.3, 1.0, 0.3, 1.0)
    assert torch.equal(model[0].weight, frozen)
    assert torch.equal(model[3].bias, bias)
    assert torch.equal(model[1].weight, bn)
    n = model[3].weight.numel()
    assert int((model[3].weight == 0).sum()) == int(0.3 * n)  # weaken=1.0 prunes the bottom fraction


def test_importance_is_accumulated_abs_weight_times_gradient():
    model = net()
    imp = Importance(model)
    x = torch.randn(4, 1, 6, 6)
    for _ in range(2):
        model.zero_grad()
        model(x).pow(2).sum().backward()
        imp.accumulate()
    expected = 2 * (model[3].weight * model[3].weight.grad).abs()
    assert torch.allclose(imp.scores["3.weight"], expected)


def test_channels_last_weights_are_scaled_exactly_as_contiguous_ones():
    """A channels_last conv weight cannot be flattened by a view; the rule must scale the parameter itself."""
    results = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 2 * 2, 5))
        torch.manual_seed(0)
        for p in model.parameters():
            nn.init.normal_(p)
        model = model.to(memory_format=fmt)
        imp = Importance(model)
        torch.manual_seed(1)
        for score in imp.scores.values():
            score.copy_(torch.rand(score.shape))
        before = model[0].weight.detach().clone()
        apply_plasticity(imp, strengthen_frac=0.25, strengthen=0.5, weaken_frac=0.25, weaken=0.5)
        assert not torch.equal(model[0].weight.detach(), before)  # the parameter itself changed
        results.append({n: p.detach().contiguous() for n, p in plastic_parameters(model).items()})
    assert all(torch.equal(results[0][n], results[1][n]) for n in results[0])
