"""SQL filter pieces for LanceDB `where` predicates: quoted literals, equality, AND."""

from __future__ import annotations

from vidindex.store.errors import StoreError


def sql_literal(value: str) -> str:
    """`value` as a quoted SQL string: a quote inside it cannot end the literal."""
    return "'" + str(value).replace("'", "''") + "'"


def eq(column: str, value: str | None) -> str | None:
    """`column = 'value'`, or None (no filter) when value is None."""
    return None if value is None else f"{column} = {sql_literal(value)}"


def and_clauses(*clauses: str | None) -> str | None:
    """The clauses given (None and "" skipped) joined by AND, each in parentheses; None if none.
    StoreError for a clause that is not one self-contained predicate (check_predicate)."""
    present = [c for c in clauses if c]
    for clause in present:
        try:
            check_predicate(clause)
        except ValueError as problem:
            raise StoreError(f"SQL filter {clause!r} cannot be combined with others: {problem}") from None
    return " AND ".join(f"({c})" for c in present) if present else None


def check_predicate(text: str) -> None:
    """ValueError unless `text` stays inside the parentheses and_clauses puts around it: every
    quote closed, every parenthesis closed and none closed that it did not open, no ';' and no
    comment ('--', '/*') outside quotes. LanceDB reads `a) OR (b` or `a; b` alone without
    complaint, so without this check such a filter would undo the filters beside it (a search's
    video filter) or have its tail ignored."""
    depth, quote, i = 0, None, 0
    while i < len(text):
        ch = text[i]
        if quote is not None:
            if ch == quote:  # a doubled quote ('') closes and reopens: the scan stays right
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("a ')' closes a parenthesis the filter did not open")
        elif ch == ";":
            raise ValueError("';' is not allowed: give one predicate")
        elif text.startswith(("--", "/*"), i):
            raise ValueError("SQL comments ('--', '/*') are not allowed")
        i += 1
    if quote is not None:
        raise ValueError(f"a {quote} quote is not closed")
    if depth:
        raise ValueError("a '(' is not closed")
