"""MkDocs hook: links from a page to repository files outside ``docs/`` become plain text.

Pages are also read on the code host, where ``[notebooks/](../../notebooks/README.md)`` is a working
link; the site holds only ``docs/``, so MkDocs (``--strict``) would reject it. A link whose target
exists in the repository outside ``docs/`` is replaced by its text. A link to a file that exists
nowhere is left alone, so strict mode still reports it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)]*)?\)")


def on_page_markdown(markdown, page, config, files):
    docs_dir = Path(os.path.abspath(config["docs_dir"]))
    repo_root = docs_dir.parent
    page_dir = (docs_dir / page.file.src_path).parent

    def replace(match: re.Match) -> str:
        target = match.group("target")
        if "://" in target or target.startswith(("mailto:", "/")):
            return match.group(0)
        resolved = Path(os.path.normpath(page_dir / target))  # lexical: symlinked folders count as inside
        if resolved.is_relative_to(docs_dir) or not resolved.is_relative_to(repo_root) or not resolved.exists():
            return match.group(0)
        return match.group("text")

    return _LINK.sub(replace, markdown)
