"""Which CPU inference path is fastest, and how close it stays to fp32: the experiment behind `--precision`.

    .venv/bin/python bench/exp_cpu_paths.py --limit 150 --max-length 512 --threads 1 --rounds 3
    .venv/bin/python bench/exp_cpu_paths.py --model-dir W/model       # a trained student instead of fitted heads
    .venv/bin/python bench/exp_cpu_paths.py --smoke                   # seconds: checks that it still runs

Same real paragraphs (every k-th of ../shared/data/pmc-oa-sample), same max length, same torch/ORT threads,
one process; the paths run interleaved, round after round (a shared machine's load then hits them alike), and
the best round of each is kept, in CPU seconds (time.process_time) and in wall seconds:

    pipeline     transformers pipeline("text-classification"), batch_size 1, on --threads torch threads
    pipeline-default  the same pipeline on torch's default thread count (one per core): the five lines a user
                 writes, with nothing set; its CPU seconds include the threads' spin-waits
    fp32         classifiers.predict.Predictor, PyTorch fp32 (length-sorted sub-batches)
    int8         the same, nn.Linear dynamically quantized to int8 (per channel)
    onnx         ONNX Runtime, the exported and fused graph, fp32
    onnx-int8    ONNX Runtime, the fused graph with int8 MatMul weights (per channel)
    +fallback    the same int8 path, with the rows whose labels it cannot call (a head's top two probabilities
                 closer than --fallback-margin) run again in fp32 (propagate --fallback-margin)

Agreement with fp32, on --agree-limit other paragraphs (every k-th, offset by one; run once, untimed): both heads'
labels (argmax) and the score's mean absolute error.
Without --model-dir the student is MiniLM-L6 with heads fitted to the rule teacher's labels of --fit paragraphs
(logistic regression / ridge on the fp32 pooled embeddings at 128 tokens), so the margins are those of a
classifier of real labels, not of random heads. Prints the load average before and after; a run whose load
exceeds the core count is flagged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from classifiers.data import model_input
from classifiers.predict import Predictor
from pipeline.teacher.rules import sample_paragraphs

TORCH_DEFAULT_THREADS = torch.get_num_threads()  # before main() sets --threads: what a user's process gets
SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "pmc-oa-sample"
PATHS = ("pipeline", "pipeline-default", "fp32", "int8", "onnx", "onnx-int8", "int8+fallback", "onnx-int8+fallback")


def load_line(label: str) -> str:
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    flag = f"  ** load above the {cores} cores: CPU-time ratios hold better than wall-time ones **" if load > cores else ""
    return f"{label}: load average {load:.2f} on {cores} cores{flag}"


def with_threads(threads: int, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Call fn on `threads` torch threads, then restore the count (the pipeline rows differ only in it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


def profile_ops(name: str, pred: Predictor, texts: list[str], threads: int) -> None:
    """ONNX Runtime's own profiler over the timed paragraphs, one at a time: kernel time per operator type."""
    import collections

    from classifiers.cpu_runtime import open_session

    prefix = str(Path(tempfile.mkdtemp(prefix="pmc-curate-ort-profile-")) / "p")
    session = open_session(pred.runner.path, threads, profile_prefix=prefix)
    ids, _ = pred.tokenize(texts)
    for x in ids:
        a = np.array([x], dtype=np.int64)
        session.run(None, {"input_ids": a, "attention_mask": np.ones_like(a)})
    per_op: collections.Counter[str] = collections.Counter()
    for e in json.loads(Path(session.end_profiling()).read_text()):
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    total = sum(per_op.values())
    print(f"\n{name}: ONNX Runtime kernel time over {len(ids)} paragraphs (batch 1): {total / 1e3:.0f} ms")
    for op, us in per_op.most_common(8):
        print(f"  {op:<28} {us / 1e3:8.1f} ms {us / total:6.1%}")


def fitted_student(out: Path, paragraphs, n_fit: int) -> Path:  # type: ignore[no-untyped-def]
    """MiniLM-L6 with heads fitted to the rule teacher's labels (a stand-in for a trained student)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from transformers import AutoTokenizer

    from classifiers.model import StudentModel
    from classifiers.train import default_base_model
    from pipeline.core.labels import DOCUMENT_TYPES, DOMAINS
    from pipeline.teacher.rules import rule_labels

    tok = AutoTokenizer.from_pretrained(default_base_model())
    torch.manual_seed(0)
    model = StudentModel.from_base(default_base_model()).eval()
    fit = paragraphs[1::max(1, len(paragraphs) // n_fit)][:n_fit]
    feats = []
    with torch.inference_mode():
        for i in range(0, len(fit), 32):
            enc = tok([model_input(p.text, p.section_title) for p in fit[i : i + 32]], truncation=True,
                      max_length=128, padding=True, return_tensors="pt")  # fmt: skip
            h = model.encoder(**enc).last_hidden_state
            feats.append(model.pool(h, enc["attention_mask"]).numpy())
    x = np.concatenate(feats)
    labels = [rule_labels(p.text) for p in fit]
    with torch.no_grad():
        for head, classes, y in (("document_type", DOCUMENT_TYPES, [t for t, _, _ in labels]),
                                 ("domain", DOMAINS, [d for _, d, _ in labels])):  # fmt: skip
            ids = np.array([classes.index(v) for v in y])
            w, b = np.zeros((len(classes), x.shape[1]), np.float32), np.full(len(classes), -10.0, np.float32)
            if len(set(ids)) > 1:
                clf = LogisticRegression(max_iter=2000).fit(x, ids)
                coef, icpt = (clf.coef_, clf.intercept_) if len(clf.classes_) > 2 else (
                    np.stack([-clf.coef_[0], clf.coef_[0]]) / 2, np.array([-clf.intercept_[0], clf.intercept_[0]]) / 2)
                w[clf.classes_], b[clf.classes_] = coef, icpt
            else:
                b[ids[0]] = 0.0
            model.heads[head].weight.copy_(torch.from_numpy(w))
            model.heads[head].bias.copy_(torch.from_numpy(b))
        r = Ridge(alpha=1.0).fit(x, [float(s) for _, _, s in labels])
        model.heads["educational_score"].weight.copy_(torch.from_numpy(r.coef_.astype(np.float32))[None])
        model.heads["educational_score"].bias.fill_(float(r.intercept_))
    model.save(out, tok, {"max_length": 512, "model_id": "fitted-heads"})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    ap.add_argument("--model-dir", default="", help="a trained student (default: MiniLM with fitted heads)")
    ap.add_argument("--limit", type=int, default=150, help="paragraphs timed (every k-th of the sample)")
    ap.add_argument("--agree-limit", type=int, default=400, help="paragraphs the agreement with fp32 is measured on")
    ap.add_argument("--unseen-from", default="", metavar="W",
                    help="leave the paragraphs of W/annotations (the student's training labels) out of the agreement set")
    ap.add_argument("--fallback-margin", type=float, default=0.1, help="the +fallback paths' margin")
    ap.add_argument("--fit", type=int, default=300, help="paragraphs the stand-in heads are fitted on")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--paths", nargs="*", choices=PATHS, default=list(PATHS))
    ap.add_argument("--profile", action="store_true", help="also print ONNX Runtime's time per operator (ONNX paths)")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (12 paragraphs, 64 tokens, one round, no onnx fp32)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.limit, args.agree_limit, args.fit, args.max_length, args.rounds, args.batch_size = 12, 12, 40, 64, 1, 8
        args.paths = [p for p in args.paths if p != "onnx"]  # one ONNX export is enough to check the path
    print(load_line("start"), flush=True)
    torch.set_num_threads(args.threads)
    paragraphs = sample_paragraphs(args.sample)
    timed_set = paragraphs[:: max(1, len(paragraphs) // args.limit)][: args.limit]
    texts = [model_input(p.text, p.section_title) for p in timed_set]
    pool = paragraphs
    if args.unseen_from:
        import duckdb

        seen = {r[0] for r in duckdb.sql(f"SELECT id FROM read_parquet('{args.unseen_from}/annotations/*.parquet')").fetchall()}
        pool = [p for p in paragraphs if p.id not in seen]
        print(f"agreement on paragraphs the student was not trained on: {len(pool)} of {len(paragraphs)}")
    agree_set = pool[1 :: max(1, len(pool) // args.agree_limit)][: args.agree_limit]
    agree_texts = [model_input(p.text, p.section_title) for p in agree_set]
    cache = tempfile.mkdtemp(prefix="pmc-curate-exp-cpu-")
    os.environ.setdefault("PMC_CURATE_ONNX_CACHE", cache)  # a fresh export: its cost is shown as setup
    model_dir = Path(args.model_dir) if args.model_dir else fitted_student(Path(cache) / "student", paragraphs, args.fit)

    run, setup, outputs, fell_back, predictors = {}, {}, {}, {}, {}
    default_threads = TORCH_DEFAULT_THREADS
    for name in args.paths:
        t = time.perf_counter()
        if name.startswith("pipeline"):
            from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

            clf = pipeline("text-classification", device="cpu", tokenizer=AutoTokenizer.from_pretrained(model_dir),
                           model=AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=4))
            threads = default_threads if name == "pipeline-default" else args.threads
            run[name] = lambda clf=clf, threads=threads: with_threads(threads, clf, texts, truncation=True,
                                                                      max_length=args.max_length)  # fmt: skip
            run[name]()  # warm-up
        else:
            precision, margin = name.split("+")[0], (args.fallback_margin if name.endswith("+fallback") else 0.0)
            pred = Predictor.from_dir(model_dir, precision=precision, batch_size=args.batch_size,
                                      max_length=args.max_length, fallback_margin=margin)  # fmt: skip
            run[name] = lambda pred=pred: pred.predict(texts)
            predictors[name] = pred
            outputs[name] = pred.predict(agree_texts)  # warm-up, and the outputs compared with fp32's below
            fell_back[name] = pred.fallbacks / max(1, len(agree_texts))
        setup[name] = time.perf_counter() - t
    cpu = {k: [] for k in run}
    wall = {k: [] for k in run}
    for _ in range(args.rounds):
        for name, fn in run.items():
            c, w = time.process_time(), time.perf_counter()
            fn()
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - w)
    print(load_line("end"))
    n = len(texts)
    base = "pipeline" if "pipeline" in run else next(iter(run))
    ref = outputs.get("fp32")
    rows = []
    print(f"\n{n} paragraphs timed, max length {args.max_length}, {args.threads} thread(s) (pipeline-default: "
          f"{default_threads}), best of {args.rounds} rounds; x = ratio to {base}; agreement with fp32 on "
          f"{len(agree_texts)} other paragraphs")
    dflt = "pipeline-default" if "pipeline-default" in run else None
    print(f"{'path':<18} {'par/CPU-s':>9} {'x':>5} {'x dflt':>6} {'par/s':>7} {'x':>5} {'setup s':>7} {'labels=fp32':>11} "
          f"{'score MAE':>9} {'fp32 rows':>9}")
    for name in run:
        per_cpu, per_wall = n / min(cpu[name]), n / min(wall[name])
        agree = mae = None
        if ref is not None and name in outputs:
            o = outputs[name]
            agree = float(np.mean([(o.probs[h].argmax(1) == ref.probs[h].argmax(1)).mean() for h in ref.probs]))
            mae = float(np.abs(o.educational_score - ref.educational_score).mean())
        rows.append({"path": name, "per_cpu_s": per_cpu, "per_s": per_wall, "setup_s": setup[name],
                     "x_cpu": per_cpu / (n / min(cpu[base])), "x_wall": per_wall / (n / min(wall[base])),
                     "label_agreement": agree, "score_mae": mae, "fallback_share": fell_back.get(name)})  # fmt: skip
        r = rows[-1]
        r["x_cpu_default"] = per_cpu / (n / min(cpu[dflt])) if dflt else None
        xd = "n/a" if dflt is None else f"{r['x_cpu_default']:.2f}"
        print(f"{name:<18} {per_cpu:>9.2f} {r['x_cpu']:>5.2f} {xd:>6} {per_wall:>7.2f} {r['x_wall']:>5.2f} {setup[name]:>7.1f} "
              f"{'n/a' if agree is None else f'{agree:.3f}':>11} {'n/a' if mae is None else f'{mae:.4f}':>9} "
              f"{'' if name not in fell_back else f'{fell_back[name]:.1%}':>9}")
    if args.profile:
        for name, pred in predictors.items():
            if pred.runner is not None and not name.endswith("+fallback"):  # the same graph as without
                profile_ops(name, pred, texts, args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "n": n, "n_agree": len(agree_texts), "args": vars(args), "load_end": os.getloadavg()}, indent=2, default=str))
    import shutil

    shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
