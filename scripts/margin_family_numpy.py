#!/usr/bin/env python3
"""Independent check of the CPU reference for CosFace, ArcFace, the combined margin and
SphereFace: NumPy (float64) from the papers' formulas, against `lsoftmax run` on .npy files.

Usage: python3 scripts/margin_family_numpy.py [path/to/lsoftmax] [--backend cpu|emulated]
Needs numpy. Prints the worst absolute and relative differences of F, dX, dW per margin;
exits 1 if one is above 1e-4 relative to the largest entry of its output. The NumPy
gradients are written in matrix form from the normalisation's chain rule and are
themselves checked against NumPy central differences on a small problem first.
"""
import subprocess
import sys
import tempfile

import numpy as np

EPS_CLAMP = 1e-7  # the crate's ANGLE_CLAMP (docs/math.md)


def unit_rows(v):
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / n, n


def psi_lsoftmax(m, theta):
    """L-Softmax / SphereFace psi(theta) = (-1)^k cos(m theta) - 2k, k = floor(m theta / pi)."""
    k = np.minimum(np.floor(theta * m / np.pi), m - 1)
    sign = np.where(k % 2 == 0, 1.0, -1.0)
    return sign * np.cos(m * theta) - 2 * k, k, sign


def target_fn(spec, c, a=None):
    """(F_target, dF_target/dc) per element of c (cos theta) from the papers' forms."""
    kind, s, p = spec
    if kind == "cosface":
        return s * (c - p["m"]), s * np.ones_like(c)
    if kind == "arcface":  # insightface: cos(theta + m) where cos > cos(pi - m), else cos - m sin m
        m = p["m"]
        cc = np.minimum(c, 1 - EPS_CLAMP)
        sine = np.sqrt(1 - cc * cc)
        phi = cc * np.cos(m) - sine * np.sin(m)
        dphi = np.cos(m) + cc * np.sin(m) / sine
        take = cc > np.cos(np.pi - m)
        return s * np.where(take, phi, cc - m * np.sin(m)), s * np.where(take, dphi, 1.0)
    if kind == "combined":  # cos(m1 theta + m2) - m3, monotone extension past pi
        cc = np.clip(c, -1 + EPS_CLAMP, 1 - EPS_CLAMP)
        th = np.arccos(cc)
        phi = p["m1"] * th + p["m2"]
        k = np.floor(phi / np.pi)
        sign = np.where(k % 2 == 0, 1.0, -1.0)
        val = sign * np.cos(phi) - 2 * k - p["m3"]
        der = p["m1"] * sign * np.sin(phi) / np.sin(th)
        return s * val, s * der
    if kind == "sphereface":  # a * (beta c + psi_m(theta)) / (1 + beta)
        m, beta = p["m"], p["beta"]
        th = np.arccos(np.clip(c, -1, 1))
        ps, k, sign = psi_lsoftmax(m, th)
        # d cos(m theta)/dc = m sin(m theta)/sin(theta) (Chebyshev U_{m-1})
        dps = sign * m * np.sin(m * th) / np.sin(th)
        return a * (beta * c + ps) / (1 + beta), a * (beta + dps) / (1 + beta)
    raise ValueError(kind)


def layer(spec, x, w, y, g=None):
    """F and, with g, (dX, dW) in float64."""
    kind, s, _ = spec
    xh, a = unit_rows(x)
    wh, b = unit_rows(w)
    c = xh @ wh.T
    rows = np.arange(len(y))
    if kind == "sphereface":
        f = a * c
        ft, dft = target_fn(spec, c[rows, y], a[:, 0])
        dfdc = np.broadcast_to(a, c.shape).copy()   # dF/dc off target: a
    else:
        f = s * c
        ft, dft = target_fn(spec, c[rows, y])
        dfdc = np.full(c.shape, s)
    f[rows, y] = ft
    dfdc[rows, y] = dft
    if g is None:
        return f
    k = g * dfdc                                      # dJ/dc
    dxh = k @ wh                                      # through c = xh . wh
    dwh = k.T @ xh
    dx = (dxh - np.sum(dxh * xh, axis=1, keepdims=True) * xh) / a
    if kind == "sphereface":                          # F = a * phi(c): the a-dependence
        phi = f / a                                   # phi_ij (target: the margin form)
        dx = dx + np.sum(g * phi, axis=1, keepdims=True) * xh
    dw = (dwh - np.sum(dwh * wh, axis=1, keepdims=True) * wh) / b
    return f, dx, dw


def fd_check(spec):
    """The NumPy gradients against central differences of the NumPy forward."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((4, 5)), rng.standard_normal((3, 5))
    y, r = np.array([0, 1, 2, 1]), rng.standard_normal((4, 3))
    _, dx, dw = layer(spec, x, w, y, r)
    worst = 0.0
    for arr, grad in ((x, dx), (w, dw)):
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + 1e-6
            jp = np.sum(layer(spec, x, w, y) * r)
            arr[idx] = old - 1e-6
            jm = np.sum(layer(spec, x, w, y) * r)
            arr[idx] = old
            worst = max(worst, abs((jp - jm) / 2e-6 - grad[idx]) / (1 + abs(grad[idx])))
    return worst


SPECS = [
    ("cosface:s=16,m=0.2", ("cosface", 16.0, {"m": 0.2})),
    ("cosface:s=64,m=0.35", ("cosface", 64.0, {"m": 0.35})),
    ("arcface:s=8,m=0.5", ("arcface", 8.0, {"m": 0.5})),
    ("arcface:s=64,m=1.2", ("arcface", 64.0, {"m": 1.2})),
    ("combined:s=8,m1=1,m2=0.2,m3=0.1", ("combined", 8.0, {"m1": 1.0, "m2": 0.2, "m3": 0.1})),
    ("combined:s=30,m1=1.35,m2=0.25,m3=0.1", ("combined", 30.0, {"m1": 1.35, "m2": 0.25, "m3": 0.1})),
    ("sphereface:m=4", ("sphereface", None, {"m": 4, "beta": 0.0})),
    ("sphereface:m=2,beta=0.7", ("sphereface", None, {"m": 2, "beta": 0.7})),
]


def f32(v):
    """The f32 value the crate parses from the spec (its parameters are f32)."""
    return float(np.float32(v))


def main():
    exe = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "target/release/lsoftmax"
    backend = sys.argv[sys.argv.index("--backend") + 1] if "--backend" in sys.argv else "cpu"
    rng = np.random.default_rng(0)
    n, d, c = 96, 40, 13
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal((c, d)).astype(np.float32)
    y = rng.integers(0, c, n)
    g = rng.standard_normal((n, c)).astype(np.float32)
    failed = False
    print(f"N={n} D={d} C={c}, backend {backend}; |diff| / max|NumPy| per output (worst absolute in brackets)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, a in dict(x=x, w=w, y=y, g=g).items():
            np.save(f"{tmp}/{name}.npy", a)
        for spec_str, spec in SPECS:
            kind, s, p = spec
            spec32 = (kind, None if s is None else f32(s), {k: (v if k == "m" and kind == "sphereface" else f32(v)) for k, v in p.items()})
            fd = fd_check(spec32)
            subprocess.run([exe, "run", "--x", f"{tmp}/x.npy", "--w", f"{tmp}/w.npy", "--labels", f"{tmp}/y.npy",
                            "--dout", f"{tmp}/g.npy", "--margin", spec_str, "--backend", backend,
                            "--out", f"{tmp}/out"], check=True, capture_output=True)
            got = [np.load(f"{tmp}/out/{o}.npy").astype(np.float64) for o in ("out", "dx", "dw")]
            want = layer(spec32, x.astype(np.float64), w.astype(np.float64), y, g.astype(np.float64))
            cells = []
            for o, gv, wv in zip(("F", "dX", "dW"), got, want):
                diff = np.abs(gv - wv).max()
                rel = diff / np.abs(wv).max()
                failed |= rel > 1e-4
                cells.append(f"{o} {rel:.1e} [{diff:.1e}]")
            print(f"{spec_str:40s} numpy-vs-fd {fd:.1e}  " + "  ".join(cells))
    if failed:
        print("FAILED: a difference above 1e-4 of the output's largest entry")
        sys.exit(1)


if __name__ == "__main__":
    main()
