"""A CSV file as people have them, one line at a time: each line stands alone, so a bad line
(a stray quote, bytes of another encoding, a cell of 200 KB) costs that line only and is reported
by its own number; the file is streamed in bounded memory (a line longer than MAX_LINE_BYTES is
skipped without being read whole).

Encoding: `encoding` when given; otherwise a byte-order mark decides (UTF-8, UTF-16), else UTF-8
until a line proves otherwise. A file whose first non-ASCII line is not UTF-8 is read as
Windows-1252 (Latin-1 plus the quotes and dashes Excel writes; Latin-1 itself for the five bytes
Windows-1252 leaves undefined), and the caller is told so. A line that is not UTF-8 in a file
that already had UTF-8 in it is reported, not guessed.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from digest.errors import DigestError

MAX_LINE_BYTES = 64 * 1024  # an address and 20 topics of 200 characters fit twelve times over
FALLBACK = "cp1252"


@dataclass
class Line:
    number: int
    cells: list[str] | None = None  # None: `error` says why the line was not read
    error: str = ""


@dataclass
class Decoding:
    """What was read as what; `note` for the operator when it was a guess."""

    encoding: str | None  # None: not decided yet (UTF-8 until proven otherwise)
    given: bool = False
    notes: list[str] = field(default_factory=list)


def check_encoding(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise DigestError(f"unknown encoding {name!r}: use e.g. --encoding utf-8, cp1252 or latin-1") from None


def _ascii_compatible(encoding: str) -> bool:
    return "a,\n".encode(encoding) == b"a,\n"


def read_lines(stream: BinaryIO | io.TextIOBase, encoding: str | None = None) -> tuple[Iterator[Line], Decoding]:
    """The lines of a CSV file, each parsed on its own, and how the file was decoded."""
    if isinstance(stream, io.TextIOBase):  # already text: nothing to decode
        return _parsed(_text_lines(stream)), Decoding("text", given=True)
    decoding = Decoding(check_encoding(encoding) if encoding else None, given=bool(encoding))
    head = stream.read(3)
    if not decoding.given:
        if head.startswith(codecs.BOM_UTF8):
            decoding.encoding, head = "utf-8", head[3:]
        elif head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            decoding.encoding = "utf-16"
    elif decoding.encoding == "utf-8" and head.startswith(codecs.BOM_UTF8):
        head = head[3:]
    if decoding.encoding and not _ascii_compatible(decoding.encoding):
        text = io.TextIOWrapper(_Prefixed(head, stream), encoding=decoding.encoding, errors="replace", newline="")
        return _parsed(_text_lines(text, replaced="\ufffd")), decoding
    return _parsed(_decoded(_byte_lines(_Prefixed(head, stream)), decoding)), decoding


class _Prefixed(io.RawIOBase):
    """The stream with the bytes already read for the byte-order mark put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            size = min(len(buffer), len(self.head))
            buffer[:size], self.head = self.head[:size], self.head[size:]
            return size
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _byte_lines(raw: io.RawIOBase) -> Iterator[tuple[int, bytes | None]]:
    stream = io.BufferedReader(raw)
    number = 0
    while line := stream.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass  # the rest of an overlong line, read and dropped in bounded pieces
            yield number, None
            continue
        yield number, line


def _decoded(lines, decoding: Decoding) -> Iterator[tuple[int, str | None, str]]:
    utf8_proven = False
    for number, raw in lines:
        if raw is None:
            yield number, None, f"longer than {MAX_LINE_BYTES:,} bytes: skipped"
            continue
        if decoding.encoding not in (None, "utf-8"):
            try:
                yield number, raw.decode(decoding.encoding), ""
            except UnicodeDecodeError as exc:
                yield number, None, f"not readable as {decoding.encoding} (byte {exc.start + 1}): fix the line or pass --encoding"
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if decoding.given or utf8_proven:
                yield number, None, f"not valid UTF-8 (byte {exc.start + 1}), unlike the rest of the file: fix the line or pass --encoding"
                continue
            decoding.encoding = FALLBACK
            decoding.notes.append(f"the file is not UTF-8 (line {number}): read as Windows-1252/Latin-1; "
                                  "pass --encoding to choose another")
            yield number, _legacy(raw), ""
            continue
        utf8_proven = utf8_proven or not raw.isascii()
        if decoding.encoding is None and utf8_proven:
            decoding.encoding = "utf-8"
        yield number, text, ""


def _legacy(raw: bytes) -> str:
    try:
        return raw.decode(FALLBACK)
    except UnicodeDecodeError:  # one of the five bytes Windows-1252 leaves undefined
        return raw.decode("latin-1")


def _text_lines(stream, replaced: str | None = None) -> Iterator[tuple[int, str | None, str]]:
    number = 0
    while line := stream.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith("\n"):
            while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith("\n"):
                pass
            yield number, None, f"longer than {MAX_LINE_BYTES:,} characters: skipped"
        elif replaced and replaced in line:
            yield number, None, "not readable in the file's encoding: fix the line or pass --encoding"
        else:
            yield number, line, ""


def _parsed(lines) -> Iterator[Line]:
    for number, text, error in lines:
        if text is None:
            yield Line(number, error=error)
            continue
        text = text.rstrip("\r\n")
        try:
            cells = next(csv.reader([text], strict=True), [])
        except csv.Error as exc:
            reason = "a quote is not closed on this line" if "end of data" in str(exc) or "EOF" in str(exc) else str(exc)
            yield Line(number, error=f"{reason} (each subscriber is one line)")
            continue
        yield Line(number, [cell.strip() for cell in cells])
