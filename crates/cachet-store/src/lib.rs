//! Persistence: embedded SQLite by default, behind a small SQL interface.
