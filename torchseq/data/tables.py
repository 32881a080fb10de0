"""A small, strict reader for the numeric CSV tables our data ships in (optionally gzip-compressed).

numpy's fast parser reads well-formed files; when it refuses one we re-read it line by line to say
exactly which line is wrong and why, so a corrupt or truncated download fails with a useful message.
"""

from __future__ import annotations

import gzip
import io
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class DataFileError(ValueError):
    """A data file is corrupt, truncated or not in the expected format; the message names file and line."""


def read_text(path: Path) -> str:
    """The file's text, decompressing ``.gz`` files; a truncated or corrupt archive raises DataFileError."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return handle.read()
        return path.read_text(encoding="utf-8")
    except (EOFError, OSError, zlib.error, UnicodeDecodeError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise DataFileError(f"{path}: cannot read the file, it is truncated or corrupt ({error})") from error


def read_numeric_csv(
    path: Path, columns: int, header: Sequence[str] | None = None, integers: bool = False
) -> np.ndarray:
    """A (rows, columns) array from a comma-separated file of numbers: float64, or int64 if ``integers``.

    ``header``: the expected column names of a first header line, or None when the file has none.
    ``integers``: every value must be an integer (numpy also parses these five times faster).
    """
    text = read_text(path)
    dtype = np.int64 if integers else np.float64
    first_data_line = 1
    if header is not None:
        found, _, text = text.partition("\n")
        if [name.strip() for name in found.split(",")] != list(header):
            raise DataFileError(f"{path}, line 1: expected the header {','.join(header)!r}, got {found!r}")
        first_data_line = 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=dtype, ndmin=2)
    except ValueError:
        _raise_first_bad_line(path, text, columns, first_data_line, integers)
        raise  # only reached if the slow check finds nothing numpy refused: keep numpy's message
    if table.shape[0] == 0:
        raise DataFileError(f"{path}: the file has no data rows")
    if table.shape[1] != columns:
        raise DataFileError(f"{path}: expected {columns} comma-separated values a line, got {table.shape[1]}")
    return table


def _raise_first_bad_line(path: Path, text: str, columns: int, first_line: int, integers: bool) -> None:
    parse, kind = (int, "an integer") if integers else (float, "a number")
    for number, line in enumerate(text.splitlines(), start=first_line):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != columns:
            raise DataFileError(
                f"{path}, line {number}: expected {columns} comma-separated values, got {len(fields)} "
                "(a truncated or corrupt file?)"
            )
        for column, field in enumerate(fields, start=1):
            try:
                parse(field)
            except ValueError:
                raise DataFileError(
                    f"{path}, line {number}, column {column}: expected {kind}, got {field!r}"
                ) from None
