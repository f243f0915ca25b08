#!/usr/bin/python3
"""Convert the man page sources in this directory to roff, using the standard library only.

The sources use a small Markdown subset:

    % NAME(SECTION) | MANUAL TITLE      first line: the page's name, section and manual
    # HEADING                           .SH; "## Heading" gives .SS
    text                                a paragraph; a blank line ends it
    - item                              a bulleted paragraph
    TERM                                a tagged paragraph (.TP): the term on one line,
    :   definition                      then ":" and the definition, continued by lines
        more definition                 indented four spaces
        code                            outside a definition, indented lines are verbatim

Inline: **bold**, *italic*, `literal` (bold). Every "-" becomes "\\-", so options are
typed and searched as ASCII hyphens.
"""

import argparse
import datetime
import os
import re
import sys
from pathlib import Path

TITLE = re.compile(r"^% (?P<name>[\w.-]+)\((?P<section>\d)\) \| (?P<manual>.+)$")
INLINE = re.compile(
    r"\*\*(?P<bold>.+?)\*\*|`(?P<code>[^`]+)`|\*(?P<italic>[^*\s](?:[^*]*[^*\s])?)\*"
)


def escape(text):
    """Escape roff's special characters in plain text."""
    text = text.replace("\\", "\\e").replace("-", "\\-").replace("'", "\\(aq")
    return text.replace('"', "\\(dq")


def inline(text):
    """Turn the inline markup of one line into roff font changes."""
    parts = []
    position = 0
    for match in INLINE.finditer(text):
        parts.append(escape(text[position : match.start()]))
        if match["italic"] is not None:
            parts.append(f"\\fI{escape(match['italic'])}\\fR")
        else:
            parts.append(f"\\fB{escape(match['bold'] or match['code'])}\\fR")
        position = match.end()
    parts.append(escape(text[position:]))
    line = "".join(parts)
    if line.startswith((".", "'")):
        line = "\\&" + line
    return line


def convert(source, version, date):
    """Return the roff text for one source page and the page's file name."""
    lines = source.splitlines()
    title = TITLE.match(lines[0]) if lines else None
    if title is None:
        raise ValueError("the first line must read '% NAME(SECTION) | MANUAL TITLE'")
    name, section = title["name"], title["section"]
    out = [
        f'.TH "{name.upper()}" "{section}" "{date}" "ecr-agent {version}" "{title["manual"]}"',
        # No hyphenation, so that option and file names can be found with a search.
        ".nh",
        ".ad l",
    ]

    index = 1
    while index < len(lines):
        line = lines[index]
        following = lines[index + 1] if index + 1 < len(lines) else ""

        if not line.strip():
            index += 1
        elif line.startswith("## "):
            out.append(f'.SS "{inline(line[3:])}"')
            index += 1
        elif line.startswith("# "):
            out.append(f'.SH "{inline(line[2:])}"')
            index += 1
        elif following.startswith(":   "):
            body, index = _collect(lines, index + 1, first_prefix=":   ")
            out += [".TP", inline(line), *[inline(part) for part in body]]
        elif line.startswith("- "):
            body, index = _collect(lines, index, first_prefix="- ", rest_prefix="  ")
            out += [".IP \\(bu 2", *[inline(part) for part in body]]
        elif line.startswith("    "):
            index = _verbatim(lines, index, out)
        else:
            body, index = _paragraph(lines, index)
            out += [".PP", *[inline(part) for part in body]]

    return f"{name}.{section}", "\n".join(out) + "\n"


def _collect(lines, index, first_prefix, rest_prefix="    "):
    """Return the lines of a definition or bullet without their prefixes, and the next index."""
    body = [lines[index][len(first_prefix) :]]
    index += 1
    while index < len(lines) and lines[index].startswith(rest_prefix):
        body.append(lines[index].strip())
        index += 1
    return body, index


def _paragraph(lines, index):
    body = []
    while index < len(lines) and lines[index].strip():
        body.append(lines[index])
        index += 1
    return body, index


def _verbatim(lines, index, out):
    """Append an indented block as no-fill text and return the index after it."""
    out += [".PP", ".RS 4", ".nf"]
    while index < len(lines) and (lines[index].startswith("    ") or not lines[index].strip()):
        text = escape(lines[index][4:])
        out.append("\\&" + text if text else "")
        index += 1
    while out[-1] == "":
        out.pop()
    out += [".fi", ".RE"]
    return index


def build_date():
    """Return the page date: SOURCE_DATE_EPOCH when set, so builds are reproducible."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    # datetime.UTC needs Python 3.11; rpmbuild on EL 9 runs this with Python 3.9.
    if epoch:
        moment = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)  # noqa: UP017
    else:
        moment = datetime.datetime.now(tz=datetime.timezone.utc)  # noqa: UP017
    return moment.strftime("%Y-%m-%d")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", type=Path, help="man page sources (*.md)")
    parser.add_argument("--outdir", type=Path, required=True, help="directory for the pages")
    parser.add_argument("--version", required=True, help="ecr-agent version for the footer")
    args = parser.parse_args(argv)

    args.outdir.mkdir(parents=True, exist_ok=True)
    date = build_date()
    for source in args.sources:
        try:
            filename, text = convert(source.read_text(encoding="utf-8"), args.version, date)
        except ValueError as error:
            parser.exit(1, f"{source}: {error}\n")
        (args.outdir / filename).write_text(text, encoding="utf-8")
        print(args.outdir / filename)
    return 0


if __name__ == "__main__":
    sys.exit(main())
