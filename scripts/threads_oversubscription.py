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


def busy(stop: mp.Event, kind: str) -> None:
    """Keep a core busy until told to stop: pure Python, or a torch job (another cell) with 1 or 2
    intra-op threads (``torch-2``: both processes oversubscribed, as two cells with the defaults of old)."""
    if kind.startswith("torch"):
        torch.set_num_threads(int(kind[-1]))
        a = torch.randn(512, 512)
        while not stop.is_set():
            a = torch.tanh(a @ a / 512)
        return
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
    rows = {"quiet machine": {t: train_time(t, args.steps) for t in (1, 2)}}
    for kind in ("python", "torch-1", "torch-2"):
        ctx = mp.get_context("spawn")  # a forked child of a process whose OpenMP pool ran would hang in it
        stop = ctx.Event()
        other = ctx.Process(target=busy, args=(stop, kind), daemon=True)
        other.start()
        time.sleep(3)  # the spawned process imports torch first
        try:
            rows[f"{kind} process busy"] = {t: train_time(t, args.steps) for t in (1, 2)}
        finally:
            stop.set()
            other.join()
    print(f"tiny MLP, {args.steps} steps of batch 256, {mp.cpu_count()} CPUs")
    for name, t in rows.items():
        print(f"  {name:<24} 1 thread {t[1]:6.2f} s, 2 threads {t[2]:6.2f} s, ratio 2/1 {t[2] / t[1]:6.2f}")


if __name__ == "__main__":
    main()
