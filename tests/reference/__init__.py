"""Test-only reference implementations that our models are checked against (never imported by the package)."""
