"""Shopping domain: product search, a cart, coupons, checkout and order tracking."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from tools.catalog.common import positive, r2
from tools.catalog.world import World

DOMAIN = "shopping"

Category = Literal["electronics", "clothing", "home", "sports", "books", "toys"]


def functions(world: World) -> list[Callable]:
    def _product(product_id: str) -> dict:
        for p in world.products:
            if p["product_id"] == product_id:
                return p
        raise ValueError(f"no product with id {product_id!r}")

    def search_store_items(query: str, category: Category | None = None, max_price: float | None = None,
                        in_stock_only: bool = False, sort_by: Literal["relevance", "price_asc", "price_desc", "rating"] = "relevance") -> dict:
        """Search the online store's products.

        Args:
            query: Words to look for in product names, e.g. "headphones".
            category: Restrict results to one category.
            max_price: Highest price in USD.
            in_stock_only: Only return products that are in stock.
            sort_by: Order of the results.
        """
        words = [w for w in str(query).lower().split() if w]
        hits = [p for p in world.products if any(w in p["name"] for w in words)
                and (category is None or p["category"] == category)
                and (max_price is None or p["price"] <= max_price) and (not in_stock_only or p["stock"] > 0)]
        key = {"price_asc": lambda p: p["price"], "price_desc": lambda p: -p["price"], "rating": lambda p: -p["rating"]}.get(sort_by)
        if key:
            hits.sort(key=key)
        return {"query": query, "results": [{k: p[k] for k in ("product_id", "name", "price", "rating")} for p in hits[:5]]}

    def get_store_item_details(product_id: str) -> dict:
        """Get price, rating, category and stock of a product.

        Args:
            product_id: Identifier of the product, e.g. "P-2004".
        """
        return dict(_product(product_id))

    def add_to_cart(product_id: str, quantity: int = 1) -> dict:
        """Add a product to the shopping cart.

        Args:
            product_id: Identifier of the product.
            quantity: Number of units to add.
        """
        positive("quantity", quantity)
        p = _product(product_id)
        if p["stock"] < world.cart.get(product_id, 0) + quantity:
            raise ValueError(f"only {p['stock']} units of {p['name']} in stock")
        world.cart[product_id] = world.cart.get(product_id, 0) + quantity
        return {"status": "added", "product_id": product_id, "quantity_in_cart": world.cart[product_id]}

    def remove_from_cart(product_id: str) -> dict:
        """Remove a product from the shopping cart.

        Args:
            product_id: Identifier of the product.
        """
        if product_id not in world.cart:
            raise ValueError(f"product {product_id!r} is not in the cart")
        del world.cart[product_id]
        return {"status": "removed", "product_id": product_id}

    def view_cart() -> dict:
        """Show the items in the shopping cart with the subtotal."""
        items = [{"product_id": pid, "name": _product(pid)["name"], "quantity": q, "line_total": r2(_product(pid)["price"] * q)}
                 for pid, q in world.cart.items()]
        return {"items": items, "subtotal": r2(sum(i["line_total"] for i in items))}

    def apply_coupon(code: str) -> dict:
        """Check a coupon code and report its discount.

        Args:
            code: The coupon code, e.g. "SAVE10".
        """
        pct = world.coupons.get(str(code).strip().upper())
        if pct is None:
            raise ValueError(f"coupon {code!r} is not valid")
        return {"code": code.upper(), "discount_percent": pct, "valid": True}

    def checkout(shipping_address: dict, payment_method: Literal["credit_card", "paypal", "gift_card"] = "credit_card",
                 express_shipping: bool = False) -> dict:
        """Place an order for everything in the cart.

        Args:
            shipping_address: Address with keys "street", "city" and "postal_code".
            payment_method: How to pay.
            express_shipping: Ship with 1-day express delivery.
        """
        missing = [k for k in ("street", "city", "postal_code") if not shipping_address.get(k)]
        if missing:
            raise ValueError("shipping_address is missing " + ", ".join(missing))
        if not world.cart:
            raise ValueError("the cart is empty")
        total = sum(_product(pid)["price"] * q for pid, q in world.cart.items()) + (15.0 if express_shipping else 0.0)
        oid = world.new_id("ORD")
        world.orders[oid] = {"order_id": oid, "status": "processing", "total": r2(total),
                             "items": [{"product_id": k, "quantity": v} for k, v in world.cart.items()],
                             "eta": "1 day" if express_shipping else "3-5 days"}
        world.cart.clear()
        return {**world.orders[oid], "payment_method": payment_method}

    def track_order(order_id: str) -> dict:
        """Get the status and delivery estimate of an order.

        Args:
            order_id: Identifier of the order, e.g. "ORD-1001".
        """
        if order_id not in world.orders:
            raise ValueError(f"no order with id {order_id!r}")
        return dict(world.orders[order_id])

    return [search_store_items, get_store_item_details, add_to_cart, remove_from_cart, view_cart, apply_coupon,
            checkout, track_order]
