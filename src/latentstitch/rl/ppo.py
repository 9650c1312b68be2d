"""Proximal policy optimisation (Schulman et al. 2017) for the encoder + controller agents.

A single-file PPO in the manner of CleanRL's ``ppo.py``: synchronous vector environments, GAE,
clipped surrogate, value loss, entropy bonus, global gradient clipping, linear learning-rate decay.
Relative agents refresh their EMA anchor embeddings after each optimisation phase, so rollout and
update see the same controller input space.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.distributions import Categorical
from tqdm.auto import tqdm

from latentstitch.rl.agent import Agent

log = logging.getLogger(__name__)


@dataclass
class PPOSettings:
    total_steps: int = 150_000
    num_envs: int = 8
    num_steps: int = 128
    lr: float = 5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    epochs: int = 4
    minibatches: int = 4
    max_grad_norm: float = 0.5

    @classmethod
    def from_settings(cls, settings: dict) -> PPOSettings:
        return cls(**{k: type(getattr(cls, k))(settings[k]) for k in cls.__dataclass_fields__ if k in settings})


def train_ppo(
    agent: Agent,
    make_envs: Callable[[int], object],
    ppo: PPOSettings,
    seed: int,
    label: str = "agent",
    progress: bool = False,
    checkpoint: Path | None = None,
    checkpoint_every: int = 10,
) -> list[dict[str, float]]:
    """Train ``agent`` in place; returns the learning curve, one row per update: environment steps,
    mean return of the episodes that ended in that update, and the seconds so far.

    With ``checkpoint``, the agent, the optimiser, the update count, the curve and torch's RNG are
    saved there every ``checkpoint_every`` updates, and a training that finds the file resumes from
    it (a preempted or requeued job); the episodes in flight when it stopped are lost, the
    environments start afresh from a seed of their own."""
    torch.manual_seed(seed)
    envs = make_envs(ppo.num_envs)
    optimiser = torch.optim.Adam(agent.parameters(), lr=ppo.lr, eps=1e-5)
    batch = ppo.num_envs * ppo.num_steps
    updates = max(1, ppo.total_steps // batch)
    minibatch = batch // ppo.minibatches
    curve: list[dict[str, float]] = []
    first = _resume(checkpoint, agent, optimiser, curve, label, batch)
    obs_np, _ = envs.reset(seed=seed + first)
    obs_buf = torch.zeros((ppo.num_steps, ppo.num_envs, *obs_np.shape[1:]), dtype=torch.uint8)
    actions, logps, values, rewards, dones = (torch.zeros(ppo.num_steps, ppo.num_envs) for _ in range(5))
    running = np.zeros(ppo.num_envs)
    start = time.perf_counter() - (curve[-1]["seconds"] if curve else 0.0)
    bar = tqdm(range(first, updates), desc=f"ppo {label}", disable=not progress, leave=False)
    for update in bar:
        if ppo.anneal_lr:
            optimiser.param_groups[0]["lr"] = ppo.lr * (1.0 - update / updates)
        finished: list[float] = []
        obs = torch.from_numpy(obs_np)
        for t in range(ppo.num_steps):
            with torch.no_grad():
                logits, value = agent(obs)
            dist = Categorical(logits=logits)
            action = dist.sample()
            obs_buf[t], actions[t], logps[t], values[t] = obs, action, dist.log_prob(action), value
            obs_np, reward, terminated, truncated, _ = envs.step(action.numpy())
            done = np.logical_or(terminated, truncated)
            running += reward
            finished += running[done].tolist()
            running[done] = 0.0
            rewards[t], dones[t] = torch.as_tensor(reward, dtype=torch.float32), torch.as_tensor(done, dtype=torch.float32)
            obs = torch.from_numpy(obs_np)
        with torch.no_grad():
            next_value = agent(obs)[1]
        advantages = gae(rewards, values, dones, next_value, ppo.gamma, ppo.gae_lambda)
        returns = advantages + values
        flat = {"obs": obs_buf.reshape(batch, *obs_buf.shape[2:]), "actions": actions.reshape(-1), "logps": logps.reshape(-1),
                "advantages": advantages.reshape(-1), "returns": returns.reshape(-1)}  # fmt: skip
        for _ in range(ppo.epochs):
            order = torch.randperm(batch)
            for i in range(0, batch, minibatch):
                idx = order[i : i + minibatch]
                loss = ppo_loss(agent, {k: v[idx] for k, v in flat.items()}, ppo)
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(agent.parameters(), ppo.max_grad_norm)
                optimiser.step()
        if agent.relative is not None:
            agent.relative.update(agent.encoder)
        steps = (update + 1) * batch
        mean_return = float(np.mean(finished)) if finished else float("nan")
        curve.append({"steps": steps, "return": mean_return, "episodes": len(finished), "seconds": time.perf_counter() - start})
        bar.set_postfix(ret=f"{mean_return:.3f}")
        if checkpoint is not None and (update + 1) % max(1, checkpoint_every) == 0 and update + 1 < updates:
            _save(checkpoint, {"agent": agent.state_dict(), "optimiser": optimiser.state_dict(), "update": update + 1,
                               "curve": curve, "rng": torch.get_rng_state()})  # fmt: skip
        if (update + 1) % max(1, updates // 10) == 0 or update + 1 == updates:
            log.info("ppo %s: %d/%d steps, mean return %.3f (%d episodes), %.0f s", label, steps, updates * batch,
                     mean_return, len(finished), time.perf_counter() - start)  # fmt: skip
    envs.close()
    return curve


def _save(path: Path, state: dict) -> None:
    """Atomically: a kill while saving leaves the previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _resume(path: Path | None, agent: Agent, optimiser: torch.optim.Optimizer, curve: list, label: str, batch: int) -> int:
    """Load ``path`` into the agent, optimiser, curve and RNG; the update to continue from (0 without one)."""
    if path is None or not path.is_file():
        return 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        agent.load_state_dict(state["agent"])
        optimiser.load_state_dict(state["optimiser"])
        torch.set_rng_state(state["rng"])
    except Exception as e:  # noqa: BLE001 - an unreadable checkpoint: train from the start
        log.warning("ppo %s: checkpoint %s is unreadable (%s): training from the start", label, path, e)
        path.unlink(missing_ok=True)
        return 0
    curve.extend(state["curve"])
    log.info("ppo %s: resuming from its checkpoint at update %d (%d steps)", label, state["update"], state["update"] * batch)
    return int(state["update"])


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, next_value: torch.Tensor,
        gamma: float, lam: float) -> torch.Tensor:  # fmt: skip
    """Generalised advantage estimates; ``dones[t]`` marks that the episode ended with step t
    (the next observation already belongs to a new episode, so nothing is bootstrapped across)."""
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(len(rewards))):
        following = next_value if t == len(rewards) - 1 else values[t + 1]
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * following * alive - values[t]
        last = delta + gamma * lam * alive * last
        advantages[t] = last
    return advantages


def ppo_loss(agent: Agent, mb: dict[str, torch.Tensor], ppo: PPOSettings) -> torch.Tensor:
    logits, value = agent(mb["obs"])
    dist = Categorical(logits=logits)
    ratio = (dist.log_prob(mb["actions"]) - mb["logps"]).exp()
    adv = mb["advantages"]
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - ppo.clip, 1 + ppo.clip)).mean()
    value_loss = 0.5 * (value - mb["returns"]).pow(2).mean()
    return policy_loss + ppo.vf_coef * value_loss - ppo.ent_coef * dist.entropy().mean()
