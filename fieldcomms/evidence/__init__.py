"""Evidence and accountability: original photos, the deployment's signing key, the evidence bundle and its
offline check, retention, and the inbox through which the command line reaches a running server.

Nothing here imports aiohttp: the HTTP side is in api/evidence.py and api/decisions.py."""
