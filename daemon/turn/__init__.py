"""One turn: a user message in, exactly one answer (or one clear apology) out.

The public surface: the runner (``Turn``), what it reports (``TurnReport``), and the
protocols of what it talks to. The modules say how: runner.py runs a turn.
"""

from daemon.turn.runner import MAX_ATTEMPTS as MAX_ATTEMPTS
from daemon.turn.runner import Agent as Agent
from daemon.turn.runner import Speech as Speech
from daemon.turn.runner import Turn as Turn
from daemon.turn.runner import TurnReport as TurnReport
