"""Client accounts and their money.

- `clients`: accounts, hashed API keys, enabling and disabling.
- `fair_use`: how often a client may call us, and refill or cancel one order.
- `ledger`: balances and their ledger stream; `scripts/move_money.lua` is the
  one Lua fragment through which every script moves money.
"""
