"""The worker's HTTP endpoints (SPEC section 8), on Faust's web server (aiohttp).

| method and path                                   | does                                       |
| ------------------------------------------------- | ------------------------------------------ |
| `POST /v1/events`                                 | one event or a list; 202 `{"accepted": n}` |
| `GET /v1/users/{user_id}`                         | profile, segments, offers, pattern states  |
| `GET /v1/users/{user_id}/explain/{pattern}`       | why the pattern is or is not met           |
| `POST /v1/users/{user_id}/patterns/{pattern}/reset` | reset (SPEC section 4); 202              |
| `GET /v1/patterns`, `PUT /v1/patterns`            | the pattern file in force; replace it      |
| `GET /v1/status`                                  | this worker: version, partitions, peers    |
| `GET /v1/stream`                                  | server-sent events: the audit trail, live  |
| `GET /metrics`                                    | Prometheus (never needs the token)         |
| `GET /`                                           | the live dashboard                         |

Every JSON answer names the worker that produced it (`"worker": "host:port"`,
also the `X-Eventpatterns-Worker` header). Errors are `{"error": ..., "details":
[...]}` with a 4xx (or 5xx when a dependency is down), never a traceback.

A request about a user goes to the worker that owns the user's partition of
the `state` table, found in Faust's router metadata (the map `table_route`
uses); it is forwarded once, marked with `X-Eventpatterns-Routed-By`, and a
forwarded request is always answered where it lands (no routing loops while
a rebalance settles).

With `EVENTPATTERNS_API_TOKEN` set, every endpoint but `/metrics` wants
`Authorization: Bearer <token>`; the browser-facing `/` and `/v1/stream`
(an EventSource cannot send headers) also take `?token=<token>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from aiohttp import ClientError, ClientTimeout, web
from faust.web import View
from yarl import URL

from .core.definitions import Definitions, PatternFileError, load_definitions
from .core.events import BadEvent, event_from_record
from .core.explain import describe_user, explain
from .core.spec import DEFAULT_SOURCE
from .core.state import StateFormatError, UserState
from .core.timeutil import TimeFormatError, parse_timestamp
from .processor import Envelope, partition_for

if TYPE_CHECKING:
    from .app import Runtime

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
"""Largest request body (1 MiB); more gets 413."""
ROUTED_HEADER = "X-Eventpatterns-Routed-By"
WORKER_HEADER = "X-Eventpatterns-Worker"
FORWARD_TIMEOUT = 10.0
STREAM_BACKLOG = 200
"""Recent audit records a new stream subscriber gets first."""
STREAM_QUEUE = 2000
KEEPALIVE_SECONDS = 15.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer with an error status: `{"error": message, "details": details}`."""

    def __init__(
        self,
        status: int,
        message: str,
        details: list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []
        self.headers = dict(headers or {})


def now_us() -> int:
    return time.time_ns() // 1000


def advertised_host(bind: str) -> str:
    """The host other workers reach this one at: the bind address, or for a wildcard bind
    (0.0.0.0 in containers) the machine's name, which resolves to its address there."""
    if bind in ("", "0.0.0.0", "::", "[::]"):
        return socket.gethostname()
    return bind


# ---------------------------------------------------------------------- the audit feed


class AuditFeed:
    """Fans the audit trail out to stream subscribers.

    `cluster` subscribers get every worker's records, read from the actions
    topic (one consumer per worker, started with the first subscriber, from a
    few recent records per partition); `local` ones get this worker's records
    as it makes them (`Runtime.listeners`).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.cluster: set[asyncio.Queue[Any]] = set()
        self.local: set[asyncio.Queue[Any]] = set()
        self.recent: deque[dict[str, Any]] = deque(maxlen=STREAM_BACKLOG)
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self.closing = False
        runtime.listeners.append(self._on_local_record)

    async def subscribe(self, scope: str) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=STREAM_QUEUE)
        if scope == "local":
            self.local.add(queue)
            return queue
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.create_task(self._follow(self._ready))
        assert self._ready is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 10.0)
        for record in self.recent:
            queue.put_nowait(record)
        self.cluster.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Any]) -> None:
        self.cluster.discard(queue)
        self.local.discard(queue)

    async def close(self) -> None:
        self.closing = True
        for queue in [*self.cluster, *self.local]:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def _offer(self, queues: set[asyncio.Queue[Any]], record: Mapping[str, Any]) -> None:
        for queue in queues:
            try:
                queue.put_nowait(record)
            except asyncio.QueueFull:
                self.dropped += 1

    def _on_local_record(self, record: Mapping[str, Any]) -> None:
        if self.local:
            self._offer(self.local, dict(record))

    async def _follow(self, ready: asyncio.Event) -> None:
        """Tail the actions topic; after a failure, start again (from recent records)."""
        while not self.closing:
            await self._tail(ready)
            if not self.closing:
                await asyncio.sleep(2.0)

    async def _tail(self, ready: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        runtime = self.runtime
        topic = runtime.settings.actions_topic
        consumer = AIOKafkaConsumer(bootstrap_servers=runtime.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer.topics()
                partitions = consumer.partitions_for_topic(topic) or {0}
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            per_partition = max(1, STREAM_BACKLOG // len(tps))
            for tp in tps:
                consumer.seek(tp, max(starts[tp], ends[tp] - per_partition))
            backlog: list[dict[str, Any]] = []
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                batches = await consumer.getmany(*tps, timeout_ms=500)
                for messages in batches.values():
                    backlog.extend(r for m in messages if (r := _record(m.value)) is not None)
            backlog.sort(key=lambda r: (str(r.get("time", "")), str(r.get("id", ""))))
            if not self.recent:
                self.recent.extend(backlog)
            ready.set()
            while not self.closing:
                batches = await consumer.getmany(*tps, timeout_ms=300)
                for messages in batches.values():
                    for message in messages:
                        record = _record(message.value)
                        if record is not None:
                            self.recent.append(record)
                            self._offer(self.cluster, record)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the dashboard feed stopped reading %s", topic)
        finally:
            ready.set()
            await consumer.stop()


def _record(value: bytes | None) -> dict[str, Any] | None:
    if not value:
        return None
    with contextlib.suppress(orjson.JSONDecodeError):
        record = orjson.loads(value)
        if isinstance(record, dict):
            return record
    return None


# ---------------------------------------------------------------------- the API


class Api:
    """The endpoints' logic; the Faust views below only dispatch to it."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.app = runtime.app
        self.feed = AuditFeed(runtime)
        url = URL(str(self.app.conf.canonical_url))
        self.worker = f"{url.host}:{url.port}"
        self.token = (runtime.settings.api_token or "").encode() or None

    # -------------------------------------------------------------- plumbing

    def json(
        self, body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        payload = {**body, "worker": self.worker}
        return web.Response(
            body=orjson.dumps(payload, default=str),
            status=status,
            content_type="application/json",
            headers={WORKER_HEADER: self.worker, **(headers or {})},
        )

    def error(self, error: ApiError) -> web.Response:
        body = {"error": error.message, "details": error.details}
        return self.json(body, error.status, error.headers)

    def authorized(self, request: web.Request, query_token: bool) -> bool:
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token):
            return True
        if query_token and "token" in request.query:
            return hmac.compare_digest(request.query["token"].encode(), self.token)
        return False

    async def handle(
        self,
        request: web.Request,
        call: Callable[[], Awaitable[web.StreamResponse]],
        *,
        public: bool = False,
        query_token: bool = False,
    ) -> web.StreamResponse:
        try:
            if not public and not self.authorized(request, query_token):
                raise ApiError(
                    401,
                    "missing or wrong API token",
                    [{"reason": "send 'Authorization: Bearer <EVENTPATTERNS_API_TOKEN>'"}],
                    {"WWW-Authenticate": 'Bearer realm="eventpatterns"'},
                )
            return await call()
        except ApiError as error:
            return self.error(error)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # never a traceback to the client
            log.exception("%s %s failed", request.method, request.path)
            return self.error(ApiError(500, "internal error", [{"reason": type(error).__name__}]))

    async def body(self, request: web.Request) -> bytes:
        """The request body, refusing more than MAX_BODY bytes with 413."""
        too_large = ApiError(
            413,
            "request body too large",
            [{"reason": f"the limit is {MAX_BODY} bytes (1 MiB); send fewer events per request"}],
        )
        length = request.content_length
        if length is not None and length > MAX_BODY:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > MAX_BODY:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def now(self, request: web.Request, state: UserState) -> int:
        """`?at=ISO` or the wall clock, but never before the user's latest event."""
        at = request.query.get("at")
        if at:
            try:
                return parse_timestamp(at)
            except TimeFormatError as error:
                raise ApiError(400, "bad 'at' parameter", [{"reason": str(error)}]) from None
        return max(now_us(), state.clock or 0)

    # -------------------------------------------------------------- routing

    def owner(self, user_id: str) -> str | None:
        """host:port of the worker owning the user's state partition (None: unknown yet)."""
        table = self.runtime.state_table
        partition = partition_for(user_id.encode(), self.runtime.settings.partitions)
        try:
            hosts = self.app.router.table_metadata(table.name)
        except Exception:  # no assignment yet
            return None
        for url, topics in hosts.items():
            for partitions in topics.values():
                if partition in partitions:
                    owner = URL(url)
                    return f"{owner.host}:{owner.port}"
        return None

    def owns(self, user_id: str) -> bool:
        """Whether this worker holds the user's partition of the state table."""
        changelog = self.runtime.state_table.changelog_topic.get_topic_name()
        partition = partition_for(user_id.encode(), self.runtime.settings.partitions)
        try:
            actives = self.app.assignor.assigned_actives()
        except Exception:
            return False
        return any(tp.topic == changelog and tp.partition == partition for tp in actives)

    async def routed(self, request: web.Request, user_id: str) -> web.StreamResponse | None:
        """The owner's answer, or None when this worker should answer itself."""
        if request.headers.get(ROUTED_HEADER) or self.owns(user_id):
            return None
        owner = self.owner(user_id)
        if owner is None or owner == self.worker:
            raise ApiError(
                503,
                "the workers are still sharing out the users; try again in a few seconds",
                [{"user_id": user_id}],
                {"Retry-After": "2"},
            )
        headers = {
            key: value
            for key, value in request.headers.items()
            if key.lower() not in ("host", "content-length", "transfer-encoding", "connection")
        }
        headers[ROUTED_HEADER] = self.worker
        data = await self.body(request) if request.can_read_body else None
        host, _, port = owner.rpartition(":")
        url = URL.build(
            scheme="http",
            host=host,
            port=int(port),
            path=request.rel_url.raw_path,
            query_string=request.rel_url.raw_query_string,
            encoded=True,
        )
        try:
            async with self.app.http_client.request(
                request.method,
                url,
                headers=headers,
                data=data,
                timeout=ClientTimeout(total=FORWARD_TIMEOUT),
            ) as response:
                body = await response.read()
                return web.Response(
                    body=body,
                    status=response.status,
                    content_type=response.content_type,
                    headers={
                        WORKER_HEADER: response.headers.get(WORKER_HEADER, owner),
                        ROUTED_HEADER: self.worker,
                    },
                )
        except (ClientError, TimeoutError) as error:
            raise ApiError(
                502,
                f"the worker that owns this user ({owner}) did not answer",
                [{"reason": str(error) or type(error).__name__}],
            ) from None

    def user_state(self, user_id: str) -> tuple[UserState, bool]:
        raw = self.runtime.store.get(user_id)
        if raw is None:
            return self.runtime.processor.engine.new_state(user_id), False
        try:
            return Envelope.decode(raw).state, True
        except (StateFormatError, ValueError) as error:
            raise ApiError(
                500, "the stored state of this user cannot be read", [{"reason": str(error)}]
            ) from None

    def pattern_or_404(self, pattern_id: str) -> None:
        definitions = self.runtime.definitions
        if pattern_id not in definitions.by_id:
            raise ApiError(
                404,
                f"unknown pattern '{pattern_id}'",
                [
                    {
                        "patterns": [p.id for p in definitions.patterns],
                        "version": definitions.version,
                    }
                ],
            )

    # -------------------------------------------------------------- endpoints

    async def post_events(self, request: web.Request) -> web.StreamResponse:
        raw = await self.body(request)
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise ApiError(400, "the body is not JSON", [{"reason": str(error)}]) from None
        items = document if isinstance(document, list) else [document]
        received = now_us()
        events = []
        problems = []
        for index, item in enumerate(items):
            try:
                events.append(event_from_record(item, DEFAULT_SOURCE, received))
            except BadEvent as error:
                problems.append({"index": index, "reason": str(error)})
        if problems:
            raise ApiError(
                400,
                f"{len(problems)} of {len(items)} event(s) are not valid; none was accepted",
                problems,
            )
        settings = self.runtime.settings
        topic = self.runtime.topic(settings.events_topic)
        pending = []
        try:
            for event in events:
                key = event.user_id.encode()
                pending.append(
                    await topic.send(
                        key=key,
                        value=orjson.dumps(event.to_json()),
                        partition=partition_for(key, settings.partitions),
                    )
                )
            await asyncio.gather(*pending)
        except Exception as error:
            log.exception("could not send posted events")
            raise ApiError(
                503, "the events could not be written to Kafka", [{"reason": str(error)}]
            ) from None
        return self.json({"accepted": len(events)}, 202)

    async def get_user(self, request: web.Request, user_id: str) -> web.StreamResponse:
        routed = await self.routed(request, user_id)
        if routed is not None:
            return routed
        state, known = self.user_state(user_id)
        body = describe_user(self.runtime.definitions, state, self.now(request, state))
        body["known"] = known
        return self.json(body)

    async def get_explain(
        self, request: web.Request, user_id: str, pattern: str
    ) -> web.StreamResponse:
        self.pattern_or_404(pattern)
        routed = await self.routed(request, user_id)
        if routed is not None:
            return routed
        state, known = self.user_state(user_id)
        definitions = self.runtime.definitions
        self.pattern_or_404(pattern)
        body = explain(definitions, state, pattern, self.now(request, state))
        body["known"] = known
        return self.json(body)

    async def post_reset(
        self, request: web.Request, user_id: str, pattern: str
    ) -> web.StreamResponse:
        self.pattern_or_404(pattern)
        try:
            await self.runtime.send_reset(user_id, pattern)
        except Exception as error:
            log.exception("could not send a reset")
            raise ApiError(
                503, "the reset could not be written to Kafka", [{"reason": str(error)}]
            ) from None
        return self.json({"user_id": user_id, "pattern": pattern, "reset": "requested"}, 202)

    async def get_patterns(self, request: web.Request) -> web.StreamResponse:
        definitions = self.runtime.definitions
        text = self.runtime.definitions_text
        if text is None:
            text = orjson.dumps(dict(definitions.raw), option=orjson.OPT_INDENT_2).decode()
        return self.json(
            {
                "version": definitions.version,
                "summary": definitions.summary(),
                "patterns": [
                    {"id": p.id, "type": p.type, "mode": p.mode} for p in definitions.patterns
                ],
                "text": text,
            }
        )

    async def put_patterns(self, request: web.Request) -> web.StreamResponse:
        raw = await self.body(request)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "the pattern file is not UTF-8 text") from None
        try:
            definitions = load_definitions(text, filename="request")
        except PatternFileError as error:
            raise ApiError(
                400,
                f"the pattern file was refused ({len(error.problems)} problem(s)); nothing changed",
                [
                    {"path": p.path, "message": p.message, "line": p.line, "text": p.render(None)}
                    for p in error.problems
                ],
            ) from None
        current = self.runtime.definitions
        if definitions.source.topic != current.source.topic:
            raise ApiError(
                400,
                "the pattern file was refused; nothing changed",
                [
                    {
                        "path": "source.topic",
                        "message": (
                            f"the workers read '{current.source.topic}'; reading another "
                            "input topic needs a restart of the workers with the new file"
                        ),
                    }
                ],
            )
        await self._publish(definitions, text)
        return self.json(
            {
                "version": definitions.version,
                "previous_version": current.version,
                "summary": definitions.summary(),
                "status": "published; every worker switches to it within a few seconds",
            },
            202,
        )

    async def _publish(self, definitions: Definitions, text: str) -> None:
        from .broker import acreate_topics
        from .patternstore import publish
        from .topics import all_topics

        settings = self.runtime.settings
        try:
            topics, compacted = all_topics(settings, definitions)  # new publish targets
            await acreate_topics(
                self.runtime.bootstrap,
                topics,
                compacted,
                replication_factor=settings.replication_factor,
            )
            await publish(self.runtime.bootstrap, settings.definitions_topic, text)
        except Exception as error:
            log.exception("could not publish a pattern file")
            raise ApiError(
                503, "the pattern file could not be published", [{"reason": str(error)}]
            ) from None

    async def get_status(self, request: web.Request) -> web.StreamResponse:
        runtime = self.runtime
        partitions: list[int] = []
        with contextlib.suppress(Exception):
            partitions = sorted(
                tp.partition
                for tp in self.app.assignor.assigned_actives()
                if tp.topic == runtime.names.events
            )
        workers: list[str] = []
        with contextlib.suppress(Exception):
            for url in self.app.router.table_metadata(runtime.state_table.name):
                peer = URL(url)
                workers.append(f"{peer.host}:{peer.port}")
        definitions = runtime.definitions
        return self.json(
            {
                "version": definitions.version,
                "summary": definitions.summary(),
                "patterns": [p.id for p in definitions.patterns],
                "partitions": partitions,
                "partition_count": runtime.settings.partitions,
                "workers": sorted(workers),
                "auth": self.token is not None,
            }
        )

    async def get_dashboard(self, request: web.Request) -> web.StreamResponse:
        page = resources.files("eventpatterns").joinpath("static/dashboard.html").read_bytes()
        return web.Response(
            body=page,
            content_type="text/html",
            charset="utf-8",
            headers={WORKER_HEADER: self.worker, "Cache-Control": "no-cache"},
        )

    async def get_metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=self.runtime.metrics.render(),
            headers={
                "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
                WORKER_HEADER: self.worker,
            },
        )

    async def get_stream(self, request: web.Request) -> web.StreamResponse:
        scope = request.query.get("scope", "cluster")
        if scope not in ("cluster", "local"):
            raise ApiError(400, "bad 'scope'", [{"reason": "use scope=cluster or scope=local"}])
        kinds = set(filter(None, request.query.get("kinds", "").split(",")))
        patterns = set(filter(None, request.query.get("pattern", "").split(",")))
        user = request.query.get("user_id")
        queue = await self.feed.subscribe(scope)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                WORKER_HEADER: self.worker,
            }
        )
        try:
            await response.prepare(request)
            hello = {
                "worker": self.worker,
                "scope": scope,
                "version": self.runtime.definitions.version,
            }
            await response.write(
                b"retry: 2000\nevent: hello\ndata: " + orjson.dumps(hello) + b"\n\n"
            )
            while not self.feed.closing:
                try:
                    record = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if record is None:
                    break
                if kinds and record.get("kind") not in kinds:
                    continue
                if patterns and record.get("pattern") not in patterns:
                    continue
                if user and record.get("user_id") != user:
                    continue
                await response.write(
                    b"id: "
                    + str(record.get("id", "")).encode()
                    + b"\ndata: "
                    + orjson.dumps(record, default=str)
                    + b"\n\n"
                )
        except (ConnectionResetError, RuntimeError):
            pass  # the browser went away
        finally:
            self.feed.unsubscribe(queue)
        return response


# ---------------------------------------------------------------------- Faust views


class _ApiView(View):
    api: ClassVar[Api]
    public: ClassVar[bool] = False
    query_token: ClassVar[bool] = False


def register_web(runtime: Runtime) -> None:
    app = runtime.app
    _drop_builtin_pages(app)
    api = Api(runtime)

    def guard(view: _ApiView, request: Any, call: Callable[[], Awaitable[Any]]) -> Awaitable[Any]:
        return api.handle(request, call, public=view.public, query_token=view.query_token)

    @app.page("/v1/events")
    class EventsView(_ApiView):
        async def post(self, request: Any) -> Any:
            return await guard(self, request, lambda: api.post_events(request))

    @app.page("/v1/users/{user_id}")
    class UserView(_ApiView):
        async def get(self, request: Any, user_id: str) -> Any:
            return await guard(self, request, lambda: api.get_user(request, user_id))

    @app.page("/v1/users/{user_id}/explain/{pattern}")
    class ExplainView(_ApiView):
        async def get(self, request: Any, user_id: str, pattern: str) -> Any:
            return await guard(self, request, lambda: api.get_explain(request, user_id, pattern))

    @app.page("/v1/users/{user_id}/patterns/{pattern}/reset")
    class ResetView(_ApiView):
        async def post(self, request: Any, user_id: str, pattern: str) -> Any:
            return await guard(self, request, lambda: api.post_reset(request, user_id, pattern))

    @app.page("/v1/patterns")
    class PatternsView(_ApiView):
        async def get(self, request: Any) -> Any:
            return await guard(self, request, lambda: api.get_patterns(request))

        async def put(self, request: Any) -> Any:
            return await guard(self, request, lambda: api.put_patterns(request))

    @app.page("/v1/status")
    class StatusView(_ApiView):
        async def get(self, request: Any) -> Any:
            return await guard(self, request, lambda: api.get_status(request))

    @app.page("/v1/stream")
    class StreamView(_ApiView):
        query_token = True

        async def get(self, request: Any) -> Any:
            return await guard(self, request, lambda: api.get_stream(request))

    @app.page("/metrics")
    class MetricsView(_ApiView):
        public = True

        async def get(self, request: Any) -> Any:
            return await guard(self, request, lambda: api.get_metrics(request))

    @app.page("/")
    class DashboardView(_ApiView):
        query_token = True

        async def get(self, request: Any) -> Any:
            return await guard(self, request, lambda: api.get_dashboard(request))

    @app.on_before_shutdown.connect
    async def _close_feed(app: Any, **_: Any) -> None:
        await api.feed.close()

    @web.middleware
    async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        """aiohttp's own errors (unknown path, wrong method) in the API's JSON shape."""
        try:
            return await handler(request)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            details = [{"method": request.method, "path": request.path}]
            if isinstance(error, web.HTTPMethodNotAllowed):
                details[0]["allowed"] = ", ".join(sorted(error.allowed_methods))
            return api.error(ApiError(error.status, error.reason.lower(), details))

    web_app = getattr(app.web, "web_app", None)
    if web_app is not None:
        web_app.middlewares.append(json_errors)


def _drop_builtin_pages(app: Any) -> None:
    """Faust's own pages: its index would shadow the dashboard at `/`, and `/table/...`
    would show users' state without the API token. The API above replaces them."""
    manager = app.web.blueprints
    enabled = getattr(manager, "_enabled", None)
    if isinstance(enabled, list):
        enabled[:] = [
            (prefix, blueprint)
            for prefix, blueprint in enabled
            if not (isinstance(blueprint, str) and blueprint.startswith("faust.web.apps."))
        ]
