"""The planner benchmark measures the real pipeline, not nothing: its site has
host-qualified names from the real builder, and its converged site plans nothing."""

from __future__ import annotations

from bench.planner_scale import make_bench, measure
from dockyard.deploy.plan.planner import make_plan


def test_a_three_host_bench_site_has_host_qualified_names_and_converges_to_an_empty_plan(tmp_path):
    bench = make_bench(tmp_path, 3)
    prepared = bench.prepare()
    assert list(prepared.site.inventory.hosts) == ["ctl", "cmp0001", "cmp0002"]
    fresh = make_plan(prepared.wanted, bench.observed(prepared))
    ids = {a.id for a in fresh.actions}
    assert {"create:nova_compute@cmp0001", "create:nova_compute@cmp0002", "create:keystone@ctl",
            "create:nova_conductor@ctl"} <= ids
    assert "create:nova_compute@ctl" not in ids and "create:keystone@cmp0001" not in ids
    assert all(a.id.endswith(f"@{a.host}") for a in fresh.actions)
    bench.converge()
    assert bench.engines.of("cmp0002").container("nova_compute").running
    assert make_plan(prepared.wanted, bench.observed(prepared)).is_empty()


def test_the_figures_row_counts_a_fresh_plan_and_an_empty_no_op():
    row = measure(3, repeat=1)
    assert row["hosts"] == 3 and row["containers"] > 20 and row["jobs"] > 0
    assert row["fresh_actions"] > row["containers"] and row["noop_actions"] == 0
    assert row["example_id"] == "create:nova_compute@cmp0002"
