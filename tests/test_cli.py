"""The command line: `validate` and `replay` (SPEC section 7), run as a user runs them.

Also keeps docs/patterns.md honest: every complete pattern file in it must load.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from eventpatterns.core.definitions import PatternFileError, load_definitions

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ACTION_KINDS = {
    "publish",
    "log_contact",
    "log_accept",
    "log_reject",
    "set_attribute",
    "trigger_events",
    "suppress_offers",
    "qualify_segments",
    "resegment",
    "reset_pattern",
}


def cli(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "eventpatterns.cli", *map(str, args)],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


def records(output: bytes) -> list[dict[str, Any]]:
    lines = output.decode().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(record, dict) for record in parsed)
    return parsed


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def jsonl(path: Path, *events: dict[str, Any] | str) -> Path:
    lines = [event if isinstance(event, str) else json.dumps(event) for event in events]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ev(user: str, name: str, when: str | None, **attributes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"user_id": user, "event": name}
    if when is not None:
        event["timestamp"] = when
    if attributes:
        event["attributes"] = attributes
    return event


# A pattern with a delayed action and a checkpoint, to see end-of-input timers at work.
TIMERS = """\
version: 1
patterns:
  - id: welcome
    type: match_all
    events: [{event: signup}, {event: verify}]
    on_met:
      - {action: publish, topic: mail, value: welcome, delay: 1h}
    checkpoints:
      - after: 1d
        actions: [{action: publish, topic: mail, value: reminder}]
"""


@pytest.fixture
def timers(tmp_path: Path) -> Path:
    return write(tmp_path / "timers.yaml", TIMERS)


# ---------------------------------------------------------------------- validate


def test_validate_a_good_file_prints_one_line_and_exits_0() -> None:
    result = cli("validate", "examples/clickstream.yaml")
    assert result.returncode == 0
    assert result.stderr == b""
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "examples/clickstream.yaml: OK: 2 patterns (2 sequence/time_bound), 2 offers, "
        "0 segments, source topic enriched-click-data, version "
    )


def test_validate_a_bad_file_prints_every_problem_and_exits_2(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad.yaml",
        """\
        version: 1
        colour: red
        patterns:
          - id: cart_abandon
            type: match_all
            events: [{event: add_to_cart, where: "len(items) > 0"}]
          - id: loyal
            type: counter
            events: [{event: purchase, count: 0}]
            on_met: [{action: log_contact, offer: nope}]
        """,
    )
    result = cli("validate", path)
    assert result.returncode == 2
    assert result.stdout == b""
    err = result.stderr.decode()
    assert "Traceback" not in err
    assert err.splitlines() == [
        f"{path}:2: colour: unknown key; the keys allowed here are version, source, offers, "
        "segments, patterns",
        f"{path}:6: patterns[0] (id=cart_abandon).events[0].where: function calls are not "
        "allowed (at column 1)",
        f"{path}:9: patterns[1] (id=loyal).events[0].count: must be at least 1",
        f"{path}:10: patterns[1] (id=loyal).on_met[0].offer: unknown offer 'nope' (not in the "
        "file's 'offers' catalogue)",
        f"{path}: refused (4 problem(s))",
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "the file is empty"),
        ("version: 1\npatterns:\n  - id: a\n   type: x\n", "not valid YAML"),
        ("- a\n", "the file holds a list"),
    ],
)
def test_validate_never_shows_a_traceback(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(content, encoding="utf-8")
    result = cli("validate", path)
    assert result.returncode == 2
    assert expected in result.stderr.decode()
    assert b"Traceback" not in result.stderr


def test_validate_a_missing_file(tmp_path: Path) -> None:
    result = cli("validate", tmp_path / "nope.yaml")
    assert result.returncode == 2
    assert b"cannot read the file" in result.stderr
    assert b"Traceback" not in result.stderr


def test_validate_json(tmp_path: Path) -> None:
    document = {
        "version": 1,
        "patterns": [{"id": "p", "type": "match_all", "events": [{"event": "a"}]}],
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(document, indent="\t"), encoding="utf-8")
    result = cli("validate", path)
    assert result.returncode == 0, result.stderr
    assert b"OK: 1 pattern (1 match_all/unbounded)" in result.stdout


# ---------------------------------------------------------------------- replay output


def test_replay_the_seed_example() -> None:
    result = cli("replay", "examples/clickstream.yaml", "examples/clickstream.jsonl")
    assert result.returncode == 0
    assert result.stderr == b""
    out = records(result.stdout)
    assert out
    for record in out:
        assert record["kind"] in {"transition", "action"}
        assert TIME.match(record["time"]), record
        assert set(record) >= {"kind", "time", "user_id", "pattern"}
    actions = [record for record in out if record["kind"] == "action"]
    assert {record["pattern"] for record in actions} == {
        "offer1_male_36_45",
        "offer2_female_25_35",
    }
    for record in actions:
        assert record["trigger"] == "met"
        assert record["action"] == "publish"
        assert record["topic"] == "special-offers"
        assert record["key"] == record["user_id"]
        (message,) = record["value"]
        assert set(message) == {"Timestamp", "Tags", "Id", "Value"}
        assert isinstance(message["Timestamp"], int)


def test_output_is_one_compact_json_object_a_line() -> None:
    result = cli("replay", "examples/all_kinds.yaml", "examples/all_kinds.jsonl")
    text = result.stdout.decode()
    assert text.endswith("\n")
    for line in text.splitlines():
        assert line.startswith("{") and line.endswith("}")
        assert json.dumps(json.loads(line), separators=(",", ":"), ensure_ascii=False) == line


@pytest.mark.parametrize(
    "args",
    [
        ("examples/clickstream.yaml", "examples/clickstream.jsonl"),
        ("examples/all_kinds.yaml", "examples/all_kinds.jsonl"),
        ("examples/all_kinds.yaml", "examples/all_kinds.jsonl", "--drain"),
    ],
)
def test_replay_is_deterministic_byte_for_byte(args: tuple[str, ...]) -> None:
    first = cli("replay", *args)
    second = cli("replay", *args)
    assert first.returncode == second.returncode == 0
    assert first.stdout
    assert first.stdout == second.stdout
    assert first.stderr == second.stderr


def test_time_is_utc_truncated_to_the_millisecond(tmp_path: Path) -> None:
    patterns = write(
        tmp_path / "p.yaml",
        """\
        version: 1
        patterns:
          - id: p
            type: match_all
            events: [{event: a}]
            on_met: [{action: publish, topic: t, value: "${now}"}]
        """,
    )
    events = jsonl(tmp_path / "e.jsonl", ev("u", "a", "2026-11-17T12:54:29.123999+01:00"))
    out = records(cli("replay", patterns, events).stdout)
    assert [record["time"] for record in out] == ["2026-11-17T11:54:29.123Z"] * 2
    assert out[1]["value"] == "2026-11-17T11:54:29.123Z"


def test_epoch_millisecond_timestamps(tmp_path: Path, timers: Path) -> None:
    events = jsonl(
        tmp_path / "e.jsonl",
        {"user_id": "u", "event": "signup", "timestamp": 1_794_916_469_123},
        {"user_id": "u", "event": "verify", "timestamp": 1_794_916_470_000},
    )
    (transition,) = records(cli("replay", timers, events).stdout)
    assert transition["time"] == "2026-11-17T11:54:30.000Z"


# ---------------------------------------------------------------------- bad lines


BAD_LINES = [
    ev("u1", "signup", "2026-11-02T09:00:00Z"),
    "{not json",
    "[1, 2]",
    ev("", "signup", "2026-11-02T09:00:00Z"),
    {"user_id": "u1", "timestamp": "2026-11-02T09:01:00Z"},
    "",
    ev("u1", "verify", "yesterday"),
    ev("u1", "verify", "2026-11-02T09:05:00Z"),
]


def test_bad_lines_are_reported_on_stderr_and_skipped(tmp_path: Path, timers: Path) -> None:
    events = jsonl(tmp_path / "e.jsonl", *BAD_LINES)
    result = cli("replay", timers, events)
    assert result.returncode == 0
    err = result.stderr.decode().splitlines()
    assert [line.split(":")[0] for line in err] == [
        "line 2",
        "line 3",
        "line 4",
        "line 5",
        "line 7",
    ]
    assert err[0].startswith("line 2: not JSON")
    assert err[1] == "line 3: an event is a JSON object, got list"
    assert err[2].startswith("line 4: 'user_id' must be a non-empty string")
    assert err[3] == "line 5: 'event' is missing (must be a non-empty string)"
    assert err[4].startswith("line 7: 'timestamp': 'yesterday' is not a timestamp")
    (transition,) = records(result.stdout)
    assert (transition["to"], transition["time"]) == ("met", "2026-11-02T09:05:00.000Z")


def test_strict_still_processes_everything_but_exits_1(tmp_path: Path, timers: Path) -> None:
    events = jsonl(tmp_path / "e.jsonl", *BAD_LINES)
    lenient = cli("replay", timers, events)
    strict = cli("replay", timers, events, "--strict")
    assert strict.returncode == 1
    assert strict.stdout == lenient.stdout != b""
    assert strict.stderr.decode().startswith(lenient.stderr.decode())
    assert strict.stderr.decode().splitlines()[-1] == "5 bad line(s)"


def test_strict_without_bad_lines_exits_0(tmp_path: Path, timers: Path) -> None:
    events = jsonl(tmp_path / "e.jsonl", ev("u1", "signup", "2026-11-02T09:00:00Z"))
    assert cli("replay", timers, events, "--strict").returncode == 0


def test_a_line_without_timestamp_takes_the_previous_events_time(
    tmp_path: Path, timers: Path
) -> None:
    events = jsonl(
        tmp_path / "e.jsonl",
        ev("u1", "signup", None),  # the first line has nothing to borrow from: bad
        ev("u1", "signup", "2026-11-02T09:00:00Z"),
        ev("u2", "signup", "2026-11-02T09:30:00.123456Z"),
        "bad line",
        ev("u1", "verify", None),  # 09:30:00.123456, from u2's line
    )
    result = cli("replay", timers, events)
    assert result.returncode == 0
    err = result.stderr.decode().splitlines()
    assert err[0] == "line 1: 'timestamp' is missing and there is no earlier time to use"
    assert err[1].startswith("line 4: not JSON: ")
    assert len(err) == 2
    (transition,) = records(result.stdout)
    assert (transition["user_id"], transition["time"]) == ("u1", "2026-11-02T09:30:00.123Z")


def test_a_chain_deeper_than_8_is_a_line_on_stderr(tmp_path: Path) -> None:
    patterns = write(
        tmp_path / "loop.yaml",
        """\
        version: 1
        patterns:
          - id: loop
            type: match_all
            events: [{event: ping}]
            on_met:
              - {action: reset_pattern}
              - {action: trigger_events, events: [ping]}
        """,
    )
    events = jsonl(tmp_path / "e.jsonl", ev("u", "ping", "2026-01-01T00:00:00Z"))
    result = cli("replay", patterns, events)
    assert result.returncode == 0
    out = records(result.stdout)
    assert all(record["kind"] != "error" for record in out)
    assert sum(1 for record in out if record.get("action") == "trigger_events") == 9
    assert result.stderr.decode().splitlines() == [
        "error: 2026-01-01T00:00:00.000Z user u pattern loop: chain of posted events deeper "
        "than 8: 'ping' was not posted"
    ]


# ---------------------------------------------------------------------- end of input


def timer_events(tmp_path: Path) -> Path:
    return jsonl(
        tmp_path / "e.jsonl",
        ev("u1", "signup", "2026-11-02T09:00:00Z"),
        ev("u1", "verify", "2026-11-02T09:05:00Z"),  # met: welcome due 10:05
        ev("u2", "signup", "2026-11-02T10:00:00Z"),  # reminder due 11-03 10:00
        ev("u3", "signup", "2026-11-02T10:30:00Z"),  # the last event; reminder 11-03 10:30
    )


def summary(output: bytes) -> list[tuple[str, str, str]]:
    return [
        (record["time"], record["user_id"], record["value"])
        for record in records(output)
        if record["kind"] == "action"
    ]


def test_by_default_timers_run_up_to_the_last_event_time(tmp_path: Path, timers: Path) -> None:
    result = cli("replay", timers, timer_events(tmp_path))
    assert summary(result.stdout) == [("2026-11-02T10:05:00.000Z", "u1", "welcome")]


def test_until_runs_timers_due_up_to_that_time(tmp_path: Path, timers: Path) -> None:
    events = timer_events(tmp_path)
    assert summary(cli("replay", timers, events, "--until", "2026-11-02T10:00:00Z").stdout) == []
    assert summary(cli("replay", timers, events, "--until", "2026-11-03T10:00:00Z").stdout) == [
        ("2026-11-02T10:05:00.000Z", "u1", "welcome"),
        ("2026-11-03T10:00:00.000Z", "u2", "reminder"),
    ]


def test_drain_runs_every_timer_in_due_order(tmp_path: Path, timers: Path) -> None:
    assert summary(cli("replay", timers, timer_events(tmp_path), "--drain").stdout) == [
        ("2026-11-02T10:05:00.000Z", "u1", "welcome"),
        ("2026-11-03T10:00:00.000Z", "u2", "reminder"),
        ("2026-11-03T10:30:00.000Z", "u3", "reminder"),
    ]


def test_until_and_drain_do_not_go_together(tmp_path: Path, timers: Path) -> None:
    result = cli(
        "replay", timers, timer_events(tmp_path), "--drain", "--until", "2026-11-03T00:00:00Z"
    )
    assert result.returncode == 2
    assert b"not allowed with argument" in result.stderr


def test_a_bad_until(tmp_path: Path, timers: Path) -> None:
    result = cli("replay", timers, timer_events(tmp_path), "--until", "2026-11-03")
    assert result.returncode == 2
    assert result.stderr.decode().startswith("--until: timestamp '2026-11-03' has no offset")
    assert result.stdout == b""


# ---------------------------------------------------------------------- files and streams


def test_output_file(tmp_path: Path, timers: Path) -> None:
    events = timer_events(tmp_path)
    out = tmp_path / "out.jsonl"
    result = cli("replay", timers, events, "-o", out, "--drain")
    assert result.returncode == 0
    assert result.stdout == b""
    assert out.read_bytes() == cli("replay", timers, events, "--drain").stdout
    # `-o -` is stdout
    assert cli("replay", timers, events, "-o", "-").stdout == cli("replay", timers, events).stdout


def test_events_from_stdin(tmp_path: Path, timers: Path) -> None:
    events = timer_events(tmp_path)
    piped = cli("replay", timers, "-", "--drain", stdin=events.read_bytes())
    assert piped.returncode == 0
    assert piped.stdout == cli("replay", timers, events, "--drain").stdout


def test_empty_input(tmp_path: Path, timers: Path) -> None:
    result = cli("replay", timers, "-", "--drain", stdin=b"")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_missing_events_file_or_unwritable_output(tmp_path: Path, timers: Path) -> None:
    result = cli("replay", timers, tmp_path / "none.jsonl")
    assert result.returncode == 2
    assert b"cannot read the events" in result.stderr
    assert b"Traceback" not in result.stderr
    result = cli("replay", timers, timer_events(tmp_path), "-o", tmp_path / "no" / "dir.jsonl")
    assert result.returncode == 2
    assert b"cannot write the output" in result.stderr
    assert b"Traceback" not in result.stderr


def test_a_bad_pattern_file_exits_2_with_every_error(tmp_path: Path) -> None:
    patterns = write(
        tmp_path / "bad.yaml",
        """\
        version: 1
        patterns:
          - {id: a, type: match_al, events: [{event: x}]}
          - {id: b, type: counter, events: [{event: x, where: "x[0]"}]}
        """,
    )
    result = cli("replay", patterns, timer_events(tmp_path))
    assert result.returncode == 2
    assert result.stdout == b""
    err = result.stderr.decode()
    assert "Traceback" not in err
    assert err.splitlines() == [
        f"{patterns}:3: patterns[0] (id=a).type: must be match_all, counter, weighted_counter "
        "or sequence",
        f"{patterns}:4: patterns[1] (id=b).events[0].where: subscripts are not allowed "
        "(at column 1)",
        f"{patterns}: refused (2 problem(s))",
    ]


# ---------------------------------------------------------------------- the all-kinds example


def test_all_kinds_drain_prints_every_action_kind() -> None:
    result = cli("replay", "examples/all_kinds.yaml", "examples/all_kinds.jsonl", "--drain")
    assert result.returncode == 0
    assert result.stderr == b""
    out = records(result.stdout)
    assert {record["action"] for record in out if record["kind"] == "action"} == ACTION_KINDS
    assert {record["trigger"] for record in out if record["kind"] == "action"} == {
        "met",
        "checkpoint",
    }
    assert {record["to"] for record in out if record["kind"] == "transition"} == {
        "met",
        "not_met",
        "suspended",
    }
    fired = {record["pattern"] for record in out if record.get("to") == "met"}
    assert len(fired) == 12  # every pattern fires for someone
    assert {record["user_id"] for record in out} == {f"u{n:02d}" for n in range(1, 11)}
    # shoes10 was suppressed for u08 by contact_fatigue
    (shoes,) = [
        r
        for r in out
        if r.get("offer") == "shoes10" and r["user_id"] == "u08" and r["action"] == "publish"
    ]
    assert shoes["suppressed"] is True


def test_all_kinds_scheduled_actions_need_drain() -> None:
    default = records(cli("replay", "examples/all_kinds.yaml", "examples/all_kinds.jsonl").stdout)
    drained = records(
        cli("replay", "examples/all_kinds.yaml", "examples/all_kinds.jsonl", "--drain").stdout
    )
    assert drained[: len(default)] == default
    late = drained[len(default) :]
    assert {record["time"] for record in late} == {
        "2026-11-19T12:00:00.000Z",  # u10's checkpoint
        "2026-11-20T09:00:00.000Z",  # the `at` of browse_then_cart
    }


# ---------------------------------------------------------------------- the docs


def yaml_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", markdown, flags=re.S | re.M)


@pytest.mark.parametrize("doc", ["patterns.md", "events.md"])
def test_every_complete_pattern_file_in_the_docs_loads(doc: str) -> None:
    blocks = yaml_blocks((ROOT / "docs" / doc).read_text(encoding="utf-8"))
    files = [block for block in blocks if re.search(r"^version: 1\s*$", block, flags=re.M)]
    if doc == "patterns.md":
        assert len(files) >= 12, "an example for every kind of pattern"
    for block in files:
        try:
            load_definitions(block, f"docs/{doc}")
        except PatternFileError as error:  # pragma: no cover - shows which block rotted
            pytest.fail(f"a yaml block in docs/{doc} does not load:\n{error}\n\n{block}")


def test_the_docs_show_every_pattern_kind_and_action() -> None:
    text = (ROOT / "docs" / "patterns.md").read_text(encoding="utf-8")
    definitions = [
        load_definitions(block)
        for block in yaml_blocks(text)
        if re.search(r"^version: 1\s*$", block, flags=re.M)
    ]
    kinds = {(p.type, p.mode) for d in definitions for p in d.patterns}
    assert kinds == {
        (kind, mode)
        for kind in ("match_all", "counter", "weighted_counter", "sequence")
        for mode in ("unbounded", "time_bound", "rolling")
    }
    actions = {
        action.kind
        for d in definitions
        for p in d.patterns
        for action in (*p.on_met, *(a for c in p.checkpoints for a in c.actions))
    }
    assert actions == ACTION_KINDS


def test_the_operations_guide_lists_every_setting_as_the_code_describes_it() -> None:
    from eventpatterns.settings import settings_table

    guide = (ROOT / "docs/operations.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(EVENTPATTERNS_\w+)` \| `.*?` \| (.*) \|$", guide, re.M))
    assert rows == {variable: text for variable, _, text in settings_table()}
