"""The seed's clickstream offer detector, hand-written over plain lists and dicts.

The logic of the Quix "event detection" tutorial: a woman of 25-35 (offer2) or a
man of 36-45 (offer1) who views clothing, then shoes, then a different clothing item
within 30 minutes of the first gets the offer; page refreshes (the same product
again) are ignored. It is the ceiling of plain Python for the two clickstream
patterns (`bench_core`), and the logic of the quixstreams baseline (`baseline_quix`).
"""

from __future__ import annotations

from typing import Any

WINDOW_NS = 30 * 60 * 1_000_000_000

INIT = 0
CLOTHES_VISITED = 1
SHOES_VISITED = 2

UserMachine = list[Any]
"""[step, first clothing product, time of the first clothing click, last product]."""


def offer_for(record: dict[str, Any]) -> str | None:
    """The offer a user's demographic is eligible for, if any."""
    age = record.get("age")
    if not isinstance(age, int):
        return None
    gender = record.get("gender")
    if gender == "M" and 36 <= age <= 45:
        return "offer1"
    if gender == "F" and 25 <= age <= 35:
        return "offer2"
    return None


def step(machine: UserMachine | None, record: dict[str, Any]) -> tuple[UserMachine | None, Any]:
    """One click through a user's machine: (the machine to keep, the offer message or None).

    The machine is None until the user first clicks clothing while eligible.
    """
    offer = offer_for(record)
    if offer is None:
        return machine, None
    category = record.get("category")
    product = record.get("productId")
    moment = record.get("timestamp", 0)
    if machine is None:
        if category != "clothing":
            return None, None
        return [CLOTHES_VISITED, product, moment, product], None
    if product == machine[3]:
        return machine, None  # a page refresh
    machine[3] = product
    if moment - machine[2] >= WINDOW_NS:
        machine[0] = INIT  # the 30 minutes since the first clothing click are over
    state = machine[0]
    if state == INIT:
        if category == "clothing":
            machine[0], machine[1], machine[2] = CLOTHES_VISITED, product, moment
    elif state == CLOTHES_VISITED:
        if category == "shoes":
            machine[0] = SHOES_VISITED
    elif category == "clothing":
        if product != machine[1]:
            machine[0] = INIT
            return machine, [{"Timestamp": moment, "Tags": {}, "Id": "offer", "Value": offer}]
        machine[0] = CLOTHES_VISITED
    return machine, None


class SeedMachine:
    """Every user's machine in a dict."""

    __slots__ = ("machines", "offers")

    def __init__(self) -> None:
        self.machines: dict[str, UserMachine] = {}
        self.offers = 0

    def process(self, record: dict[str, Any]) -> Any:
        user = record["userId"]
        machines = self.machines
        machine, offer = step(machines.get(user), record)
        if machine is not None:
            machines[user] = machine
        if offer is not None:
            self.offers += 1
        return offer
