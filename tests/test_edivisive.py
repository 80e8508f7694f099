"""E-Divisive means with the Student-t test: the p-values and the change points it finds."""

from __future__ import annotations

import math
import random

import pytest

from consumer.edivisive import change_points, student_t_sf2, t_test


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, 7.0, 40.0])
def test_student_t_p_values_match_the_closed_forms(t):
    # df = 1 (Cauchy) and df = 2 have closed forms for P(|T| >= t).
    assert student_t_sf2(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), rel=1e-9, abs=1e-15)
    assert student_t_sf2(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9, abs=1e-15)


def test_large_samples_approach_the_normal_distribution():
    assert student_t_sf2(1.959964, 100_000) == pytest.approx(0.05, rel=1e-3)
    assert student_t_sf2(2.010635, 48) == pytest.approx(0.05, rel=1e-4)  # the t table's 48 df


def test_t_test_pools_the_population_variances_as_otava_does():
    left, right = [1.0, 2.0, 3.0, 4.0], [6.0, 7.0]
    # Otava passes numpy's std (ddof 0) to a pooled test: var 1.25 and 0.25, pooled over 4 df.
    pooled = (3 * 1.25 + 1 * 0.25) / 4
    t = (6.5 - 2.5) / math.sqrt(pooled * (1 / 4 + 1 / 2))
    p_value, mean_left, mean_right = t_test(left, right)
    assert (mean_left, mean_right) == (2.5, 6.5) and p_value == pytest.approx(student_t_sf2(t, 4))
    assert t_test([5.0, 5.0], [5.0]) == (1.0, 5.0, 5.0) and t_test([5.0, 5.0], [6.0])[0] == 0.0


def test_a_step_is_found_where_it_starts_and_noise_has_none():
    rng = random.Random(5)
    noise = [100 * (1 + rng.uniform(-0.03, 0.03)) for _ in range(40)]
    assert change_points(noise) == []
    step = noise[:25] + [value * 1.2 for value in noise[25:]]
    [point] = change_points(step)
    assert point.index == 25 and point.p_value < 1e-10 and point.mean_after / point.mean_before == pytest.approx(1.2, rel=0.02)
    last = noise[:30] + [125.0]
    assert [point.index for point in change_points(last)] == [30]
