"""Dependent-call chains: requests whose later calls need values from earlier results.

Each ``Chain`` samples the values the user mentions (``ctx``), phrases the request, and has one step
per assistant call list; a step maps ``(ctx, results so far)`` to the next call's arguments, reading
the real tool results (a contact's email, the cheapest flight's id, a free slot's start). A step raises
``Skip`` when the results make the chain impossible (an empty search), and the generator resamples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from random import Random
from typing import Any

from envs.toolace.templates import (
    BODIES,
    EVENT_TITLES,
    SMS,
    SUBJECTS,
    city,
    clock,
    future,
    person,
    two_cities,
)
from tools.catalog.world import CITIES, STOCKS, TEAMS, World


class Skip(Exception):
    """These sampled values cannot make a valid task; sample again."""


Step = Callable[[dict[str, Any], list[Any]], tuple[str, dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Chain:
    name: str
    tools: tuple[str, ...]
    sample: Callable[[Random, World], dict[str, Any]]
    phrasings: tuple[str, ...]
    steps: tuple[Step, ...]
    intent: str
    answer: str | None = None  # formatted with c (ctx), r (last result), r0 (first result)


def first(items: list[Any], what: str) -> Any:
    if not items:
        raise Skip(f"no {what}")
    return items[0]


def _contact_first(r: Random, w: World) -> str:
    return r.choice(w.contacts)["name"].split()[0]


CHAINS: list[Chain] = []


def chain(name: str, tools: tuple[str, ...], sample: Callable[[Random, World], dict[str, Any]], phrasings: tuple[str, ...],
          steps: tuple[Step, ...], intent: str, answer: str | None = None) -> None:
    CHAINS.append(Chain(name, tools, sample, phrasings, steps, intent, answer))


contact_lookup: Step = lambda c, rs: ("search_contacts", {"query": c["name"]})  # noqa: E731


def contact(rs: list[Any]) -> dict[str, Any]:
    return first(rs[0]["contacts"], "contact")


chain("email_contact", ("search_contacts", "send_email_message"),
      lambda r, w: {"name": _contact_first(r, w), "subject": r.choice(SUBJECTS), "body": r.choice(BODIES)},
      ("Send an email to {name} with the subject \"{subject}\" saying \"{body}\"", "Email {name}: subject \"{subject}\", body \"{body}\"",
       "Look up {name}'s email address and send them \"{body}\" with the subject \"{subject}\"."),
      (contact_lookup, lambda c, rs: ("send_email_message", {"to": [contact(rs)["email"]], "subject": c["subject"], "body": c["body"]})),
      "send an email to a contact", "I found {r0[contacts][0][name]} ({r0[contacts][0][email]}) and sent the email (message id {r[message_id]}).")
chain("sms_contact", ("search_contacts", "send_sms"),
      lambda r, w: {"name": _contact_first(r, w), "message": r.choice(SMS)},
      ("Text {name}: \"{message}\"", "Send {name} an SMS saying \"{message}\".", "Find {name}'s number and text them \"{message}\"."),
      (contact_lookup, lambda c, rs: ("send_sms", {"phone_number": contact(rs)["phone"], "message": c["message"]})),
      "text a contact", "Sent \"{c[message]}\" to {r0[contacts][0][name]} at {r0[contacts][0][phone]}.")
chain("contact_weather", ("search_contacts", "get_weather_now"), lambda r, w: {"name": _contact_first(r, w)},
      ("What's the weather like where {name} lives?", "Check the current weather in {name}'s city.", "Is it nice out where my contact {name} is?"),
      (contact_lookup, lambda c, rs: ("get_weather_now", {"city": contact(rs)["city"]})),
      "check the weather where a contact lives",
      "{r0[contacts][0][name]} lives in {r[city]}, where it is {r[temperature]} degrees and {r[condition]}.")
chain("contact_time", ("search_contacts", "get_city_local_time"), lambda r, w: {"name": _contact_first(r, w)},
      ("What time is it for {name} right now?", "Find {name}'s city and tell me the local time there."),
      (contact_lookup, lambda c, rs: ("get_city_local_time", {"city": contact(rs)["city"]})),
      "check the local time of a contact", "{r0[contacts][0][name]} is in {r[city]}, where it is {r[local_time]}.")


def _other_city(c: dict[str, Any], rs: list[Any]) -> str:
    if contact(rs)["city"] == c["city"]:
        raise Skip("same city")
    return contact(rs)["city"]


chain("contact_distance", ("search_contacts", "get_distance"), lambda r, w: {"name": _contact_first(r, w), "city": city(r)},
      ("How far is {name}'s city from {city}?", "Look up where {name} lives and tell me the distance from {city}."),
      (contact_lookup, lambda c, rs: ("get_distance", {"origin": c["city"], "destination": _other_city(c, rs)})),
      "measure the distance to a contact", "{r0[contacts][0][name]} lives in {r[destination]}, {r[distance]} km from {r[origin]}.")

_QUERIES = ("headphones", "shoes", "keyboard", "mouse", "lamp", "mat", "game", "novel", "jacket", "speaker", "bottle", "set")
cheapest_search: Step = lambda c, rs: ("search_store_items", {"query": c["query"], "in_stock_only": True, "sort_by": "price_asc"})  # noqa: E731
chain("cart_cheapest", ("search_store_items", "add_to_cart"), lambda r, w: {"query": r.choice(_QUERIES)},
      ("Add the cheapest {query} that's in stock to my cart.", "Find the lowest-priced in-stock {query} and put it in my cart."),
      (cheapest_search, lambda c, rs: ("add_to_cart", {"product_id": first(rs[0]["results"], "product")["product_id"]})),
      "add the cheapest matching product to the cart", "I added {r0[results][0][name]} (${r0[results][0][price]}) to your cart.")
chain("best_rated_details", ("search_store_items", "get_store_item_details"), lambda r, w: {"query": r.choice(_QUERIES)},
      ("Find the best-rated {query} and show me its details.", "Which {query} has the highest rating? Give me its full details."),
      (lambda c, rs: ("search_store_items", {"query": c["query"], "sort_by": "rating"}),
       lambda c, rs: ("get_store_item_details", {"product_id": first(rs[0]["results"], "product")["product_id"]})),
      "find the best-rated product", "The best-rated match is {r[name]} at ${r[price]} (rating {r[rating]}, {r[stock]} in stock).")
chain("buy_cheapest", ("search_store_items", "add_to_cart", "checkout"),
      lambda r, w: {"query": r.choice(_QUERIES), "street": f"{r.randint(1, 250)} {r.choice(('Main St', 'Oak Avenue', 'Harbor Road', 'Elm Street'))}",
                    "city": r.choice(("Boston", "Denver", "Austin", "Portland", "Seattle")), "postal_code": f"{r.randint(10000, 99999)}"},
      ("Buy the cheapest {query} in stock and ship it to {street}, {city} {postal_code}.",
       "Order the lowest-priced in-stock {query} for delivery to {street}, {city}, postal code {postal_code}."),
      (cheapest_search, lambda c, rs: ("add_to_cart", {"product_id": first(rs[0]["results"], "product")["product_id"]}),
       lambda c, rs: ("checkout", {"shipping_address": {"street": c["street"], "city": c["city"], "postal_code": c["postal_code"]}})),
      "buy a product", "Ordered {r0[results][0][name]}: order {r[order_id]}, total ${r[total]}, arriving in {r[eta]}.")
chain("book_cheapest_flight", ("search_flights", "reserve_flight_seat"),
      lambda r, w: dict(zip(("origin", "destination"), two_cities(r), strict=True), date=future(r, 5, 60), passenger=person(r)),
      ("Book the cheapest flight from {origin} to {destination} on {date} for {passenger}.",
       "Find flights {origin} to {destination} on {date} and book the cheapest one for passenger {passenger}."),
      (lambda c, rs: ("search_flights", {"origin": c["origin"], "destination": c["destination"], "date": c["date"]}),
       lambda c, rs: ("reserve_flight_seat", {"flight_id": first(rs[0]["flights"], "flight")["flight_id"], "passenger_name": c["passenger"]})),
      "book a flight", "Booked {r0[flights][0][airline]} flight {r[flight_id]} for {r[passenger]}, seat {r[seat]} (booking {r[booking_id]}).")


def _best_hotel(rs: list[Any]) -> str:
    hotels = rs[0]["hotels"]
    if not hotels:
        raise Skip("no hotel")
    return max(hotels, key=lambda h: (h["rating"], h["hotel_id"]))["hotel_id"]


chain("book_best_hotel", ("search_hotel_rooms", "reserve_hotel_room"),
      lambda r, w: {"city": city(r), "check_in": future(r, 3, 60), "nights": r.randint(1, 6), "guest": person(r)},
      ("Book the highest-rated hotel in {city} for {nights} nights from {check_in}, guest name {guest}.",
       "Find hotels in {city} checking in {check_in} for {nights} nights and reserve the best-rated one for {guest}."),
      (lambda c, rs: ("search_hotel_rooms", {"city": c["city"], "check_in": c["check_in"], "nights": c["nights"]}),
       lambda c, rs: ("reserve_hotel_room", {"hotel_id": _best_hotel(rs), "guest_name": c["guest"], "check_in": c["check_in"], "nights": c["nights"]})),
      "book a hotel", "Booked hotel {r[hotel_id]} for {r[guest]} from {r[check_in]} for {r[nights]} nights (booking {r[booking_id]}).")
chain("stock_in_currency", ("get_stock_quote", "exchange_money_amount"),
      lambda r, w: {"symbol": r.choice(list(STOCKS)), "currency": r.choice(("EUR", "GBP", "JPY", "CHF", "INR", "CAD"))},
      ("What is one {symbol} share worth in {currency}?", "Get the price of {symbol} and convert it to {currency}."),
      (lambda c, rs: ("get_stock_quote", {"symbol": c["symbol"]}),
       lambda c, rs: ("exchange_money_amount", {"amount": rs[0]["price"], "from_currency": "USD", "to_currency": c["currency"]})),
      "price a stock in another currency", "{c[symbol]} trades at ${r0[price]}, which is {r[converted]} {r[to]}.")


def _max_shares(c: dict[str, Any], rs: list[Any]) -> tuple[str, dict[str, Any]]:
    q = int(c["budget"] // rs[0]["price"])
    if q < 1:
        raise Skip("budget too small")
    return "place_stock_order", {"symbol": c["symbol"], "quantity": q, "side": "buy"}


chain("max_shares", ("get_stock_quote", "place_stock_order"),
      lambda r, w: {"symbol": r.choice(list(STOCKS)), "budget": r.choice((500, 1000, 2000, 2500, 5000))},
      ("Buy as many {symbol} shares as I can with ${budget}.", "I have {budget} dollars. Buy the maximum whole number of {symbol} shares."),
      (lambda c, rs: ("get_stock_quote", {"symbol": c["symbol"]}), _max_shares),
      "buy shares within a budget", "Bought {r[quantity]} shares of {r[symbol]} at ${r[price]}; cash left ${r[cash_remaining]}.")


def _earliest(rs: list[Any]) -> str:
    return first(rs[0]["events"], "event")["event_id"]


_event_day = lambda r, w: r.choice(w.events)["date"]  # noqa: E731
chain("cancel_first_event", ("list_calendar_events", "delete_event"), lambda r, w: {"date": _event_day(r, w)},
      ("Cancel my first appointment on {date}.", "Delete the earliest event in my calendar on {date}."),
      (lambda c, rs: ("list_calendar_events", {"date": c["date"]}), lambda c, rs: ("delete_event", {"event_id": _earliest(rs)})),
      "cancel an event", "I cancelled '{r[title]}' ({r[event_id]}), your first event on {c[date]}.")
chain("move_first_event", ("list_calendar_events", "move_calendar_event"),
      lambda r, w: {"date": _event_day(r, w), "new_date": future(r, 8, 20), "new_time": clock(r, 8, 17)},
      ("Move my first event on {date} to {new_date} at {new_time}.", "Reschedule the earliest thing on my calendar on {date} to {new_date}, {new_time}."),
      (lambda c, rs: ("list_calendar_events", {"date": c["date"]}),
       lambda c, rs: ("move_calendar_event", {"event_id": _earliest(rs), "new_date": c["new_date"], "new_start_time": c["new_time"]})),
      "reschedule an event", "Moved {r0[events][0][title]} ({r[event_id]}) to {r[date]} at {r[start_time]}.")
_INGR = ("rice", "garlic", "tomato", "spinach", "onion", "eggs", "mushroom", "tofu", "pasta")
chain("recipe_details", ("search_recipes", "get_recipe_details"), lambda r, w: {"ingredient": r.choice(_INGR), "servings": r.randint(2, 6)},
      ("Find a recipe with {ingredient} and give me the full recipe for {servings} servings.",
       "I have {ingredient}. Find the best matching recipe and show it scaled to {servings} servings."),
      (lambda c, rs: ("search_recipes", {"ingredients": [c["ingredient"]]}),
       lambda c, rs: ("get_recipe_details", {"recipe_id": first(rs[0]["recipes"], "recipe")["recipe_id"], "servings": c["servings"]})),
      "find and open a recipe", "Try {r[name]} ({r[minutes]} minutes): you need {r[ingredients]}.")
chain("book_restaurant", ("search_restaurants", "reserve_table"),
      lambda r, w: {"city": city(r), "cuisine": r.choice(("italian", "japanese", "mexican", "indian", "thai")), "date": future(r, 1, 14),
                    "time": clock(r, 18, 21), "party": r.randint(2, 6), "name": person(r)},
      ("Book a table at a {cuisine} restaurant in {city} for {party} on {date} at {time}, under {name}.",
       "Find a {cuisine} place in {city} and reserve for {party} people on {date} at {time}; the name is {name}."),
      (lambda c, rs: ("search_restaurants", {"city": c["city"], "cuisine": c["cuisine"]}),
       lambda c, rs: ("reserve_table", {"restaurant_id": first(rs[0]["restaurants"], "restaurant")["restaurant_id"], "date": c["date"],
                                        "time": c["time"], "party_size": c["party"], "name": c["name"]})),
      "book a restaurant", "Reserved {r0[restaurants][0][name]} for {r[party_size]} on {r[date]} at {r[time]} ({r[reservation_id]}).")
chain("read_newest_unread", ("list_inbox", "read_message"), lambda r, w: {},
      ("Open my newest unread email.", "Read me the latest unread message in my inbox."),
      (lambda c, rs: ("list_inbox", {"unread_only": True}),
       lambda c, rs: ("read_message", {"message_id": first(rs[0]["messages"], "unread message")["message_id"]})),
      "read the newest unread email", "Your newest unread email is from {r[from]}, \"{r[subject]}\": {r[body]}")
chain("find_and_read", ("search_files", "read_file"), lambda r, w: {"pattern": r.choice(("*.csv", "report*", "*minutes*", "notes*", "todo*", "*.py"))},
      ("Find the file matching {pattern} and show me its contents.", "Search for {pattern} and read the file you find."),
      (lambda c, rs: ("search_files", {"pattern": c["pattern"]}),
       lambda c, rs: ("read_file", {"path": first(rs[0]["matches"], "file")})),
      "find and read a file", "{r[path]} says: {r[content]}")
chain("file_word_count", ("read_file", "count_words"), lambda r, w: {"path": r.choice(("/home/notes.txt", "/home/docs/report.txt", "/home/docs/meeting_minutes.txt"))},
      ("How many words are in {path}?", "Read {path} and count its words."),
      (lambda c, rs: ("read_file", {"path": c["path"]}), lambda c, rs: ("count_words", {"text": rs[0]["content"]})),
      "count the words in a file", "{c[path]} has {r[words]} words.")
chain("weather_kelvin", ("get_weather_now", "convert_temperature"),
      lambda r, w: {"city": city(r), "scale": "kelvin"},
      ("What's the current temperature in {city} in {scale}?", "Get the temperature in {city} now and convert it to {scale}."),
      (lambda c, rs: ("get_weather_now", {"city": c["city"]}),
       lambda c, rs: ("convert_temperature", {"value": rs[0]["temperature"], "from_scale": "celsius", "to_scale": c["scale"]})),
      "get the temperature in kelvin", "It is {r0[temperature]} degrees Celsius in {c[city]}, which is {r[result]} kelvin.")

# chains that need held-out tools (they land in the test split)
chain("top_scorer_stats", ("get_top_scorers", "get_player_season_stats"), lambda r, w: {"league": r.choice([k for k in TEAMS if k != "nba"])},
      ("Get the season stats of the top scorer in {league}.", "Who leads the {league} scoring charts? Show me that player's statistics."),
      (lambda c, rs: ("get_top_scorers", {"league": c["league"]}),
       lambda c, rs: ("get_player_season_stats", {"player_name": first(rs[0]["top_scorers"], "player")["player"]})),
      "look up the top scorer's statistics", "{r[player]} ({r[team]}) leads with {r[goals]} goals in {r[appearances]} appearances.")
chain("leader_fixtures", ("get_league_standings", "get_upcoming_fixtures"), lambda r, w: {"league": r.choice(list(TEAMS))},
      ("When does the team at the top of {league} play next?", "Find the {league} leader and list its upcoming fixtures."),
      (lambda c, rs: ("get_league_standings", {"league": c["league"]}),
       lambda c, rs: ("get_upcoming_fixtures", {"team": first(rs[0]["standings"], "team")["team"]})),
      "find the leader's next matches", "{r[team]} lead the table; next up: {r[fixtures]}.")
chain("log_then_summary", ("log_workout", "get_workout_summary"),
      lambda r, w: {"activity": r.choice(("running", "cycling", "swimming")), "minutes": r.choice((25, 30, 45, 60))},
      ("Log a {minutes}-minute {activity} session, then tell me my total for the week.",
       "Record {minutes} minutes of {activity} and then summarise my workouts for the last 7 days."),
      (lambda c, rs: ("log_workout", {"activity": c["activity"], "duration_minutes": c["minutes"]}),
       lambda c, rs: ("get_workout_summary", {"days": 7})),
      "log a workout and summarise the week", "Logged. This week you did {r[sessions]} sessions, {r[total_minutes]} minutes in total.")


def _first_slot(rs: list[Any]) -> str:
    return first(rs[0]["free_slots"], "free slot")["start"]


chain("free_slot_event", ("find_free_slots", "create_event"),
      lambda r, w: {"date": _event_day(r, w), "title": r.choice(EVENT_TITLES), "minutes": r.choice((30, 60))},
      ("Schedule a {minutes}-minute '{title}' in my first free slot on {date}.", "Find the earliest free {minutes} minutes on {date} and book '{title}' then."),
      (lambda c, rs: ("find_free_slots", {"date": c["date"], "duration_minutes": c["minutes"]}),
       lambda c, rs: ("create_event", {"title": c["title"], "date": c["date"], "start_time": _first_slot(rs), "duration_minutes": c["minutes"]})),
      "schedule an event in a free slot", "'{r[title]}' is booked on {r[date]} at {r[start_time]} (event {r[event_id]}).")
chain("recipe_wine", ("search_recipes", "get_wine_pairing"), lambda r, w: {"ingredient": r.choice(_INGR)},
      ("Find a recipe with {ingredient} and suggest a wine to go with it.", "What should I cook with {ingredient}, and which wine pairs with it?"),
      (lambda c, rs: ("search_recipes", {"ingredients": [c["ingredient"]]}),
       lambda c, rs: ("get_wine_pairing", {"dish": first(rs[0]["recipes"], "recipe")["name"]})),
      "pair a recipe with wine", "Make {r[dish]} and serve it with a {r[wine]}.")
chain("coords_weather", ("reverse_geocode", "get_weather_now"),
      lambda r, w: (lambda c: {"lat": round(c.lat + r.uniform(-0.3, 0.3), 2), "lon": round(c.lon + r.uniform(-0.3, 0.3), 2)})(r.choice(CITIES)),
      ("What's the weather at latitude {lat}, longitude {lon}?", "Which city is at ({lat}, {lon}) and what's the weather there?"),
      (lambda c, rs: ("reverse_geocode", {"latitude": c["lat"], "longitude": c["lon"]}),
       lambda c, rs: ("get_weather_now", {"city": rs[0]["city"]})),
      "check the weather at a coordinate", "That's {r[city]}: {r[temperature]} degrees and {r[condition]}.")
chain("file_info", ("search_files", "get_file_info"), lambda r, w: {"pattern": r.choice(("*.csv", "report*", "notes*", "*.py"))},
      ("How big is the file matching {pattern}?", "Find the {pattern} file and get its size."),
      (lambda c, rs: ("search_files", {"pattern": c["pattern"]}),
       lambda c, rs: ("get_file_info", {"path": first(rs[0]["matches"], "file")})),
      "get the size of a file", "{r[path]} is {r[size_bytes]} bytes.")


def _unread_ids(rs: list[Any]) -> list[str]:
    ids = [m["message_id"] for m in rs[0]["messages"]]
    if not ids:
        raise Skip("no unread")
    return ids


chain("mark_all_read", ("list_inbox", "mark_messages_read"), lambda r, w: {},
      ("Mark all my unread emails as read.", "Clear my unread messages: mark them all as read."),
      (lambda c, rs: ("list_inbox", {"unread_only": True}), lambda c, rs: ("mark_messages_read", {"message_ids": _unread_ids(rs)})),
      "mark unread emails as read", "Marked {r[marked_read]} as read.")

