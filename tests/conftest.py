"""Test plugins: fixtures live in tests/fix_*.py modules (psycopg's layout)."""

pytest_plugins = ("tests.fix_alone", "tests.fix_children", "tests.fix_db", "tests.fix_gateway")
