"""Capturing and restoring the state of environments, for an exact resume.

A checkpoint holds :func:`capture` of the :class:`~natpg.vector_env.VectorEnv`: the observations
to act on next, the running episode statistics and, per env copy, what it takes to continue
it exactly (:func:`capture_env_state`). :func:`restore` puts that back; a copy whose state
could not be captured (or restored) starts a fresh episode instead, seeded so that reruns
agree, and the returned text says which.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from natpg.vector_env import VectorEnv

__all__ = ["capture", "restore", "capture_env_state", "restore_env_state"]


def _is_mujoco(env: gym.Env) -> bool:
    data = getattr(env, "data", None)
    return data is not None and type(data).__module__.startswith("mujoco") and hasattr(env, "model")


def _simple_wrapper_state(env: gym.Env) -> list[dict[str, Any]]:
    """Plain values (step counters, flags) of every wrapper around the base env, outermost first."""
    out = []
    while isinstance(env, gym.Wrapper):
        out.append({k: v for k, v in vars(env).items() if k != "env" and isinstance(v, (bool, int, float, str, type(None)))})
        env = env.env
    return out


def _set_simple_wrapper_state(env: gym.Env, states: list[dict[str, Any]]) -> None:
    for values in states:
        if not isinstance(env, gym.Wrapper):
            raise ValueError("wrapper stack differs")
        for k, v in values.items():
            setattr(env, k, v)
        env = env.env


def capture_env_state(env: gym.Env) -> dict[str, Any]:
    """What it takes to continue ``env`` exactly, or why that is not possible.

    * MuJoCo: the whole ``MjData`` (qpos, qvel, time, warm start and the derived quantities
      some envs read before stepping), the env's RNG and the wrappers' counters (TimeLimit).
    * Anything else that pickles faithfully (classic control, plain Python envs): the pickled
      env with its wrappers and RNG.
    * EzPickle envs that are not MuJoCo (Box2D, ...) pickle by re-construction, which loses
      the state, and unpicklable envs: ``kind="none"`` with the reason.
    """
    base = env.unwrapped
    if _is_mujoco(base):
        return {
            "kind": "mujoco",
            "data": pickle.dumps(base.data),
            "np_random": base.np_random.bit_generator.state,
            "wrappers": _simple_wrapper_state(env),
        }
    if isinstance(base, gym.utils.EzPickle):
        return {"kind": "none", "why": f"{type(base).__name__} pickles by re-construction, which loses its state"}
    try:
        return {"kind": "pickle", "data": pickle.dumps(env)}
    except Exception as exc:  # noqa: BLE001 - any pickling failure means "cannot capture"
        return {"kind": "none", "why": f"{type(base).__name__} cannot be pickled ({type(exc).__name__}: {exc})"}


def restore_env_state(env: gym.Env, saved: dict[str, Any]) -> tuple[gym.Env, str | None]:
    """Put :func:`capture_env_state`'s ``saved`` back: returns the env to step from now on
    (a pickled env replaces ``env``, which is then closed) and None, or ``env`` unchanged and
    why it could not be restored."""
    kind = saved["kind"]
    try:
        if kind == "pickle":
            restored = pickle.loads(saved["data"])
            env.close()
            return restored, None
        if kind == "mujoco":
            base = env.unwrapped
            if not _is_mujoco(base):
                return env, "the saved MuJoCo state does not fit this env"
            base.data = pickle.loads(saved["data"])
            renderer = getattr(base, "mujoco_renderer", None)
            if renderer is not None and hasattr(renderer, "data"):
                renderer.data = base.data
            base.np_random.bit_generator.state = saved["np_random"]
            _set_simple_wrapper_state(env, saved["wrappers"])
            return env, None
    except Exception as exc:  # noqa: BLE001 - fall back to a fresh episode, and say why
        return env, f"restoring failed ({type(exc).__name__}: {exc})"
    return env, saved.get("why", f"unknown state kind {kind!r}")


def capture(vec: VectorEnv) -> dict[str, Any]:
    """Everything needed to continue stepping ``vec`` exactly from here."""
    return {
        "env_id": vec.env_id,
        "obs": vec.obs.copy(),
        "episode_returns": list(vec.episode_returns),
        "episode_lengths": list(vec.episode_lengths),
        "nonfinite_transitions": vec.nonfinite_transitions,
        "envs": [capture_env_state(e) for e in vec.envs],
    }


def restore(vec: VectorEnv, state: dict[str, Any], salt: int = 0) -> str:
    """Put :func:`capture`'s ``state`` back into ``vec``; returns how (exactly, or which
    episodes restarted). A copy that cannot be restored starts a fresh episode seeded from
    (seed, ``salt``, copy): pass the step count, so that reruns agree."""
    vec.nonfinite_transitions = state["nonfinite_transitions"]
    vec.obs[:] = state["obs"]
    vec.episode_returns = list(state["episode_returns"])
    vec.episode_lengths = list(state["episode_lengths"])
    restarted: list[str] = []
    for i, saved in enumerate(state["envs"]):
        vec.envs[i], why = restore_env_state(vec.envs[i], saved)
        if why is not None:
            seed = int(np.random.SeedSequence([vec.seed, salt, i]).generate_state(1)[0])
            vec.obs[i] = vec.reset_copy(i, seed=seed)
            vec.episode_returns[i], vec.episode_lengths[i] = 0.0, 0
            restarted.append(f"copy {i}: {why}")
    if not restarted:
        return "state restored exactly"
    return (
        f"state could not be restored, so the {len(restarted)} episode(s) in progress were restarted "
        f"({'; '.join(restarted)})"
    )
