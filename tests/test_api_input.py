"""The Python API checks its input as carefully as the CLI: batch shapes and dtypes, messages
that name Python arguments (``overwrite=True``, not ``--overwrite``), ``hidden="64,64"``, and
``module:EnvId`` found in the current directory as ``python -m`` would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import natpg
from natpg import methods
from natpg.config import TrainConfig, resolve_config, validate
from natpg.envs import check_env_id
from natpg.methods.base import PolicyBatch
from tests.conftest import tiny_actor, tiny_batch

from natpg.presets import NATPG_RECIPE

T = NATPG_RECIPE["shared"]["rollout_steps"]  # the default recipe's rollout length, named in messages

TINY = dict(rollout_steps=200, critic_steps=1)


# -- PolicyBatch and the update calls: shapes and dtypes -----------------------------------------

def _batch(n: int = 6):
    obs = torch.randn(n, 3, dtype=torch.float64)
    return obs, torch.randint(0, 2, (n,)), torch.randn(n, dtype=torch.float64)


BAD_BATCHES = [
    # (what is wrong, (obs, actions, advantages) from a good batch, the message)
    ("advantages too short", lambda o, a, v: (o, a, v[:-1]),
     "advantages of shape (5,) and dtype float64 do not match obs of 6 rows: expected a floating (6,) tensor"),
    ("advantages (B, 1)", lambda o, a, v: (o, a, v[:, None]),
     "advantages of shape (6, 1) and dtype float64 do not match obs of 6 rows"),
    ("integer advantages", lambda o, a, v: (o, a, v.long()), "advantages of shape (6,) and dtype int64 do not match"),
    ("obs 1-D", lambda o, a, v: (o[:, 0], a, v),
     "obs of shape (6,) and dtype float64: expected a floating (B, obs_dim) tensor, one row per sample"),
    ("integer obs", lambda o, a, v: (o.long(), a, v), "obs of shape (6, 3) and dtype int64: expected a floating"),
    ("numpy obs", lambda o, a, v: (o.numpy(), a, v), "obs of type ndarray: expected a torch.Tensor"),
    ("actions too short", lambda o, a, v: (o, a[:4], v),
     "actions of shape (4,) and dtype int64 do not match obs of 6 rows: expected (6,) integer actions for a discrete"),
    ("actions 3-D", lambda o, a, v: (o, a[:, None, None], v), "actions of shape (6, 1, 1) and dtype int64 do not match"),
]


@pytest.mark.parametrize("wrong,make,says", BAD_BATCHES, ids=[b[0] for b in BAD_BATCHES])
def test_policy_batch_refuses_bad_shapes_and_dtypes(wrong, make, says):
    with pytest.raises(ValueError) as info:
        PolicyBatch(*make(*_batch()))
    assert says in str(info.value), str(info.value)


@pytest.mark.parametrize("method", ["smac", "ac-sgd", "smac-single", "ef-exact"])
def test_discrete_actions_of_shape_b_by_1_are_refused_before_any_change(method):
    """(B, 1) actions broadcast a categorical log-probability into a B×B matrix: refused, naming the shape."""
    actor = tiny_actor("categorical")
    obs, actions, advantages = tiny_batch(actor)
    before = [p.detach().clone() for p in actor.parameters()]
    rule = methods.make(method, actor, lr=0.1, **({"damping": 0.5} if "damping" in methods.get(method).hyperparameters() else {}))
    for diagnostics in (True, False):
        with pytest.raises(ValueError, match=r"actions of shape \(7, 1\) and dtype int64 do not fit this actor: "
                                             r"actor.distribution\(obs\).log_prob\(actions\) must have shape \(7,\), and this "
                                             r"actor takes integer actions of shape \(7,\) \(actions.reshape\(-1\)\)"):
            rule.update(PolicyBatch(obs, actions[:, None], advantages), diagnostics=diagnostics)
    assert all(torch.equal(p, q) for p, q in zip(actor.parameters(), before)), "a refused update changes nothing"
    with pytest.raises(ValueError, match=r"integer actions of shape \(7,\) \(actions.long\(\)\)"):
        rule.update(PolicyBatch(obs, actions.double(), advantages))


def test_continuous_actions_must_be_one_row_per_sample():
    actor = tiny_actor("gaussian", act=1)
    obs, actions, advantages = tiny_batch(actor)
    assert actions.shape == (7, 1)
    rule = methods.make("smac", actor, lr=0.1, damping=0.5)
    # (B,) against a (B, 1) Normal would broadcast to B×B and sum a wrong log-probability
    with pytest.raises(ValueError, match=r"this actor takes floating actions of shape \(7, 1\), one row of 1 per sample"):
        rule.update(PolicyBatch(obs, actions[:, 0], advantages))
    with pytest.raises(ValueError, match=r"actor.distribution\(obs\) fails on obs of shape \(7, 4\)"):
        rule.update(PolicyBatch(torch.randn(7, 4, dtype=torch.float64), actions, advantages))


def test_precondition_grads_checks_its_arguments_too():
    actor = tiny_actor("categorical")
    obs, actions, advantages = tiny_batch(actor)
    rule = methods.make("smac", actor, lr=0.1, damping=0.5)
    with pytest.raises(ValueError, match=r"^advantages of shape \(6,\) and dtype float64 do not match obs of 7 rows"):
        rule.precondition_grads(obs, actions, advantages[:6])
    with pytest.raises(ValueError, match=r"actions of shape \(7, 1\) .* do not fit this actor"):
        rule.precondition_grads(obs, actions[:, None], advantages)
    loss = -(advantages * actor.distribution(obs).log_prob(actions)).mean()
    loss.backward()
    rule.precondition_grads(obs, actions, advantages)  # the right shapes pass
    rule.precondition_grads(obs, actions)  # and advantages stay optional


# -- messages raised from Python name Python arguments -------------------------------------------

def test_python_messages_name_python_arguments(tmp_path):
    with pytest.raises(ValueError, match=rf"^total_steps=10 must be at least rollout_steps={T} \(one update\)$"):
        resolve_config("CartPole-v1", "smac", total_steps=10)
    with pytest.raises(ValueError, match=r"^method='smak': unknown method; did you mean smac\?"):
        natpg.train("CartPole-v1", "smak")
    with pytest.raises(ValueError, match=r"^resume=True and overwrite=True exclude each other$"):
        natpg.train("CartPole-v1", "smac", total_steps=200, out=tmp_path / "a", resume=True, overwrite=True, **TINY)
    with pytest.raises(ValueError, match=r"^resume=True needs a run directory \(out=DIR\)$"):
        natpg.train("CartPole-v1", "smac", total_steps=200, resume=True, **TINY)
    with pytest.raises(ValueError, match=r"^episodes must be an integer >= 1, got 0$"):
        natpg.evaluate(tmp_path / "nowhere", episodes=0)
    natpg.train("CartPole-v1", "smac", total_steps=200, out=tmp_path / "run", hidden=(4,), **TINY)
    with pytest.raises(ValueError) as info:
        natpg.train("CartPole-v1", "smac", total_steps=200, out=tmp_path / "run", hidden=(4,), **TINY)
    assert str(info.value).endswith("pass overwrite=True to replace it, or resume=True to continue it")
    with pytest.raises(ValueError, match=r"cannot resume .* with different settings: seed=1 \(the run has 0\)"):
        natpg.train("CartPole-v1", "smac", total_steps=200, seed=1, out=tmp_path / "run", hidden=(4,), resume=True, **TINY)


def test_the_cli_keeps_its_flags(tmp_path, capsys):
    from natpg.cli import main

    assert main(["train", "--steps", "10", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert capsys.readouterr().err == f"natpg train: error: --steps 10 must be at least --rollout-steps {T} (one update)\n"
    resolve_config("CartPole-v1", "smac")  # and the wording goes back to Python's after a command
    with pytest.raises(ValueError, match="^total_steps=10"):
        resolve_config("CartPole-v1", "smac", total_steps=10)


# -- hidden="64,64" -------------------------------------------------------------------------------

def test_hidden_as_a_string_is_parsed_like_the_flag(tmp_path):
    assert resolve_config("CartPole-v1", "smac", hidden="64,64").hidden == (64, 64)
    assert resolve_config("CartPole-v1", "smac", hidden="32").hidden == (32,)
    result = natpg.train("CartPole-v1", "smac", total_steps=200, out=tmp_path, hidden="8,8", **TINY)
    assert result.config.hidden == (8, 8) and json.loads((tmp_path / "config.json").read_text())["hidden"] == [8, 8]
    assert [tuple(p.shape) for p in result.policy.parameters()][:2] == [(8, 4), (8,)]


@pytest.mark.parametrize("hidden,shown", [("64x64", "'64x64'"), ("64,,64", "'64,,64'"), ("", "''"), ("0,64", "(0, 64)")])
def test_a_bad_hidden_string_names_the_forms_that_work(hidden, shown):
    with pytest.raises(ValueError) as info:
        resolve_config("CartPole-v1", "smac", hidden=hidden)
    assert str(info.value) == (
        f"hidden must be a tuple of positive integers like (64, 64) (natpg.train also takes the string '64,64'), got {shown}"
    )


def test_a_hand_built_config_with_a_string_hidden_is_refused_with_the_form_that_works():
    with pytest.raises(ValueError, match=r"^hidden must be a tuple of positive integers like \(64, 64\)"):
        validate(TrainConfig(hidden="64,64", method_kwargs=resolve_config("CartPole-v1").method_kwargs))


# -- module:EnvId from the current directory ------------------------------------------------------

_MODULE = '''
import gymnasium as gym

gym.register("{env}", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv", max_episode_steps=50)
'''


def _write_module(folder: Path, module: str, env: str) -> None:
    (folder / f"{module}.py").write_text(textwrap.dedent(_MODULE.format(env=env)))


def test_an_env_module_in_the_current_directory_is_found(tmp_path, monkeypatch):
    _write_module(tmp_path, "natpg_test_here_envs", "HereCartPole-v0")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "natpg_test_here_envs", raising=False)
    assert check_env_id("natpg_test_here_envs:HereCartPole-v0") == "HereCartPole-v0"
    assert sys.path[-1] == str(tmp_path), "the folder goes last: it never hides an installed package"


def test_an_env_module_that_is_nowhere_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as info:
        check_env_id("natpg_no_such_module:Env-v0")
    assert str(info.value) == (
        "env_id='natpg_no_such_module:Env-v0': cannot import module 'natpg_no_such_module': no module named "
        f"'natpg_no_such_module' in the current directory ({tmp_path}) nor on sys.path; run natpg from the folder that "
        "holds natpg_no_such_module.py (or natpg_no_such_module/), or add that folder to PYTHONPATH"
    )
    (tmp_path / "natpg_broken_envs.py").write_text("import natpg_missing_dependency\n")
    with pytest.raises(ValueError, match="it needs 'natpg_missing_dependency', which is not installed"):
        check_env_id("natpg_broken_envs:Env-v0")


def test_natpg_train_finds_the_env_module_in_the_folder_it_runs_from(tmp_path):
    """As the ``natpg`` console script runs: a launcher script elsewhere (its folder, not the
    current one, is sys.path[0]) and no PYTHONPATH pointing at the env module."""
    work = tmp_path / "work"
    work.mkdir()
    _write_module(work, "mymodule", "MyEnv-v0")
    launcher = tmp_path / "bin" / "natpg_launcher.py"
    launcher.parent.mkdir()
    launcher.write_text("import sys\nfrom natpg.cli import main\nsys.exit(main())\n")
    package_root = str(Path(natpg.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": package_root}
    command = [sys.executable, str(launcher), "train", "--env", "mymodule:MyEnv-v0", "--method", "ac-sgd", "--steps", "200",
               "--rollout-steps", "200", "--hidden", "4", "--critic-steps", "1", "--out", "run", "--no-progress"]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((work / "run" / "summary.json").read_text())["steps"] == 200
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    failed = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True)
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1, failed.stderr
    assert "--env 'mymodule:MyEnv-v0': cannot import module 'mymodule'" in failed.stderr
    assert f"current directory ({elsewhere})" in failed.stderr and "PYTHONPATH" in failed.stderr
