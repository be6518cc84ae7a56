"""Command lines in the docs pass booleans as Python literals: MONAI's bundle CLI (fire) reads ``--flag false`` as the
string ``'false'``, which a config's ``if @flag`` takes as true."""

from __future__ import annotations

import re
import unittest

from bundle_testing import REPO

FILES = [*REPO.glob("bundles/*/docs/README.md"), REPO / "README.md", *REPO.glob("scripts/*.sh")]
LOWERCASE_BOOLEAN = re.compile(r"--[a-z_]+ (true|false)\b")


class TestCommandLineBooleans(unittest.TestCase):
    def test_no_lowercase_boolean_on_a_command_line(self):
        for path in FILES:
            found = LOWERCASE_BOOLEAN.findall(path.read_text())
            self.assertEqual(found, [], f"{path.relative_to(REPO)}: write True / False, not {found}")

    def test_fire_reads_lowercase_false_as_a_string(self):
        """The reason for the rule above, checked on the CLI parser itself."""
        import fire.parser

        self.assertEqual(fire.parser.DefaultParseValue("false"), "false")
        self.assertIs(fire.parser.DefaultParseValue("False"), False)


if __name__ == "__main__":
    unittest.main()
