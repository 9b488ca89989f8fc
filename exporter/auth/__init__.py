"""Request signers, one module per vendor signature scheme, each an `httpx.Auth`."""
