"""Benchmarks, each reported as a ratio of two timings taken in the same run.

    .venv/bin/python scripts/bench.py                  # all four, digits for the end-to-end ones
    .venv/bin/python scripts/bench.py --only translators extraction
    .venv/bin/python scripts/bench.py --dataset fashion_mnist   # end-to-end ones on the real default data

1. translators: fit + transform of each translator at d=768, 2000 anchors, 10,000 points, at 1 and
   2 threads, against the sum of its unavoidable kernels timed alone (see bench_translators) and
   a plain NumPy implementation of the same math (latentstitch.translation.numpy_reference).
2. extraction: latent extraction through Lightning (Trainer.predict + ordered gathering) against a
   bare torch inference loop over the same model and data.
3. cache: a cached rerun of a cell against its first (cold) run, both through run.py.
4. grid: a 3x3 grid's wall time against the sum of its encoder trainings and encodings (from the
   jobs' logs), i.e. how much the framework adds around the unavoidable work.
5. latentis (not in the default set): our ortho and linear against the paper's reference library
   (latentis 0.0.8: Procrustes, and lstsq with standard scaling) on the same data, at 1 and 2
   threads. latentis is not a dependency (it pins nothing but pulls git, faiss, ...): `make
   bench-latentis` installs it into `.bench/latentis` (no-deps, nothing of ours changes) and runs it.
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
QUIET = ["logger=none", "trainer.enable_progress_bar=false"]  # every dataset brings its own anchors and training budget


def best_of(fn, repeats: int = 3) -> float:
    """Shortest of ``repeats`` wall-clock timings of ``fn()`` (GPU work waited for)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_translators(
    repeats: int = 5,
    d: int = 768,
    k: int = 2000,
    n: int = 10_000,
    threads_list: tuple[int, ...] = (1, 2),
    numpy: bool = True,
    device: str = "cpu",
) -> dict:
    """Each translator's fit + transform on float32 latents, at 1 and at 2 threads, against

    - its unavoidable kernels, each timed alone on the same data (what no implementation of the same
      math can skip): for ``ortho`` the ``X^T Y`` product, one d x d float32 SVD (of that product)
      and the n x d x d transform matmul; for ``linear`` and ``affine`` (the same after standard
      scaling) ``X^T X``, ``X^T Y``, the d x d Cholesky factorisation and solve of the normal
      equations, and the transform matmul; for ``lortho`` linear's plus one d x d SVD (of the
      least-squares solution). Scaling, checks and the solver choice are the overhead measured.
    - the plain NumPy implementation of the same math (``numpy_reference``) in float64, the
      reference, and in float32, with NumPy's BLAS held to the same thread count (threadpoolctl).

    Best of ``repeats`` for every timing. The anchors are unrelated random spaces (well-conditioned
    ``X``, so the float32 Cholesky path; ``X^T Y`` is as ill-conditioned as a random square matrix).
    Returns ``{threads: {translator: {"kernels": ratio, "numpy64": ratio, "numpy32": ratio, "rel_diff": ...}}}``.
    """
    from threadpoolctl import threadpool_limits

    from latentstitch.translation import TRANSLATORS
    from latentstitch.translation.numpy_reference import numpy_translate
    from latentstitch.translation.scaling import StandardScaling

    g = torch.Generator().manual_seed(0)
    xa, ya = torch.randn(k, d, generator=g), torch.randn(k, d, generator=g) @ torch.randn(d, d, generator=g) / d**0.5
    x = torch.randn(n, d, generator=g)
    xa64, ya64, x64 = xa.double().numpy(), ya.double().numpy(), x.double().numpy()
    xa32, ya32, x32 = xa.numpy(), ya.numpy(), x.numpy()
    xa, ya, x = xa.to(device), ya.to(device), x.to(device)  # device=cuda: our side on the GPU, NumPy on the CPU
    xs, ys = StandardScaling().fit_transform(xa), StandardScaling().fit_transform(ya)
    gram, xty = xs.T @ xs, xs.T @ ys
    lstsq = torch.cholesky_solve(xty, torch.linalg.cholesky(gram))
    weight = torch.randn(d, d, generator=g).to(device)
    load = os.getloadavg()
    print(f"translators: d={d}, {k} anchors, {n} points, float32 in; best of {repeats}, interleaved; "
          f"{os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f}")  # fmt: skip
    print("  time(fit + transform) / time(its kernels alone), / time(NumPy same math, float64 and float32)")
    names = ("affine", "linear", "lortho", "ortho")
    timed = {
        "X^T Y": lambda: xs.T @ ys,
        "X^T X": lambda: xs.T @ xs,
        "cholesky": lambda: torch.cholesky_solve(xty, torch.linalg.cholesky(gram)),
        "svd(X^T Y)": lambda: torch.linalg.svd(xty, full_matrices=False),
        "svd(R)": lambda: torch.linalg.svd(lstsq, full_matrices=False),
        "transform": lambda: x @ weight,
    }
    numpy_timed = {}
    for name in names:
        timed[name] = lambda name=name: TRANSLATORS[name]().fit(xa, ya).transform(x)
        if numpy:  # the reference's own timings (slow: float64 SVDs and lstsq); its outputs are always compared
            numpy_timed[f"{name} NumPy64"] = lambda name=name: numpy_translate(name, xa64, ya64, x64)
            numpy_timed[f"{name} NumPy32"] = lambda name=name: numpy_translate(name, xa32, ya32, x32)
    threads_before = torch.get_num_threads()
    results: dict = {}
    for threads in threads_list:
        torch.set_num_threads(threads)
        with threadpool_limits(limits=threads):
            t = {}
            # interleaved rounds, so a burst of load elsewhere hits all timings alike; the (slow)
            # NumPy ones in rounds of their own, so that the kernel-sum ratio is taken in seconds
            for group in (timed, numpy_timed):
                t.update(dict.fromkeys(group, float("inf")))
                for _ in range(repeats):
                    for key, fn in group.items():
                        t[key] = min(t[key], best_of(fn, 1))
        least_squares = t["X^T X"] + t["X^T Y"] + t["cholesky"] + t["transform"]
        sums = {"affine": least_squares, "linear": least_squares, "lortho": least_squares + t["svd(R)"],
                "ortho": t["X^T Y"] + t["svd(X^T Y)"] + t["transform"]}  # fmt: skip
        kernels = ", ".join(f"{key} {t[key] * 1e3:.1f}" for key in list(timed)[:6])
        print(f"  {threads} thread{'s' if threads > 1 else ' '}: kernels {kernels} ms; load {os.getloadavg()[0]:.2f}")
        for name in names:
            fitted = TRANSLATORS[name]().fit(xa, ya)
            out, ref = fitted.transform(x).double().cpu().numpy(), numpy_translate(name, xa64, ya64, x64)
            rel = np.abs(out - ref).max() / np.abs(ref).max()
            vs_numpy = {bits: t[name] / t[f"{name} NumPy{bits}"] if numpy else float("nan") for bits in (64, 32)}
            ratios = f"/ kernels {t[name] / sums[name]:4.2f}  / NumPy64 {vs_numpy[64]:4.2f}  / NumPy32 {vs_numpy[32]:4.2f}"
            print(f"    {name:<7} {t[name] * 1e3:6.1f} ms  {ratios}   [{fitted._solver}; max |diff| vs NumPy64 {rel:.1e} of max |out|]")  # fmt: skip
            results.setdefault(threads, {})[name] = {"kernels": t[name] / sums[name], "numpy64": vs_numpy[64],
                                                     "numpy32": vs_numpy[32], "rel_diff": float(rel)}  # fmt: skip
    torch.set_num_threads(threads_before)
    return results


def bench_latentis(repeats: int = 5, d: int = 768, k: int = 2000, n: int = 10_000) -> None:
    """Our ``ortho`` and ``linear`` against latentis's Procrustes and standard-scaled lstsq translator.

    Same float32 data as ``bench_translators``; both sides fit + transform; best of ``repeats``,
    interleaved. The outputs are compared too (relative to the largest output), so a ratio never
    comes from doing different math.
    """
    sys.path.insert(0, str(ROOT / ".bench" / "latentis"))
    try:
        from latentis.transform.base import StandardScaling as LStandardScaling
        from latentis.transform.dim_matcher import ZeroPadding
        from latentis.transform.translate.aligner import MatrixAligner, Procrustes, Translator
        from latentis.transform.translate.functional import lstsq_align_state
    except ImportError as err:
        sys.exit(f"error: latentis is not importable ({err}); `make bench-latentis` installs it into .bench/latentis")
    from latentstitch.translation import TRANSLATORS

    def latentis_linear() -> Translator:
        return Translator(aligner=MatrixAligner(name="lstsq", align_fn_state=lstsq_align_state),
                          x_transform=LStandardScaling(), y_transform=LStandardScaling(), dim_matcher=ZeroPadding())  # fmt: skip

    g = torch.Generator().manual_seed(0)
    xa, ya = torch.randn(k, d, generator=g), torch.randn(k, d, generator=g) @ torch.randn(d, d, generator=g) / d**0.5
    x = torch.randn(n, d, generator=g)
    theirs = {"ortho": Procrustes, "linear": latentis_linear}
    print(f"latentis: d={d}, {k} anchors, {n} points, float32; best of {repeats}, interleaved; load {os.getloadavg()[0]:.2f}")
    print("  time(ours fit + transform) / time(latentis fit + transform)")
    threads_before = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        fns = {}
        for name, make in theirs.items():
            fns[f"ours {name}"] = lambda name=name: TRANSLATORS[name]().fit(xa, ya).transform(x)
            fns[f"latentis {name}"] = lambda make=make: make().fit(xa, ya).transform(x)[0]
        t = dict.fromkeys(fns, float("inf"))
        for _ in range(repeats):
            for key, fn in fns.items():
                t[key] = min(t[key], best_of(fn, 1))
        for name in theirs:
            ours, ref = fns[f"ours {name}"]().double(), fns[f"latentis {name}"]().double()
            rel = ((ours - ref).abs().max() / ref.abs().max()).item()
            print(f"  {threads} thread{'s' if threads > 1 else ' '}: {name:<6} ours {t[f'ours {name}'] * 1e3:6.1f} ms, "
                  f"latentis {t[f'latentis {name}'] * 1e3:6.1f} ms, ratio {t[f'ours {name}'] / t[f'latentis {name}']:.2f}"
                  f"   [max |diff| {rel:.1e} of max |out|]")  # fmt: skip
    torch.set_num_threads(threads_before)


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

        def bare(module=module, images=images):
            with torch.no_grad():
                return torch.cat([module.features(chunk) for chunk in images.split(256)])

        def ours_fn(module=module, images=images, labels=labels, trainer_cfg=trainer_cfg):
            return extract_features(module, images, labels, 256, trainer_cfg)

        ours = best_of(ours_fn)
        ref = best_of(bare)
        assert torch.allclose(extract_features(module, images, labels, 256, trainer_cfg), bare(), atol=1e-5)
        print(
            f"extraction: {name} on {len(labels)} {dataset} test images, time(Trainer.predict + gather) / time(bare torch loop): {ours / ref:.2f}"
        )
    bench_frozen_extraction(ds)


def bench_frozen_extraction(ds, name: str = "mobilenetv2", batch_size: int = 64) -> float:
    """A pretrained encoder's extraction through our path (Trainer.predict over raw pixels, the
    encoder preprocessing each batch, ordered gather) against a bare ``torch.inference_mode`` loop
    over the same raw batches, same batch size and threads. Returns bare / ours (throughput ratio)."""
    from omegaconf import OmegaConf

    from latentstitch.data import load_dataset
    from latentstitch.encoders.training import FrozenModule, extract_features
    from latentstitch.encoders.zoo import build_frozen

    items = load_dataset(ds, ROOT / "data")
    ids = items.ids("test")
    raw, labels = items.view_of("image", ids), items.labels_of("test")
    encoder = build_frozen(OmegaConf.load(ROOT / "conf" / "encoder" / f"{name}.yaml")).load()
    module = FrozenModule(encoder)
    trainer_cfg = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}

    def bare():
        with torch.inference_mode():
            return torch.cat([encoder(raw[i : i + batch_size]) for i in range(0, len(raw), batch_size)])

    def ours_fn():
        return extract_features(module, raw, labels, batch_size, trainer_cfg)

    assert torch.allclose(ours_fn(), bare(), atol=1e-4)
    t_ours, t_bare = best_of(ours_fn, 2), best_of(bare, 2)
    print(f"extraction: pretrained {name} on {len(labels)} {ds.name} test images ({torch.get_num_threads()} threads, batch {batch_size}), "
          f"throughput(ours) / throughput(bare inference_mode loop): {t_bare / t_ours:.2f}")  # fmt: skip
    return t_bare / t_ours


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
    return [f"dataset={dataset}", "encoder=mlp", "decoder=cnn", *QUIET]


def bench_cache(dataset: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        args = e2e_args(dataset)
        cold, _ = run_cli(args, Path(tmp) / "cache", Path(tmp) / "a")
        warm, log = run_cli(args, Path(tmp) / "cache", Path(tmp) / "b")
        assert "cache miss" not in log
        print(
            f"cache: cell mlp -> cnn on {dataset}, time(cached rerun) / time(first run): {warm / cold:.2f}  (process start-up included)"
        )


def bench_grid(dataset: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        args = ["-m", *e2e_args(dataset), "encoder=mlp,cnn,resnet", "decoder=mlp,cnn,resnet"]
        wall, _ = run_cli(args, Path(tmp) / "cache", Path(tmp) / "sweep")
        logs = "".join(p.read_text() for p in (Path(tmp) / "sweep").glob("*/*.log"))
        work = sum(float(t) for t in re.findall(r"(?:trained encoder \S+|encoded .*?split \(\d+ samples\)) in ([\d.]+) s", logs))
        print(f"grid: 3x3 on {dataset}, time(whole sweep) / sum(encoder trainings + encodings): {wall / work:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="latentstitch benchmarks (ratios from one run)")
    parser.add_argument("--only", nargs="*", default=["translators", "extraction", "cache", "grid"])
    parser.add_argument("--dataset", default="digits", help="dataset for the extraction / cache / grid benchmarks")
    parser.add_argument("--device", default="cpu", help="where the translator benchmark runs: cpu or cuda (1 thread setting)")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.only:
        translators = (
            (lambda: bench_translators(threads_list=(1,), numpy=False, device=args.device))
            if args.device != "cpu"
            else bench_translators
        )
        {"translators": translators, "latentis": bench_latentis, "extraction": lambda: bench_extraction(args.dataset),
         "cache": lambda: bench_cache(args.dataset), "grid": lambda: bench_grid(args.dataset)}[name]()  # fmt: skip


if __name__ == "__main__":
    main()
