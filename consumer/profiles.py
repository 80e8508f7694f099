"""Metric profiles: named sets of PromQL queries summarised over a run's window.

A profile is a YAML file::

    name: control-plane
    version: 3                      # bump when queries change: reports record it
    queries:
      - name: podCPU                # unique in the profile; the key in the report
        query: sum(irate(container_cpu_usage_seconds_total{$cluster,name!=""}[2m])) by (namespace)
        unit: cores                 # optional
        description: ...            # optional

Every vector selector of a query carries the placeholder ``$cluster`` among its matchers; it is
replaced by ``<cluster_label>="<cluster>"`` with the value escaped as a PromQL string, so no cluster
name can change the query and no selector can read another cluster's series. ``$1`` and the like
inside string literals (``label_replace``) are left alone.

Profiles ship in ``consumer/profiles/``; a file of the same name in ``PROFILE_DIR`` replaces the
shipped one.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PLACEHOLDER = "$cluster"
CONTROL_PLANE = "control-plane"
SHIPPED_DIR = Path(__file__).parent / "profiles"

_PLACEHOLDER_RE = re.compile(r"\$cluster\b")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
_LABEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ProfileError(ValueError):
    """A profile cannot be loaded or chosen; ``str(err)`` is one line naming the file."""


@dataclass(frozen=True)
class Query:
    name: str
    template: str  # PromQL with $cluster
    unit: str | None = None
    description: str | None = None

    def render(self, cluster_label: str, cluster: str) -> str:
        return render(self.template, cluster_label, cluster)


@dataclass(frozen=True)
class Profile:
    name: str
    version: int
    queries: tuple[Query, ...]
    source: str = "<memory>"  # the file it came from, for messages


# -- rendering ----------------------------------------------------------------------------------

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def promql_string(value: str) -> str:
    """``value`` as a double-quoted PromQL (Go) string literal."""
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def cluster_matcher(cluster_label: str, cluster: str) -> str:
    if not _LABEL_RE.match(cluster_label):
        raise ValueError(f"{cluster_label!r} is not a Prometheus label name")
    return f"{cluster_label}={promql_string(cluster)}"


def render(template: str, cluster_label: str, cluster: str) -> str:
    """``template`` with every ``$cluster`` outside string literals replaced by the cluster matcher."""
    matcher = cluster_matcher(cluster_label, cluster)
    return "".join(
        text if is_string else _PLACEHOLDER_RE.sub(lambda _: matcher, text)
        for is_string, text in _split_strings(template)
    )


def _split_strings(query: str) -> Iterator[tuple[bool, str]]:
    """(is_string_literal, text) pieces of a PromQL expression, strings with their quotes."""
    i, start, n = 0, 0, len(query)
    while i < n:
        quote = query[i]
        if quote in "\"'`":
            if i > start:
                yield False, query[start:i]
            j = i + 1
            while j < n and query[j] != quote:
                j += 2 if quote != "`" and query[j] == "\\" else 1
            yield True, query[i : j + 1]
            i = start = j + 1
        else:
            i += 1
    if start < n:
        yield False, query[start:]


# -- validation: every vector selector carries $cluster ----------------------------------------

# Words that are not metric names where they stand: operators, modifiers, number literals.
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "inf", "nan"}
_LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_TOKEN_RE = re.compile(
    r"""(?P<space>\s+)|(?P<comment>\#[^\n]*)|(?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)[a-zA-Z0-9]*)
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)|(?P<placeholder>\$[A-Za-z0-9_]+)|(?P<string>\x00)|(?P<punct>.)""",
    re.VERBOSE,
)


def unguarded_selectors(query: str) -> list[str]:
    """The vector selectors of ``query`` that lack a ``$cluster`` matcher (empty when all have one).

    A light PromQL lexer, not a parser: enough to find selectors (``name``, ``name{...}``,
    ``{...}``) among functions, aggregations, label lists, durations and literals. Prometheus
    itself checks the syntax when the query is sent.
    """
    # String literals only matter as matcher values: blank them to one opaque token.
    code = "".join("\x00" if is_string else text for is_string, text in _split_strings(query))
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN_RE.finditer(code) if m.lastgroup not in ("space", "comment")]
    bad: list[str] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else None
        if kind == "ident" and text.lower() in _LABEL_LIST_KEYWORDS and following == "(":
            i = _skip_group(tokens, i + 1, "(", ")")  # by (a, b): label names, not metrics
            continue
        if kind == "punct" and text == "[":
            i = _skip_group(tokens, i, "[", "]")  # [2m], [1h:30s]: durations
            continue
        if kind == "ident" and (text.lower() in _KEYWORDS or following == "(" or following in _LABEL_LIST_KEYWORDS):
            i += 1  # a keyword, a function call, or "sum by (...)"
            continue
        if kind == "ident" or (kind == "punct" and text == "{"):
            name = text if kind == "ident" else ""
            j = i + 1 if kind == "ident" else i
            matchers: list[str] = []
            if j < len(tokens) and tokens[j][1] == "{":
                end = _skip_group(tokens, j, "{", "}")
                matchers = [t for k, t in tokens[j + 1 : end - 1] if k == "placeholder"]
                selector = name + "{...}"
                j = end
            else:
                selector = name
            if PLACEHOLDER not in matchers:
                bad.append(selector)
            i = j
            continue
        i += 1
    return bad


def _skip_group(tokens: Sequence[tuple[str | None, str]], i: int, open_: str, close: str) -> int:
    """The index after the bracket that closes the one at ``i``."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j][1] == open_:
            depth += 1
        elif tokens[j][1] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(tokens)


# -- loading ------------------------------------------------------------------------------------


def parse_profile(document: Any, source: str) -> Profile:
    """A profile from a parsed YAML document; :class:`ProfileError` names ``source`` and the problem."""

    def fail(problem: str) -> ProfileError:
        return ProfileError(f"{source}: {problem}")

    if not isinstance(document, Mapping):
        raise fail("not a mapping with name, version and queries")
    missing = [key for key in ("name", "version", "queries") if key not in document]
    if missing:
        raise fail(f"missing {', '.join(missing)}")
    name, version, raw_queries = document["name"], document["version"], document["queries"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise fail(f"name {name!r} is not a profile name")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise fail(f"version {version!r} is not a whole number")
    if not isinstance(raw_queries, list) or not raw_queries:
        raise fail("queries is not a non-empty list")
    queries: list[Query] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_queries):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not isinstance(raw.get("query"), str):
            raise fail(f"queries[{index}] needs a name and a query, both strings")
        qname, template = raw["name"], raw["query"].strip()
        unknown = set(raw) - {"name", "query", "unit", "description"}
        if unknown:
            raise fail(f"query {qname!r} has unknown keys {', '.join(sorted(map(str, unknown)))}")
        if not _NAME_RE.match(qname):
            raise fail(f"query name {qname!r} is not a name")
        if qname in seen:
            raise fail(f"query {qname!r} appears twice")
        seen.add(qname)
        if not _PLACEHOLDER_RE.search(template):
            raise fail(f"query {qname!r} has no {PLACEHOLDER} matcher")
        bad = unguarded_selectors(template)
        if bad:
            raise fail(f"query {qname!r}: selector {', '.join(bad)} has no {PLACEHOLDER} matcher")
        for key in ("unit", "description"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise fail(f"query {qname!r}: {key} is not a string")
        queries.append(Query(qname, template, raw.get("unit"), raw.get("description")))
    return Profile(name, version, tuple(queries), source)


def load_profile(path: Path) -> Profile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ProfileError(f"{path}: cannot be read: {err.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ProfileError(f"{path}: not valid YAML{where}: {problem}") from None
    profile = parse_profile(document, str(path))
    if profile.name != path.stem:
        raise ProfileError(f"{path}: name {profile.name!r} differs from the file name")
    return profile


def load_profiles(profile_dir: Path | None = None, *, shipped_dir: Path = SHIPPED_DIR) -> dict[str, Profile]:
    """The shipped profiles, then those of ``profile_dir`` (``*.yaml``/``*.yml``) replacing same names."""
    profiles: dict[str, Profile] = {}
    for folder in (shipped_dir, profile_dir):
        if folder is None:
            continue
        if not folder.is_dir():
            raise ProfileError(f"{folder}: not a folder of profiles")
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            profile = load_profile(path)
            profiles[profile.name] = profile
    return profiles


def profiles_for(
    benchmark: str | None,
    rules: Iterable[tuple[str, Sequence[str]]],
    available: Mapping[str, Profile],
) -> list[Profile]:
    """The profiles of the first rule whose glob matches ``benchmark``; control-plane first.

    No matching rule gives no profiles. A rule naming an unknown profile is a :class:`ProfileError`
    (check all rules once at start with :func:`check_rules`).
    """
    for pattern, names in rules:
        if fnmatch.fnmatchcase(benchmark or "", pattern):
            unique = list(dict.fromkeys(names))
            unknown = [name for name in unique if name not in available]
            if unknown:
                raise ProfileError(f"BENCHMARK_PROFILES: rule {pattern!r} names unknown profile {', '.join(unknown)}")
            unique.sort(key=lambda name: name != CONTROL_PLANE)  # stable: the rest keep their order
            return [available[name] for name in unique]
    return []


def check_rules(rules: Iterable[tuple[str, Sequence[str]]], available: Mapping[str, Profile]) -> None:
    """Raise :class:`ProfileError` if any rule names a profile that is not loaded."""
    for pattern, names in rules:
        unknown = [name for name in names if name not in available]
        if unknown:
            raise ProfileError(f"BENCHMARK_PROFILES: rule {pattern!r} names unknown profile {', '.join(unknown)}")
