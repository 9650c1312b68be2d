"""+export=stitched: the exported model, loaded in a fresh process without Hydra, predicts exactly
what the cell scored; bad exports fail before training with one line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, TINY

# a fresh interpreter: load the export, check Hydra and Lightning stayed out, then score the test split
CHECK = textwrap.dedent(
    """
    import json, sys
    import latentstitch
    model = latentstitch.load_stitched(sys.argv[1])
    heavy = [m for m in ("hydra", "lightning", "omegaconf") if m in sys.modules]
    from latentstitch.data import load_dataset
    items = load_dataset(model.config["dataset"], sys.argv[2])
    ids = items.ids("test")
    predicted = model.predict(items.view_of("image", ids))
    truth = [model.class_names[i] for i in items.labels_of("test").tolist()]
    print(json.dumps({"heavy": heavy, "acc": sum(p == t for p, t in zip(predicted, truth)) / len(truth), "n": len(truth)}))
    """
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Two digits cells (a translator and a projection method), each exported."""
    from conftest import run_cli

    tmp = tmp_path_factory.mktemp("export")
    result = run_cli(["-m", *TINY, "translator=ortho,relative", "+export=stitched"], tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.run_dir


@pytest.mark.parametrize("job", ["0", "1"], ids=["ortho", "relative"])
def test_the_exported_model_reproduces_the_stitched_accuracy_in_a_fresh_process(exported, job):
    job_dir = exported / job
    metrics = json.loads((job_dir / "metrics.json").read_text())
    stitched = job_dir / "stitched"
    assert metrics["export_dir"] == str(stitched)
    assert sorted(p.name for p in stitched.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    proc = subprocess.run([sys.executable, "-c", CHECK, str(stitched), str(ROOT / "data")], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["heavy"] == []  # loading needs neither Hydra nor Lightning
    assert seen["n"] == 360
    assert seen["acc"] == metrics["stitched_acc"]  # the same predictions, not only a close score
    assert seen["acc"] > 0.8
    config = json.loads((stitched / "config.json").read_text())
    assert len(config["anchors"]["keys"]) == metrics["num_anchors"] == 300
    card = (stitched / "README.md").read_text()
    assert f"| stitched_acc | {metrics['stitched_acc']:.4f} |" in card and "load_stitched" in card


def test_predict_script_reads_image_files(exported, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    files = []
    for i in range(6):  # digits' own images, as a user's PNG files
        path = tmp_path / f"digit{i}.png"
        Image.fromarray((digits.images[i] * 255 / 16).astype("uint8"), mode="L").save(path)
        files.append(str(path))
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), str(exported / "0" / "stitched"), *files],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == files
    predicted = [line.split("\t")[1] for line in lines]
    assert sum(p == str(t) for p, t in zip(predicted, digits.target[:6])) >= 5


def test_predict_script_on_a_directory_that_is_not_an_export(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), str(tmp_path), "x.png"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path} is not a stitched model directory: it has no config.json "
                                                "(write one with +export=stitched)"]  # fmt: skip


def test_an_existing_export_dir_fails_before_training(cli, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    result = cli([*TINY, "+export=stitched", f"export.dir={taken}"])
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: export.dir={taken} already exists: pick another export.dir or remove it"]
    assert not any((tmp_path / "cache").glob("*/*")), "nothing may be cached by a run that fails its checks"
    assert list(taken.iterdir()) == []


@pytest.mark.slow  # ~60 s of text encoding; the export and fresh-process load paths run fast in the digits tests above
def test_a_pretrained_text_source_is_exported_as_a_reference(tmp_path):
    from conftest import run_cli

    args = [
        "dataset=wordnet",
        "encoder=minilm",
        "decoder=use",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "+export=stitched",
    ]
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    stitched = result.run_dir / "stitched"
    config = json.loads((stitched / "config.json").read_text())
    assert config["source"]["kind"] == "frozen" and config["source"]["identity"]["encoder"] == "MiniLM"
    glosses = ["a large carnivorous feline with a tawny coat", "a hand tool for cutting wood"]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), str(stitched), *glosses], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [line.split("\t")[1] for line in proc.stdout.strip().splitlines()] == ["noun.animal", "noun.artifact"]
