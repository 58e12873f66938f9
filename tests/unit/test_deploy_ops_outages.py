"""Which actions of a run an outage of every API came with: a pure function of
the probe's spans and the run's timeline."""

from __future__ import annotations

import math

from dockyard.deploy.ops.outages import action_spans, during


def start(action: str, t: float) -> dict:
    return {"event": "start", "action": action, "t": t}


def end(action: str, t: float) -> dict:
    return {"event": "end", "action": action, "t": t, "result": "ok"}


EVENTS = [
    {"event": "run_start", "t": 0.0},
    start("recreate:rabbitmq", 1.0), end("recreate:rabbitmq", 4.0),
    start("recreate:mariadb", 5.0), end("recreate:mariadb", 9.0),
    start("wait_healthy:mariadb", 9.0), end("wait_healthy:mariadb", 15.0),
    end("job:skipped", 10.0),                       # skipped: it never ran
    start("recreate:keystone", 20.0), end("recreate:keystone", 22.0),
    {"event": "run_end", "t": 23.0},
]


def test_actions_run_from_their_start_to_their_end_and_skipped_ones_not_at_all():
    spans = action_spans(EVENTS)
    assert spans["recreate:mariadb"] == (5.0, 9.0)
    assert "job:skipped" not in spans


def test_an_action_a_killed_run_never_ended_runs_on():
    assert action_spans([start("recreate:nova_api", 3.0)]) == {"recreate:nova_api": (3.0, math.inf)}


def test_an_outage_names_the_actions_it_overlapped_the_longest_overlap_first():
    (outage,) = during([[7.0, 13.0]], EVENTS)
    assert outage.actions == ("wait_healthy:mariadb", "recreate:mariadb")
    assert outage.seconds == 6.0
    assert outage.line().startswith("6.0 s from ") and \
        outage.line().endswith("during wait_healthy:mariadb, recreate:mariadb")


def test_an_outage_between_actions_says_none_was_going_on():
    (outage,) = during([[16.0, 18.0]], EVENTS)
    assert outage.actions == ()
    assert outage.line().endswith("while no action of the run was going on")


def test_at_most_a_few_actions_are_named():
    many = [e for i in range(10) for e in (start(f"a{i}", 0.0), end(f"a{i}", 10.0 + i))]
    (outage,) = during([[0.0, 30.0]], many)
    assert outage.actions == ("a9", "a8", "a7", "a6")
