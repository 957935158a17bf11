"""fieldcomms: updates, photos, rumour rebuttals and a live map for public-order events."""

from importlib.metadata import PackageNotFoundError, version

try:
    # One source for the version: pyproject.toml, as installed (`make install` installs the checkout editable).
    __version__ = version("fieldcomms")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
