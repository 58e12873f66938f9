"""dockyard: build OpenStack container images and deploy them convergently."""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("dockyard")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"

#: The repository root holding the declarative catalogues (``images/``, ``services/``).
#: dockyard is installed editable (see README), so the catalogues sit beside the package.
SOURCE_ROOT = Path(__file__).resolve().parent.parent
