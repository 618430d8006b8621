"""Appending reviewed user turns to the Rasa training data as examples, round-trip.

The file is loaded and written with ruamel.yaml, so comments, key order, quotes and the
``examples: |`` literal blocks stay as they are; before anything is written the new text is
compared with the old and must differ only by inserted lines (otherwise nothing is written
and :class:`NluEditError` says why). A new intent gets its own file
``data/nlu/<intent>.yml`` and an entry in ``domain.yml``'s intents. Examples the intent
already has are skipped; examples that (nearly) belong to another intent are refused, as
``receptionist nlu validate`` would refuse them."""

from __future__ import annotations

import difflib
import io
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import LiteralScalarString

from bot.nlu.data import read_nlu_file, yaml_files
from bot.nlu.validate import NEAR_DUPLICATE_RATIO
from bot.nlu.validate import _normal as validate_normal

OUT_OF_SCOPE = "out_of_scope"
INTENT_NAME = re.compile(r"^[a-z][a-z0-9_]{1,59}$")
MAX_EXAMPLE_CHARS = 300


class NluEditError(Exception):
    pass


@dataclass
class AppendResult:
    intent: str
    file: Path
    added: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # already examples of this intent
    conflicts: dict[str, str] = field(default_factory=dict)  # text -> the other intent
    created_file: bool = False
    domain_changed: bool = False

    def as_json(self, project: Path) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "file": str(self.file.relative_to(project)),
            "added": self.added,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "created_file": self.created_file,
            "domain_changed": self.domain_changed,
        }


def _yaml() -> YAML:
    y = YAML()  # round-trip
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    return y


def clean_example(text: str) -> str:
    """One line a Rasa example can hold: single spaces, no entity annotation brackets."""
    t = re.sub(r"\s+", " ", text.replace("[", "(").replace("]", ")")).strip()
    return t[:MAX_EXAMPLE_CHARS].strip()


def data_files(project: Path) -> list[Path]:
    return yaml_files(project / "data")


def intent_files(project: Path) -> dict[str, Path]:
    """Each intent label (``faq/wifi`` too) and the first data file that has examples of it."""
    out: dict[str, Path] = {}
    for f in data_files(project):
        for block in read_nlu_file(f):
            if block.kind == "intent":
                out.setdefault(block.name, f)
    return out


def domain_intents(project: Path) -> list[str]:
    data = _yaml().load((project / "domain.yml").read_text(encoding="utf-8"))
    intents = data.get("intents") if isinstance(data, dict) else None
    return [next(iter(i)) if isinstance(i, dict) else str(i) for i in intents or []]


def _only_insertions(old: str, new: str, path: Path) -> None:
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    for tag, *_ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag not in ("equal", "insert"):
            raise NluEditError(
                f"{path}: writing it back would change more than the new lines "
                "(unusual YAML formatting); add the examples by hand"
            )


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _dump(y: YAML, data: Any) -> str:
    buf = io.StringIO()
    y.dump(data, buf)
    return buf.getvalue()


def _sort_out(project: Path, intent: str, texts: list[str], result: AppendResult) -> list[str]:
    """The texts to add: cleaned, not yet examples of ``intent``, not another intent's."""
    own: set[str] = set()
    others: dict[str, str] = {}
    other_words: list[tuple[list[str], str]] = []
    for f in data_files(project):
        for block in read_nlu_file(f):
            if block.kind != "intent":
                continue
            for ex in block.examples:
                n = validate_normal(ex.text)
                if ex.label == intent:
                    own.add(ex.text.lower())
                    own.add(n)
                else:
                    others.setdefault(ex.text.lower(), ex.label)
                    others.setdefault(n, ex.label)
                    words = n.split()
                    if len(words) >= 6:
                        other_words.append((words, ex.label))
    todo: list[str] = []
    for raw in texts:
        text = clean_example(raw)
        if not text:
            continue
        low, n = text.lower(), validate_normal(text)
        if low in own or (n and n in own):
            result.duplicates.append(text)
            continue
        other = others.get(low) or (others.get(n) if n else None)
        if other is None:
            other = _near_other(n.split(), other_words, intent)
        if other is not None:
            result.conflicts[text] = other
            continue
        own.update((low, n))
        todo.append(text)
    return todo


def _near_other(words: list[str], others: list[tuple[list[str], str]], intent: str) -> str | None:
    """The intent of an example with nearly the same words (as ``nlu validate`` checks)."""
    if len(words) < 6:
        return None
    sm = difflib.SequenceMatcher(None, words, autojunk=False)
    for w2, label in others:
        if label.split("/", 1)[0] == intent.split("/", 1)[0] or abs(len(words) - len(w2)) > 1:
            continue
        sm.set_seq2(w2)
        if sm.quick_ratio() >= NEAR_DUPLICATE_RATIO and sm.ratio() >= NEAR_DUPLICATE_RATIO:
            return label
    return None


def append_examples(
    project: Path, intent: str, texts: list[str], *, new_intent: bool = False
) -> AppendResult:
    """Add ``texts`` as examples of ``intent`` (an existing label, or a new intent if
    ``new_intent``) in the project at ``project``. Raises :class:`NluEditError`."""
    files = intent_files(project)
    if new_intent:
        if intent in files or intent in domain_intents(project):
            raise NluEditError(f"intent {intent!r} already exists")
        if not INTENT_NAME.match(intent):
            raise NluEditError(
                "a new intent's name: 2-60 characters, lower-case letters, digits and _, "
                "starting with a letter"
            )
        target = project / "data" / "nlu" / f"{intent}.yml"
        if target.exists():
            raise NluEditError(f"{target} exists already; choose another intent name")
    else:
        if intent not in files:
            raise NluEditError(f"no intent {intent!r} in {project / 'data'}")
        target = files[intent]
    result = AppendResult(intent, target)
    todo = _sort_out(project, intent, texts, result)
    if not todo:
        return result
    if new_intent:
        _create_intent_file(target, intent, todo)
        try:
            _add_domain_intent(project / "domain.yml", intent)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        result.created_file = result.domain_changed = True
    else:
        _append_to_block(target, intent, todo)
    result.added = todo
    return result


def _append_to_block(path: Path, intent: str, texts: list[str]) -> None:
    y = _yaml()
    old = path.read_text(encoding="utf-8")
    data = y.load(old)
    items = data.get("nlu") if isinstance(data, CommentedMap) else None
    if not isinstance(items, CommentedSeq):
        raise NluEditError(f"{path}: no nlu: list")
    for item in items:
        if isinstance(item, CommentedMap) and item.get("intent") == intent:
            current = item.get("examples")
            if not isinstance(current, LiteralScalarString):
                raise NluEditError(f"{path}: the examples of {intent!r} are not an `examples: |`")
            body = str(current)
            if body and not body.endswith("\n"):
                body += "\n"
            item["examples"] = LiteralScalarString(body + "".join(f"- {t}\n" for t in texts))
            break
    else:
        raise NluEditError(f"{path}: no intent {intent!r}")
    new = _dump(y, data)
    _only_insertions(old, new, path)
    _write(path, new)


def _create_intent_file(path: Path, intent: str, texts: list[str]) -> None:
    lines = [
        'version: "3.1"',
        "",
        f"# {intent}: added from the review inbox in the desk.",
        "nlu:",
        f"  - intent: {intent}",
        "    examples: |",
        *(f"      - {t}" for t in texts),
        "",
    ]
    text = "\n".join(lines)
    blocks = read_nlu_file_text(text, path)
    if [b.name for b in blocks] != [intent]:
        raise NluEditError(f"{path}: could not write the new intent")
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, text)


def read_nlu_file_text(text: str, path: Path) -> list[Any]:
    """Parse check of a file about to be written (through a temporary copy)."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d) / path.name
        tmp.write_text(text, encoding="utf-8")
        return read_nlu_file(tmp)


def _add_domain_intent(path: Path, intent: str) -> None:
    y = _yaml()
    old = path.read_text(encoding="utf-8")
    data = y.load(old)
    intents = data.get("intents") if isinstance(data, CommentedMap) else None
    if not isinstance(intents, CommentedSeq):
        raise NluEditError(f"{path}: no intents: list")
    intents.append(intent)
    # the blank line (a comment of the former last item) stays after the list
    last = len(intents) - 2
    if last >= 0 and last in intents.ca.items:
        intents.ca.items[last + 1] = intents.ca.items.pop(last)
    new = _dump(y, data)
    _only_insertions(old, new, path)
    _write(path, new)
