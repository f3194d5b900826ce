"""The import graph (grimp, from import-linter): no cycle between modules, and the layers'
rules that keep the code easy to change (docs/development.md, "Layout")."""

from __future__ import annotations

import grimp
import pytest


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("playground")


def test_no_module_is_part_of_an_import_cycle(graph):
    cycles = {tuple(sorted((module, other)))
              for module in graph.modules for other in graph.find_modules_directly_imported_by(module)
              if graph.chain_exists(importer=other, imported=module)}
    assert not cycles


def test_core_imports_no_other_playground_package(graph):
    outside = {imported for module in graph.find_descendants("playground.core")
               for imported in graph.find_modules_directly_imported_by(module)
               if imported.startswith("playground.") and not imported.startswith("playground.core")}
    assert not outside


def test_the_benchmarks_are_found_by_name_never_imported(graph):
    if "playground.bench" not in graph.modules:
        pytest.skip("no playground.bench package")
    bench = {"playground.bench", *graph.find_descendants("playground.bench")}
    importers = {importer for module in bench for importer in graph.find_modules_that_directly_import(module)}
    assert importers <= bench


def test_commands_write_through_the_console_not_the_cli(graph):
    assert not graph.find_modules_that_directly_import("playground.cli")
    assert "playground.console" in graph.find_modules_directly_imported_by("playground.commands.replay")
