"""The ``receptionist`` command. Parses arguments, loads settings once, and calls the
function for the subcommand with explicit values (no namespace threaded through the code)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import sys
from collections.abc import Callable
from pathlib import Path

from bot.config import ConfigError, Settings, load_settings


def _serve(settings: Settings) -> int:
    from aiohttp import web
    from sqlalchemy.exc import SQLAlchemyError

    from bot.app import create_app
    from bot.store import DatabaseConfigError

    try:
        web.run_app(
            create_app(settings),
            host=settings.server.host,
            port=settings.server.port,
            print=None,
            access_log=None,
            shutdown_timeout=10,
        )
    except DatabaseConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError) as exc:
        where = f"{settings.server.host}:{settings.server.port}"
        if isinstance(exc, OSError) and exc.errno in (
            errno.EADDRINUSE,
            errno.EACCES,
            errno.EADDRNOTAVAIL,
        ):
            print(
                f"error: cannot listen on {where} ({exc}); set server.port in "
                "receptionist.toml or RECEPTIONIST_SERVER__PORT",
                file=sys.stderr,
            )
        else:
            from sqlalchemy.engine import make_url

            shown = make_url(settings.database_url).render_as_string(hide_password=True)
            print(
                f"error: the database at {shown} (database.url) cannot be used: "
                f"{type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
        return 1
    return 0


def _media(settings: Settings) -> int:
    """The media server (voice). Imported here: the bot package itself has no audio code."""
    from aiohttp import web

    from media_server.app import create_app as create_media_app

    try:
        web.run_app(
            create_media_app(settings),
            host=settings.media.host,
            port=settings.media.port,
            print=None,
            access_log=None,
            shutdown_timeout=5,
        )
    except OSError as exc:
        print(
            f"error: the media server cannot start on {settings.media.host}:"
            f"{settings.media.port} ({exc}); set media.port in receptionist.toml or "
            "RECEPTIONIST_MEDIA__PORT",
            file=sys.stderr,
        )
        return 1
    return 0


def _up(settings: Settings, config_file: Path | None) -> int:
    from bot.nlu_model import TrainingError
    from bot.rasa_runtime import RasaNotInstalled
    from bot.supervisor import StartupError, run_up

    try:
        return asyncio.run(run_up(settings, config_file))
    except (StartupError, TrainingError, RasaNotInstalled) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _train(settings: Settings, force: bool) -> int:
    from bot.nlu_model import TrainingError, ensure_model
    from bot.rasa_runtime import RasaNotInstalled

    try:
        path = ensure_model(settings, force=force)
    except (TrainingError, RasaNotInstalled) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _nlu_test(
    settings: Settings,
    test_file: Path | None,
    out: Path | None,
    config: Path | None,
    url: str | None,
    token: str | None,
    folds: int,
) -> int:
    from bot.nlu.runner import run_nlu_test
    from bot.nlu_model import TrainingError
    from bot.rasa_runtime import RasaNotInstalled

    try:
        run = run_nlu_test(
            settings,
            test_file=test_file or settings.home / "tests" / "nlu" / "test.yml",
            out=out or settings.data_path / "nlu-report",
            config=config,
            url=url,
            token=token,
            folds=folds,
        )
    except (TrainingError, RasaNotInstalled, RuntimeError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(run.report.summary())
    if run.cross_validation:
        cv = run.cross_validation
        print(f"cross-validation ({cv['folds']} folds): macro-F1 {cv['macro_f1']:.3f}")
    print(f"report: {run.out}")
    return 0


def _nlu_validate(settings: Settings, project: Path | None, skip_rasa: bool) -> int:
    from bot.nlu.validate import print_findings, validate_project

    findings = validate_project(
        project or settings.rasa_project, settings=settings, run_rasa=not skip_rasa
    )
    return print_findings(findings)


def _doctor(settings: Settings) -> int:
    from bot.doctor import print_report, run_checks

    return print_report(asyncio.run(run_checks(settings)))


def _chat(settings: Settings, url: str | None) -> int:
    from bot.chat import run_chat

    try:
        return asyncio.run(run_chat(url or settings.server.base_url))
    except KeyboardInterrupt:
        print()
        return 0


def _db_upgrade(settings: Settings) -> int:
    from bot.store.engine import create_engine, current_revision, migrate

    async def go() -> str | None:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    print(f"database at revision {asyncio.run(go())}")
    return 0


def _bench_api(settings: Settings, url: str | None, messages: int) -> int:
    from bot.bench import bench_api

    res = asyncio.run(bench_api(url or settings.server.base_url, messages))
    print(f"message round trip over {int(res['messages'])} messages (bot service + Rasa):")
    for key in ("median_ms", "p95_ms", "min_ms", "max_ms"):
        print(f"  {key:<10} {res[key]:8.1f}")
    return 0


def _users(settings: Settings, args: argparse.Namespace) -> int:
    import getpass

    from bot.desk.users import UserError, UserStore, parse_skills
    from bot.handoff.records import UserRole
    from bot.store.engine import create_engine, migrate

    async def go() -> int:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
            store = UserStore(engine)
            if args.users_command == "list":
                for u in await store.list():
                    skills = ",".join(f"{k}:{v}" for k, v in u.skills.items())
                    print(f"{u.id:>4}  {u.username:<20} {u.role.value:<11} {skills}")
                return 0
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            else:
                password = getpass.getpass(f"password for {args.username}: ")
                if getpass.getpass("again: ") != password:
                    print("error: the passwords differ", file=sys.stderr)
                    return 1
            user = await store.add(
                args.username,
                password,
                role=UserRole(args.role),
                display_name=args.name or args.username,
                skills=parse_skills(args.skills),
                max_chats=args.max_chats,
            )
            print(f"added {user.role.value} {user.username} (id {user.id})")
            return 0
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _bench_webchat(
    settings: Settings, url: str | None, visitors: int, messages: int, think: float
) -> int:
    from bot.bench import bench_webchat

    res = asyncio.run(bench_webchat(url or settings.server.base_url, visitors, messages, think))
    print(
        f"webchat: {visitors} concurrent visitors x {messages} messages, "
        f"{think:g} s think time (bot service + Rasa):"
    )
    for key, value in res.items():
        print(f"  {key:<16} {value:10.1f}")
    failed = sum(v for k, v in res.items() if k.startswith("error_"))
    return 1 if failed or res["replies"] == 0 else 0


def _bench_handoff(agents: int, tickets: int) -> int:
    from bot.bench import bench_handoff

    res = asyncio.run(bench_handoff(agents, tickets))
    print(f"handoff creation -> offer on an agent's desk ({agents} agents, {tickets} tickets):")
    for key in ("median_ms", "p95_ms", "max_ms"):
        print(f"  {key:<10} {res[key]:8.1f}")
    return 0


def _bench_voice(
    settings: Settings,
    url: str | None,
    calls: str,
    turns: int,
    stagger: float,
    transport: str = "ws",
    sip: str | None = None,
) -> int:
    from media_server.bench import bench_voice, report

    try:
        counts = [int(c) for c in calls.split(",") if c.strip()]
    except ValueError:
        print(f"error: --calls takes numbers like 1,4,8, not {calls!r}", file=sys.stderr)
        return 2
    base = (url or settings.media.url()).rstrip("/")
    peer: tuple[str, int] | None = None
    if transport == "sip":
        host, _, port = (sip or f"127.0.0.1:{settings.media.sip_port}").rpartition(":")
        if not host or not port.isdigit():
            print(f"error: --sip takes HOST:PORT, not {sip!r}", file=sys.stderr)
            return 2
        peer = (host, int(port))
        where = f"sip:{host}:{port}"
    else:
        where = base
    print(f"voice benchmark against {where}: {turns} turns per call, calls {counts}")
    levels = asyncio.run(
        bench_voice(base, settings.media.tts_voice, counts, turns, stagger, sip=peer)
    )
    print(report(levels))
    return 0 if all(lv["failed"] == 0 for lv in levels) else 1


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from bot.simulate import ensure_agents, simulate_chats

    if args.conversations < 0 or args.calls < 0 or args.agents < 1 or args.duration <= 0:
        print("error: counts must be ≥ 0, agents ≥ 1 and --duration > 0", file=sys.stderr)
        return 2
    base = (args.url or settings.server.base_url).rstrip("/")

    async def go() -> dict[str, object]:
        agents = await ensure_agents(settings.database_url, args.agents)
        extra: list[asyncio.Task[None]] = []
        call_tally = None
        if args.calls:
            from media_server.simulate_calls import start_calls

            call_tally, extra = start_calls(
                args.media_url or settings.media.url(),
                settings.media.tts_voice,
                args.calls,
                duration_s=args.duration,
                human_share=args.call_human_share,
                patience_s=args.patience,
                seed=args.seed,
            )
        tally = await simulate_chats(
            base,
            agents,
            args.conversations,
            duration_s=args.duration,
            patience_s=args.patience,
            seed=args.seed,
            extra=extra,
        )
        out: dict[str, object] = {"chats": tally.as_data()}
        if call_tally is not None:
            out["calls"] = call_tally.as_data()
        return out

    print(
        f"simulating {args.conversations} webchat conversations and {args.calls} calls over "
        f"{args.duration:g} s with {args.agents} agents against {base}"
    )
    try:
        result = asyncio.run(go())
    except OSError as exc:
        print(f"error: cannot reach the receptionist at {base}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    print("now: receptionist report --from TODAY --to TODAY  (dates as YYYY-MM-DD)")
    chats = result["chats"]
    assert isinstance(chats, dict)
    return 1 if chats["errors"] else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="receptionist", description=__doc__)
    p.add_argument("--config", type=Path, help="config file (default: receptionist.toml)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("up", help="start Rasa, its action server and the bot service; print URLs")
    sub.add_parser("serve", help="run the bot service only (Rasa must be running)")
    sub.add_parser("media", help="run the media server only (voice; the bot service must run)")
    chat = sub.add_parser("chat", help="talk to the bot in the terminal")
    chat.add_argument("--url", help="bot service URL (default from config)")
    nlu = sub.add_parser("nlu", help="conversation designer tools")
    nlu_sub = nlu.add_subparsers(dest="nlu_command", required=True, metavar="NLU_COMMAND")
    train = nlu_sub.add_parser("train", help="train the Rasa model if the data changed")
    train.add_argument("--force", action="store_true", help="train even if up to date")
    nlu_test = nlu_sub.add_parser(
        "test", help="evaluate the model on the held-out test set; write a report directory"
    )
    nlu_test.add_argument("--test-file", type=Path, help="default: tests/nlu/test.yml")
    nlu_test.add_argument("--out", type=Path, help="report directory (default: var/nlu-report)")
    nlu_test.add_argument(
        "--pipeline", type=Path, help="evaluate this Rasa config (pipeline) instead"
    )
    nlu_test.add_argument("--url", help="use this running Rasa server instead of starting one")
    nlu_test.add_argument("--token", help="auth token of the server given with --url")
    nlu_test.add_argument("--folds", type=int, default=0, help="also cross-validate, k folds")
    nlu_val = nlu_sub.add_parser(
        "validate", help="check the Rasa project: Rasa's validation plus ours"
    )
    nlu_val.add_argument("--project", type=Path, help="default: nlu-data/")
    nlu_val.add_argument("--skip-rasa", action="store_true", help="only our own checks")
    sub.add_parser("doctor", help="check dependencies and models; print fixes")
    from media_server import model_cli

    model_cli.add_arguments(sub)
    from bot.analytics import staffing_cli

    staffing_cli.add_arguments(sub)
    from bot.analytics import report_cli

    report_cli.add_arguments(sub)
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    db_sub.add_parser("upgrade", help="apply database migrations")
    users = sub.add_parser("users", help="desk users (agents, supervisors, admins)")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="USERS")
    add = users_sub.add_parser("add", help="add a user; asks for the password")
    add.add_argument("username")
    add.add_argument(
        "--role", choices=["agent", "supervisor", "admin", "designer"], default="agent"
    )
    add.add_argument("--name", help="name shown to customers (default: the username)")
    add.add_argument("--skills", default="general:1", help="e.g. general:2,billing:1")
    add.add_argument("--max-chats", type=int, default=3)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    users_sub.add_parser("list", help="list users")
    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    api = bench_sub.add_parser("api", help="message round trip through a running service")
    api.add_argument("--url", help="bot service URL (default from config)")
    api.add_argument("--messages", type=int, default=50)
    wb = bench_sub.add_parser("webchat", help="concurrent webchat visitors on a running service")
    wb.add_argument("--url", help="bot service URL (default from config)")
    wb.add_argument("--visitors", type=int, default=50)
    wb.add_argument("--messages", type=int, default=3, help="questions per visitor")
    wb.add_argument("--think", type=float, default=1.0, help="mean seconds between messages")
    vb = bench_sub.add_parser("voice", help="concurrent simulated calls on a running media server")
    vb.add_argument("--url", help="media server URL (default from config)")
    vb.add_argument("--calls", default="1,4,8", help="concurrent calls, e.g. 8 or 1,4,8,12")
    vb.add_argument("--turns", type=int, default=3, help="questions per call")
    vb.add_argument(
        "--stagger", type=float, default=3.0, help="seconds over which the calls arrive"
    )
    vb.add_argument(
        "--transport",
        choices=("ws", "sip"),
        default="ws",
        help="ws: Twilio media streams; sip: SIP and RTP over UDP",
    )
    vb.add_argument("--sip", help="HOST:PORT of the SIP listener (default 127.0.0.1:sip_port)")
    sim = sub.add_parser(
        "simulate", help="scripted contact-centre traffic through the running receptionist"
    )
    sim.add_argument("--conversations", type=int, default=40, help="webchat visitors")
    sim.add_argument("--calls", type=int, default=0, help="phone calls via the media server")
    sim.add_argument("--agents", type=int, default=3, help="simulated desk agents")
    sim.add_argument("--duration", type=float, default=120.0, help="seconds arrivals span")
    sim.add_argument("--patience", type=float, default=45.0, help="seconds a customer waits")
    sim.add_argument(
        "--call-human-share", type=float, default=0.4, help="share of callers pressing 0"
    )
    sim.add_argument("--seed", type=int, help="same seed, same scripts and arrivals")
    sim.add_argument("--url", help="bot service URL (default from config)")
    sim.add_argument("--media-url", help="media server URL (default from config)")
    hb = bench_sub.add_parser("handoff", help="handoff → agent offer latency (self-contained)")
    hb.add_argument("--agents", type=int, default=5)
    hb.add_argument("--tickets", type=int, default=50)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from bot.logs import configure_logging

    quiet = args.command in ("up", "chat", "bench", "simulate")
    configure_logging("warning" if quiet else settings.logging.level, settings.logging.format)
    commands: dict[str, Callable[[], int]] = {
        "up": lambda: _up(settings, args.config),
        "serve": lambda: _serve(settings),
        "media": lambda: _media(settings),
        "chat": lambda: _chat(settings, args.url),
        "doctor": lambda: _doctor(settings),
    }
    if args.command == "nlu":
        if args.nlu_command == "test":
            return _nlu_test(
                settings, args.test_file, args.out, args.pipeline, args.url, args.token, args.folds
            )
        if args.nlu_command == "validate":
            return _nlu_validate(settings, args.project, args.skip_rasa)
        return _train(settings, args.force)
    if args.command == "models":
        from media_server import model_cli

        return model_cli.run(args, settings)
    if args.command == "db":
        return _db_upgrade(settings)
    if args.command == "users":
        return _users(settings, args)
    if args.command == "staffing":
        from bot.analytics import staffing_cli

        return staffing_cli.run(args, settings)
    if args.command == "report":
        from bot.analytics import report_cli

        return report_cli.run(args, settings)
    if args.command == "simulate":
        return _simulate(settings, args)
    if args.command == "bench" and args.bench_command == "webchat":
        return _bench_webchat(settings, args.url, args.visitors, args.messages, args.think)
    if args.command == "bench" and args.bench_command == "voice":
        return _bench_voice(
            settings, args.url, args.calls, args.turns, args.stagger, args.transport, args.sip
        )
    if args.command == "bench" and args.bench_command == "handoff":
        return _bench_handoff(args.agents, args.tickets)
    if args.command == "bench":
        return _bench_api(settings, args.url, args.messages)
    return commands[args.command]()


if __name__ == "__main__":
    sys.exit(main())
