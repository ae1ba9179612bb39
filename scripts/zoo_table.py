"""The README's model-zoo table from the checkpoint cards (checkpoints/*.json): printed, and with --write put into
README.md after its `<!-- zoo-table -->` marker (replacing the table there)."""

from __future__ import annotations

import json
from pathlib import Path


def fmt_rows(card: dict) -> str:
    parts = []
    by_size: dict[int, dict] = {}
    others: dict[str, list[dict]] = {}
    for r in card.get("accuracy_table", []):
        if r.get("generator") not in (None, "dfs"):  # mazes from other generators: listed after the main rows
            others.setdefault(r["generator"], []).append(r)
            continue
        cur = by_size.get(r["size"])
        if cur is None or r["iters"] > cur["iters"]:
            by_size[r["size"]] = r
    for size, r in sorted(by_size.items()):
        s = f"{size}: {100 * r['best_accuracy']:.1f}% @ {r['best_iter']} it"
        if "accuracy_at_3x_best" in r:
            s += f" (3x: {100 * r['accuracy_at_3x_best']:.1f}%)"
        parts.append(s)
    for gen, rows in sorted(others.items()):
        r = max(rows, key=lambda q: (q["size"], q["iters"]))
        parts.append(f"{gen} {r['size']}: {100 * r['best_accuracy']:.1f}% @ {r['best_iter']} it")
    return "; ".join(parts)


def table() -> list[str]:
    lines = ["| checkpoint | trained on | params | train time | file "
             "| best exact-match accuracy by size (iteration; at 3x that iteration) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for p in sorted(Path("checkpoints").glob("*.json")):
        card = json.loads(p.read_text())
        mb = p.with_suffix(".safetensors").stat().st_size / 2**20
        sizes = ",".join(map(str, card.get("train_sizes", [])))
        lines.append(f"| {p.stem} | {sizes} | {card['params']:,} | {card['train_seconds'] / 60:.0f} min | "
                     f"{mb:.1f} MB | {fmt_rows(card)} |")
    return lines


def write(readme: Path, lines: list[str]) -> None:
    """Replace the lines after the README's zoo-table marker, up to the first blank line, with the table."""
    text = readme.read_text().split("\n")
    at = text.index("<!-- zoo-table -->") + 1
    end = at
    while end < len(text) and text[end].strip():
        end += 1
    readme.write_text("\n".join(text[:at] + lines + text[end:]))


def main() -> None:
    import sys

    lines = table()
    print("\n".join(lines))
    if "--write" in sys.argv[1:]:
        write(Path("README.md"), lines)


if __name__ == "__main__":
    main()
