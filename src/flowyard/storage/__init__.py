"""SQLite storage: schema migrations, the group-commit writer and read connections."""
