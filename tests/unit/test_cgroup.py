"""The service cgroup's memory limits, read the way systemd writes them (cgroup v2)."""

from __future__ import annotations

from pathlib import Path

from daemon.observe.cgroup import memory_limits


def cgroup_tree(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    proc_file = tmp_path / "cgroup"
    proc_file.write_text(proc)
    group = tmp_path / "fs" / "system.slice" / "wa-agentd.service"
    group.mkdir(parents=True)
    for name, value in files.items():
        (group / name).write_text(value)
    return proc_file, tmp_path / "fs"


def test_memory_high_and_max_of_the_services_cgroup(tmp_path: Path) -> None:
    proc, root = cgroup_tree(
        tmp_path,
        "0::/system.slice/wa-agentd.service\n",
        {"memory.high": "419430400\n", "memory.max": "536870912\n"},
    )
    assert memory_limits(proc, root) == {"high": 419430400, "max": 536870912}


def test_a_limit_set_to_max_is_no_limit(tmp_path: Path) -> None:
    proc, root = cgroup_tree(
        tmp_path, "0::/system.slice/wa-agentd.service\n", {"memory.high": "max\n"}
    )
    assert memory_limits(proc, root) == {}


def test_cgroup_v1_or_no_cgroup_file_gives_nothing(tmp_path: Path) -> None:
    proc, root = cgroup_tree(tmp_path, "4:memory:/x\n1:cpu:/\n", {"memory.high": "1\n"})
    assert memory_limits(proc, root) == {}
    assert memory_limits(tmp_path / "missing", root) == {}
