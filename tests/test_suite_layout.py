"""The suite's own plumbing: tests that share exports must land on one worker."""

from __future__ import annotations

import pytest


def test_xdist_groups_reach_the_scheduler(request) -> None:
    """pytest-xdist's loadgroup marks a grouped test by suffixing its node id with "@group". pytest 9.2 ignores the
    suffix (Node.nodeid reads `_id`), which silently spread every group over both workers, so each exported the same
    models again; constraints.txt pins pytest 8.4 for that reason."""
    if not request.config.getoption("loadgroup", default=False):
        pytest.skip("not running under --dist loadgroup")
    grouped = [item for item in request.session.items if item.get_closest_marker("xdist_group")]
    assert grouped
    assert all("@" in item.nodeid for item in grouped), grouped[0].nodeid
