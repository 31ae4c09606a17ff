"""Unit tests run generated host scripts with this machine's `sh`: keep them off its /run and
/var/lib (the locks, guard markers and snapshots, tunnelops's records of what it made)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelops import changes
from tunnelops.backends import originals


@pytest.fixture(autouse=True)
def _host_state_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every host path the scripts write to, in the test's own directory."""
    state = tmp_path / "host-state"
    monkeypatch.setattr(changes, "APPLY_LOCK", str(state / "tunnelops.lock.apply"))
    monkeypatch.setattr(changes, "LOCK_FILE", str(state / "tunnelops.lock"))
    monkeypatch.setattr(changes, "GUARD_DIR", str(state / "run"))
    monkeypatch.setattr(changes, "SNAPSHOT_DIR", str(state / "snapshots"))
    monkeypatch.setattr(originals, "RECORDS", str(state / "created"))
    monkeypatch.setattr(originals, "ORIG", str(state / "orig"))
    state.mkdir()
