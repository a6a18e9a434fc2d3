"""The topology patterns' regular expressions: linear-time matching, Oracle's reading only.

Patterns come from operators' files and are matched against every distinct raw host. Python's
`re` backtracks: `(a+)+$` against a long host hangs a run, and with it SQLite's write lock. RE2
(google-re2) matches in time linear in the host, whatever the pattern, and refuses the constructs
that need backtracking (backreferences, lookaround).

SPEC §3 gives the patterns Oracle REGEXP_LIKE semantics. The subset accepted here reads the same
in RE2 and in Oracle: literals, `.`, anchors `^ $`, bracket expressions without backslashes or
POSIX classes, groups, alternation, the quantifiers `* + ? {n} {n,} {n,m}` (and their lazy
forms), and the escapes `\\d \\D \\w \\W \\s \\S` and `\\` + punctuation. Everything else is
refused at load, naming the construct, rather than meaning one thing here and another in Oracle.
"""

from __future__ import annotations

from typing import Any

import re2

_OPTIONS = re2.Options()
_OPTIONS.case_sensitive = False  # SPEC §3: case-insensitive, as REGEXP_LIKE(…, 'i')
_OPTIONS.log_errors = False  # a refused pattern is reported to the operator, not to stderr

_PERL_CLASSES = set("dDwWsS")


class PatternError(ValueError):
    """A pattern that does not compile, or that Oracle would read differently."""


def compile_pattern(pattern: str) -> Any:
    """The pattern compiled for case-insensitive, linear-time search (`.search(text)` returns a
    match with `.group(0)`, or None)."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else error
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise PatternError(f"pattern does not compile: {reason}: {pattern!r}") from None


def compile_pattern_set(patterns: list[str]) -> Any:
    """The patterns as one RE2 set: `.Match(text)` gives the indices of those that match
    somewhere in `text` (case-insensitive), or None. RE2 answers None too when its DFA runs out
    of memory, so None is only a hint: the caller checks a match it did not expect."""
    pattern_set = re2.Set.SearchSet(_OPTIONS)
    for pattern in patterns:
        pattern_set.Add(pattern)
    pattern_set.Compile()
    return pattern_set


def check_pattern(pattern: str) -> None:
    """Raise PatternError naming the first construct Oracle REGEXP_LIKE reads differently from
    RE2, or that does not compile; return when the pattern means the same in both."""
    difference = oracle_difference(pattern)
    if difference is not None:
        raise PatternError(
            f"pattern {pattern!r} uses {difference}, which Oracle REGEXP_LIKE reads differently"
        )
    compile_pattern(pattern)


def oracle_difference(pattern: str) -> str | None:
    """The first construct of `pattern` outside the subset both engines read alike, or None."""
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        following = pattern[i + 1] if i + 1 < n else ""
        if c == "\\":
            if following.isalnum() and following not in _PERL_CLASSES:
                return f"the escape \\{following}"
            i += 2
            continue
        if c == "[":
            end = _bracket_end(pattern, i)
            body = pattern[i + 1 : end]
            if "[:" in body or "[=" in body or "[." in body:
                return f"the POSIX bracket expression {pattern[i : end + 1]}"
            if "\\" in body:  # Oracle takes a backslash in brackets literally; RE2 as an escape
                return f"a backslash inside the bracket expression {pattern[i : end + 1]}"
            i = end + 1
            continue
        if c == "(" and following == "?":
            return "a (?…) group or inline flag"
        if c == "{" and following == ",":
            return "the quantifier {,n}"
        i += 1
    return None


def _bracket_end(pattern: str, start: int) -> int:
    """The index of the `]` closing the bracket expression opened at `start` (a `]` first in it,
    after an optional `^`, is a literal), or the last index when it is not closed (RE2 then
    refuses the pattern)."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while i < len(pattern):
        if pattern[i] == "[" and pattern[i + 1 : i + 2] in (":", "=", "."):
            close = pattern.find(pattern[i + 1] + "]", i + 2)
            i = close + 2 if close >= 0 else len(pattern)
            continue
        if pattern[i] == "]":
            return i
        i += 1
    return len(pattern) - 1
