"""Safety (README "Safety"), against its own lab instance "labcu" (index 2).

Clean undo: teardown puts each host back as it was (its keys kept unless
`--purge-keys`), and a second teardown changes nothing.

What the modules of the Safety promises share (the lab instance, run, state): safety_env.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.lab.safety_env import (
    converged,
    fresh,
    lab_fixtures,
    run,
    state,
    state_diff,
)
from tunnelops.lab import Lab
from tunnelops.lab.topology import HOSTS

pytestmark = pytest.mark.lab

labs, pristine = lab_fixtures("labcu", 2)


# ============================================================================ 7. clean undo
def test_teardown_puts_each_host_back_as_it_was(labs: Lab,
                                                pristine: dict[str, dict[str, str]],
                                                lab_report: Callable[[str], None]) -> None:
    fresh(labs, pristine)
    up = converged(labs)
    assert up.changed() > 0
    for role in HOSTS:  # the control: the snapshot does see what tunnelops made
        assert len(state_diff(pristine[role], state(labs, role))) > 5, role

    down = run(labs, "teardown")
    assert down.ok and down.changed() > 0, down
    keys = {"stat /etc/wireguard/wg0.key", "hash /etc/wireguard/wg0.key",
            "stat /etc/wireguard/wg0.pub", "hash /etc/wireguard/wg0.pub"}
    for role in HOSTS:
        assert set(state_diff(pristine[role], state(labs, role))) == keys, role

    again = run(labs, "teardown")
    assert again.ok and again.changed() == 0, again

    purge = run(labs, "teardown", purge_keys=True)
    assert purge.ok and purge.changed() > 0, purge
    for role in HOSTS:
        assert state_diff(pristine[role], state(labs, role)) == {}, role

    # and straight from a bootstrapped site, keys and all
    converged(labs)
    purge = run(labs, "teardown", purge_keys=True)
    assert purge.ok, purge
    for role in HOSTS:
        assert state_diff(pristine[role], state(labs, role)) == {}, role
    assert run(labs, "teardown", purge_keys=True).changed() == 0
    lab_report(f"bootstrap {up.seconds:.1f} s, teardown {down.seconds:.1f} s, "
               f"teardown --purge-keys {purge.seconds:.1f} s")
