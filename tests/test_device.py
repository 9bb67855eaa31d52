"""``device``: the update (scores, solves, critic fit) on a GPU, the rollout on the CPU.

This machine's tests run on the CPU: the setting's validation and refusals, its record and
resume, the CPU copy the rollout acts through, and a check that the update code creates its
tensors on its inputs' device. The test that trains on a GPU runs only where torch sees one.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import natpg
from conftest import MinAtarStandIn
from natpg import methods
from natpg.acting import NumpyPolicy, TorchPolicy, rollout_policy
from natpg.cli import main
from natpg.policies import Agent
from test_resume import assert_same_run

NATPG = Path(natpg.__file__).parent
SMALL = dict(rollout_steps=200, hidden=(8,), critic_steps=2, anneal_lr=False)


def test_explicit_cpu_is_the_default_to_the_bit(tmp_path):
    default = natpg.train("CartPole-v1", "kfac", 400, seed=3, out=tmp_path / "default", **SMALL)
    explicit = natpg.train("CartPole-v1", "kfac", 400, seed=3, out=tmp_path / "cpu", device="cpu", **SMALL)
    assert_same_run(tmp_path / "default", tmp_path / "cpu")
    assert json.loads((tmp_path / "cpu" / "config.json").read_text())["device"] == "cpu"
    assert default.config.device == explicit.config.device == "cpu"


def test_cuda_is_refused_in_one_line_where_torch_sees_no_gpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    expected = f"no CUDA device is visible to torch (torch {torch.__version__})"
    for device in ("cuda", "cuda:1"):
        with pytest.raises(ValueError) as info:
            natpg.train("CartPole-v1", "smac", 400, device=device, out=tmp_path / "py", **SMALL)
        assert str(info.value) == f"device={device!r}: {expected}; use device='cpu'"
    assert not (tmp_path / "py").exists()
    assert main(["train", "--no-progress", "--env", "CartPole-v1", "--steps", "400", "--device", "cuda",
                 "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--device cuda: {expected}; use --device cpu" in err, err
    assert not (tmp_path / "cli").exists()


@pytest.mark.parametrize("device", ["gpu", "CUDA", "cuda:", "cuda:x", "cuda0", "mps", " cpu"])
def test_a_device_that_is_not_cpu_cuda_or_cuda_n_is_refused(device, wording):
    with pytest.raises(ValueError, match=r"expected cpu, cuda or cuda:N \(N: a GPU index\)") as info:
        natpg.train("CartPole-v1", "smac", 400, device=device, **SMALL)
    message = str(info.value)
    assert "\n" not in message and "device" in message


def test_a_gpu_index_torch_does_not_see_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"^device='cuda:2': torch sees 2 CUDA device\(s\), cuda:0 to cuda:1$"):
        natpg.train("CartPole-v1", "smac", 400, device="cuda:2", **SMALL)


def test_a_run_may_continue_on_another_device(tmp_path):
    """A GPU run's checkpoint holds CPU tensors: it resumes on the CPU, and continues as the
    CPU run would have (here the "GPU run" is a CPU run whose checkpoint says cuda)."""
    natpg.train("CartPole-v1", "kfac", 800, seed=5, out=tmp_path / "ref", **SMALL)
    natpg.train("CartPole-v1", "kfac", 400, seed=5, out=tmp_path / "run", **SMALL)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    checkpoint["config"]["device"] = "cuda"
    torch.save(checkpoint, tmp_path / "run" / "checkpoint.pt")
    natpg.train("CartPole-v1", "kfac", 800, seed=5, out=tmp_path / "run", resume=True, device="cpu", **SMALL)
    assert_same_run(tmp_path / "ref", tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["device"] == "cpu"


@pytest.mark.parametrize("image", [False, True], ids=["mlp", "image"])
def test_an_agent_off_the_cpu_acts_through_a_refreshed_cpu_copy(image, monkeypatch):
    """Where the agent's weights are not on the CPU, the rollout acts on a CPU copy: a plain
    attribute (not in the agent's state_dict), made once, refreshed from the agent each time."""
    import gymnasium as gym

    space = MinAtarStandIn.observation_space if image else gym.spaces.Box(-1, 1, (4,))
    agent = Agent(int(np.prod(space.shape)), gym.spaces.Discrete(3), (8,), "tanh", normalize_obs=not image,
                  observation_space=space)
    keys = set(agent.state_dict())
    assert agent.for_acting() is agent  # on the CPU: no copy
    monkeypatch.setattr(Agent, "device", property(lambda self: torch.device("cuda")))  # as if on a GPU
    first = agent.for_acting()
    assert first is not agent and set(agent.state_dict()) == keys
    with torch.no_grad():
        for p in agent.parameters():
            p.add_(1.0)
    agent.obs_norm.update(np.ones((5, *space.shape), np.float32))
    policy = rollout_policy(agent, gym.spaces.Discrete(3))
    again = agent.for_acting()
    assert again is first
    for name, value in agent.state_dict().items():
        assert torch.equal(again.state_dict()[name], value), name
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(agent.parameters(), again.parameters()))
    assert isinstance(policy, TorchPolicy if image else NumpyPolicy)
    if image:
        assert policy.agent is again


#: Tensor factories that place their result on the CPU unless told otherwise.
_FACTORIES = {"zeros", "ones", "eye", "full", "empty", "tensor", "as_tensor", "arange", "linspace", "rand", "randn",
              "randint", "scalar_tensor"}
_UPDATE_MODULES = [*sorted((NATPG / "methods").glob("*.py")), NATPG / "scores.py", NATPG / "fisher.py",
                   NATPG / "linalg.py", NATPG / "critic_fit.py"]


def test_the_update_code_creates_its_tensors_on_its_inputs_device():
    """No GPU here to catch a tensor created on the CPU inside an update: every tensor factory
    in the update code names its ``device`` (or says why it stays on the CPU)."""
    unplaced = []
    for path in _UPDATE_MODULES:
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _FACTORIES
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                continue
            if any(k.arg == "device" for k in node.keywords) or "# on the CPU" in lines[node.lineno - 1]:
                continue
            unplaced.append(f"{path.relative_to(NATPG)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not unplaced, "tensors created without device=:\n" + "\n".join(unplaced)


# -- on a GPU ----------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")


def _devices(obj) -> set[str]:
    if isinstance(obj, torch.Tensor):
        return {obj.device.type}
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return set().union(*(_devices(v) for v in obj))
    return set()


def _assert_trained_on_cuda(result):
    assert result.summary["status"] == "completed" and len(result.metrics) == 2
    params = list(result.agent.parameters())
    assert all(p.device.type == "cuda" for p in params)
    assert all(bool(torch.isfinite(p).all()) for p in params)


@cuda
@pytest.mark.parametrize("method", methods.available())
def test_every_rule_trains_on_cuda(method, tmp_path):
    result = natpg.train("CartPole-v1", method, 400, seed=0, device="cuda", out=tmp_path / "run", **SMALL)
    _assert_trained_on_cuda(result)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert _devices(checkpoint) == {"cpu"} and "cuda_rng" in checkpoint  # kfac samples on the GPU: its RNG is saved
    obs = np.zeros((3, 4), np.float32)
    assert natpg.load(tmp_path / "run").predict(obs).shape == (3,)  # on the CPU
    np.testing.assert_array_equal(result.policy.predict(obs), natpg.load(tmp_path / "run").predict(obs))
    # and it continues on the CPU
    again = natpg.train("CartPole-v1", method, 600, seed=0, device="cpu", out=tmp_path / "run", resume=True, **SMALL)
    assert again.summary["steps"] == 600 and all(p.device.type == "cpu" for p in again.agent.parameters())


@cuda
@pytest.mark.parametrize("method", methods.available())
def test_every_rule_trains_an_image_actor_on_cuda(method, tmp_path):
    result = natpg.train(MinAtarStandIn, method, 400, seed=0, device="cuda", **SMALL)
    _assert_trained_on_cuda(result)
    frames = np.zeros((2, 10, 10, 4), np.bool_)
    assert result.policy.predict(frames).shape == (2,)
