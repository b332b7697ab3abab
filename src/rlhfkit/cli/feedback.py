"""`rlhfkit label` and `rlhfkit feedback serve|add-annotator|import|export|stats`.

Thin: parsing and printing only; the work lives in labeler.py, backends.py, store.py and
server.py. Only argparse is imported at module level so that `rlhfkit --help` stays instant.
"""

from __future__ import annotations

import argparse

from rlhfkit.config import ConfigError, add_config_arguments, add_config_positional, config_from_args
from rlhfkit.data.loaders import write_jsonl
from rlhfkit.data.schemas import DataError
from rlhfkit.feedback.config import (
    AnnotatorConfig,
    ExportConfig,
    ImportConfig,
    LabelConfig,
    ServeConfig,
    StatsConfig,
)
from rlhfkit.feedback.importing import read_items
from rlhfkit.feedback.judge import JudgeTemplate, load_preamble
from rlhfkit.feedback.labels import EXPORT_KIND
from rlhfkit.feedback.server import serve
from rlhfkit.feedback.store import FeedbackStore, StoreError

LABEL_EPILOG = """\
examples:
  rlhfkit label --pairs pairs.jsonl --debias swap                 # soft labels from the embedded judge
  rlhfkit label --pairs pairs.jsonl --cot --self-consistency 4    # + rationales, 4 sampled at T=1
  rlhfkit label --pairs gen.jsonl --judge http://127.0.0.1:8080/v1 --judge-model m --api chat
  rlhfkit label --mode rating --pairs generations.jsonl            # expected 1-10 rating per response

When the pairs carry labels (chosen/rejected[/label]) they are taken as gold or human labels, each
pair is shown to the judge in a random order, and the labeler's alignment with them is printed per
technique (base, +swap, +CoT, +self-consistency), as in the RLAIF paper's tables.
"""

FEEDBACK_EPILOG = """\
a session:
  rlhfkit feedback import generations.jsonl        # items: a prompt and its candidate responses
  rlhfkit feedback add-annotator alice             # prints alice's token and sign-in link
  rlhfkit feedback add-annotator me --admin        # admin: the /admin page, import/export API
  rlhfkit feedback serve --overlap 2               # each item labelled by 2 people
  rlhfkit feedback export --kind pairwise --output prefs.jsonl
"""


def register(subparsers) -> None:
    """Add `label` and `feedback` (serve, add-annotator, import, export, stats) to `rlhfkit`."""
    label = subparsers.add_parser(
        "label",
        help="AI labeler (RLAIF): soft preference labels from a judge LM, with position debiasing, CoT, self-consistency",
        description="Label pairs with a judge language model: P(response 1 preferred) from its log-probs of "
        "'1' and '2' after a preamble, the context and both responses (Lee et al. 2023). Writes pairwise rows "
        "that `rlhfkit rm` and `rlhfkit dpo` read.",
        epilog=LABEL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    label.add_argument("--config", help="YAML file of options (command-line flags override it)")
    add_config_arguments(label, LabelConfig)
    label.add_argument("--json", action="store_true", help="print the report as JSON")
    label.set_defaults(func=_cmd_label)

    feedback = subparsers.add_parser(
        "feedback",
        help="human feedback web app: import items, add annotators, serve the page, export labels",
        description="Collect human feedback in a web page (pairwise choice, ranking, 1-10 rating, thumbs, "
        "rewrite, written demonstration) backed by SQLite, and export it as training data.",
        epilog=FEEDBACK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = feedback.add_subparsers(dest="feedback_command", metavar="SUBCOMMAND")
    feedback.set_defaults(func=lambda args: (feedback.print_help(), 2)[1])

    p = commands.add_parser("serve", help="serve the labelling page, the admin page and the JSON API",
                            description="Serve the page at / (annotators), /admin (statistics) and the JSON API "
                            "described at /openapi.json, until Ctrl+C.")
    p.add_argument("--config", help="YAML file of options (command-line flags override it)")
    add_config_arguments(p, ServeConfig)
    p.set_defaults(func=_cmd_serve)

    p = commands.add_parser("add-annotator", help="create an annotator and print their token",
                            description="Create an annotator and print their token and sign-in link. Only a hash "
                            "of the token is stored: keep the printed token (or --rotate to issue a new one).")
    add_config_positional(p, "name", AnnotatorConfig)
    p.add_argument("--config", help="YAML file of options (command-line flags override it)")
    add_config_arguments(p, AnnotatorConfig, skip=("name",))
    p.set_defaults(func=_cmd_add_annotator)

    p = commands.add_parser("import", help="import items to label (prompts and candidate responses)",
                            description="Import items from JSONL/JSON/CSV/Parquet. Re-importing the same rows adds "
                            "nothing.")
    add_config_positional(p, "file", ImportConfig)
    p.add_argument("--config", help="YAML file of options (command-line flags override it)")
    add_config_arguments(p, ImportConfig, skip=("file",))
    p.set_defaults(func=_cmd_import)

    p = commands.add_parser("export", help="export labels as pairwise/ranking/rating/thumbs/rewrite/sft rows",
                            description="Write the labels of one kind as JSONL that `rlhfkit data validate`, "
                            "`rlhfkit rm` and `rlhfkit dpo` read.")
    p.add_argument("--config", help="YAML file of options (command-line flags override it)")
    add_config_arguments(p, ExportConfig)
    p.set_defaults(func=_cmd_export)

    p = commands.add_parser("stats", help="progress per annotator and agreement (Krippendorff's α, Fleiss' κ)")
    p.add_argument("--config", help="YAML file of options (command-line flags override it)")
    add_config_arguments(p, StatsConfig)
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_stats)


# ---------------------------------------------------------------------------------------------
# rlhfkit label


def _cache_path(spec: str):
    from pathlib import Path

    if spec == "off":
        return None
    if spec == "auto":
        # imported when the command runs: `rlhfkit --help` must not load torch
        from rlhfkit.models.loading import cache_dir

        return cache_dir() / "judgements.sqlite"
    return Path(spec)


def _label_rows(run) -> list[dict]:
    """The written rows: each pair's soft label, the judge's probabilities, rationale and gold."""
    rows = []
    final = run.final
    rationales = run.rationales or [None] * len(run.pairs)
    for pair, label, f, s, why in zip(run.pairs, run.labels(), final.p_forward, final.p_swapped or final.p_forward,
                                      rationales):
        row = label.to_row()
        swapped_out = row["chosen"] != pair.first
        row["judge"] = {"technique": final.name, "p_first_forward": round(f, 6)}
        if final.p_swapped is not None:
            row["judge"]["p_first_swapped_back"] = round(1.0 - s, 6)
        if why is not None:
            row["judge"]["rationale"] = why  # the greedy CoT rationale, forward order
        if pair.gold is not None:
            row["gold_label"] = 1.0 - pair.gold if swapped_out else pair.gold
        rows.append(row)
    return rows


def _label_pairwise(cfg, judge, items, template, report: dict, quiet: bool) -> None:
    # imported when the command runs: `rlhfkit --help` must not load torch
    from rlhfkit.feedback.labeler import (
        LabelPlan,
        format_table,
        label_pairs,
        randomise_order,
    )

    pairs = randomise_order(items, cfg.seed)
    gold = [p.gold for p in pairs if p.gold is not None]
    ties = sum(1 for g in gold if g == 0.5)
    print(f"[rlhfkit] {len(pairs)} pairs" + (f", {len(gold)} with gold labels ({ties} ties, left out of "
                                             "alignment)" if gold else ", no gold labels"))
    plan = LabelPlan(swap=cfg.debias == "swap", cot=cfg.cot, self_consistency=cfg.self_consistency,
                     temperature=cfg.temperature, max_rationale_tokens=cfg.max_rationale_tokens)
    run = label_pairs(judge, pairs, template, plan, progress=lambda stage: print(f"[rlhfkit] {stage} ...", flush=True))
    write_jsonl(cfg.output, _label_rows(run))
    report["techniques"] = run.table()
    if not quiet:
        print()
        print(format_table(run))
        pos = run.techniques[0].positions()
        if pos is not None:
            print(f"same position preferred in both orders (base prompt): {100 * pos.same_position_rate:.1f}% "
                  f"of pairs — position 1 in {pos.position1}, position 2 in {pos.position2}")
        print()


def _load_judge(cfg):
    import os

    # imported when the command runs: `rlhfkit --help` must not load torch
    from rlhfkit.feedback.backends import load_judge
    from rlhfkit.models.loading import ModelNotFoundError

    try:
        return load_judge(
            cfg.judge, model=cfg.judge_model, api=cfg.api, api_key=os.environ.get(cfg.api_key_env) or None,
            timeout=cfg.timeout, retries=cfg.retries, concurrency=cfg.concurrency, device=cfg.device,
            precision=cfg.precision, chat={"auto": None, "yes": True, "no": False}[cfg.chat],
            batch_size=cfg.batch_size, seed=cfg.seed, cache=_cache_path(cfg.cache),
        )
    except (ModelNotFoundError, ValueError) as err:
        raise ConfigError(f"--judge {cfg.judge}: {err}") from None


def _cmd_label(args: argparse.Namespace) -> int:
    import json
    import os
    import time

    # imported when the command runs: `rlhfkit --help` must not load torch
    from rlhfkit.feedback.backends import CachedJudge, JudgeError
    from rlhfkit.feedback.inputs import read_examples, read_pairs, read_responses
    from rlhfkit.feedback.labeler import rating_labels

    cfg = config_from_args(LabelConfig, args)
    if os.path.exists(cfg.output) and not cfg.overwrite:
        raise ConfigError(f"{cfg.output} exists; pick another --output or pass --overwrite to replace it")
    if not cfg.judge.startswith(("http://", "https://")):
        # imported when the command runs: `rlhfkit --help` must not load torch
        from rlhfkit.models import resolve_device

        resolve_device(cfg.device)  # an unavailable device fails before the pairs are read
    try:
        template = JudgeTemplate(preamble=load_preamble(cfg.preamble),
                                 examples=read_examples(cfg.examples) if cfg.examples else ())
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if cfg.mode == "pairwise":
        items, skipped = read_pairs(cfg.pairs, cfg.skip_invalid)
    else:
        items, skipped = read_responses(cfg.pairs, cfg.skip_invalid)
    if cfg.limit:
        items = items[: cfg.limit]
    for s in skipped[:5]:
        print(f"[rlhfkit] skipped {s}")
    if len(skipped) > 5:
        print(f"[rlhfkit] ... and {len(skipped) - 5} more skipped rows")
    judge = _load_judge(cfg)
    print(f"[rlhfkit] judge {getattr(judge, 'description', judge.identity)}")
    start = time.perf_counter()
    report: dict = {"config": vars(cfg) | {}, "skipped_rows": len(skipped),
                    "judge": getattr(judge, "description", judge.identity), "judge_cache_key": judge.identity}
    try:
        if cfg.mode == "rating":
            labels = rating_labels(judge, [p for p, _ in items], [r for _, r in items], template)
            write_jsonl(cfg.output, [label.to_row() for label in labels])
            ratings = [label.rating for label in labels]
            report["mean_rating"] = sum(ratings) / len(ratings)
            print(f"[rlhfkit] rated {len(labels)} responses: mean expected rating {report['mean_rating']:.2f} / 10")
        else:
            _label_pairwise(cfg, judge, items, template, report, quiet=args.json)
    except JudgeError as err:
        raise ConfigError(f"judge failed: {err}") from None
    elapsed = time.perf_counter() - start
    report["seconds"] = elapsed
    report["seconds_per_item"] = elapsed / len(items)
    if isinstance(judge, CachedJudge):
        report["cache"] = {"path": str(judge.cache.path), "hits": judge.hits, "misses": judge.misses}
    if cfg.report:
        from pathlib import Path

        Path(cfg.report).write_text(json.dumps(report, indent=2, default=str))
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        cache = f"; cache {judge.hits} hits / {judge.misses} misses" if isinstance(judge, CachedJudge) else ""
        what = "soft-labelled pairs" if cfg.mode == "pairwise" else "ratings"
        print(f"[rlhfkit] wrote {len(items)} {what} to {cfg.output} in {elapsed:.1f}s "
              f"({elapsed / len(items):.2f}s per item{cache})")
    return 0


# ---------------------------------------------------------------------------------------------
# rlhfkit feedback ...


def _open_store(path: str, must_exist: bool):
    from pathlib import Path

    if must_exist and not Path(path).is_file():
        raise DataError(f"{path}: no such feedback database (create it with `rlhfkit feedback import FILE --db {path}`)")
    try:
        return FeedbackStore(path)
    except StoreError as err:
        raise DataError(str(err)) from None


def _cmd_serve(args: argparse.Namespace) -> int:
    cfg = config_from_args(ServeConfig, args)
    store = _open_store(cfg.db, must_exist=False)
    overlap = cfg.overlap or store.get_overlap()
    n_items = store._db().execute("SELECT COUNT(*) FROM items").fetchone()[0]
    people = store.annotators()
    store.close()
    base = f"http://{cfg.host}:{cfg.port}"
    print(f"[rlhfkit] {cfg.db}: {n_items} items, {len(people)} annotators, overlap {overlap}")
    if not n_items:
        print(f"[rlhfkit] no items yet: rlhfkit feedback import FILE --db {cfg.db}")
    if not people:
        print(f"[rlhfkit] no annotators yet: rlhfkit feedback add-annotator NAME --db {cfg.db}")
    print(f"[rlhfkit] feedback page on {base}/  (admin: {base}/admin, API: {base}/openapi.json); Ctrl+C stops",
          flush=True)
    try:
        serve(cfg.db, cfg.host, cfg.port, cfg.overlap or None, cfg.access_log)
    except OSError as err:
        raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port}: {err.strerror or err} "
                          "(another server there? pick a free --port)") from None
    return 0


def _cmd_add_annotator(args: argparse.Namespace) -> int:
    cfg = config_from_args(AnnotatorConfig, args)
    store = _open_store(cfg.db, must_exist=False)
    try:
        token = store.rotate_token(cfg.name) if cfg.rotate else store.add_annotator(cfg.name, admin=cfg.admin)
    except StoreError as err:
        raise ConfigError(str(err)) from None
    role = "admin" if cfg.admin else "annotator"
    print(f"{'new token for' if cfg.rotate else role} {cfg.name}: {token}")
    print(f"sign-in link (keep it private): {cfg.url.rstrip('/')}/#token={token}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from collections import Counter

    cfg = config_from_args(ImportConfig, args)
    read = read_items(cfg.file, None if cfg.task == "auto" else cfg.task, cfg.skip_invalid)
    guidelines = cfg.guidelines_text()
    store = _open_store(cfg.db, must_exist=False)
    added, present = store.add_items(read.items, guidelines)
    tasks = ", ".join(f"{task} {n}" for task, n in Counter(i.task for i in read.items).items())
    print(f"[rlhfkit] {cfg.file}: {len(read.items)} items ({tasks}); {added} new, {present} already in {cfg.db}")
    if guidelines:
        print(f"  guidelines from {cfg.guidelines} ({len(guidelines)} characters) shown with these {len(read.items)} items")
    if read.repeated:
        shown = ", ".join(f"row {row} = row {first}" for row, first in read.repeated[:5])
        more = f", and {len(read.repeated) - 5} more" if len(read.repeated) > 5 else ""
        print(f"  {len(read.repeated)} rows repeat an earlier row of the file and were imported once ({shown}{more})")
    for s in read.skipped[:20]:
        print(f"  skipped {s}")
    if len(read.skipped) > 20:
        print(f"  ... and {len(read.skipped) - 20} more")
    return 0


def _nothing_to_export(store, cfg, report: dict) -> str:
    """Why an export found no rows, and what to do about it."""
    head = f"{cfg.db}: no {cfg.kind} rows to export"
    if report["labels"]:
        return (f"{head}: all {report['labels']} {cfg.kind} labels are without a preference "
                "('both bad', or no majority with --aggregate mean)")
    task = next(t for t, k in EXPORT_KIND.items() if k == cfg.kind)
    items = {t["task"]: t["items"] for t in store.stats()["tasks"]}
    if not items.get(task):
        held = ", ".join(f"{n} {t}" for t, n in items.items()) or "none"
        return (f"{head}: there are no {task} items to label (items: {held}); import some with "
                f"`rlhfkit feedback import FILE --db {cfg.db}` (two responses per prompt make a pairwise item)")
    ai = {"pairwise": " (for AI labels instead, `rlhfkit label --pairs FILE` labels a file of pairs with a judge "
                      "model, no page needed)",
          "rating": " (for AI ratings instead: `rlhfkit label --mode rating --pairs FILE`)"}.get(cfg.kind, "")
    return (f"{head}: none of the {items[task]} {task} items is labelled yet. Label them in the page first: "
            f"`rlhfkit feedback serve --db {cfg.db}`, open a sign-in link printed by "
            f"`rlhfkit feedback add-annotator NAME --db {cfg.db}` and answer some items{ai}")


def _cmd_export(args: argparse.Namespace) -> int:
    cfg = config_from_args(ExportConfig, args)
    store = _open_store(cfg.db, must_exist=True)
    try:
        rows, report = store.export(cfg.kind, cfg.aggregate)
    except StoreError as err:
        raise ConfigError(str(err)) from None
    if not rows:
        raise DataError(_nothing_to_export(store, cfg, report))
    output = cfg.output or f"{cfg.kind}.jsonl"
    write_jsonl(output, rows)
    note = f"; {report['left_out']} labels left out ('both bad' / no majority)" if report["left_out"] else ""
    print(f"[rlhfkit] wrote {len(rows)} {cfg.kind} rows from {report['labels']} labels to {output}{note}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    import json

    cfg = config_from_args(StatsConfig, args)
    store = _open_store(cfg.db, must_exist=True)
    stats = store.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0

    def fmt(x):
        return "—" if x is None else f"{x:.3f}"

    print(f"{stats['complete_items']} of {stats['items']} items have at least {stats['overlap']} label(s)")
    print(f"\n{'annotator':<20}{'labels':>8}{'skipped':>9}{'median s':>10}")
    for p in stats["annotators"]:
        median = "—" if p["median_seconds"] is None else f"{p['median_seconds']:.1f}"
        print(f"{p['name'] + (' (admin)' if p['admin'] else ''):<20}{p['labels']:>8}{p['skipped']:>9}{median:>10}")
    print(f"\n{'task':<15}{'items':>7}{'labels':>8}{'overlapping':>13}{'α':>8}{'κ':>8}")
    for t in stats["tasks"]:
        print(f"{t['task']:<15}{t['items']:>7}{t['labels']:>8}{t['items_with_overlap']:>13}"
              f"{fmt(t.get('krippendorff_alpha')):>8}{fmt(t.get('fleiss_kappa')):>8}")
    return 0
