"""The critic's hand-written MSE backward equals autograd's, and is used only where it applies."""

import pytest
import torch

from natpg.critic_fit import mlp_layers, mse_backward
from natpg.policies import Critic


def _autograd(critic, x, target):
    critic.zero_grad(set_to_none=True)
    loss = torch.mean((critic(x) - target) ** 2)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in critic.parameters()]


@pytest.mark.parametrize("activation,hidden,batch", [("tanh", (64, 64), 1000), ("relu", (32,), 257), ("tanh", (8, 16, 4), 3)])
def test_mse_backward_matches_autograd(activation, hidden, batch):
    torch.manual_seed(0)
    critic = Critic(11, hidden, activation)
    x, target = torch.randn(batch, 11), torch.randn(batch) * 5
    layers = mlp_layers(critic)
    assert layers is not None
    loss, grads = _autograd(critic, x, target)
    critic.zero_grad(set_to_none=True)
    loss2 = mse_backward(layers, x, target)
    assert not loss2.requires_grad
    torch.testing.assert_close(loss2, loss, rtol=1e-6, atol=0)
    for p, g in zip(critic.parameters(), grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)
    # And through 20 fused-Adam steps the two stay together (bit-for-bit here; 1e-5 allowed).
    a, b = Critic(11, hidden, activation), Critic(11, hidden, activation)
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = (torch.optim.Adam(m.parameters(), lr=1e-2) for m in (a, b))
    layers_b = mlp_layers(b)
    for _ in range(20):
        _autograd(a, x, target)
        opt_a.step()
        mse_backward(layers_b, x, target)
        opt_b.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=1e-5, atol=1e-6)


def test_other_structures_fall_back_to_autograd():
    assert mlp_layers(Critic(3, (4,), "elu")) is None  # no hand-written ELU backward
    hooked = Critic(3, (4,), "tanh")
    hooked.net[0].register_forward_hook(lambda *args: None)
    assert mlp_layers(hooked) is None

    class Custom(Critic):
        def forward(self, obs):
            return super().forward(obs) * 2

    assert mlp_layers(Custom(3, (4,), "tanh")) is None
    assert mlp_layers(torch.nn.Linear(3, 1)) is None
