"""Walks over a blueprint's steps as a directed graph of step ids: what a step reaches, the
cycles, a topological order, and each step's ancestors. Pure; used by ``blueprint.py``."""

import heapq
from collections.abc import Callable, Iterable


def reach(start: str, nexts: Callable[[str], Iterable[str]]) -> frozenset[str]:
    """Every node reachable from ``start`` (not ``start`` itself unless on a cycle)."""
    seen: set[str] = set()
    stack = list(nexts(start))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(nexts(node))
    return frozenset(seen)


def cycles(nodes: list[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one node, in node order.

    Each cycle starts at its component's earliest node and follows edges in their listed order
    (the shortest way back, by breadth-first search).
    """
    position = {node: n for n, node in enumerate(nodes)}
    reached = {node: reach(node, edges.__getitem__) for node in nodes}
    component: dict[str, int] = {}
    for node in nodes:
        if node not in component:
            for member in {m for m in reached[node] if node in reached[m]} | {node}:
                component[member] = position[node]
    groups: dict[int, list[str]] = {}
    for node in nodes:
        groups.setdefault(component[node], []).append(node)
    cycles: list[list[str]] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        start = min(members, key=position.__getitem__)
        inside = set(members)
        back: dict[str, str] = {}
        frontier = [start]
        found: str | None = None
        while frontier and found is None:
            following: list[str] = []
            for node in frontier:
                for nxt in edges[node]:
                    if nxt == start:
                        found = node
                        break
                    if nxt in inside and nxt not in back:
                        back[nxt] = node
                        following.append(nxt)
                if found is not None:
                    break
            frontier = following
        assert found is not None
        path = [found]
        while path[-1] != start:
            path.append(back[path[-1]])
        cycles.append(path[::-1])
    return cycles


def topological(nodes: list[str], waits: dict[str, list[str]]) -> tuple[str, ...]:
    """Nodes after everything they wait for; ties keep blueprint order (the graph is acyclic)."""
    position = {node: n for n, node in enumerate(nodes)}
    blocking = {node: len(set(waits[node])) for node in nodes}
    unblocks: dict[str, list[str]] = {node: [] for node in nodes}
    for node in nodes:
        for before in set(waits[node]):
            unblocks[before].append(node)
    ready = [(position[node], node) for node in nodes if blocking[node] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, node = heapq.heappop(ready)
        order.append(node)
        for after in unblocks[node]:
            blocking[after] -= 1
            if blocking[after] == 0:
                heapq.heappush(ready, (position[after], after))
    return tuple(order)


def ancestors(
    order: tuple[str, ...],
    deps: dict[str, tuple[str, ...]],
    routers: dict[str, tuple[str, ...]],
) -> dict[str, frozenset[str]]:
    """Steps whose outputs exist whenever each step runs (see DESIGN §4)."""
    ancestors: dict[str, frozenset[str]] = {}
    for s in order:
        found: set[str] = set()
        if routers[s]:
            found = set.intersection(*(set(ancestors[r]) for r in routers[s]))
        for d in deps[s]:
            found |= ancestors[d] | {d}
        ancestors[s] = frozenset(found)
    return ancestors
