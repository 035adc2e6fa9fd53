"""Actions (SPEC section 5): run at once, or kept as timers until they take effect.

An action changes only the user's state and returns records; posting events
(chained and macro) goes through a FIFO the evaluator drains after the current
event, so that SPEC section 4's order holds in replay and runtime alike.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .definitions import MAX_CHAIN_DEPTH, Action, Definitions, Pattern
from .events import Event
from .expressions import MISSING
from .state import TIMER_ACTION, UserState
from .templates import Env, render
from .timeutil import format_ms

if TYPE_CHECKING:
    from .evaluator import Engine

Record = dict[str, Any]
_INT64 = 1 << 63
_LOG_MACROS = {
    "log_contact": "offerContacted",
    "log_accept": "offerAccepted",
    "log_reject": "offerRejected",
}


@dataclass(slots=True)
class Posted:
    """An event an action posted for the same user, processed after the current one."""

    event: Event


def storable(value: Any) -> Any:
    """Keep values JSON- and state-safe: ints beyond 64 bits become floats, MISSING None."""
    if value is MISSING:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        return float(value)
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): storable(item) for key, item in value.items()}
    return value


class ActionRunner:
    def __init__(self, definitions: Definitions, engine: Engine) -> None:
        self.definitions = definitions
        self.engine = engine

    # ------------------------------------------------------------------ scheduling

    def schedule_or_run(
        self,
        state: UserState,
        pattern: Pattern,
        action: Action,
        trigger: str,
        event_attributes: Mapping[str, Any],
        aliases: Mapping[str, Any],
        now: int,
        depth: int,
        records: list[Record],
        queue: deque[Posted],
    ) -> None:
        due = now
        if action.delay is not None:
            due = now + action.delay
        elif action.at is not None:
            due = max(now, action.at)
        if due > now:
            index = self._action_index(pattern, action)
            state.add_timer(
                due,
                TIMER_ACTION,
                pattern.id,
                pattern.fingerprint,
                [index, trigger, dict(event_attributes), dict(aliases), depth],
            )
            return
        self.run(
            state, pattern, action, trigger, event_attributes, aliases, now, depth, records, queue
        )

    @staticmethod
    def _action_index(pattern: Pattern, action: Action) -> list[int]:
        """Where the action sits in the pattern: [-1, i] in on_met, [c, i] in checkpoint c."""
        for position, candidate in enumerate(pattern.on_met):
            if candidate is action:
                return [-1, position]
        for number, checkpoint in enumerate(pattern.checkpoints):
            for position, candidate in enumerate(checkpoint.actions):
                if candidate is action:
                    return [number, position]
        raise LookupError(f"action not in pattern {pattern.id}")

    def run_timer(
        self,
        state: UserState,
        pattern: Pattern,
        payload: list[Any],
        due: int,
        records: list[Record],
        queue: deque[Posted],
    ) -> None:
        (where, position), trigger, event_attributes, aliases, depth = payload
        actions = pattern.on_met if where == -1 else pattern.checkpoints[where].actions
        self.run(
            state,
            pattern,
            actions[position],
            trigger,
            event_attributes,
            aliases,
            due,
            depth,
            records,
            queue,
        )

    # ------------------------------------------------------------------ effects

    def run(
        self,
        state: UserState,
        pattern: Pattern,
        action: Action,
        trigger: str,
        event_attributes: Mapping[str, Any],
        aliases: Mapping[str, Any],
        now: int,
        depth: int,
        records: list[Record],
        queue: deque[Posted],
    ) -> None:
        env = Env(
            event=event_attributes,
            profile=state.profile,
            aliases=aliases,
            context={
                "user_id": state.user_id,
                "pattern": pattern.id,
                "now_ns": now * 1000,
                "now_ms": now // 1000,
                "now": format_ms(now),
            },
        )
        record: Record = {
            "kind": "action",
            "time": format_ms(now),
            "user_id": state.user_id,
            "pattern": pattern.id,
            "trigger": trigger,
            "action": action.kind,
        }
        fields = action.fields
        kind = action.kind
        if kind == "publish":
            record["topic"] = fields["topic"]
            if fields["key"] is not None:
                record["key"] = storable(render(fields["key"], env))
            record["value"] = storable(render(fields["value"], env))
            if fields["offer"] is not None:
                record["offer"] = fields["offer"]
                if self.is_suppressed(state, fields["offer"], now):
                    record["suppressed"] = True
        elif kind in _LOG_MACROS:
            code = fields["offer"]
            record["offer"] = code
            if kind == "log_contact" and self.is_suppressed(state, code, now):
                record["suppressed"] = True
            else:
                records.append(record)
                self._post(
                    state, pattern, _LOG_MACROS[kind], {"offer": code}, now, depth, records, queue
                )
                return
        elif kind == "set_attribute":
            value = storable(
                fields["value"].evaluate(env.event, env.profile, env.aliases, env.context)
            )
            state.profile[fields["name"]] = value
            record["name"] = fields["name"]
            record["value"] = value
        elif kind == "trigger_events":
            attributes = storable(render(fields["attributes"], env))
            record["events"] = list(fields["events"])
            record["attributes"] = attributes
            records.append(record)
            for name in fields["events"]:
                self._post(state, pattern, name, dict(attributes), now, depth, records, queue)
            return
        elif kind == "suppress_offers":
            codes = self._offers_to_suppress(fields)
            until = None if fields["duration"] is None else now + fields["duration"]
            for code in codes:
                self._suppress(state, code, until)
            record["offers"] = codes
            record["until"] = None if until is None else format_ms(until)
        elif kind == "qualify_segments":
            for name in fields["segments"]:
                if name not in state.segments:
                    state.segments.append(name)
            record["segments"] = list(fields["segments"])
        elif kind == "resegment":
            self.resegment(state)
            record["segments"] = list(state.segments)
        elif kind == "reset_pattern":
            target_id = fields["target"] or pattern.id
            record["target"] = target_id
            records.append(record)
            target = self.definitions.by_id[target_id]
            self.engine.reset_pattern(state, target, now, records)
            return
        records.append(record)

    def _post(
        self,
        state: UserState,
        pattern: Pattern,
        name: str,
        attributes: dict[str, Any],
        now: int,
        depth: int,
        records: list[Record],
        queue: deque[Posted],
    ) -> None:
        if depth + 1 > MAX_CHAIN_DEPTH:
            records.append(
                {
                    "kind": "error",
                    "time": format_ms(now),
                    "user_id": state.user_id,
                    "pattern": pattern.id,
                    "error": f"chain of posted events deeper than {MAX_CHAIN_DEPTH}: "
                    f"'{name}' was not posted",
                    "event": name,
                }
            )
            return
        queue.append(Posted(Event(state.user_id, name, now, attributes, depth + 1)))

    # ------------------------------------------------------------------ offers and segments

    @staticmethod
    def is_suppressed(state: UserState, code: str, now: int) -> bool:
        if code not in state.suppressed:
            return False
        until = state.suppressed[code]
        if until is not None and until <= now:
            del state.suppressed[code]
            return False
        return True

    @staticmethod
    def _suppress(state: UserState, code: str, until: int | None) -> None:
        if code in state.suppressed:
            current = state.suppressed[code]
            if current is None or (until is not None and until <= current):
                return
        state.suppressed[code] = until

    def _offers_to_suppress(self, fields: Mapping[str, Any]) -> list[str]:
        if fields["offers"] is not None:
            return list(fields["offers"])
        where = fields["where"]
        offers = self.definitions.offers
        return [code for code, attributes in offers.items() if where.test(attributes)]

    def resegment(self, state: UserState) -> None:
        """Recompute membership of the file's segments; other segments are left as they are."""
        profile = state.profile
        for name, expression in self.definitions.segments.items():
            member = expression.test(profile, profile)
            if member and name not in state.segments:
                state.segments.append(name)
            elif not member and name in state.segments:
                state.segments.remove(name)
