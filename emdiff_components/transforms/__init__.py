from __future__ import annotations

from .boundary import *  # noqa: F401,F403
from .boundary import __all__ as _boundary_all
from .io import *  # noqa: F401,F403
from .io import __all__ as _io_all
from .label import *  # noqa: F401,F403
from .label import __all__ as _label_all

__all__ = [*_boundary_all, *_io_all, *_label_all]
