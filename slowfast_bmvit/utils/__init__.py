"""Small shared utilities (logging, seeding) used across the package."""
