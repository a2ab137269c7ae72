"""What a queue accepts: job options, rates, retention and backoff, checked before
anything is written (pure logic, no Ray)."""

import pytest

import dotdo
from actors.options import OPTIONS, JobSpec, Keep, Rate
from dotdo.jobmodel import option_help


@pytest.mark.parametrize("text, count, seconds", [
    ("100/s", 100, 1.0), ("6000/min", 6000, 60.0), ("10/h", 10, 3600.0),
    ("50/10s", 50, 10.0), ("1 / 2 minutes", 1, 120.0), ("3/day", 3, 86_400.0),
])
def test_rates_read_as_count_per_period(text, count, seconds):
    assert Rate.parse("rate", text) == Rate(count, seconds)


@pytest.mark.parametrize("text", ["100", "0/s", "100/ms", "x/s", "100/0s", 100, "-1/s"])
def test_bad_rates_name_the_option_and_show_good_ones(text):
    with pytest.raises(ValueError, match=r"key_rate .*'100/s'|key_rate allows at least 1"):
        Rate.parse("key_rate", text)


def test_keep_takes_a_count_an_age_or_both():
    assert Keep.parse("keep_completed", 5) == Keep(5, None)
    assert Keep.parse("keep_completed", {"age": 60}) == Keep(None, 60)
    assert Keep.parse("keep_completed", {"count": 1, "age": 2}) == Keep(1, 2)
    assert Keep.parse("keep_completed", None) == Keep(None, None)
    for bad in (-1, 2.5, {}, {"count": 1, "days": 2}, "all", {"age": float("nan")}):
        with pytest.raises(ValueError, match="keep_failed"):
            Keep.parse("keep_failed", bad)


@pytest.mark.parametrize("options, match", [
    ({"debounce": 5}, "debounce= needs dedupe_key="),
    ({"debounce": 5, "unique_for": 5, "dedupe_key": "k"}, "not both"),
    ({"debounce": 0, "dedupe_key": "k"}, "debounce must be"),
    ({"unique_for": -1}, "unique_for must be"),
    ({"group": ""}, "group is a non-empty str"),
    ({"group": 7}, "group is a non-empty str"),
    ({"rate_key": ["a"]}, "rate_key is a non-empty str"),
    ({"depends_on": "parent"}, "depends_on is a list"),
    ({"depends_on": [1]}, "depends_on holds job ids"),
    ({"depends_on": ["me"], "job_id": "me"}, "cannot depend on itself"),
    ({"on_parent_failure": "ignore"}, "on_parent_failure is 'fail' or 'cancel'"),
    ({"backoff": -1}, "backoff must be"),
    ({"backoff": []}, "backoff as a list"),
    ({"backoff": [1, "x"]}, "backoff must be"),
    ({"debounce": 1, "dedupe_key": "k", "run_at": 5}, "leave out run_at"),
])
def test_bad_job_options_name_the_option(options, match):
    with pytest.raises(ValueError, match=match):
        JobSpec.parse({"type": "echo", **options}, now=0.0)


def test_unique_for_without_a_key_is_unique_by_type_and_payload():
    def key(payload, job_type="echo"):
        return JobSpec.parse({"type": job_type, "payload": payload, "unique_for": 60}, 0).dedupe_key
    assert key({"a": 1}) == key({"a": 1}) != key({"a": 2})
    assert key(1, "echo") != key(1, "other")


def test_debounce_sets_the_run_time():
    spec = JobSpec.parse({"type": "echo", "debounce": 5, "dedupe_key": "k"}, now=100.0)
    assert spec.run_at == 105.0 and not spec.plain
    assert JobSpec.parse({"type": "echo"}, now=100.0).plain


def test_every_job_option_is_checked_here_and_documented_once():
    # dotdo.JobOptions is the one list: what JobSpec accepts, and each key's help text
    assert OPTIONS == set(dotdo.JobEntry.__annotations__)
    assert set(option_help()) == OPTIONS and all(option_help().values())
    with pytest.raises(TypeError, match="unknown job option.*'retries'.*max_retries"):
        JobSpec.parse({"type": "t", "retries": 3}, 0.0)
