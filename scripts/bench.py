"""Benchmarks, each reported as a ratio of two timings taken in the same run.

    .venv/bin/python scripts/bench.py                  # all four, digits for the end-to-end ones
    .venv/bin/python scripts/bench.py --only translators extraction
    .venv/bin/python scripts/bench.py --dataset fashion_mnist   # end-to-end ones on the real default data

1. translators: fit + transform of each translator at d=768, 2000 anchors, 10,000 points, against a
   plain NumPy implementation of the same math (latentstitch.translation.numpy_reference).
2. extraction: latent extraction through Lightning (Trainer.predict + ordered gathering) against a
   bare torch inference loop over the same model and data.
3. cache: a cached rerun of a cell against its first (cold) run, both through run.py.
4. grid: a 3x3 grid's wall time against the sum of its encoder trainings and encodings (from the
   jobs' logs), i.e. how much the framework adds around the unavoidable work.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ["logger=none", "trainer.enable_progress_bar=false", "anchors.num=300", "encoder.train.epochs=10", "encoder.train.batch_size=64",
        "decoder.space.train.epochs=10", "decoder.space.train.batch_size=64", "head.epochs=10", "head.batch_size=64"]  # fmt: skip


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_translators() -> None:
    from latentstitch.translation import TRANSLATORS
    from latentstitch.translation.numpy_reference import numpy_translate

    g = torch.Generator().manual_seed(0)
    d, k, n = 768, 2000, 10_000
    xa, ya = torch.randn(k, d, generator=g), torch.randn(k, d, generator=g) @ torch.randn(d, d, generator=g) / d**0.5
    x = torch.randn(n, d, generator=g)
    xa64, ya64, x64 = xa.double().numpy(), ya.double().numpy(), x.double().numpy()
    print(f"translators: d={d}, {k} anchors, {n} points; time(latentstitch, float32 in) / time(NumPy float64 reference)")
    for name in ("affine", "linear", "lortho", "ortho"):
        ours = best_of(lambda: TRANSLATORS[name]().fit(xa, ya).transform(x))
        ref = best_of(lambda: numpy_translate(name, xa64, ya64, x64))
        agree = np.abs(TRANSLATORS[name]().fit(xa, ya).transform(x).double().numpy() - numpy_translate(name, xa64, ya64, x64)).max()
        print(f"  {name:<7} ratio {ours / ref:5.2f}   (max abs difference {agree:.1e})")


def bench_extraction(dataset: str) -> None:
    from omegaconf import OmegaConf

    from latentstitch.config import register_resolvers
    from latentstitch.data import load_splits
    from latentstitch.encoders import build_encoder
    from latentstitch.encoders.training import extract_features, quiet_lightning

    register_resolvers()
    quiet_lightning()
    ds = OmegaConf.load(ROOT / "conf" / "dataset" / f"{dataset}.yaml")
    data = load_splits(ds.name, ROOT / "data", list(ds.mean), list(ds.std), ds.num_classes)
    for name in ("cnn", "resnet"):
        cfg = OmegaConf.merge({"dataset": ds}, {"encoder": OmegaConf.load(ROOT / "conf" / "encoder" / f"{name}.yaml")}).encoder
        module = build_encoder(cfg, tuple(data.test.images.shape[1:]), ds.num_classes).eval()
        images, labels = data.test.images, data.test.labels
        trainer_cfg = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}

        def bare():
            with torch.no_grad():
                return torch.cat([module.features(chunk) for chunk in images.split(256)])

        ours = best_of(lambda: extract_features(module, images, labels, 256, trainer_cfg))
        ref = best_of(bare)
        assert torch.allclose(extract_features(module, images, labels, 256, trainer_cfg), bare(), atol=1e-5)
        print(f"extraction: {name} on {len(labels)} {dataset} test images, time(Trainer.predict + gather) / time(bare torch loop): {ours / ref:.2f}")


def run_cli(args: list[str], cache: Path, out: Path) -> tuple[float, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *args, f"paths.cache_dir={cache}", f"hydra.run.dir={out}", f"hydra.sweep.dir={out}"],
                          cwd=ROOT, capture_output=True, text=True, env=env)  # fmt: skip
    elapsed = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"run.py failed:\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout + proc.stderr


def e2e_args(dataset: str) -> list[str]:
    return [f"dataset={dataset}", "encoder=mlp", "decoder=cnn", *(TINY if dataset == "digits" else ["logger=none", "trainer.enable_progress_bar=false"])]


def bench_cache(dataset: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        args = e2e_args(dataset)
        cold, _ = run_cli(args, Path(tmp) / "cache", Path(tmp) / "a")
        warm, log = run_cli(args, Path(tmp) / "cache", Path(tmp) / "b")
        assert "cache miss" not in log
        print(f"cache: cell mlp -> cnn on {dataset}, time(cached rerun) / time(first run): {warm / cold:.2f}  (process start-up included)")


def bench_grid(dataset: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        args = ["-m", *e2e_args(dataset), "encoder=mlp,cnn,resnet", "decoder=mlp,cnn,resnet"]
        if dataset == "digits":
            args += ["decoder.space.train.epochs=10", "encoder.train.epochs=10"]
        wall, _ = run_cli(args, Path(tmp) / "cache", Path(tmp) / "sweep")
        logs = "".join(p.read_text() for p in (Path(tmp) / "sweep").glob("*/*.log"))
        work = sum(float(t) for t in re.findall(r"(?:trained encoder \S+|encoded .*?split \(\d+ samples\)) in ([\d.]+) s", logs))
        print(f"grid: 3x3 on {dataset}, time(whole sweep) / sum(encoder trainings + encodings): {wall / work:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="latentstitch benchmarks (ratios from one run)")
    parser.add_argument("--only", nargs="*", default=["translators", "extraction", "cache", "grid"])
    parser.add_argument("--dataset", default="digits", help="dataset for the extraction / cache / grid benchmarks")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.only:
        {"translators": bench_translators, "extraction": lambda: bench_extraction(args.dataset),
         "cache": lambda: bench_cache(args.dataset), "grid": lambda: bench_grid(args.dataset)}[name]()  # fmt: skip


if __name__ == "__main__":
    main()
