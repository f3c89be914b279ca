"""Per-user limits and the daemon's daily budgets (base.py says what they are and why).

The public surface, pinned by tests/unit/test_limits.py: the verdicts and protocols, and the
in-memory implementations (one host). A shared backend (Redis, issue 13) implements the same
two protocols.
"""

from daemon.limits.base import ALLOWED as ALLOWED
from daemon.limits.base import Budget as Budget
from daemon.limits.base import Limit as Limit
from daemon.limits.base import Upstream as Upstream
from daemon.limits.base import UserLimits as UserLimits
from daemon.limits.base import Verdict as Verdict
from daemon.limits.base import utc_day as utc_day
from daemon.limits.memory import MemoryBudget as MemoryBudget
from daemon.limits.memory import MemoryUserLimits as MemoryUserLimits
