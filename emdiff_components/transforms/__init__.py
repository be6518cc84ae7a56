from __future__ import annotations

from .boundary import *  # noqa: F401,F403
from .boundary import __all__ as _boundary_all
from .intensity import *  # noqa: F401,F403
from .intensity import __all__ as _intensity_all
from .io import *  # noqa: F401,F403
from .io import __all__ as _io_all
from .label import *  # noqa: F401,F403
from .label import __all__ as _label_all
from .post import *  # noqa: F401,F403
from .post import __all__ as _post_all
from .remodel import *  # noqa: F401,F403
from .remodel import __all__ as _remodel_all
from .sections import *  # noqa: F401,F403
from .sections import __all__ as _sections_all

__all__ = [*_boundary_all, *_intensity_all, *_io_all, *_label_all, *_post_all, *_remodel_all, *_sections_all]
from .affinity import *  # noqa: F401,F403
from .affinity import __all__ as _affinity_all

__all__ += [*_affinity_all]
from .augment import *  # noqa: F401,F403
from .augment import __all__ as _augment_all

__all__ += [*_augment_all]
from .cells import *  # noqa: F401,F403
from .cells import __all__ as _cells_all

__all__ += [*_cells_all]
from .mesh import *  # noqa: F401,F403
from .mesh import __all__ as _mesh_all

__all__ += [*_mesh_all]
