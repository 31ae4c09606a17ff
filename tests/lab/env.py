"""What lab test modules share: a shell on a lab host (no SSH), the VPS's SSH limiter made to
forget us, and a bootstrapped site to verify and repair (`SiteEnv`), with its module fixture
body `bootstrapped()` (tests/conftest.py's `own_lab` underneath: fresh, up, down at the end).

Tests open more SSH connections a minute than the product's VPS firewall allows one address
(3 at once, then 9 a minute): before a bootstrap or a CLI run the limiter's memory of the
laptop is cleared, the equivalent of waiting a minute.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from tests.conftest import own_lab
from tunnelops import commands, verify
from tunnelops.inventory.read import load
from tunnelops.lab import Lab, Topology
from tunnelops.model.site import Site
from tunnelops.remote import Remote, Transcript
from tunnelops.report import RunReport
from tunnelops.verify import VerifyReport

E = TypeVar("E", bound="SiteEnv")


def sh(lab: Lab, role: str, script: str, *, user: str | None = None, check: bool = True,
       input: bytes | None = None, timeout: float = 60) -> str:
    """A shell script inside a lab host, without SSH: its stdout (fails the test if it fails,
    unless check=False)."""
    res = lab.exec(role, ["sh", "-c", script], user=user, check=False, input=input,
                   timeout=timeout)
    assert not check or res.returncode == 0, f"{role}: {script}: {res.stderr.decode()}"
    return res.stdout.decode()


def forget_ssh_rate(lab: Lab) -> None:
    """The VPS's SSH rate limiter forgets our address (as a minute's wait would)."""
    sh(lab, "vps", "nft flush set inet tunnelops-host ssh_new4 2>/dev/null || true")


def remotes(site: Site, transcript: Transcript | None = None) -> dict[str, Remote]:
    return {role: Remote(str(host), ssh_config=site.ssh_config, known_hosts=site.known_hosts,
                         transcript=transcript)
            for role, host in (("vps", site.vps.host), ("home", site.homes[0].host))}


class SiteEnv:
    """A lab with its site: bootstrap and teardown as the commands do, verify over one SSH
    connection per host reused for the whole module."""

    def __init__(self, lab: Lab, guard_seconds: int | None = None) -> None:
        self.lab = lab
        self.guard_seconds = guard_seconds
        self.out = io.StringIO()
        self.remotes: dict[str, Remote] = {}

    @property
    def site(self) -> Site:
        return load(self.lab.inventory)

    def sh(self, role: str, script: str, user: str | None = None) -> str:
        return sh(self.lab, role, script, user=user)

    def forget_ssh_rate(self) -> None:
        forget_ssh_rate(self.lab)

    def options(self, out: io.StringIO) -> commands.Options:
        extra = {"guard_seconds": self.guard_seconds} if self.guard_seconds else {}
        return commands.Options(inventory_dir=self.lab.inventory_dir, site=self.lab.topo.name,
                                console=Console(file=out, width=200), **extra)

    def bootstrap(self) -> RunReport:
        self.forget_ssh_rate()
        self.out = io.StringIO()
        report = commands.bootstrap(self.options(self.out), None, None)
        assert report.ok, self.out.getvalue()[-3000:]
        return report

    def teardown(self) -> None:
        self.forget_ssh_rate()
        assert commands.teardown(self.options(io.StringIO())).ok

    def verify(self) -> VerifyReport:
        if not self.remotes:
            self.remotes = remotes(self.site)
        return verify.run(self.site, remotes=self.remotes)

    def wait_healthy(self, timeout: float = 20) -> VerifyReport:
        """Verify until every row passes (a restarted tunnel needs a handshake first)."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.verify()
            if report.ok or time.monotonic() > deadline:
                return report
            time.sleep(1)

    def close(self) -> None:
        for remote in self.remotes.values():
            remote.close()
        self.remotes = {}


def bootstrapped(topo: Topology, inventory_dir: Path | None = None,
                 guard_seconds: int | None = None, kind: type[E] = SiteEnv) -> Iterator[E]:
    """Body of a module fixture: the lab fresh and up, its site bootstrapped once."""
    up = own_lab(topo, inventory_dir)
    env = kind(next(up), guard_seconds)
    try:
        env.bootstrap()
        yield env
    finally:
        env.close()
        up.close()  # the lab down, whatever happened


def failing(report: VerifyReport) -> str:
    return "\n".join(f"{c.id}: {c.measured} | {c.hint}" for c in report.failed)


def rows(site: Site) -> int:
    """How many rows verify shows for the site (every check of its chain)."""
    return len(verify.chain(verify.Ctx(site)))


@dataclasses.dataclass(repr=False)
class Outcome:
    """A run through the command layer: its report, what the console printed, how long."""

    report: RunReport
    output: str  # everything the console printed
    seconds: float

    @property
    def ok(self) -> bool:
        return self.report.ok

    def changed(self, role: str | None = None) -> int:
        return sum(h.count("changed") for r, h in self.report.hosts.items()
                   if role in (None, r))

    def error(self, role: str) -> str:
        return self.report.hosts[role].error or ""

    def notes(self, role: str) -> list[str]:
        return self.report.hosts[role].notes

    def __repr__(self) -> str:  # what an assertion shows: the end of the output
        return "\n" + self.output[-4000:]
