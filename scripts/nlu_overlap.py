#!/usr/bin/env python
"""How close a test set is to the training data, and what a plain classifier scores on it
compared with cross-validation: tells whether a gap between held-out and cross-validation
scores comes from the data or from the Rasa pipeline.

    .venv-rasa/bin/python scripts/nlu_overlap.py
    .venv-rasa/bin/python scripts/nlu_overlap.py --test-file tests/nlu/test.yml --folds 3

Runs with the Rasa environment's Python (it has scikit-learn). Texts are lower-cased and
described by TF-IDF of character 1-4-grams and word 1-2-grams, close to the sparse features
of the shipped pipeline. For each evaluated example, "nearest" is the cosine similarity of
its closest training example (1 = the same text). Two classifiers are scored: the nearest
training example's intent (1-NN) and a logistic regression. Rows:

- held-out: trained on all training data, evaluated on the test file;
- held-out, 1-1/k of the data: trained on each fold's training part, evaluated on the test
  file (the same amount of training data as cross-validation, averaged);
- k-fold CV: every training example evaluated by a model trained on the other folds.

If the held-out rows score far above the CV row with both classifiers, the test phrasings
are closer to the training examples than the training examples are to each other: the gap
is in the data, not in the pipeline.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.nlu.data import read_examples  # noqa: E402

Labels = npt.NDArray[np.str_]


@dataclass
class Row:
    name: str
    n: int
    nearest_median: float
    nearest_above_08: float
    nn_macro_f1: float
    lr_accuracy: float
    lr_macro_f1: float


def _fit_predict(
    train: Sequence[str], labels: Labels, evaluated: Sequence[str]
) -> tuple[npt.NDArray[np.float64], Labels, Labels]:
    """Nearest-training similarity, 1-NN predictions and logistic-regression predictions."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_union

    features = make_union(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4)),
        TfidfVectorizer(ngram_range=(1, 2)),
    ).fit(train)
    a, b = features.transform(train), features.transform(evaluated)
    similarity = (b @ a.T).toarray() / 2  # two unit-length halves
    nearest = labels[similarity.argmax(axis=1)]
    logreg = LogisticRegression(max_iter=2000, C=10.0).fit(a, labels).predict(b)
    return similarity.max(axis=1), nearest, logreg


def _row(
    name: str, truth: Labels, similarity: npt.NDArray[np.float64], nn: Labels, lr: Labels
) -> Row:
    from sklearn.metrics import accuracy_score, f1_score

    return Row(
        name,
        len(truth),
        float(np.median(similarity)),
        float((similarity > 0.8).mean()),
        float(f1_score(truth, nn, average="macro")),
        float(accuracy_score(truth, lr)),
        float(f1_score(truth, lr, average="macro")),
    )


def measure(train_dir: Path, test_file: Path, folds: int, seed: int = 0) -> list[Row]:
    from sklearn.model_selection import StratifiedKFold

    train, test = read_examples(train_dir), read_examples(test_file)
    if not train or not test:
        raise ValueError(f"no examples in {train_dir if not train else test_file}")
    x = [e.text.lower() for e in train]
    y = np.array([e.intent for e in train])
    xt = [e.text.lower() for e in test]
    yt = np.array([e.intent for e in test])
    rows = [_row("held-out", yt, *_fit_predict(x, y, xt))]

    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    partial = [_row("", yt, *_fit_predict([x[i] for i in tr], y[tr], xt)) for tr, _ in splits]
    rows.append(
        Row(
            f"held-out, {folds - 1}/{folds} of data",
            len(xt),
            float(np.mean([r.nearest_median for r in partial])),
            float(np.mean([r.nearest_above_08 for r in partial])),
            float(np.mean([r.nn_macro_f1 for r in partial])),
            float(np.mean([r.lr_accuracy for r in partial])),
            float(np.mean([r.lr_macro_f1 for r in partial])),
        )
    )

    similarity = np.zeros(len(x))
    nn, lr = np.empty_like(y), np.empty_like(y)
    for tr, te in splits:
        s, a, b = _fit_predict([x[i] for i in tr], y[tr], [x[i] for i in te])
        similarity[te], nn[te], lr[te] = s, a, b
    rows.append(_row(f"{folds}-fold CV", y, similarity, nn, lr))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT / "nlu-data" / "data")
    p.add_argument("--test-file", type=Path, default=ROOT / "tests" / "nlu" / "test.yml")
    p.add_argument("--folds", type=int, default=3)
    args = p.parse_args(argv)
    if args.folds < 2:
        p.error("--folds must be at least 2")
    try:
        rows = measure(args.data, args.test_file, args.folds)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{'evaluated':<24} {'n':>5} {'nearest median':>15} {'nearest >0.8':>13} "
        f"{'1-NN macro-F1':>14} {'LR accuracy':>12} {'LR macro-F1':>12}"
    )
    for r in rows:
        print(
            f"{r.name:<24} {r.n:>5} {r.nearest_median:>15.2f} {r.nearest_above_08:>13.2f} "
            f"{r.nn_macro_f1:>14.3f} {r.lr_accuracy:>12.3f} {r.lr_macro_f1:>12.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
