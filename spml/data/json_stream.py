"""A JSON object read from a file a piece at a time: the items of its big arrays (a COCO file's images and
annotations) are handed to callbacks one by one, so they never all exist as Python objects at once.

`json.load` of a 200k-image COCO file holds every record as a dict (about 440 bytes an image) at the same time.
This reads 1 MB of text at a time and decodes each item with the standard library's C decoder
(`JSONDecoder.raw_decode`); a streaming parser package (ijson) would do the same and is one more dependency.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from typing import BinaryIO, Callable

# What decoding a user's JSON may raise: not JSON or not UTF-8 (ValueError, UnicodeDecodeError), nested deeper than
# the decoder's recursion limit (RecursionError: 200,000 nested arrays), too large for memory (MemoryError)
DECODE_ERRORS = (ValueError, RecursionError, MemoryError)


def decode_error(e: BaseException) -> str:
    """The reason a file is not JSON that spml can read, in a few words."""
    if isinstance(e, RecursionError):
        return "nested too deeply to decode"
    if isinstance(e, MemoryError):
        return "too large to decode in memory"
    return str(e)


def load_json(path: str | os.PathLike, what: str = "") -> object:
    """json.load of a user's file; any failure to read or decode it is one SpmlError line naming the file."""
    from spml.errors import SpmlError

    where = f"{what} {path}" if what else str(path)
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise SpmlError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise SpmlError(f"{where}: is a folder, not a JSON file") from None
    except OSError as e:
        raise SpmlError(f"{where}: cannot read ({e.strerror or e})") from None
    except DECODE_ERRORS as e:
        raise SpmlError(f"{where}: not a JSON file ({decode_error(e)})") from None


_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
STREAMED = object()  # the value of a key whose array items went to its callback


class _Reader:
    def __init__(self, f: BinaryIO, chunk: int):
        self.f, self.chunk = f, chunk
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()  # a BOM is skipped, as json.load does
        self.buf, self.pos, self.base, self.eof = "", 0, 0, False

    def more(self, size: int | None = None) -> bool:
        """Append the next piece of the file to the buffer (dropping what was consumed); False at the end."""
        if self.eof:
            return False
        data = self.f.read(size or self.chunk)
        text = self.decoder.decode(data, final=not data)
        self.eof = not data
        self.base += self.pos
        self.buf, self.pos = self.buf[self.pos:] + text, 0
        return bool(text) or not self.eof

    def peek(self) -> str:
        """The next character that is not white space ('' at the end of the file), not consumed."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def expect(self, chars: str, what: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            raise ValueError(f"expected {what} at character {self.base + self.pos}")
        self.pos += 1
        return c

    def value(self):
        """The next JSON value. One cut by the buffer's end fails to decode (or, a number, decodes short): read more
        and decode again, reading twice as much each time so that a large value costs linear time."""
        self.peek()
        size = self.chunk
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self.more(size):
                    size *= 2
                    continue
                raise ValueError(f"{e.msg} at character {self.base + e.pos}") from None
            if end == len(self.buf) and self.more(size):
                size *= 2
                continue
            self.pos = end
            return value


def _items(r: _Reader, add) -> None:
    """The items of an array up to its ']', each to `add`. Items wholly inside the buffer are decoded in a tight
    loop (the C scanner, no per-item Python frames of _Reader); one cut by the buffer's end goes the careful way."""
    scan, space = _DECODER.scan_once, _SPACE.match
    while True:
        buf, pos = r.buf, r.pos
        last = len(buf) - 1  # an item must end before the buffer's last character: then it was not cut short
        while True:
            start = space(buf, pos).end()
            try:
                item, end = scan(buf, start)
            except (StopIteration, json.JSONDecodeError):
                break
            if end >= last:
                break
            after = space(buf, end).end()
            c = buf[after] if after < len(buf) else ""
            if c != "," and c != "]":
                break
            add(item)
            pos = after + 1
            if c == "]":
                r.pos = pos
                return
        r.pos = start  # the item the tight loop could not take, from its start
        add(r.value())
        if r.expect(",]", "',' or ']'") == "]":
            return


def stream_object(f: BinaryIO, streamed: dict[str, Callable[[object], None]], chunk: int = 1 << 20,
                  restart: Callable[[str], None] | None = None):
    """Parse the JSON document in binary file `f`. Where it is an object and the value of a key in `streamed` is an
    array, each item goes to `streamed[key](item)` and the key's value is returned as STREAMED; other values are
    returned whole. A document that is not an object is returned as it is. One of DECODE_ERRORS on a file that is
    not JSON (or nested too deeply, or too big).

    A key given twice is read as json.load reads it: the last value wins. For a streamed key, `restart(key)` is
    called before its second value is read, so the receiver forgets the items of the first; without `restart`,
    such a file is a ValueError."""
    r = _Reader(f, chunk)
    if r.peek() != "{":
        value = r.value()
        if r.peek():
            raise ValueError(f"extra data at character {r.base + r.pos}")
        return value
    r.pos += 1
    out: dict = {}
    if r.peek() == "}":
        r.pos += 1
    else:
        while True:
            key = r.value()
            if not isinstance(key, str):
                raise ValueError(f"expected a key (a string) at character {r.base + r.pos}")
            r.expect(":", "':'")
            if key in streamed and key in out:
                if restart is None:
                    raise ValueError(f"key {key!r} given twice (at character {r.base + r.pos})")
                restart(key)
            if key in streamed and r.peek() == "[":
                r.pos += 1
                out[key] = STREAMED
                if r.peek() == "]":
                    r.pos += 1
                else:
                    _items(r, streamed[key])
            else:
                out[key] = r.value()
            if r.expect(",}", "',' or '}'") == "}":
                break
    if r.peek():
        raise ValueError(f"extra data at character {r.base + r.pos}")
    return out
