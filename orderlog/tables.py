"""The CQL schema as text: the keyspace and the tables, one per query the product makes.

The files live in the top-level cassandra/ folder (the design names it); an installed
package carries them as orderlog/cql/ (pyproject.toml maps the folder there), so every
part, a Spark driver that imports the shipped package included, reads the one schema.
tables.cql is the one list of tables, columns and primary keys: the migrations and the
streaming job's start-up check read them here instead of restating them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from orderlog.config import Settings

# In a checkout; an installed package (or the zip spark-submit.sh ships) has orderlog/cql/.
CHECKOUT_CQL_DIR = Path(__file__).resolve().parent.parent / "cassandra"


def cql_text(name: str) -> str:
    """The text of a file of the schema (keyspace.cql, tables.cql)."""
    packaged = resources.files("orderlog") / "cql" / name
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (CHECKOUT_CQL_DIR / name).read_text(encoding="utf-8")


def keyspace_cql(settings: Settings) -> str:
    return cql_text("keyspace.cql").format(
        keyspace=settings.cassandra.keyspace, replication=settings.cassandra.replication
    )


def strip_comments(cql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in cql.splitlines()).strip().rstrip(";")


def table_statements() -> list[str]:
    """The statements of tables.cql, comments removed."""
    text = cql_text("tables.cql")
    lines = [line.split("--", 1)[0] for line in text.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def index_statements() -> list[str]:
    """The CREATE CUSTOM INDEX statements of tables.cql (applied after the tables' columns)."""
    return [s for s in table_statements() if s.split()[:2] == ["CREATE", "CUSTOM"]]


def index_names() -> list[str]:
    """The names of the indexes of tables.cql (CREATE CUSTOM INDEX IF NOT EXISTS <name> ON ...)."""
    return [s.split()[6] for s in index_statements()]


def table_names() -> list[str]:
    names = []
    for statement in table_statements():
        words = statement.split()
        if words[:5] == ["CREATE", "TABLE", "IF", "NOT", "EXISTS"]:
            names.append(words[5].rstrip("("))
    return names


def table_columns() -> dict[str, dict[str, str]]:
    """table -> column -> CQL type, as the CREATE TABLE statements of tables.cql define them."""
    tables: dict[str, dict[str, str]] = {}
    for name, statement in zip(table_names(), _create_table_statements(), strict=True):
        body = statement[statement.index("(") + 1 :]
        columns: dict[str, str] = {}
        for definition in _top_level_split(body):
            if definition.upper().startswith("PRIMARY KEY"):
                continue
            column, cql_type = definition.split(None, 1)
            columns[column] = cql_type.replace(" PRIMARY KEY", "").replace(" STATIC", "").strip()
        tables[name] = columns
    return tables


def table_keys() -> dict[str, tuple[list[str], list[str]]]:
    """table -> (partition key columns, clustering columns), as the PRIMARY KEYs of
    tables.cql define them."""
    keys = {}
    for name, statement in zip(table_names(), _create_table_statements(), strict=True):
        body = statement[statement.index("(") + 1 :]
        definition = next(d for d in _top_level_split(body) if d.upper().startswith("PRIMARY KEY"))
        inner = definition[definition.index("(") + 1 : definition.rindex(")")]
        first, *clustering = _top_level_split(inner + ")")
        partition = [c.strip() for c in first.strip("()").split(",")]
        keys[name] = (partition, [c.strip() for c in clustering])
    return keys


def create_table_statement(table: str, as_name: str | None = None) -> str:
    """The CREATE TABLE IF NOT EXISTS statement of ``table`` in tables.cql, for a table
    named ``as_name`` if given (a migration's staging table has the same layout)."""
    statement = _create_table_statements()[table_names().index(table)]
    prefix = f"CREATE TABLE IF NOT EXISTS {table}"
    return f"CREATE TABLE IF NOT EXISTS {as_name or table}" + statement[len(prefix) :]


def _create_table_statements() -> list[str]:
    return [s for s in table_statements() if s.split()[:5] == ["CREATE", "TABLE", "IF", "NOT", "EXISTS"]]


def _top_level_split(body: str) -> list[str]:
    """The comma-separated definitions of a CREATE TABLE body, up to its closing parenthesis
    (commas inside PRIMARY KEY (...) or map<...> do not split)."""
    parts, depth, current = [], 0, []
    for char in body:
        if char in "(<":
            depth += 1
        elif char in ")>":
            if depth == 0:  # the table's closing parenthesis
                break
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [" ".join(p.split()) for p in parts if p.strip()]


