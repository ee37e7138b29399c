"""Access and injection audits, in-process and by reading the code: constant-time key checks,
keys never logged, request data never turned into SQL, nothing unpickled from a path a request
can influence. The same properties over real HTTP are in test_reliability_service.py."""

from __future__ import annotations

import ast
import asyncio
import logging
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from churn.ingest.schema import CUSTOMERS, EVENTS, PAYMENTS, TICKETS
from serving import auth

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("churn", "churn_assets", "serving", "benchmarks")
KEYS = (b"first-secret-key", b"second-secret-key")


def _python_files() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (REPO_ROOT / d).rglob("*.py"))


def _call_name(node: ast.Call) -> str:
    parts = []
    target: ast.AST = node.func
    while isinstance(target, ast.Attribute):
        parts.append(target.attr)
        target = target.value
    if isinstance(target, ast.Name):
        parts.append(target.id)
    return ".".join(reversed(parts))


async def _call(app: Any, headers: list[tuple[bytes, bytes]], path: str = "/score") -> int:
    sent: list[dict[str, Any]] = []
    reached = []

    async def inner(scope, receive, send) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message) -> None:
        sent.append(message)

    middleware = auth.ApiKeyMiddleware(inner, keys=KEYS)
    scope = {"type": "http", "path": path, "headers": headers}
    await middleware(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    for key in (*KEYS, b"wrong-secret-key"):
        assert key not in body
    return sent[0]["status"]


def test_every_configured_key_is_compared_in_constant_time(monkeypatch, caplog):
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    caplog.set_level(logging.DEBUG)
    cases = {
        b"Bearer wrong-secret-key": 401,
        b"Bearer first-secret-key": 200,
        b"Bearer second-secret-key": 200,
        b"Bearer first-secret-ke": 401,
    }
    for header, status in cases.items():
        calls.clear()
        assert asyncio.run(_call(None, [(b"authorization", header)])) == status, header
        # Every key is compared, even after a match: timing tells neither which nor how much.
        assert [b for _, b in calls] == list(KEYS), header
    calls.clear()
    assert asyncio.run(_call(None, [])) == 401
    assert asyncio.run(_call(None, [], path="/readyz")) == 200
    assert not calls
    for key in (*KEYS, b"wrong-secret-key"):
        assert key.decode() not in caplog.text


def test_the_auth_module_never_compares_secrets_with_operators():
    tree = ast.parse((REPO_ROOT / "serving" / "auth.py").read_text())
    # The presented token and the keys it is checked against.
    secret_names = {"token", "presented", "key", "keys"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and not all(
            isinstance(op, ast.Is | ast.IsNot) for op in node.ops
        ):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            assert not names & secret_names, ast.unparse(node)
        if isinstance(node, ast.Call) and _call_name(node).startswith(("log", "logger", "print")):
            pytest.fail(f"serving/auth.py logs: {ast.unparse(node)}")


INJECTIONS = [
    "'; DROP TABLE stg_events; --",
    "x' OR '1'='1",
    '"); DELETE FROM stg_customers; --',
]


class RecordingConnection:
    def __init__(self, con: Any) -> None:
        self.con, self.sql = con, []

    def execute(self, sql: str, *args: Any) -> Any:
        self.sql.append(sql)
        return self.con.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


def _row(table, overrides: dict[str, Any]) -> dict[str, Any]:
    values = {"VARCHAR": "v1", "DATE": date(2025, 1, 5), "TIMESTAMP": datetime(2025, 2, 1, 10)}
    row = {}
    for column in table.columns:
        if column.allowed:
            row[column.name] = column.allowed[0]
        elif column.sql_type in values:
            row[column.name] = values[column.sql_type]
        else:
            row[column.name] = column.minimum if column.minimum is not None else 1
    return row | overrides


def test_request_strings_never_become_sql_text():
    """The SQL /score_events runs is the same text whatever the request holds: values travel
    as Arrow data, never inside a statement."""
    from serving.events import OnlineFeatures

    features = OnlineFeatures()
    recorder = RecordingConnection(features._con)
    features._con = recorder
    results, statements = [], []
    try:
        for strings in (["c1", "e1", "s1", "p1", "t1"], *[[i] * 5 for i in INJECTIONS]):
            customer_id, event_id, session_id, payment_id, ticket_id = strings
            recorder.sql.clear()
            results.append(
                features.compute(
                    _row(CUSTOMERS, {"customer_id": customer_id, "age": 33}),
                    [_row(EVENTS, {"event_id": event_id, "session_id": session_id})],
                    [_row(PAYMENTS, {"payment_id": payment_id, "amount": 20.0})],
                    [_row(TICKETS, {"ticket_id": ticket_id})],
                    date(2025, 3, 1),
                )
            )
            statements.append(list(recorder.sql))
    finally:
        features.close()
    assert all(s == statements[0] for s in statements)
    assert not [s for s in statements[0] for i in INJECTIONS if i in s]
    assert all(r == results[0] for r in results)  # ids are data: features do not change


def test_sql_built_in_the_serving_package_interpolates_only_constants():
    """Every f-string statement in serving/ names tables or columns from module constants."""
    allowed = {"name", "columns", "_SQL", "c"}
    for path in sorted((REPO_ROOT / "serving").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _call_name(node).endswith((".execute", ".sql"))):
                continue
            if node.args and isinstance(node.args[0], ast.JoinedStr):
                names = {
                    n.id
                    for value in node.args[0].values
                    if isinstance(value, ast.FormattedValue)
                    for n in ast.walk(value.value)
                    if isinstance(n, ast.Name)
                }
                assert names <= allowed, (path.name, ast.unparse(node))


UNPICKLERS = (
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "cloudpickle.load",
    "cloudpickle.loads",
    "dill.load",
    "dill.loads",
    "joblib.load",
    "read_pickle",
    "torch.load",
    "shelve.open",
    "marshal.load",
    "marshal.loads",
    "np.load",
    "numpy.load",
)


def _refuses_pickles(call: ast.Call) -> bool:
    """``np.load(..., allow_pickle=False)`` reads plain arrays and refuses object arrays."""
    return _call_name(call).endswith(("np.load", "numpy.load")) and any(
        k.arg == "allow_pickle" and isinstance(k.value, ast.Constant) and k.value.value is False
        for k in call.keywords
    )


def test_only_the_registry_unpickles_and_only_at_startup():
    found = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and _call_name(node).endswith(UNPICKLERS)
                and not _refuses_pickles(node)
            ):
                found.append((str(path.relative_to(REPO_ROOT)), _call_name(node)))
    assert found == [("churn/registry/store.py", "pickle.load")]
    # The service unpickles its models in __init__ (serving.startup.checked_model, which names
    # a damaged file), from the store paths resolved at startup; no API method reaches a
    # loader. At import it only walks the pickle's opcodes (pickletools.genops, no execution).
    loaders = {"registry.from_path", "registry.load_model", "checked_model"}
    tree = ast.parse((REPO_ROOT / "serving" / "service.py").read_text())
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        calls = {_call_name(n) for n in ast.walk(function) if isinstance(n, ast.Call)}
        if function.name == "__init__":
            assert calls & loaders == {"checked_model"}
        else:
            assert not calls & loaders, function.name
    startup = ast.parse((REPO_ROOT / "serving" / "startup.py").read_text())
    callers = {
        function.name
        for function in ast.walk(startup)
        if isinstance(function, ast.FunctionDef)
        and any(
            isinstance(n, ast.Call) and _call_name(n) == "registry.from_path"
            for n in ast.walk(function)
        )
    }
    assert callers == {"checked_model"}
