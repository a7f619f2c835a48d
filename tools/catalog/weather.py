"""Weather domain: current conditions, forecasts, air quality and alerts from the world's seeded tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal

from tools.catalog.common import parse_date
from tools.catalog.world import CONDITIONS, TODAY, World

DOMAIN = "weather"


def _reading(world: World, city: str, day: dt.date) -> dict:
    c = world.city(city)
    rng = world.rng("weather", c.name, day.isoformat())
    temp = c.climate + rng.uniform(-6, 6)
    return {"temp_c": round(temp, 1), "condition": rng.choice(CONDITIONS), "humidity": rng.randint(30, 95),
            "wind_kph": rng.randint(0, 45), "precip_chance": rng.randint(0, 100), "city": c.name}


def _temp(value_c: float, unit: str) -> float:
    return round(value_c * 9 / 5 + 32, 1) if unit == "fahrenheit" else round(value_c, 1)


def functions(world: World) -> list[Callable]:
    def get_weather_now(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
        """Get the current weather conditions for a city.

        Args:
            city: Name of the city, for example "Lisbon" or "New York".
            unit: Temperature unit of the reading.
        """
        r = _reading(world, city, TODAY)
        return {"city": r["city"], "temperature": _temp(r["temp_c"], unit), "unit": unit,
                "condition": r["condition"], "humidity_percent": r["humidity"], "wind_kph": r["wind_kph"]}

    def get_daily_forecast(city: str, days: int = 3, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
        """Get the daily weather forecast for a city for the next few days.

        Args:
            city: Name of the city.
            days: Number of days to forecast, from 1 to 7.
            unit: Temperature unit of the forecast.
        """
        if not 1 <= days <= 7:
            raise ValueError("days must be between 1 and 7")
        out = []
        for d in range(1, days + 1):
            day = TODAY + dt.timedelta(days=d)
            r = _reading(world, city, day)
            out.append({"date": day.isoformat(), "high": _temp(r["temp_c"] + 3, unit), "low": _temp(r["temp_c"] - 4, unit),
                        "condition": r["condition"], "precip_chance": r["precip_chance"]})
        return {"city": world.city(city).name, "unit": unit, "forecast": out}

    def check_city_air_quality(city: str) -> dict:
        """Get the current air quality index (AQI) and main pollutant for a city.

        Args:
            city: Name of the city.
        """
        c = world.city(city)
        rng = world.rng("aqi", c.name)
        aqi = rng.randint(12, 180)
        level = "good" if aqi <= 50 else "moderate" if aqi <= 100 else "unhealthy for sensitive groups" if aqi <= 150 else "unhealthy"
        return {"city": c.name, "aqi": aqi, "level": level, "main_pollutant": rng.choice(("pm2.5", "pm10", "ozone", "no2"))}

    def get_uv_index(city: str, date: str | None = None) -> dict:
        """Get the UV index for a city on a given day.

        Args:
            city: Name of the city.
            date: Day in YYYY-MM-DD format; today when omitted.
        """
        c = world.city(city)
        day = parse_date(date) if date else TODAY
        uv = max(0, min(11, round(abs(c.lat - 60) / 6 + world.rng("uv", c.name, day).uniform(-1, 1))))
        risk = "low" if uv <= 2 else "moderate" if uv <= 5 else "high" if uv <= 7 else "very high"
        return {"city": c.name, "date": day.isoformat(), "uv_index": uv, "risk": risk}

    def get_sunrise_sunset(city: str, date: str) -> dict:
        """Get sunrise and sunset times (local time) for a city on a date.

        Args:
            city: Name of the city.
            date: Day in YYYY-MM-DD format.
        """
        c = world.city(city)
        day = parse_date(date)
        season = -abs(day.timetuple().tm_yday - 172) / 183 + 0.5  # +0.5 at the June solstice
        half_day = 6 + season * abs(c.lat) / 15 * (1 if c.lat >= 0 else -1)
        rise, sset = 12 - half_day, 12 + half_day
        fmt = lambda h: f"{int(h):02d}:{int(round((h % 1) * 60)) % 60:02d}"  # noqa: E731
        return {"city": c.name, "date": day.isoformat(), "sunrise": fmt(rise), "sunset": fmt(sset),
                "daylight_hours": round(sset - rise, 1)}

    def get_historical_weather(city: str, date: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
        """Get the recorded weather for a city on a past date.

        Args:
            city: Name of the city.
            date: A past day in YYYY-MM-DD format.
            unit: Temperature unit.
        """
        day = parse_date(date)
        if day >= TODAY:
            raise ValueError(f"date must be in the past (today is {TODAY.isoformat()})")
        r = _reading(world, city, day)
        return {"city": r["city"], "date": day.isoformat(), "mean_temperature": _temp(r["temp_c"], unit),
                "unit": unit, "condition": r["condition"], "precipitation_mm": round(r["precip_chance"] / 8, 1)}

    def get_weather_alerts(city: str, min_severity: Literal["minor", "moderate", "severe"] = "minor") -> dict:
        """List active weather alerts for a city at or above a severity level.

        Args:
            city: Name of the city.
            min_severity: Lowest severity to include.
        """
        c = world.city(city)
        rng = world.rng("alerts", c.name)
        order = {"minor": 0, "moderate": 1, "severe": 2}
        kinds = ("heat advisory", "wind warning", "flood watch", "thunderstorm warning", "fog advisory")
        alerts = [{"type": rng.choice(kinds), "severity": s} for s in rng.sample(list(order), rng.randint(0, 2))]
        alerts = [a for a in alerts if order[a["severity"]] >= order[min_severity]]
        return {"city": c.name, "alerts": alerts, "count": len(alerts)}

    return [get_weather_now, get_daily_forecast, check_city_air_quality, get_uv_index, get_sunrise_sunset,
            get_historical_weather, get_weather_alerts]
