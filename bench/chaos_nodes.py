"""The crash soak's ``--nodes N``: one node of the cluster ended at a time, and brought back.

Each cycle ends a random node: mostly ``SIGKILL`` (its lease session closes, the others take
its shards over), sometimes ``SIGTERM`` (it hands its shards over, then exits). With other
nodes alive, the node stays down until the database shows every shard owned by another node
(``cluster_shards``): the takeover time, from the signal on. Then it comes back on its own
port, sometimes killed once more within its first second (while it joins and rehydrates).
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

from bench.chaos_load import Settings
from bench.common import log, summary_ms
from bench.nodes import Nodes, wait_balanced, wait_taken_over

TAKEOVER_TIMEOUT = 30.0
"""Seconds a takeover may take before the node is brought back anyway (counted as timed out)."""


class NodeChaos:
    """The cluster under the soak, and the figures of what was done to it."""

    def __init__(self, db: str, settings: Settings, workdir: Path, server_args: list[str]) -> None:
        self.settings = settings
        self.nodes = Nodes(db, settings.nodes, workdir, extra_args=server_args)
        self.kills = {"SIGKILL": 0, "SIGTERM": 0, "while_starting": 0}
        self.takeover_s: dict[str, list[float]] = {"SIGKILL": [], "SIGTERM": []}
        self.takeover_timeouts = 0
        self.ready_s_max = 0.0

    @property
    def urls(self) -> list[str]:
        return self.nodes.urls

    def start(self) -> None:
        """Start every node; wait until each owns its share of the shards."""
        began = time.monotonic()
        self.nodes.start()
        wait_balanced(self.nodes.db, self.urls, 60.0)
        log(f"{len(self.urls)} nodes up in {time.monotonic() - began:.1f}s: {self.urls}")

    def cycle(self, rng: random.Random, early_kills: float) -> str:
        """End one random node and bring it back; what was done, for the log."""
        index = rng.randrange(len(self.urls))
        how = signal.SIGTERM if rng.random() < self.settings.sigterm_share else signal.SIGKILL
        url = self.urls[index]
        began = time.monotonic()
        self.nodes.end(index, how)
        self.kills[how.name] += 1
        took: float | None = None
        if len(self.urls) > 1:
            took = wait_taken_over(self.nodes.db, url, began, TAKEOVER_TIMEOUT)
            if took is None:
                self.takeover_timeouts += 1
            else:
                self.takeover_s[how.name].append(took)
        if rng.random() < early_kills:
            early = self.nodes.spawn_node(index)
            time.sleep(rng.uniform(0.05, 1.0))
            early.proc.kill()
            early.proc.wait(30)
            self.kills["while_starting"] += 1
        began = time.monotonic()
        self.nodes.servers[index] = self.nodes.start_node(index)
        self.ready_s_max = max(self.ready_s_max, time.monotonic() - began)
        shown = "timed out" if took is None and len(self.urls) > 1 else f"{took or 0:.2f}s"
        return f"node {index} {how.name}, shards taken over in {shown}"

    def stop(self) -> list[int | None]:
        """SIGTERM every node; their exit codes."""
        return self.nodes.stop()

    def kill_all(self) -> None:
        self.nodes.kill_all()

    def figures(self) -> dict[str, Any]:
        """The cluster's part of the soak's JSON line."""
        every = [s for samples in self.takeover_s.values() for s in samples]
        out: dict[str, Any] = {
            "nodes": len(self.urls),
            "kills": dict(self.kills),
            "takeover_timeouts": self.takeover_timeouts,
            "node_cpu_s": [round(cpu, 2) for cpu in self.nodes.cpu_by_node()],
        }
        if len(self.urls) > 1:
            out["takeover_ms"] = summary_ms(every)
            for name, samples in self.takeover_s.items():
                out[f"takeover_ms_{name}"] = summary_ms(samples)
        return out
