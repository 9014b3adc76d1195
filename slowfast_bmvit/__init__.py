"""slowfast_bmvit: BMViT (single-stage action localization with MViTv2 and bipartite matching), PySlowFast-style.

Importing the package registers its models and datasets; `register_into_pyslowfast()` also registers them into
an importable upstream PySlowFast.
"""

__version__ = "0.1.0"

from .upstream import RegistrationReport, register_into_pyslowfast  # noqa: E402,F401
