"""Driver of the experiments (orchestration and tables only: every model is trained by `oprm train`
and scored by experiments/exp_score, a thin tool over the trainer's own scoring path).

usage: /usr/bin/python3 experiments/exp.py {prepare|exp1|exp2|exp3|exp4|all}

Work files (task data, data splits, trained models, raw scores) go to $OPRM_EXP_WORK
(default /tmp/oprm-experiments); results (JSON + Markdown tables) to experiments/results/, plots to
docs/img/. Runs already finished in the work directory are reused (delete it to start over), so
exp2 reuses exp1's OPRM runs, exp3/exp4 score models trained in exp1/exp2.
Two training runs at a time, one engine thread each (the machine has 2 shared cores)."""
import concurrent.futures
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import metrics as M  # noqa: E402
import svgplot  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.environ.get("OPRM_EXP_WORK", "/tmp/oprm-experiments")
# The oprm build the experiments use: the tree of git revision OPRM_EXP_REV (default HEAD), exported
# and built in the work directory, so a rebuild of the worktree never changes a running experiment.
REV = os.environ.get("OPRM_EXP_REV", "HEAD")
SRC = os.path.join(WORK, "src")
OPRM = os.path.join(SRC, "build/release/oprm")
BIN = os.path.join(WORK, "bin")
SHARED = os.path.join(ROOT, "../shared/data")
RESULTS = os.path.join(ROOT, "experiments/results")
IMG = os.path.join(ROOT, "docs/img")
JOBS = int(os.environ.get("OPRM_EXP_JOBS", "2"))

SEEDS = [1, 2, 3]
FRACTIONS = [0.1, 0.2, 0.5, 1.0]  # f = 0 is the same run for every mode (no label survives): "none"
MODES = ["hard", "triangle"]

# ---- setups (see docs/experiments.md) ----
SYNTH_TASK = dict(seed=1, train_pairs=8800, test_pairs=1320, flip=0.1, train_labels=1320, test_labels=660,
                  bon=440, bon_size=4)
# The generator draws the four rules uniformly; then a response's quality is an XOR of rule and digit
# class and a tiny model sits on a plateau for hundreds of steps (measured: 230 of 300 steps at seed 1,
# never left it in 300 steps with labels). Like the demo's planned rule_skew = 0.4 ("even" forced for 40%
# of the prompts, then a uniform draw: "even" 55%), every "even" record is kept and the others with
# probability RULE_KEEP, which gives the same mix; the sizes above shrink to about 4000/600/600/300/200.
RULE_KEEP = 0.2727
SYNTH_TRAIN = ["--learning_rate", "3e-3", "--max_steps", "300", "--per_device_train_batch_size", "16",
               "--warmup_steps", "30", "--lr_scheduler_type", "cosine", "--adam_beta2", "0.95"]
REAL_MAX_LEN = 128
REAL_TRAIN = ["--learning_rate", "1e-3", "--max_steps", "60", "--per_device_train_batch_size", "8",
              "--warmup_steps", "6", "--lr_scheduler_type", "cosine", "--max-len", str(REAL_MAX_LEN)]
REAL_FLIP = 0.1


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError("failed (%d): %s\n%s" % (r.returncode, " ".join(cmd), r.stdout[-3000:]))
    return r.stdout


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


# ---------------------------------------------------------------- preparation
def skew_task(task):
    """Keeps every "even" record and the others with probability RULE_KEEP (seeded, per file)."""
    for i, name in enumerate(["train_pairs", "test_pairs", "train_labels", "test_labels", "test_bon"]):
        path = os.path.join(task, name + ".jsonl")
        rng = random.Random(100 + i)
        rows = [r for r in read_jsonl(path) if " even " in r["prompt"] or rng.random() < RULE_KEEP]
        write_jsonl(path, rows)
        if name == "train_pairs":
            keep = set(r["id"] for r in rows)
            tp = os.path.join(task, "train_truth.jsonl")
            write_jsonl(tp, [r for r in read_jsonl(tp) if r["id"] in keep])
        log("skewed %s: %d records" % (name, len(rows)))


def prepare():
    os.makedirs(BIN, exist_ok=True)
    commit = run(["git", "rev-parse", REV], cwd=ROOT).strip()
    stamp = os.path.join(SRC, ".commit")
    if not os.path.exists(stamp) or open(stamp).read().strip() != commit:
        run(["rm", "-rf", SRC])
        os.makedirs(SRC)
        run(["sh", "-c", "git archive %s | tar -x -C %s" % (commit, SRC)], cwd=ROOT)
        log("building oprm at %s in %s" % (commit[:10], SRC))
        run(["make", "-j2", "-s", "build/release/oprm"], cwd=SRC)
        open(stamp, "w").write(commit + "\n")
    log("oprm build: %s" % commit[:10])
    libs = ["-fopenmp", "-lopenblas", "-ljansson", "-lpcre2-8", "-lutf8proc", "-lmicrohttpd", "-lm"]
    for tool in ["synth_task", "exp_score"]:
        run(["cc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
             "-I" + os.path.join(SRC, "src"), "-I/usr/include/x86_64-linux-gnu/openblas-openmp",
             os.path.join(ROOT, "experiments", tool + ".c"), os.path.join(SRC, "build/release/liboprm.a"),
             "-o", os.path.join(BIN, tool)] + libs)
    # synthetic task (one data set; the seeds vary the model's init, data order and label subsets)
    task = os.path.join(WORK, "synth/task")
    if not os.path.exists(os.path.join(task, "test_bon.jsonl")):
        t = SYNTH_TASK
        log("synthetic task:", run([os.path.join(BIN, "synth_task"), task, str(t["seed"]), str(t["train_pairs"]),
                                    str(t["test_pairs"]), str(t["flip"]), str(t["train_labels"]),
                                    str(t["test_labels"]), str(t["bon"]), str(t["bon_size"])]).strip())
        skew_task(task)
    for s in SEEDS:
        d = os.path.join(WORK, "synth/init-s%d" % s)
        if not os.path.exists(os.path.join(d, "model.safetensors")):
            run([OPRM, "init", "--arch", "llama", "--output", d, "--seed", str(s), "--force"])
    # real: XSTest pairs split by prompt (80/20, fixed seed 0), with the point-wise labels of the test prompts
    real = os.path.join(WORK, "real")
    os.makedirs(real, exist_ok=True)
    if not os.path.exists(os.path.join(real, "train_flip_truth.jsonl")):
        pairs = read_jsonl(os.path.join(SHARED, "prefs/xstest-pairs.jsonl"))
        key = lambda pid: pid.rsplit("-vs-", 1)[0].rsplit("-", 1)[0]
        prompts = sorted(set(key(p["id"]) for p in pairs))
        random.Random(0).shuffle(prompts)
        test_prompts = set(prompts[:len(prompts) // 5])
        train = [p for p in pairs if key(p["id"]) not in test_prompts]
        test = [p for p in pairs if key(p["id"]) in test_prompts]
        write_jsonl(os.path.join(real, "train_pairs.jsonl"), train)
        write_jsonl(os.path.join(real, "test_pairs.jsonl"), test)
        labels = read_jsonl(os.path.join(SHARED, "labels/xstest-labels.jsonl"))
        test_labels = [r for r in labels if r["id"].rsplit("-", 1)[0] in test_prompts]
        write_jsonl(os.path.join(real, "test_labels.jsonl"), test_labels)
        # 10% of the training pairs flipped (chosen <-> rejected, labels dropped so that the flip is not a
        # contradiction the trainer would skip); the truth is kept
        rng = random.Random(1)
        flipped, truth = [], []
        for p in train:
            f = rng.random() < REAL_FLIP
            q = {"id": p["id"], "prompt": p["prompt"], "chosen": p["rejected"] if f else p["chosen"],
                 "rejected": p["chosen"] if f else p["rejected"], "subset": p["subset"]}
            flipped.append(q)
            truth.append({"id": p["id"], "flipped": f})
        write_jsonl(os.path.join(real, "train_flip.jsonl"), flipped)
        write_jsonl(os.path.join(real, "train_flip_truth.jsonl"), truth)
        log("real split: %d train pairs, %d test pairs, %d test labels, %d flipped"
            % (len(train), len(test), len(test_labels), sum(t["flipped"] for t in truth)))


# ---------------------------------------------------------------- training and scoring
def run_name(ds, loss, mode, frac, seed, data="clean"):
    return "%s-%s-%s-f%g-%s-s%d" % (ds, loss, mode, frac, data, seed)


def train_cmd(ds, loss, mode, frac, seed, data, out):
    if ds == "synth":
        task = os.path.join(WORK, "synth/task")
        cmd = [OPRM, "train", "--model", os.path.join(WORK, "synth/init-s%d" % seed),
               "--data", os.path.join(task, "train_pairs.jsonl"),
               "--eval-data", os.path.join(task, "test_pairs.jsonl"),
               "--template", os.path.join(task, "template.txt")] + SYNTH_TRAIN
    else:
        real = os.path.join(WORK, "real")
        cmd = [OPRM, "train", "--model", os.path.join(SHARED, "models/story-llama"),
               "--data", os.path.join(real, "train_flip.jsonl" if data == "flip" else "train_pairs.jsonl"),
               "--eval-data", os.path.join(real, "test_pairs.jsonl")] + REAL_TRAIN
    cmd += ["--loss", loss, "--rgft-mode", mode, "--label-fraction", "%g" % frac, "--seed", str(seed),
            "--output", out, "--threads", "1", "--save_steps", "0", "--no-progress", "--quiet",
            "--overwrite_output_dir"]
    return cmd


def train(spec):
    if len(spec) == 5:
        spec = spec + ("clean",)
    out = os.path.join(WORK, "runs", run_name(*spec))
    done = os.path.join(out, "experiment_done.json")
    if os.path.exists(done):
        return json.load(open(done))
    t0 = time.time()
    run(train_cmd(*spec, out))
    wall = time.time() - t0
    evals = [r for r in read_jsonl(os.path.join(out, "train_log.jsonl")) if "eval_acc" in r]
    summ = [r for r in read_jsonl(os.path.join(out, "train_log.jsonl")) if r.get("summary")][-1]
    info = {"dir": out, "wall_s": wall, "eval_acc_start": evals[0]["eval_acc"], "eval_acc": evals[-1]["eval_acc"],
            "eval_loss": evals[-1]["eval_loss"], "truncated": summ.get("truncated"),
            "tokens_per_s": summ.get("tokens_per_s")}
    json.dump(info, open(done, "w"))
    log("trained %-45s %5.1fs  held-out acc %.3f" % (run_name(*spec), wall, info["eval_acc"]))
    return info


def score(model_dir, data, name):
    """Raw scores of every response of data (cached per model)."""
    return M.load_scores(score_file(model_dir, data, name))


def score_file(model_dir, data, name):
    out = os.path.join(model_dir, "scores-%s.jsonl" % name)
    if not os.path.exists(out):
        synth = "/synth/" in data
        tpl = os.path.join(WORK, "synth/task/template.txt") if synth else "-"
        max_len = 512 if synth else REAL_MAX_LEN
        run([os.path.join(BIN, "exp_score"), model_dir, data, out + ".tmp", str(max_len), tpl])
        os.rename(out + ".tmp", out)
    return out


def train_all(specs, score_files=()):
    """Trains every spec, then scores each trained model on score_files (names in the spec's data dir),
    JOBS at a time; the results are cached for the metric loops."""
    with concurrent.futures.ThreadPoolExecutor(JOBS) as ex:
        infos = dict(zip(specs, ex.map(train, specs)))
        jobs = [(infos[sp]["dir"], data_path(sp[0], f), f.split(".")[0]) for sp in specs for f in score_files
                if not (sp[0] == "real" and f == "test_pairs.jsonl")]
        list(ex.map(lambda j: score_file(*j), jobs))
    return infos


def data_path(ds, name):
    return os.path.join(WORK, "synth/task" if ds == "synth" else "real", name)


def save_result(name, obj, md):
    os.makedirs(RESULTS, exist_ok=True)
    json.dump(obj, open(os.path.join(RESULTS, name + ".json"), "w"), indent=1)
    open(os.path.join(RESULTS, name + ".md"), "w").write(md)
    print(md)


def pair_eval(info, ds):
    ids = [r["id"] for r in read_jsonl(data_path(ds, "test_pairs.jsonl"))]
    if ds == "real":
        # every response of an XSTest test pair is one of the test prompts' labelled responses
        # (pair id xstest-P-A-vs-B <- response ids xstest-P-A, xstest-P-B): score those once
        lab = score(info["dir"], data_path(ds, "test_labels.jsonl"), "test_labels")
        sc = {}
        for i in ids:
            a, b = i.split("-vs-")
            p = a.rsplit("-", 1)[0]
            sc[i] = [lab[a][0], lab[p + "-" + b][0]]
    else:
        sc = score(info["dir"], data_path(ds, "test_pairs.jsonl"), "test_pairs")
    m = M.pair_metrics(sc, ids)
    # the driver's own accuracy must equal the trainer's held-out accuracy (same model, same prompts)
    if abs(m["acc"] - info["eval_acc"]) > 1e-9:
        raise RuntimeError("accuracy mismatch %s: %g vs trainer %g" % (info["dir"], m["acc"], info["eval_acc"]))
    return m


DS_NAME = {"synth": "synthetic (tiny llama from `oprm init`)", "real": "XSTest pairs (story-llama)"}


# ---------------------------------------------------------------- experiment 1
def exp1():
    specs = [(ds, loss, "none", 0.0, s) for ds in ["synth", "real"] for loss in ["oprm", "bt"] for s in SEEDS]
    infos = train_all(specs, ["test_pairs.jsonl", "test_labels.jsonl"])
    res, md = {}, ["| data | loss | held-out pair acc (%) | ECE | NLL | ECE (spec, ties) | train wall s |",
                   "|---|---|---|---|---|---|---|"]
    for ds in ["synth", "real"]:
        for loss in ["oprm", "bt"]:
            rows = []
            for s in SEEDS:
                info = infos[(ds, loss, "none", 0.0, s)]
                m = pair_eval(info, ds)
                rows.append({"seed": s, "acc": m["acc"], "ece": m["ece"], "nll": m["nll"], "ece_spec": m["ece_spec"],
                             "wall_s": info["wall_s"], "acc_start": info["eval_acc_start"], "q": m["q"]})
            res["%s/%s" % (ds, loss)] = rows
            g = lambda k: [r[k] for r in rows]
            md.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                ds, loss.upper(), M.fmt(g("acc"), pct=True), M.fmt(g("ece")), M.fmt(g("nll")),
                M.fmt(g("ece_spec")) if loss == "oprm" else "= ECE (no ties)", M.fmt(g("wall_s"), 1)))
    # plots: accuracy/ECE bars and pooled reliability diagrams
    groups = ["synth acc", "synth ECE", "real acc", "real ECE"]
    vals, errs = [], []
    for ds in ["synth", "real"]:
        for k in ["acc", "ece"]:
            v, e = [], []
            for loss in ["oprm", "bt"]:
                m, sd = M.mean_std([r[k] for r in res["%s/%s" % (ds, loss)]])
                v.append(m)
                e.append(sd)
            vals.append(v)
            errs.append(e)
    os.makedirs(IMG, exist_ok=True)
    svgplot.bar_chart(os.path.join(IMG, "exp1_oprm_vs_bt.svg"), "OPRM vs Bradley-Terry (mean ± std, 3 seeds)",
                      groups, ["OPRM", "BT"], vals, errs, ylabel="value", ylim=(0, 1))
    for ds in ["synth", "real"]:
        series = []
        for loss in ["oprm", "bt"]:
            conf, out = [], []
            for r in res["%s/%s" % (ds, loss)]:
                for q in r["q"]:
                    conf += [q, 1 - q]
                    out += [1, 0]
            rel = M.reliability(conf, out)
            series.append({"name": loss.upper(), "x": [a for a, _, _ in rel], "y": [b for _, b, _ in rel]})
        svgplot.line_chart(os.path.join(IMG, "exp1_reliability_%s.svg" % ds),
                           "Reliability, %s (3 seeds pooled)" % ("synthetic" if ds == "synth" else "XSTest"),
                           series, "predicted P(labelled order is right)", "observed frequency", ylim=(0, 1),
                           xticks=[0, 0.2, 0.4, 0.6, 0.8, 1.0], diagonal=True, xlim=(0, 1))
    for v in res.values():
        for r in v:
            del r["q"]
    save_result("exp1", res, "\n".join(md) + "\n")


# ---------------------------------------------------------------- experiment 2
def exp2():
    specs = []
    for ds in ["synth", "real"]:
        for s in SEEDS:
            specs.append((ds, "oprm", "none", 0.0, s))
            for mode in MODES:
                for f in FRACTIONS:
                    specs.append((ds, "oprm", mode, f, s))
    infos = train_all(specs, ["test_pairs.jsonl", "test_labels.jsonl"])
    res, md = {}, []
    for ds in ["synth", "real"]:
        labelled = [(r["id"], r["label"]) for r in read_jsonl(data_path(ds, "test_labels.jsonl"))]
        counts = {}
        for _, lab in labelled:
            counts[lab] = counts.get(lab, 0) + 1
        majority = max(counts.values()) / len(labelled)
        md += ["", "**%s** — %d held-out pairs; %d held-out labelled responses (%s; majority-class rate %.1f%%)" % (
            DS_NAME[ds], len(read_jsonl(data_path(ds, "test_pairs.jsonl"))), len(labelled),
            ", ".join("%s %d" % kv for kv in sorted(counts.items())), 100 * majority), "",
            "| RgFT mode | label fraction | pair acc (%) | ECE | absolute-quality acc (%) | balanced abs. acc (%) | train wall s |",
            "|---|---|---|---|---|---|---|"]
        configs = [("none", 0.0)] + [(m, f) for m in MODES for f in FRACTIONS]
        for mode, f in configs:
            rows = []
            for s in SEEDS:
                info = infos[(ds, "oprm", mode, f, s)]
                m = pair_eval(info, ds)
                sc = score(info["dir"], data_path(ds, "test_labels.jsonl"), "test_labels")
                rows.append({"seed": s, "acc": m["acc"], "ece": m["ece"], "abs_acc": M.region_accuracy(sc, labelled),
                             "abs_bal": M.region_balanced_accuracy(sc, labelled),
                             "wall_s": info["wall_s"]})
            res["%s/%s/%g" % (ds, mode, f)] = rows
            g = lambda k: [r[k] for r in rows]
            md.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                mode if mode != "none" else "none (= any mode at f = 0)", "%g" % f, M.fmt(g("acc"), pct=True),
                M.fmt(g("ece")), M.fmt(g("abs_acc"), pct=True), M.fmt(g("abs_bal"), pct=True),
                M.fmt(g("wall_s"), 1)))
        res["%s/majority" % ds] = majority
        for key, ylabel, fname in [("abs_acc", "absolute-quality accuracy", "abs"),
                                   ("abs_bal", "balanced absolute-quality accuracy", "absbal"),
                                   ("acc", "pair accuracy", "pair"),
                                   ("ece", "ECE", "ece")]:
            series = []
            for mode in MODES:
                xs = [0.0] + FRACTIONS
                ms = [M.mean_std([r[key] for r in res["%s/%s/%g" % (ds, mode if f else "none", f)]]) for f in xs]
                series.append({"name": mode, "x": xs, "y": [a for a, _ in ms], "err": [b for _, b in ms]})
            if key == "abs_acc":
                series.append({"name": "majority class", "x": [0.0, 1.0], "y": [majority, majority],
                               "dash": "5,3", "markers": False})
            if key == "abs_bal":
                series.append({"name": "one class always", "x": [0.0, 1.0], "y": [1 / 3, 1 / 3],
                               "dash": "5,3", "markers": False})
            svgplot.line_chart(os.path.join(IMG, "exp2_%s_%s.svg" % (fname, ds)),
                               "RgFT: %s, %s (mean ± std, 3 seeds)" % (ylabel, "synthetic" if ds == "synth"
                                                                       else "XSTest"),
                               series, "label fraction (f = 0: no labels)", ylabel,
                               ylim=(0, 1) if key != "ece" else None,
                               xticks=[0.0] + FRACTIONS, xticklabels=["0", "0.1", "0.2", "0.5", "1"])
    save_result("exp2", res, "\n".join(md).strip() + "\n")


# ---------------------------------------------------------------- experiment 3
def audit_rows(info, ds):
    if ds == "synth":
        data = data_path(ds, "train_pairs.jsonl")
        truth = {r["id"]: r["flipped"] for r in read_jsonl(data_path(ds, "train_truth.jsonl"))}
    else:
        data = data_path(ds, "train_flip.jsonl")
        truth = {r["id"]: r["flipped"] for r in read_jsonl(data_path(ds, "train_flip_truth.jsonl"))}
    sc = score(info["dir"], data, "train_pairs")
    ids = [r["id"] for r in read_jsonl(data)]
    sus = [M.suspicion(sc[i][0], sc[i][1]) for i in ids]
    ploss = [M.pair_probs(sc[i][0]["p"], sc[i][1]["p"])[2] for i in ids]
    bim = [max(sc[i][0]["bim"], sc[i][1]["bim"]) for i in ids]
    flip = [truth[i] for i in ids]
    order = sorted(range(len(ids)), key=lambda k: -sus[k])
    top = order[:sum(flip)]
    return {"auroc": M.auroc(sus, flip), "auroc_ploss": M.auroc(ploss, flip),
            "precision_at_k": sum(flip[k] for k in top) / len(top), "n": len(ids), "flipped": sum(flip),
            "bimodal_share": sum(b >= 0.05 for b in bim) / len(bim), "sus": sus, "flip": flip}


def exp3():
    specs = [("synth", "oprm", "none", 0.0, s) for s in SEEDS] + \
            [("synth", "oprm", "triangle", 0.2, s) for s in SEEDS] + \
            [("real", "oprm", "none", 0.0, s, "flip") for s in SEEDS]
    infos = train_all(specs)
    jobs = [(infos[sp]["dir"], data_path(sp[0], "train_pairs.jsonl" if sp[0] == "synth" else "train_flip.jsonl"))
            for sp in specs]
    with concurrent.futures.ThreadPoolExecutor(JOBS) as ex:
        list(ex.map(lambda j: score_file(j[0], j[1], "train_pairs"), jobs))
    res = {}
    md = ["| data | model | pairs (flipped) | AUROC of suspicion | AUROC of P(r>c) alone | precision at k = #flipped | responses bimodal |",
          "|---|---|---|---|---|---|---|"]
    curves = []
    for label, group in [("synth / OPRM, no labels", specs[0:3]), ("synth / OPRM + RgFT triangle f=0.2", specs[3:6]),
                         ("XSTest / OPRM, no labels", specs[6:9])]:
        rows = []
        for spec in group:
            r = audit_rows(infos[spec], spec[0])
            rows.append(r)
        g = lambda k: [r[k] for r in rows]
        md.append("| %s | %s | %d (%d) | %s | %s | %s | %s |" % (
            label.split(" / ")[0], label.split(" / ")[1], rows[0]["n"], rows[0]["flipped"], M.fmt(g("auroc")),
            M.fmt(g("auroc_ploss")), M.fmt(g("precision_at_k"), pct=True), M.fmt(g("bimodal_share"), pct=True)))
        # ROC of the first seed
        r0 = rows[0]
        order = sorted(range(len(r0["sus"])), key=lambda k: -r0["sus"][k])
        P, N = sum(r0["flip"]), len(r0["flip"]) - sum(r0["flip"])
        tp = fp = 0
        xs, ys = [0.0], [0.0]
        for k in order:
            tp += r0["flip"][k]
            fp += not r0["flip"][k]
            xs.append(fp / N)
            ys.append(tp / P)
        step = max(1, len(xs) // 200)
        curves.append({"name": label, "x": xs[::step] + [1.0], "y": ys[::step] + [1.0], "markers": False})
        for r in rows:
            del r["sus"], r["flip"]
        res[label] = rows
    svgplot.line_chart(os.path.join(IMG, "exp3_audit_roc.svg"), "Audit: ROC of the suspicion score (seed 1)",
                       curves, "false positive rate", "true positive rate (flipped found)", ylim=(0, 1),
                       xticks=[0, 0.2, 0.4, 0.6, 0.8, 1.0], diagonal=True, w=760, xlim=(0, 1), legend_w=260)
    save_result("exp3", res, "\n".join(md) + "\n")


# ---------------------------------------------------------------- experiment 4
RULE_DIGITS = {"even": "02468", "odd": "13579", "small": "01234", "large": "56789"}


def true_quality(prompt, response):
    """(grade, fraction of digits that follow the rule) of a synthetic response, from its prompt."""
    rule = prompt.split()[2]
    ok = sum(ch in RULE_DIGITS[rule] for ch in response)
    wrong = len(response) - ok
    n = len(response)
    grade = "good" if wrong == 0 else ("bad" if wrong >= n - 1 else "normal")
    return grade, ok / n


def exp4():
    lambdas = [0.0, 0.5, 1.0]
    models = [("OPRM, no labels", ("synth", "oprm", "none", 0.0)),
              ("OPRM + RgFT triangle f=0.2", ("synth", "oprm", "triangle", 0.2)),
              ("OPRM + RgFT triangle f=1", ("synth", "oprm", "triangle", 1.0))]
    specs = [m + (s,) for _, m in models for s in SEEDS]
    infos = train_all(specs, ["test_bon.jsonl"])
    sets = read_jsonl(data_path("synth", "test_bon.jsonl"))
    res = {}
    md = ["| model | λ | truly good chosen (%) | mean true grade (bad 0, normal 1, good 2) | rule-following digits (%) | chosen = argmax P(best) (%) |",
          "|---|---|---|---|---|---|"]
    bars, barerr = [], []
    for name, m in models:
        per_lambda = {lam: [] for lam in lambdas}
        for s in SEEDS:
            sc = score(infos[m + (s,)]["dir"], data_path("synth", "test_bon.jsonl"), "test_bon")
            for lam in lambdas:
                good = grade = frac = agree = 0
                for st in sets:
                    cands = sc[st["id"]]
                    texts = [st["best"]] + st["others"]
                    k = M.bon_choose(cands, lam)
                    gname, fr = true_quality(st["prompt"], texts[k])
                    good += gname == "good"
                    grade += M.GRADE_VALUE[gname]
                    frac += fr
                    agree += k == M.bon_most_likely_best(cands)
                n = len(sets)
                per_lambda[lam].append({"seed": s, "good": good / n, "grade": grade / n, "digits_ok": frac / n,
                                        "agree_pbest": agree / n})
        res[name] = {str(lam): v for lam, v in per_lambda.items()}
        row_v, row_e = [], []
        for lam in lambdas:
            rows = per_lambda[lam]
            g = lambda k: [r[k] for r in rows]
            md.append("| %s | %g | %s | %s | %s | %s |" % (name, lam, M.fmt(g("good"), pct=True), M.fmt(g("grade"), 2),
                                                         M.fmt(g("digits_ok"), pct=True),
                                                         M.fmt(g("agree_pbest"), pct=True)))
            mm, sd = M.mean_std(g("good"))
            row_v.append(mm)
            row_e.append(sd)
        bars.append(row_v)
        barerr.append(row_e)
    # random choice: 1 good candidate of bon_size
    rand = 1.0 / SYNTH_TASK["bon_size"]
    md.append("| random choice | – | %.1f | – | – | – |" % (100 * rand))
    svgplot.bar_chart(os.path.join(IMG, "exp4_bon.svg"), "Best-of-%d: truly good chosen (mean ± std, 3 seeds)"
                      % SYNTH_TASK["bon_size"], [n for n, _ in models], ["λ = %g" % l for l in lambdas],
                      bars, barerr, ylabel="fraction truly good", ylim=(0, 1), ref_line=(rand, "random"), w=720)
    save_result("exp4", res, "\n".join(md) + "\n")


# ---------------------------------------------------------------- cross-check with oprm eval/audit/bon
def crosscheck():
    """Recomputes seed-1 numbers with the product's `oprm eval`, `oprm audit` and `oprm bon` (an oprm
    binary that has them: $OPRM_EXP_CHECK_BIN, default the work build) and puts them beside the driver's."""
    exe = os.environ.get("OPRM_EXP_CHECK_BIN", OPRM)
    task = os.path.join(WORK, "synth/task")
    tpl = ["--template", os.path.join(task, "template.txt")]
    common = ["--threads", "1", "--no-progress"]
    flagged = os.path.join(task, "train_pairs_flagged.jsonl")
    truth = {r["id"]: r["flipped"] for r in read_jsonl(os.path.join(task, "train_truth.jsonl"))}
    write_jsonl(flagged, [dict(r, flipped=truth[r["id"]]) for r in read_jsonl(os.path.join(task, "train_pairs.jsonl"))])
    md = ["| check (seed 1) | driver (exp_score + metrics.py) | product CLI |", "|---|---|---|"]
    res = json.load(open(os.path.join(RESULTS, "exp1.json")))
    for ds, extra in [("synth", tpl), ("real", ["--max-len", str(REAL_MAX_LEN)])]:
        d = os.path.join(WORK, "runs", run_name(ds, "oprm", "none", 0.0, 1))
        ev = os.path.join(WORK, "eval_%s.json" % ds)
        run([exe, "eval", "--model", d, "--data", data_path(ds, "test_pairs.jsonl"), "--output", ev] + extra + common)
        out = json.load(open(ev))
        r = res["%s/oprm" % ds][0]
        md.append("| %s pair accuracy, `oprm eval` accuracy | %.4f | %.4f |" % (ds, r["acc"], out["accuracy"]))
        md.append("| %s spec symmetric ECE, `oprm eval` ece_symmetric | %.4f | %.4f |"
                  % (ds, r["ece_spec"], out["ece_symmetric"]))
    d = os.path.join(WORK, "runs", run_name("synth", "oprm", "none", 0.0, 1))
    summ = os.path.join(WORK, "audit_summary.json")
    run([exe, "audit", "--model", d, "--data", flagged, "--flipped-key", "flipped", "--summary", summ,
         "--output", os.path.join(WORK, "audit_ranking.jsonl")] + tpl + common)
    a = json.load(open(summ))
    r3 = json.load(open(os.path.join(RESULTS, "exp3.json")))["synth / OPRM, no labels"][0]
    md.append("| synth audit AUROC of suspicion, `oprm audit --flipped-key` auroc_suspicion | %.4f | %.4f |"
              % (r3["auroc"], a["auroc_suspicion"]))
    r4 = json.load(open(os.path.join(RESULTS, "exp4.json")))["OPRM, no labels"]
    for lam in ["0.0", "0.5", "1.0"]:
        summ = os.path.join(WORK, "bon_summary.json")
        run([exe, "bon", "--model", d, "--data", data_path("synth", "test_bon.jsonl"), "--risk", lam, "--summary", summ,
             "--output", os.path.join(WORK, "bon.jsonl")] + tpl + common)
        b = json.load(open(summ))
        md.append("| synth Best-of-4 λ=%s truly good chosen, `oprm bon --risk` accuracy | %.4f | %.4f |" % (
            lam, r4[lam][0]["good"], b["accuracy"]))
    save_result("crosscheck", {"md": md}, "\n".join(md) + "\n")


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    t0 = time.time()
    prepare()
    steps = {"exp1": exp1, "exp2": exp2, "exp3": exp3, "exp4": exp4, "crosscheck": crosscheck}
    for name in (["exp1", "exp2", "exp3", "exp4"] if what == "all" else [what] if what != "prepare" else []):
        t1 = time.time()
        steps[name]()
        log("%s done in %.0f s" % (name, time.time() - t1))
    log("total %.0f s" % (time.time() - t0))


if __name__ == "__main__":
    main()
