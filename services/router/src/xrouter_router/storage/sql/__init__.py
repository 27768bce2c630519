"""SQL adapters: the PostgreSQL and SQLite stores, their migrations and shared usage SQL."""
