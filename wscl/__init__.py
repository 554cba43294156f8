"""Wake-Sleep Consolidated Learning (WSCL): a reference reproduction."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wscl")  # the one version, from pyproject.toml via the installed metadata
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
