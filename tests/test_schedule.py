"""Every spelling of ``every`` parses to the right next fire times (no Ray needed)."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from dotdo import every
from dotdo.schedule import parse_time

UTC = dt.timezone.utc
# Wednesday 2026-03-04 10:17:30 UTC
NOW = dt.datetime(2026, 3, 4, 10, 17, 30, tzinfo=UTC).timestamp()


def nexts(schedule, start=NOW, n=3, tz=UTC):
    out, t = [], start
    for _ in range(n):
        t = schedule.next_after(t)
        out.append(dt.datetime.fromtimestamp(t, tz).strftime("%a %Y-%m-%d %H:%M:%S"))
    return out


@pytest.mark.parametrize(
    "schedule, expected",
    [
        (every(30).seconds, ["Wed 2026-03-04 10:18:00", "Wed 2026-03-04 10:18:30", "Wed 2026-03-04 10:19:00"]),
        (every(5).minutes, ["Wed 2026-03-04 10:22:30", "Wed 2026-03-04 10:27:30", "Wed 2026-03-04 10:32:30"]),
        (every(2).hours, ["Wed 2026-03-04 12:17:30", "Wed 2026-03-04 14:17:30", "Wed 2026-03-04 16:17:30"]),
        (every(1).days, ["Thu 2026-03-05 10:17:30", "Fri 2026-03-06 10:17:30", "Sat 2026-03-07 10:17:30"]),
        (every.minute, ["Wed 2026-03-04 10:18:00", "Wed 2026-03-04 10:19:00", "Wed 2026-03-04 10:20:00"]),
        (every.hour, ["Wed 2026-03-04 11:00:00", "Wed 2026-03-04 12:00:00", "Wed 2026-03-04 13:00:00"]),
        (every.day, ["Thu 2026-03-05 00:00:00", "Fri 2026-03-06 00:00:00", "Sat 2026-03-07 00:00:00"]),
        (every.day.at("midnight"), ["Thu 2026-03-05 00:00:00", "Fri 2026-03-06 00:00:00", "Sat 2026-03-07 00:00:00"]),
        (every.day.at("noon"), ["Wed 2026-03-04 12:00:00", "Thu 2026-03-05 12:00:00", "Fri 2026-03-06 12:00:00"]),
        (every.day.at("9am"), ["Thu 2026-03-05 09:00:00", "Fri 2026-03-06 09:00:00", "Sat 2026-03-07 09:00:00"]),
        (every.day.at("5:30pm"), ["Wed 2026-03-04 17:30:00", "Thu 2026-03-05 17:30:00", "Fri 2026-03-06 17:30:00"]),
        (every.day.at("17:45"), ["Wed 2026-03-04 17:45:00", "Thu 2026-03-05 17:45:00", "Fri 2026-03-06 17:45:00"]),
        (every.monday.at("9am"), ["Mon 2026-03-09 09:00:00", "Mon 2026-03-16 09:00:00", "Mon 2026-03-23 09:00:00"]),
        (every.friday, ["Fri 2026-03-06 00:00:00", "Fri 2026-03-13 00:00:00", "Fri 2026-03-20 00:00:00"]),
        (every.weekday.at("8:30am"), ["Thu 2026-03-05 08:30:00", "Fri 2026-03-06 08:30:00", "Mon 2026-03-09 08:30:00"]),
        (every.cron("*/20 * * * *"), ["Wed 2026-03-04 10:20:00", "Wed 2026-03-04 10:40:00", "Wed 2026-03-04 11:00:00"]),
    ],
    ids=lambda v: getattr(v, "label", None) or "",
)
def test_spellings(schedule, expected):
    assert nexts(schedule) == expected


def test_tz_follows_daylight_saving():
    # Europe/Berlin moves from UTC+1 to UTC+2 on Sunday 2026-03-29.
    berlin = ZoneInfo("Europe/Berlin")
    start = dt.datetime(2026, 3, 27, 12, 0, tzinfo=berlin).timestamp()
    schedule = every.day.at("9am", tz="Europe/Berlin")
    local = nexts(schedule, start, n=4, tz=berlin)
    assert local == ["Sat 2026-03-28 09:00:00", "Sun 2026-03-29 09:00:00",
                     "Mon 2026-03-30 09:00:00", "Tue 2026-03-31 09:00:00"]
    utc = nexts(schedule, start, n=4)
    assert [s[-8:] for s in utc] == ["08:00:00", "07:00:00", "07:00:00", "07:00:00"]


def test_cron_in_a_zone():
    schedule = every.cron("0 9 * * 1", tz="America/New_York")
    assert nexts(schedule, n=1, tz=ZoneInfo("America/New_York")) == ["Mon 2026-03-09 09:00:00"]


@pytest.mark.parametrize(
    "make, bad_part",
    [
        (lambda: every.day.at("25:00"), "hour 25"),
        (lambda: every.day.at("9:75"), "minute 75"),
        (lambda: every.day.at("13pm"), "hour 13"),
        (lambda: every.monday.at("soon"), "'soon' is not a time of day"),
        (lambda: every(0).minutes, "every(0)"),
        (lambda: every(-2).seconds, "every(-2)"),
        (lambda: every.cron("nope"), "'nope' is not a cron expression"),
        (lambda: every.cron("61 * * * *"), "is not a cron expression"),
        (lambda: every.day.at("9am", tz="Mars/Olympus"), "Mars/Olympus"),
    ],
)
def test_bad_spellings_name_the_bad_part(make, bad_part):
    with pytest.raises(ValueError) as info:
        make()
    assert bad_part in str(info.value)


def test_unknown_names_say_what_exists():
    with pytest.raises(AttributeError, match="every.cron"):
        every.fortnight  # noqa: B018
    with pytest.raises(AttributeError, match="seconds, minutes"):
        every(3).weeks  # noqa: B018


@pytest.mark.parametrize(
    "text, hm", [("midnight", (0, 0)), ("noon", (12, 0)), ("12am", (0, 0)), ("12pm", (12, 0)),
                 ("9am", (9, 0)), ("9:05 PM", (21, 5)), ("17:45", (17, 45)), ("0:00", (0, 0))]
)
def test_parse_time(text, hm):
    assert parse_time(text) == hm


@pytest.mark.parametrize(
    "make, bad_part",
    [
        (lambda: every(float("nan")), "every(nan)"),
        (lambda: every(float("inf")), "every(inf)"),
        (lambda: every(float("-inf")), "every(-inf)"),
        (lambda: every(10**400), "n must be a finite number"),
        (lambda: every(True), "every(True)"),
        (lambda: every(1e308).days, "every(1e+308).days: interval=inf"),
    ],
    ids=["nan", "inf", "-inf", "huge-int", "bool", "overflowing-unit"],
)
def test_nan_and_infinity_are_refused(make, bad_part):
    with pytest.raises(ValueError) as info:
        make()
    assert bad_part in str(info.value)


@pytest.mark.parametrize("interval", [float("nan"), float("inf"), 0, -1.0, "5"])
def test_schedule_refuses_a_bad_interval(interval):
    from dotdo.schedule import Schedule

    with pytest.raises(ValueError, match="interval="):
        Schedule(interval=interval)
