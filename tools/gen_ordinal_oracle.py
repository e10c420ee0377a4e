#!/usr/bin/python3
"""Oracle vectors for tests/test_ordinal_oracle.c: OPRM pair loss, RgFT pair loss and
point-wise loss, each with gradients, computed with PyTorch autograd in float64
directly from the spec formulas (a naive product form, independent of the C log-space code).
Run: /usr/bin/python3 tools/gen_ordinal_oracle.py > tests/fixtures/ordinal_oracle.json"""
import json

import torch

torch.manual_seed(20261127)
K = 9


def landscape(centre, h=3.0, eps=0.01):
    if centre is None:
        return torch.ones(K, dtype=torch.float64)
    k = torch.arange(1, K + 1, dtype=torch.float64)
    return torch.clamp(1.0 - (k - centre).abs() / h, min=eps)


def pair_loss(zc, zr, wc, wr):
    pc, pr = torch.softmax(zc, 0), torch.softmax(zr, 0)
    a, b = wc * pc, wr * pr
    total = sum(a[i] * b[j] for i in range(K) for j in range(i))  # i > j
    return -torch.log(total)


def point_loss(z, w):
    return -torch.log((w * torch.softmax(z, 0)).sum())


cases = []
centres = [None, 8, 5, 2, 1, 9]
for t in range(12):
    scale = [0.5, 2.0, 4.0][t % 3]
    zc = (scale * torch.randn(K, dtype=torch.float64)).requires_grad_()
    zr = (scale * torch.randn(K, dtype=torch.float64)).requires_grad_()
    cc, cr = centres[t % len(centres)], centres[(t * 5) % len(centres)]  # t = 0, 6: both unlabelled
    wc, wr = landscape(cc), landscape(cr)
    loss = pair_loss(zc, zr, wc, wr)
    gc, gr = torch.autograd.grad(loss, (zc, zr))
    z = zc.detach().clone().requires_grad_()
    pl = point_loss(z, wc)
    (gp,) = torch.autograd.grad(pl, (z,))
    cases.append({
        "zc": zc.tolist(), "zr": zr.tolist(), "wc": wc.tolist(), "wr": wr.tolist(),
        "loss": loss.item(), "grad_c": gc.tolist(), "grad_r": gr.tolist(),
        "point_loss": pl.item(), "point_grad": gp.tolist(),
    })
print(json.dumps({"generator": "tools/gen_ordinal_oracle.py (torch %s, float64)" % torch.__version__,
                  "cases": cases}, indent=1))
