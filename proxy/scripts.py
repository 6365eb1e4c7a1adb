"""Lua scripts, kept as `.lua` files beside the code that runs them.

A script lives in the `scripts/` folder of its package
(`proxy/orders/scripts/transition.lua`) and ships with it as package data.
It opens with named locals for its keys and arguments
(`local order_key = KEYS[1]`), and pulls in shared fragments by name, each
once, the way arq keeps its scripts as named units:

    --!include reindex                 the same folder: orders/scripts/reindex.lua
    --!include accounts.move_money     another package's: accounts/scripts/move_money.lua

Facts that Python owns (the state table, the final statuses, the working
sets) are rendered in where a script writes `{{ NAME }}`, from the values
its caller passes, as Lua literals made by `lua`. A name without a value is
an error, never an empty string.

`source` reads, includes and renders a script once per process; `register`
makes it a `Script`, run by SHA (EVALSHA) and loaded into a server that
does not know it yet.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from proxy.store import Store, single

_INCLUDE = re.compile(r"^--!include[ \t]+([\w.]+)[ \t]*$", re.MULTILINE)
_VALUE = re.compile(r"\{\{ *(\w+) *\}\}")


def lua(value: object) -> str:
    """A Python value as a Lua literal: text, numbers, booleans, lists
    (arrays), mappings and dataclasses (tables), sets (tables of `true`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
        return f"'{escaped}'"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return "{" + ",".join(f"[{lua(k)}]={lua(v)}" for k, v in value.items()) + "}"
    if isinstance(value, frozenset | set):
        return "{" + ",".join(f"[{lua(k)}]=true" for k in sorted(value)) + "}"
    if isinstance(value, list | tuple):
        return "{" + ",".join(lua(v) for v in value) + "}"
    raise TypeError(f"no Lua literal for {type(value).__name__}")


def _read(package: str, name: str) -> str:
    return resources.files(package).joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")


def _where(package: str, name: str) -> tuple[str, str]:
    """Where an included name lives: "reindex" beside the includer,
    "accounts.move_money" in proxy/accounts/scripts."""
    folder, _, base = name.rpartition(".")
    return (f"proxy.{folder}", base) if folder else (package, base)


def _assembled(package: str, name: str, included: set[tuple[str, str]]) -> str:
    def include(match: re.Match[str]) -> str:
        where = _where(package, match.group(1))
        if where in included:
            return f"-- ({match.group(1)}: included above)"
        included.add(where)
        return _assembled(*where, included)

    return _INCLUDE.sub(include, _read(package, name))


@functools.cache
def _rendered(package: str, name: str, values: tuple[tuple[str, str], ...]) -> str:
    given = dict(values)

    def value(match: re.Match[str]) -> str:
        if match.group(1) not in given:
            raise LookupError(f"{package}: scripts/{name}.lua wants a value for {match.group(0)}")
        return given[match.group(1)]

    return _VALUE.sub(value, _assembled(package, name, {(package, name)}))


def source(package: str, name: str, values: Mapping[str, str] | None = None) -> str:
    """The script `name` of `package`, its fragments included and `values` rendered in."""
    return _rendered(package, name, tuple(sorted((values or {}).items())))


class Script:
    """A script, ready to call: `await script(keys=[...], args=[...])`.

    On one server it is sent as EVALSHA straight through the client's
    `execute_command` (redis-py's `AsyncScript` adds a deprecation wrapper
    and an import to every call), and loaded once when the server answers
    NOSCRIPT (a restart, SCRIPT FLUSH); on a Redis Cluster, redis-py's own
    `AsyncScript` runs it, which knows where to load it."""

    __slots__ = ("source", "sha", "_single", "_cluster")

    def __init__(self, redis: Store, source: str) -> None:
        self.source = source
        self._cluster: AsyncScript = redis.register_script(source)
        self.sha: str = self._cluster.sha
        client = single(redis)
        self._single: Callable[..., Awaitable[Any]] | None = None if client is None else client.execute_command

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        execute = self._single
        if execute is None:
            return await self._cluster(keys=keys, args=args)
        try:
            return await execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await execute("SCRIPT LOAD", self.source)
            return await execute("EVALSHA", self.sha, len(keys), *keys, *args)


def register(redis: Store, package: str, name: str, values: Mapping[str, str] | None = None) -> Script:
    """The script `name` of `package`, ready to call (`Script`)."""
    return Script(redis, source(package, name, values))
