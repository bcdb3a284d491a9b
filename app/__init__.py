"""The meter facade. `__version__` is the installed package's version (`pyproject.toml`, the one source)."""

from importlib.metadata import version

__version__ = version("meter-facade")
