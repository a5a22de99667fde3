"""``llmsight bench ...``: the benchmarks. Each module in ``llmsight.bench`` (but ``report``)
that defines ``main`` with typer options becomes ``llmsight bench <module>`` (a module without one is a
helper of the others); modules import their heavy dependencies inside ``main`` so ``--help`` stays fast."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import llmsight.bench

app = typer.Typer(help="Benchmarks; with --json the last line is the JSON of figures.", no_args_is_help=True)

for _info in sorted(pkgutil.iter_modules(llmsight.bench.__path__), key=lambda m: m.name):
    if _info.name.startswith("_") or _info.name == "report":
        continue
    _module = importlib.import_module(f"llmsight.bench.{_info.name}")
    if not hasattr(_module, "main"):
        continue
    # A module may name its command (COMMAND = "drift-stream"); else the module's name is the command.
    app.command(name=getattr(_module, "COMMAND", _info.name), help=(_module.__doc__ or "").strip().split("\n")[0])(_module.main)
