"""Travel domain: flight, train and hotel search, bookings and visa rules over the world's cities."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from tools.catalog.common import parse_date, positive, r2
from tools.catalog.world import TODAY, World

DOMAIN = "travel"

CABIN_FACTOR = {"economy": 1.0, "premium_economy": 1.6, "business": 3.2, "first": 5.0}
VISA_FREE = {"European Union", "United States", "Canada", "United Kingdom", "Japan", "Australia"}
EU = {"Portugal", "Spain", "France", "Germany", "Italy", "Netherlands", "Austria", "Czech Republic", "Sweden", "Ireland", "Greece"}


def distance_km(world: World, a: str, b: str) -> float:
    ca, cb = world.city(a), world.city(b)
    p1, p2 = math.radians(ca.lat), math.radians(cb.lat)
    dphi, dl = p2 - p1, math.radians(cb.lon - ca.lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(2 * 6371 * math.asin(math.sqrt(h)), 1)


def functions(world: World) -> list[Callable]:
    def _flights(origin: str, destination: str, date: str) -> list[dict]:
        parse_date(date)
        o, d = world.city(origin), world.city(destination)
        if o == d:
            raise ValueError("origin and destination must differ")
        km = distance_km(world, o.name, d.name)
        rng = world.rng("flights", o.name, d.name, date)
        out = []
        for i in range(4):
            stops = rng.choice((0, 0, 1, 2))
            out.append({"flight_id": f"FL{rng.randint(100, 999)}{i}", "airline": rng.choice(("SkyJet", "AeroLine", "BlueWings", "Polar Air")),
                        "depart": f"{rng.randint(6, 21):02d}:{rng.choice((0, 15, 30, 45)):02d}",
                        "stops": stops, "duration_hours": round(km / 800 + 0.8 + stops * 1.5, 1),
                        "base_price": r2(60 + km * 0.08 * rng.uniform(0.8, 1.3) - stops * 20)})
        return out

    def search_flights(origin: str, destination: str, date: str,
                       cabin_class: Literal["economy", "premium_economy", "business", "first"] = "economy",
                       max_stops: int = 2, passengers: int = 1) -> dict:
        """Search one-way flights between two cities on a date.

        Args:
            origin: Departure city.
            destination: Arrival city.
            date: Departure day in YYYY-MM-DD format.
            cabin_class: Cabin class.
            max_stops: Maximum number of stops allowed.
            passengers: Number of passengers.
        """
        positive("passengers", passengers)
        fl = [f for f in _flights(origin, destination, date) if f["stops"] <= max_stops]
        for f in fl:
            f["total_price"] = r2(f.pop("base_price") * CABIN_FACTOR[cabin_class] * passengers)
        return {"origin": world.city(origin).name, "destination": world.city(destination).name, "date": date,
                "cabin_class": cabin_class, "flights": sorted(fl, key=lambda f: f["total_price"])}

    def reserve_flight_seat(flight_id: str, passenger_name: str,
                    seat_preference: Literal["window", "aisle", "middle", "no_preference"] = "no_preference") -> dict:
        """Book a seat on a flight returned by search_flights.

        Args:
            flight_id: Identifier of the flight, e.g. "FL4520".
            passenger_name: Full name of the passenger.
            seat_preference: Preferred seat type.
        """
        if not (str(flight_id).startswith("FL") and len(flight_id) == 6 and flight_id[2:].isdigit()):
            raise ValueError(f"invalid flight id {flight_id!r}: expected the form FL1234 from search_flights")
        bid = world.new_id("BK")
        row = world.rng("seat", flight_id, passenger_name).randint(3, 38)
        letter = {"window": "A", "aisle": "C", "middle": "B", "no_preference": "D"}[seat_preference]
        world.bookings[bid] = {"booking_id": bid, "type": "flight", "flight_id": flight_id, "passenger": passenger_name,
                               "seat": f"{row}{letter}", "status": "confirmed"}
        return dict(world.bookings[bid])

    def search_train_tickets(origin: str, destination: str, date: str, first_class: bool = False) -> dict:
        """Search train connections between two cities on a date.

        Args:
            origin: Departure city.
            destination: Arrival city.
            date: Travel day in YYYY-MM-DD format.
            first_class: Whether to price first-class seats.
        """
        parse_date(date)
        km = distance_km(world, origin, destination)
        if km > 2500:
            raise ValueError(f"no rail connection between {origin} and {destination}")
        rng = world.rng("trains", origin, destination, date)
        trains = [{"train_id": f"TR{rng.randint(1000, 9999)}", "depart": f"{h:02d}:{rng.choice((5, 20, 35, 50)):02d}",
                   "duration_hours": round(km / 180 + rng.uniform(0, 1), 1),
                   "price": r2((20 + km * 0.12) * (1.7 if first_class else 1.0))} for h in sorted(rng.sample(range(6, 22), 3))]
        return {"origin": world.city(origin).name, "destination": world.city(destination).name, "date": date, "trains": trains}

    def search_hotel_rooms(city: str, check_in: str, nights: int, max_price_per_night: float | None = None,
                      min_rating: float = 0.0, amenities: list[Literal["wifi", "pool", "gym", "parking", "breakfast"]] | None = None) -> dict:
        """Search hotels in a city for a stay.

        Args:
            city: City to stay in.
            check_in: Arrival day in YYYY-MM-DD format.
            nights: Number of nights.
            max_price_per_night: Upper bound on the nightly price in USD.
            min_rating: Minimum guest rating from 0 to 5.
            amenities: Amenities the hotel must offer.
        """
        parse_date(check_in)
        positive("nights", nights)
        c = world.city(city)
        rng = world.rng("hotels", c.name)
        names = ("Grand", "Harbour", "Central", "Park", "Riverside", "Plaza", "Garden", "Royal")
        hotels = []
        for i, n in enumerate(rng.sample(names, 5)):
            am = sorted(rng.sample(["wifi", "pool", "gym", "parking", "breakfast"], rng.randint(1, 4)))
            hotels.append({"hotel_id": f"H-{c.name[:3].upper()}{i + 1}", "name": f"{n} Hotel {c.name}",
                           "rating": round(rng.uniform(3.0, 4.9), 1), "price_per_night": r2(rng.uniform(60, 320)), "amenities": am})
        hotels = [h for h in hotels if h["rating"] >= min_rating
                  and (max_price_per_night is None or h["price_per_night"] <= max_price_per_night)
                  and set(amenities or []) <= set(h["amenities"])]
        for h in hotels:
            h["total_price"] = r2(h["price_per_night"] * nights)
        return {"city": c.name, "check_in": check_in, "nights": nights, "hotels": hotels}

    def reserve_hotel_room(hotel_id: str, guest_name: str, check_in: str, nights: int) -> dict:
        """Reserve a room in a hotel returned by search_hotel_rooms.

        Args:
            hotel_id: Identifier of the hotel, e.g. "H-LIS2".
            guest_name: Full name of the guest.
            check_in: Arrival day in YYYY-MM-DD format.
            nights: Number of nights.
        """
        parse_date(check_in)
        positive("nights", nights)
        if not str(hotel_id).startswith("H-"):
            raise ValueError(f"invalid hotel id {hotel_id!r}: expected an id from search_hotel_rooms")
        bid = world.new_id("BK")
        world.bookings[bid] = {"booking_id": bid, "type": "hotel", "hotel_id": hotel_id, "guest": guest_name,
                               "check_in": check_in, "nights": nights, "status": "confirmed"}
        return dict(world.bookings[bid])

    def get_booking(booking_id: str) -> dict:
        """Look up a flight or hotel booking.

        Args:
            booking_id: Identifier of the booking, e.g. "BK-1001".
        """
        if booking_id not in world.bookings:
            raise ValueError(f"no booking with id {booking_id!r}")
        return dict(world.bookings[booking_id])

    def cancel_travel_booking(booking_id: str, reason: str | None = None) -> dict:
        """Cancel a flight or hotel booking.

        Args:
            booking_id: Identifier of the booking.
            reason: Why the booking is cancelled.
        """
        if booking_id not in world.bookings:
            raise ValueError(f"no booking with id {booking_id!r}")
        world.bookings[booking_id]["status"] = "cancelled"
        return {"booking_id": booking_id, "status": "cancelled", "reason": reason}

    def get_visa_requirements(nationality: str, destination_country: str, stay_days: int = 30) -> dict:
        """Check whether a traveller needs a visa for a trip.

        Args:
            nationality: Traveller's citizenship, e.g. "Canada".
            destination_country: Country being visited.
            stay_days: Length of the stay in days.
        """
        nat = "European Union" if nationality in EU else nationality
        dest = "European Union" if destination_country in EU else destination_country
        if nat == dest:
            return {"visa_required": False, "note": "domestic or free-movement travel"}
        needed = not (nat in VISA_FREE and stay_days <= 90)
        return {"nationality": nationality, "destination": destination_country, "visa_required": needed,
                "max_visa_free_days": 0 if needed else 90, "processing_days": 10 if needed else 0,
                "checked_on": TODAY.isoformat()}

    return [search_flights, reserve_flight_seat, search_train_tickets, search_hotel_rooms, reserve_hotel_room, get_booking,
            cancel_travel_booking, get_visa_requirements]
