"""From a kernel's Python source to IR: walk the AST and drive a :class:`~tilevm.ir.Builder`.

Values flowing through the walk are of three kinds:

- compile-time values (ints, floats, dtypes, layouts, tuples, modules): ordinary
  Python objects; operations on them run now, and ``if``/``while`` on them fold;
- runtime scalars (:class:`~tilevm.ir.expr.Expr`): parameters, loop variables,
  ``block_idx``; arithmetic builds expressions, control flow on them becomes
  IR ``If``/``For``/``While``;
- tensors (global, shared, register): operators on tiles emit instructions.

A name assigned inside runtime control flow must keep meaning the same
storage on every path, as on a GPU: a scalar becomes a declared variable
(given its value before the loop or branch), a tile is written in place with
``Assign``; a name first bound inside such a region is not visible after it.
Writing in place keeps Python's meaning of assignment: other names for the
same storage (``b = a``, a helper's argument, a parameter) get their own copy
first, and ``a, b = b, a`` reads the whole right-hand side before writing.
"""

from __future__ import annotations

import ast
import builtins as py
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import dtypes
from ..errors import TileVMError
from ..ir import expr as E
from ..ir.builder import Builder
from ..ir.inst import SourceLoc
from ..ir.tensor import GlobalTensor, RegisterTensor, SharedTensor
from . import builtins as L
from .errors import KernelCompileError

BIN_OPS = {
    ast.Add: "add",
    ast.Sub: "sub",
    ast.Mult: "mul",
    ast.FloorDiv: "floordiv",
    ast.Mod: "mod",
    ast.Div: "truediv",
    ast.BitAnd: "and",
    ast.BitOr: "or",
    ast.BitXor: "xor",
    ast.LShift: "shl",
    ast.RShift: "shr",
}
PY_BIN = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "floordiv": lambda a, b: a // b,
    "mod": lambda a, b: a % b,
    "truediv": lambda a, b: a / b,
    "and": lambda a, b: a & b,
    "or": lambda a, b: a | b,
    "xor": lambda a, b: a ^ b,
    "shl": lambda a, b: a << b,
    "shr": lambda a, b: a >> b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
}
CMP_OPS = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq", ast.NotEq: "ne"}
# Identity and membership are decided while compiling (a runtime value is never None).
PY_CMP = {
    ast.Is: lambda a, b: a is b,
    ast.IsNot: lambda a, b: a is not b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
RUNTIME = (E.Expr, RegisterTensor, SharedTensor, GlobalTensor)


class KernelFunction:
    """A ``@tilevm.func`` helper: inlined into the kernels that call it."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self.source = Source.of(fn)

    def __call__(self, *args, **kwargs):
        raise TileVMError(
            f"{self.__name__} is a @tilevm.func: call it from inside a @tilevm.kernel"
        )


@dataclass
class Source:
    """A function's parsed source with the offsets that map AST positions to file positions."""

    tree: ast.FunctionDef
    file: str
    first_line: int
    indent: int
    globals: dict[str, Any]
    closure: dict[str, Any]
    name: str

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> Source:
        try:
            lines, first = inspect.getsourcelines(fn)
        except (OSError, TypeError) as err:
            raise TileVMError(f"cannot read the source of {fn.__name__}: {err}") from None
        text = "".join(lines)
        dedented = textwrap.dedent(text)
        indent = len(lines[0]) - len(lines[0].lstrip()) if dedented != text else 0
        tree = ast.parse(dedented).body[0]
        assert isinstance(tree, ast.FunctionDef)
        closure = {}
        if fn.__closure__:
            closure = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__)))
        return cls(
            tree,
            inspect.getsourcefile(fn) or "<unknown>",
            first,
            indent,
            fn.__globals__,
            closure,
            fn.__name__,
        )

    def loc(self, node: ast.AST) -> SourceLoc:
        line = self.first_line + getattr(node, "lineno", 1) - 1
        col = self.indent + getattr(node, "col_offset", 0)
        end = getattr(node, "end_col_offset", None)
        same_line = getattr(node, "end_lineno", None) == getattr(node, "lineno", None)
        return SourceLoc(
            self.file, line, col, self.indent + end if end and same_line else None, self.name
        )


@dataclass
class Binding:
    value: Any
    depth: int  # runtime control-flow depth where the name was bound


class Hidden:
    """A name first bound inside runtime control flow, read after it."""

    def __init__(self, name: str, loc: SourceLoc):
        self.name, self.loc = name, loc


class _Return(Exception):
    def __init__(self, value: Any, node: ast.Return):
        self.value, self.node = value, node


class _StaticBreak(Exception):
    pass


class Transpiler:
    """Walks one kernel (and the helpers it calls) into ``builder``."""

    def __init__(self, builder: Builder, source: Source, env: dict[str, Any]):
        self.b = builder
        self.ctx = L.Context(builder)
        self.source = source
        self.scopes: list[dict[str, Binding]] = [{k: Binding(v, 0) for k, v in env.items()}]
        self.depth = 0
        self.base_depth = 0
        # Enclosing loops, innermost last: (unrolled while compiling?, depth where it started).
        self.loops: list[tuple[bool, int]] = []
        # The storage each name owns: scalar variables it declared, tiles it first named.
        self.owned: dict[str, E.Var | RegisterTensor] = {}

    # -- errors --------------------------------------------------------------------------------
    def fail(self, node: ast.AST, message: str) -> KernelCompileError:
        return KernelCompileError(message, self.source.loc(node))

    def run_body(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.stmt(stmt)

    def stmt(self, node: ast.stmt) -> None:
        self.b.loc = self.source.loc(node)
        method = getattr(self, f"stmt_{type(node).__name__}", None)
        if method is None:
            raise self.fail(node, f"unsupported statement '{type(node).__name__}' in a kernel")
        try:
            method(node)
        except (KernelCompileError, _Return, _StaticBreak):
            raise
        except TileVMError as err:
            raise self.fail(node, str(err)) from None

    # -- names ---------------------------------------------------------------------------------
    @property
    def scope(self) -> dict[str, Binding]:
        return self.scopes[-1]

    def lookup(self, node: ast.Name) -> Any:
        if node.id in self.scope:
            value = self.scope[node.id].value
            if isinstance(value, Hidden):
                raise self.fail(
                    node,
                    f"'{node.id}' is first assigned inside a loop or branch that runs on the GPU "
                    f"(line {value.loc.line}); assign it before that so it exists on every path",
                )
            return value
        for table in (self.source.closure, self.source.globals):
            if node.id in table:
                return table[node.id]
        if hasattr(py, node.id):
            return getattr(py, node.id)
        raise self.fail(node, f"name '{node.id}' is not defined")

    def bind(self, name: str, value: Any, node: ast.AST) -> None:
        old = self.scope.get(name)
        if old is not None and not isinstance(old.value, Hidden) and old.depth < self.depth:
            # Rebinding something that lives outside the current runtime region: same storage.
            if isinstance(old.value, RegisterTensor) and isinstance(value, RegisterTensor):
                self.unalias(name, old.value)
                self.b.assign(old.value, value)
                return
            if isinstance(old.value, E.Var) and isinstance(value, (E.Expr, int, float, bool)):
                value = E.as_expr(value, like=old.value)
                if value.dtype != old.value.dtype:
                    raise self.fail(
                        node,
                        f"'{name}' is {old.value.dtype} before this loop or "
                        f"branch; here it gets a {value.dtype} value",
                    )
                self.unalias(name, old.value)
                self.b.assign_scalar(old.value, value)
                return
            if old.value is value:
                return
            raise self.fail(
                node,
                f"'{name}' was bound outside this loop or branch that runs on the GPU and cannot "
                "change its kind or compile-time value inside it",
            )
        if isinstance(value, E.Expr) and not isinstance(value, E.Var):
            value = self.declare(name, value)
        elif isinstance(value, (RegisterTensor, SharedTensor, GlobalTensor)) and not value.name:
            value.name = name
        if isinstance(value, RegisterTensor) and not self.aliases(name, value):
            self.owned[name] = value
        self.scope[name] = Binding(value, self.depth)

    def declare(self, name: str, value: Any) -> E.Var:
        var = self.b.declare(name, value)
        self.owned[name] = var
        return var

    def promote(self, body: list[ast.stmt]) -> None:
        """Before a runtime region: what it reassigns gets storage of its own.

        Numbers become declared variables. A scalar or tile this name does not own (a
        parameter, a loop variable, a helper's argument, ``b = a``) is copied, and other
        names sharing storage this name owns get copies, so that writing it in the region
        changes nothing else, as in Python.
        """
        for name in assigned_names(body):
            binding = self.scope.get(name)
            if binding is None:
                continue
            v = binding.value
            if isinstance(v, (int, float)) or (
                isinstance(v, (E.Expr, RegisterTensor)) and self.owned.get(name) is not v
            ):
                binding.value = self.copy(name, v)
            elif isinstance(v, (E.Var, RegisterTensor)):
                self.unalias(name, v)

    def copy(self, name: str, value: Any) -> E.Var | RegisterTensor:
        """New storage named ``name`` holding ``value`` now, owned by ``name``."""
        storage = self.snapshot(name, value)
        self.owned[name] = storage
        return storage

    def snapshot(self, hint: str, value: Any) -> E.Var | RegisterTensor:
        if isinstance(value, RegisterTensor):
            # A cast to its own type is an exact copy and keeps the layout.
            return self.b.cast(value, value.dtype, name=hint)
        return self.b.declare(hint, value)

    def aliases(self, name: str, value: Any) -> list[str]:
        """The other names bound to the same scalar variable or tile as ``name``."""
        return [n for n, b in self.scope.items() if n != name and b.value is value]

    def unalias(self, name: str, value: E.Var | RegisterTensor) -> None:
        """Before ``name``'s storage is written in place: its aliases keep the current value."""
        for other in self.aliases(name, value):
            self.scope[other].value = self.copy(other, value)

    def enter_region(self) -> None:
        self.depth += 1

    def leave_region(self, node: ast.AST) -> None:
        self.depth -= 1
        for name, binding in list(self.scope.items()):
            if binding.depth > self.depth and not isinstance(binding.value, Hidden):
                self.scope[name] = Binding(Hidden(name, self.source.loc(node)), self.depth)

    # -- statements ----------------------------------------------------------------------------
    def stmt_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # a docstring
        self.expr(node.value)

    def stmt_Pass(self, node: ast.Pass) -> None:
        pass

    def stmt_Assign(self, node: ast.Assign) -> None:
        value = self.expr(node.value)
        for target in node.targets:
            self.assign_target(target, value)

    def unpack(self, target: ast.expr, value: Any) -> list[tuple[ast.Name, Any]]:
        """The (name, value) pairs of an assignment to ``target``, left to right."""
        if isinstance(target, ast.Name):
            return [(target, value)]
        if isinstance(target, (ast.Tuple, ast.List)):
            if not isinstance(value, (tuple, list)) or len(value) != len(target.elts):
                raise self.fail(target, f"cannot unpack {value!r} into {len(target.elts)} names")
            return [pair for t, v in zip(target.elts, value) for pair in self.unpack(t, v)]
        raise self.fail(target, "assign to plain names only (tiles are written with store)")

    def snapshot_in_place(self, pairs: list[tuple[ast.Name, Any]]) -> None:
        """``a, b = b, a`` in a loop: copy values that an earlier name's in-place write changes.

        Names bound outside the current runtime region are written in place, one after
        another; Python evaluates the whole right-hand side first.
        """
        written: list[Any] = []
        for i, (name_node, v) in enumerate(pairs):
            if any(_reads(v, w) for w in written):
                pairs[i] = (name_node, self.snapshot(name_node.id, v))
            old = self.scope.get(name_node.id)
            if (
                old is not None
                and old.depth < self.depth
                and isinstance(old.value, (E.Var, RegisterTensor))
            ):
                written.append(old.value)

    def stmt_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is None:
            raise self.fail(node, "a declaration without a value is not supported")
        self.assign_target(node.target, self.expr(node.value))

    def stmt_AugAssign(self, node: ast.AugAssign) -> None:
        if not isinstance(node.target, ast.Name):
            raise self.fail(node, "augmented assignment needs a plain name")
        current = self.lookup(node.target)
        value = self.binop(node, type(node.op), current, self.expr(node.value))
        self.assign_target(node.target, value)

    def assign_target(self, target: ast.expr, value: Any) -> None:
        pairs = self.unpack(target, value)
        if len(pairs) > 1:
            self.snapshot_in_place(pairs)
        for name_node, v in pairs:
            self.bind(name_node.id, v, name_node)

    def stmt_If(self, node: ast.If) -> None:
        cond = self.expr(node.test)
        if isinstance(cond, RegisterTensor):
            raise self.fail(node.test, "an if needs a scalar condition; got a tile (use where)")
        if not isinstance(cond, E.Expr):
            self.run_body(node.body if cond else node.orelse)
            return
        self.promote(node.body + node.orelse)
        with self.b.if_(cond) as branch:
            self.enter_region()
            self.run_body(node.body)
            self.leave_region(node)
        if node.orelse:
            with self.b.else_(branch):
                self.enter_region()
                self.run_body(node.orelse)
                self.leave_region(node)

    def stmt_For(self, node: ast.For) -> None:
        if node.orelse:
            raise self.fail(node, "for ... else is not supported")
        iterable = self.expr(node.iter)
        if isinstance(iterable, L.LoopRange):
            if not isinstance(node.target, ast.Name):
                raise self.fail(node.target, "a kernel loop variable must be a plain name")
            self.promote(node.body)
            with self.b.for_range(
                iterable.start, iterable.stop, iterable.step, iterable.unroll, name=node.target.id
            ) as var:
                self.enter_region()
                self.scope[node.target.id] = Binding(var, self.depth)
                self.loops.append((False, self.depth))
                self.run_body(node.body)
                self.loops.pop()
                self.leave_region(node)
            return
        if isinstance(iterable, RUNTIME):
            raise self.fail(node.iter, "loop over range(...) or a compile-time sequence")
        self.loops.append((True, self.depth))
        try:
            for item in iterable:
                self.assign_target(node.target, item)
                try:
                    self.run_body(node.body)
                except _StaticBreak:
                    break
        finally:
            self.loops.pop()

    def stmt_While(self, node: ast.While) -> None:
        if node.orelse:
            raise self.fail(node, "while ... else is not supported")
        self.promote(node.body)
        cond = self.expr(node.test)
        if isinstance(cond, RegisterTensor):
            raise self.fail(node.test, "a while needs a scalar condition; got a tile")
        with self.b.while_(E.as_expr(cond)):
            self.enter_region()
            self.loops.append((False, self.depth))
            self.run_body(node.body)
            self.loops.pop()
            self.leave_region(node)

    def stmt_Break(self, node: ast.Break) -> None:
        if not self.loops:
            raise self.fail(node, "break outside a loop")
        unrolled, depth = self.loops[-1]
        if not unrolled:
            self.b.break_()
            return
        if self.depth > depth:
            raise self.fail(
                node,
                "break out of a loop unrolled while compiling (static_range or a compile-time "
                "sequence) cannot depend on a runtime condition",
            )
        raise _StaticBreak

    def stmt_Continue(self, node: ast.Continue) -> None:
        raise self.fail(node, "continue is not supported in kernels; use if")

    def stmt_Return(self, node: ast.Return) -> None:
        if self.depth > self.base_depth:
            raise self.fail(node, "return inside a loop or branch that runs on the GPU")
        raise _Return(None if node.value is None else self.expr(node.value), node)

    def stmt_Assert(self, node: ast.Assert) -> None:
        cond = self.expr(node.test)
        if isinstance(cond, RUNTIME):
            raise self.fail(node, "assert needs a compile-time condition")
        if not cond:
            msg = self.expr(node.msg) if node.msg is not None else "assertion failed"
            raise self.fail(node, str(msg))

    # -- expressions ---------------------------------------------------------------------------
    def expr(self, node: ast.expr) -> Any:
        method = getattr(self, f"expr_{type(node).__name__}", None)
        if method is None:
            raise self.fail(node, f"unsupported syntax '{type(node).__name__}' in a kernel")
        try:
            return method(node)
        except (KernelCompileError, _Return, _StaticBreak):
            raise
        except TileVMError as err:
            raise self.fail(node, str(err)) from None

    def expr_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def expr_Name(self, node: ast.Name) -> Any:
        return self.lookup(node)

    def expr_Tuple(self, node: ast.Tuple) -> tuple:
        return tuple(self.expr(e) for e in node.elts)

    def expr_List(self, node: ast.List) -> list:
        return [self.expr(e) for e in node.elts]

    def expr_Attribute(self, node: ast.Attribute) -> Any:
        obj = self.expr(node.value)
        if node.attr.startswith("_"):
            raise self.fail(node, f"private attribute '{node.attr}' is not available in kernels")
        try:
            return getattr(obj, node.attr)
        except AttributeError:
            raise self.fail(node, f"{_kind(obj)} has no attribute '{node.attr}'") from None

    def expr_Subscript(self, node: ast.Subscript) -> Any:
        obj = self.expr(node.value)
        index = self.expr(node.slice)
        if isinstance(obj, RUNTIME) or isinstance(index, RUNTIME):
            raise self.fail(node, "tiles are not indexed with []: use load/store offsets")
        return obj[index]

    def expr_Slice(self, node: ast.Slice) -> slice:
        parts = [None if p is None else self.expr(p) for p in (node.lower, node.upper, node.step)]
        return slice(*parts)

    def expr_BinOp(self, node: ast.BinOp) -> Any:
        return self.binop(node, type(node.op), self.expr(node.left), self.expr(node.right))

    def binop(self, node: ast.AST, op_type: type, a: Any, b: Any) -> Any:
        if op_type is ast.MatMult:
            if isinstance(a, RegisterTensor) and isinstance(b, RegisterTensor):
                return self.b.dot(a, b)
            raise self.fail(node, "@ multiplies two tiles")
        if op_type is ast.Pow:
            if isinstance(a, RUNTIME) or isinstance(b, RUNTIME):
                raise self.fail(node, "** is only for compile-time values")
            return a**b
        op = BIN_OPS.get(op_type)
        if op is None:
            raise self.fail(node, f"unsupported operator {op_type.__name__}")
        return self.apply(node, op, a, b)

    def apply(self, node: ast.AST, op: str, a: Any, b: Any) -> Any:
        for v in (a, b):
            if isinstance(v, (SharedTensor, GlobalTensor)):
                raise self.fail(node, f"{_kind(v)} cannot take part in arithmetic; load it first")
        if isinstance(a, RegisterTensor) or isinstance(b, RegisterTensor):
            return self.b.binary(op, a, b)
        if isinstance(a, E.Expr) or isinstance(b, E.Expr):
            return E.as_expr(a, like=b if isinstance(b, E.Expr) else None)._bin(op, b)
        try:
            return PY_BIN[op](a, b)
        except Exception as err:  # a compile-time computation failed: show it at the line
            raise self.fail(node, f"{type(err).__name__}: {err}") from None

    def expr_UnaryOp(self, node: ast.UnaryOp) -> Any:
        x = self.expr(node.operand)
        op = {ast.USub: "neg", ast.Invert: "invert", ast.Not: "lnot", ast.UAdd: None}[type(node.op)]
        if op is None:
            return x
        if isinstance(x, RegisterTensor):
            return self.b.unary(op, x)
        if isinstance(x, E.Expr):
            return (
                E.logical_not(x)
                if op == "lnot"
                else {"neg": lambda: -x, "invert": lambda: ~x}[op]()
            )
        return {"neg": lambda: -x, "invert": lambda: ~x, "lnot": lambda: not x}[op]()

    def expr_BoolOp(self, node: ast.BoolOp) -> Any:
        op = "land" if isinstance(node.op, ast.And) else "lor"
        result = self.expr(node.values[0])
        for value_node in node.values[1:]:
            if not isinstance(result, RUNTIME):  # compile-time short circuit
                if (op == "land") != bool(result):
                    return result
                result = self.expr(value_node)
                continue
            other = self.expr(value_node)
            if isinstance(result, RegisterTensor) or isinstance(other, RegisterTensor):
                result = self.b.binary(op, result, other)
            else:
                result = E.as_expr(result)._bin(op, other)
        return result

    def expr_Compare(self, node: ast.Compare) -> Any:
        values, left = [], self.expr(node.left)
        for op_node, right_node in zip(node.ops, node.comparators):
            right = self.expr(right_node)
            if type(op_node) in PY_CMP:
                if isinstance(op_node, (ast.In, ast.NotIn)) and (
                    isinstance(left, RUNTIME) or isinstance(right, RUNTIME)
                ):
                    raise self.fail(node, "'in' tests compile-time values; compare with ==")
                try:
                    values.append(PY_CMP[type(op_node)](left, right))
                except Exception as err:
                    raise self.fail(node, f"{type(err).__name__}: {err}") from None
            else:
                values.append(self.apply(node, CMP_OPS[type(op_node)], left, right))
            left = right
        result = values[0]
        for value in values[1:]:  # a < b < c means a < b and b < c
            if isinstance(result, RUNTIME) or isinstance(value, RUNTIME):
                result = self.apply(node, "land", result, value)
            else:
                result = result and value
        return result

    def expr_IfExp(self, node: ast.IfExp) -> Any:
        cond = self.expr(node.test)
        if not isinstance(cond, RUNTIME):
            return self.expr(node.body if cond else node.orelse)
        a, b = self.expr(node.body), self.expr(node.orelse)
        return L.where.invoke(self.ctx, cond, a, b)

    def expr_JoinedStr(self, node: ast.JoinedStr) -> str:
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
                continue
            v = self.expr(value.value)
            if isinstance(v, RUNTIME):
                raise self.fail(
                    value,
                    "f-strings take compile-time values; pass runtime values to print as arguments",
                )
            parts.append(format(v, self.expr(value.format_spec) if value.format_spec else ""))
        return "".join(parts)

    def expr_Call(self, node: ast.Call) -> Any:
        fn = self.expr(node.func)
        args = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                args.extend(self.expr(a.value))
            else:
                args.append(self.expr(a))
        kwargs = {}
        for k in node.keywords:
            if k.arg is None:
                raise self.fail(k, "**kwargs is not supported in kernels")
            kwargs[k.arg] = self.expr(k.value)
        return self.call(node, fn, args, kwargs)

    def call(self, node: ast.AST, fn: Any, args: list, kwargs: dict) -> Any:
        if isinstance(fn, L.Builtin):
            return fn.invoke(self.ctx, *args, **kwargs)
        if isinstance(fn, KernelFunction):
            return self.inline(node, fn, args, kwargs)
        if getattr(fn, "__tilevm_kernel__", False):
            raise self.fail(node, "a kernel cannot call another kernel; make it a @tilevm.func")
        runtime = [v for v in (*args, *kwargs.values()) if isinstance(v, RUNTIME)]
        if fn is py.range:
            return L.range.invoke(self.ctx, *args, **kwargs)
        if fn is py.print:
            return L.print.invoke(self.ctx, *args)
        if fn in (py.min, py.max, py.abs) and runtime:
            if fn is py.abs:
                return L.abs.invoke(self.ctx, *args, **kwargs)
            if len(args) < 2 or kwargs:
                raise self.fail(
                    node,
                    f"{fn.__name__}() takes two or more values in a kernel; reduce a tile with "
                    f"tilevm.lang.{fn.__name__}",
                )
            pick = L.minimum if fn is py.min else L.maximum
            result = args[0]
            for other in args[1:]:
                result = pick.invoke(self.ctx, result, other)
            return result
        if fn in (py.int, py.float, py.bool) and runtime:
            if len(args) != 1 or kwargs:
                raise self.fail(node, f"{fn.__name__}() of a runtime value takes one argument")
            return self.convert(node, fn, args[0])
        if runtime:
            name = getattr(fn, "__name__", repr(fn))
            raise self.fail(node, f"{name}() runs while compiling and cannot take runtime values")
        try:
            return fn(*args, **kwargs)
        except TileVMError:
            raise
        except Exception as err:
            raise self.fail(node, f"{type(err).__name__}: {err}") from None

    def convert(self, node: ast.AST, fn: type, x: Any) -> Any:
        """``int(x)``, ``float(x)``, ``bool(x)`` of a runtime scalar or tile, as in Python."""
        if isinstance(x, (SharedTensor, GlobalTensor)):
            raise self.fail(node, f"{_kind(x)} cannot be converted; load it first")
        if fn is py.bool:  # non-zero, not a saturating cast (bool(-1) and bool(0.5) are True)
            return self.apply(node, "ne", x, 0)
        if fn is py.float:
            return L.cast.invoke(self.ctx, x, dtypes.float32)
        if x.dtype.is_float:  # int() truncates toward zero; a cast would round to nearest
            floor = self.apply(node, "floordiv", x, 1.0)
            ceil = _negate(self.b, self.apply(node, "floordiv", _negate(self.b, x), 1.0))
            x = L.where.invoke(self.ctx, self.apply(node, "lt", x, 0), ceil, floor)
        return L.cast.invoke(self.ctx, x, dtypes.int32)

    def inline(self, node: ast.AST, fn: KernelFunction, args: list, kwargs: dict) -> Any:
        try:
            bound = inspect.signature(fn.fn).bind(*args, **kwargs)
        except TypeError as err:
            raise self.fail(node, f"{fn.__name__}(): {err}") from None
        bound.apply_defaults()
        inner = Transpiler(self.b, fn.source, dict(bound.arguments))
        inner.depth = inner.base_depth = self.depth
        for binding in inner.scope.values():
            binding.depth = self.depth
        try:
            inner.run_body(fn.source.tree.body)
        except _Return as ret:
            return ret.value
        except KernelCompileError as err:
            raise err.called_from(self.source.loc(node)) from None
        finally:
            self.b.loc = self.source.loc(node)
        return None


def assigned_names(body: list[ast.stmt]) -> list[str]:
    """Names ``body`` assigns, in a fixed order so that the printed IR is the same every run."""
    names: dict[str, None] = {}
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names[node.id] = None
    return list(names)


def _reads(value: Any, storage: Any) -> bool:
    """Whether ``value`` is ``storage`` or a scalar expression that reads it."""
    if value is storage:
        return True
    if isinstance(value, E.Unary):
        return _reads(value.x, storage)
    if isinstance(value, E.Binary):
        return _reads(value.lhs, storage) or _reads(value.rhs, storage)
    if isinstance(value, E.Select):
        return any(_reads(v, storage) for v in (value.cond, value.a, value.b))
    return False


def _negate(b: Builder, x: Any) -> Any:
    return b.unary("neg", x) if isinstance(x, RegisterTensor) else -x


def _kind(value: Any) -> str:
    if isinstance(value, RegisterTensor):
        return f"register tile {value.dtype}{list(value.shape)}"
    if isinstance(value, SharedTensor):
        return f"shared tensor {value.dtype}{list(value.shape)}"
    if isinstance(value, GlobalTensor):
        return f"global tensor {value.dtype}"
    if isinstance(value, E.Expr):
        return f"runtime {value.dtype} value"
    return type(value).__name__
