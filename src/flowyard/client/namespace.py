"""API namespaces (``client.jobs`` ...) and the descriptors that turn a described call into a
method: it returns a value on a :class:`Sync` namespace and an awaitable on an :class:`Async`
one, run by the namespace's runner (``flowyard.client.core``).
"""

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, final, overload

from flowyard.client.core import Call, Runner, Wait
from flowyard.client.models import Page

P = ParamSpec("P")
T = TypeVar("T")


@final
class Sync:
    """Marks a namespace whose methods return values."""


@final
class Async:
    """Marks a namespace whose methods return awaitables."""


Mode = TypeVar("Mode", Sync, Async)


class Namespace(Generic[Mode]):
    """A group of API methods (``client.jobs`` ...) bound to one runner."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner


class endpoint(Generic[P, T]):
    """Decorates ``def name(self, ...) -> Call[T]``: the method runs the call it describes.

    On a ``Namespace[Sync]`` the method returns ``T``; on a ``Namespace[Async]`` an awaitable.
    """

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self.build = build
        functools.update_wrapper(self, build)  # type: ignore[arg-type]

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: Namespace[Sync], owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: Namespace[Async], owner: type[Any]) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, obj: Namespace[Any] | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        build, runner = self.build, obj._runner

        @functools.wraps(build)
        def method(*args: Any, **kwargs: Any) -> Any:
            return runner(build(obj, *args, **kwargs))

        return method


class paginate(Generic[P, T]):
    """``iter = paginate(list)``: iterate every item of a list endpoint, following cursors.

    Takes the list method's arguments; pages of 100 are asked for unless ``limit`` is given.
    On a ``Namespace[Sync]`` it returns an iterator, on a ``Namespace[Async]`` an async one.
    """

    def __init__(self, listing: endpoint[P, Page[T]]) -> None:
        self.build = listing.build
        functools.update_wrapper(self, listing.build)  # type: ignore[arg-type]

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: Namespace[Sync], owner: type[Any]) -> Callable[P, Iterator[T]]: ...
    @overload
    def __get__(self, obj: Namespace[Async], owner: type[Any]) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(self, obj: Namespace[Any] | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        build, runner = self.build, obj._runner

        @functools.wraps(build)
        def method(*args: Any, **kwargs: Any) -> Any:
            call = build(obj, *args, **kwargs)
            if "limit" not in kwargs:
                call = call.with_params(limit=100)
            return runner.iterate(call)

        return method


class poll(Generic[P, T]):
    """Decorates ``def name(self, ...) -> Wait[T]``: the method calls until the wait is over.

    On a ``Namespace[Sync]`` the method blocks and returns ``T``; on a ``Namespace[Async]`` it
    returns an awaitable of it.
    """

    def __init__(self, build: Callable[Concatenate[Any, P], Wait[T]]) -> None:
        self.build = build
        functools.update_wrapper(self, build)  # type: ignore[arg-type]

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: Namespace[Sync], owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: Namespace[Async], owner: type[Any]) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, obj: Namespace[Any] | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        build, runner = self.build, obj._runner

        @functools.wraps(build)
        def method(*args: Any, **kwargs: Any) -> Any:
            return runner.poll(build(obj, *args, **kwargs))

        return method
