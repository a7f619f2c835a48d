"""The deterministic, seeded state behind the API catalog.

Every executable tool in the catalog reads or changes one ``World``. A world is a pure function of its
seed: two ``World(7)`` objects answer every query identically, which is what lets the task generator
record an expert trajectory once and the environment replay it later with the same tool results.
Each domain's state is built lazily (on first use) from its own sub-seed, so a fresh world per episode
costs almost nothing and a tool never perturbs another domain's numbers.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

#: The "today" of every world: fixed so that relative dates ("tomorrow") are reproducible.
TODAY = dt.date(2025, 6, 16)


@dataclass(frozen=True)
class City:
    name: str
    country: str
    lat: float
    lon: float
    utc_offset: int
    climate: float  # mean temperature in Celsius


CITIES: tuple[City, ...] = (
    City("Lisbon", "Portugal", 38.72, -9.14, 1, 21.0),
    City("Madrid", "Spain", 40.42, -3.70, 2, 23.0),
    City("Paris", "France", 48.86, 2.35, 2, 17.0),
    City("Berlin", "Germany", 52.52, 13.40, 2, 16.0),
    City("Rome", "Italy", 41.90, 12.50, 2, 24.0),
    City("Amsterdam", "Netherlands", 52.37, 4.90, 2, 15.0),
    City("Vienna", "Austria", 48.21, 16.37, 2, 18.0),
    City("Prague", "Czech Republic", 50.08, 14.44, 2, 16.0),
    City("Stockholm", "Sweden", 59.33, 18.07, 2, 13.0),
    City("Oslo", "Norway", 59.91, 10.75, 2, 12.0),
    City("Dublin", "Ireland", 53.35, -6.26, 1, 14.0),
    City("London", "United Kingdom", 51.51, -0.13, 1, 16.0),
    City("Athens", "Greece", 37.98, 23.73, 3, 27.0),
    City("Istanbul", "Turkey", 41.01, 28.98, 3, 22.0),
    City("Cairo", "Egypt", 30.04, 31.24, 3, 30.0),
    City("Nairobi", "Kenya", -1.29, 36.82, 3, 19.0),
    City("Cape Town", "South Africa", -33.92, 18.42, 2, 14.0),
    City("Dubai", "United Arab Emirates", 25.20, 55.27, 4, 34.0),
    City("Mumbai", "India", 19.08, 72.88, 5, 29.0),
    City("Bangkok", "Thailand", 13.76, 100.50, 7, 30.0),
    City("Singapore", "Singapore", 1.35, 103.82, 8, 28.0),
    City("Hong Kong", "China", 22.32, 114.17, 8, 27.0),
    City("Seoul", "South Korea", 37.57, 126.98, 9, 23.0),
    City("Tokyo", "Japan", 35.68, 139.69, 9, 22.0),
    City("Sydney", "Australia", -33.87, 151.21, 10, 13.0),
    City("Auckland", "New Zealand", -36.85, 174.76, 12, 11.0),
    City("Toronto", "Canada", 43.65, -79.38, -4, 19.0),
    City("Vancouver", "Canada", 49.28, -123.12, -7, 16.0),
    City("New York", "United States", 40.71, -74.01, -4, 22.0),
    City("Chicago", "United States", 41.88, -87.63, -5, 21.0),
    City("San Francisco", "United States", 37.77, -122.42, -7, 16.0),
    City("Mexico City", "Mexico", 19.43, -99.13, -6, 18.0),
    City("Bogota", "Colombia", 4.71, -74.07, -5, 14.0),
    City("Lima", "Peru", -12.05, -77.04, -5, 17.0),
    City("Sao Paulo", "Brazil", -23.55, -46.63, -3, 18.0),
    City("Buenos Aires", "Argentina", -34.60, -58.38, -3, 12.0),
)
CITY_BY_NAME = {c.name.lower(): c for c in CITIES}

CONDITIONS = ("sunny", "partly cloudy", "cloudy", "light rain", "heavy rain", "thunderstorms", "windy", "foggy")

STOCKS: dict[str, tuple[str, str, float]] = {  # symbol -> (company, sector, base price)
    "AAPL": ("Apple Inc.", "Technology", 195.0), "MSFT": ("Microsoft Corp.", "Technology", 420.0),
    "GOOGL": ("Alphabet Inc.", "Technology", 175.0), "AMZN": ("Amazon.com Inc.", "Consumer", 185.0),
    "TSLA": ("Tesla Inc.", "Automotive", 180.0), "NVDA": ("NVIDIA Corp.", "Technology", 120.0),
    "META": ("Meta Platforms Inc.", "Technology", 500.0), "NFLX": ("Netflix Inc.", "Media", 640.0),
    "JPM": ("JPMorgan Chase & Co.", "Financials", 198.0), "V": ("Visa Inc.", "Financials", 275.0),
    "KO": ("Coca-Cola Co.", "Consumer Staples", 63.0), "PEP": ("PepsiCo Inc.", "Consumer Staples", 168.0),
    "DIS": ("Walt Disney Co.", "Media", 101.0), "NKE": ("Nike Inc.", "Consumer", 94.0),
    "INTC": ("Intel Corp.", "Technology", 31.0), "IBM": ("IBM Corp.", "Technology", 170.0),
    "XOM": ("Exxon Mobil Corp.", "Energy", 112.0), "PFE": ("Pfizer Inc.", "Healthcare", 28.0),
}

#: units of currency per 1 USD
CURRENCIES: dict[str, float] = {
    "USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 157.0, "CHF": 0.89, "CAD": 1.37, "AUD": 1.51,
    "CNY": 7.25, "INR": 83.5, "BRL": 5.4, "MXN": 18.4, "SEK": 10.5, "NOK": 10.6, "KRW": 1380.0,
    "SGD": 1.35, "ZAR": 18.3,
}

FIRST_NAMES = ("Alice", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Gustavo", "Hana", "Ivan", "Julia",
               "Kenji", "Laura", "Mateo", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Samuel", "Tara",
               "Uma", "Victor", "Wei", "Yara", "Zoe")
LAST_NAMES = ("Almeida", "Becker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hughes", "Ito",
              "Jensen", "Kowalski", "Lopez", "Moreau", "Novak", "Okafor", "Patel", "Rossi", "Silva",
              "Tanaka", "Weber")

PRODUCT_CATALOG: tuple[tuple[str, str, float], ...] = (  # (name, category, base price)
    ("wireless headphones", "electronics", 89.99), ("bluetooth speaker", "electronics", 49.99),
    ("usb-c charger", "electronics", 19.99), ("mechanical keyboard", "electronics", 119.0),
    ("wireless mouse", "electronics", 29.5), ("4k monitor", "electronics", 329.0),
    ("smart watch", "electronics", 199.0), ("e-reader", "electronics", 139.0),
    ("running shoes", "clothing", 120.0), ("rain jacket", "clothing", 85.0),
    ("wool sweater", "clothing", 64.0), ("denim jeans", "clothing", 55.0), ("baseball cap", "clothing", 18.0),
    ("coffee grinder", "home", 42.0), ("french press", "home", 27.0), ("cast iron skillet", "home", 38.0),
    ("desk lamp", "home", 34.0), ("throw blanket", "home", 29.0), ("water bottle", "sports", 15.0),
    ("yoga mat", "sports", 25.0), ("dumbbell set", "sports", 79.0), ("tennis racket", "sports", 95.0),
    ("camping tent", "sports", 149.0), ("cookbook", "books", 24.0), ("mystery novel", "books", 14.0),
    ("science encyclopedia", "books", 45.0), ("travel guide", "books", 19.0), ("lego set", "toys", 59.0),
    ("board game", "toys", 35.0), ("jigsaw puzzle", "toys", 16.0),
)
PRODUCT_CATEGORIES = ("electronics", "clothing", "home", "sports", "books", "toys")

TEAMS: dict[str, tuple[str, ...]] = {
    "premier_league": ("Arsenal", "Chelsea", "Liverpool", "Manchester City", "Tottenham", "Newcastle"),
    "la_liga": ("Barcelona", "Real Madrid", "Atletico Madrid", "Sevilla", "Valencia", "Real Sociedad"),
    "serie_a": ("Juventus", "Inter Milan", "AC Milan", "Napoli", "Roma", "Lazio"),
    "nba": ("Lakers", "Celtics", "Warriors", "Bulls", "Heat", "Knicks"),
}
PLAYERS: dict[str, tuple[str, str]] = {  # player -> (team, league)
    "Marco Vidal": ("Arsenal", "premier_league"), "Tom Ashby": ("Liverpool", "premier_league"),
    "Kofi Mensah": ("Chelsea", "premier_league"), "Luis Herrera": ("Barcelona", "la_liga"),
    "Diego Navarro": ("Real Madrid", "la_liga"), "Pablo Ortiz": ("Sevilla", "la_liga"),
    "Luca Bianchi": ("Juventus", "serie_a"), "Paolo Greco": ("Napoli", "serie_a"),
    "Jamal Carter": ("Lakers", "nba"), "Derek Lawson": ("Celtics", "nba"), "Andre Brooks": ("Warriors", "nba"),
}

RECIPES: tuple[tuple[str, tuple[str, ...], str, int, int], ...] = (  # name, ingredients, diet, minutes, kcal
    ("tomato basil pasta", ("pasta", "tomato", "basil", "garlic", "olive oil"), "vegetarian", 25, 520),
    ("chickpea curry", ("chickpeas", "coconut milk", "onion", "garlic", "spinach"), "vegan", 35, 480),
    ("chicken stir fry", ("chicken", "bell pepper", "soy sauce", "rice", "garlic"), "none", 30, 610),
    ("greek salad", ("tomato", "cucumber", "feta", "olives", "onion"), "vegetarian", 15, 320),
    ("lentil soup", ("lentils", "carrot", "onion", "celery", "tomato"), "vegan", 45, 390),
    ("salmon with rice", ("salmon", "rice", "lemon", "dill"), "pescatarian", 30, 640),
    ("mushroom risotto", ("rice", "mushroom", "onion", "parmesan", "butter"), "vegetarian", 40, 580),
    ("beef tacos", ("beef", "tortilla", "onion", "tomato", "cheese"), "none", 25, 700),
    ("veggie omelette", ("eggs", "spinach", "mushroom", "cheese"), "vegetarian", 12, 350),
    ("tofu noodle bowl", ("tofu", "noodles", "soy sauce", "carrot", "spinach"), "vegan", 20, 450),
    ("shrimp paella", ("shrimp", "rice", "bell pepper", "saffron", "peas"), "pescatarian", 50, 690),
    ("banana pancakes", ("banana", "eggs", "flour", "milk"), "vegetarian", 20, 430),
)
CUISINES = ("italian", "japanese", "mexican", "indian", "french", "thai", "chinese", "mediterranean")

#: kcal, protein g, carbs g, fat g per 100 g
FOODS: dict[str, tuple[float, float, float, float]] = {
    "apple": (52, 0.3, 14, 0.2), "banana": (89, 1.1, 23, 0.3), "rice": (130, 2.7, 28, 0.3),
    "chicken breast": (165, 31, 0, 3.6), "salmon": (208, 20, 0, 13), "egg": (155, 13, 1.1, 11),
    "oats": (389, 17, 66, 7), "broccoli": (34, 2.8, 7, 0.4), "almonds": (579, 21, 22, 50),
    "whole milk": (61, 3.2, 4.8, 3.3), "bread": (265, 9, 49, 3.2), "avocado": (160, 2, 9, 15),
    "potato": (77, 2, 17, 0.1), "cheddar cheese": (403, 25, 1.3, 33), "tofu": (76, 8, 1.9, 4.8),
}


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


@dataclass
class World:
    """All state behind the catalog's tools, derived from ``seed``.

    Read-only tables (weather, prices, fixtures) are functions of ``(seed, key)``; mutable stores
    (calendar, cart, files, inbox, bookings) start from a seeded snapshot and change as tools run.
    """

    seed: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    # -- helpers -------------------------------------------------------------------------------------
    def rng(self, *key: Any) -> random.Random:
        """A generator that depends only on the world's seed and ``key`` (deterministic across runs)."""
        return random.Random(f"{self.seed}|" + "|".join(str(k) for k in key))

    def new_id(self, prefix: str) -> str:
        """Sequential identifiers (``EVT-1001``, ...) so that creating things is reproducible."""
        n = self.counters.get(prefix, 1000) + 1
        self.counters[prefix] = n
        return f"{prefix}-{n}"

    @staticmethod
    def city(name: str) -> City:
        city = CITY_BY_NAME.get(str(name).strip().lower())
        if city is None:
            raise ValueError(f"unknown city {name!r}; known cities include " + ", ".join(c.name for c in CITIES[:8]))
        return city

    # -- lazily built mutable stores ----------------------------------------------------------------
    @cached_property
    def contacts(self) -> list[dict[str, Any]]:
        rng = self.rng("contacts")
        names: list[str] = []
        while len(names) < 14:
            n = _name(rng)
            if n.split()[0] not in {x.split()[0] for x in names}:
                names.append(n)
        out = []
        for i, n in enumerate(names):
            first, last = n.split()
            out.append({"contact_id": f"C-{101 + i}", "name": n,
                        "email": f"{first.lower()}.{last.lower()}@example.com",
                        "phone": f"+1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
                        "city": rng.choice(CITIES).name})
        return out

    @cached_property
    def inbox(self) -> list[dict[str, Any]]:
        rng = self.rng("inbox")
        subjects = ("Quarterly report", "Lunch on Friday?", "Your invoice", "Project kickoff", "Weekend plans",
                    "Flight confirmation", "Team offsite", "Reminder: dentist", "Book club", "Budget review")
        out = []
        for i in range(8):
            sender = rng.choice(self.contacts)
            out.append({"message_id": f"M-{501 + i}", "from": sender["email"], "subject": rng.choice(subjects),
                        "body": f"Hi, this is {sender['name'].split()[0]}. Let me know what you think.",
                        "unread": rng.random() < 0.5, "date": (TODAY - dt.timedelta(days=rng.randint(0, 9))).isoformat()})
        return out

    @cached_property
    def sent(self) -> list[dict[str, Any]]:
        return []

    @cached_property
    def events(self) -> list[dict[str, Any]]:
        rng = self.rng("events")
        titles = ("Team standup", "Dentist appointment", "Lunch with Sam", "Project review", "Gym session",
                  "Call with client", "Yoga class", "Budget meeting")
        out = []
        for i in range(6):  # fixed ids (not new_id): creating an event first must not renumber these
            day = TODAY + dt.timedelta(days=rng.randint(0, 6))
            hour = rng.randint(8, 17)
            out.append({"event_id": f"EVT-{501 + i}", "title": rng.choice(titles), "date": day.isoformat(),
                        "start_time": f"{hour:02d}:00", "duration_minutes": rng.choice((30, 45, 60, 90)),
                        "attendees": [], "location": None})
        return out

    @cached_property
    def reminders(self) -> list[dict[str, Any]]:
        return []

    @cached_property
    def files(self) -> dict[str, str]:
        """Path -> content; directories are the implied prefixes plus ``self.dirs``."""
        rng = self.rng("files")
        nums = [rng.randint(10, 99) for _ in range(6)]
        return {
            "/home/notes.txt": "Buy milk\nCall the bank\nFinish the slides",
            "/home/todo.md": "# TODO\n- renew passport\n- book dentist",
            "/home/docs/report.txt": f"Quarterly revenue grew by {nums[0]} percent.",
            "/home/docs/budget.csv": f"item,amount\nrent,{nums[1] * 20}\nfood,{nums[2] * 5}\ntravel,{nums[3] * 4}",
            "/home/docs/meeting_minutes.txt": "Decisions: ship v2 in July. Owner: Dana.",
            "/home/photos/beach.jpg": "<binary image data>",
            "/home/photos/mountain.png": "<binary image data>",
            "/home/code/main.py": "print('hello world')",
            "/home/code/README.md": f"# Demo project\nVersion {nums[4] % 5}.{nums[5] % 10}",
            "/tmp/cache.log": "cache warmed",
        }

    @cached_property
    def dirs(self) -> set[str]:
        return {"/", "/home", "/home/docs", "/home/photos", "/home/code", "/tmp"}

    @cached_property
    def products(self) -> list[dict[str, Any]]:
        rng = self.rng("products")
        out = []
        for i, (name, cat, price) in enumerate(PRODUCT_CATALOG):
            out.append({"product_id": f"P-{2001 + i}", "name": name, "category": cat,
                        "price": round(price * rng.uniform(0.85, 1.15), 2), "rating": round(rng.uniform(3.2, 4.9), 1),
                        "stock": rng.choice((0, 3, 8, 15, 40))})
        return out

    @cached_property
    def cart(self) -> dict[str, int]:
        return {}

    @cached_property
    def orders(self) -> dict[str, dict[str, Any]]:
        rng = self.rng("orders")
        oid = f"ORD-{rng.randint(70000, 79999)}"
        return {oid: {"order_id": oid, "status": "shipped", "items": [{"product_id": "P-2003", "quantity": 1}],
                      "total": 19.99, "eta": (TODAY + dt.timedelta(days=2)).isoformat()}}

    @cached_property
    def coupons(self) -> dict[str, int]:
        return {"SAVE10": 10, "WELCOME15": 15, "SUMMER20": 20}

    @cached_property
    def bookings(self) -> dict[str, dict[str, Any]]:
        return {}

    @cached_property
    def portfolio(self) -> dict[str, Any]:
        return {"cash": 10000.0, "positions": {}}

    @cached_property
    def workouts(self) -> list[dict[str, Any]]:
        rng = self.rng("workouts")
        acts = ("running", "cycling", "swimming", "yoga", "strength training")
        return [{"activity": rng.choice(acts), "duration_minutes": rng.choice((20, 30, 45, 60)),
                 "date": (TODAY - dt.timedelta(days=d)).isoformat()} for d in (1, 2, 4, 6)]

    @cached_property
    def water_ml(self) -> dict[str, int]:
        return {}

    @cached_property
    def reservations(self) -> dict[str, dict[str, Any]]:
        return {}
