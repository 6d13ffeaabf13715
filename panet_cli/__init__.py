"""panet: image restoration with Pyramid Attention Networks.

The public API is imported lazily so that ``panet --version`` and ``--help`` start without torch.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
