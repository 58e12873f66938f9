"""The run timeline: its lines, reading it back, and the critical path."""

from __future__ import annotations

import json

import pytest

from dockyard.deploy.plan.planner import Action
from dockyard.deploy.execute.timeline import Timeline, critical_path, deps_from_events, durations, load_timeline


def ev(action: str, event: str, t: float, deps=()) -> dict:
    e = {"run": "r", "action": action, "kind": "run_job", "service": "s", "event": event, "t": t}
    if event == "start":
        e["deps"] = list(deps)
    else:
        e["result"] = "ok"
    return e


# A diamond with a long side branch:
#   volume (0-1) -> db (1-4) -> keystone (4-10) -> glance (10-12)
#                          \-> cache (1-2)  (short, independent of keystone)
#   docs (0-20)  (no dependencies: the longest single action)
SYNTHETIC = [
    ev("volume", "start", 0.0), ev("docs", "start", 0.0),
    ev("volume", "end", 1.0),
    ev("db", "start", 1.0, ["volume"]), ev("cache", "start", 1.0, ["volume"]),
    ev("cache", "end", 2.0),
    ev("db", "end", 4.0),
    ev("keystone", "start", 4.0, ["db"]),
    ev("keystone", "end", 10.0),
    ev("glance", "start", 10.0, ["keystone", "cache"]),
    ev("glance", "end", 12.0),
    ev("docs", "end", 20.0),
]


def test_critical_path_follows_the_longest_dependent_chain():
    plan_deps = {"volume": [], "docs": [], "db": ["volume"], "cache": ["volume"], "keystone": ["db"],
                 "glance": ["keystone", "cache"]}
    seconds, chain = critical_path(SYNTHETIC, plan_deps)
    assert chain == ["docs"] and seconds == pytest.approx(20.0)
    without_docs = [e for e in SYNTHETIC if e["action"] != "docs"]
    seconds, chain = critical_path(without_docs, plan_deps)
    assert chain == ["volume", "db", "keystone", "glance"]
    assert seconds == pytest.approx(12.0)


def test_critical_path_reads_deps_from_the_start_lines():
    events = [e for e in SYNTHETIC if e["action"] != "docs"]
    assert deps_from_events(events)["glance"] == ["keystone", "cache"]
    assert critical_path(events) == critical_path(events, deps_from_events(events))
    assert critical_path(events)[1] == ["volume", "db", "keystone", "glance"]


def test_critical_path_ignores_actions_that_did_not_run():
    events = [e for e in SYNTHETIC if e["action"] not in ("docs", "glance")]
    events.append({"run": "r", "action": "glance", "event": "end", "result": "skipped", "t": 10.0})
    seconds, chain = critical_path(events)
    assert chain == ["volume", "db", "keystone"] and seconds == pytest.approx(10.0)
    assert "glance" not in durations(events)
    assert critical_path([]) == (0.0, [])


def test_timeline_writes_one_line_per_event_and_survives_a_torn_line(tmp_path):
    action = Action("job:x", "run_job", "x", "svc", "aio", "never run", deps=("job:w",))
    with Timeline(tmp_path, run_id="run-1") as timeline:
        timeline.run_start(actions=1)
        timeline.action_start(action)
        timeline.action_end(action, "failed", "x exited 1; last log lines:\n      secret-ish detail")
        timeline.run_end("failed", changed=0)
    assert timeline.path == tmp_path / "timeline" / "run-1.jsonl"
    with open(timeline.path, "a") as fh:
        fh.write('{"run": "run-1", "event": "st')          # a run killed mid-line
    events = load_timeline(timeline.path)
    assert [e["event"] for e in events] == ["run_start", "start", "end", "run_end"]
    assert events[1]["deps"] == ["job:w"] and events[1]["kind"] == "run_job" and events[1]["service"] == "svc"
    assert events[2]["error"] == "x exited 1; last log lines:"
    assert all(e["run"] == "run-1" for e in events)
    assert all(json.loads(line) for line in timeline.path.read_text().splitlines()[:4])


def test_each_run_has_its_own_file(tmp_path):
    first, second = Timeline(tmp_path), Timeline(tmp_path, run_id="other")
    first.close(), second.close()
    assert first.run_id != second.run_id
    assert {p.name for p in (tmp_path / "timeline").iterdir()} == {f"{first.run_id}.jsonl", "other.jsonl"}
    with pytest.raises(ValueError):
        first.run_start()
