"""Finding the operator's INI overrides, and merging them in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.deploy.site import ini, overrides


def put(folder: Path, relpath: str, text: str) -> Path:
    path = folder / "config" / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_nothing_to_find_without_a_config_folder(tmp_path):
    assert overrides.find(tmp_path, "nova", "nova-api", "ctl1") == []


def test_found_in_merge_order_widest_first(tmp_path):
    host = put(tmp_path, "ctl1/nova.conf", "")
    component = put(tmp_path, "nova/nova-api.conf", "")
    service = put(tmp_path, "nova.conf", "")
    assert overrides.find(tmp_path, "nova", "nova-api", "ctl1") == [service, component, host]


def test_only_the_files_for_this_component_and_host(tmp_path):
    put(tmp_path, "nova/nova-scheduler.conf", "")
    put(tmp_path, "cmp1/nova.conf", "")
    put(tmp_path, "glance.conf", "")
    put(tmp_path, "ctl1/glance.conf", "")
    mine = put(tmp_path, "nova/nova-api.conf", "")
    assert overrides.find(tmp_path, "nova", "nova-api", "ctl1") == [mine]


def test_a_folder_named_like_an_override_is_not_one(tmp_path):
    (tmp_path / "config" / "nova.conf").mkdir(parents=True)
    assert overrides.find(tmp_path, "nova", "nova-api", "ctl1") == []


def test_the_service_part_is_the_file_name_the_catalogue_gives(tmp_path):
    ml2 = put(tmp_path, "ml2_conf.conf", "")
    assert overrides.find(tmp_path, "ml2_conf", "neutron-rpc-server", "ctl1") == [ml2]


@pytest.mark.parametrize("service, component, host", [
    ("../nova", "nova-api", "ctl1"), ("nova", "a/b", "ctl1"), ("nova", "nova-api", ".."), ("", "x", "y"),
])
def test_names_cannot_leave_the_config_folder(tmp_path, service, component, host):
    with pytest.raises(ValueError):
        overrides.find(tmp_path, service, component, host)


def test_unmatched_lists_overrides_nothing_used(tmp_path):
    used = overrides.find(tmp_path, "nova", "nova-api", "ctl1") + [put(tmp_path, "nova.conf", "")]
    typo = put(tmp_path, "nvoa.conf", "")
    stray = put(tmp_path, "nova/nova-apii.conf", "")
    put(tmp_path, "README", "notes, not an override")
    assert overrides.unmatched(tmp_path, used) == sorted([typo, stray])
    assert overrides.unmatched(tmp_path / "nowhere", []) == []


def test_the_narrowest_override_wins_and_multi_valued_options_survive(tmp_path):
    generated = ("[DEFAULT]\ndebug = false\nworkers = 2\n"
                 "[filter_scheduler]\nenabled_filters = ComputeFilter\nenabled_filters = ImagePropertiesFilter\n")
    put(tmp_path, "nova.conf", "[DEFAULT]\ndebug = true\nworkers = 4\n")
    put(tmp_path, "nova/nova-scheduler.conf", "[filter_scheduler]\nenabled_filters = ComputeFilter\n"
                                               "enabled_filters = PciPassthroughFilter\n")
    put(tmp_path, "ctl1/nova.conf", "[DEFAULT]\nworkers = 8\n")
    found = overrides.find(tmp_path, "nova", "nova-scheduler", "ctl1")
    merged = ini.parse(ini.merge(generated, *((str(p), p.read_text()) for p in found)))
    assert merged.get("DEFAULT", "debug") == ["true"]
    assert merged.get("DEFAULT", "workers") == ["8"]
    assert merged.get("filter_scheduler", "enabled_filters") == ["ComputeFilter", "PciPassthroughFilter"]
