"""Food domain: recipe search, nutrition facts, restaurants and table reservations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from tools.catalog.common import parse_date, parse_time, positive
from tools.catalog.world import CUISINES, FOODS, RECIPES, World

DOMAIN = "food"

Diet = Literal["none", "vegetarian", "vegan", "pescatarian"]
_DIET_OK = {"none": {"none", "vegetarian", "vegan", "pescatarian"}, "vegetarian": {"vegetarian", "vegan"},
            "vegan": {"vegan"}, "pescatarian": {"pescatarian", "vegetarian", "vegan"}}


def functions(world: World) -> list[Callable]:
    def search_recipes(ingredients: list[str], diet: Diet = "none", max_minutes: int | None = None) -> dict:
        """Find recipes that use the given ingredients.

        Args:
            ingredients: Ingredients to cook with, e.g. ["rice", "garlic"].
            diet: Dietary restriction the recipe must satisfy.
            max_minutes: Longest acceptable cooking time.
        """
        want = {str(i).lower().strip() for i in ingredients}
        hits = []
        for i, (name, ings, d, minutes, _kcal) in enumerate(RECIPES):
            overlap = len(want & set(ings))
            if overlap and d in _DIET_OK[diet] and (max_minutes is None or minutes <= max_minutes):
                hits.append({"recipe_id": f"R-{301 + i}", "name": name, "minutes": minutes, "matched_ingredients": overlap})
        hits.sort(key=lambda h: (-h["matched_ingredients"], h["minutes"]))
        return {"recipes": hits[:4]}

    def get_recipe_details(recipe_id: str, servings: int = 2) -> dict:
        """Get the ingredients and cooking time of a recipe, scaled to a number of servings.

        Args:
            recipe_id: Identifier of the recipe, e.g. "R-305".
            servings: Number of servings.
        """
        positive("servings", servings)
        try:
            name, ings, diet, minutes, kcal = RECIPES[int(str(recipe_id).split("-")[1]) - 301]
        except (IndexError, ValueError):
            raise ValueError(f"no recipe with id {recipe_id!r}") from None
        return {"recipe_id": recipe_id, "name": name, "ingredients": list(ings), "diet": diet, "minutes": minutes,
                "servings": servings, "calories_per_serving": kcal}

    def get_nutrition_facts(food: str, grams: float = 100.0) -> dict:
        """Get calories and macronutrients for a quantity of a food.

        Args:
            food: Food name, e.g. "banana".
            grams: Quantity in grams.
        """
        key = str(food).strip().lower()
        if key not in FOODS:
            raise ValueError(f"no nutrition data for {food!r}; known foods include " + ", ".join(list(FOODS)[:8]))
        k = grams / 100
        kcal, p, c, f = FOODS[key]
        return {"food": key, "grams": grams, "calories": round(kcal * k, 1), "protein_g": round(p * k, 1),
                "carbs_g": round(c * k, 1), "fat_g": round(f * k, 1)}

    def search_restaurants(city: str, cuisine: Literal["italian", "japanese", "mexican", "indian", "french", "thai", "chinese", "mediterranean"] | None = None,
                         price_level: Literal["$", "$$", "$$$"] | None = None, open_now: bool = False) -> dict:
        """Find restaurants in a city.

        Args:
            city: City name.
            cuisine: Type of cuisine.
            price_level: Price category, from "$" (cheap) to "$$$" (expensive).
            open_now: Only restaurants open now.
        """
        c = world.city(city)
        rng = world.rng("restaurants", c.name)
        rows = [{"restaurant_id": f"RS-{c.name[:3].upper()}{i}", "name": f"{rng.choice(('Casa', 'Le', 'The', 'Little'))} {cu.title()} {c.name}",
                 "cuisine": cu, "price_level": rng.choice(("$", "$$", "$$$")), "rating": round(rng.uniform(3.4, 4.9), 1),
                 "open_now": rng.random() < 0.75} for i, cu in enumerate(CUISINES)]
        rows = [r for r in rows if (cuisine is None or r["cuisine"] == cuisine) and (price_level is None or r["price_level"] == price_level)
                and (r["open_now"] or not open_now)]
        return {"city": c.name, "restaurants": rows}

    def reserve_table(restaurant_id: str, date: str, time: str, party_size: int, name: str) -> dict:
        """Reserve a table at a restaurant.

        Args:
            restaurant_id: Identifier from search_restaurants, e.g. "RS-LIS2".
            date: Day in YYYY-MM-DD format.
            time: Time in HH:MM format.
            party_size: Number of guests, 1 to 20.
            name: Name for the reservation.
        """
        parse_date(date)
        parse_time(time)
        if not 1 <= party_size <= 20:
            raise ValueError("party_size must be between 1 and 20")
        if not str(restaurant_id).startswith("RS-"):
            raise ValueError(f"invalid restaurant id {restaurant_id!r}")
        rid = world.new_id("RES")
        world.reservations[rid] = {"reservation_id": rid, "restaurant_id": restaurant_id, "date": date, "time": time,
                                   "party_size": party_size, "name": name, "status": "confirmed"}
        return dict(world.reservations[rid])

    def get_wine_pairing(dish: str, budget: Literal["low", "medium", "high"] = "medium") -> dict:
        """Suggest a wine to pair with a dish.

        Args:
            dish: The dish being served.
            budget: Price range of the wine.
        """
        d = dish.lower()
        style = ("sauvignon blanc" if any(w in d for w in ("fish", "salmon", "shrimp", "salad")) else
                 "malbec" if any(w in d for w in ("beef", "steak", "lamb", "taco")) else
                 "pinot noir" if any(w in d for w in ("mushroom", "chicken", "duck")) else "chianti")
        return {"dish": dish, "wine": style, "price_range": {"low": "under $15", "medium": "$15-40", "high": "over $40"}[budget]}

    return [search_recipes, get_recipe_details, get_nutrition_facts, search_restaurants, reserve_table, get_wine_pairing]
