"""Datasets from the user's own files: a folder of class folders, a table, any Hugging Face dataset.

Every test writes its own small files: scikit-learn's digits as 32x32 PNGs in 10 class folders,
emoji names (CLDR, English and French) and gettext sentences (English and French) as tables, and
``save_to_disk`` copies of Hugging Face datasets. Three runs of ``run.py`` check the whole path: a
classification cell on the folder, a cross-lingual retrieval cell on a CSV, and one error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from latentstitch.data import image_splits, load_dataset
from latentstitch.data.lazy_images import ImageFiles, LazyImages
from latentstitch.data.user import auto_anchors, auto_max_epochs
from latentstitch.encoders.training import loader
from latentstitch.errors import ConfigError
from latentstitch.tasks import Classification

from conftest import ROOT, run_cli

CONF = ROOT / "conf" / "dataset"
PER_CLASS = 30


def dataset_cfg(name: str, **settings):
    """The shipped ``conf/dataset/<name>.yaml`` with ``settings`` set, as a run would compose it."""
    cfg = OmegaConf.create({"paths": {"data_dir": "/nonexistent"}, "dataset": OmegaConf.load(CONF / f"{name}.yaml")}).dataset
    for key, value in settings.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def digit_png(image: np.ndarray, path: Path) -> None:
    """An 8x8 digit (0..16) as a 32x32 grey PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image * 255 / 16).astype(np.uint8)).resize((32, 32), Image.Resampling.NEAREST).save(path)


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory) -> Path:
    """10 class folders of 30 digit PNGs each (the first 30 of each class in scikit-learn's order)."""
    from sklearn.datasets import load_digits

    digits, root = load_digits(), tmp_path_factory.mktemp("digits") / "classes"
    for label in range(10):
        for i in np.flatnonzero(digits.target == label)[:PER_CLASS]:
            digit_png(digits.images[i], root / f"digit{label}" / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def emoji_frame(tmp_path_factory) -> pd.DataFrame:
    """300 emoji with their CLDR names in English and French, their group, and a split column."""
    from latentstitch.data.emoji import load_emoji

    emoji = load_emoji(tmp_path_factory.mktemp("emoji"), languages=["en", "fr"])
    rows = torch.arange(0, len(emoji), len(emoji) // 300)[:300]
    return pd.DataFrame({
        "id": [f"e{int(i)}" for i in rows],
        "en": [emoji.views["text:en"][i] for i in rows],
        "fr": [emoji.views["text:fr"][i] for i in rows],
        "group": [emoji.class_names[emoji.labels[i]] for i in rows],
        "split": ["test" if k % 5 == 0 else "val" if k % 5 == 1 else "train" for k in range(len(rows))],
    })  # fmt: skip


# ------------------------------------------------------------------------------------ folder


def test_folder_items_labels_keys_and_stratified_split(digit_folder):
    cfg = dataset_cfg("folder", root=str(digit_folder), image_size=16)
    items = load_dataset(cfg, digit_folder.parent)
    assert len(items) == 10 * PER_CLASS and items.class_names == [f"digit{c}" for c in range(10)]
    for key, label in zip(items.keys, items.labels.tolist()):  # keys are paths relative to the root
        assert key.startswith(f"digit{label}/") and (digit_folder / key).is_file()
    assert torch.bincount(items.labels[items.ids("test")]).tolist() == [6] * 10  # 0.2 of every class
    ids = torch.cat([items.ids(s) for s in ("train", "val", "test")]).sort().values
    assert ids.tolist() == list(range(len(items)))
    # the settings derived from the data: 216 train items -> 54 anchors, the small-data epoch cap
    assert (cfg.anchors, cfg.max_epochs, cfg.num_classes) == (54, 30, 10) and len(items.ids("train")) == 216
    assert len(cfg.fingerprint) == 16
    assert load_dataset(dataset_cfg("folder", root=str(digit_folder), image_size=16), "/x").keys == items.keys


def test_folder_images_are_decoded_only_when_indexed(digit_folder, tmp_path):
    import shutil

    root = tmp_path / "classes"
    shutil.copytree(digit_folder, root)
    items = load_dataset(dataset_cfg("folder", root=str(root), image_size=16), tmp_path)
    view = items.views["image"]
    assert isinstance(view, ImageFiles) and len(view) == 300
    test = items.view_of("image", items.ids("test"))
    assert isinstance(test, LazyImages) and len(test) == 60  # a subset: nothing decoded
    first = Path(root / items.keys[int(items.ids("test")[0])])
    first.write_bytes(b"not a png any more")  # broken after loading: only decoding it can notice
    items.view_of("image", items.ids("test"))  # still nothing decoded
    with pytest.raises(ConfigError, match=f"cannot decode image {first}"):
        test[0]
    image = test[1]
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])  # grey PNGs come out as RGB
    assert image.max() > 200 and image.min() < 30  # a digit: white strokes on black

    batch = next(iter(loader(items.view_of("image", items.ids("train")), items.labels_of("train"), batch_size=8)))
    assert batch[1].shape == (8, 3, 16, 16) and batch[1].dtype == torch.uint8  # how frozen encoders read it


def test_folder_decodes_for_scratch_encoders(digit_folder):
    items = load_dataset(dataset_cfg("folder", root=str(digit_folder), image_size=12), "/x")
    splits = image_splits(items, [0.5] * 3, [0.5] * 3)
    assert splits.train.images.shape == (216, 3, 12, 12) and splits.test.images.shape == (60, 3, 12, 12)
    assert splits.train.images.dtype == torch.float32 and -1.0 <= splits.train.images.min() < -0.9
    expected = items.views["image"][int(items.ids("test")[3])].float() / 255 * 2 - 1
    assert torch.allclose(splits.test.images[3], expected)


def test_folder_bad_files_and_test_root(digit_folder, tmp_path):
    bad = tmp_path / "classes" / "cat" / "broken.png"
    bad.parent.mkdir(parents=True)
    bad.write_text("hello")
    (tmp_path / "classes" / "dog").mkdir()
    digit_png(np.eye(8) * 16, tmp_path / "classes" / "dog" / "a.png")
    with pytest.raises(ConfigError, match=f"dataset.root: cannot decode image {bad}"):
        load_dataset(dataset_cfg("folder", root=str(tmp_path / "classes")), tmp_path)
    with pytest.raises(ConfigError, match=r"dataset.root=\S+/nowhere is not a directory"):
        load_dataset(dataset_cfg("folder", root=str(tmp_path / "nowhere")), tmp_path)

    test_root = tmp_path / "test_classes"
    for label in (1, 7):
        digit_png(np.eye(8) * 16 * (label / 7), test_root / f"digit{label}" / "x.png")
    items = load_dataset(dataset_cfg("folder", root=str(digit_folder), test_root=str(test_root)), tmp_path)
    assert len(items) == 302 and items.ids("test").tolist() == [300, 301]
    assert [items.keys[i] for i in (300, 301)] == ["test/digit1/x.png", "test/digit7/x.png"]
    assert items.labels[300:].tolist() == [1, 7]
    (test_root / "digit11").mkdir()
    digit_png(np.eye(8), test_root / "digit11" / "y.png")
    with pytest.raises(ConfigError, match="dataset.test_root=.* has classes that dataset.root lacks: digit11"):
        load_dataset(dataset_cfg("folder", root=str(digit_folder), test_root=str(test_root)), tmp_path)


def test_required_setting_is_one_line():
    for name, key in (("folder", "root"), ("table", "path"), ("hf", "path")):
        with pytest.raises(ConfigError, match=rf"^dataset={name} needs dataset.{key}: add dataset.{key}=\.\.\.$"):
            load_dataset(dataset_cfg(name), "/x")


def test_auto_rule():
    assert [auto_anchors(n) for n in (5, 40, 216, 1293, 2100, 20_000, 60_000)] == [5, 10, 54, 323, 525, 2000, 2000]
    assert [auto_max_epochs(n) for n in (216, 20_000, 20_001)] == [30, 30, None]
    cfg = dataset_cfg("digits")  # a built-in dataset keeps its numbers
    load_dataset(cfg, "/x")
    assert (cfg.anchors, cfg.max_epochs) == (300, 30)


# ------------------------------------------------------------------------------------- table


def table_cfg(path: Path, **settings):
    return dataset_cfg("table", path=str(path), text_columns={"en": "en", "fr": "fr"}, **settings)


def test_table_views_labels_and_split_column(emoji_frame, tmp_path):
    emoji_frame.to_csv(tmp_path / "emoji.csv", index=False)
    cfg = table_cfg(tmp_path / "emoji.csv", label_column="group", id_column="id", split_column="split")
    items = load_dataset(cfg, tmp_path)
    assert items.views["text:en"] == emoji_frame["en"].tolist() and items.views["text:fr"] == emoji_frame["fr"].tolist()
    assert "grinning face" in items.views["text:en"][:3] and items.views["text:fr"][0] == "visage rieur"
    assert items.class_names == sorted(emoji_frame["group"].unique()) and items.keys == emoji_frame["id"].tolist()
    assert [items.class_names[y] for y in items.labels.tolist()] == emoji_frame["group"].tolist()
    for split in ("train", "val", "test"):  # the split column's val rows are kept, not carved again
        assert items.ids(split).tolist() == np.flatnonzero(emoji_frame["split"] == split).tolist()
    assert cfg.anchors == 45 and cfg.num_classes == 9  # 180 train rows

    emoji_frame.to_parquet(tmp_path / "emoji.parquet")
    emoji_frame.to_json(tmp_path / "emoji.jsonl", orient="records", lines=True)
    for name in ("emoji.parquet", "emoji.jsonl"):
        other = load_dataset(table_cfg(tmp_path / name, label_column="group", id_column="id", split_column="split"), tmp_path)
        assert (other.views, other.keys, other.class_names) == (items.views, items.keys, items.class_names)
        assert torch.equal(other.labels, items.labels)
        assert all(torch.equal(other.splits[s], items.splits[s]) for s in items.splits)


def test_table_unlabeled_is_for_retrieval(emoji_frame, tmp_path):
    emoji_frame.to_csv(tmp_path / "emoji.csv", index=False)
    items = load_dataset(dataset_cfg("table", path=str(tmp_path / "emoji.csv"), text_column="en"), tmp_path)
    assert items.labels is None and items.view_names == ["text:en"] and items.views["text:en"] == emoji_frame["en"].tolist()
    assert {k: len(v) for k, v in items.splits.items()} == {"train": 216, "val": 24, "test": 60} and items.keys[:2] == ["0", "1"]
    with pytest.raises(ConfigError, match=r"dataset table has no labels: its cells are retrieval cells \(task=retrieval\)"):
        Classification().check(items, None, None)


def test_table_errors_name_the_file_setting_and_row(emoji_frame, tmp_path):
    path = tmp_path / "emoji.csv"
    emoji_frame.to_csv(path, index=False)
    columns = "its columns: id, en, fr, group, split$"
    with pytest.raises(ConfigError, match=rf"^dataset.path={path} has no column 'groupe' \(dataset.label_column\); {columns}"):
        load_dataset(table_cfg(path, label_column="groupe"), tmp_path)
    with pytest.raises(ConfigError, match=rf"has no column 'english' \(dataset.text_columns.en\); {columns}"):
        load_dataset(dataset_cfg("table", path=str(path), text_columns={"en": "english"}), tmp_path)
    holes = emoji_frame.copy()
    holes.loc[7, "fr"] = None
    holes.to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"text column 'fr' is empty in row e42 \(1 rows in all\)"):
        load_dataset(table_cfg(path, id_column="id"), tmp_path)
    odd = emoji_frame.assign(split=["training"] + emoji_frame["split"].tolist()[1:])
    odd.to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"split_column='split' holds 'training' in row 0; its values must be train, val, test"):
        load_dataset(table_cfg(path, split_column="split"), tmp_path)
    with pytest.raises(ConfigError, match=r"dataset.path=\S+/nothing.csv does not exist"):
        load_dataset(table_cfg(tmp_path / "nothing.csv"), tmp_path)


def test_table_image_column(emoji_frame, tmp_path):
    frame = emoji_frame.iloc[:40].copy()
    frame["image"] = [f"pictures/{i}.png" for i in range(40)]
    for i in range(40):
        digit_png(np.full((8, 8), i * 16 // 40), tmp_path / "pictures" / f"{i}.png")  # item i: grey level i
    frame.to_csv(tmp_path / "with_images.csv", index=False)
    items = load_dataset(table_cfg(tmp_path / "with_images.csv", image_column="image", image_size=8), tmp_path)
    assert isinstance(items.views["image"], ImageFiles) and items.view_names == ["image", "text:en", "text:fr"]
    levels = [int(items.views["image"][i][0, 0, 0]) for i in range(40)]
    assert levels == [i * 16 // 40 * 255 // 16 for i in range(40)]  # each row reads its own file
    frame.loc[3, "image"] = "pictures/missing.png"
    frame.to_csv(tmp_path / "with_images.csv", index=False)
    missing = r"dataset.image_column='image' names \S+/pictures/missing.png in row 3, which does not exist"
    with pytest.raises(ConfigError, match=missing):
        load_dataset(table_cfg(tmp_path / "with_images.csv", image_column="image"), tmp_path)


# ------------------------------------------------------------------------------ Hugging Face


def test_hf_local_copy_with_texts_and_labels(emoji_frame, tmp_path):
    import datasets

    names = sorted(emoji_frame["group"].unique())
    features = datasets.Features({"en": datasets.Value("string"), "fr": datasets.Value("string"),
                                  "group": datasets.ClassLabel(names=names)})  # fmt: skip
    parts = {split: rows for split, rows in emoji_frame.groupby("split")}
    dsd = datasets.DatasetDict({
        split: datasets.Dataset.from_dict({"en": rows["en"].tolist(), "fr": rows["fr"].tolist(),
                                           "group": [names.index(g) for g in rows["group"]]}, features=features)
        for split, rows in parts.items()
    })  # fmt: skip
    dsd.save_to_disk(str(tmp_path / "copy"))
    cfg = dataset_cfg("hf", path=str(tmp_path / "copy"), text_columns={"en": "en", "fr": "fr"}, label_column="group",
                      splits={"train": "train", "val": "val", "test": "test"})  # fmt: skip
    items = load_dataset(cfg, tmp_path)
    assert items.class_names == names and {k: len(v) for k, v in items.splits.items()} == {"train": 180, "val": 60, "test": 60}
    assert items.keys[0] == "train/0" and items.keys[-1] == "test/59"
    assert items.views["text:fr"][:180] == parts["train"]["fr"].tolist()
    assert [names[y] for y in items.labels[items.ids("test")].tolist()] == parts["test"]["group"].tolist()
    assert cfg.anchors == 45 and items.info["source"] == f"local copy {tmp_path / 'copy'}"

    # one split of string labels: the classes come from the values, test is a stratified fraction
    datasets.Dataset.from_pandas(emoji_frame[["id", "en", "group"]]).save_to_disk(str(tmp_path / "single"))
    single = load_dataset(dataset_cfg("hf", path=str(tmp_path / "single"), text_column="en", label_column="group",
                                      id_column="id"), tmp_path)  # fmt: skip
    assert single.class_names == names and single.keys == emoji_frame["id"].tolist()
    assert len(single.ids("test")) == sum(round(0.2 * n) for n in emoji_frame["group"].value_counts())  # per class
    with pytest.raises(ConfigError, match=r"has no column 'label' \(dataset.label_column\); its columns: id, en, group"):
        load_dataset(dataset_cfg("hf", path=str(tmp_path / "single"), text_column="en", label_column="label"), tmp_path)
    with pytest.raises(ConfigError, match=r"has no split test; it has \['train'\]"):
        load_dataset(dataset_cfg("hf", path=str(tmp_path / "single"), text_column="en", splits={"train": "train", "test": "test"}),
                     tmp_path)  # fmt: skip


def test_hf_image_column_decodes_per_batch(tmp_path):
    import datasets

    pictures = [Image.fromarray(np.full((20, 30, 3), 10 * i, dtype=np.uint8)) for i in range(24)]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.Value("int64")})
    data = datasets.Dataset.from_dict({"img": pictures, "label": [i % 3 for i in range(24)]}, features=features)
    copy = str(tmp_path / "pics")
    datasets.DatasetDict({"train": data.select(range(18)), "test": data.select(range(18, 24))}).save_to_disk(copy)
    items = load_dataset(dataset_cfg("hf", path=copy, image_column="img", label_column="label", image_size=8), tmp_path)
    view = items.view_of("image", items.ids("test"))
    assert isinstance(view, LazyImages) and len(view) == 6 and items.class_names == ["0", "1", "2"]
    assert view[2].shape == (3, 8, 8) and int(view[2][0, 0, 0]) == 200  # test item 2 is picture 20
    assert image_splits(items, [0.5] * 3, [0.5] * 3).train.images.shape == (18, 3, 8, 8)


def test_hf_hub_id_offline_is_one_line(tmp_path):
    code = (
        "from latentstitch.data.item_loaders import load_items; from latentstitch.errors import ConfigError\n"
        f"try: load_items('hf', {str(tmp_path)!r}, path='someone/captions', text_column='text', cache_dir={str(tmp_path)!r})\n"
        "except ConfigError as e: print(e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert proc.stdout.startswith("dataset hf is not available offline: set HF_HUB_OFFLINE=0 (online)"), proc.stderr[-2000:]
    assert proc.stdout.count("\n") == 1


# ------------------------------------------------------------------------------- end to end


def test_cli_folder_cell_and_its_resumed_sweep(digit_folder, tmp_path):
    args = ["-m", "dataset=folder", f"dataset.root={digit_folder}", "dataset.image_size=16", "encoder=mlp", "decoder=cnn",
            "logger=none", "trainer.enable_progress_bar=false", "threads=1"]  # fmt: skip
    r = run_cli(args, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((r.run_dir / "0" / "metrics.json").read_text())
    # the same sweep again: the finished cell is kept, although its anchors.num was filled in from `auto`
    again = run_cli(args, tmp_path, run_dir=r.run_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed: cells mlp:s0 -> cnn:s0" in again.stdout + again.stderr
    assert m["dataset"] == "folder" and m["num_anchors"] == 54 and m["task"] == "classification"
    # seen: native 0.97, stitched 0.98, untranslated 0.17 (chance 0.1)
    assert m["native_acc"] > 0.8 and m["stitched_over_native"] > 0.8 and m["untranslated_acc"] < 0.4


@pytest.mark.slow  # 13 s; table loading with text columns is fast in-process above, cross-lingual retrieval cells in test_paired_cells.py
def test_cli_cross_lingual_retrieval_on_a_csv(cli, tmp_path):
    """French sentences under USE, stitched into MiniLM's English space, find their own English sentence.

    150 of the 162 train sentences are anchors (the automatic count, 40, is checked by the folder cell):
    512 -> 384 dims from 40 pairs found the right sentence among 60 for 0.23 of them, from 150 pairs for 0.72.
    """
    from latentstitch.data.gettext_catalogs import load_gettext

    sentences = load_gettext(tmp_path / "data", languages=["en", "fr"], max_items=240)
    pd.DataFrame({"en": sentences.views["text:en"], "fr": sentences.views["text:fr"]}).to_csv(tmp_path / "s.csv", index=False)
    r = cli(["dataset=table", f"dataset.path={tmp_path / 's.csv'}", "dataset.text_columns={en: en, fr: fr}", "task=retrieval",
             "dataset.test_fraction=0.25", "anchors.num=150", "encoder=use", "encoder.language=fr", "decoder=minilm", "logger=none",
             "trainer.enable_progress_bar=false", "threads=1"])  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    m = r.metrics
    assert (m["encoder"], m["decoder"], m["pool"], m["num_anchors"]) == ("use:fr", "minilm:en", 60, 150)
    assert m["stitched_top1"] > 0.5 and m["stitched_top5"] > 0.8  # chance: 1/60 and 5/60 (seen: 0.72, 0.95)


@pytest.mark.slow  # 8 s; the same error is checked in-process above, and one-line CLI errors in test_export.py / test_errors.py
def test_cli_misspelled_column_is_one_line(cli, emoji_frame, tmp_path):
    emoji_frame.to_csv(tmp_path / "emoji.csv", index=False)
    r = cli(["dataset=table", f"dataset.path={tmp_path / 'emoji.csv'}", "dataset.text_column=en", "dataset.label_column=nope"])
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: dataset.path={tmp_path / 'emoji.csv'} has no column 'nope' (dataset.label_column); its columns: id, en, fr, group, split"
    ]
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # nothing built, nothing written
