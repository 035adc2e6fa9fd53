"""The HTTP API (SPEC section 8) against real workers on the embedded broker.

One broker and two workers that share the users (with an API token) serve the
whole module, plus a third worker on its own broker without a token. The tests
that replace the pattern file run last.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eventpatterns.broker import EmbeddedBroker
from eventpatterns.processor import partition_for
from tests.runtime.apiharness import (
    PATTERNS,
    Worker,
    audit_records,
    metric,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
PARTITIONS = 4
EVENTS_METRIC = "eventpatterns_events_total"


@dataclass
class Cluster:
    broker: EmbeddedBroker
    a: Worker
    b: Worker
    open: Worker

    def owned_user(self, owner: Worker, prefix: str) -> str:
        """A user id whose partition `owner` holds."""
        partitions = set(owner.status()["partitions"])
        for number in range(1000):
            user = f"{prefix}-{number}"
            if partition_for(user.encode(), PARTITIONS) in partitions:
                return user
        raise AssertionError(f"no user of {owner.name}")

    def other(self, worker: Worker) -> Worker:
        return self.b if worker is self.a else self.a


def _settled(a: Worker, b: Worker) -> bool:
    sa, sb = a.status(), b.status()
    pa, pb = set(sa["partitions"]), set(sb["partitions"])
    return (
        bool(pa)
        and bool(pb)
        and not pa & pb
        and pa | pb == set(range(PARTITIONS))
        and sa["workers"] == sb["workers"] == sorted([a.id, b.id])
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("api")
    with EmbeddedBroker() as broker, EmbeddedBroker() as open_broker:
        a = Worker("a", broker.url, base / "a", token=TOKEN)
        b = Worker("b", broker.url, base / "b", token=TOKEN)
        unguarded = Worker("open", open_broker.url, base / "open")
        workers = [a, b, unguarded]
        for worker in workers:
            worker.start()
        try:
            wait_until(lambda: _settled(a, b), 90, "two workers sharing the partitions")
            wait_until(
                lambda: unguarded.status()["partitions"] == list(range(PARTITIONS)),
                60,
                "the open worker",
            )
            yield Cluster(broker, a, b, unguarded)
        except BaseException:
            for worker in workers:
                print(f"---- worker {worker.name} log:\n{worker.log_tail()}")
            raise
        finally:
            for worker in workers:
                worker.stop()


# ---------------------------------------------------------------------- auth and basics


def test_auth_is_required_when_a_token_is_set(cluster: Cluster) -> None:
    a = cluster.a
    missing = a.get("/v1/patterns", auth=False)
    assert missing.status == 401
    assert missing.body["error"] == "missing or wrong API token"
    assert missing.body["details"]
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = a.get("/v1/users/x", auth=False, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    assert a.post("/v1/events", [{"user_id": "x", "event": "e"}], auth=False).status == 401
    assert a.get("/", auth=False).status == 401
    # the browser-facing pages also take ?token=, the API does not
    assert a.get(f"/?token={TOKEN}", auth=False).status == 200
    assert a.get(f"/v1/patterns?token={TOKEN}", auth=False).status == 401
    assert a.get("/v1/patterns").status == 200
    # /metrics never needs the token
    metrics = a.get("/metrics", auth=False)
    assert metrics.status == 200
    assert "eventpatterns_events_total" in metrics.text


def test_no_token_no_auth(cluster: Cluster) -> None:
    worker = cluster.open
    assert worker.get("/v1/status", auth=False).body["auth"] is False
    assert worker.get("/v1/patterns", auth=False).status == 200
    user = worker.get("/v1/users/nobody", auth=False)
    assert user.status == 200
    assert user.body["known"] is False
    assert user.body["worker"] == worker.id


def test_errors_are_json(cluster: Cluster) -> None:
    a = cluster.a
    for answer, status in (
        (a.get("/no/such/page"), 404),
        (a.call("DELETE", "/v1/patterns"), 405),
        (a.get("/table/state/u1"), 404),  # Faust's table pages are not served
    ):
        assert answer.status == status
        assert answer.headers["Content-Type"].startswith("application/json")
        assert set(answer.body) >= {"error", "details", "worker"}


def test_dashboard_page_is_served(cluster: Cluster) -> None:
    page = cluster.a.get("/")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "/v1/stream" in page.text


# ---------------------------------------------------------------------- POST /v1/events


def test_post_one_event_and_a_list(cluster: Cluster) -> None:
    a = cluster.a
    one = a.post("/v1/events", {"user_id": "post-1", "event": "view"})
    assert one.status == 202
    assert one.body == {"accepted": 1, "worker": a.id}
    many = a.post(
        "/v1/events",
        [
            {"user_id": "post-1", "event": "view", "timestamp": "2026-11-17T11:54:29Z"},
            {"user_id": "post-1", "event": "view", "timestamp": 1794916469000},
        ],
    )
    assert many.status == 202
    assert many.body["accepted"] == 2
    wait_until(
        lambda: a.get("/v1/users/post-1/explain/keep_views").body["events"][0]["count"] == 3,
        20,
        "three views applied",
    )


def test_bad_items_refuse_the_whole_post(cluster: Cluster) -> None:
    a = cluster.a
    user = "post-bad"
    answer = a.post(
        "/v1/events",
        [
            {"user_id": user, "event": "view"},
            {"user_id": "", "event": "view"},
            {"user_id": user},
            "not an object",
            {"user_id": user, "event": "view", "timestamp": "yesterday"},
        ],
    )
    assert answer.status == 400
    assert "none was accepted" in answer.body["error"]
    assert [d["index"] for d in answer.body["details"]] == [1, 2, 3, 4]
    assert all(d["reason"] for d in answer.body["details"])
    not_json = a.post("/v1/events", b"{nope")
    assert not_json.status == 400
    assert not_json.body["error"] == "the body is not JSON"
    # nothing of the refused post was sent: after a marker event, the user has one view
    a.post_events([{"user_id": user, "event": "view"}])
    body = wait_until(
        lambda: (b := a.get(f"/v1/users/{user}/explain/keep_views").body)["known"] and b,
        20,
        "the marker event",
    )
    assert body["events"][0]["count"] == 1


def test_body_over_one_mib_is_413(cluster: Cluster) -> None:
    event = {"user_id": "big", "event": "view", "attributes": {"pad": "x" * 1000}}
    events = [event] * 1100  # about 1.1 MB
    answer = cluster.a.post("/v1/events", events)
    assert answer.status == 413
    assert answer.body["error"] == "request body too large"
    marker = {"user_id": "big", "event": "signup"}  # after the views in the user's partition
    assert cluster.a.post("/v1/events", [event] * 900 + [marker]).status == 202
    wait_until(
        lambda: cluster.b.get("/v1/users/big/explain/loyal").body["status"] == "met",
        30,
        "the 901 events applied",
    )


# ---------------------------------------------------------------------- users


def test_explain_after_posting_events(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    user = "explain-1"
    a.post_events(
        [
            {"user_id": user, "event": "purchase", "attributes": {"amount": 30}},
            {"user_id": user, "event": "purchase", "attributes": {"amount": 20}},
        ]
    )
    path = f"/v1/users/{user}/explain/big_spender"
    body = wait_until(
        lambda: (x := b.get(path).body)["events"][0]["count"] == 2 and x, 20, "two purchases"
    )
    assert body["status"] == "not_met"
    event = body["events"][0]
    assert (event["needed"], event["missing"]) == (3, 1)
    assert event["aggregates"][0]["current"] == 50
    assert event["aggregates"][0]["holds"] is False
    assert body["deadline"] is not None
    summary = " ".join(body["summary"])
    assert f"Needs 1 more 'purchase' event before {body['deadline']}" in summary
    assert "sum(amount) is 50, needs >= 100" in summary
    # the user view
    user_body = b.get(f"/v1/users/{user}").body
    assert user_body["known"] is True
    states = {p["id"]: p for p in user_body["patterns"]}
    assert states["big_spender"]["events"][0]["count"] == 2
    assert states["big_spender"]["status"] == "not_met"
    # unknown pattern, bad ?at=
    missing = b.get(f"/v1/users/{user}/explain/nope")
    assert missing.status == 404
    assert "big_spender" in missing.body["details"][0]["patterns"]
    assert b.get(f"{path}?at=yesterday").status == 400
    later = b.get(f"{path}?at=2030-01-01T00:00:00Z").body
    assert later["events"][0]["count"] == 0  # out of the 7-day window by then


def test_requests_are_routed_to_the_owner(cluster: Cluster) -> None:
    for owner in (cluster.a, cluster.b):
        other = cluster.other(owner)
        user = cluster.owned_user(owner, f"route-{owner.name}")
        other.post_events([{"user_id": user, "event": "signup"}])
        wait_until(lambda u=user, o=owner: o.get(f"/v1/users/{u}").body["known"], 20, "the signup")
        for asked in (owner, other):
            answer = asked.get(f"/v1/users/{user}")
            assert answer.status == 200
            assert answer.body["worker"] == owner.id
            assert answer.headers["X-Eventpatterns-Worker"] == owner.id
            states = {p["id"]: p["status"] for p in answer.body["patterns"]}
            assert states["loyal"] == "met"
            assert answer.body["profile"] == {"loyal": True}
            explained = asked.get(f"/v1/users/{user}/explain/loyal")
            assert explained.body["worker"] == owner.id
            assert explained.body["status"] == "met"
        assert other.get(f"/v1/users/{user}").headers["X-Eventpatterns-Routed-By"] == other.id


def test_reset_via_the_api(cluster: Cluster) -> None:
    owner = cluster.a
    other = cluster.b
    user = cluster.owned_user(owner, "reset")
    owner.post_events([{"user_id": user, "event": "signup"}])
    path = f"/v1/users/{user}/explain/loyal"
    wait_until(lambda: other.get(path).body["status"] == "met", 20, "loyal met")
    assert other.post(f"/v1/users/{user}/patterns/nope/reset").status == 404
    answer = other.post(f"/v1/users/{user}/patterns/loyal/reset")
    assert answer.status == 202
    assert answer.body["pattern"] == "loyal"
    wait_until(lambda: other.get(path).body["status"] == "not_met", 20, "loyal reset")
    records = audit_records(cluster.broker.bootstrap)
    transitions = [
        (r["from"], r["to"])
        for r in records
        if r["kind"] == "transition" and r["user_id"] == user and r["pattern"] == "loyal"
    ]
    assert transitions == [("not_met", "met"), ("met", "not_met")]


def test_stream_sends_audit_records(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    user = "streamed-1"
    connection = http.client.HTTPConnection("127.0.0.1", a.port, timeout=5)
    connection.request("GET", f"/v1/stream?token={TOKEN}&user_id={user}")
    response = connection.getresponse()
    try:
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/event-stream"
        assert response.readline().startswith(b"retry:")
        b.post_events([{"user_id": user, "event": "click"}])
        deadline = time.monotonic() + 20
        records: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not any(r["kind"] == "action" for r in records):
            line = response.readline()
            if line.startswith(b"data:") and b'"user_id"' in line:
                records.append(json.loads(line[5:]))
        assert any(r["kind"] == "transition" and r["to"] == "met" for r in records), records
        offer = next(r for r in records if r["kind"] == "action")
        assert (offer["action"], offer["offer"], offer["user_id"]) == ("publish", "welcome", user)
    finally:
        connection.close()


# ---------------------------------------------------------------------- the pattern file


def test_get_patterns_and_refuse_a_bad_file(cluster: Cluster) -> None:
    a = cluster.a
    current = a.get("/v1/patterns").body
    assert current["text"] == PATTERNS.read_text()
    assert [p["id"] for p in current["patterns"]][:2] == ["every_click", "keep_views"]
    bad = "version: 1\npatterns:\n  - {id: 'a b', type: counter, events: []}\n  - {id: x}\n"
    answer = a.call("PUT", "/v1/patterns", bad)
    assert answer.status == 400
    assert "nothing changed" in answer.body["error"]
    assert len(answer.body["details"]) >= 3
    assert all({"path", "message"} <= set(d) for d in answer.body["details"])
    other_source = PATTERNS.read_text().replace(
        "version: 1\n", "version: 1\nsource: {topic: another-topic}\n", 1
    )
    moved = a.call("PUT", "/v1/patterns", other_source)
    assert moved.status == 400
    assert moved.body["details"][0]["path"] == "source.topic"
    assert a.get("/v1/patterns").body["version"] == current["version"]


def _versions(cluster: Cluster) -> set[str]:
    return {w.get("/v1/patterns").body["version"] for w in (cluster.a, cluster.b)}


def test_hot_reload_under_traffic(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    v1_text = PATTERNS.read_text()
    v1 = a.get("/v1/patterns").body["version"]
    changed = "events: [{event: view, count: 4}]\n  - id: big_spender"
    assert v1_text.count(changed) == 1
    v2_text = v1_text.replace(changed, changed.replace("count: 4", "count: 5"))

    # Viewers: three views each under v1.
    viewers = [f"reload-viewer-{n}" for n in range(4)]
    for viewer in viewers:
        a.post_events([{"user_id": viewer, "event": "view"}] * 3)
    for viewer in viewers:
        wait_until(
            lambda v=viewer: (
                b.get(f"/v1/users/{v}/explain/keep_views").body["events"][0]["count"] == 3
            ),
            20,
            "three views",
        )
    events_before = metric(a, EVENTS_METRIC) + metric(b, EVENTS_METRIC)

    # Clickers: rounds of one click per user, through both workers, while the file changes.
    clickers = [f"reload-clicker-{n}" for n in range(30)]
    rounds = [0]
    problems: list[BaseException] = []
    stop = threading.Event()

    def traffic() -> None:
        try:
            while not stop.is_set():
                worker = (a, b)[rounds[0] % 2]
                worker.post_events([{"user_id": u, "event": "click"} for u in clickers])
                rounds[0] += 1
                stop.wait(0.05)  # pacing of the traffic, not a wait for a condition
        except BaseException as error:  # pragma: no cover - reported below
            problems.append(error)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        wait_until(lambda: rounds[0] >= 5, 20, "traffic under v1")
        answer = a.call("PUT", "/v1/patterns", v2_text)
        assert answer.status == 202, answer.raw
        v2 = answer.body["version"]
        assert v2 != v1 and answer.body["previous_version"] == v1
        wait_until(lambda: _versions(cluster) == {v2}, 20, "both workers on v2")
        switched_at = rounds[0]
        wait_until(lambda: rounds[0] >= switched_at + 5, 20, "traffic under v2")
    finally:
        stop.set()
        thread.join(20)
    assert not problems, problems
    clicks = rounds[0] * len(clickers)

    # Viewers: three more views under v2.
    for viewer in viewers:
        b.post_events([{"user_id": viewer, "event": "view"}] * 3)
    for viewer in viewers:
        # The three views may be applied in more than one batch: wait for all of them.
        fresh = wait_until(
            lambda v=viewer: (
                (x := a.get(f"/v1/users/{v}/explain/change_views").body)["events"][0]["count"] == 3
                and x
            ),
            20,
            "three views under v2",
        )
        assert fresh["status"] == "not_met"  # changed: started fresh
        assert fresh["events"][0]["needed"] == 5
        keep = a.get(f"/v1/users/{viewer}/explain/keep_views").body
        # unchanged: kept its 3 views across the switch, met at the 4th (then stops counting)
        assert keep["status"] == "met"
        assert keep["events"][0]["count"] == 4

    # Every click applied exactly once: one offer each, unique ids, and the metrics agree.
    expected_events = clicks + 3 * len(viewers)
    wait_until(
        lambda: (
            metric(a, EVENTS_METRIC) + metric(b, EVENTS_METRIC) - events_before >= expected_events
        ),
        30,
        "all events applied",
    )

    def offers() -> list[dict[str, Any]]:
        return [
            r
            for r in audit_records(cluster.broker.bootstrap)
            if r["kind"] == "action"
            and r["pattern"] == "every_click"
            and r["user_id"].startswith("reload-clicker-")
        ]

    records = wait_until(lambda: (o := offers()) and len(o) >= clicks and o, 30, "the offers")
    assert len(records) == clicks
    assert len({r["id"] for r in records}) == clicks
    assert Counter(r["user_id"] for r in records) == dict.fromkeys(clickers, rounds[0])
    assert {r["version"] for r in records} == {v1, v2}
    assert metric(a, EVENTS_METRIC) + metric(b, EVENTS_METRIC) - events_before == expected_events
    met = [
        r
        for r in audit_records(cluster.broker.bootstrap)
        if r["kind"] == "transition"
        and r["pattern"] == "keep_views"
        and r["to"] == "met"
        and r["user_id"].startswith("reload-viewer-")
    ]
    assert {r["user_id"] for r in met} == set(viewers)
    assert {r["version"] for r in met} == {v2}


def test_patterns_push_command(cluster: Cluster, tmp_path: Path) -> None:
    current = cluster.a.get("/v1/patterns").body
    text = current["text"].replace("count: 5", "count: 6")
    assert text != current["text"]
    good = tmp_path / "patterns.yaml"
    good.write_text(text)
    env = {**cluster.a.env(), "EVENTPATTERNS_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "eventpatterns.cli", "patterns", "push"]
    pushed = subprocess.run(
        [*command, str(good)], env=env, capture_output=True, text=True, timeout=60
    )
    assert pushed.returncode == 0, pushed.stderr
    assert "published version" in pushed.stdout
    version = pushed.stdout.split("published version ")[1].split(":")[0]
    wait_until(lambda: _versions(cluster) == {version}, 20, "both workers on the pushed file")
    assert cluster.b.get("/v1/patterns").body["text"] == text

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\npatterns:\n  - {id: p, type: nope, events: []}\n")
    refused = subprocess.run(
        [*command, str(bad)], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "refused" in refused.stderr
    assert _versions(cluster) == {version}
