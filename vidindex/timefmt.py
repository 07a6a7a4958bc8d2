"""Times within a video: parse "90", 90.5 or "01:30" / "00:01:30.5", format them back, and
convert to the integer milliseconds the tables key on."""

from __future__ import annotations

import math

_TIME_HELP = 'expected seconds (e.g. 90 or 90.5) or [HH:]MM:SS[.fff] (e.g. "01:30" or "00:01:30.5")'


def parse_time(value: str | int | float) -> float:
    """Seconds from a number of seconds or an "[HH:]MM:SS[.fff]" string; never negative."""
    if isinstance(value, bool):  # bool is an int subclass; True seconds is always a mistake
        raise ValueError(f"invalid time {value!r}: {_TIME_HELP}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_time_string(value.strip(), original=value)
    else:
        raise ValueError(f"invalid time {value!r}: {_TIME_HELP}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid time {value!r}: must be a finite number of seconds >= 0")
    return seconds


def _parse_time_string(text: str, original: str) -> float:
    parts = text.split(":")
    if len(parts) > 3 or not text:
        raise ValueError(f"invalid time {original!r}: {_TIME_HELP}")
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        raise ValueError(f"invalid time {original!r}: {_TIME_HELP}") from None
    if len(parts) == 1:
        return numbers[0]
    # Only the leading field may exceed its unit: "90:00" is 90 minutes, "01:75" is a typo.
    for part, number in zip(parts[1:], numbers[1:]):
        if number >= 60 or number < 0 or part.startswith(("+", "-")):
            raise ValueError(f"invalid time {original!r}: minutes and seconds must be 00-59")
    if any(not part.isdigit() for part in parts[:-1]):
        raise ValueError(f"invalid time {original!r}: hours and minutes must be whole numbers")
    seconds = 0.0
    for number in numbers:
        seconds = seconds * 60 + number
    return seconds


def format_time(seconds: float) -> str:
    """ "HH:MM:SS", with ".mmm" only when there are milliseconds."""
    ms = to_ms(seconds)
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, millis = divmod(rest, 1000)
    text = f"{hours:02d}:{minutes:02d}:{whole:02d}"
    return f"{text}.{millis:03d}" if millis else text


def to_ms(seconds: float | int | str) -> int:
    """Integer milliseconds, the unit of every time column (LanceDB keys cannot be floats)."""
    return int(round(parse_time(seconds) * 1000))


def from_ms(ms: int) -> float:
    return ms / 1000.0
