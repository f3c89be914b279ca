"""The label values the daemon can really give its metrics, read from its code and a scrape,
and the label matchers the rules and the dashboard use, so one can be held to the other.

A matcher on a value the daemon never emits is an alert that cannot fire or a panel that
stays empty, silently (``outcome="bad_sig"``, or an outcome added to the web layer and not
to the alert). Nothing here is a copy of the values:

- labels whose every value a collector exports at each scrape (the limits, the budgets, the
  capacity bounds, the circuits, the cache results, the connections shed) come from a real
  scrape of the daemon (tests/deploy/conftest.py);
- labels of counters that only appear once counted (webhook, turn and retry outcomes, the
  voice replies) come from the daemon's source: the string constants its code binds to the
  name that becomes the label (``answer("unsigned", 401)`` in daemon/web.py, ``report.outcome
  = Outcome.GAVE_UP`` in the turn), read with ``ast``, plus the enums and tuples they are
  built from (the members of the turn's ``Outcome`` and ``VoiceResult`` that its code names;
  ``outcome(RetryOutcome.BUDGET_SPENT)`` in the retry policy: the members of ``RetryOutcome``).
"""

from __future__ import annotations

import ast
import fnmatch
import http
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import daemon
from daemon.instrumentation.events import RetryOutcome
from daemon.model import Kind
from daemon.observe import cgroup

DAEMON = Path(daemon.__file__).parent
_IDENT = re.compile(r"[a-z][a-z0-9_]*")


def modules(*names: str) -> list[Path]:
    """The daemon's source files for ``names`` ("web", "turn", "resilience"): the module
    ``daemon/<name>.py`` and, if it is a package (or becomes one), every file under it."""
    found: list[Path] = []
    for name in names:
        single = DAEMON / f"{name}.py"
        if single.exists():
            found.append(single)
        package = DAEMON / name
        if package.is_dir():
            found.extend(sorted(package.rglob("*.py")))
    assert found, f"no daemon source for {names}"
    return found


def _trees(paths: Iterable[Path]) -> list[ast.Module]:
    return [ast.parse(path.read_text(), str(path)) for path in paths]


def _constant(node: ast.AST | None) -> str | None:
    """A string constant, or an f-string as a glob (``f"limited_{x}"`` -> ``limited_*``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) else "*" for part in node.values
        )
    return None


def _parameters(trees: list[ast.Module], name: str) -> dict[str, int]:
    """Functions and classes defined in ``trees`` with a parameter called ``name``: the
    position a call passes it at (``self`` not counted)."""
    positions: dict[str, int] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                init = next(
                    (
                        f
                        for f in node.body
                        if isinstance(f, ast.FunctionDef) and f.name == "__init__"
                    ),
                    None,
                )
                if init is not None and (at := _position(init, name)) is not None:
                    positions[node.name] = at
            elif (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and (at := _position(node, name)) is not None
            ):
                positions[node.name] = at
    return positions


def _position(function: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> int | None:
    args = [a.arg for a in function.args.posonlyargs + function.args.args]
    if args and args[0] in ("self", "cls"):
        args = args[1:]
    return args.index(name) if name in args else None


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def bound(paths: Iterable[Path], name: str) -> set[str]:
    """String constants the code binds to ``name``: ``name = "x"``, ``obj.name = "x"``,
    ``a, name = y, "x"``, ``f(name="x")``, ``f("x")`` where ``f`` (a function or a class
    defined in ``paths``) takes ``name`` at that position, and ``name("x")`` (a callback
    called ``name``)."""
    trees = _trees(paths)
    positions = _parameters(trees, name)
    values: set[str] = set()

    def add(node: ast.AST | None) -> None:
        if isinstance(node, ast.BoolOp):  # record.outcome or "answered"
            for value in node.values:
                add(value)
        elif isinstance(node, ast.IfExp):
            add(node.body)
            add(node.orelse)
        elif value := _constant(node):  # "" is a default, never a label
            values.add(value)

    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                pairs = [(target, node.value) for target in targets]
                for target, value in list(pairs):  # a, b = x, y
                    if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                        pairs += zip(target.elts, value.elts, strict=False)
                for target, value in pairs:
                    named = target.id if isinstance(target, ast.Name) else None
                    named = target.attr if isinstance(target, ast.Attribute) else named
                    if named == name:
                        add(value)
            elif isinstance(node, ast.Call):
                callee = _callee(node)
                for keyword in node.keywords:
                    if keyword.arg == name:
                        add(keyword.value)
                if callee == name and node.args:
                    add(node.args[0])
                at = positions.get(callee or "")
                if at is not None and at < len(node.args):
                    add(node.args[at])
    return values


def mentioned(paths: Iterable[Path], enum: str) -> set[str]:
    """Values of the members of the ``enum`` class defined in ``paths`` that the code names
    (``report.outcome = Outcome.GAVE_UP``, ``Canned(Outcome.NO_SPEECH, ...)``): a member the
    code never names is never emitted. Member values read like constants (``f"limited_{x}"``
    -> ``limited_*``)."""
    trees = _trees(paths)
    members: dict[str, str] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == enum:
                for item in node.body:
                    if (
                        isinstance(item, ast.Assign)
                        and len(item.targets) == 1
                        and isinstance(item.targets[0], ast.Name)
                        and (value := _constant(item.value)) is not None
                    ):
                        members[item.targets[0].id] = value
    assert members, f"no enum {enum} in {paths}"
    return {
        members[node.attr]
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == enum
        and node.attr in members
    }


def answers(paths: Iterable[Path]) -> dict[str, int]:
    """Webhook outcome -> the HTTP status answered with it: every ``answer("<outcome>",
    <status>, ...)`` in the web layer (the one function that counts a webhook)."""
    found: dict[str, int] = {}
    for tree in _trees(paths):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _callee(node) == "answer" and len(node.args) >= 2:
                outcome, status = node.args[0], node.args[1]
                if (
                    isinstance(outcome, ast.Constant)
                    and isinstance(outcome.value, str)
                    and isinstance(status, ast.Constant)
                    and isinstance(status.value, int)
                ):
                    found[outcome.value] = status.value
    return found


def appended(paths: Iterable[Path], attribute: str) -> set[str]:
    """String constants in the tuples appended to ``<x>.<attribute>``: the turn's
    ``report.failures.append((upstream, "timeout"))``."""
    values: set[str] = set()
    for tree in _trees(paths):
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "append"
                and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == attribute
                and node.args
                and isinstance(node.args[0], ast.Tuple)
            ):
                values.update(
                    v for e in node.args[0].elts if (v := _constant(e)) and _IDENT.fullmatch(v)
                )
    return values


def subscripts(paths: Iterable[Path], attribute: str) -> set[str]:
    """String keys assigned into ``<x>.<attribute>[...]``: ``report.stages["total"] = ...``."""
    values: set[str] = set()
    for tree in _trees(paths):
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if (
                        isinstance(target, ast.Subscript)
                        and isinstance(target.value, ast.Attribute)
                        and target.value.attr == attribute
                        and (key := _constant(target.slice)) is not None
                    ):
                        values.add(key)
    return values


@dataclass
class Emitted:
    """The values one label can take: exact ones, and globs from f-strings."""

    values: set[str] = field(default_factory=set)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and any(fnmatch.fnmatchcase(value, v) for v in self.values)

    def matching(self, pattern: str) -> set[str]:
        regex = re.compile(pattern)
        return {v for v in self.values if "*" not in v and regex.fullmatch(v)}


def turn_outcomes() -> set[str]:
    # The turn sets them; daemon/intake.py decides the per-user limits as a message comes in
    # and the turn reports them. "pending" is only the report's value before it ends.
    paths = modules("turn", "intake")
    return (bound(paths, "outcome") | mentioned(paths, "Outcome")) - {"pending"}


def from_code() -> dict[tuple[str, str], set[str]]:
    """(metric family, label) -> values, for the counters a scrape shows only once counted."""
    outcomes = turn_outcomes()
    statuses = {str(s.value) for s in http.HTTPStatus} | appended(modules("turn"), "failures")
    return {
        ("wa_agentd_webhooks", "outcome"): set(answers(modules("web"))),
        ("wa_agentd_turns", "outcome"): outcomes,
        ("wa_agentd_agent_calls", "outcome"): outcomes,
        ("wa_agentd_stt_seconds", "outcome"): outcomes,
        ("wa_agentd_tts_characters", "outcome"): outcomes,
        ("wa_agentd_turns", "kind"): {kind.value for kind in Kind},
        # report.voice: "none" is not counted (metrics.observe_turn).
        ("wa_agentd_voice_replies", "result"): (
            bound(modules("turn"), "voice") | mentioned(modules("turn"), "VoiceResult")
        )
        - {"none"},
        # The retry loop says what became of a retry in RetryOutcome's words (instrumentation/).
        ("wa_agentd_retries", "outcome"): {o.value for o in RetryOutcome},
        ("wa_agentd_upstream_calls", "status"): statuses,
        # The turn times its stages (_timed(report, "<stage>", ...), report.stages["total"]);
        # a client deeper down reports into them (observe/stages.record("encode", ...)).
        ("wa_agentd_stage_seconds", "stage"): (
            bound(modules("turn", "observe", "speech", "agentforce", "channels"), "stage")
            | subscripts(modules("turn"), "stages")
        ),
        # Absent where the cgroup sets no limit (so, maybe, in the scrape).
        ("wa_agentd_memory_limit_bytes", "limit"): set(cgroup.LIMITS),
    }


def from_scrape(scrape: str) -> tuple[dict[tuple[str, str], set[str]], dict[str, str]]:
    """(family, label) -> values seen, and sample name -> family (``x_total`` -> ``x``)."""
    seen: dict[tuple[str, str], set[str]] = {}
    family_of: dict[str, str] = {}
    for family in text_string_to_metric_families(scrape):
        family_of[family.name] = family.name
        for suffix in ("_total", "_created", "_bucket", "_count", "_sum"):
            family_of[family.name + suffix] = family.name
        for sample in family.samples:
            family_of[sample.name] = family.name
            for label, value in sample.labels.items():
                if label != "le":
                    seen.setdefault((family.name, label), set()).add(value)
    return seen, family_of


def emitted(scrape: str) -> tuple[dict[tuple[str, str], Emitted], dict[str, str]]:
    seen, family_of = from_scrape(scrape)
    table = {key: Emitted(set(values)) for key, values in seen.items()}
    for key, values in from_code().items():
        table.setdefault(key, Emitted()).values.update(values)
    return table, family_of


# -- the matchers a PromQL expression uses ----------------------------------------------------

_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"""(\w+)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


@dataclass(frozen=True)
class Matcher:
    metric: str
    label: str
    op: str
    value: str


def matchers(expr: str) -> Iterator[Matcher]:
    """Every ``metric{label op "value"}`` of ``expr`` (Grafana's ``$variables`` included)."""
    for selector in _SELECTOR.finditer(expr):
        for m in _MATCHER.finditer(selector.group(2)):
            value = m.group(3) if m.group(3) is not None else m.group(4)
            yield Matcher(selector.group(1), m.group(1), m.group(2), value)


def alternatives(pattern: str) -> list[str] | None:
    """Every string a regex of plain names, groups and ``|`` matches (``(a|b)_c`` ->
    ``a_c``, ``b_c``); None when it has any other regex syntax (``4..``)."""
    if not re.fullmatch(r"[\w|()]*", pattern):
        return None

    def parse(text: str, at: int) -> tuple[list[str], int]:
        options: list[str] = []
        current = [""]
        while at < len(text) and text[at] != ")":
            char = text[at]
            if char == "|":
                options += current
                current = [""]
                at += 1
            elif char == "(":
                inner, at = parse(text, at + 1)
                at += 1  # the ")"
                current = [c + i for c in current for i in inner]
            else:
                current = [c + char for c in current]
                at += 1
        return options + current, at

    found, end = parse(pattern, 0)
    return found if end == len(pattern) else None


def top_level(pattern: str) -> list[str]:
    """The regex's alternatives at depth 0 (``4..|5..|timeout`` -> three)."""
    parts, depth, current = [], 0, ""
    for char in pattern:
        if char == "|" and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    return [*parts, current]


# Prometheus' target labels (and Grafana's pickers), not the daemon's.
TARGET_LABELS = frozenset({"job", "instance"})


def problems(
    expr: str, table: dict[tuple[str, str], Emitted], family_of: dict[str, str]
) -> list[str]:
    """Why a matcher of ``expr`` names a label value the daemon cannot give (none: [])."""
    found: list[str] = []
    for m in matchers(expr):
        if m.label in TARGET_LABELS or m.metric == "up":
            continue
        family = family_of.get(m.metric)
        where = f"{m.metric}{{{m.label}{m.op}{m.value!r}}}"
        if family is None:
            found.append(f"{where}: the daemon exposes no {m.metric}")
            continue
        values = table.get((family, m.label))
        if values is None:
            found.append(f"{where}: no label {m.label!r} seen on {family} nor derived from code")
            continue
        if m.op in ("=", "!="):
            missing = [] if m.value in values else [m.value]
        else:
            options = alternatives(m.value)
            if options is not None:
                missing = [o for o in options if o not in values]
            else:  # regex syntax beyond names: each alternative must match something
                missing = [alt for alt in top_level(m.value) if not values.matching(alt)]
        if missing:
            found.append(f"{where}: never emitted: {missing}")
    return found
