"""The trio main, in small modules (hypercorn's ``trio/run.py`` wiring is the model).

serve.py     run(): the nurseries, the listeners, the drain, systemd's READY/STOPPING
compose.py   settings -> one frozen object graph (clients, caches, guard, store, turn)
jobs.py      background work beside the turns, one ``every`` loop for all of it
exports.py   state /metrics reads at scrape time
listener.py  the hypercorn config of one listener
"""

from __future__ import annotations

from daemon.runtime.compose import Caches as Caches
from daemon.runtime.compose import Graph as Graph
from daemon.runtime.compose import Observability as Observability
from daemon.runtime.compose import build_guard as build_guard
from daemon.runtime.compose import compose as compose
from daemon.runtime.serve import Running as Running
from daemon.runtime.serve import run as run
