"""Request templates: for each catalog tool, how to sample realistic arguments and ask for them.

A ``Template`` samples arguments (reading the task's ``World`` where valid identifiers are needed: event
ids, contact names, products), and has several phrasings; a phrasing is usable when its ``{fields}`` are
exactly the sampled arguments, so optional arguments appear in the request if and only if they appear in
the ground-truth call. ``intent`` is a verb phrase ("check the weather in a city") used for refusals and
clarifying questions; ``answer`` formats the expert's sentence from ``a`` (arguments) and ``r`` (result).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from random import Random
from typing import Any

from tools.catalog.world import (
    CITIES,
    CURRENCIES,
    FOODS,
    PLAYERS,
    PRODUCT_CATALOG,
    STOCKS,
    TEAMS,
    TODAY,
    World,
)

Sampler = Callable[[Random, World], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Template:
    tool: str
    sample: Sampler
    phrasings: tuple[str, ...]
    intent: str
    answer: str | None = None
    parallel_ok: bool = True
    render: dict[str, Callable[[Any], str]] = dataclasses.field(default_factory=dict)


# -- value pools -----------------------------------------------------------------------------------------
CITY_NAMES = tuple(c.name for c in CITIES)
EU_CITIES = ("Lisbon", "Madrid", "Paris", "Berlin", "Rome", "Amsterdam", "Vienna", "Prague", "Stockholm", "Oslo", "Dublin", "London")
SUBJECTS = ("Meeting notes", "Dinner on Saturday", "Invoice 2291", "Trip itinerary", "Quick update", "Happy birthday!",
            "Project deadline", "Draft proposal")
BODIES = ("Please find the notes attached.", "Are you free on Saturday evening?", "The invoice has been paid.",
          "Here is the plan for our trip.", "Just checking in on the report.", "Wishing you a wonderful day!",
          "Can we move the deadline to Friday?", "Let me know what you think of the draft.")
SMS = ("Running 10 minutes late", "Call me when you land", "Don't forget the tickets", "See you at the station",
       "Happy birthday!", "Dinner is at 8")
EVENT_TITLES = ("Team sync", "Doctor appointment", "Coffee with Maya", "Quarterly review", "Piano lesson",
                "Interview", "Sprint planning", "Parent-teacher meeting", "Haircut")
SENTENCES = ("The quick brown fox jumps over the lazy dog.", "Machine learning models need good data.",
             "Our team meets every Monday at nine.", "Travel light and pack smart for the trip.",
             "She sells sea shells by the sea shore.", "Python makes quick scripts easy to write.",
             "Rain is expected in the afternoon, so bring an umbrella.")
PERSON_FIRST = ("Maria", "John", "Aisha", "Lukas", "Sofia", "Daniel", "Mei", "Carlos", "Elena", "Noah", "Ingrid", "Ravi")
PERSON_LAST = ("Santos", "Miller", "Khan", "Schmidt", "Rossi", "Brown", "Lin", "Mendez", "Petrova", "Wilson", "Berg", "Iyer")


def city(r: Random) -> str:
    return r.choice(CITY_NAMES)


def two_cities(r: Random, pool: tuple[str, ...] = CITY_NAMES) -> list[str]:
    return r.sample(pool, 2)


def future(r: Random, lo: int = 1, hi: int = 30) -> str:
    return (TODAY + dt.timedelta(days=r.randint(lo, hi))).isoformat()


def past(r: Random, lo: int = 1, hi: int = 90) -> str:
    return (TODAY - dt.timedelta(days=r.randint(lo, hi))).isoformat()


def clock(r: Random, lo: int = 7, hi: int = 20) -> str:
    return f"{r.randint(lo, hi):02d}:{r.choice(('00', '15', '30', '45'))}"


def person(r: Random) -> str:
    return f"{r.choice(PERSON_FIRST)} {r.choice(PERSON_LAST)}"


def maybe(r: Random, p: float = 0.5) -> bool:
    return r.random() < p


def with_opt(r: Random, args: dict[str, Any], p: float = 0.5, **optional: Any) -> dict[str, Any]:
    """``args`` plus each optional argument with probability ``p``."""
    for k, v in optional.items():
        if maybe(r, p):
            args[k] = v
    return args


def num(r: Random, lo: float, hi: float, step: float = 1.0) -> int | float:
    """A round number a person would type, for ``number`` parameters: an int when it is whole (``1500``, not
    ``1500.0``: the expert's calls then teach the form BFCL's checker takes for both its integer and float
    parameters), otherwise a float (``12.5``)."""
    value = round(r.uniform(lo, hi) / step) * step
    return int(value) if float(value).is_integer() else float(value)


def unit_pair(r: Random, units: tuple[str, ...]) -> list[str]:
    return r.sample(units, 2)


# -- templates, by domain ----------------------------------------------------------------------------
T: list[Template] = []


def add(tool: str, sample: Sampler, phrasings: tuple[str, ...] | list[str], intent: str, answer: str | None = None,
        parallel_ok: bool = True, **render: Callable[[Any], str]) -> None:
    T.append(Template(tool, sample, tuple(phrasings), intent, answer, parallel_ok, dict(render)))


UNIT_WORD = {"celsius": "Celsius", "fahrenheit": "Fahrenheit"}

# weather
add("get_weather_now", lambda r, w: with_opt(r, {"city": city(r)}, unit=r.choice(("celsius", "fahrenheit"))), (
    "What's the weather like in {city} right now?", "How is the weather in {city} at the moment?",
    "Is it raining in {city}? Tell me the current conditions.", "Current weather for {city}, please.",
    "What's the weather in {city} right now? Give me the temperature in {unit}.",
    "Tell me the current weather in {city} in {unit}.", "How warm is it in {city} now, in degrees {unit}?"),
    "check the current weather in a city",
    "It is currently {r[temperature]} degrees {r[unit]} and {r[condition]} in {r[city]}, with {r[humidity_percent]}% humidity.",
    unit=lambda u: UNIT_WORD[u])
add("get_daily_forecast", lambda r, w: with_opt(r, {"city": city(r)}, days=r.randint(1, 7), unit=r.choice(("celsius", "fahrenheit"))), (
    "What's the forecast for {city}?", "Will it rain in {city} over the next few days?",
    "Give me a {days}-day weather forecast for {city}.", "What will the weather be in {city} for the next {days} days?",
    "Forecast for {city} for the next {days} days in {unit}, please.", "Show me the upcoming weather in {city} with temperatures in {unit}.",
    "I need the {days}-day forecast for {city}, temperatures in {unit}."),
    "get a weather forecast", unit=lambda u: UNIT_WORD[u])
add("check_city_air_quality", lambda r, w: {"city": city(r)}, (
    "How is the air quality in {city} today?", "What's the AQI in {city}?", "Is the air in {city} safe to go running today?"),
    "check air quality", "The air quality index in {r[city]} is {r[aqi]} ({r[level]}); the main pollutant is {r[main_pollutant]}.")
add("get_uv_index", lambda r, w: with_opt(r, {"city": city(r)}, 0.4, date=future(r, 1, 10)), (
    "What's the UV index in {city} today?", "Do I need sunscreen in {city}? Check the UV index.",
    "What will the UV index be in {city} on {date}?", "UV index for {city} on {date}, please."),
    "check the UV index", "The UV index in {r[city]} on {r[date]} is {r[uv_index]}, which is {r[risk]} risk.")
add("get_sunrise_sunset", lambda r, w: {"city": city(r), "date": future(r, 0, 60)}, (
    "When does the sun rise and set in {city} on {date}?", "What time is sunset in {city} on {date}?",
    "Give me sunrise and sunset times for {city} on {date}."),
    "look up sunrise and sunset times", "On {r[date]} in {r[city]} the sun rises at {r[sunrise]} and sets at {r[sunset]}.")
add("get_historical_weather", lambda r, w: with_opt(r, {"city": city(r), "date": past(r)}, 0.3, unit="fahrenheit"), (
    "What was the weather like in {city} on {date}?", "How was the weather in {city} on {date}?",
    "What was the weather in {city} on {date}? Use {unit}.", "Historical weather for {city} on {date} in {unit}."),
    "look up past weather", unit=lambda u: UNIT_WORD[u])
add("get_weather_alerts", lambda r, w: with_opt(r, {"city": city(r)}, 0.5, min_severity=r.choice(("moderate", "severe"))), (
    "Are there any weather warnings for {city}?", "Check active weather alerts in {city}.",
    "Are there any {min_severity} or worse weather alerts in {city}?", "Show me weather alerts for {city} with severity {min_severity} and above."),
    "check weather alerts")

# finance
add("get_stock_quote", lambda r, w: {"symbol": r.choice(list(STOCKS))}, (
    "What's the current price of {symbol} stock?", "How much is {symbol} trading at right now?", "Give me a quote for {symbol}.",
    "Check the stock price of ticker {symbol}."),
    "get a stock quote", "{r[symbol]} is trading at ${r[price]} ({r[change_percent]}% today).")
add("get_stock_history", lambda r, w: with_opt(r, {"symbol": r.choice(list(STOCKS))}, 0.6, days=r.randint(2, 30)), (
    "Show me the recent closing prices of {symbol}.", "How has {symbol} been doing lately?",
    "Get the last {days} days of closing prices for {symbol}.", "What were {symbol}'s closing prices over the past {days} days?"),
    "look up a stock's price history", "Over that period {r[symbol]} ranged from a low of ${r[low]} to a high of ${r[high]}.")
add("get_company_profile", lambda r, w: {"symbol": r.choice(list(STOCKS))}, (
    "What company is behind the ticker {symbol}?", "Give me the company profile for {symbol}.", "Which sector is {symbol} in, and how big is it?"),
    "look up a company profile", "{r[symbol]} is {r[name]} in the {r[sector]} sector, worth about ${r[market_cap_billion_usd]} billion.")
_CUR = tuple(CURRENCIES)
add("exchange_money_amount", lambda r, w: dict(zip(("from_currency", "to_currency"), r.sample(_CUR, 2), strict=True), amount=num(r, 5, 5000, 5)), (
    "Convert {amount} {from_currency} to {to_currency}.", "How much is {amount} {from_currency} in {to_currency}?",
    "I have {amount} {from_currency}. What is that in {to_currency}?", "Change {amount} {from_currency} into {to_currency} for me."),
    "convert money between currencies", "{r[amount]} {r[from]} is {r[converted]} {r[to]} at a rate of {r[rate]}.")
add("get_currency_rates", lambda r, w: (lambda c: {"base_currency": c[0], "target_currencies": c[1:]})(r.sample(_CUR, r.randint(2, 4))), (
    "What are the exchange rates from {base_currency} to {target_currencies}?", "Give me {base_currency} rates against {target_currencies}.",
    "How much is one {base_currency} worth in {target_currencies}?"),
    "look up exchange rates")
add("calculate_loan_payment", lambda r, w: {"principal": num(r, 5000, 500000, 1000), "annual_rate_percent": num(r, 1, 9, 0.25), "years": r.choice((3, 5, 10, 15, 20, 25, 30))}, (
    "What would the monthly payment be on a {principal} loan at {annual_rate_percent}% over {years} years?",
    "Calculate my mortgage payment: {principal} borrowed, {annual_rate_percent} percent interest, {years}-year term.",
    "If I borrow {principal} for {years} years at an annual rate of {annual_rate_percent}%, how much do I pay each month?"),
    "calculate a loan payment", "The monthly payment would be {r[monthly_payment]}, for a total of {r[total_paid]} ({r[total_interest]} in interest).")
add("project_savings_growth", lambda r, w: with_opt(r, {"principal": num(r, 500, 50000, 100), "annual_rate_percent": num(r, 1, 8, 0.5), "years": r.randint(1, 30)}, 0.4, compounds_per_year=r.choice((1, 4, 365))), (
    "If I invest {principal} at {annual_rate_percent}% a year for {years} years, how much will I have?",
    "Compound interest on {principal} at {annual_rate_percent} percent for {years} years, please.",
    "What will {principal} grow to in {years} years at {annual_rate_percent}% compounded {compounds_per_year} times a year?"),
    "calculate compound interest", "It would grow to {r[future_value]}, earning {r[interest_earned]} in interest.")
add("get_portfolio_value", lambda r, w: {"holdings": {s: r.choice((5, 10, 20, 25, 50, 100)) for s in r.sample(list(STOCKS), r.randint(1, 3))}}, (
    "What is my portfolio worth? I hold {holdings}.", "Value these holdings at today's prices: {holdings}.",
    "I own {holdings}. How much is that worth?"),
    "value a stock portfolio", "Your portfolio is worth ${r[total_value]} at the latest prices.",
    holdings=lambda h: " and ".join(f"{q} shares of {s}" for s, q in h.items()))
add("place_stock_order", lambda r, w: with_opt(r, {"symbol": r.choice(("KO", "PFE", "INTC", "NKE", "DIS", "PEP")), "quantity": r.randint(1, 20), "side": "buy"}, 0.3,
                                               limit_price=num(r, 30, 200, 1)), (
    "I want to {side} {quantity} shares of {symbol}.", "Place a {side} order for {quantity} shares of {symbol} at market price.",
    "Please {side} {quantity} {symbol} shares for me.",
    "I want to {side} {quantity} shares of {symbol} with a limit price of {limit_price}.", "Place a limit {side} order: {quantity} {symbol} at {limit_price} dollars max."),
    "place a stock order", parallel_ok=False)

# calendar
add("create_event", lambda r, w: with_opt(r, {"title": r.choice(EVENT_TITLES), "date": future(r, 1, 20), "start_time": clock(r, 8, 18)}, 0.35,
                                          duration_minutes=r.choice((15, 30, 45, 90, 120)), location=r.choice(("Room 4B", "the office", "Cafe Central", "Zoom"))), (
    "Add '{title}' to my calendar on {date} at {start_time}.", "Schedule {title} on {date} starting at {start_time}.",
    "Create an event called {title} for {date} at {start_time}.",
    "Book {title} on {date} at {start_time} for {duration_minutes} minutes.", "Put {title} in my calendar: {date}, {start_time}, lasting {duration_minutes} minutes.",
    "Schedule {title} on {date} at {start_time} at {location}.", "Create '{title}' on {date} at {start_time}, location {location}.",
    "Add {title} on {date} at {start_time} for {duration_minutes} minutes at {location}."),
    "create a calendar event", "Done: '{r[title]}' is scheduled on {r[date]} at {r[start_time]} (event id {r[event_id]}).")
add("list_calendar_events", lambda r, w: {"date": r.choice(w.events)["date"] if maybe(r, 0.8) else future(r, 1, 10)}, (
    "What's on my calendar on {date}?", "Do I have any events on {date}?", "List my appointments for {date}.", "Show my schedule for {date}."),
    "list calendar events")
add("delete_event", lambda r, w: {"event_id": r.choice(w.events)["event_id"]}, (
    "Delete event {event_id} from my calendar.", "Cancel the calendar event with id {event_id}.", "Remove {event_id} from my schedule."),
    "delete a calendar event", "I deleted '{r[title]}' ({r[event_id]}) from your calendar.", parallel_ok=False)
add("move_calendar_event", lambda r, w: {"event_id": r.choice(w.events)["event_id"], "new_date": future(r, 1, 14), "new_start_time": clock(r, 8, 18)}, (
    "Move event {event_id} to {new_date} at {new_start_time}.", "Reschedule {event_id} to {new_date}, {new_start_time}.",
    "Can you push calendar event {event_id} to {new_date} starting {new_start_time}?"),
    "reschedule a calendar event", "Event {r[event_id]} now starts on {r[date]} at {r[start_time]}.", parallel_ok=False)
add("find_free_slots", lambda r, w: with_opt(r, {"date": r.choice(w.events)["date"], "duration_minutes": r.choice((30, 45, 60, 90))}, 0.3, day_start="08:00"), (
    "When am I free for {duration_minutes} minutes on {date}?", "Find a {duration_minutes}-minute gap in my calendar on {date}.",
    "Find free {duration_minutes}-minute slots on {date}, starting the day at {day_start}."),
    "find free time in the calendar")
add("set_reminder", lambda r, w: with_opt(r, {"message": r.choice(("call mom", "take out the trash", "pay rent", "water the plants", "submit the report")),
                                              "date": future(r, 0, 10), "time": clock(r)}, 0.25, repeat=True), (
    "Remind me to {message} on {date} at {time}.", "Set a reminder for {date} at {time}: {message}.",
    "Set a daily repeating reminder{repeat} to {message} starting {date} at {time}.", "Remind me every day{repeat} to {message}, from {date} at {time}."),
    "set a reminder", "Reminder set for {r[date]} at {r[time]}: {r[message]}.", repeat=lambda v: "")
add("get_public_holidays", lambda r, w: {"country": r.choice(("United States", "United Kingdom", "France", "Germany", "Japan", "India", "Brazil", "Canada")),
                                         "year": r.choice((2024, 2025, 2026))}, (
    "What are the public holidays in {country} in {year}?", "List {country}'s public holidays for {year}.", "Which days are bank holidays in {country} in {year}?"),
    "list public holidays")

# travel
add("search_flights", lambda r, w: with_opt(r, dict(zip(("origin", "destination"), two_cities(r), strict=True), date=future(r, 3, 60)), 0.3,
                                            cabin_class=r.choice(("premium_economy", "business", "first")), passengers=r.randint(2, 4)), (
    "Find flights from {origin} to {destination} on {date}.", "Search one-way flights {origin} to {destination} for {date}.",
    "I need to fly from {origin} to {destination} on {date}. What are my options?",
    "Find {cabin_class} class flights from {origin} to {destination} on {date}.", "Search {cabin_class} flights {origin} -> {destination}, {date}.",
    "Find flights from {origin} to {destination} on {date} for {passengers} passengers.",
    "We are {passengers} people flying {origin} to {destination} on {date}. Search flights.",
    "Find {cabin_class} flights from {origin} to {destination} on {date} for {passengers} passengers."),
    "search for flights", cabin_class=lambda c: c.replace("_", " "))
add("search_train_tickets", lambda r, w: with_opt(r, dict(zip(("origin", "destination"), two_cities(r, EU_CITIES[:9]), strict=True), date=future(r, 1, 30)), 0.3, first_class=True), (
    "Find trains from {origin} to {destination} on {date}.", "Are there train connections between {origin} and {destination} on {date}?",
    "Search first-class{first_class} train tickets from {origin} to {destination} on {date}.", "Find me a first class{first_class} train {origin} to {destination} on {date}."),
    "search train tickets", first_class=lambda v: "")
add("search_hotel_rooms", lambda r, w: with_opt(r, {"city": city(r), "check_in": future(r, 3, 60), "nights": r.randint(1, 7)}, 0.3,
                                           max_price_per_night=num(r, 100, 300, 10), min_rating=r.choice((3.5, 4, 4.5))), (
    "Find a hotel in {city} from {check_in} for {nights} nights.", "Search hotels in {city}, checking in {check_in}, {nights} nights.",
    "I need a place to stay in {city} for {nights} nights starting {check_in}.",
    "Find hotels in {city} from {check_in} for {nights} nights under {max_price_per_night} per night.",
    "Find hotels in {city} from {check_in} for {nights} nights rated at least {min_rating}.",
    "Hotels in {city}, check-in {check_in}, {nights} nights, max {max_price_per_night} a night, rating {min_rating} or better."),
    "search for hotels")
add("get_visa_requirements", lambda r, w: with_opt(r, dict(zip(("nationality", "destination_country"), r.sample(("India", "Canada", "Brazil", "Japan", "Kenya", "Mexico", "Turkey", "Thailand", "Australia", "Egypt"), 2), strict=True)), 0.4,
                                                   stay_days=r.choice((14, 60, 120))), (
    "Do citizens of {nationality} need a visa to visit {destination_country}?", "Visa requirements for a {nationality} passport holder travelling to {destination_country}?",
    "I'm from {nationality} and want to stay in {destination_country} for {stay_days} days. Do I need a visa?"),
    "check visa requirements")

# shopping
_PRODUCT_WORDS = tuple(sorted({n.split()[-1] for n, _, _ in PRODUCT_CATALOG}))
add("search_store_items", lambda r, w: with_opt(r, {"query": r.choice(_PRODUCT_WORDS)}, 0.3, max_price=num(r, 20, 200, 10), in_stock_only=True), (
    "Search the store for {query}.", "Do you sell any {query}?", "Find {query} products.",
    "Find {query} under {max_price} dollars.", "Show me {query} that cost at most {max_price}.",
    "Search for {query} that are in stock{in_stock_only}.", "Find {query} in stock{in_stock_only} under {max_price} dollars."),
    "search for products", in_stock_only=lambda v: "")
add("get_store_item_details", lambda r, w: {"product_id": r.choice(w.products)["product_id"]}, (
    "Tell me more about product {product_id}.", "What are the details of item {product_id}?", "Is product {product_id} in stock, and how much is it?"),
    "get product details", "{r[name]} ({r[product_id]}) costs ${r[price]}, is rated {r[rating]} and has {r[stock]} units in stock.")
add("add_to_cart", lambda r, w: with_opt(r, {"product_id": r.choice([p for p in w.products if p["stock"] >= 3])["product_id"]}, 0.4, quantity=r.randint(2, 3)), (
    "Add product {product_id} to my cart.", "Put item {product_id} in the shopping cart.",
    "Add {quantity} of product {product_id} to my cart.", "I'll take {quantity} units of {product_id}, add them to the cart."),
    "add an item to the cart", parallel_ok=False)
add("view_cart", lambda r, w: {}, ("What's in my shopping cart?", "Show me my cart.", "View my cart and subtotal."), "view the cart")
add("apply_coupon", lambda r, w: {"code": r.choice(("SAVE10", "WELCOME15", "SUMMER20"))}, (
    "Apply the coupon code {code}.", "Is the coupon {code} valid?", "I have a discount code {code}. How much does it take off?"),
    "apply a coupon code", "Coupon {r[code]} is valid and gives {r[discount_percent]}% off.")
add("track_order", lambda r, w: {"order_id": r.choice(list(w.orders))}, (
    "Where is my order {order_id}?", "Track order {order_id}.", "What's the status of order {order_id}?"),
    "track an order", "Order {r[order_id]} is {r[status]}; expected delivery {r[eta]}.")

# units
def _conv(tool: str, units: tuple[str, ...], lo: float, hi: float, noun: str, a: str = "from_unit", b: str = "to_unit") -> None:
    add(tool, lambda r, w: dict(zip((a, b), unit_pair(r, units), strict=True), value=num(r, lo, hi, 0.5)), (
        f"Convert {{value}} {{{a}}} to {{{b}}}.", f"How many {{{b}}} is {{value}} {{{a}}}?",
        f"What is {{value}} {{{a}}} in {{{b}}}?", f"I need {{value}} {{{a}}} expressed in {{{b}}}."),
        f"convert {noun}", f"{{r[value]}} {{a[{a}]}} is {{r[result]}} {{a[{b}]}}.", **{a: lambda u: u.replace("_", " ") + ("s" if not u.endswith(("s", "h")) else ""),
                                                                                   b: lambda u: u.replace("_", " ") + ("s" if not u.endswith(("s", "h")) else "")})


_conv("convert_length", ("millimeter", "centimeter", "meter", "kilometer", "inch", "foot", "yard", "mile"), 1, 500, "lengths")
_conv("convert_weight", ("milligram", "gram", "kilogram", "ounce", "pound", "stone", "ton"), 1, 300, "weights")
_conv("convert_volume", ("milliliter", "liter", "cup", "pint", "quart", "gallon", "fluid_ounce"), 1, 50, "volumes")
_conv("convert_speed", ("mps", "kph", "mph", "knot"), 5, 150, "speeds")
_conv("convert_data_size", ("byte", "kilobyte", "megabyte", "gigabyte", "terabyte", "mebibyte", "gibibyte"), 1, 4096, "data sizes")
add("convert_temperature", lambda r, w: dict(zip(("from_scale", "to_scale"), unit_pair(r, ("celsius", "fahrenheit", "kelvin")), strict=True), value=num(r, 0, 100, 0.5)), (
    "Convert {value} degrees {from_scale} to {to_scale}.", "What is {value} {from_scale} in {to_scale}?", "{value} degrees {from_scale} is how much in {to_scale}?"),
    "convert temperatures", "{r[value]} degrees {a[from_scale]} is {r[result]} degrees {a[to_scale]}.",
    from_scale=lambda s: s.capitalize(), to_scale=lambda s: s.capitalize())

# math
add("describe_numbers", lambda r, w: with_opt(r, {"numbers": [r.randint(1, 99) for _ in range(r.randint(4, 8))]}, 0.5,
                                                measures=r.sample(["mean", "median", "stdev", "min", "max", "sum"], 2)), (
    "Compute summary statistics for {numbers}.", "Give me the statistics of these values: {numbers}.",
    "What are the {measures} of {numbers}?", "Calculate the {measures} for the data {numbers}."),
    "compute statistics", numbers=lambda xs: ", ".join(f"{x:g}" for x in xs))
add("find_quadratic_roots", lambda r, w: {"a": r.choice((1, 2, 3, -1)), "b": r.randint(-10, 10), "c": r.randint(-20, 20)}, (
    "Solve {a}x^2 + {b}x + {c} = 0.", "Find the real roots of the quadratic with a={a}, b={b}, c={c}.",
    "What are the solutions of the equation with coefficients a = {a}, b = {b} and c = {c}?"),
    "solve a quadratic equation", "The discriminant is {r[discriminant]} and the real roots are {r[real_roots]}.")
add("calculate_percentage", lambda r, w: with_opt(r, {"part": r.randint(1, 500), "whole": r.randint(501, 2000)}, 0.3, decimals=r.choice((0, 1, 3))), (
    "What percentage is {part} of {whole}?", "{part} out of {whole} is what percent?",
    "What percent of {whole} is {part}? Round to {decimals} decimal places."),
    "calculate a percentage", "{a[part]} is {r[percentage]}% of {a[whole]}.")
add("greatest_common_divisor", lambda r, w: {"numbers": [r.randint(2, 40) * k for k in r.sample(range(2, 12), r.randint(2, 3))]}, (
    "Find the GCD and LCM of {numbers}.", "What is the greatest common divisor of {numbers}?", "Compute the least common multiple and the gcd of {numbers}."),
    "find the greatest common divisor", "The GCD is {r[gcd]} and the LCM is {r[lcm]}.")
add("check_prime", lambda r, w: {"number": r.randint(2, 100000)}, (
    "Is {number} a prime number?", "Check whether {number} is prime.", "Factorise {number} and tell me if it's prime."),
    "check if a number is prime")
add("compute_factorial", lambda r, w: {"n": r.randint(0, 25)}, ("What is {n} factorial?", "Calculate {n}!.", "Compute the factorial of {n}."),
    "calculate a factorial", "{r[n]}! = {r[factorial]}.")
_SHAPES = {"circle": ("radius",), "rectangle": ("width", "height"), "triangle": ("base", "height"), "square": ("side",)}
add("compute_shape_area", lambda r, w: (lambda s: {"shape": s, "dimensions": {k: num(r, 1, 30, 0.5) for k in _SHAPES[s]}})(r.choice(list(_SHAPES))), (
    "What is the area of a {shape} with {dimensions}?", "Calculate the area of a {shape}: {dimensions}.", "Find the area of a {shape} whose {dimensions}."),
    "calculate the area of a shape", "The area of that {r[shape]} is {r[area]}.")
add("fibonacci_sequence", lambda r, w: {"count": r.randint(3, 30)}, (
    "List the first {count} Fibonacci numbers.", "Give me {count} numbers of the Fibonacci sequence.", "Generate the Fibonacci sequence up to {count} terms."),
    "generate Fibonacci numbers")
add("convert_number_base", lambda r, w: (lambda n, fb, tb: {"number": format(n, {2: "b", 8: "o", 10: "d", 16: "x"}[fb]), "from_base": fb, "to_base": tb})(
    r.randint(5, 5000), *r.sample((2, 8, 10, 16), 2)), (
    "Convert {number} from base {from_base} to base {to_base}.", "What is the base-{from_base} number {number} in base {to_base}?",
    "Write {number} (base {from_base}) in base {to_base}."),
    "convert numbers between bases", "{r[input]} in base {r[from_base]} is {r[result]} in base {r[to_base]}.")

# text
add("count_words", lambda r, w: with_opt(r, {"text": r.choice(SENTENCES)}, 0.25, unique_only=True), (
    "How many words are in this text: \"{text}\"", "Count the words in: {text}", "Word count for \"{text}\", please.",
    "How many distinct{unique_only} words does this have: \"{text}\"", "Count the unique{unique_only} words in: {text}"),
    "count words", unique_only=lambda v: "")
add("change_text_case", lambda r, w: {"text": r.choice(SENTENCES).rstrip("."), "case": r.choice(("upper", "lower", "title", "snake", "camel"))}, (
    "Convert \"{text}\" to {case} case.", "Rewrite this in {case} case: {text}", "Change the case of \"{text}\" to {case}."),
    "change the letter case of text", "Here it is: {r[result]}")
add("find_and_replace", lambda r, w: (lambda s: with_opt(r, {"text": s, "find": r.choice(s.rstrip(".").split()), "replace": r.choice(("cat", "team", "blue", "data", "trip"))}, 0.3, case_sensitive=False))(r.choice(SENTENCES)), (
    "In the text \"{text}\", replace \"{find}\" with \"{replace}\".", "Replace every \"{find}\" with \"{replace}\" in: {text}",
    "Replace \"{find}\" with \"{replace}\" in \"{text}\", ignoring case{case_sensitive}."),
    "find and replace text", "Result: {r[result]} ({r[replacements]} replacement(s)).", case_sensitive=lambda v: "")
add("extract_emails", lambda r, w: {"text": f"Contact {c['name']} at {c['email']} or the office at info@{r.choice(('acme', 'globex', 'initech'))}.com."} if (c := r.choice(w.contacts)) else {}, (
    "Extract the email addresses from: {text}", "Pull out all emails in this text: \"{text}\"", "Which email addresses appear in \"{text}\"?"),
    "extract email addresses", "I found these addresses: {r[emails]}.")
add("translate_phrase", lambda r, w: {"phrase": r.choice(("hello", "thank you", "good morning", "goodbye", "where is the station", "how much does it cost", "i would like a coffee")),
                                      "target_language": r.choice(("spanish", "french", "german", "italian", "portuguese"))}, (
    "How do you say \"{phrase}\" in {target_language}?", "Translate \"{phrase}\" into {target_language}.", "What's \"{phrase}\" in {target_language}?"),
    "translate a phrase", "In {a[target_language]}, \"{r[phrase]}\" is \"{r[translation]}\".", target_language=lambda s: s.capitalize())
add("make_slug", lambda r, w: with_opt(r, {"text": r.choice(("My First Blog Post", "10 Tips for Better Sleep", "Travel Guide: Lisbon in 3 Days", "Why Python Is Great"))}, 0.3, separator="_"), (
    "Make a URL slug from \"{text}\".", "Turn the title \"{text}\" into a slug.", "Create a slug for \"{text}\" using \"{separator}\" as the separator."),
    "make a URL slug", "The slug is {r[slug]}.")
add("check_palindrome", lambda r, w: {"text": r.choice(("racecar", "A man, a plan, a canal: Panama", "hello", "Was it a car or a cat I saw", "level", "python", "Never odd or even"))}, (
    "Is \"{text}\" a palindrome?", "Check if \"{text}\" reads the same backwards.", "Palindrome check: {text}"),
    "check for a palindrome")

# files
def _file(r: Random, w: World, exclude_binary: bool = True) -> str:
    return r.choice([p for p, c in w.files.items() if not (exclude_binary and c.startswith("<binary"))])


add("list_directory", lambda r, w: with_opt(r, {}, 0.85, path=r.choice(("/home", "/home/docs", "/home/photos", "/home/code", "/tmp", "/"))), (
    "What's in my home folder?", "List the files in my home directory.", "Show me the contents of {path}.", "List the directory {path}.", "What files are in {path}?"),
    "list a directory")
add("read_file", lambda r, w: with_opt(r, {"path": _file(r, w)}, 0.2, max_lines=r.randint(1, 3)), (
    "Show me the contents of {path}.", "Read the file {path}.", "Open {path} and tell me what it says.",
    "Read the first {max_lines} lines of {path}."),
    "read a file", "{r[path]} contains: {r[content]}")
add("write_file", lambda r, w: with_opt(r, {"path": r.choice(("/home/ideas.txt", "/home/docs/draft.md", "/tmp/out.txt", "/home/code/config.ini")),
                                            "content": r.choice(("Remember to back up photos", "debug=true", "# Draft\nIntro goes here", "Meeting at 3pm"))}, 0.2, overwrite=True), (
    "Create a file {path} containing \"{content}\".", "Write \"{content}\" to {path}.", "Save the text \"{content}\" in a new file at {path}.",
    "Write \"{content}\" to {path}, overwriting it if it exists{overwrite}."),
    "write a file", "Saved {r[bytes_written]} bytes to {r[path]}.", parallel_ok=False, overwrite=lambda v: "")
add("delete_file", lambda r, w: {"path": _file(r, w, False)}, ("Delete {path}.", "Remove the file {path}.", "Please get rid of {path}."),
    "delete a file", "{r[path]} has been deleted.", parallel_ok=False)
add("move_file", lambda r, w: (lambda p: {"source": p, "destination": r.choice([d for d in ("/home", "/home/docs", "/tmp", "/home/code") if not p.startswith(d + "/") or p.count("/") > d.count("/") + 1])})(_file(r, w, False)), (
    "Move {source} to {destination}.", "Move the file {source} into the {destination} folder.", "Relocate {source} to {destination}."),
    "move a file", "Moved {r[source]} to {r[destination]}.", parallel_ok=False)
add("create_directory", lambda r, w: {"path": r.choice(("/home/projects", "/home/docs/archive", "/home/music", "/tmp/build", "/home/photos/2025"))}, (
    "Create a folder {path}.", "Make a new directory at {path}.", "mkdir {path} please."),
    "create a directory", "Created the directory {r[path]}.", parallel_ok=False)
add("search_files", lambda r, w: with_opt(r, {"pattern": r.choice(("*.txt", "*.md", "*.py", "*.csv", "*.jpg", "*.png"))}, 0.3, directory=r.choice(("/home", "/home/docs"))), (
    "Find all {pattern} files.", "Search for files matching {pattern}.", "Which files match {pattern} under {directory}?", "Find {pattern} files in {directory}."),
    "search for files", "Matching files: {r[matches]}.")
add("get_file_info", lambda r, w: {"path": _file(r, w)}, ("How big is {path}?", "Get file info for {path}.", "How many lines does {path} have?"),
    "get information about a file", "{r[path]} is {r[size_bytes]} bytes with {r[lines]} line(s).")

# messaging
add("search_contacts", lambda r, w: {"query": r.choice(w.contacts)["name"].split()[0]}, (
    "Find {query} in my contacts.", "Look up the contact named {query}.", "Search my address book for {query}."),
    "search contacts")
add("get_contact_details", lambda r, w: {"contact_id": r.choice(w.contacts)["contact_id"]}, (
    "Show me the details of contact {contact_id}.", "What's the phone number and email of contact {contact_id}?", "Get contact record {contact_id}."),
    "get contact details", "{r[name]}: email {r[email]}, phone {r[phone]}, based in {r[city]}.")
add("send_email_message", lambda r, w: with_opt(r, {"to": [r.choice(w.contacts)["email"]], "subject": r.choice(SUBJECTS), "body": r.choice(BODIES)}, 0.25,
                                        cc=[r.choice(w.contacts)["email"]], priority="high"), (
    "Send an email to {to} with the subject \"{subject}\" saying: {body}", "Email {to}, subject \"{subject}\", message: \"{body}\"",
    "Write to {to}: subject {subject}, body \"{body}\". CC {cc}.", "Send a {priority}-priority email to {to} with subject \"{subject}\": {body}",
    "Email {to} and copy {cc}. Subject: \"{subject}\". Body: \"{body}\"",
    "Send an email to {to} with subject \"{subject}\" and body \"{body}\", cc {cc}, priority {priority}."),
    "send an email", "Your email to {a[to]} was sent (message id {r[message_id]}).", priority=lambda v: v)
add("send_sms", lambda r, w: {"phone_number": r.choice(w.contacts)["phone"], "message": r.choice(SMS)}, (
    "Text {phone_number}: \"{message}\".", "Send an SMS to {phone_number} saying \"{message}\".", "Message {phone_number} with \"{message}\"."),
    "send a text message", "Your message was delivered (id {r[message_id]}).")
add("list_inbox", lambda r, w: with_opt(r, {}, 0.5, unread_only=True, limit=r.randint(2, 5)), (
    "Show my inbox.", "What emails have I received recently?", "Show me my unread{unread_only} emails.", "Do I have any unread{unread_only} messages?",
    "List my {limit} most recent emails.", "Show my {limit} latest unread{unread_only} messages."),
    "list the inbox", unread_only=lambda v: "")
add("read_message", lambda r, w: {"message_id": r.choice(w.inbox)["message_id"]}, (
    "Open message {message_id}.", "Read email {message_id} for me.", "What does message {message_id} say?"),
    "read a message", "From {r[from]}, subject \"{r[subject]}\": {r[body]}")
add("mark_messages_read", lambda r, w: {"message_ids": [m["message_id"] for m in r.sample(w.inbox, r.randint(1, 3))]}, (
    "Mark messages {message_ids} as read.", "Please mark {message_ids} as read.", "Set {message_ids} to read."),
    "mark messages as read", "Marked {r[marked_read]} as read.", parallel_ok=False)

# maps
add("geocode_city", lambda r, w: {"city": city(r)}, ("What are the coordinates of {city}?", "Geocode {city}.", "Give me the latitude and longitude of {city}."),
    "look up coordinates", "{r[city]}, {r[country]} is at latitude {r[latitude]}, longitude {r[longitude]}.")
add("reverse_geocode", lambda r, w: (lambda c: {"latitude": round(c.lat + r.uniform(-0.5, 0.5), 2), "longitude": round(c.lon + r.uniform(-0.5, 0.5), 2)})(r.choice(CITIES)), (
    "Which city is at latitude {latitude}, longitude {longitude}?", "Reverse geocode {latitude}, {longitude}.", "What place is near coordinates ({latitude}, {longitude})?"),
    "find the city at a coordinate", "The closest city is {r[city]}, {r[country]}.")
add("get_distance", lambda r, w: with_opt(r, dict(zip(("origin", "destination"), two_cities(r), strict=True)), 0.4, unit="miles"), (
    "How far is {origin} from {destination}?", "What's the distance between {origin} and {destination}?",
    "How many {unit} is it from {origin} to {destination}?", "Distance from {origin} to {destination} in {unit}, please."),
    "measure the distance between cities", "{r[origin]} and {r[destination]} are {r[distance]} {r[unit]} apart.")
add("estimate_travel_duration", lambda r, w: with_opt(r, dict(zip(("origin", "destination"), two_cities(r, EU_CITIES), strict=True)), 0.5,
                                             mode=r.choice(("walking", "cycling", "transit")), avoid=r.sample(["tolls", "highways", "ferries"], 1)), (
    "How long does it take to drive from {origin} to {destination}?", "Estimate the travel time from {origin} to {destination}.",
    "How long is the trip from {origin} to {destination} by {mode}?", "Travel time {origin} to {destination} by {mode}?",
    "How long to drive from {origin} to {destination} avoiding {avoid}?",
    "How long from {origin} to {destination} by {mode}, avoiding {avoid}?"),
    "estimate travel time", "The {r[route_km]} km trip takes about {r[hours]} hours by {r[mode]}.")
add("get_city_local_time", lambda r, w: {"city": city(r)}, ("What time is it in {city}?", "Current local time in {city}?", "What's the time right now in {city}?"),
    "get the local time", "It is {r[local_time]} in {r[city]} (UTC{r[utc_offset]:+d}).")
add("find_nearby_places", lambda r, w: with_opt(r, {"city": city(r), "category": r.choice(("restaurant", "cafe", "museum", "pharmacy", "park", "gas_station", "hospital"))}, 0.3,
                                                radius_km=r.choice((1, 3, 5)), open_now=True), (
    "Find a {category} near the centre of {city}.", "Are there any {category}s close to downtown {city}?",
    "Find {category}s within {radius_km} km of central {city}.", "Find a {category} in {city} that is open now{open_now}.",
    "Find {category}s open now{open_now} within {radius_km} km in {city}."),
    "find nearby places", category=lambda c: c.replace("_", " "), open_now=lambda v: "")

# sports (held out for test)
_LEAGUE = {"premier_league": "Premier League", "la_liga": "La Liga", "serie_a": "Serie A", "nba": "NBA"}
_ALL_TEAMS = tuple(t for ts in TEAMS.values() for t in ts)
add("get_league_standings", lambda r, w: with_opt(r, {"league": r.choice(list(TEAMS))}, 0.4, top_n=r.randint(2, 5)), (
    "Show me the {league} table.", "Who is leading the {league}?", "Show the top {top_n} teams in the {league}."),
    "get league standings", league=lambda lg: _LEAGUE[lg])
add("get_match_result", lambda r, w: {"team": r.choice(_ALL_TEAMS), "date": past(r, 1, 60)}, (
    "What was the score of the {team} game on {date}?", "Did {team} win on {date}?", "Result of {team}'s match on {date}?"),
    "get a match result", "On {r[date]}: {r[home]} vs {r[away]} ended {r[score]}.")
add("get_upcoming_fixtures", lambda r, w: with_opt(r, {"team": r.choice(_ALL_TEAMS)}, 0.5, count=r.randint(1, 6)), (
    "When does {team} play next?", "Show {team}'s upcoming fixtures.", "List the next {count} matches of {team}."),
    "list upcoming fixtures")
add("get_player_season_stats", lambda r, w: with_opt(r, {"player_name": r.choice(list(PLAYERS))}, 0.4, season=r.choice((2022, 2023))), (
    "How is {player_name} doing this season?", "Get {player_name}'s stats.", "Show {player_name}'s statistics for the {season} season."),
    "get player statistics")
add("get_top_scorers", lambda r, w: with_opt(r, {"league": r.choice(list(TEAMS))}, 0.4, limit=r.randint(1, 3)), (
    "Who are the top scorers in the {league}?", "Top scorers of the {league}, please.", "List the top {limit} scorers in the {league}."),
    "list top scorers", league=lambda lg: _LEAGUE[lg])
add("compare_teams", lambda r, w: with_opt(r, dict(zip(("team_a", "team_b"), r.sample(TEAMS[r.choice(list(TEAMS))], 2), strict=True)), 0.4, last_n_matches=r.randint(3, 10)), (
    "Compare {team_a} and {team_b} head to head.", "What's the record between {team_a} and {team_b}?",
    "How did {team_a} and {team_b} do in their last {last_n_matches} meetings?"),
    "compare two teams")

# food
_INGREDIENTS = ("rice", "garlic", "tomato", "spinach", "onion", "eggs", "mushroom", "chicken", "tofu", "pasta", "cheese", "salmon")
add("search_recipes", lambda r, w: with_opt(r, {"ingredients": r.sample(_INGREDIENTS, r.randint(1, 3))}, 0.3,
                                            diet=r.choice(("vegetarian", "vegan", "pescatarian")), max_minutes=r.choice((20, 30, 45))), (
    "What can I cook with {ingredients}?", "Find recipes using {ingredients}.", "Find a {diet} recipe with {ingredients}.",
    "Find recipes with {ingredients} that take at most {max_minutes} minutes.", "I want a {diet} dish with {ingredients}, ready in {max_minutes} minutes."),
    "search for recipes")
add("get_recipe_details", lambda r, w: with_opt(r, {"recipe_id": f"R-{r.randint(301, 312)}"}, 0.5, servings=r.randint(1, 8)), (
    "Show me recipe {recipe_id}.", "What do I need for recipe {recipe_id}?", "Get recipe {recipe_id} for {servings} servings."),
    "get a recipe", "{r[name]} takes {r[minutes]} minutes; you need {r[ingredients]}.")
add("get_nutrition_facts", lambda r, w: with_opt(r, {"food": r.choice(list(FOODS))}, 0.6, grams=r.choice((50, 150, 200, 250))), (
    "How many calories are in {food}?", "Nutrition facts for {food}, please.", "How many calories and how much protein in {grams} grams of {food}?",
    "Give me the macros for {grams} g of {food}."),
    "look up nutrition facts", "{r[grams]} g of {r[food]} has {r[calories]} kcal, {r[protein_g]} g protein, {r[carbs_g]} g carbs and {r[fat_g]} g fat.")
add("search_restaurants", lambda r, w: with_opt(r, {"city": city(r)}, 0.4, cuisine=r.choice(("italian", "japanese", "mexican", "indian", "french", "thai")), price_level=r.choice(("$", "$$", "$$$"))), (
    "Find restaurants in {city}.", "Where can I eat in {city}?", "Find {cuisine} restaurants in {city}.", "Any good {cuisine} places in {city}?",
    "Find {price_level} restaurants in {city}.", "Find {cuisine} restaurants in {city} with price level {price_level}."),
    "find restaurants")
add("reserve_table", lambda r, w: {"restaurant_id": f"RS-{city(r)[:3].upper()}{r.randint(0, 7)}", "date": future(r, 1, 14), "time": clock(r, 12, 21),
                                   "party_size": r.randint(2, 8), "name": person(r)}, (
    "Reserve a table at {restaurant_id} on {date} at {time} for {party_size} people under the name {name}.",
    "Book {restaurant_id} for {party_size} on {date} at {time}, name {name}."),
    "reserve a restaurant table", "Your table for {r[party_size]} on {r[date]} at {r[time]} is confirmed ({r[reservation_id]}).", parallel_ok=False)
add("get_wine_pairing", lambda r, w: with_opt(r, {"dish": r.choice(("grilled salmon", "beef steak", "mushroom risotto", "roast chicken", "lamb chops", "shrimp pasta"))}, 0.4,
                                              budget=r.choice(("low", "high"))), (
    "What wine goes with {dish}?", "Suggest a wine for {dish}.", "Recommend a {budget}-budget wine to pair with {dish}."),
    "suggest a wine pairing", "Try a {r[wine]} ({r[price_range]}) with {r[dish]}.")

# health (held out for test)
add("compute_body_mass_index", lambda r, w: {"weight_kg": num(r, 45, 120, 0.5), "height_cm": num(r, 150, 200, 1)}, (
    "What's my BMI? I weigh {weight_kg} kg and I'm {height_cm} cm tall.", "Calculate BMI for {weight_kg} kg and {height_cm} cm.",
    "I'm {height_cm} cm and {weight_kg} kilograms. Am I in a healthy weight range?"),
    "calculate BMI", "Your BMI is {r[bmi]}, which is {r[category]}.")
add("calculate_daily_calories", lambda r, w: with_opt(r, {"age": r.randint(18, 70), "sex": r.choice(("female", "male")), "weight_kg": num(r, 50, 110, 1), "height_cm": num(r, 155, 195, 1)}, 0.5,
                                                      activity_level=r.choice(("sedentary", "light", "active", "very_active"))), (
    "How many calories should I eat a day? I'm a {age}-year-old {sex}, {weight_kg} kg, {height_cm} cm.",
    "Daily calorie needs for a {sex}, age {age}, weight {weight_kg} kg, height {height_cm} cm, activity level {activity_level}?",
    "I'm {age}, {sex}, {height_cm} cm, {weight_kg} kg and my activity level is {activity_level}. What's my maintenance calorie intake?"),
    "estimate daily calorie needs", "You need about {r[maintenance_calories]} kcal a day (BMR {r[bmr]}).", activity_level=lambda v: v.replace("_", " "))
add("get_heart_rate_zones", lambda r, w: with_opt(r, {"age": r.randint(18, 70)}, 0.5, resting_heart_rate=r.randint(48, 80)), (
    "What are my heart rate training zones? I'm {age}.", "Heart rate zones for a {age}-year-old, please.",
    "I'm {age} with a resting heart rate of {resting_heart_rate}. What are my training zones?"),
    "compute heart-rate zones")
add("log_workout", lambda r, w: with_opt(r, {"activity": r.choice(("running", "cycling", "swimming", "yoga", "walking")), "duration_minutes": r.choice((20, 30, 40, 45, 60, 75))}, 0.3, date=past(r, 1, 3)), (
    "Log a {duration_minutes}-minute {activity} workout.", "I just did {duration_minutes} minutes of {activity}; record it.",
    "Log {duration_minutes} minutes of {activity} on {date}."),
    "log a workout", "Logged {r[duration_minutes]} minutes of {r[activity]} on {r[date]}.", parallel_ok=False)
add("get_workout_summary", lambda r, w: with_opt(r, {}, 0.6, days=r.choice((3, 14, 30))), (
    "How much have I worked out this week?", "Summarise my workouts.", "Summarise my workouts over the last {days} days."),
    "summarise workouts", "In the last {r[days]} days you did {r[sessions]} sessions, {r[total_minutes]} minutes in total.")
add("log_water_intake", lambda r, w: {"milliliters": r.choice((250, 330, 500, 750))}, (
    "Log {milliliters} ml of water.", "I drank {milliliters} millilitres of water, add it to today's log.", "Track {milliliters} ml water intake."),
    "log water intake", "Logged; you're at {r[total_ml_today]} ml today (goal {r[goal_ml]} ml).", parallel_ok=False)

#: tool name -> template
TEMPLATES: dict[str, Template] = {t.tool: t for t in T}
