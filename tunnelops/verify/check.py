"""The check protocol: one row of `verify`, as a small frozen dataclass (its fields are what
it is about: a host, a service, a port) that declares

- `needs(ctx)`: the probes it reads, per host ("vps", "home"; "laptop" for what the laptop
  measures itself). A host that could not be reached skips the check ("not checked: no
  SSH to HOST"), unless the check `tolerates` that host (it says what it can without it);
- `depends(ctx)`: the checks whose failure is its cause: when it fails and one of them
  failed first, its hint is "fix `THAT` first";
- `evaluate(state)`: pure, the Outcome from what was read.

The runner (runner.py) orders the checks, reads everything they need in one script per
host, evaluates them and builds the report. A link of the chain is a module with a
`checks(ctx)` function listing its checks in the order they are shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, TypeVar

from tunnelops.model.site import Site
from tunnelops.probes import Probe, Readings, Uplink

if TYPE_CHECKING:
    from tunnelops.verify.laptop import LaptopState
    from tunnelops.verify.report import Row

T = TypeVar("T")
HOSTS = ("vps", "home")
DEFAULT_WHOAMI_URL = "https://api.ipify.org"


@dataclass(frozen=True)
class Ctx:
    """What the checks are planned from, before anything is read."""

    site: Site
    whoami_url: str = DEFAULT_WHOAMI_URL
    probe_table: str = "tunnelops_probe"  # the temporary nft table counting UDP at home
    # how many homes the whole site has (SITE is one home's view of it when several)
    homes: int = 1

    def dest(self, host: str) -> str:
        return str(self.site.vps.host if host == "vps" else self.site.homes[0].host)


@dataclass(frozen=True)
class Outcome:
    ok: bool | None
    measured: str
    hint: str = ""


def skip(measured: str) -> Outcome:
    return Outcome(None, measured)


@dataclass
class State:
    """What was read, for the checks to evaluate: each host's readings (None: no SSH to it,
    or its script failed), the laptop's own measurements, and the rows so far."""

    ctx: Ctx
    hosts: Mapping[str, Readings | None]
    laptop: LaptopState
    rows: dict[str, Row] = field(default_factory=dict)

    @property
    def site(self) -> Site:
        return self.ctx.site

    def reached(self, host: str) -> bool:
        return self.hosts.get(host) is not None

    def read(self, host: str, probe: Probe[T]) -> T:
        readings = self.hosts.get(host)
        if readings is None:
            raise LookupError(f"{host} was not reached")  # the runner skips such checks
        return readings[probe]

    @property
    def vps_ip(self) -> str | None:
        """The VPS's public address: the inventory's, else its uplink's source address."""
        if self.site.vps.public_ip:
            return str(self.site.vps.public_ip)
        if not self.reached("vps"):
            return None
        return self.read("vps", Uplink()).get("prefsrc")


class Check:
    """A row of verify (see the module's docstring). Subclasses are frozen dataclasses."""

    tolerates: ClassVar[tuple[str, ...]] = ()

    @property
    def id(self) -> str:
        raise NotImplementedError

    def name(self, s: State) -> str:
        raise NotImplementedError

    def needs(self, ctx: Ctx) -> Mapping[str, Sequence[Probe]]:
        return {}

    def depends(self, ctx: Ctx) -> Sequence[Check]:
        return ()

    def evaluate(self, s: State) -> Outcome:
        raise NotImplementedError


# ---------------------------------------------------------------- words shared by checks
def short_key(key: str | None) -> str:
    return f"{key[:8]}…" if key else "(none)"


def ago(seconds: int) -> str:
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
