"""The CI rule for skips (tests/support/ci_skips.py), proved on real inner pytest runs."""

from __future__ import annotations

import pytest
from support.ci_skips import PREFIX, ci_enabled

# Every way a test can end up skipped, one passing test, and one expected failure.
SKIPPING = '''
import pytest

@pytest.fixture
def model():
    pytest.skip("model parts not installed")

@pytest.mark.skip(reason="unconditional mark")
def test_marked():
    pass

@pytest.mark.skipif(True, reason="chromium is not installed")
def test_skipif():
    pass

def test_body():
    pytest.skip("speech clip missing")

def test_fixture(model):
    pass

def test_importorskip():
    pytest.importorskip("no_such_module_streamcap_test")

def test_passes():
    pass

@pytest.mark.xfail(strict=True, reason="known bug")
def test_xfail():
    assert False
'''

MODULE_SKIP = '''
import pytest

pytest.skip("obs is not installed", allow_module_level=True)

def test_never_collected():
    pass
'''


def run_inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
              ci: str | None) -> pytest.RunResult:
    """Run the two modules above in a fresh pytest with the plugin and ``CI`` as given."""
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_skipping=SKIPPING, test_module_skip=MODULE_SKIP)
    # A failed collection stops a run; go on here so that one run shows every kind.
    return pytester.runpytest_inprocess("-p", "support.ci_skips", "-rA", "-p", "no:cacheprovider",
                                        "--continue-on-collection-errors")


def test_every_kind_of_skip_fails_under_ci(pytester: pytest.Pytester,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With CI=true, mark, skipif, body, fixture, importorskip and module skips all fail and
    name their reason; a passing test passes and an xfail stays an xfail."""
    result = run_inner(pytester, monkeypatch, "true")
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) == 0, outcomes
    assert outcomes["passed"] == 1 and outcomes["xfailed"] == 1, outcomes
    # Skips while setting a test up (marks, fixtures) and while collecting are errors; those
    # in the body are failures.
    assert outcomes["failed"] == 2 and outcomes["errors"] == 4, outcomes
    assert result.ret != 0
    summary = [ln for ln in result.outlines if ln.startswith(("FAILED ", "ERROR "))]
    assert len(summary) == 6, summary
    for reason in ("unconditional mark", "chromium is not installed", "speech clip missing",
                   "model parts not installed", "could not import 'no_such_module_streamcap_test'",
                   "obs is not installed"):
        assert any(f"{PREFIX}: Skipped: {reason}" in ln for ln in summary), reason


def test_skips_stay_skips_outside_ci(pytester: pytest.Pytester,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CI (unset, empty or false) the same modules give skips, not failures."""
    for ci in (None, "", "false", "0"):
        result = run_inner(pytester, monkeypatch, ci)
        outcomes = result.parseoutcomes()
        assert outcomes["skipped"] == 6 and outcomes["passed"] == 1, (ci, outcomes)
        assert "failed" not in outcomes and "errors" not in outcomes, (ci, outcomes)
        assert result.ret == 0, ci
        assert PREFIX not in result.stdout.str()


@pytest.mark.parametrize(
    ("value", "on"),
    [("true", True), ("TRUE", True), (" true\n", True), ("1", True), ("yes", True),
     ("", False), ("false", False), ("0", False), ("no", False), ("truest", False),
     ("\x00true", False)],
)
def test_ci_enabled_reads_the_ci_variable(value: str, on: bool) -> None:
    """Only true/1/yes (any case, surrounding blanks ignored) switch the rule on."""
    assert ci_enabled({"CI": value}) is on


def test_ci_enabled_without_the_variable_is_off() -> None:
    """No CI variable at all means a developer's run: skips stay skips."""
    assert ci_enabled({}) is False
