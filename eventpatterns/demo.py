"""`eventpatterns demo`: the seed's clickstream scenario in one command.

An embedded broker, one worker on `examples/clickstream.yaml`, a generator of
`enriched-click-data` records, and a live view of the offers on
`special-offers` and the state transitions on the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import orjson

CATEGORIES = ("clothing", "shoes", "electronics", "books", "home", "toys")
ADJECTIVES = ("sad", "calm", "brave", "quiet", "lucky", "swift", "odd", "merry", "bold", "shy")
NOUNS = ("music", "river", "falcon", "garden", "pixel", "harbor", "lantern", "meadow", "comet")
GERUNDS = ("boxing", "sailing", "dancing", "reading", "hiking", "baking", "painting", "singing")
DEMO_LINGER_MS = 100
"""How long the demo's producer gathers clicks into one record batch per partition."""


@dataclass
class Shopper:
    user_id: str
    gender: str
    age: int
    ip: str
    plan: deque[tuple[str, str]] = field(default_factory=deque)
    """Clicks still to make: (category, productId)."""


def make_users(count: int, rng: random.Random) -> list[Shopper]:
    users = []
    for number in range(count):
        name = f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}-{rng.choice(GERUNDS)}-{number}"
        gender = rng.choice("MF")
        # Half the users fall in an offer's age band, the rest anywhere in 18-80.
        if rng.random() < 0.5:
            age = rng.randint(36, 45) if gender == "M" else rng.randint(25, 35)
        else:
            age = rng.randint(18, 80)
        users.append(
            Shopper(name, gender, age, f"10.{number // 250}.{number % 250}.{rng.randint(2, 250)}")
        )
    return users


def _product(rng: random.Random) -> str:
    return f"VD55{rng.randint(100000, 199999)}"


def plan_visit(user: Shopper, rng: random.Random) -> None:
    """A short browsing session; a third complete clothing -> shoes -> other clothing."""
    if rng.random() < 0.33:
        first = _product(rng)
        user.plan.extend([("clothing", first), ("clothing", first), ("shoes", _product(rng))])
        if rng.random() < 0.5:
            user.plan.append((rng.choice(CATEGORIES[2:]), _product(rng)))
        user.plan.append(("clothing", _product(rng)))
    else:
        for _ in range(rng.randint(1, 4)):
            product = _product(rng)
            user.plan.append((rng.choice(CATEGORIES), product))
            if rng.random() < 0.2:  # a page refresh
                user.plan.append(user.plan[-1])


def next_click(users: list[Shopper], rng: random.Random) -> dict[str, Any]:
    user = rng.choice(users)
    if not user.plan:
        plan_visit(user, rng)
    category, product = user.plan.popleft()
    return {
        "timestamp": time.time_ns(),
        "userId": user.user_id,
        "category": category,
        "productId": product,
        "gender": user.gender,
        "age": user.age,
        "ip": user.ip,
    }


@dataclass
class DemoView:
    offers: deque[str] = field(default_factory=lambda: deque(maxlen=12))
    transitions: deque[str] = field(default_factory=lambda: deque(maxlen=12))
    counts: Counter[str] = field(default_factory=Counter)
    clicks: int = 0

    def render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table

        summary = Table.grid(padding=(0, 3))
        summary.add_row(
            f"clicks sent [bold]{self.clicks}[/]",
            f"offer1 [bold green]{self.counts['offer1']}[/]",
            f"offer2 [bold magenta]{self.counts['offer2']}[/]",
            f"transitions [bold]{self.counts['transitions']}[/]",
        )
        return Group(
            Panel(summary, title="eventpatterns demo: clickstream offers"),
            Panel("\n".join(self.offers) or "waiting for offers...", title="special-offers"),
            Panel("\n".join(self.transitions) or "...", title="state transitions"),
        )


async def _produce(
    bootstrap: str, users: list[Shopper], rate: float, view: DemoView, stop: asyncio.Event
) -> None:
    from aiokafka import AIOKafkaProducer

    rng = random.Random(7)
    # Clicks go out in batches of 100 ms: the embedded broker's reads slow down as a
    # partition's record batches grow past ~10,000 (docs/operations.md), which one
    # batch per click would reach within minutes at the default rate.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=DEMO_LINGER_MS)
    await producer.start()
    try:
        interval = 1.0 / rate
        next_at = time.monotonic()
        while not stop.is_set():
            record = next_click(users, rng)
            await producer.send(
                "enriched-click-data", orjson.dumps(record), key=record["userId"].encode()
            )
            view.clicks += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the generator, not waiting for a condition
    finally:
        await producer.stop()


async def _watch(bootstrap: str, view: DemoView, plain: bool, stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        "special-offers",
        "eventpatterns-actions",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                for message in messages:
                    _show(message, view, plain)
    finally:
        await consumer.stop()


def _show(message: Any, view: DemoView, plain: bool) -> None:
    value = orjson.loads(message.value)
    user = message.key.decode() if message.key else "?"
    if message.topic == "special-offers":
        offer = value[0]["Value"] if isinstance(value, list) and value else "?"
        view.counts[offer] += 1
        line = f"special-offers {user}: {message.value.decode()}"
        view.offers.appendleft(line)
    elif value.get("kind") == "transition":
        view.counts["transitions"] += 1
        line = (
            f"{value['time']} [User {value['user_id']} entered state {value['to']}]"
            f" ({value['pattern']})"
        )
        view.transitions.appendleft(line)
    else:
        return
    if plain:
        print(line, flush=True)


def run_demo(duration: float | None, tui: bool, users: int, rate: float) -> int:
    from .broker import EmbeddedBroker
    from .settings import default_patterns
    from .worker import EMBEDDED_BANNER

    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as data_dir:
        print(EMBEDDED_BANNER.format(url=broker.bootstrap), file=sys.stderr, flush=True)
        env = {
            **os.environ,
            "EVENTPATTERNS_BROKER": broker.url,
            "EVENTPATTERNS_PATTERNS": default_patterns(),
            "EVENTPATTERNS_DATA_DIR": data_dir,
            "EVENTPATTERNS_WEB_PORT": os.environ.get("EVENTPATTERNS_WEB_PORT", "6066"),
        }
        worker = subprocess.Popen([sys.executable, "-m", "eventpatterns.worker"], env=env)
        try:
            view = DemoView()
            asyncio.run(
                _demo(
                    broker.bootstrap, make_users(users, random.Random(3)), rate, view, duration, tui
                )
            )
        except KeyboardInterrupt:
            pass
        finally:
            worker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(10)
            if worker.poll() is None:
                worker.kill()
        print(
            f"demo: {view.clicks} clicks, {view.counts['offer1']} offer1, "
            f"{view.counts['offer2']} offer2, {view.counts['transitions']} transitions",
            flush=True,
        )
    return 0


async def _demo(
    bootstrap: str,
    users: list[Shopper],
    rate: float,
    view: DemoView,
    duration: float | None,
    tui: bool,
) -> None:
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_produce(bootstrap, users, rate, view, stop)),
        asyncio.create_task(_watch(bootstrap, view, not tui, stop)),
    ]
    deadline = None if duration is None else time.monotonic() + duration
    try:
        if tui:
            from rich.live import Live

            with Live(view.render(), refresh_per_second=4) as live:
                while deadline is None or time.monotonic() < deadline:
                    await asyncio.sleep(0.25)  # screen refresh period
                    live.update(view.render())
        else:
            while deadline is None or time.monotonic() < deadline:
                await asyncio.sleep(0.25)  # checks the deadline; work happens in the tasks
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
