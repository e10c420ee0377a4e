"""Prototype of `oprm demo` in plain PyTorch: the synthetic copy task, the demo's byte-level BPE
tokenizer, and a tiny Llama-style OPRM trained from scratch on the scoring prompt of spec §6.

It answers the questions the C demo depends on: is the task learnable by a tiny model, at which
size, learning rate, batch and step count, and how many tokens a scoring prompt takes.
It is also the independent reference of the C tokenizer builder: `--dump-tokenizer FILE` writes the
merges this script learns from a corpus file, which tests/fixtures compare against src/synth/bpe.c.

Usage: /usr/bin/python3 tools/demo_prototype.py [--hidden 64 --layers 2 --heads 4 --ffn 192
         --steps 600 --batch 16 --lr 3e-3 --digits 6 --label-fraction 0.3 --seed 0]
Runs single-threaded (the machine's cores are shared)."""
import argparse, json, math, random, re, sys, time

import torch
import torch.nn.functional as F

torch.set_num_threads(1)

SYSTEM = ("You are a reward model. Rate the quality of the assistant's response to the user's request "
          "on a scale from 1 (very poor) to 9 (excellent).")
LABEL_CENTRE = {"bad": 2, "normal": 5, "good": 8}
GRADE = {"bad": 0, "normal": 1, "good": 2}

# ---------------------------------------------------------------- the synthetic task (copy a number)
def make_response(rng, target, grade):
    """good: exact copy; normal: exactly one digit wrong; bad: at least half the digits wrong.
    A wrong digit is always one that the number does not contain (its digits are distinct), so a
    response's quality shows in which of its digits occur in the prompt: content matching, which
    attention learns fast, rather than position alignment, which a tiny model learns slowly."""
    n = len(target)
    if grade == "good":
        return target
    k = 1 if grade == "normal" else rng.randint((n + 1) // 2, n)
    pos = rng.sample(range(n), k)
    out = list(target)
    absent = [d for d in "0123456789" if d not in target]
    for p in pos:
        out[p] = rng.choice(absent)
    return "".join(out)

def make_prompt(rng, digits):
    target = "".join(rng.sample("0123456789", digits))  # distinct digits
    return "Copy this number: " + target, target

PAIR_KINDS = [("good", "normal"), ("good", "bad"), ("normal", "bad")]
RULES = {"even": "02468", "odd": "13579", "small": "01234", "large": "56789"}

def make_rule_prompt(rng, digits):
    rule = rng.choice(sorted(RULES))
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    return "Write %s %s digits." % (words[digits], rule), rule  # no digit in the prompt

def make_rule_response(rng, rule, grade, digits):
    """good: every digit follows the rule; normal: a third to a half do not; bad: all or all but one
    do not (with 6 digits: 0 / 2-3 / 5-6 wrong), so neighbouring grades differ by at least 2 digits."""
    ok, wrong = RULES[rule], [d for d in "0123456789" if d not in RULES[rule]]
    k = 0 if grade == "good" else rng.randint(digits // 3, digits // 2) if grade == "normal" \
        else rng.randint(digits - 1, digits)
    pos = set(rng.sample(range(digits), k))
    return "".join(rng.choice(wrong) if i in pos else rng.choice(ok) for i in range(digits))

TASK = "copy"

def make_pairs(rng, n, digits):
    pairs = []
    for _ in range(n):
        cl, rl = rng.choice(PAIR_KINDS)
        if TASK == "copy":
            prompt, target = make_prompt(rng, digits)
            c, r = make_response(rng, target, cl), make_response(rng, target, rl)
        else:
            prompt, rule = make_rule_prompt(rng, digits)
            c, r = make_rule_response(rng, rule, cl, digits), make_rule_response(rng, rule, rl, digits)
        pairs.append(dict(prompt=prompt, chosen=c, rejected=r, chosen_label=cl, rejected_label=rl))
    return pairs

# ---------------------------------------------------------------- byte-level BPE (Qwen2-style split)
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return bs, [chr(c) for c in cs]

BYTE_ORDER, BYTE_CHARS = bytes_to_unicode()
BYTE_TO_CHAR = {b: c for b, c in zip(BYTE_ORDER, BYTE_CHARS)}
# The Qwen2 split regex with \p{L} / \p{N} narrowed to ASCII: enough for the demo's ASCII corpus.
SPLIT = re.compile(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]| ?[^\sA-Za-z0-9]+[\r\n]*"
                   r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

def pretokens(text):
    return ["".join(BYTE_TO_CHAR[b] for b in m.encode("utf-8")) for m in SPLIT.findall(text)]

def train_bpe(weighted_texts, n_merges):
    """Greedy BPE: merge the most frequent adjacent pair; ties go to the smallest (left, right) in
    code-point order; stop when no pair occurs twice."""
    words = {}
    for text, w in weighted_texts:
        for p in pretokens(text):
            words[p] = words.get(p, 0) + w
    syms = [[list(p), c] for p, c in sorted(words.items())]
    merges = []
    while len(merges) < n_merges:
        counts = {}
        for s, c in syms:
            for a, b in zip(s, s[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + c
        if not counts:
            break
        best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < 2:
            break
        (a, b), _ = best
        merges.append((a, b))
        for entry in syms:
            s, out, i = entry[0], [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b); i += 2
                else:
                    out.append(s[i]); i += 1
            entry[0] = out
    return merges

class Tok:
    def __init__(self, merges):
        self.vocab = {c: i for i, c in enumerate(BYTE_CHARS)}
        for a, b in merges:
            if a + b not in self.vocab:
                self.vocab[a + b] = len(self.vocab)
        self.rank = {m: i for i, m in enumerate(merges)}
        for s in SPECIALS:
            self.vocab[s] = len(self.vocab)
        self.cache = {}

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        s = list(word)
        while len(s) > 1:
            r = [(self.rank.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(s, s[1:]))]
            best, i = min(r)
            if best == 1 << 30:
                break
            s = s[:i] + [s[i] + s[i + 1]] + s[i + 2:]
        ids = [self.vocab[x] for x in s]
        self.cache[word] = ids
        return ids

    def encode(self, text):
        ids = []
        for part in re.split("(" + "|".join(re.escape(s) for s in SPECIALS) + ")", text):
            if part in SPECIALS:
                ids.append(self.vocab[part])
            elif part:
                for p in pretokens(part):
                    ids += self.bpe(p)
        return ids

# The scoring prompt exactly as oprm renders it (src/tok/prompt.c, ChatML): the default template of
# spec §6, or the demo's short template (docs/demo.md) given to oprm with --template.
DEFAULT_TEMPLATE = dict(system=SYSTEM, user="Conversation:\n{conversation}\n\nResponse to rate:\n{response}",
                        cue="Score: ")
SHORT_TEMPLATE = dict(system="Rate the response from 1 to 9.", user="{conversation}\n\nResponse: {response}",
                      cue="Score: ")
TEMPLATE = DEFAULT_TEMPLATE

def scoring_prompt(prompt, response):
    user = TEMPLATE["user"].replace("{conversation}", "User: " + prompt).replace("{response}", response)
    return ("<|im_start|>system\n" + TEMPLATE["system"] + "<|im_end|>\n<|im_start|>user\n" + user
            + "<|im_end|>\n<|im_start|>assistant\n" + TEMPLATE["cue"])

def tokenizer_corpus(rng, digits, n=200):
    texts = [(SYSTEM, 1000), ("system\nuser\nassistant\nScore: ", 1000),
             ("Conversation:\nUser: \n\nResponse to rate:\n", 1000), (SHORT_TEMPLATE["system"], 1000),
             ("\n\nResponse: ", 1000)]
    for p in make_pairs(rng, n, digits):
        texts += [(p["prompt"], 1), (p["chosen"], 1), (p["rejected"], 1)]
    return texts

# ---------------------------------------------------------------- the model (Llama-style)
class Model(torch.nn.Module):
    def __init__(s, V, dim, L, H, ffn, theta=10000.0):
        super().__init__()
        s.dim, s.L, s.H, s.hd = dim, L, H, dim // H
        s.emb = torch.nn.Embedding(V, dim)
        s.blocks = torch.nn.ModuleList()
        for _ in range(L):
            b = torch.nn.Module()
            b.n1 = torch.nn.Parameter(torch.ones(dim)); b.n2 = torch.nn.Parameter(torch.ones(dim))
            b.qkv = torch.nn.Linear(dim, 3 * dim, bias=False); b.o = torch.nn.Linear(dim, dim, bias=False)
            b.g = torch.nn.Linear(dim, ffn, bias=False); b.u = torch.nn.Linear(dim, ffn, bias=False)
            b.d = torch.nn.Linear(ffn, dim, bias=False)
            s.blocks.append(b)
        s.nf = torch.nn.Parameter(torch.ones(dim))
        s.head = torch.nn.Linear(dim, V, bias=False)
        for p in s.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, 0, 0.02)
        s.inv = 1.0 / (theta ** (torch.arange(0, s.hd, 2).float() / s.hd))

    @staticmethod
    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    def forward(s, ids, digit_ids):
        B, T = ids.shape
        x = s.emb(ids)
        ang = torch.arange(T).float()[:, None] * s.inv[None]
        cos, sin = ang.cos(), ang.sin()
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        def rope(t):
            t1, t2 = t[..., : s.hd // 2], t[..., s.hd // 2:]
            return torch.cat([t1 * cos - t2 * sin, t2 * cos + t1 * sin], -1)
        for b in s.blocks:
            h = s.rms(x, b.n1)
            q, k, v = b.qkv(h).view(B, T, 3, s.H, s.hd).permute(2, 0, 3, 1, 4)
            q, k = rope(q), rope(k)
            a = ((q @ k.transpose(-1, -2)) / math.sqrt(s.hd)).masked_fill(mask, float("-inf")).softmax(-1)
            x = x + b.o((a @ v).transpose(1, 2).reshape(B, T, s.dim))
            h = s.rms(x, b.n2)
            x = x + b.d(F.silu(b.g(h)) * b.u(h))
        h = s.rms(x[:, -1], s.nf)
        return h @ s.head.weight[digit_ids].T  # the nine digit logits

# ---------------------------------------------------------------- OPRM losses (spec §2, §3)
K = torch.arange(1, 10).float()
LOWER = torch.tril(torch.ones(9, 9), -1)  # LOWER[i, j] = 1 iff i > j

def landscape(labels):
    """Triangular RgFT weights; None (unlabelled) gives w = 1."""
    w = torch.ones(len(labels), 9)
    for i, l in enumerate(labels):
        if l is not None:
            w[i] = torch.clamp(1 - (K - LABEL_CENTRE[l]).abs() / 3, min=0.01)
    return w

def pair_loss(zc, zr, wc, wr):
    lc = zc.log_softmax(-1) + wc.log()
    lr = zr.log_softmax(-1) + wr.log()
    cells = lc[:, :, None] + lr[:, None, :]  # [B, i, j]
    cells = cells.masked_fill(LOWER[None] == 0, float("-inf"))
    return -torch.logsumexp(cells.flatten(1), -1)

def metrics(zc, zr):
    pc, pr = zc.softmax(-1), zr.softmax(-1)
    mc, mr = pc @ K, pr @ K
    p_cr = ((pc[:, :, None] * pr[:, None, :]) * LOWER[None]).sum((1, 2))
    return mc, mr, p_cr

def ece(p, correct, bins=10):
    e = 0.0
    for b in range(bins):
        sel = (p >= b / bins) & ((p < (b + 1) / bins) if b < bins - 1 else (p <= 1))
        if sel.any():
            e += sel.float().mean().item() * abs(p[sel].mean().item() - correct[sel].float().mean().item())
    return e

# ---------------------------------------------------------------- fixture for the C tokenizer builder
FIXTURE_TEXTS = [
    (SYSTEM, 50), ("system\nuser\nassistant\nScore: ", 50),
    ("Write six even digits.", 7), ("Write six odd digits.", 5), ("Write six small digits.", 3),
    ("Write six large digits.", 4), ("482066", 3), ("13579\n\n97531", 2),
    ("It's the user's  request, isn't it?\tYes!!\r\n  (maybe)  ", 3), ("aaaa aaaa aaa", 2),
]
FIXTURE_ENCODE = [
    "Score: 7", SYSTEM, "<|im_start|>user\nWrite six even digits.\n\n482066<|im_end|>\n",
    "It's 12 o'clock,  we'll see...\n\n\n", "aaaaaaaaa", "Hello <|im_end|><|endoftext|>!",
]

def dump_fixture(path, n_merges=60):
    merges = train_bpe(FIXTURE_TEXTS, n_merges)
    tok = Tok(merges)
    json.dump(dict(texts=FIXTURE_TEXTS, n_merges=n_merges, merges=[list(m) for m in merges],
                   vocab_size=len(tok.vocab), encodings=[dict(text=t, ids=tok.encode(t)) for t in FIXTURE_ENCODE]),
              open(path, "w"))
    print("wrote", path, len(merges), "merges")

# ---------------------------------------------------------------- main
def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--dump-bpe-fixture":
        return dump_fixture(sys.argv[2])
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=64); ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4); ap.add_argument("--ffn", type=int, default=192)
    ap.add_argument("--steps", type=int, default=600); ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3); ap.add_argument("--digits", type=int, default=6)
    ap.add_argument("--merges", type=int, default=300); ap.add_argument("--label-fraction", type=float, default=0.3)
    ap.add_argument("--flip", type=float, default=0.1); ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test", type=int, default=600); ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--short-template", action="store_true", help="the demo's short scoring template")
    ap.add_argument("--task", default="copy", choices=["copy", "rule"])
    a = ap.parse_args()
    global TASK, TEMPLATE
    TASK = a.task
    if a.short_template:
        TEMPLATE = SHORT_TEMPLATE
    rng = random.Random(a.seed); torch.manual_seed(a.seed)

    merges = train_bpe(tokenizer_corpus(random.Random(a.seed + 1), a.digits), a.merges)
    tok = Tok(merges)
    digit_ids = torch.tensor([tok.vocab[str(d)] for d in range(1, 10)])
    V = len(tok.vocab)
    n_train = a.steps * a.batch
    train = make_pairs(rng, n_train, a.digits)
    test = make_pairs(random.Random(a.seed + 1000), a.test, a.digits)
    flipped = torch.zeros(n_train, dtype=torch.bool)
    for i, p in enumerate(train):
        if rng.random() < a.flip:  # a wrong preference; the labels stay with the positions (consistent)
            p["chosen"], p["rejected"] = p["rejected"], p["chosen"]
            flipped[i] = True
        p["labelled"] = rng.random() < a.label_fraction
    enc = lambda ps, side: torch.tensor([tok.encode(scoring_prompt(p["prompt"], p[side])) for p in ps])
    T = len(tok.encode(scoring_prompt(train[0]["prompt"], train[0]["chosen"])))
    model = Model(V, a.hidden, a.layers, a.heads, a.ffn)
    nonemb = sum(p.numel() for n, p in model.named_parameters() if n not in ("emb.weight", "head.weight"))
    print(json.dumps(dict(vocab=V, merges=len(merges), seq_tokens=T, system_tokens=len(tok.encode(TEMPLATE["system"])),
                          nonembedding_params=nonemb, train_pairs=n_train,
                          train_flops_est=6 * nonemb * 2 * T * n_train)), flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0, betas=(0.9, 0.95))
    sched = lambda s: min(1, (s + 1) / a.warmup) * 0.5 * (1 + math.cos(math.pi * s / a.steps))
    tc, tr = enc(test, "chosen"), enc(test, "rejected")
    kinds = [PAIR_KINDS.index((p["chosen_label"], p["rejected_label"])) for p in test]
    t0 = time.time()

    def evaluate(step):
        model.eval()
        with torch.no_grad():
            zc, zr = model(tc, digit_ids), model(tr, digit_ids)
        model.train()
        mc, mr, p_cr = metrics(zc, zr)
        ok = mc > mr
        per = {f"{c}>{r}": round(ok[torch.tensor(kinds) == i].float().mean().item(), 3)
               for i, (c, r) in enumerate(PAIR_KINDS)}
        print(json.dumps(dict(step=step, time_s=round(time.time() - t0, 1), acc=round(ok.float().mean().item(), 4),
                              ece=round(ece(p_cr, torch.ones_like(ok)), 4), per_kind=per)), flush=True)
        return ok.float().mean().item(), zc, zr

    for step in range(a.steps):
        batch = train[step * a.batch:(step + 1) * a.batch]
        zc, zr = model(enc(batch, "chosen"), digit_ids), model(enc(batch, "rejected"), digit_ids)
        wc = landscape([p["chosen_label"] if p["labelled"] else None for p in batch])
        wr = landscape([p["rejected_label"] if p["labelled"] else None for p in batch])
        loss = pair_loss(zc, zr, wc, wr).mean()
        for g in opt.param_groups:
            g["lr"] = a.lr * sched(step)
        opt.zero_grad(); loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % a.eval_every == 0 or step + 1 == a.steps:
            acc, zc, zr = evaluate(step + 1)
    # The audit on the training pairs: P(r > c) of the flipped pairs vs the rest.
    model.eval()
    with torch.no_grad():
        sus = []
        for i in range(0, min(n_train, 2000), 200):
            b = train[i:i + 200]
            zc, zr = model(enc(b, "chosen"), digit_ids), model(enc(b, "rejected"), digit_ids)
            _, _, p_cr = metrics(zr, zc)
            sus.append(p_cr)
        sus = torch.cat(sus); fl = flipped[:len(sus)]
        pos, neg = sus[fl], sus[~fl]
        auroc = ((pos[:, None] > neg[None]).float().mean() + 0.5 * (pos[:, None] == neg[None]).float().mean()).item()
    print(json.dumps(dict(final_acc=round(acc, 4), audit_auroc=round(auroc, 4), flipped=int(fl.sum()),
                          train_time_s=round(time.time() - t0, 1))), flush=True)

if __name__ == "__main__":
    main()
