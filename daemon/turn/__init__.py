"""One turn: a user message in, exactly one answer (or one clear apology) out.

The public surface: the runner (``Turn``), what it reports (``TurnReport``), and the
protocols of what it talks to. The modules say how: runner.py runs a turn.
"""

from daemon.turn.plan import MAX_ATTEMPTS as MAX_ATTEMPTS
from daemon.turn.report import TurnReport as TurnReport
from daemon.turn.runner import Turn as Turn
from daemon.turn.upstreams import Agent as Agent
from daemon.turn.upstreams import Speech as Speech
