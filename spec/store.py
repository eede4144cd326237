"""Where units' records are kept: a results folder (``--results DIR``), or memory for a run without one.

A results folder holds ``manifest.json`` (the run's kind, its parameters and its units in order) and one
``units/<unit key>.json`` per finished unit, each written to a temporary name and renamed, so that a run killed
at any point leaves only whole records; rerunning the same command skips the units whose record exists.
docs/runs.md has the format.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rnnspec.spec.declared import UsageError
from rnnspec.spec.units import Unit, decode, encode

MANIFEST_SCHEMA = "rnnspec.run/1"


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # a record whose name exists is whole, even after a power cut
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def manifest(kind: str, parameters: dict, units: list[Unit]) -> dict:
    return {"schema": MANIFEST_SCHEMA, "kind": kind, "parameters": parameters, "units": [u.to_json() for u in units]}


class MemoryStore:
    """Records kept as the same JSON text a folder would hold (a plain run's report goes through what a stored
    one does)."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def has(self, unit: Unit) -> bool:
        return unit.key in self.texts

    def put(self, unit: Unit, record: dict) -> None:
        self.texts[unit.key] = encode(record)

    def get(self, unit: Unit) -> dict:
        return decode(self.texts[unit.key])


class FolderStore(MemoryStore):
    """A results folder. ``open`` writes its manifest, or checks that an existing one is of the same run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.units = self.path / "units"

    @classmethod
    def open(cls, path: str | Path, kind: str, parameters: dict, units: list[Unit]) -> FolderStore:
        store = cls(path)
        if store.path.exists() and not store.path.is_dir():
            raise UsageError(f"--results {path}: is a file; give a folder")
        if not store.path.exists() and not store.path.parent.is_dir():
            raise UsageError(f"--results {path}: folder {store.path.parent} does not exist")
        wanted = manifest(kind, parameters, units)
        file = store.path / "manifest.json"
        if file.exists():
            have = json.loads(file.read_text())
            if (have.get("kind"), have.get("parameters")) != (kind, json.loads(json.dumps(parameters))):
                changed = sorted(k for k in set(have.get("parameters", {})) | set(parameters)
                                 if have.get("parameters", {}).get(k) != json.loads(json.dumps(parameters)).get(k))
                raise UsageError(f"--results {path}: holds a {have.get('kind')} run with other parameters "
                                 f"(differing: {', '.join(changed) or 'kind'}); resume it with its own command "
                                 f"or give a new folder")
            if have.get("units") != json.loads(json.dumps(wanted["units"])):
                raise UsageError(f"--results {path}: the same parameters planned other units here (another "
                                 "rnnspec version?); give a new folder")
        else:
            store.path.mkdir(exist_ok=True)
            _atomic_write(file, json.dumps(wanted, indent=1) + "\n")
        store.units.mkdir(exist_ok=True)
        return store

    def _file(self, key: str) -> Path:
        return self.units / f"{key}.json"

    def has(self, unit: Unit) -> bool:
        return self._file(unit.key).exists()

    def put(self, unit: Unit, record: dict) -> None:
        _atomic_write(self._file(unit.key), encode(record))

    def get(self, unit: Unit) -> dict:
        return decode(self._file(unit.key).read_text())


def read_manifest(path: str | Path) -> dict:
    """A results folder's manifest, or a UsageError naming the folder."""
    file = Path(path) / "manifest.json"
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no manifest.json: not a results folder of rnnspec --results") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{file}: not JSON ({exc})") from None
    if data.get("schema") != MANIFEST_SCHEMA:
        raise UsageError(f"{file}: schema {data.get('schema')!r}, expected {MANIFEST_SCHEMA!r}")
    return data


def gather(folders: list[str]) -> tuple[str, dict, list[Unit], dict[str, dict]]:
    """The runs stored in ``folders`` (shards of one run, or runs of one kind): (kind, the first folder's
    parameters, every planned unit once in plan order, the records found by unit key)."""
    kinds, units, records = set(), {}, {}
    parameters: dict = {}
    for folder in folders:
        data = read_manifest(folder)
        kinds.add(data["kind"])
        parameters = parameters or data["parameters"]
        for u in data["units"]:
            unit = Unit.from_json(u)
            units.setdefault(unit.key, unit)
        store = FolderStore(folder)
        for unit in units.values():
            if unit.key not in records and store.has(unit):
                records[unit.key] = store.get(unit)
    if len(kinds) > 1:
        raise UsageError(f"the folders hold runs of different kinds {sorted(kinds)}: merge checks with checks, "
                         "matrices with matrices")
    return kinds.pop(), parameters, list(units.values()), records
