"""Async tests for the conformance suites, without pytest-asyncio.

A plugin author's project may configure pytest-asyncio in strict or auto mode, or not have
it at all, so the suites never depend on it. :func:`async_test` turns a coroutine method
into a plain, synchronous test function that pytest (and pytest-asyncio, which only looks
at coroutine functions) runs as it runs any other::

    class StoreConformance:
        @async_test
        async def test_get_missing_raises_not_found(self, store):
            with pytest.raises(NotFound):
                await store.get("/nope")

The wrapper requests the factory fixture (``store_factory``) instead of ``store``, plus
every other fixture the coroutine names. It runs the body in a new event loop
(``asyncio.run``): it creates the store with ``await store_factory()`` inside that loop,
awaits the body under an overall timeout, runs the finalizers the body registered with
:func:`add_finalizer`, and always closes the store (``await store.close()``), also when
the body failed or timed out.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

DEFAULT_TIMEOUT = float(os.environ.get("KCORE_CONFORMANCE_TIMEOUT", "60"))
"""Seconds one test may take, body and finalizers together (``$KCORE_CONFORMANCE_TIMEOUT``)."""

CLOSE_TIMEOUT = 15.0
"""Seconds the finalizers, and then each resource's ``close()``, get at least after the body."""

STORE_RESOURCES: Mapping[str, str] = {"store": "store_factory"}
"""Parameter name -> factory fixture: what :func:`async_test` builds by default."""

_finalizers: contextvars.ContextVar[list[Callable[[], Awaitable[Any]]]] = contextvars.ContextVar(
    "kcore_conformance_finalizers"
)

F = TypeVar("F", bound=Callable[..., Any])


class AsyncTestTimeout(AssertionError):
    """An async conformance test did not finish in time: a call or a watch hung."""


def add_finalizer(finalizer: Callable[[], Awaitable[Any]]) -> None:
    """Run ``await finalizer()`` after the current test's body, before its resources are
    closed, in the test's event loop; finalizers run last-registered first, also when the
    body failed. Call it only from the body of an :func:`async_test` test."""
    try:
        _finalizers.get().append(finalizer)
    except LookupError:
        raise RuntimeError("add_finalizer() called outside an @async_test test") from None


def async_test(
    fn: F | None = None,
    *,
    timeout: float | None = None,
    resources: Mapping[str, str] = STORE_RESOURCES,
) -> Any:
    """Make the coroutine method ``fn`` a synchronous pytest test (see the module docstring).

    ``resources`` maps a parameter name of ``fn`` to the fixture giving an async factory of
    that resource (default ``{"store": "store_factory"}``); each resource ``fn`` asks for is
    created in the test's loop and closed after it. ``timeout`` (default
    :data:`DEFAULT_TIMEOUT`) bounds the whole body; exceeding it fails the test with
    :class:`AsyncTestTimeout` and the traceback of the call that hung.
    """
    if fn is None:
        return functools.partial(async_test, timeout=timeout, resources=resources)
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"@async_test needs an 'async def' function, got {fn!r}")

    params = list(inspect.signature(fn).parameters.values())
    wanted = {
        name: factory for name, factory in resources.items() if name in (p.name for p in params)
    }
    # The wrapper's signature is what pytest reads to choose the fixtures: the resources
    # are replaced by their factory fixtures, everything else is passed through.
    outer: list[inspect.Parameter] = []
    for p in params:
        if p.name in wanted:
            continue
        outer.append(p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD))
    names = {p.name for p in outer}
    for factory in wanted.values():
        if factory not in names:
            outer.append(inspect.Parameter(factory, inspect.Parameter.POSITIONAL_OR_KEYWORD))
            names.add(factory)
    passthrough = [p.name for p in params if p.name not in wanted]

    def wrapper(*args: Any, **kwargs: Any) -> None:
        __tracebackhide__ = True
        bound = inspect.Signature(outer).bind(*args, **kwargs)
        budget = DEFAULT_TIMEOUT if timeout is None else timeout
        asyncio.run(_run(fn, dict(bound.arguments), wanted, passthrough, budget))

    wrapper.__signature__ = inspect.Signature(outer)  # type: ignore[attr-defined]
    # Copy the identity and the marks, but not ``__wrapped__``: pytest would follow it to
    # the coroutine's own signature and pytest-asyncio to the coroutine function.
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(wrapper, attr, getattr(fn, attr))
    wrapper.__dict__.update({k: v for k, v in fn.__dict__.items() if k != "__wrapped__"})
    wrapper.__kcore_async_test__ = fn  # type: ignore[attr-defined]
    return wrapper


async def _run(
    fn: Callable[..., Awaitable[Any]],
    values: dict[str, Any],
    wanted: Mapping[str, str],
    passthrough: list[str],
    budget: float,
) -> None:
    __tracebackhide__ = True
    finalizers: list[Callable[[], Awaitable[Any]]] = []
    _finalizers.set(finalizers)
    made: dict[str, Any] = {}
    error: BaseException | None = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    body_timeout = asyncio.timeout_at(deadline)
    try:
        async with body_timeout:
            for name, factory in wanted.items():
                made[name] = await values[factory]()
            await fn(**{n: values[n] for n in passthrough}, **made)
    except TimeoutError as exc:
        if body_timeout.expired():
            error = AsyncTestTimeout(
                f"{fn.__qualname__} did not finish within {budget:g} s: a store call or a "
                "watch hung (the traceback above shows where it was waiting)"
            )
            error.__cause__ = exc
        else:
            error = exc
    except BaseException as exc:
        error = exc

    steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("the test's finalizers", lambda: _run_finalizers(finalizers))
    ]
    steps += [(f"{name}.close()", functools.partial(_close, made[name])) for name in reversed(made)]
    for what, step in steps:
        try:
            async with asyncio.timeout(max(deadline - loop.time(), CLOSE_TIMEOUT)):
                await step()
        except TimeoutError:
            failure: BaseException = AsyncTestTimeout(f"{what} did not finish in time")
        except Exception as exc:
            failure = exc
        else:
            continue
        if error is None:
            error = failure
        else:
            error.add_note(f"after the failure, {what} failed too: {failure!r}")
    if error is not None:
        raise error


async def _run_finalizers(finalizers: list[Callable[[], Awaitable[Any]]]) -> None:
    """Run every finalizer; raise the first failure once all have run."""
    first: BaseException | None = None
    while finalizers:
        finalizer = finalizers.pop()
        try:
            await finalizer()
        except Exception as exc:
            first = first or exc
    if first is not None:
        raise first


async def _close(resource: Any) -> None:
    close = getattr(resource, "close", None)
    if close is not None:
        result = close()
        if inspect.isawaitable(result):
            await result


__all__ = ["DEFAULT_TIMEOUT", "AsyncTestTimeout", "add_finalizer", "async_test"]
