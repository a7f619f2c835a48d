"""Health domain: body metrics, calorie needs, heart-rate zones and a workout/water log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from tools.catalog.common import parse_date, positive
from tools.catalog.world import TODAY, World

DOMAIN = "health"

ACTIVITY = {"sedentary": 1.2, "light": 1.375, "moderate": 1.55, "active": 1.725, "very_active": 1.9}


def functions(world: World) -> list[Callable]:
    def compute_body_mass_index(weight_kg: float, height_cm: float) -> dict:
        """Calculate the body mass index from weight and height.

        Args:
            weight_kg: Body weight in kilograms.
            height_cm: Height in centimetres.
        """
        positive("weight_kg", weight_kg)
        positive("height_cm", height_cm)
        bmi = weight_kg / (height_cm / 100) ** 2
        cat = "underweight" if bmi < 18.5 else "normal" if bmi < 25 else "overweight" if bmi < 30 else "obese"
        return {"bmi": round(bmi, 1), "category": cat}

    def calculate_daily_calories(age: int, sex: Literal["female", "male"], weight_kg: float, height_cm: float,
                                 activity_level: Literal["sedentary", "light", "moderate", "active", "very_active"] = "moderate") -> dict:
        """Estimate daily calorie needs with the Mifflin-St Jeor equation.

        Args:
            age: Age in years.
            sex: Biological sex used by the equation.
            weight_kg: Body weight in kilograms.
            height_cm: Height in centimetres.
            activity_level: Typical weekly activity.
        """
        positive("age", age)
        bmr = 10 * weight_kg + 6.25 * height_cm - 5 * age + (5 if sex == "male" else -161)
        return {"bmr": round(bmr), "maintenance_calories": round(bmr * ACTIVITY[activity_level])}

    def get_heart_rate_zones(age: int, resting_heart_rate: int = 60) -> dict:
        """Compute training heart-rate zones with the Karvonen method.

        Args:
            age: Age in years.
            resting_heart_rate: Resting pulse in beats per minute.
        """
        hr_max = 220 - age
        if hr_max <= resting_heart_rate:
            raise ValueError("age and resting_heart_rate give no heart-rate reserve")
        reserve = hr_max - resting_heart_rate
        bands = {"recovery": (0.5, 0.6), "endurance": (0.6, 0.7), "tempo": (0.7, 0.8), "threshold": (0.8, 0.9), "max": (0.9, 1.0)}
        return {"max_heart_rate": hr_max, "zones": {z: [round(resting_heart_rate + lo * reserve), round(resting_heart_rate + hi * reserve)]
                                                    for z, (lo, hi) in bands.items()}}

    def log_workout(activity: Literal["running", "cycling", "swimming", "yoga", "strength training", "walking"], duration_minutes: int,
                    date: str | None = None, notes: str | None = None) -> dict:
        """Record a workout in the fitness log.

        Args:
            activity: Kind of workout.
            duration_minutes: Length of the workout in minutes.
            date: Day in YYYY-MM-DD format; today when omitted.
            notes: Free-text notes.
        """
        positive("duration_minutes", duration_minutes)
        day = parse_date(date).isoformat() if date else TODAY.isoformat()
        world.workouts.append({"activity": activity, "duration_minutes": duration_minutes, "date": day})
        return {"status": "logged", "activity": activity, "duration_minutes": duration_minutes, "date": day,
                "workouts_logged": len(world.workouts)}

    def get_workout_summary(days: int = 7) -> dict:
        """Summarise the workouts logged over the last few days.

        Args:
            days: Number of days to look back, including today.
        """
        positive("days", days)
        start = TODAY.toordinal() - days + 1
        recent = [w for w in world.workouts if parse_date(w["date"]).toordinal() >= start]
        by = {}
        for w in recent:
            by[w["activity"]] = by.get(w["activity"], 0) + w["duration_minutes"]
        return {"days": days, "sessions": len(recent), "total_minutes": sum(by.values()), "minutes_by_activity": by}

    def log_water_intake(milliliters: int) -> dict:
        """Add a glass or bottle of water to today's intake.

        Args:
            milliliters: Amount of water in millilitres.
        """
        positive("milliliters", milliliters)
        day = TODAY.isoformat()
        world.water_ml[day] = world.water_ml.get(day, 0) + milliliters
        return {"date": day, "total_ml_today": world.water_ml[day], "goal_ml": 2000,
                "goal_reached": world.water_ml[day] >= 2000}

    return [compute_body_mass_index, calculate_daily_calories, get_heart_rate_zones, log_workout, get_workout_summary, log_water_intake]
