"""The model-zoo tables from the checkpoint cards (checkpoints/*.json): printed, and with --write put after the
`<!-- zoo-table -->` markers, the full table (every measured size) in docs/zoo.md and a compact one (the size where
each checkpoint was asked the most of) in README.md."""

from __future__ import annotations

import json
from pathlib import Path


def _main_rows(card: dict) -> tuple[dict[int, dict], dict[str, list[dict]]]:
    """The accuracy table's rows by size (the longest budget per size) and the other generators' rows."""
    by_size: dict[int, dict] = {}
    others: dict[str, list[dict]] = {}
    for r in card.get("accuracy_table", []):
        if not isinstance(r, dict) or "size" not in r or "iters" not in r:
            continue
        if r.get("generator") not in (None, "dfs"):  # mazes from other generators: listed after the main rows
            others.setdefault(r["generator"], []).append(r)
            continue
        cur = by_size.get(r["size"])
        if cur is None or r["iters"] > cur["iters"]:
            by_size[r["size"]] = r
    return by_size, others


def _cell(size: int, r: dict) -> str:
    s = f"{size}: {100 * r['best_accuracy']:.1f}% @ {r['best_iter']} it"
    if "accuracy_at_3x_best" in r and r["accuracy_at_3x_best"] is not None:
        s += f" (3x: {100 * r['accuracy_at_3x_best']:.1f}%)"
    return s


def fmt_rows(card: dict) -> str:
    by_size, others = _main_rows(card)
    parts = [_cell(size, r) for size, r in sorted(by_size.items())]
    for gen, rows in sorted(others.items()):
        r = max(rows, key=lambda q: (q["size"], q["iters"]))
        parts.append(f"{gen} {r['size']}: {100 * r['best_accuracy']:.1f}% @ {r['best_iter']} it")
    return "; ".join(parts)


def fmt_compact(card: dict) -> str:
    """The training size's row and the largest size's (the extrapolation asked of it)."""
    by_size, _ = _main_rows(card)
    if not by_size:
        return ""
    sizes = sorted(by_size)
    train = max(card.get("train_sizes") or [sizes[0]])
    first = min(sizes, key=lambda s: (abs(s - train), s))
    keep = sorted({first, sizes[-1]})
    return "; ".join(_cell(s, by_size[s]) for s in keep)


def _cards() -> list[tuple[Path, dict]]:
    return [(p, json.loads(p.read_text())) for p in sorted(Path("checkpoints").glob("*.json"))]


def table() -> list[str]:
    lines = ["| checkpoint | trained on | params | train time | file "
             "| best exact-match accuracy by size (iteration; at 3x that iteration) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for p, card in _cards():
        mb = p.with_suffix(".safetensors").stat().st_size / 2**20
        sizes = ",".join(map(str, card.get("train_sizes", [])))
        lines.append(f"| {p.stem} | {sizes} | {card['params']:,} | {card['train_seconds'] / 60:.0f} min | "
                     f"{mb:.1f} MB | {fmt_rows(card)} |")
    return lines


def compact_table() -> list[str]:
    lines = ["| checkpoint | trained on | at the training size; at the largest size measured (iteration; at 3x it) |",
             "| --- | --- | --- |"]
    for p, card in _cards():
        sizes = card.get("train_sizes", [])
        trained = f"{min(sizes)}..{max(sizes)}" if len(sizes) > 2 else ",".join(map(str, sizes))
        lines.append(f"| {p.stem} | {trained} | {fmt_compact(card)} |")
    return lines


def write(path: Path, lines: list[str]) -> None:
    """Replace the lines after the file's zoo-table marker, up to the first blank line, with the table."""
    text = path.read_text().split("\n")
    at = text.index("<!-- zoo-table -->") + 1
    end = at
    while end < len(text) and text[end].strip():
        end += 1
    path.write_text("\n".join(text[:at] + lines + text[end:]))


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python scripts/zoo_table.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true",
                   help="write the full table into docs/zoo.md and the compact one into README.md")
    a = p.parse_args(argv)
    lines = table()
    print("\n".join(lines))
    if a.write:
        write(Path("docs/zoo.md"), lines)
        write(Path("README.md"), compact_table())


if __name__ == "__main__":
    main()
