#!/usr/bin/env python3
"""Checks the relative links of README.md and docs/**/*.md: every linked file exists and every
`#anchor` names a heading of its target, as GitHub renders them (lowercase; punctuation other
than `-` and `_` dropped; spaces to `-`; repeats get `-1`, `-2`). Links to the web are not
fetched: CI runs offline and those are not ours to keep. Why not lychee: it would be one more
binary to download for a job this small, and its offline mode does not check anchors of
Markdown headings the way GitHub renders them.

Usage: check_links.py [ROOT]   (exit 1 and one line per broken link)"""
import os
import re
import sys

LINK = re.compile(r"(?<!\!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def slug(text):
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def without_code(lines):
    """The lines outside fenced code blocks, with their numbers."""
    fenced = False
    for n, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line


def anchors(path, cache={}):
    if path not in cache:
        seen = {}
        found = set()
        with open(path, encoding="utf-8") as f:
            for _, line in without_code(f.read().splitlines()):
                m = HEADING.match(line)
                if not m:
                    continue
                s = slug(m.group(2))
                k = seen.get(s, 0)
                seen[s] = k + 1
                found.add(s if k == 0 else f"{s}-{k}")
        cache[path] = found
    return cache[path]


def markdown_files(root):
    yield os.path.join(root, "README.md")
    for d, _, files in os.walk(os.path.join(root, "docs")):
        for f in sorted(files):
            if f.endswith(".md"):
                yield os.path.join(d, f)


def broken_links(root):
    for path in markdown_files(root):
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for n, line in without_code(lines):
            # Inline code is not a link.
            line = re.sub(r"`[^`]*`", "", line)
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                    continue  # http:, https:, mailto: — not fetched
                file_part, _, anchor = target.partition("#")
                dest = path if not file_part else os.path.normpath(
                    os.path.join(os.path.dirname(path), file_part))
                where = f"{os.path.relpath(path, root)}:{n}"
                if not os.path.exists(dest):
                    yield f"{where}: {target} — no such file"
                elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                    yield f"{where}: {target} — no heading #{anchor} in {os.path.relpath(dest, root)}"


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    broken = list(broken_links(root))
    for b in broken:
        print(f"broken link: {b}")
    files = list(markdown_files(root))
    if broken:
        print(f"links: {len(broken)} broken in {len(files)} files", file=sys.stderr)
        sys.exit(1)
    print(f"links ok: {len(files)} files, every relative link and anchor resolves")


if __name__ == "__main__":
    main()
