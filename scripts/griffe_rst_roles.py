"""A griffe extension for the docs site: reST roles in docstrings become Markdown code.

omniq's docstrings name other objects the Sphinx way (``:class:`~omniq.models.TaskError```),
which Markdown would print as it stands. mkdocstrings loads this file (mkdocs.yml) and
every such role turns into a code span: ``~`` keeps the last component, as in Sphinx.
Cross-references are left to the reference pages' own headings, so a role that names
something the site does not document cannot break ``mkdocs build --strict``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj|const|term):`(?P<tilde>~?)(?P<target>[^`]+)`"
)


def as_code(match: re.Match[str]) -> str:
    """``:role:`~a.b.C``` -> ```C```; ``:role:`a.b.C``` -> ```a.b.C```."""
    target = match["target"].strip()
    if match["tilde"]:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def plain_roles(text: str) -> str:
    """``text`` with every reST cross-reference role replaced by a code span."""
    return ROLE.sub(as_code, text)


class RstRoles(griffe.Extension):
    """Rewrite the roles of every docstring once the package is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Called by griffe for every object of the loaded package."""
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
