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
