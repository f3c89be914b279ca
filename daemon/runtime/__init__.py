"""The trio main, in small modules (hypercorn's ``trio/run.py`` wiring is the model).

serve.py     run(): the nurseries, the listeners, the drain
compose.py   settings -> the object graph (clients, caches, the guard)
jobs.py      background work beside the turns (reaper, store upkeep, warm-ups)
exports.py   state /metrics reads at scrape time
listener.py  the hypercorn config of one listener
"""

from __future__ import annotations

from daemon.runtime.compose import Caches as Caches
from daemon.runtime.compose import Observability as Observability
from daemon.runtime.compose import Upstreams as Upstreams
from daemon.runtime.compose import build_caches as build_caches
from daemon.runtime.compose import build_guard as build_guard
from daemon.runtime.compose import build_upstreams as build_upstreams
from daemon.runtime.compose import webhook_body_limit as webhook_body_limit
from daemon.runtime.exports import cache_lookups as cache_lookups
from daemon.runtime.serve import Running as Running
from daemon.runtime.serve import run as run
