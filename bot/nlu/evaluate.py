"""Evaluation of a trained Rasa model on a held-out test file, through a real Rasa server's
``/model/parse``: per-intent precision/recall/F1, macro and weighted averages (in scope),
out-of-scope/fallback detection, FAQ response-selector accuracy, the misclassified
examples, and a sweep of fallback thresholds over the model's own confidences."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.nlu.data import Example

OUT_OF_SCOPE = "out_of_scope"
FALLBACK = "nlu_fallback"
NOT_UNDERSTOOD = frozenset({OUT_OF_SCOPE, FALLBACK})
# The FAQ answer is given only when the response selector is at least this sure; below it the
# bot treats the message as not understood (``action_faq`` in nlu-data/actions/actions.py
# uses the same number, FAQ_MIN_CONFIDENCE, and a test checks they agree).
FAQ_MIN_CONFIDENCE = 0.25


@dataclass(frozen=True)
class Prediction:
    """What the model said about one example."""

    example: Example
    intent: str
    confidence: float
    ranking: tuple[tuple[str, float], ...]  # without nlu_fallback, best first
    response_key: str | None  # e.g. "faq/wifi", from the response selector
    response_confidence: float = 0.0

    def ranked_without_fallback(self) -> tuple[tuple[str, float], ...]:
        return self.ranking


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Report:
    examples: int
    in_scope_examples: int
    per_intent: dict[str, Scores]
    macro_f1: float
    macro_precision: float
    macro_recall: float
    weighted_f1: float
    accuracy: float
    oos: Scores  # out-of-scope (or fallback) detection
    in_scope_fallback_rate: float
    faq_examples: int
    faq_selector_accuracy: float  # key right, given the intent faq was predicted
    faq_end_to_end_accuracy: float  # intent faq and key right
    misclassified: list[dict[str, Any]]
    confusion: dict[str, dict[str, int]]
    thresholds: list[dict[str, float]] = field(default_factory=list)
    fallback_threshold: float | None = None
    ambiguity_threshold: float | None = None

    def summary(self) -> str:
        return (
            f"{self.examples} examples ({self.in_scope_examples} in scope): "
            f"macro-F1 {self.macro_f1:.3f}, weighted-F1 {self.weighted_f1:.3f}, "
            f"accuracy {self.accuracy:.3f}; out-of-scope precision {self.oos.precision:.3f} "
            f"recall {self.oos.recall:.3f}; in-scope fallback rate "
            f"{self.in_scope_fallback_rate:.3f}; FAQ response accuracy "
            f"{self.faq_end_to_end_accuracy:.3f} ({self.faq_examples} FAQ examples)"
        )

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = self.summary()
        return data


def _scores(tp: int, fp: int, fn: int) -> Scores:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return Scores(round(p, 4), round(r, 4), round(f, 4), tp + fn)


def _label_of(pred_intent: str) -> str:
    """Both "out of scope" and "not understood" count as recognising an out-of-scope request."""
    return OUT_OF_SCOPE if pred_intent in NOT_UNDERSTOOD else pred_intent


def score(
    predictions: list[Prediction],
    *,
    decide: Callable[[Prediction], str] | None = None,
) -> Report:
    """Metrics for ``predictions``; ``decide`` may re-decide each intent (threshold sweep)."""
    chosen = [(p, decide(p) if decide else p.intent) for p in predictions]
    gold_labels = sorted({p.example.intent for p in predictions})
    in_scope_labels = [g for g in gold_labels if g != OUT_OF_SCOPE]
    per: dict[str, Scores] = {}
    for label in gold_labels:
        tp = fp = fn = 0
        for p, intent in chosen:
            g, y = p.example.intent, _label_of(intent)
            if label == OUT_OF_SCOPE:
                tp += g == label and y == label
                fp += g != label and y == label
                fn += g == label and y != label
            else:
                tp += g == label and intent == label
                fp += g != label and intent == label
                fn += g == label and intent != label
        per[label] = _scores(tp, fp, fn)
    in_scope = [per[label] for label in in_scope_labels]
    n_in = sum(s.support for s in in_scope)
    macro_f1 = sum(s.f1 for s in in_scope) / len(in_scope) if in_scope else 0.0
    macro_p = sum(s.precision for s in in_scope) / len(in_scope) if in_scope else 0.0
    macro_r = sum(s.recall for s in in_scope) / len(in_scope) if in_scope else 0.0
    weighted = sum(s.f1 * s.support for s in in_scope) / n_in if n_in else 0.0
    correct = sum(
        (_label_of(i) == OUT_OF_SCOPE)
        if p.example.intent == OUT_OF_SCOPE
        else i == p.example.intent
        for p, i in chosen
    )
    in_fallback = sum(
        1 for p, i in chosen if p.example.intent != OUT_OF_SCOPE and i in NOT_UNDERSTOOD
    )
    faq = [(p, i) for p, i in chosen if p.example.label.startswith("faq/")]
    faq_intent_ok = [(p, i) for p, i in faq if i == "faq"]
    selector_ok = sum(p.response_key == p.example.label for p, _ in faq_intent_ok)
    confusion: dict[str, dict[str, int]] = {}
    for p, i in chosen:
        row = confusion.setdefault(p.example.intent, {})
        row[i] = row.get(i, 0) + 1
    misclassified = [
        {
            "text": p.example.text,
            "expected": p.example.label,
            "predicted": i if i != "faq" or not p.response_key else p.response_key,
            "confidence": round(p.confidence, 4),
            "where": p.example.where,
        }
        for p, i in chosen
        if (
            (_label_of(i) != OUT_OF_SCOPE)
            if p.example.intent == OUT_OF_SCOPE
            else (i != p.example.intent or (i == "faq" and p.response_key != p.example.label))
        )
    ]
    return Report(
        examples=len(predictions),
        in_scope_examples=n_in,
        per_intent=per,
        macro_f1=round(macro_f1, 4),
        macro_precision=round(macro_p, 4),
        macro_recall=round(macro_r, 4),
        weighted_f1=round(weighted, 4),
        accuracy=round(correct / len(predictions), 4) if predictions else 0.0,
        oos=per.get(OUT_OF_SCOPE, Scores(0.0, 0.0, 0.0, 0)),
        in_scope_fallback_rate=round(in_fallback / n_in, 4) if n_in else 0.0,
        faq_examples=len(faq),
        faq_selector_accuracy=round(selector_ok / len(faq_intent_ok), 4) if faq_intent_ok else 0.0,
        faq_end_to_end_accuracy=round(selector_ok / len(faq), 4) if faq else 0.0,
        misclassified=misclassified,
        confusion=confusion,
    )


def threshold_decider(threshold: float, ambiguity: float) -> Callable[[Prediction], str]:
    """What Rasa's FallbackClassifier would decide with these thresholds."""

    def decide(p: Prediction) -> str:
        ranked = p.ranked_without_fallback()
        if not ranked:
            return FALLBACK
        top, conf = ranked[0]
        second = ranked[1][1] if len(ranked) > 1 else 0.0
        if conf < threshold or conf - second < ambiguity:
            return FALLBACK
        if top == "faq" and p.response_confidence < FAQ_MIN_CONFIDENCE:
            return FALLBACK
        return top

    return decide


def sweep(predictions: list[Prediction]) -> list[dict[str, float]]:
    """In-scope macro-F1 and out-of-scope precision/recall for a grid of thresholds."""
    rows: list[dict[str, float]] = []
    for t in [x / 100 for x in range(30, 95, 5)]:
        for a in (0.0, 0.05, 0.1):
            r = score(predictions, decide=threshold_decider(t, a))
            rows.append(
                {
                    "threshold": t,
                    "ambiguity_threshold": a,
                    "macro_f1": r.macro_f1,
                    "oos_precision": r.oos.precision,
                    "oos_recall": r.oos.recall,
                    "in_scope_fallback_rate": r.in_scope_fallback_rate,
                }
            )
    return rows


# -- talking to a Rasa server ----------------------------------------------------------------


def parse_url(base_url: str, token: str | None) -> str:
    q = f"?{urllib.parse.urlencode({'token': token})}" if token else ""
    return f"{base_url.rstrip('/')}/model/parse{q}"


def parse_text(url: str, text: str, timeout: float = 30) -> dict[str, Any]:
    req = urllib.request.Request(
        url,
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return dict(json.loads(resp.read()))


def prediction_from(example: Example, parsed: dict[str, Any]) -> Prediction:
    intent = parsed.get("intent") or {}
    ranking = tuple(
        (str(r.get("name")), float(r.get("confidence") or 0.0))
        for r in parsed.get("intent_ranking") or []
        if r.get("name") != FALLBACK
    )
    selector = (parsed.get("response_selector") or {}).get(example.intent) or (
        parsed.get("response_selector") or {}
    ).get("default")
    key = None
    key_confidence = 0.0
    if isinstance(selector, dict):
        response = selector.get("response") or {}
        key = response.get("intent_response_key")
        key_confidence = float(response.get("confidence") or 0.0)
    name = str(intent.get("name") or FALLBACK)
    if name == "faq" and key_confidence < FAQ_MIN_CONFIDENCE:
        name = FALLBACK  # what action_faq does: no answer it is not sure of
    return Prediction(
        example=example,
        intent=name,
        confidence=float(intent.get("confidence") or 0.0),
        ranking=ranking,
        response_key=str(key) if key else None,
        response_confidence=key_confidence,
    )


def predict(examples: Iterable[Example], base_url: str, token: str | None) -> list[Prediction]:
    url = parse_url(base_url, token)
    return [prediction_from(ex, parse_text(url, ex.text)) for ex in examples]


def evaluate(predictions: list[Prediction], config: dict[str, Any] | None = None) -> Report:
    """The report for the model's own decisions, with the threshold sweep attached."""
    report = score(predictions)
    report.thresholds = sweep(predictions)
    for comp in (config or {}).get("pipeline") or []:
        if isinstance(comp, dict) and comp.get("name") == "FallbackClassifier":
            report.fallback_threshold = float(comp.get("threshold", 0.3))
            report.ambiguity_threshold = float(comp.get("ambiguity_threshold", 0.1))
    return report


def label_counts(examples: Iterable[Example]) -> Counter[str]:
    return Counter(ex.label for ex in examples)
