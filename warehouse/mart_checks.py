"""Mart contracts, the dbt convention: `warehouse/marts/<mart>.yml` beside `<mart>.sql` holds
the mart's description, its columns (the contract: names and order) and data tests. Each test
compiles to a query that selects the rows failing it (dbt's semantics) and is counted; the
marts stage runs them after every refresh and keeps the results in dq_result (source_system
'marts'), so a mart that breaks its contract stops the marts DAG before anyone reads it.

Tests (dbt core and dbt_utils names): not_null, unique, accepted_values (values, or code_table:
a standards/codes table's codes — the stewards' list plays a dbt seed's part), accepted_range
(min_value / max_value, inclusive), relationships (to: table, field), and on the mart
unique_combination_of_columns and expression_is_true. `config: {severity: warn}` reports a
failure without stopping the DAG (default: error). Errors are kept for what the mart's own SQL
guarantees (its grain, shares within 0..1, counts that contain each other); what depends on the
departments' data (a holder without a usable identifier, a date before 1990) is not an error, and
references into the dimensions warn (the warehouse checks own referential integrity)."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from govdata.expectations.outcome import ValidationOutcome, outcome_from_rows
from govdata.standards.registry import StandardsError, load_standards, read_yaml
from govdata.warehouse.connections import read_only_engine

MARTS_DIR = Path(__file__).parent / "marts"
SOURCE_SYSTEM = "marts"
SUITE = "mart_contracts"
CONTRACT = "contract_columns"   # the mart's columns are the declared ones, in order
COLUMN_TESTS = {"not_null", "unique", "accepted_values", "accepted_range", "relationships"}
MART_TESTS = {"unique_combination_of_columns", "expression_is_true"}
SEVERITY = {"error": "critical", "warn": "warning"}   # dbt's severities as dq_result's


class MartContractError(ValueError):
    """A contract file that cannot be read: one line naming the file, the place and the fix."""

    def __init__(self, path: Path, where: str, problem: str):
        super().__init__(f"{path.name}: {where}: {problem}")


@dataclass(frozen=True)
class MartTest:
    mart: str
    test: str                  # dbt test name
    column: str | None         # None: a test on the whole mart
    args: dict[str, Any] = field(default_factory=dict)
    severity: str = "critical"

    @property
    def element(self) -> str:
        return f"{self.mart}.{self.column}" if self.column else self.mart


@dataclass(frozen=True)
class MartContract:
    name: str
    description: str
    columns: dict[str, str]    # column -> description, in the mart's order
    tests: tuple[MartTest, ...]


# ---------------------------------------------------------------- reading the contracts
def _test_entries(raw: Any, path: Path, where: str) -> list[tuple[str, dict[str, Any]]]:
    """dbt's two spellings: `- not_null` and `- accepted_range: {min_value: 0}`."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise MartContractError(path, where, "data_tests must be a list")
    out = []
    for entry in raw:
        if isinstance(entry, str):
            out.append((entry, {}))
        elif isinstance(entry, dict) and len(entry) == 1:
            name, args = next(iter(entry.items()))
            if args is not None and not isinstance(args, dict):
                raise MartContractError(path, f"{where}.{name}", "arguments must be a mapping")
            out.append((name, dict(args or {})))
        else:
            raise MartContractError(path, where, f"a test is a name or a one-key mapping, not {entry!r}")
    return out


def _severity(args: dict[str, Any], path: Path, where: str) -> str:
    level = (args.pop("config", None) or {}).get("severity", "error")
    if level not in SEVERITY:
        raise MartContractError(path, where, f"severity {level!r}: use error or warn")
    return SEVERITY[level]


def _check_args(test: str, args: dict[str, Any], path: Path, where: str) -> None:
    required = {"accepted_values": ({"values"}, {"code_table"}), "relationships": ({"to", "field"},),
                "unique_combination_of_columns": ({"combination_of_columns"},),
                "expression_is_true": ({"expression"},),
                "accepted_range": ({"min_value"}, {"max_value"}, {"min_value", "max_value"})}
    options = required.get(test)
    if options and not any(set(args) == set(opt) for opt in options):
        spelled = " or ".join("{" + ", ".join(sorted(opt)) + "}" for opt in options)
        raise MartContractError(path, where, f"{test} takes {spelled}, got {sorted(args) or 'none'}")


def parse_contract(raw: Any, path: Path) -> MartContract:
    """One `<mart>.yml` (dbt's `models:` list with one model named like the file)."""
    models = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(models, list) or len(models) != 1 or not isinstance(models[0], dict):
        raise MartContractError(path, "models", "one model per file: models: [{name: ..., columns: [...]}]")
    model = models[0]
    if model.get("name") != path.stem:
        raise MartContractError(path, "models[0].name", f"must be {path.stem!r} (the file's name)")
    if not model.get("description"):
        raise MartContractError(path, path.stem, "add a description")
    tests: list[MartTest] = []
    columns: dict[str, str] = {}
    for i, col in enumerate(model.get("columns") or []):
        name = col.get("name") if isinstance(col, dict) else None
        if not name:
            raise MartContractError(path, f"columns[{i}]", "each column needs a name")
        where = f"{path.stem}.{name}"
        if name in columns:
            raise MartContractError(path, where, "column declared twice")
        if not col.get("description"):
            raise MartContractError(path, where, "add a description")
        columns[name] = str(col["description"]).strip()
        for test, args in _test_entries(col.get("data_tests"), path, where):
            if test not in COLUMN_TESTS:
                raise MartContractError(path, where, f"unknown column test {test!r} (known: {', '.join(sorted(COLUMN_TESTS))})")
            severity = _severity(args, path, where)
            _check_args(test, args, path, f"{where}.{test}")
            tests.append(MartTest(path.stem, test, name, args, severity))
    if not columns:
        raise MartContractError(path, path.stem, "declare the mart's columns")
    for test, args in _test_entries(model.get("data_tests"), path, path.stem):
        if test not in MART_TESTS:
            raise MartContractError(path, path.stem, f"unknown mart test {test!r} (known: {', '.join(sorted(MART_TESTS))})")
        severity = _severity(args, path, path.stem)
        _check_args(test, args, path, f"{path.stem}.{test}")
        unknown = [c for c in args.get("combination_of_columns", []) if c not in columns]
        if unknown:
            raise MartContractError(path, f"{path.stem}.{test}", f"columns {unknown} are not declared")
        tests.append(MartTest(path.stem, test, None, args, severity))
    return MartContract(path.stem, str(model["description"]).strip(), columns, tuple(tests))


def load_contracts(marts_dir: Path = MARTS_DIR) -> dict[str, MartContract]:
    """Every mart's contract; a mart SQL without its YAML (or the reverse) is an error."""
    sql = {p.stem for p in marts_dir.glob("mart_*.sql")}
    yml = {p.stem for p in marts_dir.glob("mart_*.yml")}
    for name in sorted(sql ^ yml):
        missing = f"{name}.yml" if name in sql else f"{name}.sql"
        raise MartContractError(marts_dir / missing, name, f"{missing} is missing: each mart has its SQL and its contract")
    contracts = {}
    for name in sorted(sql):
        path = marts_dir / f"{name}.yml"
        try:
            contracts[name] = parse_contract(read_yaml(path), path)
        except StandardsError as exc:
            raise MartContractError(path, "(file)", str(exc)) from exc
    return contracts


# ---------------------------------------------------------------- compiling the tests
def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def accepted(test: MartTest) -> list[Any]:
    if "code_table" in test.args:
        return list(load_standards().code_table(test.args["code_table"])["code"])
    return list(test.args["values"])


def failing_rows_sql(test: MartTest, relation: str | None = None) -> str:
    """The rows of the mart that fail the test (NULLs pass every test but not_null, as in dbt).
    `relation`: read the mart's rows from there (a materialised copy) instead of the view."""
    m, c, a = relation or test.mart, test.column, test.args
    if test.test == "not_null":
        return f"SELECT * FROM {m} WHERE {c} IS NULL"
    if test.test == "unique":
        return f"SELECT {c} FROM {m} WHERE {c} IS NOT NULL GROUP BY {c} HAVING COUNT(*) > 1"
    if test.test == "accepted_values":
        values = ", ".join(_literal(v) for v in accepted(test))
        return f"SELECT * FROM {m} WHERE {c} IS NOT NULL AND {c} NOT IN ({values})"
    if test.test == "accepted_range":
        bounds = [f"{c} < {_literal(a['min_value'])}" if "min_value" in a else None,
                  f"{c} > {_literal(a['max_value'])}" if "max_value" in a else None]
        return f"SELECT * FROM {m} WHERE " + " OR ".join(b for b in bounds if b)
    if test.test == "relationships":
        return (f"SELECT * FROM {m} x WHERE x.{c} IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM {a['to']} t WHERE t.{a['field']} = x.{c})")
    if test.test == "unique_combination_of_columns":
        cols = ", ".join(a["combination_of_columns"])
        return f"SELECT {cols} FROM {m} GROUP BY {cols} HAVING COUNT(*) > 1"
    if test.test == "expression_is_true":
        return f"SELECT * FROM {m} WHERE NOT ({a['expression']})"
    raise AssertionError(test.test)   # parse_contract admits only the tests above


# ---------------------------------------------------------------- running them
def _row(run_id: str, test: MartTest | None, mart: str, success: bool, bad: int | None,
         rows: int, observed: str) -> dict[str, Any]:
    return {"run_id": run_id, "source_system": SOURCE_SYSTEM, "suite": SUITE,
            "expectation": test.test if test else CONTRACT, "element": test.element if test else mart,
            "severity": test.severity if test else "critical", "success": success,
            "observed_value": observed, "unexpected_count": bad, "element_count": rows}


def contract_rows(conn: sa.Connection, contract: MartContract, run_id: str,
                  total: int | None = None) -> tuple[list[dict], int]:
    """The columns check, and the mart's row count for the other results (counted here unless
    given: failing_counts counts it with the tests)."""
    result = conn.execute(sa.text(f"SELECT * FROM {contract.name} LIMIT 0"))
    actual = list(result.keys())
    rows = total if total is not None else int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {contract.name}")).scalar_one())
    declared = list(contract.columns)
    ok = actual == declared
    observed = "columns as declared" if ok else (
        f"undeclared {sorted(set(actual) - set(declared))}, missing {sorted(set(declared) - set(actual))}"
        if set(actual) != set(declared) else "columns in another order")
    return [_row(run_id, None, contract.name, ok, None, rows, observed)], rows


def result_of(conn: sa.Connection, test: MartTest, run_id: str, total: int) -> dict[str, Any]:
    """One test's result; a test the database cannot run (a misspelt column or table in the
    contract) fails with the database's first line instead of stopping the others."""
    sql = f"SELECT COUNT(*) FROM ({failing_rows_sql(test)}) failing"
    try:
        # PostgreSQL aborts the transaction on a failed statement: a savepoint keeps the rest
        # running; DuckDB's read-only connection stays usable without one
        with conn.begin_nested() if conn.dialect.name == "postgresql" else nullcontext():
            bad = int(conn.execute(sa.text(sql)).scalar_one())
    except sa.exc.DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        return _row(run_id, test, test.mart, False, None, total, f"could not run: {first}")
    return _row(run_id, test, test.mart, bad == 0, bad, total, f"{bad} failing rows")


def failing_counts(conn: sa.Connection, contract: MartContract) -> tuple[int, list[int]] | None:
    """(the mart's rows, each test's failing rows) in one query over the mart computed once (a
    MATERIALIZED CTE): a view re-runs its SELECT for each test that reads it, over the whole
    warehouse. None when the database cannot run the query (a misspelt column in one test): the
    caller then runs the tests one by one, so that the others still count and the broken one
    says why."""
    counts = "".join(f", (SELECT COUNT(*) FROM ({failing_rows_sql(t, '_mart')}) f{i}) AS c{i}"
                      for i, t in enumerate(contract.tests))
    sql = f"WITH _mart AS MATERIALIZED (SELECT * FROM {contract.name}) SELECT (SELECT COUNT(*) FROM _mart){counts}"
    try:
        with conn.begin_nested() if conn.dialect.name == "postgresql" else nullcontext():
            total, *failing = (int(v) for v in conn.execute(sa.text(sql)).one())
    except sa.exc.DBAPIError:
        if conn.dialect.name != "postgresql":
            conn.rollback()   # DuckDB aborts the (read-only) transaction on a failed statement
        return None
    return total, failing


def run_mart_tests(url: str, run_id: str, marts_dir: Path = MARTS_DIR) -> ValidationOutcome:
    """Every mart's contract and data tests on the warehouse at url (read-only)."""
    contracts = load_contracts(marts_dir)
    engine = read_only_engine(url)
    results: list[dict] = []
    try:
        with engine.connect() as conn:
            for contract in contracts.values():
                counted = failing_counts(conn, contract)
                rows, total = contract_rows(conn, contract, run_id, counted[0] if counted else None)
                results += rows
                for i, test in enumerate(contract.tests):
                    if counted is None:
                        results.append(result_of(conn, test, run_id, total))
                        continue
                    bad = counted[1][i]
                    results.append(_row(run_id, test, test.mart, bad == 0, bad, total, f"{bad} failing rows"))
    finally:
        engine.dispose()
    return outcome_from_rows(results)
