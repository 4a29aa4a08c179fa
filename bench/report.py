"""What the benchmarks print alike: the machine they ran on, and cProfile summaries."""

from __future__ import annotations

import contextlib
import platform
import pstats
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

__all__ = ["cpu_model", "print_project_functions", "print_hottest_calls"]


def cpu_model() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return cpu


def print_project_functions(stats: pstats.Stats, top: int, digits: int = 2) -> None:
    """The project's own functions (not the venv's, not bench/) by cumulative time."""
    rows = []
    for (file, line, func), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rel = Path(file).resolve()
        if file.endswith(".py") and REPO in rel.parents and ".venv" not in rel.parts and "bench" not in rel.parts:
            rows.append((cumtime, tottime, calls, f"{rel.relative_to(REPO)}:{line} {func}"))
    print("  project functions (cumulative s, own s, calls):")
    for cum, own, calls, where in sorted(rows, reverse=True)[:top]:
        print(f"  {cum:8.{digits}f} {own:8.{digits}f} {calls:8d}  {where}")


def print_hottest_calls(stats: pstats.Stats, top: int, digits: int = 2) -> None:
    """The calls with the most own time, anywhere."""
    print("  hottest calls anywhere (own s, cumulative s, calls):")
    hot = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    for (file, line, func), (_cc, calls, tottime, cumtime, _callers) in hot:
        print(f"  {tottime:8.{digits}f} {cumtime:8.{digits}f} {calls:8d}  {Path(file).name}:{line} {func}")
