"""Predict with a stitched model exported by ``+export=stitched``.

    python scripts/predict.py <export dir> <image files...>     # an image model
    python scripts/predict.py <export dir> "a sentence" ...     # a text model

Prints one line per input: the input, a tab, the predicted class. Needs neither Hydra nor a run
config: only the export directory.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a directory written by +export=stitched")
    parser.add_argument("inputs", nargs="+", help="image files (image models) or strings (text models)")
    args = parser.parse_args(argv)

    from latentstitch.errors import ConfigError
    from latentstitch.stitched import load_stitched

    try:
        model = load_stitched(args.model_dir)
        predictions = model.predict(args.inputs)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for item, label in zip(args.inputs, predictions):
        print(f"{item}\t{label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
