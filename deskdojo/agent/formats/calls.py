"""A small tokenizer and parser for function-call text such as
``click(x=120, y=45)`` or ``type(content='hi\\n')`` (deskdojo's and UI-TARS's formats).

Only literals are understood: strings (single or double quoted, backslash escapes as
in JSON and Python), numbers, ``true/false/null`` (and ``True/False/None``), lists
``[...]`` and tuples ``(...)``. Nothing is evaluated; anything else is a ``ParseFailure``
that says where and what.

Linear time in the answer's length, and bounded: tokens are read only as the parser
needs them (the first mistake ends the read), an answer has at most ``MAX_TOKENS``
tokens, a string at most ``MAX_STRING_CHARS`` characters, a number ``MAX_NUMBER_CHARS``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from deskdojo.agent.formats.base import ParseFailure
from deskdojo.core.actions import MAX_TYPE_CHARS

MAX_NESTING = 8
MAX_TOKENS = 1024
"""Far more tokens than an answer's actions need (a call has 3 to 20): a token costs
microseconds in Python, and the 32,000 of 64 KB of ``1,1,1`` cost a quarter second."""
MAX_STRING_CHARS = MAX_TYPE_CHARS
"""The longest text any action field holds; a longer string cannot make an action."""
MAX_NUMBER_CHARS = 64

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"|')
  | (?P<punct>[()\[\],=])
""", re.VERBOSE)

_PLAIN_RUN = {'"': re.compile(r'[^"\\]+'), "'": re.compile(r"[^'\\]+"), None: re.compile(r"[^\\]+")}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_U_ESCAPES = re.compile(r"(?:\\u[0-9a-fA-F]{4})+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPE_DIGITS = {"x": 2, "u": 4, "U": 8}
_CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0",
                   "\\": "\\", "'": "'", '"': '"', "/": "/", "\n": ""}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "number" | "name" | "string" | "punct" | "end"
    value: Any
    pos: int


@dataclass(slots=True)
class Call:
    """``name(positional..., key=value...)`` with where it sits in the text."""

    name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    start: int = 0
    end: int = 0


def where(text: str, pos: int) -> str:
    """``line 2, column 5`` for an offset (1-based, as editors count)."""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


def read_string(text: str, pos: int) -> tuple[str, int]:
    """Decode the quoted string starting at ``text[pos]``; returns (value, end offset)."""
    return _decode(text, pos + 1, text[pos])


def unescape(body: str) -> str:
    """Decode backslash escapes in an unquoted string body (``a\\nb`` -> a, newline, b)."""
    return _decode(body, 0, None)[0]


def _decode(text: str, start: int, quote: str | None) -> tuple[str, int]:
    out: list[str] = []
    length = 0  # of the decoded text so far
    plain_run = _PLAIN_RUN[quote]
    slow_until = 0
    i = start
    n = len(text)
    while i < n:
        if length > MAX_STRING_CHARS:
            raise ParseFailure(f"the string starting at {where(text, max(start - 1, 0))} is longer than "
                               f"{MAX_STRING_CHARS} characters, more than any action takes")
        run = plain_run.match(text, i)  # characters that stand for themselves, in one step
        if run is not None:
            out.append(run.group())
            length += run.end() - i
            i = run.end()
            continue
        char = text[i]
        if char == quote:
            return "".join(out), i + 1
        escapes = _U_ESCAPES.match(text, i) if i >= slow_until else None
        if escapes is not None:  # a run of \\uXXXX (emoji come as surrogate pairs), decoded in C
            decoded = json.loads(f'"{escapes.group()}"')  # pairs surrogates as the loop below does
            lone = _SURROGATE.search(decoded)  # an error: the loop below says where
            good = decoded if lone is None else decoded[:lone.start()]
            out.append(good)
            length += len(good)
            i += 6 * (len(good.encode("utf-16-le")) // 2)  # one escape per UTF-16 unit
            if lone is not None:
                slow_until = i + 1
            continue
        if i + 1 >= n:
            if quote is None:
                out.append(char)
                length += 1
                i += 1
                continue
            break
        esc = text[i + 1]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc in _ESCAPE_DIGITS:
            digits = _ESCAPE_DIGITS[esc]
            hex_text = text[i + 2:i + 2 + digits]
            if len(hex_text) != digits or not _HEX_DIGITS.issuperset(hex_text):
                raise ParseFailure(f"bad \\{esc} escape at {where(text, i)}: it needs {digits} hex digits")
            code = int(hex_text, 16)
            i += 2 + digits
            # a JSON surrogate pair (\\ud83d\\ude00) is one character
            if 0xD800 <= code <= 0xDBFF and text[i:i + 2] == "\\u":
                low_text = text[i + 2:i + 6]
                if len(low_text) == 4 and _HEX_DIGITS.issuperset(low_text):
                    low = int(low_text, 16)
                    if 0xDC00 <= low <= 0xDFFF:
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ParseFailure(f"bad character escape at {where(text, i)}")
            out.append(chr(code))
        else:  # unknown escapes keep their backslash, as Python does
            out.append("\\" + esc)
            i += 2
        length += len(out[-1])
    if quote is None:
        if length > MAX_STRING_CHARS:
            raise ParseFailure(f"the text is longer than {MAX_STRING_CHARS} characters, more than any action takes")
        return "".join(out), n
    raise ParseFailure(f"unterminated string starting at {where(text, start - 1)}: "
                       f"close it with {quote} (write {quote} inside as \\{quote})")


def iter_tokens(text: str) -> Iterator[Token]:
    """The tokens of ``text`` one at a time, ending with an ``end`` token; a lexical
    mistake raises when the reader gets to it."""
    count = 0
    pos = 0
    n = len(text)
    while pos < n:
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ParseFailure(f"unexpected {text[pos]!r} at {where(text, pos)}")
        kind = match.lastgroup
        if kind == "space":
            pos = match.end()
            continue
        count += 1
        if count > MAX_TOKENS:
            raise ParseFailure(f"the action has more than {MAX_TOKENS} tokens (names, values, brackets); "
                               "write one short call per action")
        if kind == "string":
            value, end = read_string(text, pos)
            yield Token("string", value, pos)
            pos = end
        elif kind == "number":
            raw = match.group()
            if len(raw) > MAX_NUMBER_CHARS:
                raise ParseFailure(f"the number at {where(text, pos)} has {len(raw)} characters; "
                                   f"numbers have at most {MAX_NUMBER_CHARS}")
            value: Any = float(raw) if any(c in raw for c in ".eE") else int(raw)
            yield Token("number", value, pos)
            pos = match.end()
        else:
            yield Token(kind, match.group(), pos)
            pos = match.end()
    yield Token("end", None, n)


def tokenize(text: str) -> list[Token]:
    """All the tokens of ``text`` (``iter_tokens`` as a list)."""
    return list(iter_tokens(text))


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self._stream = iter_tokens(text)
        self.tokens: list[Token] = []  # read so far
        self.i = 0

    def ahead(self, k: int) -> Token:
        """The token ``k`` places after the current one, read from the text on demand
        (past the end: the end token)."""
        while len(self.tokens) <= self.i + k:
            token = next(self._stream, None)
            if token is None:
                return self.tokens[-1]
            self.tokens.append(token)
        return self.tokens[self.i + k]

    def peek(self) -> Token:
        return self.ahead(0)

    def take(self) -> Token:
        token = self.ahead(0)
        self.i += 1
        return token

    def expect(self, punct: str, what: str) -> Token:
        token = self.take()
        if token.kind != "punct" or token.value != punct:
            found = "the end of the answer" if token.kind == "end" else repr(self.show(token))
            raise ParseFailure(f"expected {punct!r} {what} at {where(self.text, token.pos)}, found {found}")
        return token

    def show(self, token: Token) -> str:
        if token.kind == "string":
            return repr(token.value)
        return str(token.value)

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_NESTING:
            raise ParseFailure(f"values nest deeper than {MAX_NESTING} levels")
        token = self.take()
        if token.kind in ("string", "number"):
            return token.value
        if token.kind == "name":
            if token.value in _CONSTANTS:
                return _CONSTANTS[token.value]
            if self.peek().kind == "punct" and self.peek().value in "(=":
                raise ParseFailure(f"{token.value}(...) at {where(self.text, token.pos)}: "
                                   "arguments must be plain values (numbers or quoted strings), not calls")
            raise ParseFailure(f"bare name {token.value!r} at {where(self.text, token.pos)}: "
                               "put text in quotes")
        if token.kind == "punct" and token.value in "[(":
            close = "]" if token.value == "[" else ")"
            items = []
            while not (self.peek().kind == "punct" and self.peek().value == close):
                items.append(self.value(depth + 1))
                if self.peek().kind == "punct" and self.peek().value == ",":
                    self.take()
                elif not (self.peek().kind == "punct" and self.peek().value == close):
                    nxt = self.peek()
                    found = "the end of the answer" if nxt.kind == "end" else repr(self.show(nxt))
                    raise ParseFailure(f"expected ',' or {close!r} at {where(self.text, nxt.pos)}, found {found}")
            self.take()
            return items if close == "]" else tuple(items)
        found = "the end of the answer" if token.kind == "end" else repr(self.show(token))
        raise ParseFailure(f"expected a value at {where(self.text, token.pos)}, found {found}")

    def call(self) -> Call:
        token = self.take()
        if token.kind != "name":
            found = "nothing" if token.kind == "end" else repr(self.show(token))
            raise ParseFailure(f"expected an action name at {where(self.text, token.pos)}, found {found}")
        call = Call(token.value, start=token.pos)
        self.expect("(", f"after {token.value!r}")
        while not (self.peek().kind == "punct" and self.peek().value == ")"):
            nxt = self.peek()
            if nxt.kind == "end":
                raise ParseFailure(f"{token.value}( is never closed: end it with ')'")
            if nxt.kind == "name" and self.ahead(1).kind == "punct" and self.ahead(1).value == "=":
                key = self.take().value
                self.take()
                if key in call.kwargs:
                    raise ParseFailure(f"{token.value}: argument {key!r} is given twice")
                call.kwargs[key] = self.value()
            else:
                if call.kwargs:
                    raise ParseFailure(f"{token.value}: a positional value follows a named one at "
                                       f"{where(self.text, nxt.pos)}")
                call.args.append(self.value())
            if self.peek().kind == "punct" and self.peek().value == ",":
                self.take()
            elif not (self.peek().kind == "punct" and self.peek().value == ")"):
                nxt = self.peek()
                found = "the end of the answer" if nxt.kind == "end" else repr(self.show(nxt))
                raise ParseFailure(f"expected ',' or ')' in {token.value}(...) at "
                                   f"{where(self.text, nxt.pos)}, found {found}")
        call.end = self.take().pos + 1
        return call


def parse_calls(text: str) -> list[Call]:
    """Every ``name(...)`` call in ``text``, in order, separated by whitespace only."""
    parser = _Parser(text)
    calls = []
    while parser.peek().kind != "end":
        calls.append(parser.call())
    return calls
