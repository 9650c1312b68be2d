"""Embeddings made "elsewhere": TF-IDF + truncated SVD (scikit-learn) of a text dataset's items,
written as a parquet of ``id`` + ``embedding`` for ``encoder=precomputed``.

    python scripts/tfidf_embeddings.py outputs/tfidf_wordnet.parquet            # WordNet glosses, 256-d
    python run.py dataset=wordnet encoder=precomputed encoder.path=outputs/tfidf_wordnet.parquet decoder=minilm
    python run.py dataset=wordnet encoder=minilm decoder=precomputed decoder.space.path=outputs/tfidf_wordnet.parquet

The vectoriser and the SVD are fitted on the train split's texts only (no labels), then applied to
every item; rows are written shuffled, so matching is by id, as for any outside file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from latentstitch.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--dataset", default="wordnet", help="a config in conf/dataset/ with a text:<lang> view")
    parser.add_argument("--language", default="en")
    parser.add_argument("--dim", type=int, default=256)
    args = parser.parse_args()

    items = load_dataset(OmegaConf.load(ROOT / "conf" / "dataset" / f"{args.dataset}.yaml"), ROOT / "data")
    texts = items.require_view(f"text:{args.language}")
    train = items.ids("train").tolist()
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, stop_words="english").fit([texts[i] for i in train])
    svd = TruncatedSVD(args.dim, random_state=0).fit(tfidf.transform([texts[i] for i in train]))
    embeddings = svd.transform(tfidf.transform(texts)).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(texts))
    frame = pd.DataFrame({"id": [items.keys[i] for i in order], "embedding": list(embeddings[order])})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(args.output)
    print(f"wrote {len(frame)} embeddings of {embeddings.shape[1]} dims ({len(tfidf.vocabulary_)} words) to {args.output}")


if __name__ == "__main__":
    main()
