"""A small document model rendered to Markdown and to a standalone HTML page.

A report is a list of blocks, each a tuple whose first item names its kind:

- ``("h1", text)``, ``("h2", text)``: headings;
- ``("p", text)``: a paragraph of plain text;
- ``("table", header, rows)``: a table of strings (numbers are formatted by the caller);
- ``("img", src, alt)``: a figure, ``src`` relative to the report;
- ``("links", [(label, href), ...])``: a bulleted list of links to files next to the report;
- ``("code", text)``: a preformatted block (a shell command).

The same blocks give ``report.md`` and ``index.html``, so the two never say different things.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

Block = tuple[Any, ...]


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown."""
    out: list[str] = []
    for kind, *rest in blocks:
        if kind == "h1":
            out.append(f"# {rest[0]}")
        elif kind == "h2":
            out.append(f"## {rest[0]}")
        elif kind == "p":
            out.append(rest[0])
        elif kind == "table":
            header, rows = rest
            lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |"]
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            src, alt = rest
            out.append(f"![{alt}]({src})")
        elif kind == "links":
            out.append("\n".join(f"- [{label}]({href})" for label, href in rest[0]))
        elif kind == "code":
            out.append(f"```bash\n{rest[0]}\n```")
        else:
            raise ValueError(f"unknown report block {kind!r}")
    return "\n\n".join(out) + "\n"


_STYLE = (
    "body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em;line-height:1.4}"
    "table{border-collapse:collapse;margin:1em 0}"
    "th,td{border:1px solid #ccc;padding:.2em .6em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}"
    "pre{background:#f4f4f4;padding:.6em;overflow-x:auto}img{max-width:100%}"
)


def to_html(blocks: Sequence[Block], *, title: str) -> str:
    """The blocks as one self-contained HTML page (figures by relative ``<img src>``)."""
    e = html.escape
    body: list[str] = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{e(rest[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{e(rest[0])}</p>")
        elif kind == "table":
            header, rows = rest
            lines = ["<table>", "<tr>" + "".join(f"<th>{e(str(h))}</th>" for h in header) + "</tr>"]
            lines += [
                "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows
            ]
            lines.append("</table>")
            body.append("\n".join(lines))
        elif kind == "img":
            src, alt = rest
            body.append(f'<p><img src="{e(src)}" alt="{e(alt)}"></p>')
        elif kind == "links":
            items = "".join(
                f'<li><a href="{e(href)}">{e(label)}</a></li>' for label, href in rest[0]
            )
            body.append(f"<ul>{items}</ul>")
        elif kind == "code":
            body.append(f"<pre><code>{e(rest[0])}</code></pre>")
        else:
            raise ValueError(f"unknown report block {kind!r}")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
