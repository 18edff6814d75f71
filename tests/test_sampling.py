"""The sampling laws, checked on the pure module: node ids and a seed in, a selection out."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from llmharness import sampling
from llmharness.sampling import (
    DEFAULT_UNKNOWN_DURATION,
    Sample,
    agent_seed,
    estimate_unknown,
    parse_fraction,
    parse_seed,
    score,
    select,
    select_budget,
)

SEED_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.-"

# Realistic node ids (file, optional class, test, optional parameters) mixed with arbitrary text.
_ident = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
_realistic_nodeid = st.builds(
    lambda path, cls, name, param: f"tests/{path}.py::{cls}{name}{param}",
    _ident,
    st.sampled_from(["", "TestThing::"]),
    _ident.map(lambda s: f"test_{s}"),
    st.one_of(st.just(""), st.text(max_size=8).map(lambda s: f"[{s}]")),
)
nodeid_st = st.one_of(_realistic_nodeid, st.text(min_size=1, max_size=40))
suite_st = st.lists(nodeid_st, unique=True, max_size=60)
seed_st = st.one_of(
    st.text(alphabet=SEED_ALPHABET, min_size=1, max_size=64),
    st.text().map(agent_seed),
)
fraction_st = st.floats(min_value=1e-6, max_value=1.0, exclude_min=False)


def _ids(count: int, prefix: str = "tests/test_m") -> list[str]:
    return [f"{prefix}{i // 100:04d}.py::test_{i % 100:04d}" for i in range(count)]


def _is_subsequence(part: Sequence[str], whole: Sequence[str]) -> bool:
    remaining = iter(whole)
    return all(item in remaining for item in part)


# -- score ---------------------------------------------------------------------------------


@given(seed=seed_st, nodeid=nodeid_st)
def test_score_is_in_unit_interval_and_deterministic(seed: str, nodeid: str) -> None:
    value = score(seed, nodeid)
    assert 0.0 <= value < 1.0
    assert score(seed, nodeid) == value


def test_score_is_a_pinned_constant_so_every_machine_agrees() -> None:
    # Computed once; a change here means every stored sample and every agent's seed moves.
    assert score("abc", "t.py::x") == 0.7670209877707853
    assert score(agent_seed("7"), "test_m0000.py::test_0000") == score(
        "5ee06a94", "test_m0000.py::test_0000"
    )


def test_scores_are_spread_uniformly() -> None:
    ids = _ids(20_000)
    buckets = [0] * 10
    for nodeid in ids:
        buckets[int(score("5ee06a94", nodeid) * 10)] += 1
    # 2,000 expected per bucket, standard deviation about 42: 5 sigma either side.
    assert all(1790 <= count <= 2210 for count in buckets), buckets


# -- select --------------------------------------------------------------------------------


@given(nodeids=suite_st, fraction=fraction_st, seed=seed_st)
def test_select_is_deterministic_and_describes_itself(
    nodeids: list[str], fraction: float, seed: str
) -> None:
    sample = select(nodeids, fraction, seed)
    assert sample == select(list(nodeids), fraction, seed)
    assert isinstance(sample, Sample)
    assert sample.total == len(nodeids)
    assert sample.fraction == fraction
    assert sample.seed == seed
    assert sample.selected_set == frozenset(sample.selected)


@given(nodeids=suite_st, fraction=fraction_st, seed=seed_st)
def test_membership_is_score_below_fraction_or_the_single_lowest_fallback(
    nodeids: list[str], fraction: float, seed: str
) -> None:
    sample = select(nodeids, fraction, seed)
    below = {nodeid for nodeid in nodeids if score(seed, nodeid) < fraction}
    if below or not nodeids:
        assert sample.selected_set == below
    else:
        lowest = min(nodeids, key=lambda nodeid: (score(seed, nodeid), nodeid))
        assert sample.selected == (lowest,)


@given(
    nodeids=suite_st,
    small=fraction_st,
    large=fraction_st,
    seed=seed_st,
)
def test_smaller_sample_nests_in_larger_one(
    nodeids: list[str], small: float, large: float, seed: str
) -> None:
    small, large = sorted((small, large))
    assert select(nodeids, small, seed).selected_set <= select(nodeids, large, seed).selected_set


@pytest.mark.parametrize("seed", ["5ee06a94", "02ef8e15", "0", "x" * 64])
def test_one_percent_nests_in_ten_percent_on_a_large_suite(seed: str) -> None:
    ids = _ids(5_000)
    one = select(ids, 0.01, seed).selected_set
    ten = select(ids, 0.10, seed).selected_set
    assert one
    assert one <= ten
    assert len(one) < len(ten)


@given(
    common=st.lists(nodeid_st, unique=True, min_size=1, max_size=30),
    only_a=st.lists(nodeid_st, unique=True, max_size=30),
    only_b=st.lists(nodeid_st, unique=True, max_size=30),
    fraction=fraction_st,
    seed=seed_st,
)
def test_membership_does_not_depend_on_the_other_tests(
    common: list[str], only_a: list[str], only_b: list[str], fraction: float, seed: str
) -> None:
    # The never-empty rule picks one test only when no test scores below the fraction; that
    # choice necessarily depends on the rest of the suite, so the law is stated outside it by
    # raising the fraction just above the lowest score of the shared tests.
    lowest = min(score(seed, nodeid) for nodeid in common)
    fraction = max(fraction, math.nextafter(lowest, 1.0))
    suite_a = common + [nodeid for nodeid in only_a if nodeid not in common]
    suite_b = [nodeid for nodeid in only_b if nodeid not in common] + common
    sample_a = select(suite_a, fraction, seed)
    sample_b = select(suite_b, fraction, seed)
    for nodeid in common:
        assert (nodeid in sample_a.selected_set) == (nodeid in sample_b.selected_set)


def test_adding_and_removing_tests_keeps_old_membership_on_a_large_suite() -> None:
    ids = _ids(3_000)
    before = select(ids, 0.1, "5ee06a94").selected_set
    grown = ids + _ids(500, prefix="tests/new/test_n")
    shrunk = ids[::2]
    after_growth = select(grown, 0.1, "5ee06a94").selected_set
    after_shrink = select(shrunk, 0.1, "5ee06a94").selected_set
    assert after_growth & set(ids) == before
    assert after_growth - set(ids)  # some new tests join the sample
    assert after_shrink == before & set(shrunk)


@given(nodeids=suite_st.filter(bool), fraction=fraction_st, seed=seed_st)
def test_never_empty_for_a_non_empty_suite(nodeids: list[str], fraction: float, seed: str) -> None:
    assert len(select(nodeids, fraction, seed).selected) >= 1


@given(fraction=fraction_st, seed=seed_st)
def test_empty_suite_gives_an_empty_sample(fraction: float, seed: str) -> None:
    sample = select([], fraction, seed)
    assert sample.selected == ()
    assert sample.total == 0


@pytest.mark.parametrize("count", [1, 2, 3])
def test_tiny_suite_at_one_percent_runs_one_test(count: int) -> None:
    ids = _ids(count)
    for seed in ("5ee06a94", "02ef8e15", "a", "b"):
        assert len(select(ids, 0.01, seed).selected) >= 1


@given(nodeids=suite_st, fraction=fraction_st, seed=seed_st)
def test_selection_keeps_collection_order(nodeids: list[str], fraction: float, seed: str) -> None:
    sample = select(nodeids, fraction, seed)
    assert _is_subsequence(sample.selected, nodeids)
    assert len(set(sample.selected)) == len(sample.selected)


def test_full_fraction_selects_everything_in_order() -> None:
    ids = _ids(500)
    assert select(ids, 1.0, "5ee06a94").selected == tuple(ids)


@pytest.mark.parametrize(
    ("agent_a", "agent_b"), [("7", "8"), ("1", "2"), ("agent-a", "agent-b"), ("0", "1000")]
)
def test_two_agents_overlap_about_f_squared(agent_a: str, agent_b: str) -> None:
    ids = _ids(20_000)
    a = select(ids, 0.1, agent_seed(agent_a)).selected_set
    b = select(ids, 0.1, agent_seed(agent_b)).selected_set
    overlap = len(a & b)
    # f^2 * N = 200, standard deviation about 14: a 0.006-0.014 band is about 5.7 sigma.
    assert 0.006 * len(ids) <= overlap <= 0.014 * len(ids), overlap
    assert a != b


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5])
@pytest.mark.parametrize("seed", ["5ee06a94", "02ef8e15", "machine"])
def test_sample_size_is_near_fraction_of_suite(fraction: float, seed: str) -> None:
    ids = _ids(20_000)
    size = len(select(ids, fraction, seed).selected)
    expected = fraction * len(ids)
    sigma = math.sqrt(len(ids) * fraction * (1 - fraction))
    assert abs(size - expected) <= 5 * sigma, (size, expected)


# -- parse_fraction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.01", 0.01),
        ("1%", 0.01),
        ("10 %", 0.1),
        ("10%", 0.1),
        (" 0.10 ", 0.1),
        (".5", 0.5),
        ("100%", 1.0),
        ("1", 1.0),
        (0.5, 0.5),
        (1, 1.0),
    ],
)
def test_parse_fraction_accepts(text: str | float, expected: float) -> None:
    assert parse_fraction(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "bad",
    [
        "abc",
        "-1",
        "0",
        "1.5",
        "150%",
        "nan",
        "",
        "inf",
        "%",
        "0%",
        "-5%",
        "1e-400",
        "10%%",
        1.5,
        0,
        float("nan"),
        True,
        None,
        [0.1],
    ],
)
def test_parse_fraction_rejects_and_names_the_value(bad: object) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        parse_fraction(bad)  # type: ignore[arg-type]


@given(st.floats(min_value=0.0, max_value=1.0, exclude_min=True))
def test_parse_fraction_round_trips_decimal_text(value: float) -> None:
    assert parse_fraction(repr(value)) == value
    assert parse_fraction(value) == value


@given(st.floats(min_value=0.0, max_value=100.0, exclude_min=True))
def test_parse_fraction_reads_percentages(percent: float) -> None:
    assume(percent / 100.0 > 0.0)
    assert parse_fraction(f"{percent!r}%") == percent / 100.0


@given(st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not 0.0 < v <= 1.0))
def test_parse_fraction_rejects_every_number_outside_the_interval(value: float) -> None:
    with pytest.raises(ValueError):
        parse_fraction(value)
    with pytest.raises(ValueError):
        parse_fraction(repr(value))


# -- parse_seed and agent_seed -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5e1c", "5e1c"), ("A_b.c-1", "A_b.c-1"), (" x ", "x"), ("7", "7"), ("z" * 64, "z" * 64)],
)
def test_parse_seed_accepts(text: str, expected: str) -> None:
    assert parse_seed(text) == expected


@pytest.mark.parametrize("bad", ["", "   ", "a b", "a/b", "../x", "z" * 65, "é", "seed\n2"])
def test_parse_seed_rejects_and_names_the_value(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        parse_seed(bad)


@given(st.text(alphabet=SEED_ALPHABET, min_size=1, max_size=64))
def test_parse_seed_accepts_its_whole_alphabet(seed: str) -> None:
    assert parse_seed(seed) == seed


@given(st.text())
def test_agent_seed_is_eight_hex_digits_and_a_valid_seed(agent_id: str) -> None:
    seed = agent_seed(agent_id)
    assert re.fullmatch(r"[0-9a-f]{8}", seed)
    assert agent_seed(agent_id) == seed
    assert parse_seed(seed) == seed


def test_agent_seed_is_a_pinned_constant_so_every_machine_agrees() -> None:
    # Computed once; these must never change, or agents' samples move between releases.
    assert agent_seed("7") == "5ee06a94"
    assert agent_seed("8") == "02ef8e15"
    assert agent_seed("agent-42") == "3aa5f69b"


def test_agent_seeds_differ_across_agents() -> None:
    seeds = {agent_seed(str(i)) for i in range(1_000)}
    assert len(seeds) == 1_000


def test_machine_seed_is_stable_and_valid() -> None:
    seed = sampling.machine_seed()
    assert re.fullmatch(r"[0-9a-f]{8}", seed)
    assert sampling.machine_seed() == seed


# -- estimate_unknown ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("durations", "expected"),
    [
        ({}, DEFAULT_UNKNOWN_DURATION),
        ({"a": 2.0}, 2.0),
        ({"a": 1.0, "b": 3.0}, 2.0),
        ({"a": 5.0, "b": 1.0, "c": 2.0}, 2.0),
        ({"a": 0.0, "b": 0.0, "c": 9.0}, 0.0),
    ],
)
def test_estimate_unknown_is_median_of_known(durations: dict[str, float], expected: float) -> None:
    assert estimate_unknown(durations) == expected


@given(st.dictionaries(nodeid_st, st.floats(min_value=0.0, max_value=1e6), min_size=1))
def test_estimate_unknown_matches_statistics_median(durations: dict[str, float]) -> None:
    assert estimate_unknown(durations) == pytest.approx(statistics.median(durations.values()))


# -- select_budget -------------------------------------------------------------------------

duration_st = st.floats(min_value=0.0, max_value=10.0)
budget_st = st.floats(min_value=0.001, max_value=100.0)


@st.composite
def budget_cases(draw: st.DrawFn) -> tuple[list[str], dict[str, float]]:
    nodeids = draw(suite_st)
    timed = draw(st.lists(st.sampled_from(nodeids), unique=True) if nodeids else st.just([]))
    durations = {nodeid: draw(duration_st) for nodeid in timed}
    # Durations of tests no longer in the suite must not matter except for the median.
    durations.update(draw(st.dictionaries(st.text(min_size=41, max_size=45), duration_st)))
    return nodeids, durations


def _costs(sample: Sample, durations: dict[str, float]) -> list[float]:
    unknown = estimate_unknown(durations)
    return [durations.get(nodeid, unknown) for nodeid in sample.selected]


@given(case=budget_cases(), budget=budget_st, seed=seed_st)
def test_budget_sample_fits_unless_a_single_test(
    case: tuple[list[str], dict[str, float]], budget: float, seed: str
) -> None:
    nodeids, durations = case
    sample = select_budget(nodeids, budget, seed, durations)
    costs = _costs(sample, durations)
    assert sample.expected_s == pytest.approx(math.fsum(costs), abs=1e-9)
    if len(sample.selected) > 1:
        assert math.fsum(costs) <= budget + 1e-9
        assert sample.expected_s is not None and sample.expected_s <= budget
    assert sample.budget_s == budget
    assert sample.total == len(nodeids)


@given(case=budget_cases(), budget=budget_st, seed=seed_st)
def test_budget_sample_is_never_empty_deterministic_and_ordered(
    case: tuple[list[str], dict[str, float]], budget: float, seed: str
) -> None:
    nodeids, durations = case
    sample = select_budget(nodeids, budget, seed, durations)
    assert (len(sample.selected) >= 1) == bool(nodeids)
    assert select_budget(list(nodeids), budget, seed, dict(durations)) == sample
    assert _is_subsequence(sample.selected, nodeids)


@given(case=budget_cases(), budget=budget_st, seed=seed_st)
def test_budget_sample_leaves_out_only_tests_that_would_overrun(
    case: tuple[list[str], dict[str, float]], budget: float, seed: str
) -> None:
    nodeids, durations = case
    sample = select_budget(nodeids, budget, seed, durations)
    unknown = estimate_unknown(durations)
    assert sample.expected_s is not None
    for nodeid in set(nodeids) - sample.selected_set:
        assert sample.expected_s + durations.get(nodeid, unknown) > budget


@given(case=budget_cases(), budget=budget_st, seed=seed_st, fraction=fraction_st)
def test_budget_with_fraction_is_a_subset_of_the_fraction_sample(
    case: tuple[list[str], dict[str, float]], budget: float, seed: str, fraction: float
) -> None:
    nodeids, durations = case
    sample = select_budget(nodeids, budget, seed, durations, fraction)
    assert sample.selected_set <= select(nodeids, fraction, seed).selected_set
    assert sample.fraction == fraction
    assert (len(sample.selected) >= 1) == bool(nodeids)


def test_budget_of_untimed_tests_uses_the_default_duration() -> None:
    ids = _ids(100)
    sample = select_budget(ids, 1.0, "5ee06a94", {})
    assert len(sample.selected) == round(1.0 / DEFAULT_UNKNOWN_DURATION)
    assert sample.expected_s == pytest.approx(1.0)
    # The ten lowest-scored tests, whatever their place in the suite.
    by_score = sorted(ids, key=lambda nodeid: score("5ee06a94", nodeid))
    assert sample.selected_set == set(by_score[:10])


def test_budget_prices_untimed_tests_at_the_median_of_known_ones() -> None:
    ids = _ids(13)
    durations = {ids[0]: 2.0, ids[1]: 4.0, ids[2]: 6.0, "gone.py::test_old": 100.0}
    # Known: 2, 4, 6, 100 -> median 5.0; the ten untimed tests each cost 5.0.
    sample = select_budget(ids, 1_000.0, "5ee06a94", durations)
    assert sample.selected == tuple(ids)
    assert sample.expected_s == pytest.approx(2.0 + 4.0 + 6.0 + 10 * 5.0)


def test_budget_takes_the_first_test_even_when_it_alone_overruns() -> None:
    ids = _ids(50)
    first = min(ids, key=lambda nodeid: score("5ee06a94", nodeid))
    durations = dict.fromkeys(ids, 0.01) | {first: 60.0}
    sample = select_budget(ids, 1.0, "5ee06a94", durations)
    assert sample.selected == (first,)
    assert sample.expected_s == pytest.approx(60.0)


def test_budget_passes_over_a_slow_test_and_keeps_filling() -> None:
    ids = _ids(50)
    order = sorted(ids, key=lambda nodeid: score("5ee06a94", nodeid))
    durations = dict.fromkeys(ids, 0.1) | {order[1]: 30.0}
    sample = select_budget(ids, 1.0, "5ee06a94", durations)
    assert order[1] not in sample.selected_set
    assert order[0] in sample.selected_set
    assert sample.selected_set == set(order[:1] + order[2:11])


def test_budget_with_fraction_on_a_large_suite_stays_inside_the_fraction() -> None:
    ids = _ids(5_000)
    ten = select(ids, 0.1, "5ee06a94").selected_set
    sample = select_budget(ids, 10.0, "5ee06a94", dict.fromkeys(ids, 0.01), fraction=0.1)
    assert sample.selected_set <= ten
    # 500-odd tests of 0.01 s fit in 10 s, so the whole fraction sample runs.
    assert sample.selected_set == ten


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0])
def test_budget_treats_invalid_durations_as_unknown(bad: float) -> None:
    ids = _ids(40)
    order = sorted(ids, key=lambda nodeid: score("5ee06a94", nodeid))
    # A damaged index entry must neither swallow the budget nor make every test "free".
    durations = dict.fromkeys(ids, 0.1) | {order[0]: bad, order[1]: bad}
    sample = select_budget(ids, 1.0, "5ee06a94", durations)
    assert math.isfinite(sample.expected_s)
    assert sample.expected_s == pytest.approx(1.0)
    assert sample.selected_set == set(order[:10])
