"""What we sell, at what price, under which names.

- `catalog`: provider listings merged into our priced services, and the
  current catalog, rebuilt when a listing (or whether we may sell from it)
  changes.
- `pricing`: upstream cost, converted, marked up, rounded up; an order's charge.
- `labels`: upstream names and categories, cleaned of anything that points
  at a provider.
"""
