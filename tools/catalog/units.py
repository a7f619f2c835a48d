"""Unit conversion domain: length, mass, temperature, volume, speed, data size and cooking measures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from tools.catalog.world import World

DOMAIN = "units"

LENGTH = {"millimeter": 0.001, "centimeter": 0.01, "meter": 1.0, "kilometer": 1000.0, "inch": 0.0254,
          "foot": 0.3048, "yard": 0.9144, "mile": 1609.344}
MASS = {"milligram": 1e-6, "gram": 0.001, "kilogram": 1.0, "ounce": 0.028349523, "pound": 0.45359237, "stone": 6.35029318, "ton": 1000.0}
VOLUME = {"milliliter": 0.001, "liter": 1.0, "cup": 0.2365882, "pint": 0.4731765, "quart": 0.9463529,
          "gallon": 3.785411784, "fluid_ounce": 0.0295735}
SPEED = {"mps": 1.0, "kph": 1 / 3.6, "mph": 0.44704, "knot": 0.514444}
DATA = {"bit": 1 / 8, "byte": 1.0, "kilobyte": 1e3, "megabyte": 1e6, "gigabyte": 1e9, "terabyte": 1e12,
        "kibibyte": 1024.0, "mebibyte": 1024.0 ** 2, "gibibyte": 1024.0 ** 3}


def _convert(table: dict[str, float], value: float, src: str, dst: str, digits: int = 4) -> dict:
    return {"value": value, "from_unit": src, "to_unit": dst, "result": round(value * table[src] / table[dst], digits)}


def functions(world: World) -> list[Callable]:
    def convert_length(value: float, from_unit: Literal["millimeter", "centimeter", "meter", "kilometer", "inch", "foot", "yard", "mile"],
                       to_unit: Literal["millimeter", "centimeter", "meter", "kilometer", "inch", "foot", "yard", "mile"]) -> dict:
        """Convert a length between metric and imperial units.

        Args:
            value: The length to convert.
            from_unit: Unit of the given value.
            to_unit: Unit to convert to.
        """
        return _convert(LENGTH, value, from_unit, to_unit)

    def convert_weight(value: float, from_unit: Literal["milligram", "gram", "kilogram", "ounce", "pound", "stone", "ton"],
                       to_unit: Literal["milligram", "gram", "kilogram", "ounce", "pound", "stone", "ton"]) -> dict:
        """Convert a mass or weight between units.

        Args:
            value: The weight to convert.
            from_unit: Unit of the given value.
            to_unit: Unit to convert to.
        """
        return _convert(MASS, value, from_unit, to_unit)

    def convert_temperature(value: float, from_scale: Literal["celsius", "fahrenheit", "kelvin"],
                            to_scale: Literal["celsius", "fahrenheit", "kelvin"]) -> dict:
        """Convert a temperature between Celsius, Fahrenheit and Kelvin.

        Args:
            value: The temperature to convert.
            from_scale: Scale of the given value.
            to_scale: Scale to convert to.
        """
        c = {"celsius": value, "fahrenheit": (value - 32) * 5 / 9, "kelvin": value - 273.15}[from_scale]
        out = {"celsius": c, "fahrenheit": c * 9 / 5 + 32, "kelvin": c + 273.15}[to_scale]
        if out < -459.67 or (to_scale == "kelvin" and out < 0):
            raise ValueError("temperature below absolute zero")
        return {"value": value, "from_scale": from_scale, "to_scale": to_scale, "result": round(out, 2)}

    def convert_volume(value: float, from_unit: Literal["milliliter", "liter", "cup", "pint", "quart", "gallon", "fluid_ounce"],
                       to_unit: Literal["milliliter", "liter", "cup", "pint", "quart", "gallon", "fluid_ounce"]) -> dict:
        """Convert a volume between metric and US customary units.

        Args:
            value: The volume to convert.
            from_unit: Unit of the given value.
            to_unit: Unit to convert to.
        """
        return _convert(VOLUME, value, from_unit, to_unit)

    def convert_speed(value: float, from_unit: Literal["mps", "kph", "mph", "knot"], to_unit: Literal["mps", "kph", "mph", "knot"]) -> dict:
        """Convert a speed between metres per second, km/h, mph and knots.

        Args:
            value: The speed to convert.
            from_unit: Unit of the given value.
            to_unit: Unit to convert to.
        """
        return _convert(SPEED, value, from_unit, to_unit, 3)

    def convert_data_size(value: float, from_unit: Literal["bit", "byte", "kilobyte", "megabyte", "gigabyte", "terabyte", "kibibyte", "mebibyte", "gibibyte"],
                          to_unit: Literal["bit", "byte", "kilobyte", "megabyte", "gigabyte", "terabyte", "kibibyte", "mebibyte", "gibibyte"]) -> dict:
        """Convert a digital storage size between units (decimal and binary prefixes).

        Args:
            value: The size to convert.
            from_unit: Unit of the given value.
            to_unit: Unit to convert to.
        """
        return _convert(DATA, value, from_unit, to_unit, 6)

    return [convert_length, convert_weight, convert_temperature, convert_volume, convert_speed, convert_data_size]
