"""House rule 2: every module has ``from __future__ import annotations`` and an ``__all__`` that its package re-exports."""

from __future__ import annotations

import importlib
import pkgutil
import re
import unittest
from pathlib import Path

import emdiff_components

ROOT = Path(emdiff_components.__file__).parent


def modules():
    for info in pkgutil.walk_packages([str(ROOT)], prefix="emdiff_components."):
        yield info.name, info.ispkg


class TestExports(unittest.TestCase):
    def test_future_import_and_all(self):
        for name, _ in modules():
            module = importlib.import_module(name)
            source = Path(module.__file__).read_text(encoding="utf-8")
            self.assertIn("from __future__ import annotations", source, name)
            self.assertTrue(hasattr(module, "__all__"), f"{name} has no __all__")
            for symbol in module.__all__:
                self.assertTrue(hasattr(module, symbol), f"{name}.__all__ names missing {symbol}")

    def test_packages_reexport_their_modules(self):
        for name, ispkg in modules():
            if ispkg:
                continue
            package = importlib.import_module(name.rsplit(".", 1)[0])
            module = importlib.import_module(name)
            missing = set(module.__all__) - set(package.__all__)
            self.assertFalse(missing, f"{package.__name__}.__all__ lacks {sorted(missing)} from {name}")

    def test_module_size(self):
        for path in ROOT.rglob("*.py"):
            lines = path.read_text(encoding="utf-8").splitlines()
            self.assertLessEqual(len(lines), 500, f"{path} is longer than 500 lines")

    def test_no_hidden_randomness(self):
        """House rule 7: randomness comes from a generator argument or ``RandomizableTransform.R``."""
        global_calls = re.compile(r"\bnp\.random\.(?!default_rng|Generator|RandomState)\w+\(|(?<![\w.])random\.\w+\(")
        torch_draws = re.compile(r"torch\.(randn|rand|randint|randperm|normal)\(")
        for path in ROOT.rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                where = f"{path}:{number}: {line.strip()}"
                self.assertIsNone(global_calls.search(line), where)
                if torch_draws.search(line):
                    self.assertIn("generator", line, where)
