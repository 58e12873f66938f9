"""Golden plans: the all-in-one's fresh deploy, stop and destroy plans, rendered
one action a line with its reason and every dependency, compared with the files
checked in under tests/unit/golden/. A change to the catalogue, the builder or a
planner that changes what a deploy does shows in review as a diff of these files.

After a deliberate change, regenerate them and review the diff:

    UPDATE_GOLDEN=1 python3 -m pytest tests/unit/test_deploy_plan_golden.py

Deterministic by construction: the fake engine, the host's facts pinned (no
/sys or /proc of this machine), and the site's folder written as ``<site>``.
"""

from __future__ import annotations

import difflib
import os
from collections import Counter
from pathlib import Path

import pytest

from dockyard.deploy import api
from dockyard.deploy.plan.planner import ActionKind, Plan
from dockyard.deploy.site.hostfacts import HostFacts

from .deploy_fixtures import converge_site, full_engine, quiet

GOLDEN = Path(__file__).parent / "golden"
# What no machine decides: neither a kernel datapath nor KVM (the choices that work anywhere).
PINNED_FACTS = HostFacts(False, "pinned by the golden test", False, "pinned by the golden test")


def render(plan: Plan, site_dir: Path, title: str) -> str:
    """One line per action (id, then its reason), one indented line per dependency."""
    lines = [f"# {title}", f"# regenerate: UPDATE_GOLDEN=1 python3 -m pytest {Path(__file__).relative_to(REPO)}", ""]
    for a in plan.actions:
        lines.append(f"{a.id}  ({a.reason})")
        lines += [f"    after {d}" for d in a.deps]
    counts = Counter(a.kind for a in plan.actions)
    lines += ["", f"{len(plan.actions)} actions: " + ", ".join(f"{counts[k]} {k}" for k in ActionKind if counts[k])]
    return "\n".join(lines).replace(str(site_dir), "<site>") + "\n"


REPO = Path(__file__).resolve().parents[2]


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
        return
    expected = path.read_text() if path.exists() else ""
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), str(path), "now"))
        pytest.fail(f"the plan differs from {path} (if meant: UPDATE_GOLDEN=1 python3 -m pytest {__file__}, and "
                    f"review the diff):\n{diff}", pytrace=False)


@pytest.fixture
def site_dir(site_dir, monkeypatch) -> Path:
    monkeypatch.setattr(api, "probe_host", lambda: PINNED_FACTS)
    return site_dir


def test_the_fresh_all_in_one_plan(site_dir):
    plan = api.deploy(site_dir, engine=full_engine(), dry_run=True, say=quiet)
    text = render(plan, site_dir, "dockyard deploy --dry-run: the all-in-one, fresh (nothing on the engine or disk)")
    assert "<site>/generated/" in text and str(site_dir.parent) not in text
    check("all_in_one_deploy.txt", text)


def test_the_all_in_one_stop_and_destroy_plans(site_dir):
    engine = converge_site(site_dir, full_engine())
    stop = api.stop(site_dir, engine=engine, dry_run=True, say=quiet)
    check("all_in_one_stop.txt", render(stop, site_dir, "dockyard stop --dry-run: the all-in-one, deployed"))
    destroy = api.destroy(site_dir, True, engine=engine, dry_run=True, say=quiet)
    text = render(destroy, site_dir, "dockyard destroy --include-volumes --dry-run: the all-in-one, deployed")
    assert str(site_dir.parent) not in text
    check("all_in_one_destroy.txt", text)
