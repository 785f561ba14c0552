"""Relational storage shared by the domain packages: declarative base, engine, migrations."""

from db.base import Base, utcnow
from db.engine import create_db_engine, make_session_factory

__all__ = ["Base", "create_db_engine", "make_session_factory", "utcnow"]
