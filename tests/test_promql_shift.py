"""PromQL shifted in time, and the grid of a run's window (benchmarks/promql_shift.py): pure text and
arithmetic. That the shifted queries give the client-side path's values on a real server is
checked by benchmarks/thanos_window.py and the benchmark's smoke run (tests/test_benchmarks.py).
"""

from __future__ import annotations

import pytest

from benchmarks.promql_shift import Unsupported, grid, shifted, window_sum_max_count
from consumer.profiles import load_profiles


@pytest.mark.parametrize(
    ("query", "want"),
    [
        ("up", "up offset 5ms"),
        ('up{job="a"}', 'up{job="a"} offset 5ms'),
        ('{__name__=~"up|down"}', '{__name__=~"up|down"} offset 5ms'),
        ("rate(x_total[2m])", "rate(x_total[2m] offset 5ms)"),
        ('sum by (instance) (irate(x{mode!="idle"}[2m]))', 'sum by (instance) (irate(x{mode!="idle"}[2m] offset 5ms))'),
        ("sum(x) by (le, verb) > 0", "sum(x offset 5ms) by (le, verb) > 0"),
        ("topk(3, sum(x) by (pod))", "topk(3, sum(x offset 5ms) by (pod))"),
        ("a - on (instance) group_left(node) b", "a offset 5ms - on (instance) group_left(node) b offset 5ms"),
        ("a and ignoring(x) b or c unless d", "a offset 5ms and ignoring(x) b offset 5ms or c offset 5ms unless d offset 5ms"),
        ('label_replace(kube_node_role{role="master"}, "instance", "$1", "node", "(.+)")',
         'label_replace(kube_node_role{role="master"} offset 5ms, "instance", "$1", "node", "(.+)")'),
        ('count_values("v", x)', 'count_values("v", x offset 5ms)'),
        ("histogram_quantile(0.99, rate(b_bucket[5m]))", "histogram_quantile(0.99, rate(b_bucket[5m] offset 5ms))"),
        ("x > bool 1e3", "x offset 5ms > bool 1e3"),
        ("x # a comment {y}\n", "x offset 5ms # a comment {y}\n"),
        ("vector(1)", "vector(1)"),
        ("a:recorded:rate5m", "a:recorded:rate5m offset 5ms"),
        ('x{a="by (b)", c=~"sum(.*)"}', 'x{a="by (b)", c=~"sum(.*)"} offset 5ms'),
        ("x * Inf > NaN", "x offset 5ms * Inf > NaN"),
    ],
)
def test_every_selector_gets_the_offset_and_nothing_else_does(query: str, want: str):
    assert shifted(query, 5) == want


@pytest.mark.parametrize(
    "query",
    [
        "time() - x",
        "timestamp(x)",
        "hour(x)",
        "predict_linear(x[1h], 60)",
        "x @ 1700000000",
        "x @ end()",
        "max_over_time(x[5m:1m])",
        "max_over_time((a + b)[5m:])",
        "x offset 5m",
        "rate(x[5m] offset 1h)",
        "sum(x",
        "x)",
        'x{a="unterminated}',
    ],
)
def test_what_cannot_be_shifted_exactly_is_refused(query: str):
    with pytest.raises(Unsupported):
        shifted(query, 5)
    with pytest.raises(Unsupported):  # the same verdict with nothing to shift
        shifted(query, 0)


def test_no_shift_leaves_the_query_as_it_is():
    assert shifted("sum(rate(x[2m])) by (a)", 0) == "sum(rate(x[2m])) by (a)"


def test_every_shipped_query_can_be_shifted():
    for profile in load_profiles().values():
        for query in profile.queries:
            rendered = query.render("openshift_cluster_name", "c")
            assert " offset 1234ms" in shifted(rendered, 1234), query.name


@pytest.mark.parametrize("start", [1_714_644_000_000, 1_714_644_003_123, 1_714_644_009_999, 1_714_644_010_001])
@pytest.mark.parametrize("span", [0, 9_999, 10_000, 3_600_000, 3_600_001, 36 * 3_600_000 + 4_321])
def test_the_grid_lands_on_the_runs_own_points(start: int, span: int):
    step = 10_000
    end = start + span
    one = grid(start, end, step)
    own = [start + k * step for k in range(span // step + 1)]
    # The epoch multiples the subquery evaluates, in (eval - range, eval], shifted back by the offset.
    first = -(-(one.eval_ms - one.range_ms) // step) * step
    evaluated = [t - one.offset_ms for t in range(first, one.eval_ms + 1, step)]
    assert evaluated == own and one.points == len(own)
    assert one.eval_ms % step == 0 and 0 <= one.offset_ms < step
    assert (one.eval_ms - one.range_ms) % step != 0  # open or closed on the left, the same points


def test_the_summary_tags_every_window_and_statistic():
    expression = window_sum_max_count("up", [grid(0, 60_000, 10_000), grid(5, 20_005, 10_000)], at=True)
    for tag in ("s0", "m0", "c0", "s1", "m1", "c1"):
        assert f'"{tag}"' in expression
    assert expression.count(" or ") == 5 and expression.count("@ ") == 6
    assert "up offset 9995ms" in expression and "up)" in expression
