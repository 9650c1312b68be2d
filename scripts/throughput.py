"""Encoding throughput (samples/s) of each offline frozen encoder, one batch size, one thread count.

    .venv/bin/python scripts/throughput.py                      # all offline models, batch 64, 2 threads
    .venv/bin/python scripts/throughput.py --threads 1 --models lite0 use

Images are 64x64 RGB uint8 "emoji-like" pictures (a few coloured shapes on white; each encoder
resizes them to its own resolution per batch); texts are short sentences. Each model is loaded
and warmed up with one batch, then timed over at least --min-seconds (and --min-batches). Other
jobs on the machine change the numbers: note the load (printed from os.getloadavg()).
"""

from __future__ import annotations

import argparse
import os
import random
import time

import torch

MODELS = ["lite0", "lite2", "mobilenetv2", "minilm", "use", "e5", "mpnet"]


def build(name: str, threads: int):
    from latentstitch.encoders import pretrained as p

    return {
        "lite0": lambda: p.EfficientNetLite("lite0"),
        "lite2": lambda: p.EfficientNetLite("lite2"),
        "mobilenetv2": p.MobileNetV2,
        "minilm": p.MiniLM,
        "use": lambda: p.USE(threads=threads),
        "e5": lambda: p.E5(threads=threads),
        "mpnet": p.MPNet,
    }[name]()


def emoji_like(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) uint8: white background with 1-3 coloured discs and boxes."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, 3, size, size), 255, dtype=torch.uint8)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in range(n):
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            color = torch.randint(0, 256, (3, 1), generator=g, dtype=torch.int64).to(torch.uint8)
            cy, cx, r = (int(v) for v in torch.randint(8, size - 8, (3,), generator=g))
            r = max(4, r // 3)
            mask = (
                ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
                if torch.rand(1, generator=g) < 0.5
                else ((yy - cy).abs() <= r) & ((xx - cx).abs() <= r)
            )
            images[i][:, mask] = color
    return images


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    subjects = ["The cat", "A child", "My neighbour", "The old train", "This program", "The committee", "A small bird"]
    verbs = ["opens", "watches", "repairs", "forgets", "describes", "follows", "paints"]
    objects = ["the red door", "a long letter", "the evening news", "an empty file", "the mountain road", "two green apples"]
    tails = ["today.", "again.", "before dinner.", "without a word.", "in the rain.", "every Monday."]
    return [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(tails)}" for _ in range(n)]


def measure(name: str, batch_size: int, threads: int, min_seconds: float, min_batches: int) -> dict:
    start = time.perf_counter()
    encoder = build(name, threads).load()
    load_s = time.perf_counter() - start
    batches = (
        [emoji_like(batch_size, seed=s) for s in range(3)]
        if encoder.view == "image"
        else [sentences(batch_size, seed=s) for s in range(3)]
    )
    encoder(batches[0])  # warm-up
    done, start = 0, time.perf_counter()
    while done < min_batches or time.perf_counter() - start < min_seconds:
        encoder(batches[done % len(batches)])
        done += 1
    elapsed = time.perf_counter() - start
    return {
        "model": name,
        "view": encoder.view,
        "dim": encoder.dim,
        "load_s": load_s,
        "batches": done,
        "samples_per_s": done * batch_size / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (and USE/E5 threads)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--min-seconds", type=float, default=5.0)
    parser.add_argument("--min-batches", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} batch={args.batch_size} load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'model':<12} {'view':<5} {'dim':>5} {'load s':>7} {'batches':>7} {'samples/s':>10}")
    for name in args.models:
        r = measure(name, args.batch_size, args.threads, args.min_seconds, args.min_batches)
        print(
            f"{r['model']:<12} {r['view']:<5} {r['dim']:>5} {r['load_s']:>7.2f} {r['batches']:>7d} {r['samples_per_s']:>10.1f}",
            flush=True,
        )
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
