"""Reinforcement-learning agents stitched from parts across visual variations (R3L / SAPS)."""

from latentstitch.rl.agent import Agent, Controller, PixelEncoder, RelativeAnchors, build_agent
from latentstitch.rl.envs import Variation, collect_states, make_env, recolour

__all__ = [
    "Agent",
    "Controller",
    "PixelEncoder",
    "RelativeAnchors",
    "Variation",
    "build_agent",
    "collect_states",
    "make_env",
    "recolour",
]
