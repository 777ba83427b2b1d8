"""The schema operations of one MLflow alembic migration file, read with ``ast`` (nothing imported
or run): used by scripts/mlflow_releases.py on every release wheel, and by the tests on the
installed MLflow.

``Migration(source, classes).run().ops`` lists, in order, what ``upgrade()`` does: tables created
(with their columns), dropped, renamed; columns added, dropped, altered; indexes and constraints.
Calls to the file's own functions (also those nested in ``upgrade()``) are followed with constant
arguments bound, loops over literal lists are unrolled, and both branches of every ``if`` are read
(their operations marked ``conditional``). ``data`` says whether it also moves rows.
"""

from __future__ import annotations

import ast

SCHEMA_OPS = {"create_table", "drop_table", "rename_table", "add_column", "drop_column",
              "alter_column", "create_index", "drop_index", "create_foreign_key",
              "create_primary_key", "create_unique_constraint", "create_check_constraint",
              "drop_constraint"}
DATA_CALLS = {"execute", "bulk_insert", "bulk_save_objects", "add_all", "merge", "commit"}


def table_names_of_classes(sources: list[str]) -> dict[str, str]:
    """class name -> __tablename__ for every class in `sources` that sets one to a literal."""
    names: dict[str, str] = {}
    for src in sources:
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                            and getattr(stmt.targets[0], "id", None) == "__tablename__"
                            and isinstance(stmt.value, ast.Constant)):
                        names[node.name] = stmt.value.value
    return names


class Migration(ast.NodeVisitor):
    """The schema operations of one migration file's upgrade(), in order, following calls to
    the file's own functions (with constant arguments bound), loops over literal lists and both
    branches of every `if` (marked conditional)."""

    def __init__(self, source: str, classes: dict[str, str]):
        self.tree = ast.parse(source)
        self.classes = dict(classes)
        self.classes.update(table_names_of_classes([source]))
        self.consts: dict[str, object] = {}
        self.funcs: dict[str, ast.FunctionDef] = {}
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                    and isinstance(node.targets[0], ast.Name):
                value = self.value(node.value, {})
                if value is not None:
                    self.consts[node.targets[0].id] = value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
                value = self.value(node.value, {})
                if value is not None:
                    self.consts[node.target.id] = value
            elif isinstance(node, ast.FunctionDef):
                self.funcs[node.name] = node
        self.ops: list[dict] = []
        self.data = False
        self.unresolved: list[str] = []
        self.partial = False

    # values -------------------------------------------------------------------------------
    def value(self, node, env):
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, type(None))):
            return node.value
        if isinstance(node, ast.Name):
            return env.get(node.id, self.consts.get(node.id))
        if isinstance(node, ast.Attribute) and node.attr == "__tablename__" \
                and isinstance(node.value, ast.Name):
            return self.classes.get(node.value.id)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.value(e, env) for e in node.elts]
            return None if any(i is None for i in items) else items
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                p = self.value(v.value if isinstance(v, ast.FormattedValue) else v, env)
                if p is None:
                    return None
                parts.append(str(p))
            return "".join(parts)
        return None

    def inline(self, node, env):
        """A call to one of the file's functions whose body is `return <expr>`: that expression
        and the arguments bound to its parameters (e.g. `_workspace_column()`)."""
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in self.funcs:
            fdef = self.funcs[node.func.id]
            rets = [s for s in fdef.body if isinstance(s, ast.Return)]
            if len(rets) == 1 and rets[0].value is not None:
                params = [a.arg for a in fdef.args.args]
                bound = {p: self.value(a, env) for p, a in zip(params, node.args)}
                return rets[0].value, {k: v for k, v in bound.items() if v is not None}
        return node, env

    def column_name(self, node, env):
        if isinstance(node, ast.Name) and "@node:" + node.id in env:
            node, env = env["@node:" + node.id]
        node, env = self.inline(node, env)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) \
                == "Column" and node.args:
            return self.value(node.args[0], env)
        return None

    # walking ------------------------------------------------------------------------------
    def run(self) -> "Migration":
        if "upgrade" in self.funcs:
            self.body(self.funcs["upgrade"].body, {}, False, ("upgrade",))
        return self

    def body(self, stmts, env, cond, stack):
        for stmt in stmts:
            self.stmt(stmt, env, cond, stack)

    def stmt(self, stmt, env, cond, stack):
        if isinstance(stmt, ast.If):
            self.expr(stmt.test, env, cond, stack)
            self.body(stmt.body, env, True, stack)
            self.body(stmt.orelse, env, True, stack)
        elif isinstance(stmt, ast.For):
            values = self.value(stmt.iter, env)
            if isinstance(stmt.target, ast.Name) and isinstance(values, list):
                for v in values:
                    self.body(stmt.body, {**env, stmt.target.id: v}, cond, stack)
            else:
                self.body(stmt.body, env, cond, stack)
        elif isinstance(stmt, ast.With):
            inner = dict(env)
            for item in stmt.items:
                call, cenv = self.inline(item.context_expr, env)
                if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "batch_alter_table" \
                        and isinstance(item.optional_vars, ast.Name):
                    table = self.value(call.args[0], cenv) if call.args else None
                    inner["@batch:" + item.optional_vars.id] = table or "?"
                else:
                    self.expr(call, env, cond, stack)
            self.body(stmt.body, inner, cond, stack)
        elif isinstance(stmt, ast.Try):
            for part in (stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody):
                self.body(part, env, True if part is not stmt.body else cond, stack)
        elif isinstance(stmt, (ast.While,)):
            self.body(stmt.body, env, True, stack)
        elif isinstance(stmt, ast.Assign):
            self.expr(stmt.value, env, cond, stack)
            value = self.value(stmt.value, env)
            for t in stmt.targets:
                if isinstance(t, ast.Name):
                    if value is not None:
                        env[t.id] = value
                    else:  # e.g. a Column built first and added in two branches
                        env["@node:" + t.id] = (stmt.value, dict(env))
        elif isinstance(stmt, ast.FunctionDef):  # a helper nested in upgrade(): followed when called
            env["@func:" + stmt.name] = stmt
        elif isinstance(stmt, ast.ClassDef):
            return
        else:
            for child in ast.iter_child_nodes(stmt):
                if isinstance(child, ast.expr):
                    self.expr(child, env, cond, stack)

    def expr(self, node, env, cond, stack):
        for call in [n for n in ast.walk(node) if isinstance(n, ast.Call)]:
            self.call(call, env, cond, stack)

    def call(self, call, env, cond, stack):
        func = call.func
        fdef = None
        if isinstance(func, ast.Name) and func.id not in stack and len(stack) < 8:
            fdef = env.get("@func:" + func.id) or self.funcs.get(func.id)
        if fdef is not None:
            params = [a.arg for a in fdef.args.args]
            bound = {p: self.value(a, env) for p, a in zip(params, call.args)}
            bound.update({k.arg: self.value(k.value, env) for k in call.keywords if k.arg})
            for p, d in zip(params[len(params) - len(fdef.args.defaults):], fdef.args.defaults):
                bound.setdefault(p, self.value(d, env))
            scope = {k: v for k, v in env.items() if k.startswith("@func:")}
            scope.update({k: v for k, v in bound.items() if v is not None})
            self.body(fdef.body, scope, cond, (*stack, func.id))
            return
        if not isinstance(func, ast.Attribute):
            return
        owner = func.value.id if isinstance(func.value, ast.Name) else None
        name = func.attr
        if name in DATA_CALLS and owner != "op" or (owner == "op" and name in ("execute",
                                                                              "bulk_insert")):
            self.data = True
        if name not in SCHEMA_OPS:
            return
        batch = env.get("@batch:" + owner) if owner else None
        if owner != "op" and batch is None:
            return
        args = list(call.args)
        op: dict = {"op": name}
        if batch is not None:
            op["table"] = batch
        elif name == "rename_table":
            op["table"], op["new_name"] = (self.value(a, env) for a in args[:2])
        elif name in ("create_index", "create_foreign_key", "create_unique_constraint",
                      "create_primary_key", "create_check_constraint"):
            kw = {k.arg: k.value for k in call.keywords}
            src = args[1] if len(args) > 1 else kw.get("source_table", kw.get("table_name"))
            op["table"] = self.value(src, env) if src is not None else None
            args = args[:1]
        elif name in ("drop_index", "drop_constraint"):
            kw = {k.arg: k.value for k in call.keywords}
            src = args[1] if len(args) > 1 else kw.get("table_name")
            op["table"] = self.value(src, env) if src is not None else None
            args = args[:1]
        elif args:
            op["table"] = self.value(args.pop(0), env)
        if name == "create_table":
            op["columns"] = [c for c in (self.column_name(a, env) for a in args) if c]
        elif name == "add_column":
            col = self.column_name(args[0], env) if args else None
            op["column"] = col
        elif name in ("drop_column", "alter_column"):
            op["column"] = self.value(args[0], env) if args else None
            if name == "alter_column":
                kw = {k.arg: k.value for k in call.keywords if k.arg}
                if "new_column_name" in kw:
                    op["new_name"] = self.value(kw["new_column_name"], env)
                op["changes"] = sorted(k for k in kw if k in ("type_", "nullable", "server_default",
                                                              "new_column_name", "existing_type"))
        elif name in ("create_index", "drop_index", "drop_constraint", "create_foreign_key",
                      "create_unique_constraint", "create_primary_key", "create_check_constraint"):
            op["name"] = self.value(args[0], env) if args else None
        if cond:
            op["conditional"] = True
        for key in ("table", "column", "new_name"):
            if key in op and op[key] is None and name in ("create_table", "drop_table",
                                                          "rename_table"):
                self.unresolved.append(f"{name} {key}")
            elif key in op and op[key] is None:
                # Built by code outside the file (e.g. 75868b020152's analytics columns come
                # from a helper module): kept as null, and the revision says so.
                self.partial = True
        self.ops.append(op)
