"""Install what is missing with the host's package manager (the distribution table's)."""

from __future__ import annotations

from tunnelops.changes import CommandChange, StepPlan
from tunnelops.facts import HostFacts
from tunnelops.steps.context import PlanError


def plan(facts: HostFacts, commands: list[str]) -> StepPlan:
    p = StepPlan("packages")
    missing = [c for c in commands if not facts.has(c)]
    if not missing:
        return p
    distro = facts.distro
    try:
        if distro is None:
            raise KeyError
        pkgs = sorted({distro.packages[c] for c in missing})
    except KeyError:
        raise PlanError(f"no package known for {', '.join(missing)} on {facts.os_pretty}: "
                        "install them by hand, then re-run") from None
    p.changes.append(CommandChange(f"install {' '.join(pkgs)}", distro.install_command(pkgs)))
    return p
