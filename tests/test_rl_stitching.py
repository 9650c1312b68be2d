"""RL stitching: the recolour wrapper keeps states aligned, relative anchors and GAE against
direct computations, and one small run through run.py where a translated agent matches its
end-to-end counterpart on held-out matched frames and naive stitching does not."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from latentstitch.errors import ConfigError
from latentstitch.experiments.rl import settings
from latentstitch.rl.agent import Controller, RelativeAnchors
from latentstitch.rl.envs import AGENT_RGB, LAVA_RGB, Variation, collect_states, make_env, recolour
from latentstitch.rl.ppo import gae

from conftest import ROOT, run_cli

ENV = "MiniGrid-LavaGapS6-v0"
BLUE = Variation("blue", floor=(0, 0, 255))
WHITE = Variation("white", floor=(255, 255, 255), agent=(0, 0, 255))


def test_recoloured_environments_stay_in_the_same_state_and_render_matched_frames():
    base, blue, white = make_env(ENV, 8), make_env(ENV, 8, BLUE), make_env(ENV, 8, WHITE)
    rng = np.random.default_rng(0)
    for episode in range(3):
        frames = [env.reset(seed=episode)[0] for env in (base, blue, white)]
        for _ in range(40):
            assert np.array_equal(frames[1], recolour(frames[0], BLUE)) and np.array_equal(frames[2], recolour(frames[0], WHITE))
            assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])
            positions = {(tuple(env.unwrapped.agent_pos), env.unwrapped.agent_dir) for env in (base, blue, white)}
            assert len(positions) == 1
            action = int(rng.integers(3))
            steps = [env.step(action) for env in (base, blue, white)]
            assert len({(s[1], s[2], s[3]) for s in steps}) == 1  # same reward and termination
            frames = [s[0] for s in steps]
            if steps[0][2] or steps[0][3]:
                break


def test_recolour_maps_floor_agent_and_lava_and_keeps_distinct_states_distinct():
    frames = collect_states(ENV, 8, 200, seed=0)
    white = recolour(frames, WHITE)
    pixels, recoloured = frames.reshape(-1, 3), white.reshape(-1, 3)
    floor = (pixels == 0).all(1)
    assert floor.any() and (recoloured[floor] == 255).all()
    agent = (pixels == AGENT_RGB).all(1)
    assert agent.any() and (recoloured[agent] == (0, 0, 255)).all()
    lava = (pixels == LAVA_RGB).all(1)
    assert lava.any() and (recoloured[lava] == LAVA_RGB).all()
    walls = (pixels == 100).all(1)
    assert (recoloured[walls] == 100).all()
    unique = len(np.unique(frames.reshape(len(frames), -1), axis=0))
    assert len(np.unique(white.reshape(len(white), -1), axis=0)) == unique > 30
    assert recolour(frames, Variation("black")) is frames  # MiniGrid's own colours: the identity


def test_variation_colours_are_checked():
    with pytest.raises(ValueError, match="rl.variations.pink.floor"):
        Variation.from_config("pink", {"floor": [300, 0, 0]})


def test_relative_anchors_are_centred_cosines_to_an_ema_of_the_anchor_embeddings():
    torch.manual_seed(0)
    encoder = torch.nn.Linear(5, 4)
    frames = torch.randn(6, 5)
    rel = RelativeAnchors(frames, 4, momentum=0.9, center=True)
    rel.update(encoder)
    first = encoder(frames).detach()
    assert torch.allclose(rel.embeddings, first)
    with torch.no_grad():
        encoder.weight.add_(1.0)
    rel.update(encoder)
    expected = 0.9 * first + 0.1 * encoder(frames).detach()
    assert torch.allclose(rel.embeddings, expected, atol=1e-6)
    z = torch.randn(3, 4)
    mean = expected.mean(0)
    direct = torch.tensor(
        [[float(torch.dot(a - mean, b - mean) / ((a - mean).norm() * (b - mean).norm())) for b in expected] for a in z]
    )
    assert torch.allclose(rel(z), direct, atol=1e-5)


def test_relative_anchors_scale_divides_by_the_anchor_std_and_the_r3l_controller_uses_relu():
    """R3L's projection: centre and divide by the anchor embeddings' per-dimension std, then cosine."""
    torch.manual_seed(1)
    encoder = torch.nn.Linear(5, 4)
    frames = torch.randn(8, 5)
    rel = RelativeAnchors(frames, 4, momentum=0.999, center=True, scale=True)
    rel.update(encoder)
    anchors = encoder(frames).detach()
    mean, std = anchors.mean(0), anchors.std(0)
    z = torch.randn(3, 4) * 5
    direct = torch.tensor([[float(F.cosine_similarity((a - mean) / std, (b - mean) / std, dim=0)) for b in anchors] for a in z])
    assert torch.allclose(rel(z), direct, atol=1e-5)
    unscaled = RelativeAnchors(frames, 4, center=True)
    unscaled.update(encoder)
    assert (unscaled(z) - rel(z)).abs().max() > 0.01  # the scaling changes the cosines of an anisotropic latent
    controller = Controller(8, hidden=512, actions=3, activation="relu")
    assert isinstance(controller.body[1], torch.nn.ReLU) and controller.body[2].out_features == 512
    with pytest.raises(ConfigError, match="controller_activation='gelu'"):
        Controller(8, activation="gelu")


def test_gae_with_lambda_one_gives_discounted_returns_cut_at_episode_ends():
    rewards = torch.tensor([[0.0], [0.0], [1.0], [0.0], [0.5]])
    dones = torch.tensor([[0.0], [0.0], [1.0], [0.0], [0.0]])
    values = torch.tensor([[0.1], [0.2], [0.3], [0.4], [0.6]])
    next_value = torch.tensor([2.0])
    adv = gae(rewards, values, dones, next_value, gamma=0.9, lam=1.0)
    returns = adv + values
    expected = [0.81, 0.9, 1.0, 0.9 * 0.5 + 0.81 * 2.0, 0.5 + 0.9 * 2.0]
    assert torch.allclose(returns.squeeze(1), torch.tensor(expected), atol=1e-6)
    one_step = gae(rewards, values, dones, next_value, gamma=0.9, lam=0.0)  # lambda 0: TD errors
    assert torch.allclose(one_step[0], 0.9 * values[1] - values[0])


def test_bad_rl_settings_are_one_line_config_errors():
    base = OmegaConf.load(ROOT / "conf/experiment/rl_stitching.yaml")
    cfg = OmegaConf.merge(base, {"rl": {"translator": "magic"}})
    with pytest.raises(ConfigError, match="rl.translator='magic'"):
        settings(cfg)
    with pytest.raises(ConfigError, match="rl.kinds contains 'symbolic'"):
        settings(OmegaConf.merge(base, {"rl": {"kinds": ["symbolic"]}}))
    with pytest.raises(ConfigError, match="rl.ema_momentum=1.0 must be in"):
        settings(OmegaConf.merge(base, {"rl": {"ema_momentum": 1.0}}))
    with pytest.raises(ConfigError, match="rl.controller_activation='gelu'"):
        settings(OmegaConf.merge(base, {"rl": {"controller_activation": "gelu"}}))
    with pytest.raises(ConfigError, match="rl.steps.relative=100 must be at least one PPO batch"):
        settings(OmegaConf.merge(base, {"rl": {"steps": {"relative": 100}}}))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """Two variations (black and white; blue removed), absolute agents trained 32k steps at a
    constant learning rate of 5e-4, relative agents 4k steps (plumbing only), 50 evaluation episodes."""
    tmp = tmp_path_factory.mktemp("rl")
    args = ["+experiment=rl_stitching", "logger=none", "~rl.variations.blue", "rl.steps.absolute=32768", "rl.steps.relative=4096",
            "rl.ppo.anneal_lr=false", "rl.ppo.lr=5e-4", "rl.eval_episodes=50"]  # fmt: skip
    result = run_cli(args, tmp, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The same experiment at the smallest budget (two PPO batches per agent, 4 evaluation
    episodes): the plumbing, outputs and W&B-free logging of the whole run, in the fast suite."""
    tmp = tmp_path_factory.mktemp("rl_tiny")
    args = ["+experiment=rl_stitching", "logger=none", "~rl.variations.blue", "rl.steps.absolute=2048", "rl.steps.relative=2048",
            "rl.eval_episodes=4", "rl.retries=0"]  # fmt: skip
    result = run_cli(args, tmp, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow  # 100 s of PPO: what the agents learn; tiny_run below covers the run's plumbing in the fast suite
def test_translated_agents_match_their_end_to_end_counterparts_on_matched_frames(small_run):
    cells = pd.read_csv(small_run.run_dir / "results.csv")
    by = {(r.method, r.encoder, r.controller): r for r in cells.itertuples()}
    # measured: action agreement 0.84 / 0.73 (naive 0.69 / 0.59: in many states both pick forward), space cosine
    # 0.72 / 0.71 (naive 0.07), return 0.72 / 0.54 (naive 0.06 / 0.07; end to end 0.86 / 0.81)
    for a, b in (("black", "white"), ("white", "black")):
        translated, naive, end_to_end = by[("translated", a, b)], by[("naive", a, b)], by[("end_to_end", b, b)]
        assert translated.action_agreement >= 0.7 and translated.action_agreement > naive.action_agreement, (translated, naive)
        assert translated.space_cosine > naive.space_cosine + 0.3  # on states the translator was not fitted on
        assert translated.mean_return >= 0.5 * end_to_end.mean_return and translated.mean_return > naive.mean_return + 0.2
    for v in ("black", "white"):
        assert by[("end_to_end", v, v)].mean_return > 0.3  # random play: about 0.05
        assert by[("naive", v, v)].action_agreement == 1.0 and by[("naive", v, v)].space_cosine > 0.9999
        assert by[("translated", v, v)].space_cosine > 0.999  # the translator from a space to itself: the identity


def test_rl_run_writes_grids_curves_and_metrics(tiny_run):
    out = tiny_run.run_dir
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["variations"] == ["black", "white"]
    for method in ("naive", "translated", "relative"):
        grid = pd.read_csv(out / f"grid_{method}.csv", index_col=0)
        assert list(grid.index) == ["black", "white"] and list(grid.columns) == ["black", "white"]
        assert ((grid.values >= 0) & (grid.values <= 1)).all()
    training = pd.read_csv(out / "training.csv")
    assert set(zip(training["kind"], training["variation"])) == {
        (k, v) for k in ("absolute", "relative") for v in ("black", "white")
    }
    assert training.groupby("kind")["steps"].max().to_dict() == {"absolute": 2048, "relative": 2048}
    cells = pd.read_csv(out / "results.csv")  # every cell, scored
    assert len(cells) == 2 + 3 * 4 and cells["mean_return"].between(0, 1).all()  # end to end on the diagonal, 3 methods x 4
    assert (out / "rl_grid.png").stat().st_size > 5000 and (out / "learning_curves.png").stat().st_size > 5000
    assert "rl stitching: mean return" in tiny_run.stdout


def test_agent_training_is_reproducible_whatever_the_process_rng_state():
    """Loky reuses worker processes, so an agent's initial weights must not depend on what the
    worker ran before: two trainings with a disturbed global RNG in between are identical."""
    from latentstitch.experiments.rl import train_agent

    threads = torch.get_num_threads()
    s = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/experiment/rl_stitching.yaml").rl, resolve=True)
    s["steps"]["absolute"], s["retries"] = 2048, 0
    anchors = collect_states(ENV, 8, 8, seed=0)
    first = train_agent(s, WHITE, "absolute", anchors, threads=1, progress=False)
    torch.rand(1000)
    second = train_agent(s, WHITE, "absolute", anchors, threads=1, progress=False)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first if not k.startswith("curve.seconds"))
    other = train_agent(s, BLUE, "absolute", anchors, threads=1, progress=False)  # another variation: another seed
    assert not torch.equal(first["agent.encoder.project.weight"], other["agent.encoder.project.weight"])
    torch.set_num_threads(threads)


def test_a_collapsed_agent_is_retrained_once_from_a_new_seed():
    from latentstitch.experiments.rl import agent_seed, train_agent

    threads = torch.get_num_threads()
    s = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/experiment/rl_stitching.yaml").rl, resolve=True)
    s["steps"]["absolute"], s["retries"], s["min_train_return"] = 1024, 1, 2.0  # a return of 2 is never reached
    trained = train_agent(s, WHITE, "absolute", collect_states(ENV, 8, 8, seed=0), threads=1, progress=False)
    assert int(trained["attempts"][0]) == 2 and len(trained["curve.steps"]) == 1
    s["retries"] = 0
    single = train_agent(s, WHITE, "absolute", collect_states(ENV, 8, 8, seed=0), threads=1, progress=False)
    assert int(single["attempts"][0]) == 1 and agent_seed(s, WHITE, 1) == agent_seed(s, WHITE) + 100
    assert not torch.equal(trained["agent.encoder.project.weight"], single["agent.encoder.project.weight"])  # the retry's seed
    torch.set_num_threads(threads)


def loky_children(parent: int) -> set[int]:
    """PIDs of the loky worker processes whose parent is ``parent`` (read from /proc)."""
    from pathlib import Path

    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"LokyProcess" in (proc / "cmdline").read_bytes():
                found.add(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.mark.slow  # 26 s; the RL preset runs end to end in test_rl_run_writes_grids_curves_and_metrics
def test_a_terminated_run_takes_its_training_workers_with_it(tmp_path):
    """SIGTERM to run.py while agents train in loky workers: the workers end too, not orphaned."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, str(ROOT / "run.py"), "+experiment=rl_stitching", "logger=none", f"paths.cache_dir={tmp_path / 'cache'}",
           f"hydra.run.dir={tmp_path / 'run'}", "rl.steps.absolute=1000000", "rl.kinds=[absolute]"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    deadline, workers = time.time() + 120, set()
    while time.time() < deadline and len(workers) < 2:
        workers = loky_children(proc.pid)
        time.sleep(0.5)
    assert len(workers) >= 2, "no training workers started"
    time.sleep(3)  # let them pick up their first agents
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    gone = time.time() + 30
    while time.time() < gone and any(os.path.exists(f"/proc/{w}") for w in workers):
        time.sleep(0.5)
    alive = [
        w for w in workers if os.path.exists(f"/proc/{w}") and open(f"/proc/{w}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    ]
    assert not alive, f"orphaned workers still running: {alive}"


def test_ppo_training_resumes_from_its_checkpoint(tmp_path, caplog):
    """A training whose job was preempted after its first update (its checkpoint left in the
    agent's .partial dir) continues from update 1: the curve's first row is the first training's,
    only the second update runs again."""
    import logging

    from latentstitch.experiments.rl import train_agent

    s = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/experiment/rl_stitching.yaml").rl, resolve=True)
    s["steps"]["absolute"], s["retries"], s["checkpoint_every"] = (
        2048,
        0,
        1,
    )  # two PPO updates, a checkpoint after each but the last
    anchors = collect_states(ENV, 8, 8, seed=0)
    partial = tmp_path / "partial"
    first = train_agent(s, WHITE, "absolute", anchors, threads=1, progress=False, partial=partial)
    saved = partial / "attempt0.pt"
    assert (
        saved.is_file() and torch.load(saved, weights_only=False)["update"] == 1
    )  # the state a job killed after its first update leaves
    with caplog.at_level(logging.INFO, logger="latentstitch.rl.ppo"):
        again = train_agent(s, WHITE, "absolute", anchors, threads=1, progress=False, partial=partial)
    assert "resuming from its checkpoint at update 1 (1024 steps)" in caplog.text
    assert again["curve.steps"].tolist() == [1024.0, 2048.0]
    assert again["curve.return"][0].item() == first["curve.return"][0].item() or (
        first["curve.return"][0].isnan() and again["curve.return"][0].isnan()
    )
