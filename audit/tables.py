"""Audit tables arrive with the audit log; imported by migrations so they register once built."""
