"""Run, tuning and export directories: claiming, locking, atomic writes, history and curves."""
