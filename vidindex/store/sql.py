"""SQL filter pieces for LanceDB `where` predicates: quoted literals, equality, AND."""

from __future__ import annotations


def sql_literal(value: str) -> str:
    """`value` as a quoted SQL string: a quote inside it cannot end the literal."""
    return "'" + str(value).replace("'", "''") + "'"


def eq(column: str, value: str | None) -> str | None:
    """`column = 'value'`, or None (no filter) when value is None."""
    return None if value is None else f"{column} = {sql_literal(value)}"


def and_clauses(*clauses: str | None) -> str | None:
    """The clauses given (None and "" skipped) joined by AND, each in parentheses; None if none."""
    present = [c for c in clauses if c]
    return " AND ".join(f"({c})" for c in present) if present else None
