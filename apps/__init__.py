"""The monolith's domain apps (catalog, carts, orders, accounts)."""
