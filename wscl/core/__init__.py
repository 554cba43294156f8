"""Foundations every layer may use: exit codes and errors, safe and verified file I/O, provenance."""
