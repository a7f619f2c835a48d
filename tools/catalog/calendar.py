"""Calendar domain: events, free slots, reminders and public holidays, stateful within a world."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from tools.catalog.common import parse_date, parse_time, positive
from tools.catalog.world import World

DOMAIN = "calendar"

HOLIDAYS: dict[str, list[tuple[str, str]]] = {  # country -> (MM-DD, name)
    "United States": [("01-01", "New Year's Day"), ("07-04", "Independence Day"), ("11-27", "Thanksgiving"), ("12-25", "Christmas Day")],
    "United Kingdom": [("01-01", "New Year's Day"), ("05-26", "Spring Bank Holiday"), ("12-25", "Christmas Day"), ("12-26", "Boxing Day")],
    "France": [("01-01", "Jour de l'an"), ("05-01", "Fete du Travail"), ("07-14", "Fete nationale"), ("12-25", "Noel")],
    "Germany": [("01-01", "Neujahr"), ("05-01", "Tag der Arbeit"), ("10-03", "Tag der Deutschen Einheit"), ("12-25", "Weihnachten")],
    "Japan": [("01-01", "Ganjitsu"), ("05-05", "Children's Day"), ("11-03", "Culture Day"), ("11-23", "Labour Thanksgiving Day")],
    "India": [("01-26", "Republic Day"), ("08-15", "Independence Day"), ("10-02", "Gandhi Jayanti")],
    "Brazil": [("01-01", "Confraternizacao Universal"), ("04-21", "Tiradentes"), ("09-07", "Independencia"), ("11-15", "Proclamacao da Republica")],
    "Canada": [("01-01", "New Year's Day"), ("07-01", "Canada Day"), ("12-25", "Christmas Day")],
}


def _minutes(t: str) -> int:
    h, m = parse_time(t)
    return h * 60 + m


def functions(world: World) -> list[Callable]:
    def create_event(title: str, date: str, start_time: str, duration_minutes: int = 60,
                     attendees: list[str] | None = None, location: str | None = None) -> dict:
        """Create a calendar event.

        Args:
            title: Short title of the event.
            date: Day of the event in YYYY-MM-DD format.
            start_time: Start time in 24-hour HH:MM format.
            duration_minutes: Length of the event in minutes.
            attendees: Names or email addresses of people to invite.
            location: Where the event takes place.
        """
        parse_date(date)
        parse_time(start_time)
        positive("duration_minutes", duration_minutes)
        event = {"event_id": world.new_id("EVT"), "title": title, "date": date, "start_time": start_time,
                 "duration_minutes": duration_minutes, "attendees": list(attendees or []), "location": location}
        world.events.append(event)
        return {"status": "created", **event}

    def list_calendar_events(date: str) -> dict:
        """List the calendar events on a day, sorted by start time.

        Args:
            date: Day in YYYY-MM-DD format.
        """
        parse_date(date)
        day = sorted((e for e in world.events if e["date"] == date), key=lambda e: e["start_time"])
        return {"date": date, "events": [{k: e[k] for k in ("event_id", "title", "start_time", "duration_minutes")} for e in day]}

    def delete_event(event_id: str) -> dict:
        """Delete a calendar event by its identifier.

        Args:
            event_id: Identifier of the event, e.g. "EVT-1003".
        """
        for i, e in enumerate(world.events):
            if e["event_id"] == event_id:
                del world.events[i]
                return {"status": "deleted", "event_id": event_id, "title": e["title"]}
        raise ValueError(f"no event with id {event_id!r}")

    def move_calendar_event(event_id: str, new_date: str, new_start_time: str) -> dict:
        """Move an existing event to a new day and start time.

        Args:
            event_id: Identifier of the event.
            new_date: New day in YYYY-MM-DD format.
            new_start_time: New start time in HH:MM format.
        """
        parse_date(new_date)
        parse_time(new_start_time)
        for e in world.events:
            if e["event_id"] == event_id:
                e["date"], e["start_time"] = new_date, new_start_time
                return {"status": "rescheduled", "event_id": event_id, "date": new_date, "start_time": new_start_time}
        raise ValueError(f"no event with id {event_id!r}")

    def find_free_slots(date: str, duration_minutes: int, day_start: str = "09:00", day_end: str = "18:00") -> dict:
        """Find free time slots of a given length on a day, between working hours.

        Args:
            date: Day in YYYY-MM-DD format.
            duration_minutes: Required length of the slot in minutes.
            day_start: Earliest start time considered, HH:MM.
            day_end: Latest end time considered, HH:MM.
        """
        parse_date(date)
        positive("duration_minutes", duration_minutes)
        busy = sorted((_minutes(e["start_time"]), _minutes(e["start_time"]) + e["duration_minutes"])
                      for e in world.events if e["date"] == date)
        slots, cursor, end = [], _minutes(day_start), _minutes(day_end)
        for b0, b1 in [*busy, (end, end)]:
            if b0 - cursor >= duration_minutes:
                slots.append({"start": f"{cursor // 60:02d}:{cursor % 60:02d}", "end": f"{min(b0, end) // 60:02d}:{min(b0, end) % 60:02d}"})
            cursor = max(cursor, b1)
        return {"date": date, "free_slots": slots}

    def set_reminder(message: str, date: str, time: str, repeat: bool = False) -> dict:
        """Set a reminder that notifies at a given day and time.

        Args:
            message: What to be reminded of.
            date: Day in YYYY-MM-DD format.
            time: Time in HH:MM format.
            repeat: Whether the reminder repeats daily.
        """
        parse_date(date)
        parse_time(time)
        rem = {"reminder_id": world.new_id("REM"), "message": message, "date": date, "time": time, "repeat": repeat}
        world.reminders.append(rem)
        return {"status": "scheduled", **rem}

    def get_public_holidays(country: str, year: int) -> dict:
        """List the public holidays of a country in a year.

        Args:
            country: Country name, e.g. "France".
            year: Calendar year, e.g. 2025.
        """
        key = next((k for k in HOLIDAYS if k.lower() == str(country).strip().lower()), None)
        if key is None:
            raise ValueError(f"no holiday data for {country!r}; available: " + ", ".join(HOLIDAYS))
        days = [{"date": f"{year}-{md}", "name": n, "weekday": dt.date.fromisoformat(f"{year}-{md}").strftime("%A")}
                for md, n in HOLIDAYS[key]]
        return {"country": key, "year": year, "holidays": days}

    return [create_event, list_calendar_events, delete_event, move_calendar_event, find_free_slots, set_reminder,
            get_public_holidays]
