"""``Bus``: commands with one handler each, events fanned out to subscribers in order.

Theory of operation.

- A **request** runs its handler in the caller's thread (or task, for ``request_async``)
  with the command's correlation id and depth set in the context (``_context.FRAME``), so
  whatever the handler publishes or requests sees them, and the caller's are restored
  after. A synchronous handler cannot be interrupted: one that answers after the timeout
  has its answer discarded and the caller gets ``TIMEOUT``. An async handler is cancelled
  at the deadline. A ``BusError`` raised inside a handler (a nested request's, say)
  reaches the caller unchanged; any other exception becomes ``HANDLER_ERROR``.
- An **event** gets its topic's next sequence number under that topic's lock and joins the
  topic's queue in the same critical section, so queue order is sequence order. Whoever
  finds the topic idle becomes its deliverer and drains the queue, outside the lock,
  until it is empty; a publisher that finds a deliverer at work just leaves its event
  queued and returns. One deliverer per topic at a time is what makes every subscriber
  see that topic in sequence order, however many threads publish, and a subscriber that
  publishes to its own topic queues behind the event it is handling instead of
  overtaking it. Subscribers run in the deliverer's thread with the event's correlation
  id active; one that raises is logged and the others still run.
- Each topic caches the subscribers that match it, tagged with the registry's generation;
  any (un)subscription bumps the generation, and the next delivery recomputes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from time import perf_counter, time
from typing import Any, Protocol, TypeVar

import msgspec

from ..core.ids import uuid7
from ._context import FRAME, Frame
from ._envelope import Envelope, validate_envelope
from ._errors import (
    HANDLER_ERROR,
    METHOD_NOT_FOUND,
    TIMEOUT,
    VALIDATION_ERROR,
    Backpressure,
    BusConfigError,
    BusError,
    ErrorCode,
)
from ._topics import check_name, matches, may_match_prefix, parse_pattern

log = logging.getLogger("mainspring.bus")

Subscriber = Callable[[Envelope], Any]
F = TypeVar("F", bound=Callable[..., Any])


class LogEventLike(Protocol):
    """What ``Bus.publish_log`` needs of a log event (``ms.LogEvent`` has it)."""

    @property
    def type(self) -> str:
        """The event type, e.g. ``run.state_changed``."""

    @property
    def correlation_id(self) -> str | None:
        """The correlation id the event carries, if any."""


class _Handler:
    __slots__ = ("fn", "is_async")

    def __init__(self, fn: Callable[[Any], Any]):
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)


class _Subscription:
    __slots__ = ("fn", "parts", "pattern")

    def __init__(self, pattern: str, parts: tuple[str, ...], fn: Subscriber):
        self.pattern = pattern
        self.parts = parts
        self.fn = fn


class _Topic:
    """One topic's sequence counter, delivery queue and cached subscribers."""

    __slots__ = ("draining", "last", "lock", "name", "parts", "pending", "routes")

    def __init__(self, name: str):
        self.name = name
        self.parts = tuple(name.split("."))
        self.lock = threading.Lock()
        self.last = 0  # the last sequence number assigned
        self.pending: list[Envelope] = []  # assigned, not yet delivered, in sequence order
        self.draining = False  # a thread is delivering this topic's queue
        # (registry generation, matching subscriptions): one attribute, so a reader never
        # pairs one generation with another generation's subscribers
        self.routes: tuple[int, tuple[_Subscription, ...]] = (-1, ())


class Bus:
    """The in-process bus: commands with one handler each, and events fanned out to any
    number of subscribers, in this process (CONTRACT.md section 10).

    ``max_payload_bytes`` caps a payload's encoded JSON (exactly the limit passes; over it
    is ``BACKPRESSURE``); ``max_depth`` caps how deeply requests may nest inside handlers
    (a request at the top is depth 1; deeper than this is ``VALIDATION_ERROR``).
    Thread-safe; the same bus may be used from threads and asyncio tasks at once.
    """

    def __init__(self, max_payload_bytes: int = 1 << 20, max_depth: int = 16) -> None:
        if not isinstance(max_payload_bytes, int) or max_payload_bytes < 0:
            raise BusConfigError(
                f"max_payload_bytes must be an int >= 0, not {max_payload_bytes!r}"
            )
        if not isinstance(max_depth, int) or max_depth < 1:
            raise BusConfigError(f"max_depth must be an int >= 1, not {max_depth!r}")
        self.max_payload_bytes = max_payload_bytes
        self.max_depth = max_depth
        self._handlers: dict[str, _Handler] = {}
        self._subs: list[_Subscription] = []
        self._generation = 0
        self._registry_lock = threading.Lock()
        self._topics: dict[str, _Topic] = {}
        self._topics_lock = threading.Lock()
        self._log_subscribed = False  # some pattern could match a ``log.`` topic
        self._encode = msgspec.json.Encoder().encode

    # ------------------------------------------------------------------ declarations

    def command(self, method: str) -> Callable[[F], F]:
        """Declare the handler of ``method``: ``@bus.command("orders.quote")`` over a
        function (or ``async def``) taking the payload and returning the response's
        payload. One handler per method: a second declaration raises
        ``BusConfigError``."""
        if callable(method):
            raise BusConfigError("bus.command needs the method name: @bus.command('orders.quote')")
        try:
            check_name(method, "method")
        except BusError as exc:
            raise BusConfigError(exc.message) from None

        def declare(fn: F) -> F:
            if not callable(fn):
                raise BusConfigError(f"the handler of {method!r} must be callable, not {fn!r}")
            with self._registry_lock:
                existing = self._handlers.get(method)
                if existing is not None:
                    raise BusConfigError(
                        f"method {method!r} already has a handler ({_name(existing.fn)}); "
                        "a method has exactly one: remove it first or use another method name"
                    )
                self._handlers[method] = _Handler(fn)
            return fn

        return declare

    def remove_command(self, method: str) -> None:
        """Forget the handler of ``method`` (nothing happens when there is none)."""
        with self._registry_lock:
            self._handlers.pop(method, None)

    def on(self, pattern: str) -> Callable[[F], F]:
        """Subscribe the decorated function to events whose topic matches ``pattern``
        (exact, ``*`` for one dotted segment, ``#`` last for the rest). It is called with
        each event ``Envelope``, in sequence order per topic, in the publishing (or
        delivering) thread; it must be a plain function (hand work to an event loop with
        ``loop.call_soon_threadsafe``)."""

        def declare(fn: F) -> F:
            self.subscribe(pattern, fn)
            return fn

        return declare

    def subscribe(self, pattern: str, fn: Subscriber) -> Callable[[], None]:
        """``on(pattern)`` without the decorator; returns a function that unsubscribes
        (calling it again does nothing)."""
        parts = parse_pattern(pattern)
        if parts is None:
            raise BusConfigError(
                f"topic pattern {pattern!r} is not valid: dotted segments, each a name, '*' "
                "(one segment) or, last, '#' (the rest), e.g. 'orders.*' or 'audit.#'"
            )
        if not callable(fn):
            raise BusConfigError(f"a subscriber must be callable, not {fn!r}")
        if inspect.iscoroutinefunction(fn):
            raise BusConfigError(
                f"subscriber {_name(fn)} is async; subscribers are called synchronously: "
                "subscribe a plain function that hands the envelope to your loop"
            )
        sub = _Subscription(str(pattern), parts, fn)
        with self._registry_lock:
            self._subs.append(sub)
            self._registry_changed()

        def unsubscribe() -> None:
            with self._registry_lock:
                if sub in self._subs:
                    self._subs.remove(sub)
                    self._registry_changed()

        return unsubscribe

    def _registry_changed(self) -> None:
        # under _registry_lock
        self._generation += 1
        self._log_subscribed = any(may_match_prefix(s.parts, "log") for s in self._subs)

    # ------------------------------------------------------------------ commands

    def request(
        self,
        method: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        correlation_id: str | None = None,
    ) -> Envelope:
        """Run the handler of ``method`` with ``payload`` and return the response
        ``Envelope`` (its ``payload`` is the handler's return value).

        The command gets ``correlation_id`` or a fresh one; the response carries it.
        ``timeout`` (seconds, None for none) bounds the handler. Raises ``BusError``:
        ``VALIDATION_ERROR``, ``METHOD_NOT_FOUND``, ``HANDLER_ERROR``, ``TIMEOUT``, or
        ``Backpressure`` for a payload or answer over ``max_payload_bytes``. An async
        handler is run to completion in a fresh event loop; from inside a running loop
        use ``request_async``."""
        cmd, handler, frame = self._begin(method, payload, timeout, correlation_id)
        token = FRAME.set(frame)
        try:
            if handler.is_async:
                result = self._run_coroutine(cmd, handler, timeout)
            else:
                result = self._call_sync(cmd, handler, payload, timeout)
        except BusError:
            raise
        except Exception as exc:
            raise self._handler_failed(cmd, exc) from exc
        finally:
            FRAME.reset(token)
        return self._respond(cmd, result)

    async def request_async(
        self,
        method: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        correlation_id: str | None = None,
    ) -> Envelope:
        """``request`` for asyncio code: awaits an async handler (cancelled at the
        timeout), calls a plain one inline. Same result and errors as ``request``."""
        cmd, handler, frame = self._begin(method, payload, timeout, correlation_id)
        token = FRAME.set(frame)
        try:
            if handler.is_async:
                result = await self._await_handler(cmd, handler.fn(payload), timeout)
            else:
                result = self._call_sync(cmd, handler, payload, timeout)
        except BusError:
            raise
        except Exception as exc:
            raise self._handler_failed(cmd, exc) from exc
        finally:
            FRAME.reset(token)
        return self._respond(cmd, result)

    def _call_sync(
        self, cmd: Envelope, handler: _Handler, payload: Any, timeout: float | None
    ) -> Any:
        """A plain handler's result; TIMEOUT when it answered after ``timeout`` (it cannot
        be interrupted: its late answer is discarded)."""
        if timeout is None:
            return handler.fn(payload)
        start = perf_counter()
        result = handler.fn(payload)
        if perf_counter() - start > timeout:
            raise self._timed_out(cmd, timeout)
        return result

    def dispatch(
        self, envelope: Envelope | bytes | str | dict[str, Any], *, timeout: float | None = None
    ) -> Envelope:
        """Run a command given as an envelope (an ``Envelope``, its JSON, or a dict of its
        fields, from a transport say) and return the response envelope. The envelope is
        validated first: a malformed one, or one whose ``kind`` is not ``command``, is
        ``VALIDATION_ERROR``. Otherwise as ``request`` with the envelope's method, payload
        and correlation id (a fresh one when it has none)."""
        env = validate_envelope(envelope)
        if env.kind != "command":
            raise BusError(
                VALIDATION_ERROR, f"dispatch takes a command envelope, not a {env.kind!r} one"
            )
        return self.request(
            env.topic, env.payload, timeout=timeout, correlation_id=env.correlation_id
        )

    def _begin(
        self, method: str, payload: Any, timeout: float | None, correlation_id: str | None
    ) -> tuple[Envelope, _Handler, Frame]:
        """Validate a request and build its command envelope: everything that can refuse
        it happens here, before the handler runs."""
        try:
            handler = self._handlers.get(method)
        except TypeError:  # unhashable: certainly not a name
            handler = None
        if handler is None:
            check_name(method, "method")
        depth = FRAME.get()[1] + 1
        if depth > self.max_depth:
            raise BusError(
                VALIDATION_ERROR,
                f"request for {method!r} would be nested {depth} deep, deeper than max_depth="
                f"{self.max_depth}: a handler is probably requesting itself without end",
            )
        if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
            raise BusError(
                VALIDATION_ERROR, f"timeout must be a number > 0 or None, not {timeout!r}"
            )
        if correlation_id is None:
            correlation_id = uuid7()  # a command, nested or not, starts its own chain
        elif not isinstance(correlation_id, str) or not correlation_id:
            raise BusError(
                VALIDATION_ERROR, f"correlation id {correlation_id!r} is not a non-empty string"
            )
        self._check_payload(payload, f"command {method!r}")
        if handler is None:
            raise BusError(
                METHOD_NOT_FOUND,
                f"no handler is declared for method {method!r}: declare one with "
                f"@bus.command({method!r})",
            )
        cmd = Envelope(uuid7(), "command", method, None, correlation_id, time(), payload, None)
        return cmd, handler, (correlation_id, depth)

    def _respond(self, cmd: Envelope, result: Any) -> Envelope:
        try:
            size = len(self._encode(result))
        except Exception as exc:
            raise self._fail(
                cmd,
                HANDLER_ERROR,
                f"the handler of {cmd.topic!r} returned a value that is not JSON-encodable "
                f"({type(result).__name__}): {exc}",
            ) from None
        if size > self.max_payload_bytes:
            raise Backpressure(
                f"the answer of {cmd.topic!r} is {size} bytes of JSON, over max_payload_bytes="
                f"{self.max_payload_bytes}: return less, or raise the limit",
                envelope=self._error_envelope(cmd, "BACKPRESSURE", "answer too large"),
            )
        return Envelope(
            uuid7(), "response", cmd.topic, None, cmd.correlation_id, time(), result, None
        )

    def _run_coroutine(self, cmd: Envelope, handler: _Handler, timeout: float | None) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # asyncio.run copies the current context, so the handler sees the command's frame
            return asyncio.run(self._await_handler(cmd, handler.fn(cmd.payload), timeout))
        raise BusError(
            VALIDATION_ERROR,
            f"the handler of {cmd.topic!r} is async and this thread is running an event loop: "
            "use `await bus.request_async(...)`",
        )

    async def _await_handler(
        self, cmd: Envelope, awaitable: Awaitable[Any], timeout: float | None
    ) -> Any:
        if timeout is None:
            return await awaitable
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await awaitable
        except TimeoutError:
            if deadline.expired():
                raise self._timed_out(cmd, timeout) from None
            raise  # the handler's own TimeoutError: a handler error

    def _timed_out(self, cmd: Envelope, timeout: float) -> BusError:
        return self._fail(
            cmd, TIMEOUT, f"the handler of {cmd.topic!r} did not answer within {timeout} s"
        )

    def _handler_failed(self, cmd: Envelope, exc: Exception) -> BusError:
        return self._fail(
            cmd,
            HANDLER_ERROR,
            f"the handler of {cmd.topic!r} raised {type(exc).__name__}: {exc}",
        )

    def _fail(self, cmd: Envelope, code: ErrorCode, message: str) -> BusError:
        return BusError(code, message, envelope=self._error_envelope(cmd, code, message))

    def _error_envelope(self, cmd: Envelope, code: ErrorCode, message: str) -> Envelope:
        return Envelope(
            uuid7(),
            "response",
            cmd.topic,
            None,
            cmd.correlation_id,
            time(),
            None,
            {"code": code, "message": message},
        )

    # ------------------------------------------------------------------ events

    def publish(
        self, topic: str, payload: Any = None, *, correlation_id: str | None = None
    ) -> Envelope:
        """Publish an event on ``topic`` and return its ``Envelope``.

        Its ``sequence`` is the topic's next number (from 1), assigned before any
        subscriber sees it. Its correlation id is ``correlation_id``, else the active one
        (inside a command handler, the command's), else a fresh one. Matching subscribers
        run before this returns, unless another thread is already delivering this topic
        (or this is a subscriber publishing to the topic it is handling): then that
        delivery runs them, in sequence order. Raises ``BusError`` ``VALIDATION_ERROR``
        (bad topic or unencodable payload) or ``Backpressure``; nothing is published
        then."""
        try:
            t = self._topics[topic]
        except (KeyError, TypeError):
            t = self._topic(topic)
        self._check_payload(payload, f"event {topic!r}")
        if correlation_id is None:
            correlation_id = FRAME.get()[0] or uuid7()
        elif not isinstance(correlation_id, str) or not correlation_id:
            raise BusError(
                VALIDATION_ERROR, f"correlation id {correlation_id!r} is not a non-empty string"
            )
        return self._emit(t, payload, correlation_id)

    def publish_log(self, events: Iterable[LogEventLike | dict[str, Any]]) -> None:
        """The engine's feed: publish committed log events as bus events.

        Contract for the caller (the App): call it after each commit, outside store locks
        and transactions, with that commit's log events in log order, and call it in
        commit order (from one thread, or serialized). Each event becomes an event on
        topic ``log.<type>`` (``log.run.state_changed``, ...) whose payload is the log
        event as JSON-able builtins (``msgspec.to_builtins``; a dict, with at least
        ``type``, is used as is) and whose correlation id is the log event's own (None when
        it has none).

        It never raises: the events are already committed, so a failure to publish one is
        logged and the rest still go. It costs one attribute check when no subscriber's
        pattern could match a ``log.`` topic, and skips (assigns no sequence to) a topic
        no subscriber matches. The size limit does not apply: these are facts already
        stored, not requests to refuse."""
        if not self._log_subscribed:
            return
        for event in events:
            try:
                if isinstance(event, dict):
                    kind, correlation = event["type"], event.get("correlation_id")
                else:
                    kind, correlation = event.type, event.correlation_id
                topic = "log." + kind
                try:
                    t = self._topics[topic]
                except KeyError:
                    t = self._topic(topic)
                if not self._routes(t):
                    continue
                payload = event if isinstance(event, dict) else msgspec.to_builtins(event)
                self._emit(t, payload, correlation)
            except Exception:
                log.exception("could not publish log event %r on the bus", event)

    @property
    def log_subscribed(self) -> bool:
        """Whether some subscriber's pattern could match a ``log.`` topic: when False,
        ``publish_log`` does nothing, so a caller may skip building the events at all."""
        return self._log_subscribed

    def has_subscribers(self, topic: str) -> bool:
        """Whether any subscriber's pattern matches ``topic``."""
        parts = tuple(check_name(topic, "topic").split("."))
        with self._registry_lock:
            return any(matches(s.parts, parts) for s in self._subs)

    def last_sequence(self, topic: str) -> int:
        """The last sequence number assigned on ``topic`` (0 before its first event)."""
        t = self._topics.get(topic)
        return 0 if t is None else t.last

    def _topic(self, topic: str) -> _Topic:
        check_name(topic, "topic")
        with self._topics_lock:
            t = self._topics.get(topic)
            if t is None:
                t = self._topics[topic] = _Topic(topic)
            return t

    def _check_payload(self, payload: Any, what: str) -> None:
        try:
            size = len(self._encode(payload))
        except Exception as exc:  # unsupported type, circular reference, huge int, ...
            raise BusError(
                VALIDATION_ERROR,
                f"the payload of {what} is not JSON-encodable ({type(payload).__name__}): {exc}",
            ) from None
        if size > self.max_payload_bytes:
            raise Backpressure(
                f"the payload of {what} is {size} bytes of JSON, over max_payload_bytes="
                f"{self.max_payload_bytes}: send less (a reference to it, say), or raise the limit"
            )

    def _emit(self, t: _Topic, payload: Any, correlation: str | None) -> Envelope:
        eid = uuid7()  # outside the lock: it takes a lock of its own
        with t.lock:
            t.last += 1
            env = Envelope(eid, "event", t.name, t.last, correlation, time(), payload, None)
            if t.draining:
                t.pending.append(env)
                return env
            t.draining = True
        self._drain(t, env)
        return env

    def _routes(self, t: _Topic) -> tuple[_Subscription, ...]:
        generation, subs = t.routes
        if generation == self._generation:
            return subs
        with self._registry_lock:
            generation = self._generation
            subs = tuple(s for s in self._subs if matches(s.parts, t.parts))
        t.routes = (generation, subs)
        return subs

    def _drain(self, t: _Topic, first: Envelope) -> None:
        """Deliver ``first``, then whatever queued up meanwhile, until the queue is empty.
        Only the thread that set ``t.draining`` runs this, so delivery is serial per topic."""
        depth = FRAME.get()[1]
        batch: list[Envelope] | tuple[Envelope] = (first,)
        try:
            while True:
                subs = self._routes(t)
                if subs:
                    for env in batch:
                        token = FRAME.set((env.correlation_id, depth))
                        try:
                            for sub in subs:
                                try:
                                    sub.fn(env)
                                except Exception:
                                    log.exception(
                                        "bus subscriber %s (%r) raised on %s #%d; delivery goes on",
                                        _name(sub.fn),
                                        sub.pattern,
                                        env.topic,
                                        env.sequence,
                                    )
                        finally:
                            FRAME.reset(token)
                with t.lock:
                    if not t.pending:
                        t.draining = False
                        return
                    batch, t.pending = t.pending, []
        except BaseException:
            # interrupted (KeyboardInterrupt, SystemExit): let the next publisher deliver
            # what is still queued rather than leave the topic stuck
            with t.lock:
                t.draining = False
            raise


def _name(fn: object) -> str:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{qualname}" if module else qualname
