"""The mmssl training step written in PyTorch, for the side-by-side comparison.

Same model, objective and optimiser as mmssl (see docs/performance.md): per modality a DCGAN
encoder (1x32x32 -> conv 4x4/2 32 -> conv 4x4/2 64 [tapped, 8x8] -> BN -> conv 4x4/2 128 -> BN
-> conv 4x4/1 64 = z; LeakyReLU 0.2; no conv biases), a conv head on the tapped map (1x1 conv
C->64, BN, ReLU, 1x1 conv 64->64, plus a 1x1 shortcut with bias, then BN) and a latent head on z
(Linear 64->64, BN, ReLU, Linear 64->64); the objective sums InfoNCE terms of a scaled dot
critic (1/sqrt(64)), scores clipped by 20*tanh(s/20) and a 4e-2 penalty on the mean squared raw
score, over the edges of the spec (CR: latent vs own conv map; XX: latent vs the other
modality's conv map; CC: a random location of one map vs the other map; RR: latent vs latent);
RAdam with lr 4e-4. 3D: the 64^3 encoder (conv 32, 64, 128 [tapped, 8^3], 256, then 4^3 -> z).

Prints one JSON line like mmssl's `train_step` example.
"""

import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from timing import add_step_arguments, report_step, time_ms


def encoder(dims: int) -> nn.ModuleDict:
    Conv = nn.Conv2d if dims == 2 else nn.Conv3d
    BN = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
    # The DCGAN layer table of mmssl_encoders::dcgan: 32-64-128 (2D) or 32-64-128-256 (3D)
    # channels with 4^n kernels, stride 2, padding 1, batch norm from the second layer on, then
    # a stride-1 layer to the 64-dimensional z.
    widths = [32, 64, 128] + ([256] if dims == 3 else [])
    layers, c_in = {}, 1
    for i, width in enumerate(widths, start=1):
        layers[f"c{i}"] = Conv(c_in, width, 4, 2, 1, bias=False)
        if i > 1:
            layers[f"b{i}"] = BN(width)
        c_in = width
    layers[f"c{len(widths) + 1}"] = Conv(c_in, 64, 4, 1, 0, bias=False)
    return nn.ModuleDict(layers)


def encode(e: nn.ModuleDict, x: torch.Tensor, dims: int):
    a = lambda t: F.leaky_relu(t, 0.2)
    h = a(e["c1"](x))
    if dims == 2:
        tapped = e["c2"](h)
        h = a(e["b2"](tapped))
        h = a(e["b3"](e["c3"](h)))
        z = e["c4"](h)
    else:
        h = a(e["b2"](e["c2"](h)))
        tapped = e["c3"](h)
        h = a(e["b3"](tapped))
        h = a(e["b4"](e["c4"](h)))
        z = e["c5"](h)
    return tapped.flatten(2), z.flatten(1)


class ConvHead(nn.Module):
    def __init__(self, c: int, o: int = 64):
        super().__init__()
        self.c1 = nn.Conv1d(c, o, 1, bias=False)
        self.b1 = nn.BatchNorm1d(o)
        self.c2 = nn.Conv1d(o, o, 1, bias=False)
        self.sc = nn.Conv1d(c, o, 1, bias=True)
        self.bo = nn.BatchNorm1d(o)

    def forward(self, x):
        return self.bo(self.c2(F.relu(self.b1(self.c1(x)))) + self.sc(x))


class LatentHead(nn.Module):
    def __init__(self, i: int = 64, o: int = 64):
        super().__init__()
        self.f1 = nn.Linear(i, o, bias=False)
        self.bn = nn.BatchNorm1d(o)
        self.f2 = nn.Linear(o, o, bias=False)

    def forward(self, z):
        return self.f2(F.relu(self.bn(self.f1(z))))


def contrast(anchors, targets, clip=20.0, penalty=4e-2):
    """InfoNCE (AMDIM form) of anchors [B, d, La] against targets [B, d, Lt]."""
    b, d, la = anchors.shape
    lt = targets.shape[2]
    a = anchors.transpose(1, 2).reshape(b * la, d)
    t = targets.transpose(1, 2).reshape(b * lt, d)
    raw = (a @ t.t()) / math.sqrt(d)  # [B La, B Lt]
    pen = raw.pow(2).mean() * penalty
    s = torch.tanh(raw / clip) * clip
    s = s.reshape(b, la, b, lt)
    eye = torch.eye(b, device=s.device, dtype=torch.bool).reshape(b, 1, b, 1)
    pos = torch.diagonal(s, dim1=0, dim2=2).permute(2, 0, 1)  # [B, La, Lt]
    neg = s.masked_fill(eye, -math.inf).permute(0, 1, 2, 3).reshape(b, la, b * lt)
    lse = torch.logsumexp(neg, dim=2, keepdim=True)  # [B, La, 1]
    loss = F.softplus(lse - pos).mean()
    return loss, pen


def edge_terms(spec: str, modalities: int):
    terms = []
    for edge in spec.split("-"):
        for m in range(modalities):
            if edge in ("XX", "CC", "RR"):
                terms += [(edge, m, t) for t in range(modalities) if t != m]
            else:
                terms.append((edge, m, m))
    return terms


class Model(nn.Module):
    def __init__(self, modalities: int, dims: int, spec: str):
        super().__init__()
        self.dims = dims
        self.enc = nn.ModuleList([encoder(dims) for _ in range(modalities)])
        self.ch = nn.ModuleList([ConvHead(64 if dims == 2 else 128) for _ in range(modalities)])
        self.lh = nn.ModuleList([LatentHead() for _ in range(modalities)])
        self.terms = edge_terms(spec, modalities)

    def forward(self, xs):
        views = []
        for i, x in enumerate(xs):
            conv, z = encode(self.enc[i], x, self.dims)
            views.append((self.ch[i](conv), self.lh[i](z)))
        total = 0.0
        for edge, a, t in self.terms:
            conv_a, lat_a = views[a]
            conv_t, lat_t = views[t]
            if edge == "CC":
                b, d, l = conv_a.shape
                idx = torch.randint(0, l, (b, 1, 1)).expand(b, d, 1)
                anchors = conv_a.gather(2, idx)
            else:
                anchors = lat_a.unsqueeze(2)
            targets = lat_t.unsqueeze(2) if edge == "RR" else conv_t
            loss, pen = contrast(anchors, targets)
            total = total + loss + pen
        return total


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["step", "infonce", "gemm"])
    add_step_arguments(p)
    p.add_argument("--locations", type=int, default=64)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--shape", default=None, help="M,N,K of gemm ([M, K] x [K, N]) instead of --size")
    p.add_argument("--backend", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device("cuda" if args.backend == "cuda" else "cpu")
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)

    if args.what == "step":
        model = Model(args.modalities, args.dims, args.objective).to(dev)
        opt = torch.optim.RAdam(model.parameters(), lr=4e-4)
        side = [1, 32, 32] if args.dims == 2 else [1, 64, 64, 64]
        xs = [torch.rand([args.batch] + side, device=dev) for _ in range(args.modalities)]

        def run():
            opt.zero_grad(set_to_none=True)
            loss = model(xs)
            loss.backward()
            opt.step()
            loss.item()
            sync()

        flops = 0.0
    elif args.what == "infonce":
        a = torch.randn(args.batch, 64, 1, device=dev, requires_grad=True)
        t = torch.randn(args.batch, 64, args.locations, device=dev, requires_grad=True)

        def run():
            a.grad = None
            t.grad = None
            loss, pen = contrast(a, t)
            (loss + pen).backward()
            t.grad.sum().item()

        flops = 3.0 * 2.0 * args.batch * args.batch * args.locations * 64
    else:
        m, n, k = [int(v) for v in args.shape.split(",")] if args.shape else [args.size] * 3
        x = torch.randn(m, k, device=dev)
        y = torch.randn(k, n, device=dev)

        def run():
            (x @ y)[0, 0].item()

        flops = 2.0 * m * n * k

    names = (
        "what", "objective", "modalities", "dims", "batch", "locations", "size", "shape", "backend"
    )
    times = time_ms(run, args.warmup, args.reps)
    report_step(times, args, names, flops, impl="pytorch")

if __name__ == "__main__":
    main()
