"""PromQL text for summarising a window on the server: a query shifted in time, and its summary.

Measured against the product's client-side path by benchmarks/thanos_window.py; the product does
not use it (consumer/thanos.py says why: three evaluations of the query instead of one).

A run's window is evaluated on its own grid, ``start + k * step``. A subquery ``(Q)[d:step]`` samples
multiples of ``step`` counted from the epoch instead (README, section 5), so it would read other
points. :func:`shifted` adds ``offset δ`` to every selector of ``Q``: ``Q`` shifted by δ, evaluated
at ``t``, is ``Q`` evaluated at ``t - δ``. With δ the distance from the run's start up to the next
epoch multiple of the step, the subquery's epoch grid lands exactly on ``start + k * step``.

That holds for selectors, ``rate``/``irate`` and friends (their range boundaries follow the offset),
aggregations, joins and ``label_replace``. It does not for what reads the evaluation time itself
(``time()``, ``timestamp()``, the calendar functions, ``predict_linear``), for ``@`` and for
subqueries inside the query (their own grids), nor for selectors carrying an offset already: for
those :func:`shifted` raises :class:`Unsupported` and the caller summarises client-side.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


class Unsupported(ValueError):
    """The query cannot be shifted exactly; summarise it another way."""


# Labels the summary adds to tell its parts apart; removed again when the answer is read.
STAT_LABEL = "__perf_reports_stat"
NAME_LABEL = "__perf_reports_name"  # the series' __name__, which *_over_time would drop

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?(?:\d+(?:ms|[smhdwy]))*)
  | (?P<ident>[a-zA-Z_][a-zA-Z0-9_:]*)  # a leading ":" lexes apart, harmlessly
  | (?P<op>=~|!~|==|!=|<=|>=|[-+*/%^<>=,(){}\[\]:@])
    """,
    re.VERBOSE,
)

# Words followed by a list of label names in parentheses.
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_AGGREGATORS = frozenset({"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk",
                          "count_values", "quantile", "limitk", "limit_ratio"})
_KEYWORDS = frozenset({"and", "or", "unless", "atan2", "bool", "inf", "nan"})
# Functions whose value depends on the evaluation time itself, not only on the data it selects.
_TIME_FUNCTIONS = frozenset({"time", "timestamp", "minute", "hour", "day_of_month", "day_of_week", "day_of_year",
                             "days_in_month", "month", "year", "predict_linear", "start", "end"})


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int


def _tokens(query: str) -> list[_Token]:
    tokens = []
    position = 0
    while position < len(query):
        match = _TOKEN.match(query, position)
        if match is None:
            raise Unsupported(f"unexpected {query[position:position + 10]!r} at {position}")
        if match.lastgroup != "space":
            tokens.append(_Token(match.lastgroup or "", match.group(), match.start(), match.end()))
        position = match.end()
    return tokens


def _closing(tokens: Sequence[_Token], index: int) -> int:
    """The index of the bracket closing the one at ``index``."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    stack = []
    for i in range(index, len(tokens)):
        text = tokens[i].text if tokens[i].kind == "op" else ""
        if text in pairs:
            stack.append(pairs[text])
        elif text in (")", "}", "]"):
            if not stack or stack.pop() != text:
                raise Unsupported("unbalanced brackets")
            if not stack:
                return i
    raise Unsupported("unbalanced brackets")


def _is(tokens: Sequence[_Token], index: int, text: str) -> bool:
    return index < len(tokens) and tokens[index].kind == "op" and tokens[index].text == text


def shifted(query: str, offset_ms: int) -> str:
    """``query`` with ``offset <offset_ms>ms`` after every selector: its value at ``t`` is the
    original's at ``t - offset_ms``. Raises :class:`Unsupported` where that would not hold."""
    if offset_ms < 0:
        raise ValueError("the offset is not negative")
    if offset_ms == 0:
        _selector_ends(_tokens(query))  # the same checks, so both paths accept the same queries
        return query
    out, last = [], 0
    for position in _selector_ends(_tokens(query)):
        out += [query[last:position], f" offset {offset_ms}ms"]
        last = position
    out.append(query[last:])
    return "".join(out)


def _selector_ends(tokens: Sequence[_Token]) -> list[int]:
    """Where each selector of the query ends (after its ``[range]``), in the query's text."""
    wrapped = [_Token("op", "(", 0, 0), *tokens, _Token("op", ")", 0, 0)]
    if _closing(wrapped, 0) != len(wrapped) - 1:
        raise Unsupported("unbalanced brackets")
    ends = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.kind == "op" and token.text == "@":
            raise Unsupported("the query uses @")
        if token.kind == "op" and token.text == "[":
            raise Unsupported("the query has a subquery")  # a range after a selector is consumed below
        if token.kind == "ident":
            word = token.text.lower()
            if word in _LABEL_LISTS:
                i = _closing(tokens, i + 1) + 1 if _is(tokens, i + 1, "(") else i + 1
                continue
            if word == "offset":
                raise Unsupported("the query has offsets of its own")
            if _is(tokens, i + 1, "("):
                if word in _TIME_FUNCTIONS:
                    raise Unsupported(f"{token.text}() depends on the evaluation time")
                i += 1
                continue
            if word in _KEYWORDS or word in _AGGREGATORS:
                i += 1
                continue
            i = _selector(tokens, i, i + 1 if not _is(tokens, i + 1, "{") else _closing(tokens, i + 1) + 1, ends)
            continue
        if token.kind == "op" and token.text == "{":
            i = _selector(tokens, i, _closing(tokens, i) + 1, ends)
            continue
        i += 1
    return ends


def _selector(tokens: Sequence[_Token], first: int, after: int, ends: list[int]) -> int:
    """Record where the selector from ``first`` ends; the index of the token after it."""
    if _is(tokens, after, "["):
        close = _closing(tokens, after)
        if any(_is(tokens, k, ":") for k in range(after, close)):
            raise Unsupported("the query has a subquery")
        after = close + 1
    ends.append(tokens[after - 1].end)
    return after


@dataclass(frozen=True)
class Grid:
    """A run's window on its own grid, as one subquery evaluates it: ``offset_ms`` shifts the
    query, ``range_ms`` and ``eval_ms`` select exactly the epoch-aligned points ``first + k * step``
    up to ``eval_ms``, which are ``start + k * step + offset_ms``."""

    offset_ms: int
    range_ms: int
    eval_ms: int
    step_ms: int
    points: int


def grid(start_ms: int, end_ms: int, step_ms: int) -> Grid:
    """The subquery that evaluates ``start, start + step, ... <= end``."""
    offset = -start_ms % step_ms  # up to the next epoch multiple of the step
    last = (end_ms - start_ms) // step_ms
    eval_ms = start_ms + offset + last * step_ms
    # Half a step more than the span: the first point is in whether the range is closed on the
    # left (Prometheus 2) or open (Prometheus 3), and the point before it is out either way.
    return Grid(offset, last * step_ms + step_ms // 2, eval_ms, step_ms, last + 1)


def window_sum_max_count(query: str, grids: Sequence[Grid], *, at: bool) -> str:
    """One expression that answers, for every grid, the sum, maximum and count of the finite points
    of ``query`` on it, each series tagged with :data:`STAT_LABEL` = ``s<i>``, ``m<i>`` or ``c<i>``
    (``i`` the grid's index).

    ``at``: pin each grid's evaluation time with ``@`` (several windows in one instant query);
    without it, the instant query's own time must be the one grid's ``eval_ms``.
    """
    parts = []
    for index, one in enumerate(grids):
        # NaN and ±Inf points are dropped before they reach the sums, as the client-side path does;
        # the name is kept in a label of its own, since *_over_time drops __name__.
        inner = (f'label_replace(({shifted(query, one.offset_ms)}) > -Inf < +Inf, "{NAME_LABEL}", "$1", "__name__", "(.+)")'
                 f"[{one.range_ms}ms:{one.step_ms}ms]")
        if at:
            inner += f" @ {one.eval_ms // 1000}.{one.eval_ms % 1000:03d}"
        for stat, function in (("s", "sum_over_time"), ("m", "max_over_time"), ("c", "count_over_time")):
            parts.append(f'label_replace({function}({inner}), "{STAT_LABEL}", "{stat}{index}", "", "")')
    return " or ".join(parts)


__all__ = ["Grid", "NAME_LABEL", "STAT_LABEL", "Unsupported", "grid", "shifted", "window_sum_max_count"]
