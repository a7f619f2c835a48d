"""Math domain: statistics, equations, number theory and geometry; exact and side-effect free."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Literal

from tools.catalog.world import World

DOMAIN = "math"


def functions(world: World) -> list[Callable]:
    def describe_numbers(numbers: list[float], measures: list[Literal["mean", "median", "mode", "stdev", "min", "max", "sum"]] | None = None) -> dict:
        """Compute descriptive statistics of a list of numbers.

        Args:
            numbers: The data values.
            measures: Which statistics to compute; all of them when omitted.
        """
        if not numbers:
            raise ValueError("numbers must not be empty")
        funcs = {"mean": statistics.fmean, "median": statistics.median, "mode": statistics.mode,
                 "stdev": lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0, "min": min, "max": max, "sum": math.fsum}
        return {m: round(float(funcs[m](numbers)), 4) for m in (measures or list(funcs))}

    def find_quadratic_roots(a: float, b: float, c: float) -> dict:
        """Solve the quadratic equation a*x^2 + b*x + c = 0 for real roots.

        Args:
            a: Coefficient of x squared (non-zero).
            b: Coefficient of x.
            c: Constant term.
        """
        if a == 0:
            raise ValueError("a must be non-zero for a quadratic equation")
        disc = b * b - 4 * a * c
        if disc < 0:
            return {"discriminant": disc, "real_roots": []}
        r = sorted({round((-b - math.sqrt(disc)) / (2 * a), 6), round((-b + math.sqrt(disc)) / (2 * a), 6)})
        return {"discriminant": disc, "real_roots": r}

    def calculate_percentage(part: float, whole: float, decimals: int = 2) -> dict:
        """Calculate what percentage one number is of another.

        Args:
            part: The part.
            whole: The whole (non-zero).
            decimals: Number of decimal places in the answer.
        """
        if whole == 0:
            raise ValueError("whole must be non-zero")
        return {"percentage": round(part / whole * 100, decimals)}

    def greatest_common_divisor(numbers: list[int]) -> dict:
        """Find the greatest common divisor and least common multiple of integers.

        Args:
            numbers: Two or more integers.
        """
        if len(numbers) < 2:
            raise ValueError("give at least two integers")
        lcm = 1
        for n in numbers:
            lcm = lcm * abs(n) // math.gcd(lcm, abs(n)) if n else 0
        return {"gcd": math.gcd(*numbers), "lcm": lcm}

    def check_prime(number: int) -> dict:
        """Check whether an integer is prime and list its prime factors.

        Args:
            number: The integer to test (2 to 10^12).
        """
        if not 2 <= number <= 10**12:
            raise ValueError("number must be between 2 and 10^12")
        n, f, factors = number, 2, []
        while f * f <= n:
            while n % f == 0:
                factors.append(f)
                n //= f
            f += 1
        if n > 1:
            factors.append(n)
        return {"number": number, "is_prime": factors == [number], "prime_factors": factors}

    def compute_factorial(n: int) -> dict:
        """Calculate n! (n factorial).

        Args:
            n: A non-negative integer up to 50.
        """
        if not 0 <= n <= 50:
            raise ValueError("n must be between 0 and 50")
        return {"n": n, "factorial": math.factorial(n)}

    def compute_shape_area(shape: Literal["circle", "rectangle", "triangle", "square", "trapezoid"], dimensions: dict[str, float]) -> dict:
        """Calculate the area of a plane shape from its dimensions.

        Args:
            shape: The shape.
            dimensions: Named lengths: circle {"radius"}, rectangle {"width", "height"}, triangle {"base", "height"}, square {"side"}, trapezoid {"a", "b", "height"}.
        """
        need = {"circle": ("radius",), "rectangle": ("width", "height"), "triangle": ("base", "height"),
                "square": ("side",), "trapezoid": ("a", "b", "height")}[shape]
        miss = [k for k in need if k not in dimensions]
        if miss:
            raise ValueError(f"{shape} needs dimensions " + ", ".join(need))
        d = {k: float(dimensions[k]) for k in need}
        area = {"circle": lambda: math.pi * d["radius"] ** 2, "rectangle": lambda: d["width"] * d["height"],
                "triangle": lambda: d["base"] * d["height"] / 2, "square": lambda: d["side"] ** 2,
                "trapezoid": lambda: (d["a"] + d["b"]) / 2 * d["height"]}[shape]()
        return {"shape": shape, "area": round(area, 4)}

    def fibonacci_sequence(count: int) -> dict:
        """Return the first numbers of the Fibonacci sequence.

        Args:
            count: How many numbers, 1 to 60.
        """
        if not 1 <= count <= 60:
            raise ValueError("count must be between 1 and 60")
        seq = [0, 1]
        while len(seq) < count:
            seq.append(seq[-1] + seq[-2])
        return {"sequence": seq[:count]}

    def convert_number_base(number: str, from_base: int, to_base: int) -> dict:
        """Convert an integer written in one base (2-36) to another base.

        Args:
            number: The digits of the number, e.g. "ff" or "1011".
            from_base: Base of the given digits.
            to_base: Base to write the result in.
        """
        if not (2 <= from_base <= 36 and 2 <= to_base <= 36):
            raise ValueError("bases must be between 2 and 36")
        try:
            n = int(str(number).strip(), from_base)
        except ValueError:
            raise ValueError(f"{number!r} is not a valid base-{from_base} number") from None
        digits, sign, n = "", "-" if n < 0 else "", abs(n)
        while True:
            digits = "0123456789abcdefghijklmnopqrstuvwxyz"[n % to_base] + digits
            n //= to_base
            if n == 0:
                break
        return {"input": number, "from_base": from_base, "to_base": to_base, "result": sign + digits}

    return [describe_numbers, find_quadratic_roots, calculate_percentage, greatest_common_divisor, check_prime,
            compute_factorial, compute_shape_area, fibonacci_sequence, convert_number_base]
