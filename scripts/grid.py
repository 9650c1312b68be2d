"""Rebuild a sweep's grid, summary and plots from its job dirs, after the fact.

    python scripts/grid.py outputs/multirun/2026-11-23_12-00-00 [--wandb]

Exit code: 0 all cells ran, 1 some failed (marked in the plots), 2 no cells found.
"""

import argparse
import sys

from omegaconf import OmegaConf

from latentstitch.grid import report_and_exit_code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir")
    parser.add_argument("--wandb", action="store_true", help="also log the grid as a W&B run (offline unless WANDB_MODE is set)")
    args = parser.parse_args()
    logger_cfg = (
        OmegaConf.create({"_target_": "lightning.pytorch.loggers.WandbLogger", "project": "latentstitch"}) if args.wandb else None
    )
    return report_and_exit_code(args.sweep_dir, logger_cfg)


if __name__ == "__main__":
    sys.exit(main())
