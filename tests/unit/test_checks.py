"""Check cases, run as data (tests/unit/checks/cases/LINK.json): a fault made in the readings
recorded on a healthy lab, and the rows it must produce (checks/cases.py has the format).
The first broken link must be the fault's own row, with a hint that names the fix."""

from __future__ import annotations

import pytest

from tests.unit.checks import cases
from tunnelops import verify

CASES = cases.load()


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[n for n, _ in CASES])
def test_check_case(case: dict) -> None:
    assert case["expect"], "a case without expectations cannot fail"
    problems = cases.check(case, cases.rows(case))
    assert not problems, "\n".join(problems)


def test_the_expectations_can_fail() -> None:
    """A case that expects the wrong row, or a wrong word, is caught."""
    case = {"patches": [{"host": "home", "probe": "rules", "remove_where": {"src": "192.168.2.2"}}],
            "expect": {"first_failure": "home.rule_to",
                       "rows": {"home.rule_from": {"hint_startswith": "nope"}}}}
    assert len(cases.check(case, cases.rows(case))) == 2


def test_every_check_of_the_site_has_a_case_of_its_own_failure() -> None:
    """Each row of the recorded site is the first failure of some case: a new check comes
    with the case of its own failure."""
    ctx = verify.Ctx(cases.site(), "")
    first = {c["expect"].get("first_failure") for _, c in CASES}
    missing = [c.id for c in verify.chain(ctx) if c.id not in first]
    assert missing == [], missing
