"""The container memory limit gauge: cgroup v2 and v1 files, "no limit" in both spellings."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from xrouter_common.memory_limit import MemoryLimitCollector, memory_limit


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")


@pytest.mark.parametrize(("relative", "text", "expected"), [
    ("memory.max", "2147483648\n", 2147483648),
    ("memory.max", "max\n", None),
    ("memory/memory.limit_in_bytes", "1073741824\n", 1073741824),
    ("memory/memory.limit_in_bytes", "9223372036854771712\n", None),  # v1's "unlimited"
    ("memory/memory.limit_in_bytes", "garbage\n", None),
])
def test_the_limit_is_read_from_either_cgroup_version(tmp_path: Path, relative: str, text: str,
                                                      expected: int | None) -> None:
    _write(tmp_path / relative, text)
    assert memory_limit(tmp_path) == expected


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert memory_limit(tmp_path) is None


def test_the_gauge_is_exported_only_when_a_limit_is_known(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    registry.register(MemoryLimitCollector(tmp_path))
    assert b"xrouter_process_memory_limit_bytes" not in generate_latest(registry)
    _write(tmp_path / "memory.max", "536870912\n")
    assert b"xrouter_process_memory_limit_bytes 5.36870912e+08" in generate_latest(registry)
