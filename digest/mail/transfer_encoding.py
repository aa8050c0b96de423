"""Quoted-printable for the text part, shared by the renderer (which encodes each paper card once
and reuses it) and the message writer (which encodes what is left per subscriber)."""

from __future__ import annotations

import binascii

_encoded_lines: dict[str, str] = {}
CACHE_LINES = 50_000


def soft_broken(line: str) -> str:
    """A plain line (printable ASCII without "=", not ending in a space, not a lone ".") as
    quoted-printable: itself, cut by soft breaks ("=") into pieces of 75 characters, the last up to
    76. That is what binascii writes for it (a property test holds the two equal), without its
    encode/decode round trip. URLs are such lines."""
    if len(line) <= 76:
        return line
    pieces = []
    while len(line) > 76:
        pieces.append(line[:75])
        line = line[75:]
    pieces.append(line)
    return "=\r\n".join(pieces)


def quoted_printable(text: str, *, remember: bool = True) -> str:
    """`text` as a quoted-printable body with CRLF line ends, line by line: the lines of a digest
    repeat across subscribers (cards, footer), so each distinct line is encoded once (bounded
    cache, cleared when full). Encoding two texts that each end with a line break and joining the
    results gives the encoding of the joined text: the renderer relies on that. `remember=False`
    for lines that never recur (a reader's own links): they would only push the others out."""
    out = []
    for line in text.splitlines():
        if line.isascii() and line.isprintable() and "=" not in line and line[-1:] != " " and line != ".":
            out.append(soft_broken(line) if len(line) > 76 else line)
            continue
        encoded = _encoded_lines.get(line) if remember else None
        if encoded is None:
            encoded = binascii.b2a_qp(line.encode("utf-8"), istext=True).decode("ascii").replace("\n", "\r\n")
            if not remember:
                out.append(encoded)
                continue
            if len(_encoded_lines) >= CACHE_LINES:
                _encoded_lines.clear()
            _encoded_lines[line] = encoded
        out.append(encoded)
    return "\r\n".join(out) + "\r\n"
