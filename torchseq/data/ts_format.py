"""A parser for the ``.ts`` text format of the UCR/UEA time-series archives (as shipped by sktime).

A file is a header of ``@tag value`` lines (lines starting ``#`` or ``%`` are comments), then ``@data``
and one case a line::

    @problemName Toy
    @univariate false
    @dimensions 2
    @equalLength false
    @classLabel true up down
    @data
    1.0,2.0,3.0:0.5,?,0.1:up        ← 2 dimensions of 3 steps (':' between them, ',' between values)
    4.0,5.0:0.2,0.3:down            ← variable length: this case has 2 steps

The class label (or the regression target, with ``@targetLabel true``) comes last. ``?`` is a missing
value; we keep it as NaN and leave the policy to the caller. Tags are case-insensitive (some files write
``@problemname``); unknown tags are ignored. Files with ``@timeStamps true`` are refused: their
``(time,value)`` syntax is not supported here.

Every problem raises :class:`TsFormatError` naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from torchseq.data.tables import DataFileError, read_text


class TsFormatError(DataFileError):
    """A ``.ts`` file breaks the format; the message names the file and line."""


@dataclass(frozen=True)
class TsData:
    """The cases of one ``.ts`` file.

    ``series``: one float64 array (T_i, C) a case, NaN where the file has ``?``. ``targets``: int64 indices
    into ``class_names`` (declared order) for classification, float64 values for regression (then
    ``class_names`` is empty).
    """

    problem_name: str
    series: list[np.ndarray]
    targets: np.ndarray
    class_names: tuple[str, ...]

    @property
    def dimensions(self) -> int:
        return self.series[0].shape[1]

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(case) for case in self.series], dtype=np.int64)

    @property
    def is_regression(self) -> bool:
        return not self.class_names


def read_ts(path: str | Path) -> TsData:
    path = Path(path)
    return parse_ts(read_text(path), source=str(path))


def parse_ts(text: str, source: str = "<string>") -> TsData:
    """Parse the text of a ``.ts`` file; ``source`` names it in error messages."""
    lines = text.splitlines()
    header, data_start = _read_header(lines, source)
    return _read_cases(lines, data_start, header, source)


@dataclass
class _Header:
    problem_name: str = ""
    dimensions: int | None = None
    equal_length: bool = False
    series_length: int | None = None
    class_names: tuple[str, ...] = ()
    regression: bool = False


def _read_header(lines: list[str], source: str) -> tuple[_Header, int]:
    """The header and the index of the first line after ``@data``."""
    header = _Header()
    univariate = None
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line or line[0] in "#%":  # both comment markers occur in the archive's files
            continue
        where = f"{source}, line {index + 1}"
        if not line.startswith("@"):
            raise TsFormatError(f"{where}: expected a @tag or a comment before @data, got {line[:40]!r}")
        tag, _, value = line[1:].partition(" ")
        tag, value = tag.lower(), value.strip()
        if tag == "data":
            if univariate and header.dimensions not in (None, 1):
                raise TsFormatError(f"{where}: @univariate true contradicts @dimensions {header.dimensions}")
            if univariate:
                header.dimensions = 1
            return header, index + 1
        if tag == "problemname":
            header.problem_name = value
        elif tag == "timestamps" and _flag(value, where):
            raise TsFormatError(f"{where}: timestamped series (@timeStamps true) are not supported")
        elif tag == "univariate":
            univariate = _flag(value, where)
        elif tag in ("dimensions", "dimension"):
            header.dimensions = _positive_int(value, where)
        elif tag == "equallength":
            header.equal_length = _flag(value, where)
        elif tag == "serieslength":
            header.series_length = _positive_int(value, where)
        elif tag == "classlabel":
            flag, *names = value.split() or [""]
            if _flag(flag, where):
                if not names or len(set(names)) != len(names):
                    raise TsFormatError(
                        f"{where}: expected distinct labels after '@classLabel true', got {names}"
                    )
                header.class_names = tuple(names)
        elif tag == "targetlabel":
            header.regression = _flag(value, where)
    raise TsFormatError(f"{source}: no @data line; the file is truncated or not a .ts file")


def _read_cases(lines: list[str], start: int, header: _Header, source: str) -> TsData:
    labelled = bool(header.class_names) or header.regression
    if not labelled:
        raise TsFormatError(
            f"{source}: no labels declared (expected '@classLabel true <labels>' or '@targetLabel true')"
        )
    label_index = {name: index for index, name in enumerate(header.class_names)}
    dimensions = header.dimensions
    series: list[np.ndarray] = []
    targets: list[float] = []
    for index in range(start, len(lines)):
        line = lines[index].strip()
        if not line:
            continue
        where = f"{source}, line {index + 1}"
        *channels, label = line.split(":")
        dimensions = dimensions or len(channels)  # undeclared: the first case decides
        if len(channels) != dimensions:
            raise TsFormatError(
                f"{where}: expected {dimensions} dimension(s) and a label separated by ':', got "
                f"{len(channels) + 1} field(s) (a truncated line?)"
            )
        case = np.stack([_values(channel, where) for channel in channels], axis=1)  # (T, C)
        if header.equal_length and series and len(case) != len(series[0]):
            raise TsFormatError(
                f"{where}: @equalLength true, but this case has {len(case)} steps, the first {len(series[0])}"
            )
        if header.series_length is not None and len(case) != header.series_length:
            raise TsFormatError(
                f"{where}: @seriesLength {header.series_length}, but this case has {len(case)} steps"
            )
        series.append(case)
        targets.append(_target(label.strip(), label_index, header.regression, where))
    if not series:
        raise TsFormatError(f"{source}: no cases after @data")
    dtype = np.float64 if header.regression else np.int64
    return TsData(header.problem_name, series, np.array(targets, dtype=dtype), header.class_names)


def _values(channel: str, where: str) -> np.ndarray:
    """One dimension of one case: comma-separated numbers, '?' for missing (→ NaN)."""
    tokens = [token.strip() for token in channel.split(",")]
    try:
        return np.array([float("nan") if token == "?" else float(token) for token in tokens])
    except ValueError:
        bad = next(token for token in tokens if token != "?" and not _is_number(token))
        raise TsFormatError(f"{where}: expected a number or '?', got {bad!r}") from None


def _target(label: str, label_index: dict[str, int], regression: bool, where: str) -> float:
    if regression:
        if not _is_number(label):
            raise TsFormatError(f"{where}: expected a numeric target after the last ':', got {label!r}")
        return float(label)
    if label not in label_index:
        raise TsFormatError(
            f"{where}: class label {label!r} is not one of those @classLabel declares: "
            f"{', '.join(label_index)}"
        )
    return label_index[label]


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _flag(value: str, where: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise TsFormatError(f"{where}: expected true or false, got {value!r}")
    return value.lower() == "true"


def _positive_int(value: str, where: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise TsFormatError(f"{where}: expected a positive integer, got {value!r}")
    return int(value)
