"""playground.bench: every benchmark in one package that nothing else imports, on one harness."""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import playground
from playground.bench.__main__ import BENCHMARKS
from playground.bench.harness import abba, argument_parser, markdown_table, report

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(playground.__file__).parent
NOT_BENCHMARKS = {"harness", "commands", "corpus", "__main__"}


def imported_modules(source: str, package: str) -> set[str]:
    """The absolute names of the modules `source`, a module of `package`, imports."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def test_no_module_outside_the_bench_package_imports_it():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if (PACKAGE / "bench") in path.parents:
            continue
        package = ".".join(path.relative_to(PACKAGE.parent).parts[:-1])  # what `from . import` names
        names = imported_modules(path.read_text(encoding="utf-8"), package)
        offenders += [f"{path.relative_to(ROOT)} imports {name}" for name in sorted(names)
                      if name == "playground.bench" or name.startswith("playground.bench.")]
    assert offenders == []


def test_the_import_check_sees_absolute_and_relative_imports():
    source = "import playground.bench.pipeline\nfrom ..bench import harness\nfrom . import other\n"
    assert imported_modules(source, "playground.commands") == {
        "playground.bench.pipeline", "playground.bench", "playground.bench.harness", "playground.commands",
        "playground.commands.other"}
    assert "playground.bench" in imported_modules("from .. import bench\n", "playground.ui")


def loaded_after(code: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules starting with one of `prefixes` that a fresh interpreter has loaded after `code`."""
    code += f"\nimport sys\nprint(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    return ast.literal_eval(result.stdout.strip())


def test_finding_the_providers_loads_neither_the_engine_nor_a_loopback_server():
    """Provider discovery imports every module of playground.llm and playground.tts; a benchmark among
    them (tts/bench_ws.py was one) made every session load the engine, the servers and aiohttp."""
    code = ("import importlib, pkgutil, playground.llm, playground.tts\n"
            "for package in (playground.llm, playground.tts):\n"
            "    for module in pkgutil.iter_modules(package.__path__):\n"
            "        importlib.import_module(f'{package.__name__}.{module.name}')")
    assert loaded_after(code, ("playground.engine", "playground.servers", "playground.bench", "aiohttp")) == []


def test_the_cli_finds_the_bench_command_without_loading_a_model_or_the_ui():
    code = "from playground.cli import build_parser; build_parser().parse_args(['bench', '--script', 'x'])"
    heavy = ("llama_cpp", "piper", "faster_whisper", "onnxruntime", "ctranslate2", "textual")
    assert loaded_after(code, heavy) == []
    loaded = loaded_after(code, ("playground.bench",))
    assert "playground.bench.commands.bench" in loaded
    assert not [m for m in loaded if m.startswith("playground.bench.") and m.count(".") == 2
                and m not in ("playground.bench.commands", "playground.bench.harness")]  # no benchmark module


def test_make_bench_runs_every_benchmark_and_each_can_write_json():
    modules = {m.name for m in pkgutil.iter_modules([str(PACKAGE / "bench")])} - NOT_BENCHMARKS
    assert set(BENCHMARKS) == modules
    assert "python -m playground.bench " in (ROOT / "Makefile").read_text()
    for name in sorted(modules):
        help_text = io.StringIO()
        with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit) as exit_:
            importlib.import_module(f"playground.bench.{name}").main(["--help"])
        assert exit_.value.code == 0
        assert f"python -m playground.bench.{name}" in help_text.getvalue() and "--json PATH" in help_text.getvalue()


def test_abba_alternates_the_order_round_by_round():
    assert [abba(i, ["A", "B"]) for i in range(4)] == [["A", "B"], ["B", "A"], ["A", "B"], ["B", "A"]]
    assert abba(1, ("headless", "tui", "x")) == ["x", "tui", "headless"]


def test_the_report_is_markdown_and_the_json_holds_the_numbers(tmp_path, capsys):
    args = argument_parser("example", None).parse_args(["--json", str(tmp_path / "out" / "example.json")])
    lines = ["## Example", "", *markdown_table(["name", "p50 ms"], [["a", "1.5"], ["b", 2]])]
    report("example", args, lines, {"p50_ms": {"a": 1.5, "b": 2}, "missing": None})
    assert capsys.readouterr().out.splitlines() == [
        "## Example", "", "| name | p50 ms |", "| --- | ---: |", "| a | 1.5 |", "| b | 2 |"]
    document = json.loads((tmp_path / "out" / "example.json").read_text())
    assert document["benchmark"] == "example" and document["playground"] == playground.__version__
    assert document["results"] == {"p50_ms": {"a": 1.5, "b": 2}, "missing": None}
    assert document["arguments"] == {} and document["machine"]["cpus"] >= 1


def test_a_benchmark_runs_from_its_shipped_data_and_writes_json(tmp_path):
    """The export benchmark reads the recorded session inside the package, from any folder."""
    out = tmp_path / "export.json"
    result = subprocess.run([sys.executable, "-m", "playground.bench.export", "--turns", "10", "--runs", "1",
                             "--json", str(out)], check=False, capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("## Export: a 10-turn session") and "(from session.jsonl)" in lines[0]
    assert lines[2:4] == ["| format | median s | min s | max s | size |", "| --- | ---: | ---: | ---: | ---: |"]
    results = json.loads(out.read_text())["results"]
    assert results["turns"] == 10 and results["over_target"] == []
    assert set(results["formats"]) == {"jsonl", "chrome", "otel", "csv", "markdown", "all"}
    assert all(f["median_s"] > 0 for f in results["formats"].values())


def test_the_long_export_benchmark_measures_each_export_in_a_process_of_its_own(tmp_path):
    out = tmp_path / "export_long.json"
    result = subprocess.run([sys.executable, "-m", "playground.bench.export_long", "--turns", "20", "--json", str(out)],
                            check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("## Export of a long trace: 20 turns,") and "(from session.jsonl)" in lines[0]
    assert lines[2:4] == ["| export | wall s | peak RSS MB |", "| --- | ---: | ---: |"]
    runs = json.loads(out.read_text())["results"]["runs"]
    assert list(runs) == ["startup (`playground --help`)", "jsonl", "chrome", "otel", "csv", "markdown", "all five"]
    assert all(r["exit"] == 0 and r["wall_s"] > 0 and r["peak_rss_mb"] > 10 for r in runs.values())
