"""Why a pattern is or is not met, for people: structured fields and plain sentences.

Pure and read-only: it looks at a user's `UserState` under a `Definitions` and
a time `now_us` (microseconds), and says what the user has, what is still
missing, and until when. The HTTP API serves it (`GET /v1/users/{id}` and
`.../explain/{pattern}`); the dashboard shows it.

Occurrences that have left the window by `now_us` are not counted, even if
the engine has not pruned them yet (it prunes on the user's next occurrence).
Times are ISO-8601 UTC with a `Z`, to the second when that loses nothing,
else to the millisecond.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .definitions import Action, Composing, Definitions, Pattern
from .evaluator import aggregate_value
from .expressions import MISSING
from .state import (
    MET,
    STATUS_NAMES,
    SUSPENDED,
    TIMER_ACTION,
    TIMER_CHECKPOINT,
    TIMER_EXTENSION_END,
    TIMER_SUSPENSION_END,
    PatternState,
    Timer,
    UserState,
)
from .timeutil import US_PER_S, format_duration, format_ms, us_to_datetime

Json = dict[str, Any]


class UnknownPattern(KeyError):
    """The pattern id is not in the definitions in force."""


# --------------------------------------------------------------------------- formatting


def iso(value: int | None) -> str | None:
    """ISO-8601 UTC with `Z`: seconds when exact, else milliseconds."""
    if value is None:
        return None
    if value % US_PER_S == 0:
        return us_to_datetime(value).strftime("%Y-%m-%dT%H:%M:%SZ")
    return format_ms(value)


def _duration(value: int | None) -> str | None:
    return None if value is None else format_duration(value)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _phrase(step: Composing) -> str:
    """`'click' where category == 'shoes'`: how a composing event reads in a sentence."""
    head, _, where = step.label.partition(" where ")
    return f"'{head}' where {where}" if where else f"'{head}'"


def _events_phrase(step: Composing, count: int) -> str:
    head, _, where = step.label.partition(" where ")
    noun = "event" if count == 1 else "events"
    text = f"{count} '{head}' {noun}"
    return f"{text} where {where}" if where else text


def _action_phrase(action: Action) -> str:
    fields = action.fields
    kind = action.kind
    if kind == "publish":
        offer = fields.get("offer")
        text = f"publish to '{fields.get('topic')}'"
        return f"{text} (offer {offer})" if offer else text
    if kind in ("log_contact", "log_accept", "log_reject"):
        return f"{kind} (offer {fields.get('offer')})"
    if kind == "set_attribute":
        return f"set_attribute {fields.get('name')}"
    if kind == "trigger_events":
        return "trigger_events " + ", ".join(str(name) for name in fields.get("events") or ())
    if kind == "qualify_segments":
        return "qualify_segments " + ", ".join(str(s) for s in fields.get("segments") or ())
    if kind == "suppress_offers":
        offers = fields.get("offers")
        return "suppress_offers " + (", ".join(offers) if offers else "(by attributes)")
    if kind == "reset_pattern":
        target = fields.get("target")
        return f"reset_pattern {target}" if target else "reset_pattern"
    return kind


def _action_json(action: Action) -> Json:
    out: Json = {"action": action.kind, "description": _action_phrase(action)}
    for key in ("topic", "offer", "name", "target"):
        value = action.fields.get(key)
        if isinstance(value, str):
            out[key] = value
    return out


# --------------------------------------------------------------------------- state views


def _current(pattern: Pattern, state: UserState) -> PatternState | None:
    """The user's state of this pattern, or None if it has none (or one of an older edition)."""
    ps = state.patterns.get(pattern.id)
    if ps is None or ps.fingerprint != pattern.fingerprint:
        return None
    return ps


def _horizon(pattern: Pattern, now_us: int) -> int | None:
    return None if pattern.duration is None else now_us - pattern.duration


class _StepView:
    """What one composing event has, as of now."""

    def __init__(self, pattern: Pattern, ps: PatternState | None, step: Composing, now: int):
        self.step = step
        store: list[Any] = ps.occurrences[step.index] if ps is not None else []
        self.times: list[int] = []
        self.count = 0
        self.first: int | None = None
        self.last: int | None = None
        self.values: list[list[Any]] = []
        if pattern.duration is None:
            if store:
                self.count = int(store[0])
                self.first = int(store[1])
                self.last = int(store[2])
        else:
            horizon = now - pattern.duration
            live = [o for o in store if o[0] > horizon]
            self.values = live
            self.times = [int(o[0]) for o in live]
            self.count = len(live)
            if live:
                self.first = self.times[0]
                self.last = self.times[-1]
        self.live_store: list[Any] = store if pattern.duration is None else self.values


def _aggregate_views(pattern: Pattern, ps: PatternState | None, view: _StepView) -> list[Json]:
    out = []
    step = view.step
    probe: PatternState | None = None
    if ps is not None:
        probe = PatternState.new(ps.fingerprint, len(pattern.events))
        probe.occurrences[step.index] = view.live_store
    for aggregate in step.aggregates:
        current = aggregate_value(pattern, probe, step, aggregate) if probe is not None else 0.0
        out.append(
            {
                "fn": aggregate.fn,
                "attribute": aggregate.attribute,
                "op": aggregate.op,
                "value": aggregate.value,
                "current": current,
                "holds": aggregate.holds(current),
                "condition": aggregate.describe(),
            }
        )
    return out


def _needed(pattern: Pattern, step: Composing) -> int | None:
    if pattern.type == "counter":
        return step.count
    if pattern.type in ("match_all", "sequence"):
        return 1
    return None


def _expiry(pattern: Pattern, view: _StepView) -> int | None:
    """When the oldest occurrence this composing event still needs leaves the window."""
    if pattern.duration is None or not view.times:
        return None
    needed = _needed(pattern, view.step)
    if view.step.aggregates or needed is None:
        oldest = view.times[0]
    elif view.count >= needed:
        oldest = view.times[-needed]
    else:
        oldest = view.times[0]
    return oldest + pattern.duration


# --------------------------------------------------------------------------- timers


def _timers_of(pattern: Pattern, state: UserState) -> list[Timer]:
    return sorted(
        (t for t in state.timers if t[3] == pattern.id and t[4] == pattern.fingerprint),
        key=lambda t: (t[0], t[1]),
    )


def _timer_json(pattern: Pattern, timer: Timer) -> Json:
    due, timer_id, kind, _, _, payload = timer
    out: Json = {"kind": kind, "due": iso(due), "due_us": due, "id": timer_id}
    try:
        if kind == TIMER_ACTION:
            (where, position), trigger, *_ = payload
            actions = pattern.on_met if where == -1 else pattern.checkpoints[where].actions
            out.update(_action_json(actions[position]))
            out["trigger"] = trigger
            out["description"] = f"delayed {out['description']}"
        elif kind == TIMER_CHECKPOINT:
            index = int(payload[0])
            checkpoint = pattern.checkpoints[index]
            out["checkpoint"] = index
            out["after"] = format_duration(checkpoint.after)
            out["actions"] = [_action_json(a) for a in checkpoint.actions]
            out["description"] = "checkpoint: if still not met, run " + ", ".join(
                _action_phrase(a) for a in checkpoint.actions
            )
        elif kind == TIMER_EXTENSION_END:
            out["description"] = "end of the met period (extend_true_state); back to not_met"
        elif kind == TIMER_SUSPENSION_END:
            out["description"] = "end of the suspension; back to not_met"
    except (IndexError, TypeError, ValueError):  # pragma: no cover - defensive
        out["description"] = kind
    return out


# --------------------------------------------------------------------------- user


def describe_user(definitions: Definitions, state: UserState, now_us: int) -> Json:
    """Profile, segments, suppressed offers, and every pattern's state with its pending timers."""
    suppressed = []
    for code, until in sorted(state.suppressed.items()):
        if until is not None and until <= now_us:
            continue
        suppressed.append({"offer": code, "until": iso(until), "for_good": until is None})
    patterns = []
    for pattern in definitions.patterns:
        ps = _current(pattern, state)
        status = STATUS_NAMES[ps.status] if ps is not None else "not_met"
        views = [_StepView(pattern, ps, step, now_us) for step in pattern.events]
        entry: Json = {
            "id": pattern.id,
            "type": pattern.type,
            "window": _window_json(pattern),
            "status": status,
            "suspended_until": iso(ps.suspended_until) if ps is not None else None,
            "events": [
                {"label": view.step.label, "count": view.count, "last": iso(view.last)}
                for view in views
            ],
            "timers": [_timer_json(pattern, timer) for timer in _timers_of(pattern, state)],
        }
        if pattern.type == "sequence":
            entry["sequence_progress"] = _furthest(pattern, ps, now_us)[0]
            entry["sequence_steps"] = len(pattern.events)
        patterns.append(entry)
    return {
        "user_id": state.user_id,
        "as_of": iso(now_us),
        "last_activity": iso(state.clock),
        "version": definitions.version,
        "profile": state.profile,
        "segments": list(state.segments),
        "suppressed_offers": suppressed,
        "patterns": patterns,
        "timers": sum(len(p["timers"]) for p in patterns),
    }


def _window_json(pattern: Pattern) -> Json:
    if pattern.duration is None:
        return {"mode": "unbounded"}
    out: Json = {
        "mode": pattern.mode,
        "duration": format_duration(pattern.duration),
        "duration_us": pattern.duration,
    }
    if pattern.mode == "time_bound":
        out["extend_true_state"] = format_duration(pattern.extend)
    return out


# --------------------------------------------------------------------------- sequences


def _furthest(pattern: Pattern, ps: PatternState | None, now: int) -> tuple[int, list[Any] | None]:
    """(steps matched, run) of the live partial match that got furthest (latest start on ties)."""
    if ps is None:
        return 0, None
    horizon = _horizon(pattern, now)
    best: list[Any] | None = None
    for run in ps.runs:
        if horizon is not None and run[1] <= horizon:
            continue
        matched = int(run[0])
        if matched < len(pattern.events):
            following = pattern.events[matched]
            if following.max_after is not None and now - run[3] > following.max_after:
                continue
        if best is None or (matched, run[1], run[2]) > (best[0], best[1], best[2]):
            best = run
    return (0, None) if best is None else (int(best[0]), best)


def _sequence_json(pattern: Pattern, ps: PatternState | None, now: int) -> Json:
    total = len(pattern.events)
    matched, run = _furthest(pattern, ps, now)
    out: Json = {
        "steps": total,
        "matched": matched,
        "complete": matched == total,
        "partial_matches": 0 if ps is None else len(ps.runs),
        "started": iso(run[1]) if run is not None else None,
        "last_step_at": iso(run[3]) if run is not None else None,
        "next_step": None,
    }
    if matched < total:
        step = pattern.events[matched]
        earliest: int | None = None
        latest: int | None = None
        if run is not None:
            if step.min_after is not None:
                earliest = run[3] + step.min_after
            if step.max_after is not None:
                latest = run[3] + step.max_after
            if pattern.duration is not None:
                ends = run[1] + pattern.duration
                latest = ends if latest is None else min(latest, ends)
        if pattern.end is not None:
            latest = pattern.end if latest is None else min(latest, pattern.end)
        out["next_step"] = {
            "index": matched,
            "label": step.label,
            "event": step.matcher.name,
            "min_after": _duration(step.min_after),
            "max_after": _duration(step.max_after),
            "earliest": iso(earliest),
            "latest": iso(latest),
            "earliest_us": earliest,
            "latest_us": latest,
        }
    return out


# --------------------------------------------------------------------------- explain


def explain(definitions: Definitions, state: UserState, pattern_id: str, now_us: int) -> Json:
    """Why `pattern_id` is or is not met for this user, as of `now_us`."""
    pattern = definitions.by_id.get(pattern_id)
    if pattern is None:
        raise UnknownPattern(pattern_id)
    stored = state.patterns.get(pattern.id)
    ps = _current(pattern, state)
    status = STATUS_NAMES[ps.status] if ps is not None else "not_met"
    views = [_StepView(pattern, ps, step, now_us) for step in pattern.events]
    summary: list[str] = []

    events = []
    for view in views:
        step = view.step
        needed = _needed(pattern, step)
        aggregates = _aggregate_views(pattern, ps, view)
        missing = max(0, needed - view.count) if needed is not None else None
        satisfied = (missing == 0 if missing is not None else view.count > 0) and all(
            a["holds"] for a in aggregates
        )
        entry: Json = {
            "index": step.index,
            "label": step.label,
            "event": step.matcher.name,
            "count": view.count,
            "needed": needed,
            "missing": missing,
            "first": iso(view.first),
            "last": iso(view.last),
            "expires": iso(_expiry(pattern, view)),
            "aggregates": aggregates,
            "satisfied": satisfied,
        }
        if pattern.type == "weighted_counter":
            entry["weight"] = step.weight
            entry["score"] = step.weight * view.count
        if pattern.type == "sequence":
            entry["alias"] = step.alias
            entry["min_after"] = _duration(step.min_after)
            entry["max_after"] = _duration(step.max_after)
        events.append(entry)

    out: Json = {
        "user_id": state.user_id,
        "pattern": pattern.id,
        "type": pattern.type,
        "version": definitions.version,
        "as_of": iso(now_us),
        "status": status,
        "window": _window_json(pattern),
        "start": iso(pattern.start),
        "end": iso(pattern.end),
        "audience": pattern.audience.source if pattern.audience is not None else None,
        "ignore_repeats": pattern.ignore_repeats,
        "events": events,
        "condition_holds": False,
        "deadline": None,
        "suspension": None,
        "extension_ends": None,
        "checkpoints": [],
        "delayed_actions": [],
        "dropped": ps.dropped if ps is not None else 0,
        "summary": summary,
    }
    if pattern.ignore_repeats and ps is not None and ps.last_value is not MISSING:
        out["last_repeat_value"] = ps.last_value

    # ---- the condition and what is missing
    deadline: int | None = None
    expiries = [e for e in (_expiry(pattern, v) for v in views) if e is not None]
    if expiries:
        deadline = min(expiries)
    if pattern.end is not None and (deadline is None or pattern.end < deadline):
        deadline = pattern.end
    if pattern.type == "sequence":
        sequence = _sequence_json(pattern, ps, now_us)
        out["sequence"] = sequence
        holds = sequence["complete"]
        next_step = sequence["next_step"]
        deadline = next_step["latest_us"] if next_step is not None else None
    elif pattern.type == "weighted_counter":
        score = sum(
            step.weight * view.count for step, view in zip(pattern.events, views, strict=True)
        )
        out["score"] = {
            "current": score,
            "threshold": pattern.threshold,
            "missing": max(0.0, pattern.threshold - score),
        }
        holds = score >= pattern.threshold - 1e-9
    else:
        holds = all(e["missing"] == 0 for e in events)
    holds = holds and all(a["holds"] for e in events for a in e["aggregates"])
    out["condition_holds"] = holds
    out["deadline"] = iso(deadline)

    # ---- timers
    extension_end: int | None = None
    for timer in _timers_of(pattern, state):
        view_json = _timer_json(pattern, timer)
        if timer[2] == TIMER_CHECKPOINT:
            out["checkpoints"].append(view_json)
        elif timer[2] == TIMER_ACTION:
            out["delayed_actions"].append(view_json)
        elif timer[2] == TIMER_EXTENSION_END:
            extension_end = int(timer[0])
    out["extension_ends"] = iso(extension_end)

    # ---- the sentences
    if stored is not None and ps is None:
        summary.append("This pattern was changed since this user's last activity: it starts fresh.")
    if pattern.start is not None and now_us < pattern.start:
        summary.append(f"The pattern starts counting at {iso(pattern.start)}.")
    if pattern.end is not None and now_us >= pattern.end:
        summary.append(f"The pattern stopped counting at {iso(pattern.end)}.")

    if ps is not None and ps.status == SUSPENDED:
        until = ps.suspended_until
        out["suspension"] = {"until": iso(until), "until_reset": until is None}
        if until is None:
            summary.append("Suspended until it is reset: nothing counts and nothing fires.")
        else:
            summary.append(
                f"Suspended until {iso(until)}: nothing counts and nothing fires until then."
            )
    elif ps is not None and ps.status == MET:
        summary.extend(_met_sentences(pattern, extension_end))

    if not (ps is not None and ps.status == MET and pattern.mode != "rolling"):
        summary.extend(_progress_sentences(pattern, out, views, holds, deadline))

    for timer in out["checkpoints"]:
        summary.append(
            f"Checkpoint at {timer['due']}: if the pattern is still not met then, it will "
            + ", ".join(a["description"] for a in timer["actions"])
            + "."
        )
    for timer in out["delayed_actions"]:
        summary.append(f"A delayed action ({timer['description'][8:]}) runs at {timer['due']}.")
    if pattern.audience is not None:
        summary.append(f"Only events where {pattern.audience.source} count.")
    if pattern.ignore_repeats:
        summary.append(
            f"An event with the same {pattern.ignore_repeats} as the previous one is ignored."
        )
    if out["dropped"]:
        summary.append(
            f"{out['dropped']} older occurrences or partial matches were dropped by the "
            "engine's limits."
        )
    return out


def _met_sentences(pattern: Pattern, extension_end: int | None) -> list[str]:
    if pattern.mode == "unbounded":
        return ["Met. An unbounded pattern stays met until it is reset."]
    if pattern.mode == "rolling":
        return [
            "Met. A rolling pattern stays met while its condition holds in the last "
            f"{format_duration(pattern.duration or 0)}; it is checked again at the next event."
        ]
    if extension_end is not None:
        return [
            f"Met. It stays met (its events are ignored) until {iso(extension_end)}, "
            "then a new cycle starts."
        ]
    return ["Met."]


def _progress_sentences(
    pattern: Pattern,
    out: Mapping[str, Any],
    views: Sequence[_StepView],
    holds: bool,
    deadline: int | None,
) -> list[str]:
    lines: list[str] = []
    events: list[Json] = out["events"]
    before = f" before {iso(deadline)}" if deadline is not None else ""
    window = pattern.duration
    if pattern.type == "sequence":
        sequence: Json = out["sequence"]
        total, matched = sequence["steps"], sequence["matched"]
        if matched == total:
            lines.append(f"All {total} steps are done (the last at {sequence['last_step_at']}).")
        elif matched == 0:
            first = pattern.events[0]
            span = f" within {format_duration(window)}" if window is not None else ""
            lines.append(
                f"No sequence in progress: needs {_phrase(first)} first, then "
                f"{_plural(total - 1, 'more step')}{span}."
            )
        else:
            nxt: Json = sequence["next_step"]
            step = pattern.events[nxt["index"]]
            lines.append(
                f"Has done {matched} of {total} steps (started {sequence['started']}, "
                f"last step {sequence['last_step_at']})."
            )
            bounds = []
            if nxt["earliest"] is not None:
                bounds.append(f"no earlier than {nxt['earliest']}")
            if nxt["latest"] is not None:
                bounds.append(f"before {nxt['latest']}")
            rest = total - matched - 1
            tail = f", then {_plural(rest, 'more step')}" if rest else ""
            when = f" ({' and '.join(bounds)})" if bounds else ""
            lines.append(f"Next: {_phrase(step)}{when}{tail}.")
    elif pattern.type == "weighted_counter":
        score: Json = out["score"]
        parts = [
            f"{_number(view.count)} x {_phrase(view.step)} (weight {_number(view.step.weight)})"
            for view in views
            if view.count
        ]
        has = "; ".join(parts) if parts else "no counted events"
        lines.append(f"Score {_number(score['current'])} of {_number(score['threshold'])} ({has}).")
        if score["missing"] > 0:
            lines.append(f"Needs {_number(score['missing'])} more points{before}.")
    else:
        for entry, view in zip(events, views, strict=True):
            missing = entry["missing"]
            needed = entry["needed"]
            step = view.step
            if view.count:
                seen = (
                    f"last at {entry['last']}"
                    if view.count == 1
                    else f"first {entry['first']}, last {entry['last']}"
                )
                have = f"Has {_events_phrase(step, view.count)} ({seen})"
                if missing:
                    lines.append(f"{have}; needs {needed}.")
                else:
                    expires = entry["expires"]
                    tail = f"; counts until {expires}" if expires and not holds else ""
                    lines.append(f"{have}{tail}.")
            if missing:
                lines.append(f"Needs {_plural_more(step, missing, view.count)}{before}.")
    for entry in events:
        for aggregate in entry["aggregates"]:
            if not aggregate["holds"]:
                lines.append(
                    f"{_phrase(pattern.events[entry['index']])}: {aggregate['fn']}"
                    f"({aggregate['attribute']}) is {_number(aggregate['current'])}, needs "
                    f"{aggregate['op']} {_number(aggregate['value'])}{before}."
                )
    if holds:
        lines.append("The condition holds now.")
    elif deadline is not None and window is not None and any(v.count for v in views):
        lines.append(
            f"Events count for {format_duration(window)}: the oldest one still needed drops "
            f"out at {iso(deadline)}."
            if pattern.type != "sequence"
            else f"The partial match expires at {iso(deadline)}."
        )
    return lines


def _plural_more(step: Composing, missing: int, have: int) -> str:
    head, _, where = step.label.partition(" where ")
    more = " more" if have else ""
    noun = "event" if missing == 1 else "events"
    text = f"{missing}{more} '{head}' {noun}"
    return f"{text} where {where}" if where else text


__all__ = ["UnknownPattern", "describe_user", "explain", "iso"]
