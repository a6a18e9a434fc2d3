"""Checks that SQL and schema names are safe for Oracle, run everywhere without an Oracle server.

Two kinds of check: names (tables, columns, constraints, indexes) against Oracle's limits, and
rendered SQL against constructs other databases accept and Oracle refuses or reads differently.
The tests compile every statement xrdagg executes, and the migrations' offline DDL, with the
Oracle dialect and run these checks on the result.
"""

from __future__ import annotations

import re

from sqlalchemy import Boolean, MetaData
from sqlalchemy.dialects.oracle.base import RESERVED_WORDS as SQLALCHEMY_ORACLE_RESERVED

MAX_NAME_LENGTH = 30  # Oracle before 12.2, still common in WLCG databases

# V$RESERVED_WORDS with RESERVED = 'Y', plus the keywords that break unquoted identifiers.
ORACLE_RESERVED = frozenset(SQLALCHEMY_ORACLE_RESERVED) | {
    "ACCESS", "ADD", "AUDIT", "COLUMN", "FILE", "IMMEDIATE", "INCREMENT", "INITIAL",
    "MAXEXTENTS", "MLSLABEL", "MODIFY", "NOAUDIT", "OFFLINE", "ONLINE", "PRIVILEGES", "ROW",
    "ROWID", "ROWNUM", "ROWS", "SESSION", "SUCCESSFUL", "SYSDATE", "VALIDATE", "WHENEVER",
}  # fmt: skip

# (pattern, why): searched in SQL with string literals blanked out.
_SQL_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bLIMIT\b", re.I), "LIMIT: Oracle uses FETCH FIRST n ROWS ONLY"),
    (re.compile(r"\bON\s+CONFLICT\b", re.I), "ON CONFLICT: Oracle needs MERGE"),
    (re.compile(r"::"), ":: casts are PostgreSQL only: use CAST(x AS t)"),
    (re.compile(r"\bBOOLEAN\b", re.I), "BOOLEAN: no such column type before Oracle 23"),
    (re.compile(r"\b(TRUE|FALSE)\b", re.I), "TRUE/FALSE literals: not SQL before Oracle 23"),
    (re.compile(r"(=|<>|!=)\s*''"), "= '': Oracle stores '' as NULL, so this is never true"),
    (re.compile(r"\bILIKE\b", re.I), "ILIKE: PostgreSQL only"),
    (re.compile(r"\bRECURSIVE\b", re.I), "WITH RECURSIVE: Oracle writes WITH name (cols) AS"),
    (re.compile(r'"'), "a quoted identifier: a reserved word or mixed case name"),
]
_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")


def lint_sql(sql: str) -> list[str]:
    """Problems of one Oracle-rendered statement (empty when it is clean)."""
    # Blank string literals (keeping '' itself), so that their content raises no alarm.
    text = _STRING_LITERAL.sub(lambda m: m.group(0) if m.group(0) == "''" else "'x'", sql)
    return [why for pattern, why in _SQL_RULES if pattern.search(text)]


def name_problems(kind: str, name: str, where: str = "") -> list[str]:
    """Problems of one identifier; `where` (e.g. the table) only qualifies the message."""
    shown = f"{kind} {where}{name}"
    problems = []
    if len(name) > MAX_NAME_LENGTH:
        problems.append(f"{shown}: {len(name)} characters, Oracle allows {MAX_NAME_LENGTH}")
    if name.upper() in ORACLE_RESERVED:
        problems.append(f"{shown}: an Oracle reserved word")
    if name != name.lower():
        problems.append(f"{shown}: not lower case, so Oracle would need it quoted")
    return problems


def lint_metadata(metadata: MetaData) -> list[str]:
    """Problems of every table, column, constraint and index name and column type."""
    problems: list[str] = []
    for table in metadata.tables.values():
        problems += name_problems("table", table.name)
        for column in table.columns:
            problems += name_problems("column", column.name, f"{table.name}.")
            if isinstance(column.type, Boolean):
                problems.append(f"column {table.name}.{column.name}: BOOLEAN")
            if column.primary_key and column.nullable:
                problems.append(f"column {table.name}.{column.name}: a key column must be NOT NULL")
        for constraint in table.constraints:
            if constraint.name:
                problems += name_problems("constraint", str(constraint.name))
        for index in table.indexes:
            problems += name_problems("index", str(index.name))
    return problems


# Comments and SQL*Plus commands: not SQL.
_NOT_SQL = re.compile(r"--|(?:WHENEVER|SET) ", re.I)


def lint_ddl(script: str) -> list[str]:
    """Problems of an offline DDL script: names of created objects, and the SQL rules."""
    problems: list[str] = []
    for statement in script.split("\n/\n"):
        statement = "\n".join(line for line in statement.splitlines() if not _NOT_SQL.match(line))
        if not statement.strip():
            continue
        problems += [f"{why}: {statement.strip()[:80]}" for why in lint_sql(statement)]
        for kind, name in re.findall(
            r"CREATE (?:OR REPLACE )?(?:GLOBAL TEMPORARY )?(TABLE|INDEX|VIEW|SYNONYM) (\w+)",
            statement,
        ):
            problems += name_problems(kind.lower(), name)
        if not re.match(r"\s*CREATE (?:GLOBAL TEMPORARY )?TABLE\b", statement):
            continue  # column definitions are in CREATE TABLE only
        for name in re.findall(r"^[ \t]+(\w+) [A-Z]", statement, re.M):
            # Clause keywords, not columns (ON: a temporary table's ON COMMIT DELETE ROWS).
            if name.upper() not in ("CONSTRAINT", "PRIMARY", "CHECK", "UNIQUE", "FOREIGN", "ON"):
                problems += name_problems("column", name)
    return problems


# What a script for SQL*Plus/SQLcl must hold, beyond the statements: (pattern, why), searched in
# the script with comments dropped and string literals blanked.
_SCRIPT_RULES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"(?<![\w:&]):[A-Za-z_]\w*"),
        "a bind variable: the script is run as is, nothing declares or binds it",
    ),
    (
        re.compile(r"\bVARCHAR2\s*\(\s*\d+\s*\)", re.I),
        "VARCHAR2(n) without BYTE or CHAR: its meaning would depend on NLS_LENGTH_SEMANTICS",
    ),
]


def lint_script(script: str) -> list[str]:
    """Problems of a script a DBA runs top to bottom in SQL*Plus or SQLcl: lint_ddl's, plus it
    must stop at the first error, bind nothing, say BYTE or CHAR, and commit its DML."""
    problems = lint_ddl(script)
    code = [line for line in script.splitlines() if line.strip() and not line.startswith("--")]
    if not code or not code[0].upper().startswith("WHENEVER SQLERROR EXIT FAILURE"):
        problems.append("the script must begin with WHENEVER SQLERROR EXIT FAILURE")
    text = _STRING_LITERAL.sub("'x'", "\n".join(code))
    for pattern, why in _SCRIPT_RULES:
        problems += [f"{why}: {m.group(0)}" for m in pattern.finditer(text)]
    has_dml = re.search(r"^\s*(INSERT|UPDATE|DELETE|MERGE)\b", text, re.M | re.I)
    if has_dml and not re.search(r"^COMMIT\b[;\s/]*\Z", text, re.M):
        problems.append("the script changes rows (INSERT/UPDATE) but does not end with COMMIT")
    return problems
