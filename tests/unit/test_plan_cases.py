"""Plan cases, run as data (tests/unit/plans/cases/*.json: plans/cases.py has the format):
recorded facts of Alpine, Fedora, Debian/Ubuntu and Arch hosts in, the exact changes out.
A converged host must plan nothing at all: the idempotency contract behind `changed=0`."""

from __future__ import annotations

import pytest

from tests.unit.plans import cases

CASES = cases.load()


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[n for n, _ in CASES])
def test_plan_case(case: dict) -> None:
    assert case["expect"], "a case without expectations cannot fail"
    problems = cases.check(case)
    assert not problems, "\n".join(problems)


def test_the_expectations_can_fail() -> None:
    case = {"facts": "alpine-vps-converged", "expect": {"step": {"firewall": ["x"]},
                                                        "error": "nope"}}
    assert cases.check(case)
    assert cases.check({**case, "expect": {"step": {"firewall": ["x"]}}})
