"""The PostgreSQL backend: many workers share one deployment (see DESIGN.md, "Many workers on PostgreSQL")."""

from .store import PgStore

__all__ = ["PgStore"]
