"""mkdocs hook: the site's home page is the README, with its links rewritten for the site.

The README is written for GitHub (links to ``docs/cli.md``, ``benchmarks/README.md``); on
the site those pages are ``cli.md`` and the repository's file. One source, two renderings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

REPOSITORY = "https://github.com/agora-chat-async/agora-chat-async/blob/main/"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != "index.md":
        return markdown
    readme = (Path(config["docs_dir"]).parent / "README.md").read_text("utf-8")
    readme = re.sub(r"\]\(docs/([^)]+)\)", r"](\1)", readme)
    readme = readme.replace("(CHANGELOG.md)", "(changelog.md)")
    return re.sub(r"\]\((benchmarks/[^)]+)\)", rf"]({REPOSITORY}\1)", readme)
