"""Load a stage's data: one `DataSpec` -> a `datasets.Dataset`; several with weights -> a mixture.

A source is one of
  task: NAME     a synthetic task (r1lab.tasks), `n` rows of `split` at `difficulty`, from `seed`
  path: P        a local .jsonl/.json/.parquet file, a `save_to_disk` dir, or a dir of .jsonl/.parquet files
  stage: NAME    an earlier stage's data artifact, OUTPUT_DIR/NAME/data/*.jsonl (or `file:` one of them)
Nothing here downloads: only local files and generated tasks.
"""
from __future__ import annotations

import random
from pathlib import Path

from r1lab.errors import DataError
from r1lab.io import read_jsonl
from r1lab.params import is_hub_id


def load_hub(name: str, split: str):
    """A Hub dataset by id (`datasets.load_dataset`): from the local cache, or downloaded where a network is."""
    import datasets

    try:
        return datasets.load_dataset(name, split=split)
    except Exception as e:  # noqa: BLE001  (offline, unknown id, no such split: one line)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{name}: not a local file, and the Hub dataset could not be loaded (offline? no such id or "
                        f"split {split!r}?): {first[:200]}") from None


def load_path(path: str | Path, split: str | None = None):
    import datasets

    p = Path(path)
    if p.is_dir():
        if (p / "dataset_dict.json").exists():
            dd = datasets.load_from_disk(str(p))
            return dd[split or "train"]
        if (p / "dataset_info.json").exists() or (p / "state.json").exists():
            return datasets.load_from_disk(str(p))
        files = sorted(list(p.glob("*.jsonl")) + list(p.glob("*.parquet")))
        if not files:
            raise FileNotFoundError(f"{p}: no .jsonl/.parquet files and not a datasets dir")
        parts = [load_path(f) for f in files]
        return _concat_rows([r for d in parts for r in d.to_list()])
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json"):
        try:
            if suffix == ".json" and p.read_text(encoding="utf-8")[:1].strip() == "[":
                import json

                return datasets.Dataset.from_list(json.loads(p.read_text(encoding="utf-8")))
            return datasets.Dataset.from_list(read_jsonl(p, strict=True))
        except (UnicodeDecodeError, ValueError) as e:
            raise DataError(str(e) if str(p) in str(e) else f"{p}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return datasets.Dataset(pq.read_table(str(p)))
    raise ValueError(f"{p}: unsupported data file (expected .jsonl, .json, .parquet or a datasets dir)")


def _as_spec(spec):
    from r1lab.params import DataSpec

    if isinstance(spec, DataSpec):
        return spec
    return DataSpec.model_validate(spec)


def load_spec(spec, output_dir: str | Path = ".", seed: int = 0, base_dir: str | Path | None = None):
    """One source -> Dataset (rows capped at `n`; columns renamed by `columns`)."""
    import datasets

    spec = _as_spec(spec)
    if spec.task:
        from r1lab.tasks import task_rows
        from r1lab.tasks.base import shorten

        rows = task_rows(spec.task, n=spec.n or 1000, split=spec.split, seed=spec.seed if spec.seed is not None else seed,
                         difficulty=spec.difficulty)
        ds = datasets.Dataset.from_list(shorten(rows, spec.short_fraction) if spec.short_fraction else rows)
    elif spec.path:
        p = Path(spec.path)
        if not p.is_absolute() and base_dir is not None and not p.exists():
            p = Path(base_dir) / p
        try:
            ds = load_hub(spec.path, spec.split) if not p.exists() and is_hub_id(spec.path) else load_path(p, split=spec.split)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001  (parquet / datasets dirs / json: name the file, in one line)
            msg = str(e).splitlines()[0] if str(e) else ""
            raise DataError(f"{p}: cannot read it as data ({type(e).__name__}: {msg[:200]})") from None
    else:
        d = Path(output_dir) / spec.stage / "data"
        if spec.file:
            ds = load_path(d / spec.file)
        else:
            files = sorted(d.glob("*.jsonl"))
            if not files:
                raise DataError(f"stage {spec.stage!r} wrote no data/*.jsonl under {d}")
            try:
                ds = _concat_rows([r for f in files for r in read_jsonl(f, strict=True)])
            except ValueError as e:
                raise DataError(str(e)) from None
    if spec.columns:
        ds = ds.rename_columns({k: v for k, v in spec.columns.items() if k in ds.column_names})
    if spec.n is not None and not spec.task and len(ds) > spec.n:
        ds = ds.select(range(spec.n))
    if len(ds) == 0:
        raise DataError(f"data source {spec.describe()} has no rows")
    return ds


def mix(parts: list, weights: list[float], size: int | None = None, seed: int = 0):
    """Mix datasets so source i supplies round(size·w_i/Σw) rows (sampled without replacement while it can,
    then repeated), shuffled together. size defaults to the sum of the parts' lengths. Columns are unioned
    (a row lacking one gets None), so reasoning rows (answer) and code rows (tests) can share a mixture."""
    size = sum(len(p) for p in parts) if size is None else size
    total_w = sum(weights)
    counts = [int(round(size * w / total_w)) for w in weights]
    rng = random.Random(seed)
    rows = []
    for part, k, w in zip(parts, counts, weights):
        idx = list(range(len(part)))
        rng.shuffle(idx)
        take = (idx * (k // len(idx) + 1))[:k]
        records = part.select(take).to_list() if take else []
        rows.extend(records)
    rng.shuffle(rows)
    return _concat_rows(rows)


def load_mixture(specs, output_dir=".", seed: int = 0, size: int | None = None, base_dir=None):
    specs = [_as_spec(s) for s in specs]
    parts = [load_spec(s, output_dir=output_dir, seed=seed, base_dir=base_dir) for s in specs]
    if len(parts) == 1 and size is None:
        return parts[0]
    return mix(parts, [s.weight for s in specs], size=size, seed=seed)


def _concat_rows(rows: list[dict]):
    import datasets

    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    return datasets.Dataset.from_list([{k: r.get(k) for k in keys} for r in rows])
