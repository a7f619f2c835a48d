"""Finance domain: quotes, price history, currency conversion, loan maths and a paper-trading account."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from tools.catalog.common import positive, r2
from tools.catalog.world import CURRENCIES, STOCKS, World

DOMAIN = "finance"


def _symbol(symbol: str) -> str:
    s = str(symbol).strip().upper()
    if s not in STOCKS:
        raise ValueError(f"unknown ticker symbol {symbol!r}; known symbols include " + ", ".join(list(STOCKS)[:8]))
    return s


def _currency(code: str) -> str:
    c = str(code).strip().upper()
    if c not in CURRENCIES:
        raise ValueError(f"unsupported currency {code!r}; use a 3-letter ISO code such as " + ", ".join(list(CURRENCIES)[:8]))
    return c


def price_of(world: World, symbol: str, days_ago: int = 0) -> float:
    s = _symbol(symbol)
    base = STOCKS[s][2]
    return r2(base * (1 + world.rng("price", s, days_ago).uniform(-0.06, 0.06)))


def functions(world: World) -> list[Callable]:
    def get_stock_quote(symbol: str) -> dict:
        """Get the latest trading price of a stock.

        Args:
            symbol: Ticker symbol, for example "AAPL".
        """
        s = _symbol(symbol)
        now, prev = price_of(world, s), price_of(world, s, 1)
        return {"symbol": s, "price": now, "currency": "USD", "change_percent": r2((now - prev) / prev * 100)}

    def get_stock_history(symbol: str, days: int = 5) -> dict:
        """Get a stock's daily closing prices for the last few trading days.

        Args:
            symbol: Ticker symbol.
            days: Number of days of history, from 1 to 30.
        """
        if not 1 <= days <= 30:
            raise ValueError("days must be between 1 and 30")
        s = _symbol(symbol)
        closes = [price_of(world, s, d) for d in range(days, 0, -1)]
        return {"symbol": s, "closes": closes, "high": max(closes), "low": min(closes)}

    def get_company_profile(symbol: str) -> dict:
        """Get the company name, sector and market capitalisation behind a ticker symbol.

        Args:
            symbol: Ticker symbol.
        """
        s = _symbol(symbol)
        name, sector, _ = STOCKS[s]
        shares = world.rng("shares", s).randint(1, 16)
        return {"symbol": s, "name": name, "sector": sector, "market_cap_billion_usd": r2(price_of(world, s) * shares)}

    def exchange_money_amount(amount: float, from_currency: str, to_currency: str) -> dict:
        """Convert an amount of money from one currency to another at today's rate.

        Args:
            amount: The amount to convert.
            from_currency: ISO code of the source currency, e.g. "USD".
            to_currency: ISO code of the target currency, e.g. "EUR".
        """
        src, dst = _currency(from_currency), _currency(to_currency)
        rate = CURRENCIES[dst] / CURRENCIES[src]
        return {"amount": amount, "from": src, "to": dst, "rate": round(rate, 4), "converted": r2(amount * rate)}

    def get_currency_rates(base_currency: str, target_currencies: list[str]) -> dict:
        """Get exchange rates from one base currency to several target currencies.

        Args:
            base_currency: ISO code of the base currency.
            target_currencies: ISO codes to quote against the base.
        """
        base = _currency(base_currency)
        if not target_currencies:
            raise ValueError("target_currencies must not be empty")
        return {"base": base, "rates": {_currency(t): round(CURRENCIES[_currency(t)] / CURRENCIES[base], 4)
                                        for t in target_currencies}}

    def calculate_loan_payment(principal: float, annual_rate_percent: float, years: int) -> dict:
        """Calculate the fixed monthly payment of an amortising loan.

        Args:
            principal: Amount borrowed.
            annual_rate_percent: Yearly interest rate in percent, e.g. 4.5.
            years: Loan term in years.
        """
        positive("principal", principal)
        positive("years", years)
        n, i = years * 12, annual_rate_percent / 100 / 12
        pay = principal / n if i == 0 else principal * i / (1 - (1 + i) ** -n)
        return {"monthly_payment": r2(pay), "total_paid": r2(pay * n), "total_interest": r2(pay * n - principal)}

    def project_savings_growth(principal: float, annual_rate_percent: float, years: int,
                                    compounds_per_year: int = 12) -> dict:
        """Calculate the future value of a deposit with compound interest.

        Args:
            principal: Initial deposit.
            annual_rate_percent: Yearly interest rate in percent.
            years: Number of years.
            compounds_per_year: How many times per year interest is compounded.
        """
        positive("compounds_per_year", compounds_per_year)
        value = principal * (1 + annual_rate_percent / 100 / compounds_per_year) ** (compounds_per_year * years)
        return {"future_value": r2(value), "interest_earned": r2(value - principal)}

    def get_portfolio_value(holdings: dict[str, int]) -> dict:
        """Value a portfolio of stock holdings at the latest prices.

        Args:
            holdings: Mapping from ticker symbol to number of shares, e.g. {"AAPL": 10}.
        """
        if not holdings:
            raise ValueError("holdings must not be empty")
        lines = {_symbol(s): r2(price_of(world, s) * int(q)) for s, q in holdings.items()}
        return {"positions": lines, "total_value": r2(sum(lines.values())), "currency": "USD"}

    def place_stock_order(symbol: str, quantity: int, side: Literal["buy", "sell"], limit_price: float | None = None) -> dict:
        """Place a buy or sell order in the paper-trading account.

        Args:
            symbol: Ticker symbol.
            quantity: Number of shares, at least 1.
            side: Whether to buy or sell.
            limit_price: Highest price to pay (buy) or lowest to accept (sell); market order when omitted.
        """
        s = _symbol(symbol)
        positive("quantity", quantity)
        price = price_of(world, s)
        acct = world.portfolio
        if limit_price is not None and ((side == "buy" and price > limit_price) or (side == "sell" and price < limit_price)):
            return {"order_id": world.new_id("ORD"), "status": "pending", "symbol": s, "limit_price": limit_price}
        held = acct["positions"].get(s, 0)
        if side == "buy":
            if price * quantity > acct["cash"]:
                raise ValueError(f"insufficient cash: need {r2(price * quantity)}, have {r2(acct['cash'])}")
            acct["cash"] -= price * quantity
            acct["positions"][s] = held + quantity
        else:
            if quantity > held:
                raise ValueError(f"cannot sell {quantity} shares of {s}: only {held} held")
            acct["cash"] += price * quantity
            acct["positions"][s] = held - quantity
        return {"order_id": world.new_id("ORD"), "status": "filled", "symbol": s, "side": side, "quantity": quantity,
                "price": price, "cash_remaining": r2(acct["cash"])}

    return [get_stock_quote, get_stock_history, get_company_profile, exchange_money_amount, get_currency_rates,
            calculate_loan_payment, project_savings_growth, get_portfolio_value, place_stock_order]
