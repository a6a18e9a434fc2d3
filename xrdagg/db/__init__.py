"""Database layer: schema, dialect differences, engines and migrations."""
