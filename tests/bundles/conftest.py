"""Make ``bundle_testing`` (the helpers of the bundle tests) importable under pytest's importlib import mode."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
