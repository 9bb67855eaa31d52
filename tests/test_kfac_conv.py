"""Conv2d layers on the unfold path (issue 15): per-sample scores against a per-sample loop,
K-FAC's Kronecker factors (KFC) against a per-sample, per-position loop, its step against a
dense solve of the Kronecker system, ``conv_factors="diagonal"`` as the diagonal fallback, and
a 1×1 convolution on a 1×1 image as a Linear layer. All in float64."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical

from natpg import methods
from natpg.methods.base import PolicyBatch
from natpg.scores import compute_scores, flatten
from tests.conftest import assert_scores_match_dense, dense_scores

CONVS = {  # name: (in_channels, out_channels, Conv2d keyword arguments)
    "plain": (2, 3, dict(kernel_size=3)),
    "stride-dilation-padding": (2, 3, dict(kernel_size=(3, 2), stride=(2, 1), padding=1, dilation=(1, 2))),
    "same-even-kernel": (2, 2, dict(kernel_size=(2, 4), padding="same")),
    "valid-no-bias": (2, 3, dict(kernel_size=2, padding="valid", bias=False)),
    "reflect": (2, 2, dict(kernel_size=3, padding=1, padding_mode="reflect")),
    "circular-stride": (2, 2, dict(kernel_size=3, stride=2, padding=(1, 2), padding_mode="circular")),
}
OBS_SHAPE = (2, 7, 6)


class TwoConvActor(nn.Module):
    """conv (as given) → tanh → 3×3 conv, padding 1, 2 channels → tanh → Linear, categorical."""

    def __init__(self, c_in: int, c_out: int, kwargs: dict, n_actions: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, **kwargs)
        self.conv2 = nn.Conv2d(c_out, 2, 3, padding=1)
        with torch.no_grad():
            flat = self.conv2(self.conv(torch.zeros(1, *OBS_SHAPE))).numel()
        self.head = nn.Linear(flat, n_actions)

    def distribution(self, obs):
        h = torch.tanh(self.conv2(torch.tanh(self.conv(obs))))
        return Categorical(logits=self.head(h.flatten(1)))


def _actor(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    actor = TwoConvActor(*CONVS[name]).double()
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return actor


def _batch(actor, n: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, *OBS_SHAPE, generator=g, dtype=torch.float64)
    with torch.no_grad():
        actions = actor.distribution(obs).sample()
    return obs, actions, torch.randn(n, generator=g, dtype=torch.float64)


def _conv_layers(actor):
    return [(name, m) for name, m in actor.named_modules() if isinstance(m, nn.Conv2d)]


def _patches_by_loop(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The (L, C_in·kh·kw) input patches of one sample x (C_in, H, W), position by position."""
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    if conv.padding == "same":
        th, tw = dh * (kh - 1), dw * (kw - 1)
        pad = (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    elif conv.padding == "valid":
        pad = (0, 0, 0, 0)
    else:
        pad = (conv.padding[1], conv.padding[1], conv.padding[0], conv.padding[0])
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    xp = F.pad(x[None], pad, mode=mode)[0]
    rows = []
    for r in range(0, xp.shape[1] - dh * (kh - 1), sh):
        for c in range(0, xp.shape[2] - dw * (kw - 1), sw):
            rows.append(xp[:, r : r + dh * (kh - 1) + 1 : dh, c : c + dw * (kw - 1) + 1 : dw].reshape(-1))
    return torch.stack(rows)


def _layer_data_by_loop(actor, obs, actions):
    """Per conv layer, per sample: its input patches (L, k) by the loop above and its output
    gradients (L, C_out) by one autograd call for that sample alone."""
    layers = _conv_layers(actor)
    data = {name: ([], []) for name, _ in layers}
    for i in range(obs.shape[0]):
        seen = {}
        handles = [m.register_forward_hook(lambda m, inp, out, name=name: seen.__setitem__(name, (inp[0], out)))
                   for name, m in layers]
        logp = actor.distribution(obs[i : i + 1]).log_prob(actions[i : i + 1]).sum()
        for h in handles:
            h.remove()
        grads = torch.autograd.grad(logp, [seen[name][1] for name, _ in layers])
        for (name, conv), g in zip(layers, grads):
            data[name][0].append(_patches_by_loop(conv, seen[name][0][0].detach()))
            data[name][1].append(g[0].reshape(g.shape[1], -1).T)
    return {name: (torch.stack(a), torch.stack(d)) for name, (a, d) in data.items()}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("name", sorted(CONVS))
def test_unfolded_conv_scores_match_a_per_sample_loop(name):
    actor = _actor(name)
    obs, actions, adv = _batch(actor)
    S = dense_scores(actor, obs, actions)
    scores, _, _ = compute_scores(actor, obs, actions, path="factorised", unfold_conv=True)
    assert [b.kind for b in scores.blocks] == ["conv", "conv", "linear"]
    assert_scores_match_dense(scores, S, adv)
    # The patches are the loop's (the factorised path's own inputs, not only their products).
    by_loop = _layer_data_by_loop(actor, obs, actions)
    for block in scores.blocks[:2]:
        torch.testing.assert_close(block.a, by_loop[block.name][0], rtol=0, atol=0)
        torch.testing.assert_close(block.delta, by_loop[block.name][1], rtol=1e-10, atol=1e-12)


def test_grouped_or_subclassed_convs_take_the_general_path():
    class Standardised(nn.Conv2d):  # transforms its weight in forward: not conv2d(x, W, b)
        def forward(self, x):
            w = self.weight - self.weight.mean()
            return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)

    actor = _actor("plain")
    actor.conv2 = nn.Conv2d(3, 2, 3, padding=1, groups=1).double()
    actor.conv = Standardised(2, 3, 3).double()
    grouped = _actor("plain")
    grouped.conv2 = nn.Conv2d(3, 3, 3, padding=1, groups=3).double()
    grouped.head = nn.Linear(3 * 5 * 4, 3).double()
    for net, general in ((actor, {"conv.weight", "conv.bias"}), (grouped, {"conv2.weight", "conv2.bias"})):
        obs, actions, _ = _batch(net)
        scores, _, _ = compute_scores(net, obs, actions, unfold_conv=True)
        assert {b.name for b in scores.blocks if b.kind == "general"} == general
        torch.testing.assert_close(scores.matrix(), dense_scores(net, obs, actions), rtol=1e-10, atol=1e-12)
    rule = methods.make("kfac", grouped)
    rule.update(PolicyBatch(*_batch(grouped)))
    assert set(rule.factors["conv2.weight"]) == {"D"} and set(rule.factors["conv"]) == {"A", "G"}


def _expected_factors(actor, obs, sampled):
    """KFC with |T| on the output side: A = Σ_i Σ_t ā ā ᵀ / (B·|T|), G = Σ_i Σ_t δ δᵀ / B,
    from the loop's patches and per-sample output gradients; the head as a Linear layer."""
    n = obs.shape[0]
    out = {}
    for name, (a, d) in _layer_data_by_loop(actor, obs, sampled).items():
        positions = a.shape[1]
        abar = torch.cat([a, torch.ones(n, positions, 1, dtype=a.dtype)], 2).reshape(n * positions, -1)
        d = d.reshape(n * positions, -1)
        out[name] = {"A": abar.T @ abar / (n * positions), "G": d.T @ d / n}
    S = dense_scores(actor, obs, sampled)
    head = actor.head
    cols = sum(p.numel() for p in actor.parameters()) - head.bias.numel()
    delta = S[:, cols:]  # the head's bias gradient is its output gradient
    h = torch.tanh(actor.conv2(torch.tanh(actor.conv(obs)))).flatten(1).detach()
    hbar = torch.cat([h, torch.ones(n, 1, dtype=h.dtype)], 1)
    out["head"] = {"A": hbar.T @ hbar / n, "G": delta.T @ delta / n}
    return out


def _kfac_step(actor, batch, seed: int, **hp):
    rule = methods.make("kfac", actor, momentum=0.0, **hp)
    before = flatten([p.detach() for p in actor.parameters()]).clone()
    torch.manual_seed(seed)
    info = rule.update(batch, diagnostics=False)
    return rule, info, flatten([p.detach() for p in actor.parameters()]) - before


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("name", ["plain", "stride-dilation-padding", "same-even-kernel"])
def test_conv_factors_match_a_per_sample_per_position_loop(name):
    actor, twin = _actor(name), _actor(name)
    obs, actions, adv = _batch(actor, n=7)
    rule, _, _ = _kfac_step(actor, PolicyBatch(obs, actions, adv), seed=11)
    torch.manual_seed(11)  # the rule's first random draw is the sampled actions
    with torch.no_grad():
        sampled = twin.distribution(obs).sample()
    expected = _expected_factors(twin, obs, sampled)
    assert set(rule.factors) == set(expected) == {"conv", "conv2", "head"}
    for layer, stats in expected.items():
        for key, value in stats.items():
            torch.testing.assert_close(rule.factors[layer][key], value, rtol=1e-10, atol=1e-12)


def test_diagonal_conv_factors_give_the_conv_layers_the_diagonal_block(monkeypatch):
    """``conv_factors="diagonal"``: the conv layers' Fisher blocks are the running mean of their
    squared per-sample scores of sampled actions (the head keeps its Kronecker factors), and
    the step is the one the rule takes with its Fisher pass forced onto the general path, as
    benchmarks/kfac_conv.py did (the diagonal fallback)."""
    import natpg.methods.kfac as kfac_module

    actor, twin, forced = _actor("plain"), _actor("plain"), _actor("plain")
    batch = PolicyBatch(*_batch(actor, n=7))
    rule, info, step = _kfac_step(actor, batch, seed=4, conv_factors="diagonal", kl_clip=1e-4)
    assert info["kfac_clip_scale"] < 1.0 and info["kfac_failures"] == 0.0
    assert set(rule.factors) == {"conv.weight", "conv.bias", "conv2.weight", "conv2.bias", "head"}
    assert set(rule.factors["head"]) == {"A", "G"}
    torch.manual_seed(4)
    with torch.no_grad():
        sampled = twin.distribution(batch.obs).sample()
    S, o = dense_scores(twin, batch.obs, sampled), 0
    for name, p in twin.named_parameters():
        if name.startswith("conv"):
            torch.testing.assert_close(rule.factors[name]["D"], (S[:, o : o + p.numel()] ** 2).mean(0), rtol=1e-10, atol=1e-14)
        o += p.numel()

    general = kfac_module.compute_scores

    def fallback(*args, **kwargs):
        return general(*args, **{**kwargs, "unfold_conv": False})

    monkeypatch.setattr(kfac_module, "compute_scores", fallback)
    old, _, old_step = _kfac_step(forced, batch, seed=4, kl_clip=1e-4)
    assert old.hp.conv_factors == "kronecker"
    torch.testing.assert_close(step, old_step, rtol=0, atol=0)
    for name, stats in old.factors.items():
        for key, value in stats.items():
            torch.testing.assert_close(rule.factors[name][key], value, rtol=0, atol=0)


def test_conv_factors_is_a_checked_hyperparameter_and_a_cli_flag():
    from natpg.cli import build_parser
    from natpg.config import resolve_config

    assert methods.make("kfac", _actor("plain")).hp.conv_factors == "kronecker"
    with pytest.raises(ValueError, match=r"conv_factors must be one of kronecker, diagonal, got 'full'"):
        methods.make("kfac", _actor("plain"), conv_factors="full")
    args = vars(build_parser().parse_args(["train", "--method", "kfac", "--conv-factors", "diagonal"]))
    config = resolve_config("CartPole-v1", "kfac", None, conv_factors=args["conv_factors"])
    assert config.method_kwargs["conv_factors"] == "diagonal"


@pytest.mark.parametrize("kl_clip", [1e3, 1e-5])  # unclipped, clipped
def test_conv_step_is_the_dense_solve_of_the_kronecker_system(kl_clip):
    """Per layer vec(ΔW̄) = (G ⊗ A + λI)⁻¹ vec(∇W̄) (row-major vec, so G ⊗ A is A ⊗ G of the
    docstring's column-major one), by a dense float64 solve, then ACKTR's KL clip."""
    actor, twin = _actor("stride-dilation-padding"), _actor("stride-dilation-padding")
    obs, actions, adv = _batch(actor, n=7)
    lr, damping = 0.4, 0.03
    rule, info, step = _kfac_step(actor, PolicyBatch(obs, actions, adv), seed=5, lr=lr, kl_clip=kl_clip, damping=damping)
    torch.manual_seed(5)
    with torch.no_grad():
        sampled = twin.distribution(obs).sample()
    factors = _expected_factors(twin, obs, sampled)
    grad = dense_scores(twin, obs, actions).T @ adv / len(adv)
    natural, o = torch.empty_like(grad), 0
    for layer in ("conv", "conv2", "head"):
        module = getattr(twin, layer)
        w, b = module.weight, module.bias
        gbar = torch.cat([grad[o : o + w.numel()].view(w.shape[0], -1), grad[o + w.numel() : o + w.numel() + b.numel(), None]], 1)
        A, G = factors[layer]["A"], factors[layer]["G"]
        K = torch.kron(G, A) + damping * torch.eye(G.shape[0] * A.shape[0], dtype=torch.float64)
        sol = torch.linalg.solve(K, gbar.reshape(-1)).view_as(gbar)
        natural[o : o + w.numel()] = sol[:, :-1].reshape(-1)
        natural[o + w.numel() : o + w.numel() + b.numel()] = sol[:, -1]
        o += w.numel() + b.numel()
    assert o == grad.numel()
    scale = min(1.0, math.sqrt(kl_clip / (lr**2 * float(natural @ grad))))
    assert (scale < 1.0) == (kl_clip < 1.0)
    assert info["kfac_clip_scale"] == pytest.approx(scale, rel=1e-9)
    torch.testing.assert_close(step, lr * scale * natural, rtol=1e-8, atol=1e-12)
    assert info["kfac_failures"] == 0.0


class PointActor(nn.Module):
    """A layer on a (B, 3) input: ``nn.Linear(3, 4)``, or a 1×1 ``nn.Conv2d(3, 4)`` on the same
    input as a 1×1 image; then tanh and a Linear head."""

    def __init__(self, conv: bool):
        super().__init__()
        self.conv = conv
        self.layer = nn.Conv2d(3, 4, 1) if conv else nn.Linear(3, 4)
        self.head = nn.Linear(4, 3)

    def distribution(self, obs):
        h = self.layer(obs[:, :, None, None]).flatten(1) if self.conv else self.layer(obs)
        return Categorical(logits=self.head(torch.tanh(h)))


def test_a_one_by_one_conv_on_a_one_pixel_image_is_the_linear_case():
    torch.manual_seed(0)
    linear = PointActor(conv=False).double()
    with torch.no_grad():
        for p in linear.parameters():
            p.add_(0.5 * torch.randn_like(p))
    conv = PointActor(conv=True).double()
    with torch.no_grad():
        conv.layer.weight.copy_(linear.layer.weight[:, :, None, None])
        conv.layer.bias.copy_(linear.layer.bias)
        conv.head.load_state_dict(linear.head.state_dict())
    g = torch.Generator().manual_seed(2)
    obs = torch.randn(9, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        actions = linear.distribution(obs).sample()
    adv = torch.randn(9, generator=g, dtype=torch.float64)
    conv_scores, _, _ = compute_scores(conv, obs, actions, path="factorised", unfold_conv=True)
    assert conv_scores.blocks[0].kind == "conv"
    torch.testing.assert_close(conv_scores.matrix(), compute_scores(linear, obs, actions)[0].matrix(), rtol=1e-12, atol=1e-14)
    batch = PolicyBatch(obs, actions, adv)
    rules, steps = [], []
    for actor in (linear, conv):
        rule, info, step = _kfac_step(actor, batch, seed=3, kl_clip=1e-4)
        assert info["kfac_clip_scale"] < 1.0
        rules.append(rule)
        steps.append(step)
    for key in ("A", "G"):
        torch.testing.assert_close(rules[1].factors["layer"][key], rules[0].factors["layer"][key], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(steps[1], steps[0], rtol=1e-10, atol=1e-14)


def test_second_moments_are_accumulated_chunk_by_chunk_in_float64():
    from natpg.methods.kfac import _second_moment

    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    xbar = torch.cat([x, torch.ones(10, 1)], 1).double()
    for chunk in (3, 10, 64):
        torch.testing.assert_close(_second_moment(x, bias=True, chunk=chunk), xbar.T @ xbar, rtol=1e-12, atol=1e-12)
    assert _second_moment(x, chunk=4).dtype == torch.float64
