"""MkDocs hook: render the Sphinx cross-reference roles the docstrings use as plain code.

The docstrings write ``:class:`Stream``` and ``:meth:`complete``` for Sphinx-minded readers and
editors; mkdocstrings renders the backticked name as code but leaves the role prefix as text.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|data|attr|mod|exc|obj):(?=<code)")


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub("", html)
