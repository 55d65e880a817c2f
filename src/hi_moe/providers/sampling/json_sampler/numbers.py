"""Numbers: integers on the lattice of `multipleOf` within the bounds, fractions where they
are wanted, exact arithmetic with `Fraction` and only printable JSON numbers."""

from __future__ import annotations

import math
from fractions import Fraction

from hi_moe.providers.sampling.json_sampler._base import _Merged, _RunBase
from hi_moe.providers.sampling.json_sampler._common import _both, _multiple_ok, _n, _NoValue

_MAX_DIGITS_BITS = 12_000  # integers larger than this would not print as JSON


def _lcm(a: Fraction, b: Fraction) -> Fraction:
    return Fraction(
        a.numerator * b.numerator // math.gcd(a.numerator, b.numerator),
        math.gcd(a.denominator, b.denominator),
    )


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def _floor(x: Fraction) -> int:
    return x.numerator // x.denominator


def _lattice(step: Fraction, merged: _Merged) -> tuple[int | None, int | None]:
    """The range of k for which k * step lies within the merged bounds."""
    low = high = None
    if merged.lo is not None:
        low = _ceil(merged.lo / step)
        if merged.lo_excl and low * step == merged.lo:
            low += 1
    if merged.hi is not None:
        high = _floor(merged.hi / step)
        if merged.hi_excl and high * step == merged.hi:
            high -= 1
    return low, high


def _to_number(exact: Fraction, prefer_int: bool) -> int | float | None:
    if exact.denominator == 1:
        number = exact.numerator
        if number.bit_length() > _MAX_DIGITS_BITS:
            return None
        if abs(number) > 2**63 and not prefer_int:
            as_float = float(number) if number.bit_length() < 1024 else math.inf
            if math.isfinite(as_float) and as_float == number:
                return as_float
        return number
    try:
        value = float(exact)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


class _Numbers(_RunBase):
    """Generating numbers, and proving none fits."""

    def _dead_number(self, kind: str, merged: _Merged) -> str | None:
        lo, hi = merged.lo, merged.hi
        bounds = "the bounds"
        if lo is not None and hi is not None:
            bounds = _both(merged.lo_note[0], merged.lo_note[1], "and", *merged.hi_note)
            if lo > hi or (lo == hi and (merged.lo_excl or merged.hi_excl)):
                return f"no number satisfies {bounds}"
        if kind == "fraction":
            if merged.steps and merged.int_steps:
                return "multipleOf admits only integers here, and integers are excluded"
            if lo is not None and lo == hi and lo.denominator == 1:
                return f"only an integer satisfies {bounds}, and integers are excluded"
            return None
        if not merged.int_steps or (kind == "number" and not merged.steps):
            return None  # float arithmetic decides, not a proof
        step = self._step(kind, merged)
        if step is None:
            return None
        low, high = _lattice(step, merged)
        if low is not None and high is not None and low > high:
            what = f"no multiple of {_n(step)}" if step != 1 else "no integer"
            return f"{what} satisfies {bounds}"
        return None

    @staticmethod
    def _step(kind: str, merged: _Merged) -> Fraction | None:
        step: Fraction | None = None
        for item in merged.steps:
            step = item if step is None else _lcm(step, item)
        if kind == "integer":
            step = Fraction(1) if step is None else _lcm(step, Fraction(1))
        return step

    # -- numbers

    def _nice(self, merged: _Merged) -> Fraction:
        rng = self.rng
        target = Fraction(rng.choice((1, 2, 3, 5, 7, 8, 10, 12, 15, 20, 25, 42, 50, 64, 100)))
        if rng.random() < 0.15:
            target = Fraction(0)
        lo, hi = merged.lo, merged.hi
        if lo is not None and target <= lo:
            target = lo if abs(lo) > 10**9 else lo + rng.randint(0, 10)
        if hi is not None and target >= hi:
            target = hi if abs(hi) > 10**9 else hi - rng.randint(0, 10)
        if lo is not None and target < lo:
            target = (lo + hi) / 2 if hi is not None else lo
        return target

    def _gen_number(self, kind: str, merged: _Merged) -> int | float:
        step = self._step(kind, merged)
        if step is None and kind == "number" and self.rng.random() < 0.8:
            low, high = _lattice(Fraction(1), merged)
            if low is None or high is None or low <= high:
                step = Fraction(1)
        if step is not None:
            return self._from_lattice(kind, step, merged)
        return self._fractional(kind, merged)

    def _from_lattice(self, kind: str, step: Fraction, merged: _Merged) -> int | float:
        low, high = _lattice(step, merged)
        if low is not None and high is not None and low > high:
            raise _NoValue(f"no multiple of {_n(step)} is in range", False)
        target = self._nice(merged)
        if kind != "integer" and step.denominator > 1 and self.rng.random() < 0.4:
            target += Fraction(self.rng.choice((1, 2, 3)), 4)  # now and then a decimal
        start = round(target / step)
        if low is not None:
            start = max(start, low)
        if high is not None:
            start = min(start, high)
        unprintable = False
        for offset in (0, 1, -1, 2, -2, 3, -3, 5, -5, 8, -8, 13, -13, 21, 34, 55, 89):
            k = start + offset
            if (low is not None and k < low) or (high is not None and k > high):
                continue
            exact = k * step
            if kind == "fraction" and exact.denominator == 1:
                continue
            value = _to_number(exact, prefer_int=kind != "fraction")
            if value is None:
                unprintable = True
                continue
            if self._number_ok(value, merged):
                return value
        if unprintable:
            raise _NoValue("the numbers in range are too large to write as JSON", False)
        raise _NoValue(f"no multiple of {_n(step)} in range survived float arithmetic", False)

    def _fractional(self, kind: str, merged: _Merged) -> int | float:
        lo, hi = merged.lo, merged.hi
        rng = self.rng
        candidates: list[Fraction] = []
        base = self._nice(merged)
        for frac in (Fraction(1, 2), Fraction(1, 4), Fraction(3, 4), Fraction(1, 10)):
            candidates.append(Fraction(_floor(base)) + frac)
            candidates.append(base + frac)
            candidates.append(base - frac)
        if lo is not None and hi is not None:
            middle = (lo + hi) / 2
            for digits in range(0, 18):
                candidates.append(Fraction(round(middle, digits)))
            candidates.append(middle)
        elif lo is not None:
            candidates += [lo + Fraction(1, 2), lo + 1, lo + Fraction(1, 10**6)]
        elif hi is not None:
            candidates += [hi - Fraction(1, 2), hi - 1, hi - Fraction(1, 10**6)]
        if rng.random() < 0.5:
            candidates = candidates[2:] + candidates[:2]
        for exact in candidates:
            value = _to_number(exact, prefer_int=kind == "number")
            if value is None:
                continue
            if kind == "fraction" and float(value).is_integer():
                continue
            if self._number_ok(value, merged):
                return value
        raise _NoValue("no number in range was found", False)

    @staticmethod
    def _number_ok(value: int | float, merged: _Merged) -> bool:
        exact = Fraction(value)
        if merged.lo is not None and (exact < merged.lo or (merged.lo_excl and exact == merged.lo)):
            return False
        if merged.hi is not None and (exact > merged.hi or (merged.hi_excl and exact == merged.hi)):
            return False
        return all(_multiple_ok(value, raw) is not False for raw in merged.raw_steps)
