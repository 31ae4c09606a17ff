"""Unit tests run generated host scripts with this machine's `sh`: keep them off its /run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelops import changes


@pytest.fixture(autouse=True)
def _apply_lock_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The apply script's shared lock (changes.APPLY_LOCK) in the test's own directory."""
    monkeypatch.setattr(changes, "APPLY_LOCK", str(tmp_path / "tunnelops.lock.apply"))
