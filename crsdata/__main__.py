"""``python -m crsdata``: corpus statistics, a sample dialogue, the catalog, downloads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from crsdata.loaders import DEFAULT_DATASET, available_datasets, load_dialogues
from crsdata.paths import DataError, data_root

console = Console(width=None if sys.stdout.isatty() else 160)


def cmd_stats(args: argparse.Namespace) -> None:
    from crsdata.stats import corpus_stats

    table = Table(title=f"CRS corpora under {data_root(args.data_root)} (Table 3 columns, all splits)")
    for col in (
        "dataset",
        "#dialogues",
        "#utterances",
        "avg turns/dialogue",
        "avg tokens/utterance",
        "#items",
        "#items mentioned",
        "#rec turns",
    ):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    for ds in args.dataset or available_datasets(args.data_root):
        s = corpus_stats(ds, args.data_root)
        table.add_row(
            ds,
            f"{s.dialogues:,}",
            f"{s.utterances:,}",
            f"{s.avg_turns:.2f}",
            f"{s.avg_tokens:.2f}",
            f"{s.items:,}",
            f"{s.items_mentioned:,}",
            f"{s.rec_samples:,}",
        )
    console.print(table)


def cmd_sample(args: argparse.Namespace) -> None:
    dialogues = load_dialogues(args.dataset, args.split, args.data_root)
    if not dialogues:
        raise DataError(f"{args.dataset}/{args.split} has no dialogues")
    dlg = dialogues[args.index % len(dialogues)]
    console.rule(f"{dlg.dataset} / {dlg.split} / dialogue {dlg.dialog_id} ({len(dlg.turns)} turns)")
    targets = {s.turn_index: s.targets for s in dlg.rec_samples()}
    for i, turn in enumerate(dlg.turns):
        who = "[bold cyan]user[/]" if turn.role == "user" else "[bold magenta]recommender[/]"
        console.print(f"{i:>2} {who}: {turn.text}", highlight=False)
        if i in targets:
            console.print(f"     [green]targets:[/] {', '.join(targets[i])}", highlight=False)


def cmd_build_catalog(args: argparse.Namespace) -> None:
    from crsdata.catalog import Catalog

    cat = Catalog(args.url, args.data_root)
    counts = cat.build(args.dataset or None, force=args.force)
    for ds, n in counts.items():
        console.print(f"{ds}: {n:,} items in {cat.url}")


def cmd_search(args: argparse.Namespace) -> None:
    from crsdata.catalog import Catalog

    cat = Catalog(args.url, args.data_root)
    cat.ensure(args.dataset)
    for item, score in cat.search_title(args.dataset, args.query, limit=args.limit):
        console.print(f"{score:5.1f}  {item.name}  {dict((k, v) for k, v in item.attributes.items() if k != 'raw')}", highlight=False)


def cmd_download(args: argparse.Namespace) -> None:
    from crsdata.download import download

    for path in download(args.dataset, Path(args.dest)):
        console.print(f"ok {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crsdata", description=__doc__)
    parser.add_argument("--data-root", default=None, help="data directory (default: $LLMCRS_DATA_DIR or ../shared/data)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("stats", help="Table 3 statistics per dataset")
    p.add_argument("dataset", nargs="*")
    p.set_defaults(func=cmd_stats)
    p = sub.add_parser("sample", help="print one dialogue with its recommendation targets")
    p.add_argument("--dataset", default=DEFAULT_DATASET)
    p.add_argument("--split", default="test")
    p.add_argument("--index", type=int, default=0)
    p.set_defaults(func=cmd_sample)
    p = sub.add_parser("build-catalog", help="build the item catalog (idempotent)")
    p.add_argument("dataset", nargs="*")
    p.add_argument("--url", default=None, help="SQLAlchemy URL (default: $LLMCRS_CATALOG_URL or var/catalog.sqlite)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_build_catalog)
    p = sub.add_parser("search", help="fuzzy title search in the catalog")
    p.add_argument("query")
    p.add_argument("--dataset", default=DEFAULT_DATASET)
    p.add_argument("--limit", type=int, default=5)
    p.add_argument("--url", default=None)
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("download", help="fetch a dataset from its original location (needs internet)")
    p.add_argument("dataset")
    p.add_argument("--dest", required=True)
    p.set_defaults(func=cmd_download)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except DataError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
