"""The availability probe's figures, from samples (no cloud needed)."""

from __future__ import annotations

import json

from dockyard.deploy.ops.probe import Sample, summarise


def samples(api: str, pattern: str, step: float = 1.0) -> list[Sample]:
    """One poll per ``step`` seconds: '+' answered, '-' did not."""
    return [Sample(api, i * step, c == "+") for i, c in enumerate(pattern)]


def test_an_api_that_always_answered_was_never_unavailable():
    report = summarise(samples("image", "+++++"), wall_s=5.0, apis=("image",))
    f = report.apis["image"]
    assert (f.polls, f.failed, f.unavailable_s, f.outages) == (5, 0, 0.0, 0)
    assert report.all_down_s == 0.0


def test_an_outage_lasts_from_its_first_failed_poll_to_the_next_answer():
    report = summarise(samples("image", "++---++--+"), wall_s=10.0, apis=("image",))
    f = report.apis["image"]
    assert f.outages == 2
    assert f.failed == 5
    assert f.unavailable_s == 3.0 + 2.0
    assert f.longest_outage_s == 3.0


def test_an_outage_still_open_at_the_end_runs_to_the_end():
    report = summarise(samples("compute", "++--"), wall_s=6.0, apis=("compute",))
    assert report.apis["compute"].unavailable_s == 4.0


def test_all_down_at_once_is_the_overlap_of_every_apis_outages():
    # identity down 2..5, image down 4..8: both down 4..5 only.
    polls = samples("identity", "++---+++++") + samples("image", "++++----++")
    report = summarise(polls, wall_s=10.0, apis=("identity", "image"))
    assert report.apis["identity"].unavailable_s == 3.0
    assert report.apis["image"].unavailable_s == 4.0
    assert report.all_down_s == 1.0


def test_apis_down_at_different_times_were_never_all_down():
    polls = samples("identity", "+--+++++") + samples("image", "+++++--+")
    assert summarise(polls, wall_s=8.0, apis=("identity", "image")).all_down_s == 0.0


def test_the_report_reads_and_serialises():
    report = summarise(samples("image", "+-+"), wall_s=3.0, apis=("image",))
    text = "\n".join(report.lines())
    assert "image" in text and "unavailable    1.0 s in 1 outage(s)" in text
    assert json.loads(report.to_json())["apis"]["image"]["failed"] == 1
