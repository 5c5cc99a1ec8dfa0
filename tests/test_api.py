"""The public API is documented and typed.

Every public module (``changedet/*.py`` not starting with ``_``) has ``__all__``, every
name in it exists, and every public function and public method of the classes in it has
a numpydoc docstring with ``Parameters`` (when it takes any besides self/cls) and
``Returns`` (or ``Yields``) when it returns something, and annotations on every
parameter and on the return; the Parameters section names exactly the signature's
parameters (``before, after : ...`` counts for both).  Dunder methods, properties, dataclass-generated and
inherited methods are skipped, except a hand-written ``__init__``: its parameters are
the class's, so they are annotated and documented too.  One assertion lists every
offender.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import changedet

PACKAGE = Path(changedet.__file__).parent
PUBLIC_MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_"))

# Modules whose docstrings and annotations are being written right now, each by its
# owner; the checker skips them.  A module leaves this set once it is clean: the goal
# is an empty set.
PENDING: set[str] = set()


def _has_section(doc: str, *names: str) -> bool:
    """A numpydoc section header: the name on its own line, underlined with dashes."""
    pattern = r"^\s*(?:" + "|".join(names) + r")\s*\n\s*-{3,}\s*$"
    return re.search(pattern, doc, flags=re.MULTILINE) is not None


def _documented_parameters(doc: str) -> set[str] | None:
    """The names the Parameters section lists (``before, after : ...`` gives two), or None."""
    section = re.search(r"^Parameters[ \t]*\n-{3,}[ \t]*\n(.*?)(?=^[^\n]+\n-{3,}[ \t]*$|\Z)", doc,
                        flags=re.MULTILINE | re.DOTALL)
    if section is None:
        return None
    names: set[str] = set()
    for line in section.group(1).splitlines():
        if line and not line[0].isspace():  # a "name : type" line, not its indented description
            names.update(n.strip().lstrip("*") for n in line.split(":")[0].split(","))
    return names


def _is_ours(func: Callable[..., Any]) -> bool:
    """Written in a source file (dataclass-generated code comes from ``<string>``)."""
    code = getattr(func, "__code__", None)
    return code is not None and not code.co_filename.startswith("<")


def _methods(cls: type) -> Iterator[tuple[str, Callable[..., Any], bool]]:
    """(name, function, takes self/cls) for the public methods the class itself defines."""
    generated = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    for name, attr in vars(cls).items():
        if name.startswith("_") or name in generated or isinstance(attr, property):
            continue
        if isinstance(attr, staticmethod):
            func, bound = attr.__func__, False
        elif isinstance(attr, classmethod):
            func, bound = attr.__func__, True
        elif inspect.isfunction(attr):
            func, bound = attr, True
        else:
            continue
        if _is_ours(func):
            yield name, func, bound


def check_callable(func: Callable[..., Any], *, bound: bool = False) -> list[str]:
    """What ``func``'s docstring and annotations lack; empty when it is complete.

    ``bound`` is true for methods whose first parameter is self or cls.
    """
    problems: list[str] = []
    doc = inspect.getdoc(func)
    if not doc:
        return ["no docstring"]
    sig = inspect.signature(func)
    params = list(sig.parameters.values())[1 if bound else 0:]
    if params and not _has_section(doc, "Parameters"):
        problems.append("no Parameters section")
    listed = _documented_parameters(doc)
    if listed is not None:
        missing = [p.name for p in params if p.name not in listed]
        stale = sorted(listed - {p.name for p in params})
        if missing:
            problems.append(f"Parameters lacks: {', '.join(missing)}")
        if stale:
            problems.append(f"Parameters lists what the signature lacks: {', '.join(stale)}")
    unannotated = [p.name for p in params if p.annotation is inspect.Parameter.empty]
    if unannotated:
        problems.append(f"unannotated: {', '.join(unannotated)}")
    ret = sig.return_annotation
    if ret is inspect.Signature.empty:
        problems.append("no return annotation")
    elif ret not in (None, "None") and not _has_section(doc, "Returns", "Yields"):
        problems.append("no Returns section")
    return problems


def check_constructor(cls: type) -> list[str]:
    """A hand-written ``__init__``: parameters annotated and documented (numpydoc puts them
    in the class docstring; the ``__init__`` docstring is accepted too)."""
    init = vars(cls).get("__init__")
    if not inspect.isfunction(init) or not _is_ours(init):
        return []
    params = list(inspect.signature(init).parameters.values())[1:]
    docs = (inspect.getdoc(cls) or "") + "\n" + (init.__doc__ and inspect.cleandoc(init.__doc__) or "")
    problems = []
    if params and not _has_section(docs, "Parameters"):
        problems.append("no Parameters section")
    unannotated = [p.name for p in params if p.annotation is inspect.Parameter.empty]
    if unannotated:
        problems.append(f"unannotated: {', '.join(unannotated)}")
    return problems


def check_module(module_name: str) -> list[str]:
    """Every offender in one public module, as ``module.name: problem; problem``."""
    module = importlib.import_module(f"changedet.{module_name}")
    names = getattr(module, "__all__", None)
    if names is None:
        return [f"{module_name}: no __all__"]
    found: list[str] = []
    for name in names:
        if not hasattr(module, name):
            found.append(f"{module_name}.{name}: in __all__ but not defined")
            continue
        obj = getattr(module, name)
        if inspect.isfunction(obj):
            problems = check_callable(obj)
            if problems:
                found.append(f"{module_name}.{name}: {'; '.join(problems)}")
        elif inspect.isclass(obj):
            if not inspect.getdoc(obj):
                found.append(f"{module_name}.{name}: no docstring")
            problems = check_constructor(obj)
            if problems:
                found.append(f"{module_name}.{name}.__init__: {'; '.join(problems)}")
            for meth_name, func, bound in _methods(obj):
                problems = check_callable(func, bound=bound)
                if problems:
                    found.append(f"{module_name}.{name}.{meth_name}: {'; '.join(problems)}")
    return found


def test_pending_names_real_modules() -> None:
    assert PENDING <= set(PUBLIC_MODULES), PENDING - set(PUBLIC_MODULES)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_module_has_all_and_every_name_exists(module_name: str) -> None:
    module = importlib.import_module(f"changedet.{module_name}")
    assert hasattr(module, "__all__"), f"changedet.{module_name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"changedet.{module_name}.__all__ names undefined {missing}"


def test_public_api_is_documented_and_typed() -> None:
    offenders = [o for m in PUBLIC_MODULES if m not in PENDING for o in check_module(m)]
    assert not offenders, f"{len(offenders)} offenders:\n" + "\n".join(offenders)


# --- the checker can fail -------------------------------------------------------------


def _no_parameters(before: int, *, scale: float = 1.0) -> int:
    """Scale a number.

    Returns
    -------
    int
        The scaled number.
    """
    return int(before * scale)


def _half_annotated(before, *, scale: float = 1.0):  # type: ignore[no-untyped-def]
    """Scale a number.

    Parameters
    ----------
    before : int
        The number.
    scale : float
        The factor.
    """
    return int(before * scale)


def _complete(before: int, *, scale: float = 1.0) -> int:
    """Scale a number.

    Parameters
    ----------
    before : int
        The number.
    scale : float
        The factor.

    Returns
    -------
    int
        The scaled number.
    """
    return int(before * scale)


class _Thing:
    """A thing."""

    def undocumented(self, value: int) -> int:
        """Twice ``value``."""
        return 2 * value

    @property
    def size(self) -> int:
        return 1


class _Built:
    """Built from a value, undocumented."""

    def __init__(self, value, *, scale: float = 1.0):  # type: ignore[no-untyped-def]
        self.value = value * scale


def test_checker_reports_a_missing_parameters_section() -> None:
    assert check_callable(_no_parameters) == ["no Parameters section"]


def _stale(before: int, *, factor: float = 1.0) -> int:
    """Scale a number.

    Parameters
    ----------
    before : int
        The number.
    scale : float
        The factor (renamed since).

    Returns
    -------
    int
    """
    return int(before * factor)


def test_checker_reports_parameters_the_docstring_misses_or_invents() -> None:
    assert check_callable(_stale) == ["Parameters lacks: factor", "Parameters lists what the signature lacks: scale"]
    assert _documented_parameters(inspect.getdoc(_complete) or "") == {"before", "scale"}


def test_checker_reports_missing_annotations_and_returns() -> None:
    assert check_callable(_half_annotated) == ["unannotated: before", "no return annotation"]
    assert check_callable(_complete) == []


def test_checker_reports_methods_but_not_properties_or_self() -> None:
    methods = {name: (func, bound) for name, func, bound in _methods(_Thing)}
    assert set(methods) == {"undocumented"}
    func, bound = methods["undocumented"]
    assert check_callable(func, bound=bound) == ["no Parameters section", "no Returns section"]


def test_checker_reports_an_undocumented_constructor() -> None:
    assert check_constructor(_Built) == ["no Parameters section", "unannotated: value"]
    assert check_constructor(_Thing) == []


def test_checker_sees_a_module_without_all(monkeypatch: pytest.MonkeyPatch) -> None:
    import changedet.errors as errors

    monkeypatch.delattr(errors, "__all__")
    assert check_module("errors") == ["errors: no __all__"]
