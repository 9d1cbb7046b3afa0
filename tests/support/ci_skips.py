"""A pytest plugin: under ``CI=true`` a skipped test is a failed test.

Rule: when the environment variable ``CI`` is ``true`` (or ``1``/``yes``, any case), every skip
counts as a failure, whatever raised it: a ``skip``/``skipif`` mark, ``pytest.skip()`` in a
test or fixture, ``pytest.importorskip()``, or a whole module skipped at collection. In this
suite only tests of real components skip (a missing clip, program, package or model), and a
pure test has no reason to, so "any skip" is the rule instead of a list of markers that a new
test could forget. ``xfail`` is not a skip and stays as it is. Outside CI, skips stay skips and
``-ra`` lists them.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

PREFIX = "CI=true forbids skips (a real component is missing on this machine)"


def ci_enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether ``CI`` in ``environ`` (default: this process's) asks for the strict rule."""
    env = os.environ if environ is None else environ
    return env.get("CI", "").strip().lower() in ("true", "1", "yes")


def _reason(longrepr: Any) -> str:
    """The reason a skip report gives (its longrepr is ``(path, line, 'Skipped: why')``)."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, line, message = longrepr
        where = f" ({path}:{line + 1})" if isinstance(line, int) else f" ({path})"
        return f"{message}{where}"
    return str(longrepr)


def _fail(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.longrepr = f"{PREFIX}: {_reason(report.longrepr)}"
    report.outcome = "failed"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and ci_enabled():
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if report.skipped and ci_enabled():
        _fail(report)
