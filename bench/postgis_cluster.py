"""The throwaway PostGIS cluster of the benchmarks: now `twin.store.pgcluster`, re-exported here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twin.store.pgcluster import Cluster, ensure_postgis_installed, free_port, throwaway_cluster  # noqa: E402

__all__ = ["Cluster", "throwaway_cluster", "ensure_postgis_installed", "free_port"]
