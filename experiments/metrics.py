"""Metrics of the experiments, computed from experiments/exp_score output (per response: the nine
digit logits of an OPRM, or the scalar reward of a Bradley-Terry model). Standard library only.

The formulas follow /work/shared/spec/oprm-math.md (docs/math.md): distribution = softmax of the
nine logits, reward = mean, ties in P(c>r) do not count as preferred, bimodality and the audit's
suspicion score as in spec §4/§5, risk-aware Best-of-N = argmax mean - lambda * std.
"""
import json
import math

REGIONS = {"bad": (1, 3), "normal": (4, 6), "good": (7, 9)}
GRADE_VALUE = {"bad": 0, "normal": 1, "good": 2}


def softmax(z):
    m = max(z)
    e = [math.exp(x - m) for x in z]
    s = sum(e)
    return [x / s for x in e]


def stats(p):
    mean = sum((k + 1) * p[k] for k in range(9))
    var = sum((k + 1) ** 2 * p[k] for k in range(9)) - mean * mean
    return mean, math.sqrt(max(var, 0.0))


def bimodality(p):
    """Spec §4: peaks are levels with p >= 0.1, >= the left and > the right neighbour."""
    peaks = []
    for k in range(9):
        left = p[k - 1] if k > 0 else -1.0
        right = p[k + 1] if k < 8 else -1.0
        if p[k] >= 0.1 and p[k] >= left and p[k] > right:
            peaks.append(k)
    if len(peaks) < 2:
        return 0.0
    a, b = sorted(sorted(peaks, key=lambda k: -p[k])[:2])
    if b - a < 2:
        return 0.0
    return min(p[a], p[b]) - min(p[a + 1:b])


def pair_probs(pc, pr):
    """P(c>r), P(tie), P(r>c) of two independent distributions."""
    cdf_r, acc = [], 0.0
    for k in range(9):
        cdf_r.append(acc)  # F_r(k-1)
        acc += pr[k]
    win = sum(pc[k] * cdf_r[k] for k in range(9))
    tie = sum(pc[k] * pr[k] for k in range(9))
    return win, tie, max(0.0, 1.0 - win - tie)


def load_scores(path):
    """id -> list of per-response entries: {"p", "mean", "std", "bim"} (OPRM) or {"r"} (BT)."""
    out = {}
    for line in open(path):
        o = json.loads(line)
        if "logits" in o:
            rows = []
            for z in o["logits"]:
                p = softmax(z)
                mean, std = stats(p)
                rows.append({"p": p, "mean": mean, "std": std, "bim": bimodality(p)})
        else:
            rows = [{"r": r} for r in o["reward"]]
        out[o["id"]] = rows
    return out


def ece(conf, outcome, bins=10):
    """Binary ECE over equal-width bins of [0,1] (last bin holds 1.0)."""
    n = len(conf)
    tot = [0] * bins
    sc = [0.0] * bins
    so = [0.0] * bins
    for c, o in zip(conf, outcome):
        b = min(int(c * bins), bins - 1)
        tot[b] += 1
        sc[b] += c
        so[b] += o
    return sum(abs(sc[b] - so[b]) / n for b in range(bins) if tot[b])


def reliability(conf, outcome, bins=10):
    """(mean confidence, accuracy, count) per non-empty bin, for plots."""
    rows = []
    for b in range(bins):
        sel = [(c, o) for c, o in zip(conf, outcome) if min(int(c * bins), bins - 1) == b]
        if sel:
            rows.append((sum(c for c, _ in sel) / len(sel), sum(o for _, o in sel) / len(sel), len(sel)))
    return rows


def pair_metrics(scores, pair_ids):
    """Accuracy (mean_c > mean_r, ties wrong) and calibration on pairs (response 0 = chosen).

    q = P(c>r | no tie) = P(c>r) / (P(c>r) + P(r>c)) is the model's probability that the labelled order
    is right (for BT: sigmoid(r_c - r_r)). ECE is the binary ECE of q with each pair entered in both
    orientations ((q, 1) and (1 - q, 0)), so it does not depend on which side the file calls chosen.
    nll = mean -log q. ece_spec = the spec's symmetric ECE on the raw P(c>r), P(r>c) (ties as lost mass)."""
    correct, conf, outcome, nll, conf_s, out_s, qs = 0, [], [], 0.0, [], [], []
    for i in pair_ids:
        c, r = scores[i][0], scores[i][1]
        if "r" in c:
            d = c["r"] - r["r"]
            q = 1.0 / (1.0 + math.exp(-d)) if d > -700 else 0.0
            win, loss = q, 1.0 - q
            correct += d > 0
        else:
            win, _, loss = pair_probs(c["p"], r["p"])
            q = win / (win + loss) if win + loss > 0 else 0.5
            correct += c["mean"] > r["mean"]
        conf += [q, 1.0 - q]
        outcome += [1, 0]
        conf_s += [win, loss]
        out_s += [1, 0]
        qs.append(q)
        nll -= math.log(max(q, 1e-12))
    n = len(pair_ids)
    return {"n": n, "acc": correct / n, "ece": ece(conf, outcome), "nll": nll / n,
            "ece_spec": ece(conf_s, out_s), "q": qs}


def region_of(p):
    mass = {lab: sum(p[k - 1] for k in range(lo, hi + 1)) for lab, (lo, hi) in REGIONS.items()}
    return max(mass, key=mass.get)


def region_accuracy(scores, labelled):
    """labelled: list of (id, label). Fraction whose most massive region is the true label's."""
    ok = sum(region_of(scores[i][0]["p"]) == lab for i, lab in labelled)
    return ok / len(labelled)


def auroc(score, positive):
    """P(random positive scores above random negative), ties one half."""
    pos = sorted(s for s, y in zip(score, positive) if y)
    neg = sorted(s for s, y in zip(score, positive) if not y)
    if not pos or not neg:
        return float("nan")
    allv = sorted([(s, 1) for s in pos] + [(s, 0) for s in neg])
    # rank-sum with average ranks for ties
    ranks, i = {}, 0
    rank_sum = 0.0
    while i < len(allv):
        j = i
        while j < len(allv) and allv[j][0] == allv[i][0]:
            j += 1
        avg = (i + j + 1) / 2.0
        rank_sum += avg * sum(1 for k in range(i, j) if allv[k][1])
        i = j
    return (rank_sum - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg))


def suspicion(c, r):
    _, _, loss = pair_probs(c["p"], r["p"])
    return loss + max(c["bim"], r["bim"])


def bon_choose(cands, lam):
    best, bu = 0, None
    for i, c in enumerate(cands):
        u = c["mean"] - lam * c["std"]
        if bu is None or u > bu:
            best, bu = i, u
    return best


def mean_std(xs):
    xs = [x for x in xs if x == x]
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def fmt(xs, digits=3, pct=False):
    m, s = mean_std(xs)
    if m != m:
        return "n/a"
    if pct:
        return "%.1f ± %.1f" % (100 * m, 100 * s)
    return "%.*f ± %.*f" % (digits, m, digits, s)


def bon_prob_best(cands):
    """P(candidate i strictly above every other) = sum_k p_i(k) prod_{j != i} F_j(k-1)."""
    cdfs = []
    for c in cands:
        acc, f = 0.0, []
        for k in range(9):
            f.append(acc)
            acc += c["p"][k]
        cdfs.append(f)
    out = []
    for i, c in enumerate(cands):
        tot = 0.0
        for k in range(9):
            prod = c["p"][k]
            for j in range(len(cands)):
                if j != i:
                    prod *= cdfs[j][k]
            tot += prod
        out.append(tot)
    return out


def bon_most_likely_best(cands):
    pb = bon_prob_best(cands)
    return max(range(len(pb)), key=lambda i: (pb[i], -i))


def region_balanced_accuracy(scores, labelled):
    """Mean over the labels present of the per-label region accuracy (recall)."""
    per = {}
    for i, lab in labelled:
        ok, n = per.get(lab, (0, 0))
        per[lab] = (ok + (region_of(scores[i][0]["p"]) == lab), n + 1)
    return sum(ok / n for ok, n in per.values()) / len(per)
