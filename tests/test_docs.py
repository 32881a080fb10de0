"""The documentation site builds strictly, the README stays a README, and no file points outside the repo."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS_TOOLS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def missing_docs_tools() -> list[str]:
    return [name for name in DOCS_TOOLS if importlib.util.find_spec(name.split(".")[0]) is None
            or importlib.util.find_spec(name) is None]


@pytest.mark.skipif(bool(missing_docs_tools()),
                    reason=f"the docs extra is not installed (missing {missing_docs_tools()}): "
                           "pip install -e '.[docs]'")
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    # --strict turns every warning into a failure: a broken link, a page missing from the nav, a nav
    # entry without its page, or an API reference to a name that no longer exists.
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("index.html", "bptt/index.html", "api/cells/index.html", "api/kernels/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    # The API pages are generated from the docstrings, not left empty.
    assert "class_coverage" in (tmp_path / "site" / "api" / "metrics" / "index.html").read_text()


def test_the_readme_is_a_readme() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the manual belongs in docs/"


# Written in two halves so that this file does not match itself.
OUTSIDE_PATHS = ("/work" + "/", "../" + "shared", "FORMULAS" + ".md", "/tmp" + "/team")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".js", ""}


def project_files() -> list[Path]:
    roots = [ROOT / name for name in ("torchseq", "tests", "docs", "experiments", "benchmarks", ".ci")]
    files = [ROOT / name for name in ("README.md", "Makefile", "pyproject.toml", "mkdocs.yml")]
    for root in roots:
        files += [path for path in root.rglob("*") if path.is_file() and path.suffix in TEXT_SUFFIXES
                  and "__pycache__" not in path.parts and "results" not in path.parts]
    return [path for path in files if path.is_file()]


def test_no_file_names_a_path_outside_the_repository() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}"
        for path in project_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
        if any(pattern in line for pattern in OUTSIDE_PATHS)
    ]
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)
