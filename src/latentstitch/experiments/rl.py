"""Zero-shot stitching of RL agents across visual variations (``+experiment=rl_stitching``).

For each visual variation of one MiniGrid task, agents are trained end to end with PPO: an
*absolute* agent (the controller reads the encoder's latent) and a *relative* agent (R3L: the
controller reads cosines to EMA anchor embeddings). Then every encoder is combined with every
controller, zero-shot:

- ``end_to_end``: the absolute agent of the variation (the grid's diagonal);
- ``naive``: encoder A's latent fed to controller B as it is;
- ``translated``: encoder A's latent through a closed-form translator (default ``ortho``:
  Procrustes after standard scaling) fitted on matched frames, the same states rendered in A and
  in B (SAPS, Ricciardi et al. 2025), then controller B;
- ``relative``: relative agent A's cosines to the anchor states rendered in A, fed to relative
  agent B's controller (diagonal: the relative agent end to end).

Each cell is scored by the mean return over ``rl.eval_episodes`` episodes played in the
encoder's variation, with the same episode seeds in every cell, and against the end-to-end agent of
the controller's variation on held-out matched states (not among those a translator is fitted on):
how often both pick the same action, and the mean cosine between what each feeds the controller.

Outputs in the run dir: ``results.csv`` (one row per method and cell), ``grid_<method>.csv``
(encoder variation x controller variation), ``training.csv`` (every agent's learning curve),
``rl_grid.png``, ``learning_curves.png``, ``metrics.json``, and everything to the experiment
logger. Trained agents are cached (``rl_agent`` entries) like every other trained model.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from latentstitch.cache import Cache, spec_key
from latentstitch.errors import ConfigError
from latentstitch.experiments.outputs import RunOutputs
from latentstitch.logging import write_cells_csv
from latentstitch.rl.agent import ACTIVATIONS, Agent, build_agent
from latentstitch.rl.envs import Variation, collect_states, make_env, make_vector_env, recolour
from latentstitch.rl.ppo import PPOSettings, train_ppo
from latentstitch.runtime import sigterm_as_interrupt
from latentstitch.translation import TRANSLATORS

log = logging.getLogger(__name__)

KINDS = ("absolute", "relative")
METHODS = ("end_to_end", "naive", "translated", "relative")


def settings(cfg: DictConfig) -> dict[str, Any]:
    s = OmegaConf.to_container(cfg.rl, resolve=True)
    if not s.get("variations"):
        raise ConfigError("rl.variations is empty: name at least two visual variations")
    for kind in s["kinds"]:
        if kind not in KINDS:
            raise ConfigError(f"rl.kinds contains {kind!r}; choose from {list(KINDS)}")
    if s["translator"] not in TRANSLATORS:
        raise ConfigError(f"rl.translator={s['translator']!r} is not one of {sorted(TRANSLATORS)}")
    for kind in s["kinds"]:
        if int(s["steps"].get(kind) or 0) < int(s["ppo"]["num_envs"]) * int(s["ppo"]["num_steps"]):
            raise ConfigError(f"rl.steps.{kind}={s['steps'].get(kind)} must be at least one PPO batch (num_envs x num_steps)")
    if int(s["retries"]) < 0:
        raise ConfigError(f"rl.retries={s['retries']} must be 0 or more")
    for key in ("matched_frames", "check_frames", "anchors", "eval_episodes"):
        if int(s[key]) < 1:
            raise ConfigError(f"rl.{key}={s[key]} must be a positive integer")
    if s.get("controller_activation", "tanh") not in ACTIVATIONS:
        raise ConfigError(f"rl.controller_activation={s['controller_activation']!r} is not one of {', '.join(ACTIVATIONS)}")
    if not 0 <= float(s["ema_momentum"]) < 1:
        raise ConfigError(f"rl.ema_momentum={s['ema_momentum']} must be in [0, 1)")
    return s


def ppo_settings(s: dict[str, Any], kind: str) -> PPOSettings:
    return PPOSettings.from_settings({**s["ppo"], "total_steps": s["steps"][kind]})


def variations(s: dict[str, Any]) -> list[Variation]:
    try:
        return [Variation.from_config(name, spec or {}) for name, spec in s["variations"].items()]
    except ValueError as e:
        raise ConfigError(str(e)) from None


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


# ----------------------------------------------------------------------------- training


def agent_seed(s: dict[str, Any], variation: Variation, attempt: int = 0) -> int:
    """``rl.seed`` + the variation's position (+ 100 per retry): agents of different variations
    start from different weights and sample different rollouts (independently trained networks)."""
    return int(s["seed"]) + list(s["variations"]).index(variation.name) + 100 * attempt


def agent_spec(s: dict[str, Any], variation: Variation, kind: str, anchors: np.ndarray) -> dict[str, Any]:
    """Everything that determines a trained agent (the cache key)."""
    arch = {k: s[k] for k in ("image_size", "channels", "latent_dim", "hidden", "actions")}
    if s.get("controller_activation", "tanh") != "tanh":  # only where it differs: earlier agents keep their cache keys
        arch["controller_activation"] = s["controller_activation"]
    spec = {"env": s["env"], "tile_size": s["tile_size"], "floor": variation.floor, "agent": variation.agent, "kind": kind,
            "seed": agent_seed(s, variation), "retries": s["retries"], "min_train_return": s["min_train_return"], "arch": arch, "ppo": vars(ppo_settings(s, kind))}  # fmt: skip
    if kind == "relative":
        spec["relative"] = {"anchors": digest(anchors), "momentum": s["ema_momentum"], "center": s["relative_center"]}
        if s.get("relative_scale", False):
            spec["relative"]["scale"] = True
    return spec


def train_agent(s: dict[str, Any], variation: Variation, kind: str, anchors: np.ndarray, threads: int,
                progress: bool, partial: Path | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Train one agent with PPO (runs in a worker process); its weights and learning curve.

    PPO on this sparse-reward task sometimes collapses into turning in place until the timeout
    (measured: 1 agent in 10 at 100k steps, return 0 throughout). An agent whose mean training
    return over its last 10 updates stays below ``rl.min_train_return`` is trained again from a new
    seed, at most ``rl.retries`` times; ``attempts`` records how many trainings it took."""
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    frames = torch.from_numpy(recolour(anchors, variation)) if kind == "relative" else None
    for attempt in range(int(s["retries"]) + 1):
        seed = agent_seed(s, variation, attempt)
        torch.manual_seed(seed)  # the initial weights; a reused worker's RNG state must not leak in
        agent = build_agent(s, frames)
        checkpoint = None if partial is None else partial / f"attempt{attempt}.pt"  # a preempted job resumes here
        curve = train_ppo(agent, lambda n: make_vector_env(s["env"], s["tile_size"], variation, n), ppo_settings(s, kind),
                          seed=seed, label=f"{kind} {variation.name}", progress=progress, checkpoint=checkpoint,
                          checkpoint_every=int(s.get("checkpoint_every", 10)))  # fmt: skip
        final = float(np.nanmean([row["return"] for row in curve[-10:]] or [0.0]))
        if final >= float(s["min_train_return"]) or attempt == int(s["retries"]):
            break
        log.warning("%s agent %s: training return %.3f < rl.min_train_return=%s (collapsed): retraining from seed %d",
                    kind, variation.name, final, s["min_train_return"], agent_seed(s, variation, attempt + 1))  # fmt: skip
    tensors = {f"agent.{k}": v for k, v in agent.state_dict().items()}
    for key in ("steps", "return", "episodes", "seconds"):
        tensors[f"curve.{key}"] = torch.tensor([row[key] for row in curve], dtype=torch.float64)
    tensors["attempts"] = torch.tensor([attempt + 1])
    return tensors


def train_agents(
    cfg: DictConfig, s: dict[str, Any], variations: list[Variation], anchors: np.ndarray
) -> dict[tuple[str, str], Any]:
    """Every (kind, variation) agent, from the cache or trained in ``rl.workers`` processes at once."""
    from joblib import Parallel, delayed

    cache = Cache(cfg.paths.cache_dir)
    jobs = [(kind, v) for kind in s["kinds"] for v in variations]
    specs = {(kind, v.name): agent_spec(s, v, kind, anchors) for kind, v in jobs}

    found = {job: cache.load("rl_agent", spec_key("rl_agent", specs[job])) for job in specs}
    missing = [(kind, v) for kind, v in jobs if found[(kind, v.name)] is None]
    for kind, v in jobs:
        if found[(kind, v.name)] is not None:
            log.info("cache hit: rl_agent %s %s", kind, v.name)
    if missing:
        workers = max(1, min(int(s["workers"] or 1), len(missing)))
        threads = max(1, torch.get_num_threads() // workers) if workers > 1 else torch.get_num_threads()
        log.info("training %d agents in %d processes x %d threads", len(missing), workers, threads)
        progress = bool(s["progress_bar"]) and workers == 1
        partials = {job: cache.partial_dir("rl_agent", spec_key("rl_agent", spec)) for job, spec in specs.items()}
        with sigterm_as_interrupt():  # a killed run takes its training workers with it
            built = Parallel(n_jobs=workers, backend="loky" if workers > 1 else "sequential")(
                delayed(train_agent)(s, v, kind, anchors, threads, progress, partials[(kind, v.name)]) for kind, v in missing
            )
        for (kind, v), tensors in zip(missing, built):
            spec = specs[(kind, v.name)]
            cache.save("rl_agent", spec_key("rl_agent", spec), tensors, spec)
            shutil.rmtree(partials[(kind, v.name)], ignore_errors=True)
            found[(kind, v.name)] = tensors
    agents = {}
    for kind, v in jobs:
        tensors = found[(kind, v.name)]
        frames = torch.from_numpy(recolour(anchors, v)) if kind == "relative" else None
        agent = build_agent(s, frames)
        agent.load_state_dict({k[len("agent.") :]: t for k, t in tensors.items() if k.startswith("agent.")})
        agent.eval()
        curve = pd.DataFrame({key: tensors[f"curve.{key}"].numpy() for key in ("steps", "return", "episodes", "seconds")})
        curve["attempts"] = int(tensors["attempts"][0]) if "attempts" in tensors else 1
        agents[(kind, v.name)] = (agent, curve)
    return agents


# ----------------------------------------------------------------------------- stitching and evaluation


@dataclass
class Stitch:
    """One cell's agent: ``space`` maps frames in the encoder's colours to what the controller
    reads; ``reference`` is the controller's own end-to-end agent (what the stitch should equal)."""

    space: Callable[[torch.Tensor], torch.Tensor]
    controller: torch.nn.Module
    reference: Agent
    fit: dict[str, float]

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.controller(self.space(frames))[0]


class TranslatorLayer(torch.nn.Module):
    """A fitted translator as a layer, so a translated encoder is ``Sequential(encoder, layer)``."""

    def __init__(self, translator: Any) -> None:
        super().__init__()
        self.translator = translator

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.translator.transform(latent)


def stitches(s: dict[str, Any], agents: dict, source: Variation, target: Variation, matched: np.ndarray) -> dict[str, Stitch]:
    """The cell's agents by method: encoder of ``source``'s agent, controller of ``target``'s."""
    out: dict[str, Stitch] = {}
    if "absolute" in s["kinds"]:
        encoder_agent, controller_agent = agents[("absolute", source.name)][0], agents[("absolute", target.name)][0]
        if source == target:
            out["end_to_end"] = Stitch(encoder_agent.space, encoder_agent.controller, encoder_agent, {})
        out["naive"] = Stitch(encoder_agent.encoder, controller_agent.controller, controller_agent, {})
        with torch.no_grad():
            x = encoder_agent.encoder(torch.from_numpy(recolour(matched, source)))
            y = controller_agent.encoder(torch.from_numpy(recolour(matched, target)))
        translator = TRANSLATORS[s["translator"]]().fit(x, y)
        fit = {"fit_cosine": float(torch.nn.functional.cosine_similarity(translator.transform(x), y).mean())}
        translated = torch.nn.Sequential(encoder_agent.encoder, TranslatorLayer(translator))
        out["translated"] = Stitch(translated, controller_agent.controller, controller_agent, fit)
    if "relative" in s["kinds"]:
        encoder_agent, controller_agent = agents[("relative", source.name)][0], agents[("relative", target.name)][0]
        out["relative"] = Stitch(encoder_agent.space, controller_agent.controller, controller_agent, {})
    return out


@torch.no_grad()
def evaluate(policy: Callable[[torch.Tensor], torch.Tensor], s: dict[str, Any], variation: Variation) -> np.ndarray:
    """Returns of ``rl.eval_episodes`` episodes (episode i seeded ``eval_seed + i``), played in
    parallel; actions sampled from the policy (``rl.greedy``: the most likely action)."""
    episodes, seed = int(s["eval_episodes"]), int(s["eval_seed"])
    envs = [make_env(s["env"], s["tile_size"], variation) for _ in range(episodes)]
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    returns = np.zeros(episodes)
    alive = list(range(episodes))
    generator = torch.Generator().manual_seed(seed)
    while alive:
        logits = policy(torch.from_numpy(np.stack([obs[i] for i in alive])))
        if s["greedy"]:
            actions = logits.argmax(-1)
        else:
            actions = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
        still = []
        for i, action in zip(alive, actions.tolist()):
            obs[i], reward, terminated, truncated, _ = envs[i].step(action)
            returns[i] += reward
            if not (terminated or truncated):
                still.append(i)
        alive = still
    for env in envs:
        env.close()
    return returns


@torch.no_grad()
def agreement(stitch: Stitch, frames: np.ndarray, source: Variation, target: Variation) -> dict[str, float]:
    """The stitched agent on held-out states in ``source``'s colours against the controller's own
    end-to-end agent on the same states in ``target``'s colours: how often they pick the same
    action, and the mean cosine between what each feeds the controller."""
    mine_frames, theirs_frames = torch.from_numpy(recolour(frames, source)), torch.from_numpy(recolour(frames, target))
    mine, theirs = stitch.space(mine_frames), stitch.reference.space(theirs_frames)
    same = stitch.controller(mine)[0].argmax(-1) == stitch.reference.controller(theirs)[0].argmax(-1)
    return {"action_agreement": float(same.float().mean()),
            "space_cosine": float(torch.nn.functional.cosine_similarity(mine, theirs).mean())}  # fmt: skip


def evaluate_cells(s: dict[str, Any], agents: dict, variations: list[Variation], matched: np.ndarray,
                   check: np.ndarray) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for source in variations:
        for target in variations:
            for method, stitch in stitches(s, agents, source, target, matched).items():
                returns = evaluate(stitch, s, source)
                row = {"method": method, "encoder": source.name, "controller": target.name,
                       "mean_return": float(returns.mean()), "std_return": float(returns.std()),
                       "success_rate": float((returns > 0).mean()), "episodes": len(returns),
                       **agreement(stitch, check, source, target), **stitch.fit}  # fmt: skip
                log.info("rl cell %-10s %s -> %s: return %.3f +- %.3f, action agreement %.3f, space cosine %.3f", method,
                         source.name, target.name, row["mean_return"], row["std_return"], row["action_agreement"],
                         row["space_cosine"])  # fmt: skip
                rows.append(row)
    return rows


# ----------------------------------------------------------------------------- outputs


def grids(cells: pd.DataFrame, names: list[str]) -> dict[str, pd.DataFrame]:
    """method -> (encoder variation x controller variation) mean returns; end to end on the diagonal."""
    out = {}
    for method in ("naive", "translated", "relative"):
        part = cells[cells["method"] == method]
        if len(part):
            out[method] = part.pivot(index="encoder", columns="controller", values="mean_return").loc[names, names]
    return out


def plot_grids(path: Path, grid: dict[str, pd.DataFrame]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(grid), figsize=(3.6 * len(grid), 3.4), squeeze=False)
    for ax, (method, table) in zip(axes[0], grid.items()):
        ax.imshow(table.values, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(table.columns)), table.columns, rotation=45)
        ax.set_yticks(range(len(table.index)), table.index)
        for (i, j), value in np.ndenumerate(table.values):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="w" if value < 0.6 else "k", fontsize=9)
        ax.set_title(method)
        ax.set_xlabel("controller (variation)")
        ax.set_ylabel("encoder (variation)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_curves(path: Path, training: pd.DataFrame) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for (kind, variation), part in training.groupby(["kind", "variation"]):
        smooth = part["return"].rolling(5, min_periods=1).mean()
        ax.plot(part["steps"], smooth, label=f"{kind} {variation}", linestyle="-" if kind == "absolute" else "--")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("training return (5-update mean)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _log_curves(out: RunOutputs, training: pd.DataFrame, cells: pd.DataFrame) -> None:
    """Training returns per PPO update, and each cell's scores (the cells table goes with the result)."""
    if not out.logger:
        return
    for update, part in training.groupby(training.groupby(["kind", "variation"]).cumcount()):
        out.logger.log_metrics({f"train/{r.kind}_{r.variation}/return": float(r["return"]) for _, r in part.iterrows()
                                if not np.isnan(r["return"])}, step=int(update))  # fmt: skip
    numbers = {f"cell/{r.method}/{r.encoder}->{r.controller}/{k}": float(r[k]) for _, r in cells.iterrows()
               for k in ("mean_return", "success_rate", "action_agreement", "space_cosine")}  # fmt: skip
    out.log_numbers(numbers, step=int(training.groupby(["kind", "variation"]).size().max()))


def summary_table(cells: pd.DataFrame, training: pd.DataFrame) -> str:
    lines = ["rl stitching: mean return (encoder variation -> controller variation)"]
    for method, part in cells.groupby("method", sort=False):
        off = part[part["encoder"] != part["controller"]]
        lines.append(f"  {method:<11} " + "  ".join(f"{r.encoder}->{r.controller} {r.mean_return:.3f}" for r in part.itertuples())
                     + (f"   | off-diagonal mean {off['mean_return'].mean():.3f}" if len(off) else ""))  # fmt: skip
    last = training.groupby(["kind", "variation"]).tail(1)
    lines.append(
        "  training: "
        + ", ".join(
            f"{r.kind} {r.variation} {int(r.steps)} steps {r.seconds:.0f} s"
            + (f" ({int(r.attempts)} attempts)" if r.attempts > 1 else "")
            for r in last.itertuples()
        )
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train, stitch and evaluate; see the module docstring for the outputs."""
    s = settings(cfg)
    vs = variations(s)
    out = RunOutputs(cfg)  # the run and cache dirs are writable, before any work
    output_dir = out.dir
    start = time.perf_counter()
    anchors = collect_states(s["env"], s["tile_size"], int(s["anchors"]), seed=int(s["anchor_seed"]))
    matched = collect_states(s["env"], s["tile_size"], int(s["matched_frames"]), seed=int(s["matched_seed"]))
    check = collect_states(s["env"], s["tile_size"], int(s["check_frames"]), seed=int(s["check_seed"]), exclude=matched)
    with out:
        agents = train_agents(cfg, s, vs, anchors)
        trained = time.perf_counter()
        training = pd.concat([curve.assign(kind=kind, variation=name) for (kind, name), (_, curve) in agents.items()])
        cells = pd.DataFrame(evaluate_cells(s, agents, vs, matched, check))
        names = [v.name for v in vs]
        grid = grids(cells, names)
        write_cells_csv(output_dir / "training.csv", training.to_dict("records"))
        for method, table in grid.items():
            table.round(4).to_csv(output_dir / f"grid_{method}.csv")
        images = {"rl_grid": plot_grids(output_dir / "rl_grid.png", grid),
                  "learning_curves": plot_curves(output_dir / "learning_curves.png", training)}  # fmt: skip
        final = training.groupby(["kind", "variation"]).tail(1)
        result = {
            "env": s["env"], "variations": names,
            "grids": {m: t.round(4).to_dict() for m, t in grid.items()},
            "off_diagonal_mean": {m: float(part.loc[part["encoder"] != part["controller"], "mean_return"].mean())
                                  for m, part in cells.groupby("method") if m != "end_to_end"},
            "training": [{"kind": r.kind, "variation": r.variation, "steps": int(r.steps), "seconds": round(float(r.seconds), 1),
                          "final_return": float(r["return"]), "attempts": int(r["attempts"])} for _, r in final.iterrows()],
            "seconds_training": trained - start, "seconds": time.perf_counter() - start,
        }  # fmt: skip
        _log_curves(out, training, cells)
        return out.finish(result, cells.to_dict("records"), images, console=summary_table(cells, training))
