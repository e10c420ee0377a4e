#!/usr/bin/env python3
"""TRL's RewardTrainer (Bradley-Terry, value head = AutoModelForSequenceClassification's score layer)
against `oprm train --loss bt` and `oprm train` (OPRM), side by side on this machine's CPU.

Same model (../shared/data/models/story-llama), same pairs (../shared/data/prefs/xstest-pairs.jsonl,
split by prompt: held-out prompts never trained on), same steps, batch, learning rate, schedule
(linear, no warmup), weight decay 0, grad clipping 1.0, fp32, full fine-tuning, same threads.
Every method sees the same text: the scoring prompt oprm builds for (prompt, response) (plain format:
"System: ...\\n\\nUser: Conversation:\\nUser: ...\\n\\nResponse to rate:\\n...\\n\\nAssistant: Score: ");
TRL appends its EOS as it always does for text data. Pairs whose prompt exceeds --max-length
tokens are left out beforehand, so nothing is truncated or filtered differently.

Measured: train tokens/s (real, unpadded tokens of the training sequences over the training wall
time: TRL's trainer.train() call; oprm's own summary, which covers its whole loop incl.
tokenization), peak RSS of the training process (TRL's includes the Python + torch runtime),
held-out pair accuracy (r_chosen > r_rejected; OPRM: mean score) and ECE (10 equal-width bins,
each pair in both orders: P(c>r) with outcome 1 and P(r>c) with outcome 0; BT: P = sigmoid(dr),
OPRM: P(s_c > s_r) from `oprm eval`, its ece_symmetric).

Usage: bench/trl_compare.sh [PYTHON] (or python3 bench/trl_compare.py --steps 40 --batch 8 --lr 1e-4)."""
import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("OPRM_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
OPRM = os.environ.get("OPRM_BIN", os.path.join(ROOT, "build", "release", "oprm"))
STORY = os.path.join(SHARED, "models", "story-llama")
SYSTEM = ("You are a reward model. Rate the quality of the assistant's response to the user's request "
          "on a scale from 1 (very poor) to 9 (excellent).")


def scoring_text(prompt, response):
    """oprm's plain-format scoring prompt with the default template (what `oprm train` renders)."""
    user = "Conversation:\nUser: %s\n\nResponse to rate:\n%s" % (prompt, response)
    return "System: %s\n\nUser: %s\n\nAssistant: Score: " % (SYSTEM, user)


def ece_symmetric(p_win, p_loss, bins=10):
    conf = [(p, 1.0) for p in p_win] + [(p, 0.0) for p in p_loss]
    sc, so, cnt = [0.0] * bins, [0.0] * bins, [0] * bins
    for c, o in conf:
        b = min(int(c * bins), bins - 1)
        sc[b] += c
        so[b] += o
        cnt[b] += 1
    return sum(abs(sc[b] - so[b]) for b in range(bins) if cnt[b]) / len(conf)


def prepare(work, n_train, n_test, max_len, seed):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(STORY, "tokenizer.json"))
    rows = [json.loads(l) for l in open(os.path.join(SHARED, "prefs", "xstest-pairs.jsonl"))]
    prompts = sorted({r["prompt"] for r in rows})
    random.Random(seed).shuffle(prompts)
    test_prompts = set(prompts[: len(prompts) // 4])
    train, test = [], []
    for r in rows:
        lc = len(tok.encode(scoring_text(r["prompt"], r["chosen"])).ids) + 2
        lr = len(tok.encode(scoring_text(r["prompt"], r["rejected"])).ids) + 2
        if max(lc, lr) > max_len:
            continue
        (test if r["prompt"] in test_prompts else train).append(
            {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]})
    random.Random(seed + 1).shuffle(train)
    random.Random(seed + 2).shuffle(test)
    train, test = train[:n_train], test[:n_test]
    for name, data in (("train", train), ("test", test)):
        with open(os.path.join(work, name + ".jsonl"), "w") as f:
            for r in data:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return train, test


def timed(cmd):
    """Runs cmd under /usr/bin/time -v; returns (stdout, stderr, peak RSS in MiB)."""
    r = subprocess.run(["/usr/bin/time", "-v"] + [str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("%s failed:\n%s" % (" ".join(map(str, cmd)), r.stderr[-3000:]))
    rss = [l for l in r.stderr.splitlines() if "Maximum resident set size" in l]
    return r.stdout, r.stderr, int(rss[0].split()[-1]) / 1024.0


def run_oprm(work, loss, a):
    out = os.path.join(work, "oprm-" + loss)
    _, _, rss = timed([OPRM, "train", "--model", STORY, "--data", os.path.join(work, "train.jsonl"), "--output", out,
                       "--loss", loss, "--max_steps", a.steps, "--per_device_train_batch_size", a.batch,
                       "--learning_rate", a.lr, "--max_length", a.max_length, "--lr_scheduler_type", "linear",
                       "--weight_decay", 0, "--max_grad_norm", 1.0, "--seed", a.seed, "--save_steps", 0,
                       "--threads", a.threads, "--quiet", "--no-progress"])
    summary = [json.loads(l) for l in open(os.path.join(out, "train_log.jsonl")) if '"summary"' in l][-1]
    return out, summary["tokens_per_s"], rss


def eval_oprm(out, work):
    r = subprocess.run([OPRM, "eval", "--model", out, "--data", os.path.join(work, "test.jsonl")],
                       capture_output=True, text=True, check=True)
    j = json.loads(r.stdout)
    return j["accuracy"], j["ece_symmetric"], j["n"]


def bt_eval(model, tok, test, add_eos):
    """Accuracy and symmetric ECE of a sequence-classification reward on held-out pairs."""
    import torch
    model.eval()
    pw, pl, correct = [], [], 0.0
    with torch.no_grad():
        for r in test:
            rew = []
            for resp in (r["chosen"], r["rejected"]):
                text = scoring_text(r["prompt"], resp) + (tok.eos_token if add_eos else "")
                ids = tok(text, return_tensors="pt").input_ids
                rew.append(float(model(ids).logits[0, 0]))
            p = 1.0 / (1.0 + pow(2.718281828459045, -(rew[0] - rew[1])))
            pw.append(p)
            pl.append(1.0 - p)
            correct += 1.0 if rew[0] > rew[1] else 0.0
    return correct / len(test), ece_symmetric(pw, pl)


def eval_oprm_bt(out, test):
    """oprm's BT checkpoint as transformers' LlamaForSequenceClassification (bt_head.safetensors is its
    score layer), read at the last token of the scoring prompt like oprm (no EOS)."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    model = AutoModelForSequenceClassification.from_pretrained(out, num_labels=1, dtype=torch.float32)
    with torch.no_grad():
        model.score.weight.copy_(load_file(os.path.join(out, "bt_head.safetensors"))["score.weight"])
    return bt_eval(model, AutoTokenizer.from_pretrained(out), test, add_eos=False)


def trl_child(a):
    """Runs in its own process (own peak RSS): TRL RewardTrainer, then the held-out evaluation."""
    import torch
    torch.set_num_threads(a.threads or os.cpu_count())
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast
    from trl import RewardConfig, RewardTrainer
    work = a.trl_child
    train = [json.loads(l) for l in open(os.path.join(work, "train.jsonl"))]
    test = [json.loads(l) for l in open(os.path.join(work, "test.jsonl"))]
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(STORY, "tokenizer.json"), bos_token="<|start_story|>",
                                  eos_token="<|end_story|>", unk_token="<unk>", pad_token="<unk>")
    ds = Dataset.from_list([{"chosen": scoring_text(r["prompt"], r["chosen"]),
                             "rejected": scoring_text(r["prompt"], r["rejected"])} for r in train])
    model = AutoModelForSequenceClassification.from_pretrained(STORY, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    cfg = RewardConfig(output_dir=os.path.join(work, "trl"), max_steps=a.steps, per_device_train_batch_size=a.batch,
                       learning_rate=a.lr, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
                       max_grad_norm=1.0, seed=a.seed, max_length=a.max_length, bf16=False, fp16=False,
                       gradient_checkpointing=False, use_cpu=True, save_strategy="no", report_to=[],
                       logging_steps=10, dataloader_num_workers=0, disable_tqdm=True)
    trainer = RewardTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok)
    t0 = time.perf_counter()
    trainer.train()
    dt = time.perf_counter() - t0
    tokens = trainer._total_train_tokens
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    acc, ece = bt_eval(trainer.model, tok, test, add_eos=True)
    print(json.dumps({"tokens_per_s": tokens / dt, "train_s": dt, "tokens": tokens, "rss_mib": rss, "acc": acc,
                      "ece": ece, "n": len(test)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--trl-child")
    a = ap.parse_args()
    if a.trl_child:
        return trl_child(a)
    import torch, transformers, trl
    work = tempfile.mkdtemp(prefix="oprm-trl-")
    try:
        train, test = prepare(work, a.steps * a.batch, a.test, a.max_length, a.seed)
        load = os.getloadavg()
        print("story-llama, xstest-pairs: %d train pairs (%d steps x %d), %d held-out pairs (other prompts); "
              "lr %g linear, fp32, full fine-tuning; torch %s, transformers %s, trl %s; load average %.1f %.1f %.1f "
              "on %d cores" % (len(train), a.steps, a.batch, len(test), a.lr, torch.__version__,
                               transformers.__version__, trl.__version__, *load, os.cpu_count()), flush=True)
        rows = []
        r = subprocess.run([sys.executable, "-W", "ignore", os.path.abspath(__file__), "--trl-child", work,
                            "--steps", str(a.steps), "--batch", str(a.batch), "--lr", str(a.lr), "--max-length",
                            str(a.max_length), "--threads", str(a.threads), "--seed", str(a.seed)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("TRL run failed:\n" + r.stderr[-4000:])
        t = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append(("TRL RewardTrainer (BT, value head)", t["tokens_per_s"], t["rss_mib"], t["acc"], t["ece"]))
        out, tps, rss = run_oprm(work, "bt", a)
        acc, ece = eval_oprm_bt(out, test)
        rows.append(("oprm train --loss bt", tps, rss, acc, ece))
        out, tps, rss = run_oprm(work, "oprm", a)
        acc, ece, n = eval_oprm(out, work)
        assert n == len(test)
        rows.append(("oprm train (OPRM)", tps, rss, acc, ece))
        print()
        print("| method | train tokens/s | vs TRL | peak RSS (MiB) | held-out accuracy | ECE |")
        print("|---|---|---|---|---|---|")
        for name, tps, rss, acc, ece in rows:
            print("| %s | %.0f | %.2fx | %.0f | %.3f | %.3f |" % (name, tps, tps / rows[0][1], rss, acc, ece))
        print("\nload average after: %.1f %.1f %.1f" % os.getloadavg())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
