"""Generated clickstream records in the seed's `enriched-click-data` shape.

    {"timestamp": 1700221907989992000, "userId": "user-0000017", "category": "shoes",
     "productId": "VD55147564", "gender": "M", "age": 41, "ip": "10.1.2.3", "price": 59.9}

Each user has a fixed gender, age and address and one browsing session of clicks
2 to 40 seconds apart; activity is skewed (a few users click a lot). About 8 % of
clicks are page refreshes (the previous record again, a second or two later), and
15 % of users begin with the seed's path clothing -> shoes -> other clothing. The
output is deterministic for a seed and sorted by time, as a topic would hold it.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

CATEGORIES: tuple[tuple[str, int], ...] = (
    ("clothing", 30),
    ("shoes", 15),
    ("electronics", 12),
    ("accessories", 10),
    ("home", 10),
    ("sports", 8),
    ("beauty", 8),
    ("checkout", 7),
)
PRODUCTS_PER_CATEGORY = 200
REFRESH_RATE = 0.08
SCRIPTED_SHARE = 0.15
DEFAULT_START_NS = 1_700_000_000_000_000_000
NS = 1_000_000_000

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Profile:
    user_id: str
    gender: str
    age: int
    ip: str


def user_id(number: int) -> str:
    return f"user-{number:07d}"


def _catalogue(rng: random.Random) -> dict[str, list[tuple[str, float]]]:
    catalogue: dict[str, list[tuple[str, float]]] = {}
    serial = 55_100_000
    for category, _ in CATEGORIES:
        products = []
        for _ in range(PRODUCTS_PER_CATEGORY):
            serial += rng.randint(1, 97)
            products.append((f"VD{serial}", round(rng.uniform(5, 300), 2)))
        catalogue[category] = products
    return catalogue


def _profiles(rng: random.Random, users: int, first: int) -> list[Profile]:
    return [
        Profile(
            user_id(first + number),
            rng.choice("MF"),
            rng.randint(18, 65),
            f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        )
        for number in range(users)
    ]


def _counts(rng: random.Random, events: int, users: int) -> list[int]:
    """Clicks per user: at least one each (when there are enough), the rest skewed
    (Pareto activity, capped so that no user is a bot)."""
    base = 1 if events >= users else 0
    counts = [base] * users
    remaining = events - base * users
    if remaining > 0:
        weights = [min(rng.paretovariate(1.6), 25.0) for _ in range(users)]
        for index, extra in Counter(rng.choices(range(users), weights, k=remaining)).items():
            counts[index] += extra
    return counts


def generate(
    events: int,
    users: int,
    seed: int = 7,
    start_ns: int = DEFAULT_START_NS,
    span_s: float = 7200.0,
    first_user: int = 0,
) -> list[Record]:
    """`events` records of `users` users, in time order, starting at `start_ns`."""
    rng = random.Random(seed)
    catalogue = _catalogue(random.Random(1))
    names = [name for name, _ in CATEGORIES]
    weights = [weight for _, weight in CATEGORIES]
    profiles = _profiles(rng, users, first_user)
    clicks: list[tuple[int, int, str, str, float]] = []
    for index, count in enumerate(_counts(rng, events, users)):
        if not count:
            continue
        scripted = rng.random() < SCRIPTED_SHARE
        moment = start_ns + int(rng.uniform(0, span_s) * NS)
        category, product, price = "", "", 0.0
        path: list[str] = ["clothing", "shoes", "clothing"] if scripted else []
        for position in range(count):
            if position and rng.random() < REFRESH_RATE:
                moment += int(rng.uniform(0.5, 2.0) * NS)  # a page refresh: the same again
            else:
                if position:
                    moment += int(rng.uniform(2, 40) * NS)
                category = path.pop(0) if path else rng.choices(names, weights)[0]
                previous = product
                while product == previous:
                    product, price = rng.choice(catalogue[category])
            clicks.append((moment, index, category, product, price))
    clicks.sort()
    records = []
    for moment, index, category, product, price in clicks:
        profile = profiles[index]
        records.append(
            {
                "timestamp": moment,
                "userId": profile.user_id,
                "category": category,
                "productId": product,
                "gender": profile.gender,
                "age": profile.age,
                "ip": profile.ip,
                "price": price,
            }
        )
    return records


def encode(records: list[Record]) -> list[bytes]:
    dumps = orjson.dumps
    return [dumps(record) for record in records]
