"""Our bytecode cache where PYTHONDONTWRITEBYTECODE is set (tunnelops/bytecode.py)."""

from __future__ import annotations

import importlib.util
import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunnelops import bytecode

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(bytecode.CachingLoader, "root", tmp_path / "cache")
    source = tmp_path / "src" / "mod.py"
    source.parent.mkdir()
    source.write_text("VALUE = 'from source'\n")

    def load(src: Path = source) -> dict:
        code = bytecode.CachingLoader("mod", str(src)).get_code("mod")
        ns: dict = {}
        exec(code, ns)
        return ns

    return source, load


def test_the_cache_is_written_and_then_read(loader) -> None:
    source, load = loader
    assert load()["VALUE"] == "from source"
    cached = bytecode.CachingLoader("mod", str(source))._cached(str(source))
    assert cached.exists() and cached.read_bytes()[:16] == bytecode._header(os.stat(source))
    # the same header over other code: a second load takes the cache, not the source
    other = compile("VALUE = 'from the cache'\n", str(source), "exec")
    cached.write_bytes(cached.read_bytes()[:16] + marshal.dumps(other))
    assert load()["VALUE"] == "from the cache"


def test_an_edited_source_is_compiled_again(loader) -> None:
    source, load = loader
    load()
    source.write_text("VALUE = 'edited, longer than before'\n")
    assert load()["VALUE"] == "edited, longer than before"


def test_an_unwritable_cache_compiles_as_before(loader, monkeypatch: pytest.MonkeyPatch) -> None:
    _, load = loader
    monkeypatch.setattr(bytecode.CachingLoader, "root", Path("/proc/no-such-dir"))
    assert load()["VALUE"] == "from source"


def test_the_package_uses_it_under_pythondontwritebytecode(tmp_path: Path) -> None:
    """A subpackage (tunnelops.model) and a module in it are loaded, and cached, by ours."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "XDG_CACHE_HOME": str(tmp_path)}
    names = ("tunnelops.model", "tunnelops.model.site")
    res = subprocess.run([sys.executable, "-c", "import importlib\n"
                          f"for name in {names!r}:\n"
                          "    print(type(importlib.import_module(name).__loader__).__name__)"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["CachingLoader"] * len(names)
    for name in names:
        source = Path(importlib.import_module(name).__file__ or "")
        cached = (tmp_path / "tunnelops" / "pyc" / source.parent.relative_to("/")
                  / f"{source.stem}.{sys.implementation.cache_tag}.pyc")
        # ours, unless Python's own beside the source is valid (then that one is read)
        beside = Path(importlib.util.cache_from_source(str(source)))
        valid = beside.exists() and beside.read_bytes()[:16] == bytecode._header(os.stat(source))
        assert cached.exists() != valid, name
