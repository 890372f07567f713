"""Instruction counts with valgrind's callgrind, and where budgetguard's instructions go.

- ``instructions(argv)``: run a command under callgrind and return the instructions it
  executed (``Ir``). Benchmarks run a workload at two batch sizes and take the difference, so
  interpreter start-up and imports cancel out.
- ``profile_package()``: give every function of budgetguard (and the hooks it installs on
  the openai SDK) a C trampoline of its own, compiled on the fly, so callgrind, which only
  sees C functions, attributes each Python function's inclusive cost to a named symbol.
  ``toggle_collect()`` (a callgrind client request) brackets the measured calls, and
  ``breakdown()`` reads the inclusive cost per function back with ``callgrind_annotate``.

- ``cache_events(argv, last_level_bytes)``: run a command under cachegrind, which simulates
  the caches, and return its instructions and cache misses.

Needs ``valgrind`` (Debian: ``apt-get install -y valgrind``); the breakdown also needs a C
compiler and valgrind's headers (``/usr/include/valgrind/callgrind.h``, in the same package).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["available", "breakdown", "cache_events", "instructions", "profile_package", "toggle_collect"]

_CALLGRIND_H = Path("/usr/include/valgrind/callgrind.h")
_SYMBOL = "bgfn_"


def available() -> bool:
    return shutil.which("valgrind") is not None


def can_profile() -> bool:
    return available() and _CALLGRIND_H.is_file() and shutil.which("cc") is not None


def valgrind_argv(out_file: Path, *, collect_at_start: bool = True) -> list[str]:
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"]
    if not collect_at_start:
        argv.append("--collect-atstart=no")
    return argv


def instructions(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Instructions executed by ``argv`` (its own stdout is discarded)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [*valgrind_argv(out), *argv],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return total_of(out)


def cache_events(
    argv: Sequence[str], last_level_bytes: int, env: dict[str, str] | None = None
) -> dict[str, int]:
    """Instructions and simulated cache misses of ``argv``, by valgrind's cachegrind.

    Keys are cachegrind's events: ``Ir`` (instructions), ``I1mr`` (first-level instruction
    misses), ``D1mr``/``D1mw`` (first-level data misses), ``ILmr``/``DLmr``/``DLmw`` (misses of
    the last level, simulated here with ``last_level_bytes``: pass the L2 size to count what
    leaves a core's private caches). Deterministic: other processes do not change them.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cachegrind.out"
        subprocess.run(
            [
                "valgrind", "--tool=cachegrind", "--cache-sim=yes",
                f"--LL={last_level_bytes},16,64", f"--cachegrind-out-file={out}", *argv,
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        events: list[str] = []
        for line in out.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("summary:"):
                return dict(zip(events, map(int, line.split()[1:]), strict=True))
    raise RuntimeError(f"no summary in cachegrind's output for {argv}")


def total_of(out_file: Path) -> int:
    """The ``Ir`` total of a callgrind output file."""
    for line in out_file.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out_file}")


# --- attribution to Python functions --------------------------------------------------------

_ext: Any = None
_names: dict[int, str] = {}


def toggle_collect() -> None:
    """Start or stop callgrind's collection (no-op outside valgrind, or before profiling)."""
    if _ext is not None:
        _ext.toggle_collect()


def client_requests() -> Any:
    """The extension alone (no trampolines): ``zero_stats()``, ``dump_stats(label)``, ``toggle_collect()``."""
    global _ext
    if _ext is None:
        _ext = _build(0)
    return _ext


def _c_source(count: int) -> str:
    """A module with a callable type whose objects call a function through a C function of
    their own (``bgfn_NNNN``, chosen by index), binding as methods as functions do."""
    head = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <valgrind/callgrind.h>

typedef struct { PyObject_HEAD PyObject *fn; vectorcallfunc vectorcall; PyObject *dict; } Tramp;
static unsigned long long *calls;
static Py_ssize_t ncalls;
#define TRAMP(i) static PyObject *bgfn_##i(PyObject *self, PyObject *const *args, size_t n, PyObject *kw) { \
    calls[i]++; PyObject *r = PyObject_Vectorcall(((Tramp *)self)->fn, args, n, kw); \
    __asm__ volatile("" ::: "memory"); return r; }
"""
    tramps = "\n".join(f"TRAMP({i})" for i in range(count))
    table = ", ".join(f"bgfn_{i}" for i in range(count)) or "NULL"
    tail = r"""
static vectorcallfunc table[] = {%(table)s};

static void tramp_dealloc(Tramp *self) {
    Py_XDECREF(self->fn); Py_XDECREF(self->dict); Py_TYPE(self)->tp_free(self);
}
static PyObject *tramp_call(PyObject *self, PyObject *args, PyObject *kwargs) {
    return PyVectorcall_Call(self, args, kwargs);
}
static PyObject *tramp_get(PyObject *self, PyObject *obj, PyObject *type) {
    if (obj == NULL || obj == Py_None) { Py_INCREF(self); return self; }
    return PyMethod_New(self, obj);
}
static PyObject *tramp_getattro(PyObject *self, PyObject *name) {
    PyObject *r = PyObject_GenericGetAttr(self, name);
    if (r == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        r = PyObject_GetAttr(((Tramp *)self)->fn, name);
    }
    return r;
}
static PyTypeObject TrampType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_bg_trampolines.Tramp",
    .tp_basicsize = sizeof(Tramp),
    .tp_dealloc = (destructor)tramp_dealloc,
    .tp_vectorcall_offset = offsetof(Tramp, vectorcall),
    .tp_call = tramp_call,
    .tp_getattro = tramp_getattro,
    .tp_descr_get = tramp_get,
    .tp_dictoffset = offsetof(Tramp, dict),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
};

static PyObject *wrap(PyObject *mod, PyObject *args) {
    PyObject *fn; Py_ssize_t i;
    if (!PyArg_ParseTuple(args, "On", &fn, &i)) return NULL;
    if (i < 0 || i >= ncalls) { PyErr_SetString(PyExc_IndexError, "no such trampoline"); return NULL; }
    Tramp *t = PyObject_New(Tramp, &TrampType);
    if (t == NULL) return NULL;
    Py_INCREF(fn); t->fn = fn; t->vectorcall = table[i]; t->dict = NULL;
    return (PyObject *)t;
}
static PyObject *counts(PyObject *mod, PyObject *unused) {
    PyObject *out = PyList_New(ncalls);
    for (Py_ssize_t i = 0; i < ncalls; i++) PyList_SET_ITEM(out, i, PyLong_FromUnsignedLongLong(calls[i]));
    return out;
}
static PyObject *reset(PyObject *mod, PyObject *unused) {
    for (Py_ssize_t i = 0; i < ncalls; i++) calls[i] = 0;
    Py_RETURN_NONE;
}
static PyObject *toggle(PyObject *mod, PyObject *unused) { CALLGRIND_TOGGLE_COLLECT; Py_RETURN_NONE; }
static PyObject *zero(PyObject *mod, PyObject *unused) { CALLGRIND_ZERO_STATS; Py_RETURN_NONE; }
static PyObject *dump(PyObject *mod, PyObject *args) {
    const char *label;
    if (!PyArg_ParseTuple(args, "s", &label)) return NULL;
    CALLGRIND_DUMP_STATS_AT(label);
    Py_RETURN_NONE;
}
static PyMethodDef methods[] = {
    {"wrap", wrap, METH_VARARGS, NULL},
    {"counts", counts, METH_NOARGS, NULL},
    {"reset_counts", reset, METH_NOARGS, NULL},
    {"toggle_collect", toggle, METH_NOARGS, NULL},
    {"zero_stats", zero, METH_NOARGS, NULL},
    {"dump_stats", dump, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_bg_trampolines", NULL, -1, methods};
PyMODINIT_FUNC PyInit__bg_trampolines(void) {
    ncalls = %(count)d;
    calls = PyMem_Calloc(ncalls ? ncalls : 1, sizeof(unsigned long long));
    if (PyType_Ready(&TrampType) < 0) return NULL;
    return PyModule_Create(&mod);
}
"""
    return head + tramps + tail % {"table": table, "count": count}


def _build(count: int) -> Any:
    tag = f"{os.getuid()}_{count}_v3_{sys.version_info[0]}{sys.version_info[1]}"
    build = Path(tempfile.gettempdir()) / f"bg_trampolines_{tag}"
    so = build / f"_bg_trampolines{sysconfig.get_config_var('EXT_SUFFIX')}"
    if not so.exists():
        build.mkdir(parents=True, exist_ok=True)
        src = build / "_bg_trampolines.c"
        src.write_text(_c_source(count), encoding="utf-8")
        subprocess.run(
            [
                "cc", "-shared", "-fPIC", "-O0", "-g", "-fno-optimize-sibling-calls",
                f"-I{sysconfig.get_paths()['include']}", str(src), "-o", str(so),
            ],
            check=True,
        )  # fmt: skip
    spec = importlib.util.spec_from_file_location("_bg_trampolines", so)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _plain(fn: object) -> bool:
    return (
        inspect.isfunction(fn)
        and not inspect.isgeneratorfunction(fn)
        and not inspect.iscoroutinefunction(fn)
        and not inspect.isasyncgenfunction(fn)
    )


def profile_package(package: str = "budgetguard", hooks: Sequence[tuple[type, str, str]] = ()) -> None:
    """Route every plain function and method of ``package`` through a trampoline of its own.

    ``hooks``: ``(owner, attribute, label)`` of functions the package installed elsewhere
    (its hooks on the openai SDK), routed too. Call after the package's modules are imported
    and before the workload runs; references taken earlier (closures) keep the unwrapped
    function, whose cost then counts in its caller's.
    """
    global _ext
    root = importlib.import_module(package)
    modules: list[ModuleType] = [root]
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if info.name.endswith(".__main__"):
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError:
            continue
    targets: list[tuple[str, Callable[..., Any]]] = []
    seen: set[int] = set()

    def add(label: str, fn: Callable[..., Any]) -> None:
        if id(fn) not in seen:
            seen.add(id(fn))
            targets.append((label, fn))

    classes: list[type] = []
    for module in modules:
        for value in list(vars(module).values()):
            if _plain(value) and value.__module__ == module.__name__:
                add(f"{module.__name__}.{value.__qualname__}", value)
            elif inspect.isclass(value) and value.__module__ == module.__name__:
                classes.append(value)
    for cls in classes:
        for value in list(vars(cls).values()):
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            elif isinstance(value, property):
                value = value.fget
            if _plain(value) and value.__module__.startswith(package):
                add(f"{value.__module__}.{value.__qualname__}", value)
    for owner, attr, label in hooks:
        fn = owner.__dict__[attr]
        if _plain(fn):
            add(label, fn)

    _ext = _build(len(targets))
    wrapped: dict[int, Callable[..., Any]] = {}
    for index, (label, fn) in enumerate(targets):
        _names[index] = label
        wrapped[id(fn)] = _ext.wrap(fn, index)
    for module in modules:
        for name, value in list(vars(module).items()):
            if _plain(value) and id(value) in wrapped:
                setattr(module, name, wrapped[id(value)])
    for cls in classes:
        for attr, value in list(vars(cls).items()):
            if isinstance(value, staticmethod) and id(value.__func__) in wrapped:
                setattr(cls, attr, staticmethod(wrapped[id(value.__func__)]))
            elif isinstance(value, classmethod) and id(value.__func__) in wrapped:
                setattr(cls, attr, classmethod(wrapped[id(value.__func__)]))
            elif isinstance(value, property) and id(value.fget) in wrapped:
                setattr(cls, attr, property(wrapped[id(value.fget)], value.fset, value.fdel, value.__doc__))
            elif _plain(value) and id(value) in wrapped:
                setattr(cls, attr, wrapped[id(value)])
    for owner, attr, _ in hooks:
        fn = owner.__dict__[attr]
        if id(fn) in wrapped:
            setattr(owner, attr, wrapped[id(fn)])


def call_counts() -> dict[str, int]:
    """How many times each wrapped function was called (while profiling)."""
    return {_names[i]: n for i, n in enumerate(_ext.counts()) if n} if _ext is not None else {}


def reset_call_counts() -> None:
    if _ext is not None:
        _ext.reset_counts()


def names() -> dict[int, str]:
    return dict(_names)


_LINE = re.compile(r"^\s*([\d,]+)\s.*?\b" + _SYMBOL + r"(\d+)\b")


def breakdown(out_file: Path, labels: dict[int, str]) -> tuple[int, list[tuple[str, int]]]:
    """Total ``Ir`` of a profiled run and the inclusive ``Ir`` of each trampolined function."""
    report = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out_file)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows: dict[str, int] = {}
    for line in report.splitlines():
        match = _LINE.match(line)
        if match:
            label = labels[int(match.group(2))]
            rows[label] = rows.get(label, 0) + int(match.group(1).replace(",", ""))
    return total_of(out_file), sorted(rows.items(), key=lambda row: -row[1])
