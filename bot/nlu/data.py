"""Reading Rasa NLU training/test files with line numbers (for messages that point at the
example), and stripping entity annotations to get the text a user would say."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

# [text](entity), [text](entity:value), [text]{"entity": ...}
ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")


@dataclass(frozen=True)
class Example:
    """One example of an intent: its label (``faq/wifi`` for a retrieval intent), the plain
    text, and where it is written."""

    label: str
    text: str
    file: Path
    line: int

    @property
    def intent(self) -> str:
        """The intent the classifier predicts (``faq`` for ``faq/wifi``)."""
        return self.label.split("/", 1)[0]

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class NluBlock:
    """One item of an ``nlu:`` list (intent, synonym, lookup or regex) and its line."""

    kind: str
    name: str
    file: Path
    line: int
    examples: tuple[Example, ...]


def plain_text(annotated: str) -> str:
    return ANNOTATION.sub(lambda m: m.group(1), annotated).strip()


def _examples_from(node: yaml.Node, label: str, file: Path) -> list[Example]:
    """Examples of a block scalar ``examples: |`` with the file line of each one."""
    if not isinstance(node, yaml.ScalarNode):
        return []
    text = str(node.value)
    # A block scalar's content starts on the line after its indicator.
    first = node.start_mark.line + (2 if node.style in ("|", ">") else 1)
    out: list[Example] = []
    for i, raw in enumerate(text.splitlines()):
        s = raw.strip()
        if not s.startswith("- "):
            continue
        out.append(Example(label, plain_text(s[2:]), file, first + i))
    return out


def read_nlu_file(path: Path) -> list[NluBlock]:
    """The blocks of one Rasa YAML file's ``nlu:`` section (empty if it has none)."""
    root = yaml.compose(path.read_text(encoding="utf-8"))
    if not isinstance(root, yaml.MappingNode):
        return []
    blocks: list[NluBlock] = []
    for key, value in root.value:
        if key.value != "nlu" or not isinstance(value, yaml.SequenceNode):
            continue
        for item in value.value:
            if not isinstance(item, yaml.MappingNode):
                continue
            fields = {k.value: v for k, v in item.value}
            for kind in ("intent", "synonym", "lookup", "regex"):
                if kind in fields and isinstance(fields[kind], yaml.ScalarNode):
                    name = str(fields[kind].value)
                    ex_node = fields.get("examples")
                    examples = _examples_from(ex_node, name, path) if ex_node is not None else []
                    blocks.append(
                        NluBlock(kind, name, path, item.start_mark.line + 1, tuple(examples))
                    )
                    break
    return blocks


def yaml_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())


def read_examples(root: Path) -> list[Example]:
    """Every intent example under ``root`` (a file or a directory)."""
    out: list[Example] = []
    for f in yaml_files(root):
        for block in read_nlu_file(f):
            if block.kind == "intent":
                out.extend(block.examples)
    return out
