"""CaSpeR: the spectral loss against a hand-built Laplacian, its gradients, the kNN graph, the
reservoir buffer, the class-incremental split, the callback, and one tiny run through run.py."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from latentstitch.continual import (
    CasperCallback,
    CasperRegularizer,
    ReservoirBuffer,
    casper_loss,
    knn_graph,
    laplacian_eigenvalues,
    squared_distances,
)
from latentstitch.continual.er import ERModule, SmallCNN, average_accuracy, class_incremental_split, forgetting, make_tasks

from conftest import ROOT, run_cli


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one intra-op thread is fastest, and on a busy machine two run ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def laplacian_by_hand(z: np.ndarray, k: int) -> np.ndarray:
    """Symmetric kNN graph (squared Euclidean, self excluded) and L = I - D^-1/2 A D^-1/2, with loops."""
    n = len(z)
    d = np.array([[float(((z[i] - z[j]) ** 2).sum()) for j in range(n)] for i in range(n)])
    a = np.zeros((n, n))
    for i in range(n):
        others = [j for j in np.argsort(d[i], kind="stable") if j != i]
        for j in others[:k]:
            a[i, j] = a[j, i] = 1.0
    deg = a.sum(1)
    return np.eye(n) - a / np.sqrt(np.outer(deg, deg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_equals_direct_eigendecomposition(seed):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(14, 5, generator=gen, dtype=torch.float64)
    evals = np.linalg.eigvalsh(laplacian_by_hand(z.numpy(), k=3))
    assert abs(evals[0]) < 1e-10  # lambda_0 = 0 for any graph Laplacian
    p = 2
    code = casper_loss(z, None, p, k=3)  # authors' code: lambda_0..lambda_p summed, minus lambda_{p+1}
    paper = casper_loss(z, None, p, k=3, convention="paper")  # paper's text: lambda_0..lambda_{p-1}, minus lambda_p
    assert float(code) == pytest.approx(evals[: p + 1].sum() - evals[p + 1], abs=1e-10)
    assert float(paper) == pytest.approx(evals[:p].sum() - evals[p], abs=1e-10)
    np.testing.assert_allclose(laplacian_eigenvalues(z, k=3).numpy(), evals, atol=1e-10)
    labels = torch.tensor([0, 1] * 7)  # p from the labels when not given
    assert float(casper_loss(z, labels, None, k=3)) == pytest.approx(float(code), abs=1e-12)


def test_separated_clusters_give_zero_eigenvalues():
    """Two far-apart clusters with k below the cluster size: two components, lambda_0 = lambda_1 = 0,
    so the paper's loss is -lambda_2 and the code's is lambda_2 - lambda_3."""
    gen = torch.Generator().manual_seed(0)
    z = torch.cat(
        [torch.randn(8, 4, generator=gen, dtype=torch.float64), 100 + torch.randn(8, 4, generator=gen, dtype=torch.float64)]
    )
    evals = laplacian_eigenvalues(z, k=3)
    assert evals[:2].abs().max() < 1e-10 and evals[2] > 1e-3
    assert float(casper_loss(z, None, 2, k=3, convention="paper")) == pytest.approx(-float(evals[2]), abs=1e-10)
    assert float(casper_loss(z, None, 2, k=3)) == pytest.approx(float(evals[2] - evals[3]), abs=1e-10)


def test_knn_graph_is_symmetric_hard_and_differentiable():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(20, 6, generator=gen, requires_grad=True)
    a = knn_graph(squared_distances(z), k=4)
    assert torch.equal(a, a.T)
    assert set(a.detach().unique().tolist()) <= {0.0, 1.0}  # forward: exactly the hard graph
    assert a.diagonal().abs().max() == 0
    assert (a.detach().sum(1) >= 4).all()  # at least its own k neighbours
    weights = torch.randn(20, 20, generator=gen)
    (a * weights).sum().backward()  # backward: the continuous relaxation
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    directed = knn_graph(squared_distances(z.detach()), k=4, symmetric=False)
    assert (directed.sum(1) == 4).all() and not torch.equal(directed, directed.T)


def test_gradients_stay_finite_over_random_steps():
    """A small feature net trained on the spectral loss alone for 300 steps on random balanced
    batches, plus degenerate inputs (duplicates, all-equal features): no NaN or inf anywhere."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU())
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(1)
    bad = 0
    for step in range(300):
        x = torch.randn(32, 8, generator=gen) * (0.1 + 3 * (step % 3))
        if step % 50 == 7:
            x[1:4] = x[0]  # exact duplicates: zero distances, ties in the kNN
        loss = casper_loss(net(x), None, 2, k=10)
        opt.zero_grad()
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in net.parameters()])
        bad += int(not torch.isfinite(loss)) + int(not torch.isfinite(grads).all())
        opt.step()
    assert bad == 0
    z = torch.ones(12, 4, requires_grad=True)  # a fully collapsed batch
    loss = casper_loss(z, None, 2, k=5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_loss_needs_enough_samples_and_a_known_convention():
    with pytest.raises(ValueError, match="at least 4 samples"):
        casper_loss(torch.randn(3, 2), None, 2)
    with pytest.raises(ValueError, match="convention"):
        casper_loss(torch.randn(8, 2), None, 2, convention="other")


def test_reservoir_keeps_a_uniform_sample_and_never_overflows():
    capacity, stream, reps = 20, 200, 400
    counts = np.zeros(stream)
    gen = torch.Generator().manual_seed(0)
    for _ in range(reps):
        buf = ReservoirBuffer(capacity, gen)
        for start in range(0, stream, 7):
            ids = torch.arange(start, min(start + 7, stream))
            buf.add(ids.float().view(-1, 1), ids % 3)
            assert len(buf) <= capacity and len(buf) == min(buf.num_seen, capacity)
        x, _ = buf.data()
        assert len(x) == capacity and x.unique().numel() == capacity  # no item twice
        counts[x.squeeze(1).long().numpy()] += 1
    freq = counts / reps  # each item kept with probability capacity / stream = 0.1
    assert abs(freq.mean() - 0.1) < 1e-12
    assert np.abs(freq - 0.1).max() < 0.07  # 4.7 standard errors
    deciles = counts.reshape(10, -1).sum(1)  # kept items by position in the stream
    expected = reps * capacity / 10
    chi2 = float(((deciles - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # chi-square, 9 dof, p = 0.001
    early, late = counts[:20].mean(), counts[-20:].mean()
    assert abs(early - late) < 0.3 * reps * 0.1  # no bias toward the start or the end


def test_buffer_samples():
    buf = ReservoirBuffer(50, torch.Generator().manual_seed(0))
    buf.add(torch.arange(30).float().view(-1, 1), torch.arange(30) % 5)
    x, y = buf.sample(100)
    assert len(y) == 30 and x.unique().numel() == 30
    gen = torch.Generator().manual_seed(0)
    x, y = buf.balanced_sample(2, 4, gen)
    classes, counts = y.unique(return_counts=True)
    assert len(classes) == 2 and counts.tolist() == [4, 4]
    assert ((x.squeeze(1).long() % 5) == y).all()  # inputs stay with their labels
    _, y = buf.balanced_sample(2, 100, gen)
    assert y.unique(return_counts=True)[1].tolist() == [6, 6]  # capped at what a class has


def test_class_incremental_split():
    assert class_incremental_split(5, 2) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert class_incremental_split(2, 3, [9, 8, 7, 6, 5, 4]) == [[9, 8, 7], [6, 5, 4]]
    with pytest.raises(ValueError):
        class_incremental_split(6, 2, list(range(10)))  # 12 classes needed, 10 given
    train = torch.arange(100) % 10
    test = torch.arange(50) % 10
    tasks = make_tasks(train, test, class_incremental_split(5, 2))
    for t, task in enumerate(tasks):
        assert sorted(train[task.train].unique().tolist()) == [2 * t, 2 * t + 1] == sorted(test[task.test].unique().tolist())
        assert len(task.train) == 20 and len(task.test) == 10
    assert sorted(torch.cat([t.train for t in tasks]).tolist()) == list(range(100))


def test_average_accuracy_and_forgetting():
    matrix = [[0.9], [0.6, 0.8], [0.7, 0.5, 1.0]]
    assert average_accuracy(matrix[-1]) == pytest.approx(2.2 / 3)
    assert forgetting(matrix) == pytest.approx(((0.9 - 0.7) + (0.8 - 0.5)) / 2)
    assert forgetting([[0.9]]) == 0.0


def test_callback_equals_the_loss_term():
    """CasperCallback (backward of rho * loss after the task loss's backward) gives the gradient of
    task loss + rho * loss, i.e. what the loss-term form gives."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 28, 28), torch.arange(16) % 4
    grads = []
    for form in ("callback", "term"):
        torch.manual_seed(0)
        buf = ReservoirBuffer(64, torch.Generator().manual_seed(0))
        buf.add(torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(1)), torch.arange(64) % 4)
        module = ERModule(SmallCNN(), buf, replay_batch_size=8, replay_seed=3)
        module.current_task = 1
        reg = CasperRegularizer(
            num_classes_per_task=2, samples_per_class=8, k=5, rho=0.5, generator=torch.Generator().manual_seed(2)
        )
        loss = module.training_step((x, y), 0)
        if form == "callback":
            loss.backward()
            CasperCallback(reg).on_after_backward(None, module)
        else:
            reg.task = module.current_task
            (loss + reg(module.features, buf)).backward()
        assert len(reg.history) == 1 and math.isfinite(reg.history[0])
        grads.append(torch.cat([p.grad.flatten() for p in module.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])
    reg = CasperRegularizer(num_classes_per_task=2)
    assert float(reg(lambda t: t, buf)) == 0.0  # task 0: no regulariser


@pytest.mark.slow  # 18 s: the regulariser's and the metrics' unit tests stay fast
def test_preset_runs_end_to_end(tmp_path):
    r = run_cli(
        ["+experiment=casper", "logger=none", "casper.seeds=[0]", "casper.tasks=2", "casper.subset=5000", "casper.test_subset=1000"],
        tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    with open(r.run_dir / "summary.csv") as f:
        summary = {row["method"]: row for row in csv.DictReader(f)}
    assert set(summary) == {"er", "er_casper"}
    for row in summary.values():
        assert 0.5 < float(row["final_avg_acc_mean"]) <= 1 and -1 <= float(row["forgetting_mean"]) <= 1
        assert row["seeds"] == "1" and float(row["final_avg_acc_std"]) == 0
    assert float(summary["er_casper"]["casper_ms_per_call"]) > 0
    with open(r.run_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4  # 2 methods x 2 tasks
    first = [row for row in rows if row["after_task"] == "0"]
    assert all(float(row["acc_task0"]) > 0.8 for row in first)  # task 1 is learnt
    for name in ("per_task_accuracy.png", "laplacian_spectrum.png", "spectra.csv", "metrics.json"):
        assert (r.run_dir / name).stat().st_size > 0
    assert "ER + CaSpeR" in r.stdout and "final avg acc" in r.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"methods": ["ewc"]}, "casper.methods"),
        ({"tasks": 6}, "fit in the dataset"),
        ({"m": 1}, "casper.m"),
        ({"rho": -1.0}, "rho"),
    ],
)
def test_bad_settings_are_one_line_errors(override, message):
    from omegaconf import OmegaConf

    from latentstitch.errors import ConfigError
    from latentstitch.experiments.casper import settings

    preset = OmegaConf.load(ROOT / "conf" / "experiment" / "casper.yaml")
    cfg = OmegaConf.create({"dataset": {"num_classes": 10}, "casper": {**OmegaConf.to_container(preset.casper), **override}})
    with pytest.raises(ConfigError, match=message):
        settings(cfg)


def test_a_diverged_network_is_skipped_not_fatal():
    """With a large rho SGD can diverge (measured: rho = 1.0, seed 3, features ~1e19 in task 5):
    the regulariser then skips the batch and the buffer spectrum is empty, instead of raising."""
    from latentstitch.experiments.casper import buffer_spectrum

    class Huge(nn.Module):
        def features(self, x):
            return x.flatten(1) * 1e20

    buf = ReservoirBuffer(40, torch.Generator().manual_seed(0))
    buf.add(torch.randn(40, 1, 2, 2, generator=torch.Generator().manual_seed(1)), torch.arange(40) % 2)
    reg = CasperRegularizer(num_classes_per_task=2, samples_per_class=8, k=5, task=1)
    assert float(reg(Huge().features, buf)) == 0.0 and reg.skipped == 1 and reg.history == []
    assert float(reg(lambda x: x.flatten(1) * torch.nan, buf)) == 0.0 and reg.skipped == 2
    assert buffer_spectrum(Huge(), buf, k=5) == []
    assert float(reg(lambda x: x.flatten(1), buf)) != 0.0 and len(reg.history) == 1  # a sane network is regularised
