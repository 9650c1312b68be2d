"""MiniGrid environments with visual variations that keep every state exactly aligned.

A *variation* recolours the frame MiniGrid renders (floor and agent colours) as a pure function of
the rendered pixels, so the same state gives exactly one frame in every variation: the matched
frames that translators are fitted on, and the shared anchors of relative representations, come
from rendering one set of states under each variation.

MiniGrid draws every object as a pure colour anti-aliased over a black floor, so a pixel of an
object is ``alpha * colour`` with ``alpha = red / 255`` for the red agent and the orange lava.
Recolouring keeps ``alpha`` and swaps the colours: ``alpha * new_colour + (1 - alpha) * floor``.
Walls, grid lines and the goal are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

AGENT_RGB = (255, 0, 0)  # MiniGrid's agent: pure red, anti-aliased over black
LAVA_RGB = (255, 128, 0)  # MiniGrid's lava: orange (its wave lines are black, i.e. floor)


@dataclass(frozen=True)
class Variation:
    """A visual variation: the floor and agent colours (RGB 0-255) it renders with."""

    name: str
    floor: tuple[int, int, int] = (0, 0, 0)
    agent: tuple[int, int, int] = AGENT_RGB

    @classmethod
    def from_config(cls, name: str, spec: dict) -> Variation:
        colours = {k: tuple(int(c) for c in spec.get(k, default)) for k, default in (("floor", (0, 0, 0)), ("agent", AGENT_RGB))}
        for key, rgb in colours.items():
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise ValueError(f"rl.variations.{name}.{key}={list(rgb)} must be three integers in 0..255")
        return cls(name=name, **colours)

    @property
    def is_identity(self) -> bool:
        return self.floor == (0, 0, 0) and self.agent == AGENT_RGB


def recolour(frames: np.ndarray, variation: Variation) -> np.ndarray:
    """``frames`` (..., H, W, 3) uint8 as MiniGrid renders them, in ``variation``'s colours."""
    if variation.is_identity:
        return frames
    f = frames.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    alpha = (r / 255.0)[..., None]
    floor = np.asarray(variation.floor, np.float32)
    black = (r == 0) & (g == 0) & (b == 0)
    agent = (r > 0) & (g == 0) & (b == 0)
    lava = (r > 0) & (b == 0) & (np.abs(2 * g - r) <= 1.0) & ~agent
    out = f.copy()
    out[black] = floor
    out[agent] = (alpha * np.asarray(variation.agent, np.float32) + (1 - alpha) * floor)[agent]
    out[lava] = (alpha * np.asarray(LAVA_RGB, np.float32) + (1 - alpha) * floor)[lava]
    return np.rint(out).astype(np.uint8)


class RecolourObservation(gym.ObservationWrapper):
    """Renders the wrapped environment's RGB frames in ``variation``'s colours."""

    def __init__(self, env: gym.Env, variation: Variation) -> None:
        super().__init__(env)
        self.variation = variation

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return recolour(observation, self.variation)


def make_env(env_id: str, tile_size: int, variation: Variation | None = None) -> gym.Env:
    """``env_id``'s full RGB observation (no highlighted field of view), in ``variation``'s colours."""
    import minigrid  # noqa: F401 - registers the MiniGrid environments with gymnasium
    from minigrid.wrappers import ImgObsWrapper, RGBImgObsWrapper

    env = ImgObsWrapper(RGBImgObsWrapper(gym.make(env_id, highlight=False), tile_size=tile_size))
    return RecolourObservation(env, variation) if variation is not None and not variation.is_identity else env


def make_vector_env(env_id: str, tile_size: int, variation: Variation | None, num_envs: int) -> gym.vector.VectorEnv:
    """``num_envs`` copies stepped in this process; a finished episode resets in the same step."""
    fns: Sequence[Callable[[], gym.Env]] = [lambda: make_env(env_id, tile_size, variation)] * num_envs
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def collect_states(env_id: str, tile_size: int, count: int, seed: int, unique: bool = True,
                   exclude: np.ndarray | None = None, max_episodes: int = 5000) -> np.ndarray:  # fmt: skip
    """Up to ``count`` frames (rendered with MiniGrid's own colours) of the states a uniformly
    random policy visits, over episodes seeded from ``seed``: recolour them to get matched frames.

    ``unique``: each state once (a random walk revisits states often, and a repeated anchor adds
    nothing). ``exclude``: states not to take (e.g. the frames a translator was fitted on, to get
    held-out ones). LavaGapS6 has about 370 distinct non-terminal frames, so after
    ``max_episodes`` episodes fewer than ``count`` may be returned."""
    env = make_env(env_id, tile_size)
    rng = np.random.default_rng(seed)
    frames: list[np.ndarray] = []
    seen: set[bytes] = {f.tobytes() for f in exclude} if exclude is not None else set()
    for episode in range(max_episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done and len(frames) < count:
            key = obs.tobytes()
            if key not in seen:
                frames.append(obs)
                if unique or exclude is not None:
                    seen.add(key)
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(3)))
            done = terminated or truncated
        if len(frames) >= count:
            break
    env.close()
    if not frames:
        raise ValueError(f"no new states of {env_id} found in {max_episodes} random episodes")
    return np.stack(frames)
