"""``receptionist nlu validate``: Rasa's own ``rasa data validate`` plus checks Rasa does not
make, each message with the file and line it is about:

- the same (or nearly the same) example under two different intents;
- intents with fewer examples than the minimum (retrieval sub-intents have their own);
- intents used in data but not in the domain, or in the domain without examples;
- responses and actions used in rules/stories/forms but missing from the domain;
- custom actions in the domain that no class in ``actions/`` implements;
- FAQ keys (``faq/x``) without an answer ``utter_faq/x``, and answers without examples;
- ``business.yml`` that the actions could not load.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.config import Settings
from bot.nlu.data import Example, NluBlock, read_nlu_file, yaml_files
from bot.rasa_runtime import rasa_env

MIN_EXAMPLES = 15
MIN_RETRIEVAL_EXAMPLES = 8
NEAR_DUPLICATE_RATIO = 0.9
FILLERS = re.compile(r"\b(um+|uh+|erm|er|please|so|just|like|ok|okay|well)\b")
BUILTIN_ACTIONS = {
    "action_listen",
    "action_restart",
    "action_session_start",
    "action_default_fallback",
    "action_deactivate_loop",
    "action_revert_fallback_events",
    "action_default_ask_affirmation",
    "action_default_ask_rephrase",
    "action_two_stage_fallback",
    "action_unlikely_intent",
    "action_back",
    "action_extract_slots",
    "utter_faq",
}


@dataclass(frozen=True)
class Finding:
    level: str  # "error" or "warning"
    where: str  # file:line (or file)
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.level}: {self.message}"


def _normal(text: str) -> str:
    t = re.sub(r"[^a-z0-9' ]+", " ", text.lower())
    t = FILLERS.sub(" ", t)
    return re.sub(r"\s+", " ", t).strip()


def check_examples(blocks: list[NluBlock], min_examples: int, min_retrieval: int) -> list[Finding]:
    out: list[Finding] = []
    examples: list[Example] = [e for b in blocks if b.kind == "intent" for e in b.examples]
    by_label: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        by_label[e.label].append(e)
    first_block = {b.name: b for b in reversed(blocks) if b.kind == "intent"}
    for label, exs in sorted(by_label.items()):
        need = min_retrieval if "/" in label else min_examples
        if len(exs) < need:
            b = first_block[label]
            out.append(
                Finding(
                    "error",
                    f"{b.file}:{b.line}",
                    f"intent '{label}' has {len(exs)} examples; at least {need} are needed",
                )
            )
    # exact and near duplicates
    seen: dict[str, Example] = {}
    normals: list[tuple[str, Example]] = []
    for e in examples:
        key = e.text.lower().strip()
        prev = seen.get(key)
        if prev is not None:
            level = "error" if prev.label != e.label else "warning"
            what = f"in intents '{prev.label}' and '{e.label}'" if level == "error" else "twice"
            out.append(
                Finding(level, e.where, f"example '{e.text}' appears {what} (also {prev.where})")
            )
            continue
        seen[key] = e
        normals.append((_normal(e.text), e))
    by_norm: dict[str, Example] = {}
    for n, e in normals:
        other = by_norm.get(n)
        if other is not None and other.label != e.label and n:
            out.append(
                Finding(
                    "error",
                    e.where,
                    f"example '{e.text}' ({e.label}) is nearly the same as '{other.text}' "
                    f"({other.label}, {other.where})",
                )
            )
        by_norm.setdefault(n, e)
    # near: the same words but for about one in ten (word level, so "change" vs "cancel"
    # is a different sentence, not a near-duplicate)
    items = sorted((n.split(), e) for n, e in by_norm.items())
    for i, (w1, e1) in enumerate(items):
        if len(w1) < 6:
            continue
        sm = difflib.SequenceMatcher(None, w1, autojunk=False)
        for w2, e2 in items[i + 1 :]:
            if e2.intent == e1.intent or abs(len(w1) - len(w2)) > 1:
                continue
            sm.set_seq2(w2)
            if sm.quick_ratio() >= NEAR_DUPLICATE_RATIO and sm.ratio() >= NEAR_DUPLICATE_RATIO:
                out.append(
                    Finding(
                        "error",
                        e2.where,
                        f"example '{e2.text}' ({e2.label}) is nearly the same as "
                        f"'{e1.text}' ({e1.label}, {e1.where})",
                    )
                )
    return out


def _compose(path: Path) -> yaml.Node | None:
    try:
        return yaml.compose(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None


def _mapping(node: yaml.Node | None) -> dict[str, yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return {str(k.value): v for k, v in node.value}
    return {}


def _names(node: yaml.Node | None) -> dict[str, int]:
    """Names listed in a domain section (a list of names or of one-key mappings, or a
    mapping) with their lines."""
    out: dict[str, int] = {}
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            if isinstance(item, yaml.ScalarNode):
                out[str(item.value)] = item.start_mark.line + 1
            elif isinstance(item, yaml.MappingNode) and item.value:
                out[str(item.value[0][0].value)] = item.start_mark.line + 1
    elif isinstance(node, yaml.MappingNode):
        for k, _v in node.value:
            out[str(k.value)] = k.start_mark.line + 1
    return out


def _implemented_actions(actions_dir: Path) -> set[str]:
    """Names returned by ``def name(self)`` of the classes in the actions package."""
    found: set[str] = set()
    for f in sorted(actions_dir.rglob("*.py")) if actions_dir.is_dir() else []:
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "name":
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Return) and isinstance(sub.value, ast.Constant):
                        found.add(str(sub.value.value))
    return found


def _dialogue_refs(path: Path) -> list[tuple[str, str, int]]:
    """(kind, name, line) for every intent/action/active_loop used in rules/stories."""
    refs: list[tuple[str, str, int]] = []
    root = _mapping(_compose(path))
    for section in ("rules", "stories"):
        node = root.get(section)
        if not isinstance(node, yaml.SequenceNode):
            continue
        for item in node.value:
            fields = _mapping(item)
            steps = list(getattr(fields.get("steps"), "value", []))
            conditions = list(getattr(fields.get("condition"), "value", []))
            for step in steps + conditions:
                for k, v in _mapping(step).items():
                    if (
                        k in ("intent", "action", "active_loop")
                        and isinstance(v, yaml.ScalarNode)
                        and v.value not in (None, "null", "")
                    ):
                        refs.append((k, str(v.value), v.start_mark.line + 1))
    return refs


def check_project(
    project: Path, min_examples: int = MIN_EXAMPLES, min_retrieval: int = MIN_RETRIEVAL_EXAMPLES
) -> list[Finding]:
    """Our own checks of the Rasa project at ``project``."""
    out: list[Finding] = []
    data_files = yaml_files(project / "data")
    blocks: list[NluBlock] = []
    for f in data_files:
        try:
            blocks.extend(read_nlu_file(f))
        except yaml.YAMLError as exc:
            out.append(Finding("error", str(f), f"not valid YAML: {exc}"))
    out += check_examples(blocks, min_examples, min_retrieval)

    domain_path = project / "domain.yml"
    domain = _mapping(_compose(domain_path))
    if not domain:
        out.append(Finding("error", str(domain_path), "missing or not a YAML mapping"))
        return out
    d_intents = _names(domain.get("intents"))
    d_responses = _names(domain.get("responses"))
    d_actions = _names(domain.get("actions"))
    d_forms = _names(domain.get("forms"))
    labels = {e.label for b in blocks if b.kind == "intent" for e in b.examples}
    intents_in_data = {label.split("/", 1)[0] for label in labels}
    intent_line = {b.name.split("/", 1)[0]: b for b in blocks if b.kind == "intent"}
    for name in sorted(intents_in_data - set(d_intents)):
        b = intent_line[name]
        out.append(Finding("error", f"{b.file}:{b.line}", f"intent '{name}' is not in the domain"))
    for name, line in sorted(d_intents.items()):
        if name not in intents_in_data:
            out.append(
                Finding("error", f"{domain_path}:{line}", f"intent '{name}' has no examples")
            )
    # FAQ keys and answers
    retrieval = {label for label in labels if "/" in label}
    for label in sorted(retrieval):
        if f"utter_{label}" not in d_responses:
            b = intent_line[label.split("/", 1)[0]]
            where = next((f"{bb.file}:{bb.line}" for bb in blocks if bb.name == label), f"{b.file}")
            out.append(Finding("error", where, f"'{label}' has no answer 'utter_{label}'"))
    for resp, line in sorted(d_responses.items()):
        if "/" in resp and resp.removeprefix("utter_") not in retrieval:
            out.append(
                Finding(
                    "warning",
                    f"{domain_path}:{line}",
                    f"answer '{resp}' has no examples '{resp.removeprefix('utter_')}'",
                )
            )
    # rules and stories
    for f in data_files:
        for kind, name, line in _dialogue_refs(f):
            where = f"{f}:{line}"
            if kind == "intent" and name not in d_intents and name != "nlu_fallback":
                out.append(Finding("error", where, f"intent '{name}' is not in the domain"))
            elif kind == "active_loop" and name not in d_forms:
                out.append(Finding("error", where, f"form '{name}' is not in the domain"))
            elif kind == "action":
                if name.startswith("utter_"):
                    if name not in d_responses and name not in BUILTIN_ACTIONS:
                        out.append(Finding("error", where, f"response '{name}' is missing"))
                elif name not in d_actions and name not in d_forms and name not in BUILTIN_ACTIONS:
                    out.append(
                        Finding("error", where, f"action '{name}' is not in the domain's actions")
                    )
    # form questions
    for form, line in d_forms.items():
        slots_node = _mapping(_mapping(domain.get("forms")).get(form)).get("required_slots")
        for slot in _names(slots_node):
            if f"utter_ask_{slot}" not in d_responses and f"action_ask_{slot}" not in d_actions:
                out.append(
                    Finding(
                        "error",
                        f"{domain_path}:{line}",
                        f"form '{form}' asks for '{slot}' but there is no 'utter_ask_{slot}'",
                    )
                )
    # custom actions
    implemented = _implemented_actions(project / "actions")
    for name, line in sorted(d_actions.items()):
        if name.startswith("utter_"):
            if name not in d_responses:
                out.append(Finding("error", f"{domain_path}:{line}", f"response '{name}' missing"))
        elif name not in implemented:
            out.append(
                Finding(
                    "error",
                    f"{domain_path}:{line}",
                    f"action '{name}' is not implemented by any class in actions/",
                )
            )
    out += check_business(project)
    return out


def check_business(project: Path) -> list[Finding]:
    """Load business.yml with the actions' own loader (nlu-data/actions/business.py)."""
    path = project / "business.yml"
    module = project / "actions" / "business.py"
    if not path.exists() or not module.exists():
        return []
    spec = importlib.util.spec_from_file_location("_receptionist_business_check", module)
    if spec is None or spec.loader is None:
        return [Finding("error", str(module), "cannot be loaded")]
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
        mod.load_profile(path)
    except mod.ProfileError as exc:
        return [Finding("error", str(path), str(exc).removeprefix(f"{path}: "))]
    finally:
        sys.modules.pop(spec.name, None)
    return []


def rasa_validate(settings: Settings, project: Path) -> list[Finding]:
    """``rasa data validate`` on the project; its errors become findings."""
    exe = settings.rasa_venv / "bin" / "rasa"
    if not exe.exists():
        return [Finding("error", str(exe), "Rasa is not installed; run `make setup`")]
    proc = subprocess.run(
        [
            str(exe),
            "data",
            "validate",
            "--domain",
            str(project / "domain.yml"),
            "--data",
            str(project / "data"),
            "--config",
            str(project / "config.yml"),
        ],
        cwd=project,
        env=rasa_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode == 0:
        return []
    text = proc.stdout + proc.stderr
    lines = [
        re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
        for line in text.splitlines()
        if re.search(r"\b(ERROR|error|Error)\b", line) and "DeprecationWarning" not in line
    ]
    detail = "; ".join(lines[-5:]) or text.strip()[-600:]
    return [Finding("error", str(project), f"rasa data validate failed: {detail}")]


def validate_project(
    project: Path, *, settings: Settings | None = None, run_rasa: bool = True
) -> list[Finding]:
    findings = check_project(project)
    if run_rasa and settings is not None:
        findings += rasa_validate(settings, project)
    return findings


def print_findings(findings: list[Finding]) -> int:
    """Print each finding; 1 if any is an error, else 0."""
    errors = [f for f in findings if f.level == "error"]
    for f in findings:
        print(f, file=sys.stderr if f.level == "error" else sys.stdout)
    warnings = len(findings) - len(errors)
    print(f"{len(errors)} error(s), {warnings} warning(s)")
    return 1 if errors else 0
