"""Maps domain: geocoding, distances, directions, time zones and nearby places."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal

from tools.catalog.travel import distance_km
from tools.catalog.world import CITIES, World

DOMAIN = "maps"

SPEED_KPH = {"driving": 70.0, "walking": 5.0, "cycling": 16.0, "transit": 35.0}
PLACE_NAMES = {"restaurant": ("Bistro", "Kitchen", "Table", "Grill"), "cafe": ("Coffee House", "Espresso Bar", "Bakery Cafe"),
               "museum": ("History Museum", "Art Gallery", "Science Center"), "pharmacy": ("Pharmacy", "Drugstore"),
               "park": ("City Park", "Botanical Garden", "Riverside Park"), "gas_station": ("Fuel Stop", "Petrol Station"),
               "hospital": ("General Hospital", "Medical Center")}


def functions(world: World) -> list[Callable]:
    def geocode_city(city: str) -> dict:
        """Get the latitude, longitude and country of a city.

        Args:
            city: City name.
        """
        c = world.city(city)
        return {"city": c.name, "country": c.country, "latitude": c.lat, "longitude": c.lon}

    def reverse_geocode(latitude: float, longitude: float) -> dict:
        """Find the known city closest to a coordinate.

        Args:
            latitude: Latitude in degrees, -90 to 90.
            longitude: Longitude in degrees, -180 to 180.
        """
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise ValueError("latitude must be in [-90, 90] and longitude in [-180, 180]")
        best = min(CITIES, key=lambda c: (c.lat - latitude) ** 2 + (c.lon - longitude) ** 2)
        return {"city": best.name, "country": best.country}

    def get_distance(origin: str, destination: str, unit: Literal["km", "miles"] = "km") -> dict:
        """Get the straight-line distance between two cities.

        Args:
            origin: First city.
            destination: Second city.
            unit: Unit of the distance.
        """
        km = distance_km(world, origin, destination)
        return {"origin": world.city(origin).name, "destination": world.city(destination).name,
                "distance": round(km if unit == "km" else km / 1.609344, 1), "unit": unit}

    def estimate_travel_duration(origin: str, destination: str, mode: Literal["driving", "walking", "cycling", "transit"] = "driving",
                        avoid: list[Literal["tolls", "highways", "ferries"]] | None = None) -> dict:
        """Estimate the travel time between two cities by a mode of transport.

        Args:
            origin: Starting city.
            destination: Destination city.
            mode: Mode of transport.
            avoid: Road features to avoid (driving only).
        """
        km = distance_km(world, origin, destination) * 1.25
        if km > 3000 and mode != "driving":
            raise ValueError(f"no {mode} route between {origin} and {destination}")
        speed = SPEED_KPH[mode] * (0.85 if avoid and mode == "driving" else 1.0)
        return {"mode": mode, "route_km": round(km, 1), "hours": round(km / speed, 1), "avoiding": list(avoid or [])}

    def get_city_local_time(city: str) -> dict:
        """Get the current local date, time and UTC offset in a city.

        Args:
            city: City name.
        """
        c = world.city(city)
        now = dt.datetime(2025, 6, 16, 12, 0) + dt.timedelta(hours=c.utc_offset)
        return {"city": c.name, "local_time": now.strftime("%Y-%m-%d %H:%M"), "utc_offset": c.utc_offset}

    def find_nearby_places(city: str, category: Literal["restaurant", "cafe", "museum", "pharmacy", "park", "gas_station", "hospital"],
                           radius_km: float = 2.0, open_now: bool = False, limit: int = 3) -> dict:
        """Find places of a category near the centre of a city.

        Args:
            city: City name.
            category: Kind of place.
            radius_km: Search radius in kilometres.
            open_now: Only places that are open now.
            limit: Maximum number of places.
        """
        c = world.city(city)
        rng = world.rng("places", c.name, category)
        places = [{"name": f"{c.name} {n}", "distance_km": round(rng.uniform(0.2, 5.0), 1), "open_now": rng.random() < 0.7,
                   "rating": round(rng.uniform(3.0, 5.0), 1)} for n in PLACE_NAMES[category]]
        places = sorted((p for p in places if p["distance_km"] <= radius_km and (p["open_now"] or not open_now)),
                        key=lambda p: p["distance_km"])
        return {"city": c.name, "category": category, "places": places[: max(0, limit)]}

    return [geocode_city, reverse_geocode, get_distance, estimate_travel_duration, get_city_local_time, find_nearby_places]
