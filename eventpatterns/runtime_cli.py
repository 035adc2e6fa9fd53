"""Streaming commands: `run`, `post`, `tail`, `patterns push`, `settings`, `demo`.

Kept apart from `cli.py` so that `validate` and `replay` start without Faust.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import orjson

EMBEDDED_ADDRESS_FILE = "embedded-broker"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run", help="run a worker (embedded broker unless one is set)")
    run.add_argument("--patterns", help="pattern file (EVENTPATTERNS_PATTERNS)")
    run.add_argument("--web-port", type=int, help="HTTP port (EVENTPATTERNS_WEB_PORT)")
    run.set_defaults(func=cmd_run)

    post = commands.add_parser("post", help="send JSON lines onto the input topic")
    post.add_argument("events", nargs="?", default="-", help="JSON lines file, '-' for stdin")
    post.add_argument("--topic", help="topic (default: the pattern file's source topic)")
    post.add_argument("--patterns", help="pattern file whose source mapping keys the records")
    post.set_defaults(func=cmd_post)

    tail = commands.add_parser("tail", help="pretty-print a topic as it grows")
    tail.add_argument("topic")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--count", type=int, help="stop after this many records")
    tail.set_defaults(func=cmd_tail)

    patterns = commands.add_parser("patterns", help="the pattern file in force")
    patterns_commands = patterns.add_subparsers(dest="patterns_command", required=True)
    push = patterns_commands.add_parser("push", help="validate a file and make it the one in force")
    push.add_argument("file")
    push.set_defaults(func=cmd_patterns_push)
    show = patterns_commands.add_parser("show", help="print the pattern file in force")
    show.set_defaults(func=cmd_patterns_show)

    settings = commands.add_parser("settings", help="list the EVENTPATTERNS_* variables")
    settings.set_defaults(func=cmd_settings)

    demo = commands.add_parser("demo", help="the seed's clickstream scenario, end to end")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument("--no-tui", action="store_true", help="plain lines instead of the live view")
    demo.add_argument("--users", type=int, default=300)
    demo.add_argument("--rate", type=float, default=200.0, help="clicks per second")
    demo.set_defaults(func=cmd_demo)


# ---------------------------------------------------------------------- helpers


def _settings(**overrides: Any) -> Any:
    from .settings import Settings

    values = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**values)


def address_file(settings: Any) -> Path:
    return Path(settings.data_dir) / EMBEDDED_ADDRESS_FILE


def resolve_bootstrap(settings: Any) -> str:
    """EVENTPATTERNS_BROKER, else the embedded broker a local `run` started."""
    from .broker import broker_from_env, to_bootstrap

    url = broker_from_env(settings.broker)
    if url is not None:
        return to_bootstrap(url)
    path = address_file(settings)
    if path.exists():
        return path.read_text().strip()
    raise SystemExit(
        "no broker: set EVENTPATTERNS_BROKER, or start `eventpatterns run` (embedded broker) first"
    )


# ---------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from .broker import EmbeddedBroker, broker_from_env
    from .worker import EMBEDDED_BANNER, run_worker

    settings = _settings(patterns=args.patterns, web_port=args.web_port)
    url = broker_from_env(settings.broker)
    if url is not None:
        return run_worker(settings, url)
    with EmbeddedBroker() as broker:
        print(EMBEDDED_BANNER.format(url=broker.bootstrap), file=sys.stderr, flush=True)
        path = address_file(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(broker.bootstrap)
        try:
            return run_worker(settings, broker.url)
        finally:
            with contextlib.suppress(OSError):
                path.unlink()


def cmd_post(args: argparse.Namespace) -> int:
    from .core.definitions import load_definitions_file
    from .core.events import DEFAULT_SOURCE

    settings = _settings(patterns=args.patterns)
    source = DEFAULT_SOURCE
    if os.path.exists(settings.patterns):
        source = load_definitions_file(settings.patterns).source
    topic = args.topic or source.topic
    stream = sys.stdin.buffer if args.events == "-" else open(args.events, "rb")  # noqa: SIM115
    try:
        sent = asyncio.run(post_lines(resolve_bootstrap(settings), topic, stream, source))
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    print(f"posted {sent} record(s) to {topic}", file=sys.stderr)
    return 0


async def post_lines(bootstrap: str, topic: str, lines: Any, source: Any) -> int:
    """Records keyed by their user id, so they land in their user's partition."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    sent = 0
    try:
        for line in lines:
            line = line.strip()
            if not line:
                continue
            await producer.send(topic, line, key=_user_key(line, source))
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def _user_key(line: bytes, source: Any) -> bytes | None:
    with contextlib.suppress(orjson.JSONDecodeError):
        record = orjson.loads(line)
        if isinstance(record, dict):
            user = record.get(source.user_id)
            if isinstance(user, str | int) and not isinstance(user, bool):
                return str(user).encode()
    return None  # a bad record still goes through, to the dead-letter topic


def cmd_tail(args: argparse.Namespace) -> int:
    settings = _settings()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(tail(resolve_bootstrap(settings), args.topic, args.from_beginning, args.count))
    return 0


async def tail(bootstrap: str, topic: str, from_beginning: bool, count: int | None) -> None:
    from aiokafka import AIOKafkaConsumer
    from rich.console import Console

    console = Console()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    try:
        async for message in consumer:
            key = message.key.decode(errors="replace") if message.key else "-"
            try:
                value: Any = orjson.loads(message.value)
                console.print(f"[dim]{message.partition}:{message.offset}[/] [bold]{key}[/]")
                console.print_json(data=value)
            except orjson.JSONDecodeError:
                console.print(f"{message.partition}:{message.offset} {key} {message.value!r}")
            seen += 1
            if count is not None and seen >= count:
                return
    finally:
        await consumer.stop()


def cmd_patterns_push(args: argparse.Namespace) -> int:
    from .cli import _load_or_exit
    from .patternstore import publish

    definitions = _load_or_exit(args.file)
    settings = _settings()
    with open(args.file, encoding="utf-8") as handle:
        text = handle.read()
    asyncio.run(publish(resolve_bootstrap(settings), settings.definitions_topic, text))
    print(f"{args.file}: published version {definitions.version}: {definitions.summary()}")
    return 0


def cmd_patterns_show(args: argparse.Namespace) -> int:
    from .patternstore import read_latest

    settings = _settings()
    text = asyncio.run(read_latest(resolve_bootstrap(settings), settings.definitions_topic))
    if text is None:
        print("no pattern file has been published", file=sys.stderr)
        return 1
    print(text, end="" if text.endswith("\n") else "\n")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from .settings import settings_table

    for variable, default, description in settings_table():
        print(f"{variable} (default {default})\n    {description}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.duration, not args.no_tui, args.users, args.rate)
