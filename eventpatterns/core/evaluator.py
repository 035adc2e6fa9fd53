"""The pattern evaluator (SPEC sections 4-6): pure, synchronous, deterministic.

`Engine.process(state, event)` and `Engine.advance(state, now)` mutate the
user's state in place and return the records (transitions, actions, errors)
in the order they happen. Time is an input; timers are data in the state.
Whoever owns the state (replay, the stream agent) persists it and wakes the
user when `state.next_due()` is reached.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Mapping
from typing import Any

from .actions import ActionRunner, Posted
from .definitions import MACRO_EVENTS, Composing, Definitions, Pattern, Route
from .events import Event
from .expressions import MISSING
from .state import (
    MET,
    NOT_MET,
    STATUS_NAMES,
    SUSPENDED,
    TIMER_ACTION,
    TIMER_CHECKPOINT,
    TIMER_EXTENSION_END,
    TIMER_SUSPENSION_END,
    PatternState,
    UserState,
)
from .timeutil import format_ms

MAX_RUNS = 64
"""Partial sequence matches kept per (user, pattern) after pruning; the rest are dropped."""
MAX_OCCURRENCES = 1000
"""Occurrences kept per composing event in a window when aggregates need them all."""

Record = dict[str, Any]
_INT64 = 1 << 63
_EMPTY: Mapping[str, Any] = {}


class Engine:
    """Applies one pattern file to users' states."""

    def __init__(self, definitions: Definitions) -> None:
        self.definitions = definitions
        self.actions = ActionRunner(definitions, self)

    def new_state(self, user_id: str) -> UserState:
        return UserState(user_id)

    # ------------------------------------------------------------------ inputs

    def process(self, state: UserState, event: Event) -> list[Record]:
        """Timers due by the event's time, then the event, then what its actions posted."""
        records: list[Record] = []
        timers = state.timers
        if timers and timers[0][0] <= event.time:
            self._run_due_timers(state, event.time, records)
        queue: deque[Posted] = deque()
        self._process_one(state, event, records, queue)
        if queue:
            self._drain(state, queue, records)
        return records

    def advance(self, state: UserState, now: int) -> list[Record]:
        """Run the user's timers due at or before `now` (a wall-clock or end-of-input tick)."""
        records: list[Record] = []
        self._run_due_timers(state, now, records)
        return records

    def forget_stale(self, state: UserState) -> bool:
        """Drop what belongs to patterns that are gone or changed since the state was written.

        A changed pattern would start fresh on first touch anyway; this also
        frees the state and timers of removed patterns. Returns whether anything went.
        """
        by_id = self.definitions.by_id
        stale = [
            pid
            for pid, ps in state.patterns.items()
            if pid not in by_id or by_id[pid].fingerprint != ps.fingerprint
        ]
        for pid in stale:
            del state.patterns[pid]
        timers = [
            timer
            for timer in state.timers
            if timer[3] in by_id and by_id[timer[3]].fingerprint == timer[4]
        ]
        if len(timers) != len(state.timers):
            heapq.heapify(timers)
            state.timers = timers
            return True
        return bool(stale)

    def reset(self, state: UserState, pattern_id: str, now: int) -> list[Record]:
        """The reset API (SPEC section 4)."""
        records: list[Record] = []
        pattern = self.definitions.by_id.get(pattern_id)
        if pattern is not None:
            self._run_due_timers(state, now, records)
            self.reset_pattern(state, pattern, now, records)
        return records

    # ------------------------------------------------------------------ timers

    def _run_due_timers(self, state: UserState, now: int, records: list[Record]) -> None:
        timers = state.timers
        while timers and timers[0][0] <= now:
            due, _, kind, pattern_id, fingerprint, payload = heapq.heappop(timers)
            pattern = self.definitions.by_id.get(pattern_id)
            if pattern is None or pattern.fingerprint != fingerprint:
                continue  # the pattern changed or went away since the timer was set
            self._advance_clock(state, due)
            queue: deque[Posted] = deque()
            self._fire(state, pattern, kind, payload, due, records, queue)
            self._drain(state, queue, records)
            timers = state.timers

    def _fire(
        self,
        state: UserState,
        pattern: Pattern,
        kind: str,
        payload: Any,
        due: int,
        records: list[Record],
        queue: deque[Posted],
    ) -> None:
        ps = self._pattern_state(state, pattern)
        if kind == TIMER_ACTION:
            self.actions.run_timer(state, pattern, payload, due, records, queue)
        elif kind == TIMER_CHECKPOINT:
            if ps.status == NOT_MET:
                index, event_attributes, depth = payload
                checkpoint = pattern.checkpoints[index]
                for action in checkpoint.actions:
                    self.actions.schedule_or_run(
                        state,
                        pattern,
                        action,
                        "checkpoint",
                        event_attributes,
                        {},
                        due,
                        depth,
                        records,
                        queue,
                    )
        elif kind == TIMER_EXTENSION_END:
            if ps.status == MET:
                self._transition(state, pattern, ps, NOT_MET, due, records)
        elif kind == TIMER_SUSPENSION_END and ps.status == SUSPENDED:
            ps.suspended_until = None
            self._transition(state, pattern, ps, NOT_MET, due, records)

    # ------------------------------------------------------------------ events

    def _drain(self, state: UserState, queue: deque[Posted], records: list[Record]) -> None:
        while queue:
            posted = queue.popleft()
            self._process_one(state, posted.event, records, queue)

    def _process_one(
        self, state: UserState, event: Event, records: list[Record], queue: deque[Posted]
    ) -> None:
        self._advance_clock(state, event.time)
        state.seq += 1
        attributes = event.attributes
        if event.name in MACRO_EVENTS:
            attributes = self._with_offer_attributes(attributes)
            event.attributes = attributes
        dispatch = self.definitions.dispatch.get(event.name)
        if dispatch is None:
            return
        for route in dispatch.routes_for(attributes):
            self._apply(state, route, event, attributes, records, queue)

    def _with_offer_attributes(self, attributes: dict[str, Any]) -> dict[str, Any]:
        catalogue = self.definitions.offers.get(attributes.get("offer"))  # type: ignore[arg-type]
        if not catalogue:
            return attributes
        return {**catalogue, **attributes}

    @staticmethod
    def _advance_clock(state: UserState, time: int) -> None:
        if state.clock is None or time > state.clock:
            state.clock = time

    def _pattern_state(self, state: UserState, pattern: Pattern) -> PatternState:
        ps = state.patterns.get(pattern.id)
        if ps is None or ps.fingerprint != pattern.fingerprint:
            ps = PatternState.new(pattern.fingerprint, len(pattern.events))
            state.patterns[pattern.id] = ps
        return ps

    def _apply(
        self,
        state: UserState,
        route: Route,
        event: Event,
        attributes: dict[str, Any],
        records: list[Record],
        queue: deque[Posted],
    ) -> None:
        pattern = route.pattern
        profile = state.profile
        now = event.time
        ps: PatternState | None = None
        for suspender in route.suspenders:
            if suspender.matcher.matches(attributes, profile):
                ps = self._pattern_state(state, pattern)
                self._suspend(state, pattern, ps, suspender.duration, now, records)
        # Every condition below is needed before anything changes; the cheapest and the
        # most selective (dates, audience) go first.
        if pattern.start is not None and now < pattern.start:
            return
        if pattern.end is not None and now >= pattern.end:
            return
        if pattern.audience is not None and not pattern.audience.test(attributes, profile):
            return
        matched = [step for step in route.composing if step.matcher.matches(attributes, profile)]
        if not matched:
            return
        if ps is None:
            ps = self._pattern_state(state, pattern)
        if pattern.ignore_repeats is not None:
            value = attributes.get(pattern.ignore_repeats, MISSING)
            previous = ps.last_value
            ps.last_value = value
            if value is not MISSING and previous is not MISSING and value == previous:
                return
        status = ps.status
        if status == SUSPENDED or (status == MET and pattern.mode != "rolling"):
            return
        self._record(state, pattern, ps, matched, event, attributes, records, queue)

    # ------------------------------------------------------------------ occurrences

    def _record(
        self,
        state: UserState,
        pattern: Pattern,
        ps: PatternState,
        matched: list[Composing],
        event: Event,
        attributes: dict[str, Any],
        records: list[Record],
        queue: deque[Posted],
    ) -> None:
        now = event.time
        windowed = pattern.duration is not None
        if windowed:
            assert pattern.duration is not None
            # The window ends at this occurrence, or, for a late event, at the pattern's
            # latest occurrence: a late event joins the current window if it lies in it,
            # and cannot make the pattern forget what was recorded after it.
            end = now
            for store in ps.occurrences:  # not max() of a starred generator: an object
                if store and store[-1][0] > end:
                    end = store[-1][0]
            if now <= end - pattern.duration:
                return  # a late event older than the current window does not count
            _prune_window(pattern, ps, end)
        starts_cycle = bool(pattern.checkpoints) and not ps.has_occurrences()
        for step in matched:
            _store(pattern, ps, step, now, state.seq, attributes)
        completed: dict[str, Any] | None = None
        if pattern.type == "sequence":
            completed = _extend_runs(
                pattern, ps, matched, now, state.seq, attributes, state.profile
            )
        if starts_cycle:
            self._start_checkpoint_cycle(state, pattern, attributes, event.depth, now)
        holds = _condition(pattern, ps, completed, now)
        if holds and completed is None and pattern.type == "sequence":
            # Met through a chain kept from before (a suspension ended, an aggregate now
            # holds): its aliases are what on_met templates read.
            total = len(pattern.events)
            completed = next((run[5] for run in ps.runs if run[0] == total), None)
        if holds and ps.status == NOT_MET:
            self._met(state, pattern, ps, event, attributes, completed or {}, records, queue)
        elif not holds and ps.status == MET:
            self._transition(state, pattern, ps, NOT_MET, now, records)

    def _start_checkpoint_cycle(
        self,
        state: UserState,
        pattern: Pattern,
        attributes: dict[str, Any],
        depth: int,
        now: int,
    ) -> None:
        state.cancel_timers(pattern.id, (TIMER_CHECKPOINT,))
        for index, checkpoint in enumerate(pattern.checkpoints):
            state.add_timer(
                now + checkpoint.after,
                TIMER_CHECKPOINT,
                pattern.id,
                pattern.fingerprint,
                [index, attributes, depth],
            )

    def _met(
        self,
        state: UserState,
        pattern: Pattern,
        ps: PatternState,
        event: Event,
        attributes: dict[str, Any],
        aliases: dict[str, Any],
        records: list[Record],
        queue: deque[Posted],
    ) -> None:
        now = event.time
        self._transition(state, pattern, ps, MET, now, records)
        state.cancel_timers(pattern.id, (TIMER_CHECKPOINT,))
        if pattern.mode == "time_bound":
            ps.clear_occurrences()
            state.add_timer(
                now + pattern.extend, TIMER_EXTENSION_END, pattern.id, pattern.fingerprint, None
            )
        for action in pattern.on_met:
            self.actions.schedule_or_run(
                state,
                pattern,
                action,
                "met",
                attributes,
                aliases,
                now,
                event.depth,
                records,
                queue,
            )

    # ------------------------------------------------------------------ state changes

    def _transition(
        self,
        state: UserState,
        pattern: Pattern,
        ps: PatternState,
        to: int,
        now: int,
        records: list[Record],
    ) -> None:
        if ps.status == to:
            return
        records.append(
            {
                "kind": "transition",
                "time": format_ms(now),
                "user_id": state.user_id,
                "pattern": pattern.id,
                "from": STATUS_NAMES[ps.status],
                "to": STATUS_NAMES[to],
            }
        )
        ps.status = to

    def _suspend(
        self,
        state: UserState,
        pattern: Pattern,
        ps: PatternState,
        duration: int | None,
        now: int,
        records: list[Record],
    ) -> None:
        until = None if duration is None else now + duration
        if ps.status == SUSPENDED:
            if ps.suspended_until is None:
                return
            if until is not None and until <= ps.suspended_until:
                return
        elif ps.status == MET and pattern.mode == "time_bound":
            state.cancel_timers(pattern.id, (TIMER_EXTENSION_END,))
        state.cancel_timers(pattern.id, (TIMER_SUSPENSION_END,))
        ps.suspended_until = until
        if until is not None:
            state.add_timer(until, TIMER_SUSPENSION_END, pattern.id, pattern.fingerprint, None)
        self._transition(state, pattern, ps, SUSPENDED, now, records)

    def reset_pattern(
        self, state: UserState, pattern: Pattern, now: int, records: list[Record]
    ) -> None:
        ps = self._pattern_state(state, pattern)
        ps.clear_occurrences()
        ps.suspended_until = None
        state.cancel_timers(
            pattern.id, (TIMER_CHECKPOINT, TIMER_SUSPENSION_END, TIMER_EXTENSION_END)
        )
        self._transition(state, pattern, ps, NOT_MET, now, records)


# ---------------------------------------------------------------------- occurrence stores


def _numeric(value: Any) -> float:
    """Aggregation reads a missing or non-numeric attribute as 0 (SPEC section 4)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if value != value or value in (float("inf"), float("-inf")):
        return 0
    return value


def _prune_window(pattern: Pattern, ps: PatternState, now: int) -> None:
    assert pattern.duration is not None
    horizon = now - pattern.duration
    for index, store in enumerate(ps.occurrences):
        if store and store[0][0] <= horizon:
            ps.occurrences[index] = [o for o in store if o[0] > horizon]
    if ps.runs:
        ps.runs = [run for run in ps.runs if run[1] > horizon]


def _store(
    pattern: Pattern,
    ps: PatternState,
    step: Composing,
    now: int,
    seq: int,
    attributes: Mapping[str, Any],
) -> None:
    values = [_numeric(attributes.get(name)) for name in step.value_attributes]
    store = ps.occurrences[step.index]
    if pattern.duration is None:
        if not store:
            store.extend([0, now, now])
            for value in values:
                store.extend([0, value, value])
        store[0] += 1
        store[1] = min(store[1], now)  # a late event can be the first
        store[2] = max(store[2], now)
        for position, value in enumerate(values):
            base = 3 + 3 * position
            total = store[base] + value
            if isinstance(total, int) and not -_INT64 <= total < _INT64:
                total = float(total)  # the state must stay encodable (64-bit integers)
            store[base] = total
            store[base + 1] = min(store[base + 1], value)
            store[base + 2] = max(store[base + 2], value)
        return
    occurrence = [now, seq, *values]
    if store and store[-1][0] > now:
        # A late event: keep the store in time order, so that pruning the window and
        # keeping the most recent occurrences work by time, not by arrival.
        bisect.insort(store, occurrence, key=_time_of)
    else:
        store.append(occurrence)
    limit = step.keep_last if step.keep_last is not None else MAX_OCCURRENCES
    if len(store) > limit:
        if step.keep_last is None:
            ps.dropped += len(store) - limit
        del store[: len(store) - limit]


def _time_of(occurrence: list[Any]) -> int:
    return int(occurrence[0])


def step_count(pattern: Pattern, ps: PatternState, step: Composing) -> int:
    store = ps.occurrences[step.index]
    if pattern.duration is None:
        return int(store[0]) if store else 0
    return len(store)


def aggregate_value(pattern: Pattern, ps: PatternState, step: Composing, aggregate: Any) -> float:
    store = ps.occurrences[step.index]
    if not store:
        return 0
    fn = aggregate.fn
    if pattern.duration is None:
        base = 3 + 3 * (aggregate.column - 1)
        if fn == "sum":
            return float(store[base])
        if fn == "avg":
            return float(store[base]) / int(store[0])
        return float(store[base + 1] if fn == "min" else store[base + 2])
    values = [occurrence[aggregate.column + 1] for occurrence in store]
    if fn == "sum":
        return float(sum(values))
    if fn == "avg":
        return float(sum(values)) / len(values)
    return float(min(values) if fn == "min" else max(values))


def _aggregates_hold(pattern: Pattern, ps: PatternState) -> bool:
    for step in pattern.events:
        for aggregate in step.aggregates:
            if not aggregate.holds(aggregate_value(pattern, ps, step, aggregate)):
                return False
    return True


def _condition(
    pattern: Pattern, ps: PatternState, completed: dict[str, Any] | None, now: int
) -> bool:
    kind = pattern.type
    if kind == "match_all":
        holds = all(step_count(pattern, ps, step) >= 1 for step in pattern.events)
    elif kind == "counter":
        holds = all(step_count(pattern, ps, step) >= step.count for step in pattern.events)
    elif kind == "weighted_counter":
        score = sum(step.weight * step_count(pattern, ps, step) for step in pattern.events)
        holds = score >= pattern.threshold - 1e-9
    else:
        holds = completed is not None or any(run[0] == len(pattern.events) for run in ps.runs)
    return holds and _aggregates_hold(pattern, ps)


# ---------------------------------------------------------------------- sequences
#
# A run is a partial match [steps_matched, start_time, start_seq, last_time, last_seq, bound]
# where `bound` maps aliases to the attributes later steps read. Events are matched in
# arrival order; a run is dropped when it can never complete (window, max_after) or when
# another run of the same length and bindings is at least as good for every future event.


def _extend_runs(
    pattern: Pattern,
    ps: PatternState,
    matched: list[Composing],
    now: int,
    seq: int,
    attributes: Mapping[str, Any],
    profile: Mapping[str, Any],
) -> dict[str, Any] | None:
    steps = pattern.events
    total = len(steps)
    new_runs: list[list[Any]] = []
    completed: dict[str, Any] | None = None
    for step in matched:
        binding = _binding(pattern, step, attributes)
        if step.index == 0:
            bound = {step.alias: binding} if binding is not None and step.alias else {}
            new_runs.append([1, now, seq, now, seq, bound])
            continue
        for run in ps.runs:
            if run[0] != step.index or (run[3], run[4]) >= (now, seq):
                continue
            gap = now - run[3]
            if step.min_after is not None and gap < step.min_after:
                continue
            if step.max_after is not None and gap > step.max_after:
                continue
            if step.alias_where is not None and not step.alias_where.test(
                attributes, profile, run[5]
            ):
                continue
            bound = run[5]
            if binding is not None and step.alias:
                bound = {**bound, step.alias: binding}
            new_runs.append([step.index + 1, run[1], run[2], now, seq, bound])
    for run in new_runs:
        if run[0] == total and completed is None:
            completed = run[5]
    if new_runs:
        ps.runs.extend(new_runs)
    _prune_runs(pattern, ps, now)
    return completed


def _binding(
    pattern: Pattern, step: Composing, attributes: Mapping[str, Any]
) -> dict[str, Any] | None:
    if step.alias is None:
        return None
    wanted = pattern.bound_attributes.get(step.alias)
    if not wanted:
        return None
    return {name: attributes[name] for name in wanted if name in attributes}


def _prune_runs(pattern: Pattern, ps: PatternState, now: int) -> None:
    steps = pattern.events
    total = len(steps)
    alive = []
    for run in ps.runs:
        matched = run[0]
        if matched < total:
            next_step = steps[matched]
            if next_step.max_after is not None and now - run[3] > next_step.max_after:
                continue
        alive.append(run)
    kept: list[list[Any]] = []
    for run in alive:
        if any(_dominates(pattern, other, run) for other in kept):
            continue
        kept = [other for other in kept if not _dominates(pattern, run, other)]
        kept.append(run)
    if len(kept) > MAX_RUNS:
        kept.sort(key=lambda run: (run[0] == total, run[1], run[2]), reverse=True)
        ps.dropped += len(kept) - MAX_RUNS
        kept = kept[:MAX_RUNS]
    kept.sort(key=lambda run: (run[0], run[1], run[2], run[3], run[4]))
    ps.runs = kept


def _dominates(pattern: Pattern, a: list[Any], b: list[Any]) -> bool:
    """Whether run `a` can do everything run `b` can, for events that arrive later."""
    if a[0] != b[0] or a[5] != b[5]:
        return False
    if pattern.duration is not None and a[1] < b[1]:
        return False
    total = len(pattern.events)
    if a[0] == total:
        return True
    following = pattern.events[a[0]]
    if following.min_after is not None and following.max_after is not None:
        return bool(a[3] == b[3])
    if following.min_after is not None:
        return bool(a[3] <= b[3])
    if following.max_after is not None:
        return bool(a[3] >= b[3])
    return True
