"""The availability probe's figures, from samples (no cloud needed), handed over
while it runs and kept on disk, run by run."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from dockyard.deploy.ops.availability import AvailabilityRecord, figures_path
from dockyard.deploy.ops.probe import (APIS, IDENTITY, ApiFigures, AvailabilityProbe, ProbeReport, Sample, combine,
                                     summarise)


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


# -- the figures handed over while the probe runs, and kept on disk ------------------------

class Clock:
    """A clock the test sets."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedProbe(AvailabilityProbe):
    """Asks no cloud: each round, every API answers as ``answers`` says ('+' or '-')."""

    def __init__(self, clock: Clock, answers: str = "+", **options):
        super().__init__({"password": "probe-secret-70"}, clock=clock, **options)
        self.answers = answers
        self._credentials = ("a scripted token", {})     # every API is asked, whatever identity answers

    def _ask(self, api: str) -> bool:
        return self.answers == "+"


def rounds(probe: ScriptedProbe, clock: Clock, times: list[float]) -> None:
    """The probe's rounds, one at each of ``times``, in this thread."""
    clock.now = times[0]
    probe._t0, probe._started_at = clock(), probe.wall_clock()
    for t in times:
        clock.now = t
        probe.poll_once()


def test_the_figures_are_handed_over_after_the_first_round_then_at_most_once_a_second():
    clock, handed = Clock(), []
    probe = ScriptedProbe(clock, on_figures=handed.append, every=1.0)
    rounds(probe, clock, [0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4])
    assert [r.apis["identity"].polls for r in handed] == [1, 4, 7]      # at 0.0, 1.2, 2.4
    assert [r.wall_s for r in handed] == [0.0, 1.2, 2.4]


def test_a_failing_hand_over_does_not_stop_the_polling():
    clock = Clock()

    def disk_full(report: ProbeReport) -> None:
        raise OSError(28, "No space left on device")

    probe = ScriptedProbe(clock, on_figures=disk_full)
    rounds(probe, clock, [0.0, 1.0, 2.0])
    assert len(probe.samples) == 3 * len(APIS) and "No space left" in (probe.publish_error or "")


def record_file(state_dir: Path) -> dict:
    return json.loads(figures_path(state_dir).read_text())


def test_a_killed_run_leaves_its_figures_so_far_marked_partial_without_the_credentials(tmp_path):
    clock = Clock()
    record = AvailabilityRecord.open(tmp_path, "up-1", "run-1", resuming=False, say=print)
    probe = ScriptedProbe(clock, "-", on_figures=record.write)
    rounds(probe, clock, [0.0, 0.5, 1.0, 1.5])
    # Killed here: stop() never runs.
    data = record_file(tmp_path)
    assert data["partial"] is True and data["upgrade"] == "up-1"
    assert [(r["run"], r["partial"]) for r in data["runs"]] == [("run-1", True)]
    assert data["apis"]["compute"]["polls"] == 3 and data["apis"]["compute"]["unavailable_s"] == 1.0
    assert "probe-secret-70" not in figures_path(tmp_path).read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["upgrade-availability.json"]     # no temporary file left


def test_the_run_resuming_the_upgrade_adds_to_its_figures(tmp_path):
    first = AvailabilityRecord.open(tmp_path, "up-1", "run-1", resuming=False, say=print)
    first.write(summarise(samples("image", "++--"), wall_s=4.0, apis=("image",)))          # partial: then killed
    second = AvailabilityRecord.open(tmp_path, "up-1", "run-2", resuming=True, say=print)
    total = second.write(summarise(samples("image", "-+++++"), wall_s=6.0, apis=("image",)), partial=False)
    data = record_file(tmp_path)
    assert data["partial"] is False and second.runs == 2
    assert [(r["run"], r["partial"]) for r in data["runs"]] == [("run-1", True), ("run-2", False)]
    f = data["apis"]["image"]
    # 2 s open at the kill, 1 s at the resumed run's start: two outages, the time between not counted.
    assert (f["polls"], f["failed"], f["outages"], f["unavailable_s"], f["longest_outage_s"]) == (10, 3, 2, 3.0, 2.0)
    assert data["wall_s"] == 10.0 and ProbeReport.from_dict(data) == total


def test_a_new_upgrade_or_a_run_not_resuming_starts_its_figures_afresh(tmp_path):
    AvailabilityRecord.open(tmp_path, "up-1", "run-1", resuming=False, say=print).write(
        summarise(samples("image", "+"), wall_s=1.0, apis=("image",)))
    for upgrade, resuming in (("up-2", True), ("up-1", False)):
        record = AvailabilityRecord.open(tmp_path, upgrade, "run-9", resuming=resuming, say=print)
        assert record.earlier == []


def test_unreadable_figures_are_said_and_replaced(tmp_path):
    figures_path(tmp_path).write_text('{"upgrade": "up-1", "runs": [{"run": "run-1", "partial": true}]}')
    said: list[str] = []
    record = AvailabilityRecord.open(tmp_path, "up-1", "run-2", resuming=True, say=said.append)
    assert record.earlier == [] and "cannot be read" in said[0] and str(figures_path(tmp_path)) in said[0]
    record.write(summarise(samples("image", "+"), wall_s=1.0, apis=("image",)))
    assert [r["run"] for r in record_file(tmp_path)["runs"]] == ["run-2"]


def test_combined_figures_add_up_and_keep_the_longest_outage():
    a = summarise(samples("image", "+---+") + samples("identity", "+---+"), wall_s=5.0, apis=("image", "identity"))
    b = summarise(samples("image", "+-+") + samples("identity", "+++"), wall_s=3.0, apis=("image", "identity"))
    total = combine([a, b])
    assert total.wall_s == 8.0 and total.all_down_s == 3.0
    assert total.apis["image"] == ApiFigures(polls=8, failed=4, unavailable_s=4.0, longest_outage_s=3.0, outages=2)


# -- when every API was down, and what the run was doing then -------------------------------

def test_the_report_keeps_when_every_api_was_down_in_the_hosts_clock():
    polls = samples("identity", "++---+++++") + samples("image", "++++----++")
    report = summarise(polls, wall_s=10.0, apis=("identity", "image"), started_at=1000.0)
    assert report.all_down_at == [[1004.0, 1005.0]]
    again = ProbeReport.from_dict(json.loads(report.to_json()))
    assert again.all_down_at == [[1004.0, 1005.0]]


def test_the_probe_stamps_its_spans_with_the_wall_clock_it_started_at():
    clock = Clock()
    probe = ScriptedProbe(clock, "-", wall_clock=lambda: 5000.0)
    rounds(probe, clock, [0.0, 1.0, 2.0])
    assert probe.figures().all_down_at == [[5000.0, 5002.0]]


def test_figures_of_earlier_versions_without_spans_still_read():
    data = json.loads(summarise(samples("image", "+-+"), wall_s=3.0, apis=("image",)).to_json())
    del data["all_down_at"]
    assert ProbeReport.from_dict(data).all_down_at == []


def test_spans_that_are_not_from_to_pairs_are_refused():
    data = json.loads(summarise(samples("image", "+-+"), wall_s=3.0, apis=("image",)).to_json())
    for bad in ([[3.0, 1.0]], [[1.0]], "soon", [["a", "b"]]):
        data["all_down_at"] = bad
        try:
            ProbeReport.from_dict(data)
        except ValueError as exc:
            assert "all_down_at" in str(exc) or "seconds" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was read")


def test_combined_figures_keep_every_runs_spans():
    one = summarise(samples("image", "+-+"), wall_s=3.0, apis=("image",), started_at=100.0)
    two = summarise(samples("image", "--+"), wall_s=3.0, apis=("image",), started_at=200.0)
    assert combine([one, two]).all_down_at == [[101.0, 102.0], [200.0, 202.0]]


# -- one thread per API ----------------------------------------------------------------------

class ThreadedProbe(AvailabilityProbe):
    """Real threads, scripted answers: identity gives its first token at its
    ``token_from``-th poll; ``compute`` hangs until ``release`` is set; every
    poll counts, and ``identity_polls`` is set at the fifth of identity's."""

    def __init__(self, token_from: int = 1):
        super().__init__({"password": "probe-secret-70"}, interval=0.01)
        self.token_from = token_from
        self.polls = {name: 0 for name in APIS}
        self.release, self.identity_polls = threading.Event(), threading.Event()
        self.compute_asked = threading.Event()

    def _new_token(self) -> bool:
        self.polls[IDENTITY] += 1
        if self.polls[IDENTITY] >= 5:
            self.identity_polls.set()
        if self.polls[IDENTITY] < self.token_from:
            return False
        self._credentials = ("a scripted token", {})
        self._have_token.set()
        return True

    def _query(self, api: str) -> bool:
        self.polls[api] += 1
        if api == "compute":
            self.compute_asked.set()
            self.release.wait(30)
        return True


def test_an_api_that_hangs_does_not_hold_up_the_others():
    probe = ThreadedProbe()
    probe.start()
    try:
        assert probe.compute_asked.wait(30) and probe.identity_polls.wait(30)
        # compute is still in its first poll; identity went on meanwhile.
        hung = [s for s in probe.samples if s.api == "compute"]
        assert hung == [] and probe.polls["compute"] == 1
        assert sum(s.api == IDENTITY for s in probe.samples) >= 5
    finally:
        probe.release.set()
        report = probe.stop()
    assert report.apis["compute"].polls >= 1 and report.apis["compute"].failed == 0


def test_no_api_is_asked_before_the_first_token():
    probe = ThreadedProbe(token_from=3)
    probe.release.set()
    probe.start()
    try:
        assert probe.identity_polls.wait(30)
    finally:
        report = probe.stop()
    first_token = min(s.at for s in probe.samples if s.api == IDENTITY and s.ok)
    assert report.apis[IDENTITY].failed == 2
    assert all(s.at >= first_token for s in probe.samples if s.api != IDENTITY)
    assert all(f.failed == 0 for name, f in report.apis.items() if name != IDENTITY)
