"""Why each process gets cores / processes-at-once intra-op threads: a tiny MLP trained with 1 and
with 2 torch threads, on a quiet machine and while another process keeps one core busy.

    .venv/bin/python scripts/threads_oversubscription.py [--steps 210]

Prints each time and the ratios (2 threads / 1 thread), all measured in this one run. With a core
taken, a second intra-op thread has no core of its own and the pool's threads spin waiting for it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch
from torch import nn


def busy(stop: mp.Event) -> None:
    """Keep one core busy (pure Python, no threads of its own) until told to stop."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def train_time(threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(256, 64), torch.randint(0, 10, (256,))
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=210)
    args = parser.parse_args()
    train_time(1, 10)  # warm-up
    quiet = {t: train_time(t, args.steps) for t in (1, 2)}
    stop = mp.Event()
    other = mp.Process(target=busy, args=(stop,), daemon=True)
    other.start()
    time.sleep(0.5)
    try:
        loaded = {t: train_time(t, args.steps) for t in (1, 2)}
    finally:
        stop.set()
        other.join()
    print(f"tiny MLP, {args.steps} steps of batch 256, {torch.get_num_threads()} max threads, {mp.cpu_count()} CPUs")
    print(f"  quiet machine:         1 thread {quiet[1]:.2f} s, 2 threads {quiet[2]:.2f} s, ratio 2/1 {quiet[2] / quiet[1]:.2f}")
    print(f"  another process busy:  1 thread {loaded[1]:.2f} s, 2 threads {loaded[2]:.2f} s, ratio 2/1 {loaded[2] / loaded[1]:.2f}")


if __name__ == "__main__":
    main()
