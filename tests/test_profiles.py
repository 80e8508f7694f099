"""Profile loading, validation, choice by benchmark, and the cluster placeholder. No services."""

from pathlib import Path

import pytest

from consumer.profiles import (
    CONTROL_PLANE,
    Profile,
    ProfileError,
    Query,
    check_rules,
    load_profile,
    load_profiles,
    profiles_for,
    promql_string,
    render,
    unguarded_selectors,
)

LABEL = "openshift_cluster_name"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


# -- rendering and escaping ---------------------------------------------------------------------


def test_placeholder_becomes_cluster_matcher():
    query = 'sum(irate(container_cpu_usage_seconds_total{name!="",$cluster,container!="POD"}[2m])) by (namespace)'
    assert render(query, LABEL, "perf-412") == (
        'sum(irate(container_cpu_usage_seconds_total{name!="",openshift_cluster_name="perf-412",container!="POD"}[2m]))'
        " by (namespace)"
    )


@pytest.mark.parametrize(
    "value, literal",
    [
        ("plain", '"plain"'),
        ('a"b', r'"a\"b"'),
        ("a\\b", r'"a\\b"'),
        ("a}b,c=d", '"a}b,c=d"'),
        ("line\nbreak\ttab\rret", r'"line\nbreak\ttab\rret"'),
        ("bell\x07del\x7f", r'"bell\u0007del\u007f"'),
        ("ünï€", '"ünï€"'),
    ],
)
def test_promql_string_escapes(value, literal):
    assert promql_string(value) == literal


def test_hostile_cluster_name_stays_one_matcher_value():
    cluster = 'x"} or vector(1) or {a="\\'
    rendered = render("up{$cluster}", LABEL, cluster)
    assert rendered == 'up{openshift_cluster_name="x\\"} or vector(1) or {a=\\"\\\\"}'
    # Read back the literal with Go-like unescaping: it is the cluster name and nothing more.
    literal = rendered[len("up{openshift_cluster_name=") : -1]
    assert literal.startswith('"') and literal.endswith('"')
    assert literal[1:-1].encode().decode("unicode_escape") == cluster


def test_dollar_groups_in_strings_are_left_alone():
    query = 'label_replace(kube_node_role{$cluster,role="master"}, "instance", "$1", "node", "(.+)") or x{$cluster,a="$cluster"}'
    rendered = render(query, LABEL, "c")
    assert rendered == (
        'label_replace(kube_node_role{openshift_cluster_name="c",role="master"}, "instance", "$1", "node", "(.+)")'
        ' or x{openshift_cluster_name="c",a="$cluster"}'
    )


def test_label_name_must_be_a_label():
    with pytest.raises(ValueError):
        render("up{$cluster}", 'x="y",z', "c")


# -- the selector check -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "up{$cluster}",
        '{__name__="up",$cluster}',
        "sum by (namespace) (rate(a{$cluster}[5m])) / on (namespace) group_left(pod) b{ $cluster , x=~'y' }",
        "histogram_quantile(0.99, sum(irate(h_bucket{$cluster}[2m])) by (le)) > 0 and bool 1",
        "max_over_time(a{$cluster}[1h:30s] offset 5m) * 1e3 - Inf + NaN + 0x1f",
        "topk(3, sum without (pod) (a{$cluster})) unless ignoring(x) b{$cluster}",
        "count_values(\"v\", a{$cluster}) # a comment with b",
    ],
)
def test_guarded_queries_pass(query):
    assert unguarded_selectors(query) == []


@pytest.mark.parametrize(
    "query, unguarded",
    [
        ("up", ["up"]),
        ("rate(a{$cluster}[5m]) / rate(b[5m])", ["b"]),
        ('a{$cluster} and on (instance) kube_node_role{role="master"}', ["kube_node_role{...}"]),
        ('sum(x{job="$cluster"})', ["x{...}"]),  # a placeholder inside a string is not a matcher
        ("a{$clusterx}", ["a{...}"]),
        ('{__name__="up"} + a{$cluster}', ["{...}"]),
    ],
)
def test_unguarded_selectors_are_found(query, unguarded):
    assert unguarded_selectors(query) == unguarded


# -- loading ------------------------------------------------------------------------------------


def test_shipped_profiles_load_and_guard_every_selector():
    profiles = load_profiles()
    control = profiles[CONTROL_PLANE]
    names = [query.name for query in control.queries]
    assert names[:4] == ["podCPU", "podMemory", "masterCPU", "masterMemoryUsage"]
    for wanted in (
        "readOnlyAPICallsLatencyP99",
        "mutatingAPICallsLatencyP99",
        "kubeAPIServerCPU",
        "etcdMemory",
        "openshiftAPIServerCPU",
        "kubeControllerManagerMemory",
        "etcdBackendCommitDurationP99",
        "etcdWALFsyncDurationP99",
        "ovnkubeControlPlaneCPU",
        "etcdLeaderChangesRate",
        "etcdPeerRoundTripP99",
        "APIRequestRate",
    ):
        assert wanted in names
    assert isinstance(control.version, int)
    for profile in profiles.values():
        for query in profile.queries:
            assert unguarded_selectors(query.template) == [], (profile.name, query.name)
            assert "{{" not in query.template and "elapsed" not in query.template


def test_masters_are_selected_by_joining_node_roles():
    control = load_profiles()[CONTROL_PLANE]
    master_cpu = next(q for q in control.queries if q.name == "masterCPU").render(LABEL, "c")
    assert 'kube_node_role{openshift_cluster_name="c",role="master"}' in master_cpu
    assert '"instance", "$1", "node", "(.+)"' in master_cpu


def test_profile_dir_adds_and_overrides(tmp_path):
    write(tmp_path, "control-plane", "name: control-plane\nversion: 99\nqueries:\n  - {name: q, query: 'up{$cluster}'}\n")
    write(tmp_path, "extra", "name: extra\nversion: 1\nqueries:\n  - name: e\n    query: up{$cluster}\n    unit: x\n")
    profiles = load_profiles(tmp_path)
    assert profiles[CONTROL_PLANE].version == 99
    assert profiles[CONTROL_PLANE].queries == (Query("q", "up{$cluster}"),)
    assert profiles["extra"].queries == (Query("e", "up{$cluster}", "x"),)
    assert "node" in profiles  # shipped profiles not overridden stay


@pytest.mark.parametrize(
    "text, problem",
    [
        ("name: p\nversion: 1\nqueries: [\n", "not valid YAML"),
        ("- a\n", "not a mapping"),
        ("name: p\nqueries: [{name: q, query: 'up{$cluster}'}]\n", "missing version"),
        ("name: p\nversion: one\nqueries: [{name: q, query: 'up{$cluster}'}]\n", "version 'one'"),
        ("name: p\nversion: 1\nqueries: []\n", "queries is not a non-empty list"),
        ("name: p\nversion: 1\nqueries: [{name: q}]\n", "queries[0] needs a name and a query"),
        ("name: p\nversion: 1\nqueries: [{name: q, query: 'up{$cluster}'}, {name: q, query: 'a{$cluster}'}]\n", "query 'q' appears twice"),
        ("name: p\nversion: 1\nqueries: [{name: q, query: 'up'}]\n", "query 'q' has no $cluster matcher"),
        ("name: p\nversion: 1\nqueries: [{name: q, query: 'a{$cluster} / b'}]\n", "query 'q': selector b has no $cluster"),
        ("name: p\nversion: 1\nqueries: [{name: q, query: 'up{$cluster}', unti: s}]\n", "unknown keys unti"),
        ("name: other\nversion: 1\nqueries: [{name: q, query: 'up{$cluster}'}]\n", "differs from the file name"),
    ],
)
def test_bad_profiles_fail_with_one_line_naming_the_file(tmp_path, text, problem):
    path = write(tmp_path, "p", text)
    with pytest.raises(ProfileError) as caught:
        load_profiles(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message


def test_missing_profile_dir_is_an_error(tmp_path):
    with pytest.raises(ProfileError, match="not a folder"):
        load_profiles(tmp_path / "nope")


def test_load_profile_reads_one_file(tmp_path):
    path = write(tmp_path, "one", "name: one\nversion: 3\nqueries: [{name: q, query: 'up{$cluster}', description: d}]\n")
    assert load_profile(path) == Profile("one", 3, (Query("q", "up{$cluster}", None, "d"),), str(path))


# -- choosing profiles for a benchmark ----------------------------------------------------------


def profile(name: str) -> Profile:
    return Profile(name, 1, (Query("q", "up{$cluster}"),))


AVAILABLE = {name: profile(name) for name in ("control-plane", "node", "network")}


@pytest.mark.parametrize(
    "benchmark, expected",
    [
        ("node-density-cni", ["control-plane", "node"]),  # control-plane first although listed last
        ("node-density", ["control-plane", "node"]),
        ("cluster-density-v2", ["control-plane"]),
        ("ingress-perf", ["network"]),
        (None, ["control-plane"]),
    ],
)
def test_first_matching_glob_wins(benchmark, expected):
    rules = (("node-density*", ("node", "control-plane", "node")), ("ingress-*", ("network",)), ("*", ("control-plane",)))
    assert [p.name for p in profiles_for(benchmark, rules, AVAILABLE)] == expected


def test_no_matching_rule_means_no_profiles():
    assert profiles_for("cluster-density", (("node-*", ("node",)),), AVAILABLE) == []


def test_unknown_profile_names_are_errors():
    rules = (("*", ("control-plane", "nope")),)
    with pytest.raises(ProfileError, match="unknown profile nope"):
        profiles_for("x", rules, AVAILABLE)
    with pytest.raises(ProfileError, match="unknown profile nope"):
        check_rules(rules, AVAILABLE)
    check_rules((("*", ("node",)),), AVAILABLE)
