"""Client accounts and their money.

- `clients`: accounts, hashed API keys, enabling and disabling.
- `ledger`: balances and their ledger stream; `scripts/move_money.lua` is the
  one Lua fragment through which every script moves money.
"""
