"""Tenants, API keys and the verified principal. Plain Python: no web framework here."""
