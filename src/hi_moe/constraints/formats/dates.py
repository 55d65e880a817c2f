"""`date`, `time`, `date-time` and `duration`: RFC 3339 section 5.6 and Appendix A, to the
letter."""

from __future__ import annotations

import re

# -- dates and times: RFC 3339 section 5.6 --------------------------------------------------------

_DATE = r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
# RFC 3339 5.6 allows lower-case "z" (and "t", below) as well; time-offset is mandatory there,
# so a local time without "Z" or a numeric offset is not an RFC 3339 time.
_TIME = (
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|(?P<sign>[+-])(?P<off_hour>[0-9]{2}):(?P<off_minute>[0-9]{2}))"
)
_DATE_RE = re.compile(_DATE)
_TIME_RE = re.compile(_TIME)
_DATE_TIME_RE = re.compile(_DATE + "[Tt]" + _TIME)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _date_fields_ok(match: re.Match[str]) -> bool:
    year, month, day = int(match["year"]), int(match["month"]), int(match["day"])
    if not 1 <= month <= 12:
        return False
    # RFC 3339 5.7 / Appendix C: the Gregorian leap-year rule, year 0000 included (which
    # `datetime.date` cannot represent, hence not `date.fromisoformat`).
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return 1 <= day <= _DAYS_IN_MONTH[month - 1] + (month == 2 and leap)


def _time_fields_ok(match: re.Match[str]) -> bool:
    hour, minute, second = int(match["hour"]), int(match["minute"]), int(match["second"])
    if hour > 23 or minute > 59 or second > 60:
        return False
    offset = 0
    if match["sign"]:
        off_hour, off_minute = int(match["off_hour"]), int(match["off_minute"])
        if off_hour > 23 or off_minute > 59:
            return False
        offset = (off_hour * 60 + off_minute) * (1 if match["sign"] == "+" else -1)
    if second == 60:
        # RFC 3339 5.7: a leap second is the last second of a UTC day, so second 60 needs the
        # time, moved to UTC by its offset, to be 23:59. Which days carry one is the IERS's
        # call, announced months ahead, so the date itself is not judged.
        return (hour * 60 + minute - offset) % (24 * 60) == 23 * 60 + 59
    return True


def _is_date(instance: str) -> bool:
    match = _DATE_RE.fullmatch(instance)
    return match is not None and _date_fields_ok(match)


def _is_time(instance: str) -> bool:
    match = _TIME_RE.fullmatch(instance)
    return match is not None and _time_fields_ok(match)


def _is_date_time(instance: str) -> bool:
    match = _DATE_TIME_RE.fullmatch(instance)
    return match is not None and _date_fields_ok(match) and _time_fields_ok(match)


# RFC 3339 Appendix A, verbatim: integers only (no fraction, sign or exponent), the units in
# order with each present one followed only by the next smaller (years-days needs months,
# hours-seconds needs minutes), a "T" only before at least one time unit, and weeks alone.
_DUR_TIME = r"T(?:[0-9]+H(?:[0-9]+M(?:[0-9]+S)?)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
_DUR_DATE = r"(?:[0-9]+D|[0-9]+M(?:[0-9]+D)?|[0-9]+Y(?:[0-9]+M(?:[0-9]+D)?)?)"
_DURATION_RE = re.compile(rf"P(?:{_DUR_DATE}(?:{_DUR_TIME})?|{_DUR_TIME}|[0-9]+W)")


def _is_duration(instance: str) -> bool:
    return _DURATION_RE.fullmatch(instance) is not None
