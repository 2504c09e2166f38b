"""MkDocs hook: show the Sphinx roles of the docstrings (``:class:`~a.b.C```) as code.

The docstrings are written for reading in the source and in ``help()``, with Sphinx-style
cross-reference roles; mkdocstrings renders the roles' text as it is, so this hook turns
``:role:<code>~a.b.C</code>`` into ``<code>C</code>`` (without the ``~``, the full name).
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|mod|attr|data|exc|obj|ref):<code>(~?)([^<]+)</code>")


def _name(match: re.Match[str]) -> str:
    target = match[2].lstrip(".")
    return f"<code>{target.rsplit('.', 1)[-1] if match[1] else target}</code>"


def on_page_content(html: str, **_: Any) -> str:
    return _ROLE.sub(_name, html)
