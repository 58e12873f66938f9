"""The strict base of every declarative model: unknown keys refused, values fixed once read."""

from __future__ import annotations

import pydantic
import pytest

from dockyard.datafiles import StrictModel
from dockyard.deploy.site.loader import Globals
from dockyard.deploy.wanted.catalogue import ServiceDef
from dockyard.image.catalogue import ImageMeta
from dockyard.image.config import BuildConfig


class Sample(StrictModel):
    name: str = "x"


def test_unknown_key_is_refused():
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        Sample(name="a", nmae="b")


def test_a_value_read_is_not_changed_in_place():
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        Sample().name = "y"


@pytest.mark.parametrize("model", [Globals, ServiceDef, ImageMeta, BuildConfig])
def test_every_declarative_model_is_strict(model):
    assert issubclass(model, StrictModel)


class Settings(StrictModel):
    colour: str = "red"
    size: int = 1


def test_read_model(tmp_path):
    from dockyard.datafiles import read_model
    from dockyard.errors import ConfigError

    path = tmp_path / "settings.yml"
    assert read_model(path, Settings, missing_ok=True) == Settings()
    with pytest.raises(ConfigError, match="file not found"):
        read_model(path, Settings)
    path.write_text("")
    assert read_model(path, Settings) == Settings()
    path.write_text("size: 3\n")
    assert read_model(path, Settings).size == 3
    path.write_text("- colour\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        read_model(path, Settings)
    path.write_text("color: blue\n")
    with pytest.raises(ConfigError, match="did you mean 'colour'") as exc:
        read_model(path, Settings)
    assert exc.value.path == str(path) and exc.value.key == "color"
