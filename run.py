"""latentstitch entry point: compose the config with Hydra and evaluate one cell.

python run.py encoder=vit decoder=resnet translator=ortho
python run.py -m encoder=vit,resnet,cnn decoder=vit,resnet,cnn translator=ortho,linear
"""

import hydra
from omegaconf import DictConfig

from latentstitch import pipeline
from latentstitch.config import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    return pipeline.main(cfg)


if __name__ == "__main__":
    main()
