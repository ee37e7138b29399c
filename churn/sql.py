"""Quoting for SQL built from names: the one place an identifier or literal is escaped.

Column and table names that come from the user's data (a flat table's columns, an events source's
mapping) are never pasted into SQL as they are: they pass through :func:`quote_identifier`. Values
are bound as parameters wherever the statement allows it; :func:`quote_literal` is for the few
places that cannot take a parameter (DDL, ``read_csv`` paths, generated reason texts).
"""

from __future__ import annotations


def quote_identifier(name: str) -> str:
    """A column or table name, double-quoted with inner quotes doubled: safe in any SQL."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A string literal, single-quoted with inner quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


_GLOB_ESCAPES = str.maketrans({"[": "[[]", "*": "[*]", "?": "[?]"})


def quote_path(path: object) -> str:
    """A file path for ``read_csv``/``read_parquet``: DuckDB expands ``*``, ``?`` and ``[...]``
    in these paths as globs, so a file named ``customers_*.csv`` would read *every* customers
    file. Each glob character is escaped as a one-character class, then the path is quoted."""
    return quote_literal(str(path).translate(_GLOB_ESCAPES))
