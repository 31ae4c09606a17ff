"""Unit tests run generated host scripts with this machine's `sh`: keep them off its /run and
/var/lib (the locks, guard markers and snapshots, tunnelops's records of what it made)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.shells import SECRET, SHELLS
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


@pytest.fixture(params=SHELLS, ids=[" ".join(s) for s in SHELLS])
def shell(request: pytest.FixtureRequest) -> list[str]:
    return request.param


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path with an etc/ tree, a private key file, and the guard markers inside it."""
    monkeypatch.setattr(changes, "GUARD_DIR", str(tmp_path / "run"))
    monkeypatch.setattr(changes, "LOCK_FILE", str(tmp_path / "tunnelops.lock"))
    monkeypatch.setattr(changes, "SNAPSHOT_DIR", str(tmp_path / "snapshots"))
    monkeypatch.setattr(originals, "RECORDS", str(tmp_path / "var" / "created"))
    monkeypatch.setattr(originals, "ORIG", str(tmp_path / "var" / "orig"))
    (tmp_path / "etc" / "wireguard").mkdir(parents=True)
    key = tmp_path / "etc" / "wireguard" / "wg0.key"
    key.write_text(SECRET + "\n")  # as `wg genkey` writes it
    key.chmod(0o600)
    return tmp_path
