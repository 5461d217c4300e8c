"""A Griffe extension for tda's API pages (docs/build.py loads it into mkdocstrings): attributes that a method assigns
to `self` (`self.mode = mode` in `__init__`) are left out unless they have a docstring. They repeat the constructor's
arguments or name its parts (`nn.Module` layers), and each would be listed as `mode = mode`; the class's signature and
docstring already say what they are. Attributes declared in the class body (dataclass fields) stay."""
from __future__ import annotations

import griffe


class DropSelfAssigned(griffe.Extension):
    "Remove undocumented instance attributes whose only assignment lies inside one of the class's methods."

    def on_class_members(self, *, cls: griffe.Class, **kwargs) -> None:
        "After a class's members are collected: drop those assigned to `self` in a method (by line span)."
        spans = [(m.lineno, m.endlineno) for m in cls.members.values()
                 if not m.is_alias and m.is_function and m.lineno and m.endlineno]
        for name, m in list(cls.members.items()):
            if m.is_alias or not m.is_attribute or m.docstring or 'instance-attribute' not in m.labels: continue
            if m.lineno and any(a <= m.lineno <= b for a, b in spans): cls.del_member(name)
