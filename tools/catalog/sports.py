"""Sports domain: league tables, results, fixtures and player statistics from seeded seasons."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal

from tools.catalog.common import parse_date
from tools.catalog.world import PLAYERS, TEAMS, TODAY, World

DOMAIN = "sports"

League = Literal["premier_league", "la_liga", "serie_a", "nba"]


def _team(name: str) -> tuple[str, str]:
    for league, teams in TEAMS.items():
        for t in teams:
            if t.lower() == str(name).strip().lower():
                return t, league
    raise ValueError(f"unknown team {name!r}")


def _player(name: str) -> str:
    for p in PLAYERS:
        if p.lower() == str(name).strip().lower():
            return p
    raise ValueError(f"unknown player {name!r}")


def functions(world: World) -> list[Callable]:
    def _score(league: str, a: str, b: str, day: str) -> tuple[int, int]:
        rng = world.rng("match", a, b, day)
        hi = 130 if league == "nba" else 4
        lo = 85 if league == "nba" else 0
        return rng.randint(lo, hi), rng.randint(lo, hi)

    def get_league_standings(league: League, top_n: int = 6) -> dict:
        """Get the current league table.

        Args:
            league: The league.
            top_n: Number of teams to list.
        """
        rng = world.rng("table", league)
        rows = [{"team": t, "played": 30, "points": rng.randint(20, 75)} for t in TEAMS[league]]
        rows.sort(key=lambda r: (-r["points"], r["team"]))
        return {"league": league, "standings": [{"position": i + 1, **r} for i, r in enumerate(rows[:top_n])]}

    def get_match_result(team: str, date: str) -> dict:
        """Get the result of a team's match on a past date.

        Args:
            team: Team name.
            date: Match day in YYYY-MM-DD format.
        """
        t, league = _team(team)
        day = parse_date(date)
        if day >= TODAY:
            raise ValueError("the match has not been played yet")
        others = [x for x in TEAMS[league] if x != t]
        opp = world.rng("opp", t, date).choice(others)
        a, b = _score(league, t, opp, date)
        return {"date": date, "home": t, "away": opp, "score": f"{a}-{b}",
                "winner": t if a > b else opp if b > a else None}

    def get_upcoming_fixtures(team: str, count: int = 3) -> dict:
        """List a team's next matches.

        Args:
            team: Team name.
            count: Number of fixtures, 1 to 10.
        """
        t, league = _team(team)
        if not 1 <= count <= 10:
            raise ValueError("count must be between 1 and 10")
        rng = world.rng("fixtures", t)
        others = [x for x in TEAMS[league] if x != t]
        return {"team": t, "fixtures": [{"date": (TODAY + dt.timedelta(days=4 * i + 2)).isoformat(), "opponent": rng.choice(others),
                                         "venue": rng.choice(("home", "away"))} for i in range(count)]}

    def get_player_season_stats(player_name: str, season: int = 2024) -> dict:
        """Get a player's statistics for a season.

        Args:
            player_name: Full name of the player.
            season: Season start year, e.g. 2024.
        """
        p = _player(player_name)
        team, league = PLAYERS[p]
        rng = world.rng("player", p, season)
        if league == "nba":
            return {"player": p, "team": team, "season": season, "games": rng.randint(50, 82),
                    "points_per_game": round(rng.uniform(8, 31), 1), "assists_per_game": round(rng.uniform(1, 9), 1)}
        return {"player": p, "team": team, "season": season, "appearances": rng.randint(15, 38),
                "goals": rng.randint(0, 28), "assists": rng.randint(0, 15)}

    def get_top_scorers(league: League, limit: int = 3) -> dict:
        """List the top scorers of a league this season.

        Args:
            league: The league.
            limit: Number of players.
        """
        rows = [{"player": p, "team": t, "goals" if league != "nba" else "points_per_game": get_player_season_stats(p)["goals" if league != "nba" else "points_per_game"]}
                for p, (t, lg) in PLAYERS.items() if lg == league]
        key = "goals" if league != "nba" else "points_per_game"
        return {"league": league, "top_scorers": sorted(rows, key=lambda r: -r[key])[: max(0, limit)]}

    def compare_teams(team_a: str, team_b: str, last_n_matches: int = 5) -> dict:
        """Compare two teams' head-to-head record over recent meetings.

        Args:
            team_a: First team.
            team_b: Second team.
            last_n_matches: Number of past meetings to include.
        """
        a, la = _team(team_a)
        b, lb = _team(team_b)
        if la != lb or a == b:
            raise ValueError("teams must be different and play in the same league")
        wins = {a: 0, b: 0, "draws": 0}
        for i in range(max(1, min(last_n_matches, 20))):
            x, y = _score(la, a, b, f"h2h{i}")
            wins[a if x > y else b if y > x else "draws"] += 1
        return {"team_a": a, "team_b": b, "record": wins}

    return [get_league_standings, get_match_result, get_upcoming_fixtures, get_player_season_stats, get_top_scorers, compare_teams]
