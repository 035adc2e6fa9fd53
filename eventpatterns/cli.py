"""The `eventpatterns` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .core.definitions import Definitions, PatternFileError, load_definitions_file
from .core.timeutil import TimeFormatError, parse_timestamp
from .gctuning import freeze_survivors, tune_gc

EXIT_BAD_PATTERNS = 2


def _load_or_exit(path: str) -> Definitions:
    try:
        return load_definitions_file(path)
    except PatternFileError as error:
        for problem in error.problems:
            print(problem.render(path), file=sys.stderr)
        print(f"{path}: refused ({len(error.problems)} problem(s))", file=sys.stderr)
        raise SystemExit(EXIT_BAD_PATTERNS) from None


def cmd_validate(args: argparse.Namespace) -> int:
    definitions = _load_or_exit(args.patterns)
    print(f"{args.patterns}: OK: {definitions.summary()}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import run_replay

    definitions = _load_or_exit(args.patterns)
    tune_gc()  # every user's state stays alive to the end
    freeze_survivors()
    until = None
    if args.until is not None:
        try:
            until = parse_timestamp(args.until)
        except TimeFormatError as error:
            print(f"--until: {error}", file=sys.stderr)
            return EXIT_BAD_PATTERNS
    try:
        events = sys.stdin.buffer if args.events == "-" else open(args.events, "rb")  # noqa: SIM115
    except OSError as error:
        print(f"{args.events}: cannot read the events: {error.strerror or error}", file=sys.stderr)
        return EXIT_BAD_PATTERNS
    try:
        out = (
            sys.stdout.buffer if args.output in (None, "-") else open(args.output, "wb")  # noqa: SIM115
        )
    except OSError as error:
        print(f"{args.output}: cannot write the output: {error.strerror or error}", file=sys.stderr)
        if events is not sys.stdin.buffer:
            events.close()
        return EXIT_BAD_PATTERNS
    try:
        stats = run_replay(definitions, events, out, sys.stderr, until=until, drain=args.drain)
    finally:
        if events is not sys.stdin.buffer:
            events.close()
        if out is not sys.stdout.buffer:
            out.close()
    if args.strict and stats.bad_lines:
        print(f"{stats.bad_lines} bad line(s)", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventpatterns",
        description="Real-time event pattern engine over Kafka streams.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check a pattern file and summarise it")
    validate.add_argument("patterns")
    validate.set_defaults(func=cmd_validate)

    replay = commands.add_parser("replay", help="run a pattern file over a file of events")
    replay.add_argument("patterns")
    replay.add_argument("events", help="JSON lines, '-' for stdin")
    when = replay.add_mutually_exclusive_group()
    when.add_argument("--until", help="run timers due up to this ISO-8601 time at the end")
    when.add_argument("--drain", action="store_true", help="run every pending timer at the end")
    replay.add_argument("--strict", action="store_true", help="exit 1 if any line was bad")
    replay.add_argument("-o", "--output", help="write records here instead of stdout")
    replay.set_defaults(func=cmd_replay)

    _add_runtime_commands(commands)
    return parser


def _add_runtime_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The streaming commands live in `runtime_cli`, which imports Faust only when run."""
    from .runtime_cli import add_commands

    add_commands(commands)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
