#!/usr/bin/env python3
"""Replays a `p2pz edit --dump DIR` record (docs/DUMP.md) step by step in PyTorch, independently of p2pz.

What a clean run proves, for the dumped edit:
  * the files are the ones docs/DUMP.md names, with its shapes and dtypes (float32 `<f4`, ids int64);
  * the DDIM timesteps follow the model's scheduler_config.json ("leading" spacing + steps_offset),
    with ᾱ rebuilt here in float64 from β (linear / scaled_linear / trained_betas);
  * the roll offsets and the VAE sampling noise are what CPython's `random.Random(seed)` draws
    (p2pz's generator is MT19937 consumed as CPython consumes it);
  * every inversion step's regularized ε equals what the official pix2pix-zero code computes with
    torch autograd (`auto_corr_loss` + `kl_divergence`, the official update order), given the UNet's
    ε and the dumped offsets in place of `random`; and every inversion latent follows DESIGN §3 step 4
    from the previous one;
  * every edit step's next latent is the DDIM step (η = 0) at t_k of x⁰ = z − λ_xa·∂L/∂x⁰ with
    ε̂ = ε⁰ + w·(ε¹ − ε⁰), up to `z_final`;
  * the reference pass starts at z_T and its first step is the DDIM step of z_T with ε_θ(z_T, t_0, e_c)
    (available as the edit's ε⁰ at step 0, where the guidance gradient of the caption branch vanishes).
What it cannot check (no ONNX runtime here): the UNet, VAE and text encoder outputs themselves
(ε, ∂L/∂x, z0, e_c, Δ = mean target − mean source embeddings), the later reference steps (their ε
is not dumped) and the decode to `image_out`.

Usage: python3 replay_dump.py DUMP_DIR --model MODEL_DIR [--tolerance 1e-5]
Prints one line per check, then "N passed, M failed"; exits 1 when any check fails.
Tensors are compared by max|a − b| / max|b| (the error relative to the tensor's scale).
"""
import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

LATENT_FACTOR = 8  # the VAE's downsampling: h, w = H/8, W/8
TOKENS = 77
META_KEYS = ("steps", "timesteps", "inversion_timesteps", "cfg", "xa", "reg_steps", "ac_rolls", "lambda_ac",
             "lambda_kl", "edit_scale", "seed", "size", "latent_scale", "vae_latent", "caption", "source", "target")


class Report:
    def __init__(self, tolerance):
        self.tolerance, self.passed, self.failed = tolerance, 0, 0

    def check(self, name, fn):
        """fn() returns (ok, detail); an exception (a missing file, a bad shape) fails the check."""
        try:
            ok, detail = fn()
        except Exception as err:  # noqa: BLE001 - every failure is reported, none stops the replay
            ok, detail = False, f"{type(err).__name__}: {err}"
        self.passed += ok
        self.failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
        return ok

    def skip(self, name, reason):
        print(f"SKIP {name}: {reason}", flush=True)

    def close(self, actual, expected, tolerance=None):
        """(ok, detail) for two tensors of one shape: max|a − b| / max|b| ≤ tolerance."""
        tolerance = self.tolerance if tolerance is None else max(tolerance, self.tolerance)
        a, b = torch.as_tensor(actual, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
        if a.shape != b.shape:
            return False, f"shape {list(a.shape)} != {list(b.shape)}"
        err = ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
        return err <= tolerance, f"relative error {err:.2e}"


def npy_header(path):
    """(version, descr, fortran_order, shape) from a .npy header."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version != (1, 0):
            return version, None, None, None
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    return version, dtype.str, fortran, list(shape)


def load(dump, name):
    return torch.from_numpy(np.load(dump / name).astype(np.float64))


# --- Scheduler (DESIGN §3 notation) ------------------------------------------------------------

def alphas_cumprod(cfg):
    """ᾱ_t = Π_{s≤t}(1 − β_s), float64 [T]."""
    T = cfg.get("num_train_timesteps", 1000)
    if cfg.get("trained_betas"):
        betas = torch.tensor(cfg["trained_betas"], dtype=torch.float64)
    elif cfg.get("beta_schedule", "linear") == "scaled_linear":
        betas = torch.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, T, dtype=torch.float64) ** 2
    else:
        betas = torch.linspace(cfg.get("beta_start", 1e-4), cfg.get("beta_end", 0.02), T, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


def leading_timesteps(cfg, n):
    """t_k = k·⌊T/N⌋ + steps_offset, k = 0..N−1 (ascending)."""
    return [k * (cfg.get("num_train_timesteps", 1000) // n) + cfg.get("steps_offset", 0) for k in range(n)]


def ddim_transfer(z, eps, a_from, a_to, clip):
    """x̂0 = (z − √(1−ᾱ_from)·ε)/√ᾱ_from (clamped when the config clips); z' = √ᾱ_to·x̂0 + √(1−ᾱ_to)·ε."""
    x0 = (z - (1 - a_from) ** 0.5 * eps) / a_from ** 0.5
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
    return a_to ** 0.5 * x0 + (1 - a_to) ** 0.5 * eps


# --- The official pix2pix-zero regularization (src/utils/ddim_inv.py), offsets from the dump ----

def auto_corr_loss(x, offsets):
    B, C, H, W = x.shape
    assert B == 1
    x = x.squeeze(0)
    # x must be shape [C,H,W] now
    reg_loss = 0.0
    for ch_idx in range(x.shape[0]):
        noise = x[ch_idx][None, None, :, :]
        level = 0
        while True:
            roll_amount = offsets[ch_idx][level]  # official: random.randrange(noise.shape[2]//2)
            reg_loss += (noise * torch.roll(noise, shifts=roll_amount, dims=2)).mean() ** 2
            reg_loss += (noise * torch.roll(noise, shifts=roll_amount, dims=3)).mean() ** 2
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
            level += 1
    return reg_loss


def kl_divergence(x):
    _mu = x.mean()
    _var = x.var()
    return _var + _mu ** 2 - 1 - torch.log(_var + 1e-7)


def regularize(e_t, rolls, meta):
    """The official update order: outer × (ac_rolls autocorrelation steps, then one KL step)."""
    for _outer in range(meta["reg_steps"]):
        if meta["lambda_ac"] > 0:
            for _inner in range(meta["ac_rolls"]):
                _var = e_t.detach().clone().requires_grad_(True)
                l_ac = auto_corr_loss(_var, rolls[_outer][_inner])
                l_ac.backward()
                _grad = _var.grad.detach() / meta["ac_rolls"]
                e_t = e_t - meta["lambda_ac"] * _grad
        if meta["lambda_kl"] > 0:
            _var = e_t.detach().clone().requires_grad_(True)
            l_kld = kl_divergence(_var)
            l_kld.backward()
            _grad = _var.grad.detach()
            e_t = e_t - meta["lambda_kl"] * _grad
        e_t = e_t.detach()
    return e_t


def pyramid_heights(h):
    """Level heights the official loop visits: h, then halved (floored) while the last is above 8."""
    out = [h]
    while out[-1] > 8:
        out.append(out[-1] // 2)
    return out


# --- The replay --------------------------------------------------------------------------------

def expected_files(meta, D):
    """docs/DUMP.md's table for this run: name → (descr, shape)."""
    H, W = meta["size"]
    lat, pair, img = [1, 4, H // LATENT_FACTOR, W // LATENT_FACTOR], [2, 4, H // LATENT_FACTOR, W // LATENT_FACTOR], [1, 3, H, W]
    files = {"image_in.npy": img, "z0.npy": lat, "caption_ids.npy": [1, TOKENS], "e_caption.npy": [1, TOKENS, D],
             "direction.npy": [1, TOKENS, D], "zT.npy": lat, "z_final.npy": lat, "image_out.npy": img}
    if meta["vae_latent"] == "sample":
        files["z0_noise.npy"] = lat
    for k in range(meta["steps"]):
        n = f"{k:03d}"
        files.update({f"inversion/{n}_eps.npy": lat, f"inversion/{n}_eps_reg.npy": lat, f"inversion/{n}_z.npy": lat,
                      f"reference/{n}_z.npy": lat, f"edit/{n}_z.npy": lat, f"edit/{n}_grad.npy": pair, f"edit/{n}_eps.npy": pair})
    return {name: ("<i8" if name == "caption_ids.npy" else "<f4", shape) for name, shape in files.items()}


def replay(dump, model, report):
    meta = json.loads((dump / "meta.json").read_text())
    report.check("meta.json keys", lambda: (not (missing := [k for k in META_KEYS if k not in meta]), f"missing {missing}" if missing else "all present"))
    cfg = json.loads((model / "scheduler" / "scheduler_config.json").read_text())
    steps = meta["steps"]

    # 1. Files, shapes, dtypes.
    D = npy_header(dump / "e_caption.npy")[3][-1]
    for name, (descr, shape) in expected_files(meta, D).items():
        report.check(f"{name} {descr} {shape}", lambda name=name, descr=descr, shape=shape: (
            (h := npy_header(dump / name)) == ((1, 0), descr, False, shape), f"version {h[0]}, {h[1]}, fortran {h[2]}, shape {h[3]}"))
    for k in range(steps):
        n = f"{k:03d}"
        if (dump / f"edit/{n}_loss.npy").exists():
            report.check(f"edit/{n}_loss.npy <f4 [1]", lambda n=n: ((h := npy_header(dump / f"edit/{n}_loss.npy"))[1:] == ("<f4", False, [1]), str(h)))
    for side in ("source", "target"):
        report.check(f"sentences_{side}.txt", lambda side=side: (
            len(lines := (dump / f"sentences_{side}.txt").read_text().splitlines()) > 0 and all(lines), f"{len(lines)} sentences"))
    for name in ("image_in.npy", "image_out.npy"):
        report.check(f"{name} in [-1, 1]", lambda name=name: ((x := load(dump, name)).abs().max().item() <= 1, f"max |x| {x.abs().max().item():.4f}"))
    report.skip("direction.npy = mean target − mean source embedding", "needs the text encoder (not available here)")

    # 2. Scheduler.
    alpha = alphas_cumprod(cfg)
    ratio = cfg.get("num_train_timesteps", 1000) // steps
    final_alpha = 1.0 if cfg.get("set_alpha_to_one", True) else alpha[0].item()
    clip = cfg.get("clip_sample_range", 1.0) if cfg.get("clip_sample", True) else None
    ts = leading_timesteps(cfg, steps)  # inversion order; the sampler runs ts[::-1]
    report.check("timesteps (leading + steps_offset, high → low)", lambda: (meta["timesteps"] == ts[::-1], f"{meta['timesteps']} vs {ts[::-1]}"))
    report.check("inversion_timesteps (low → high)", lambda: (meta["inversion_timesteps"] == ts, f"{meta['inversion_timesteps']} vs {ts}"))
    a_at = lambda t: alpha[t].item() if t >= 0 else final_alpha  # noqa: E731

    # 3. The seeded draws, regenerated by CPython's random.Random(seed).
    rng = random.Random(meta["seed"])
    if (dump / "z0_noise.npy").exists():
        noise = load(dump, "z0_noise.npy")
        report.check("z0_noise = random.gauss(0, 1) draws", lambda: report.close(
            noise, torch.tensor([rng.gauss(0, 1) for _ in range(noise.numel())], dtype=torch.float32).reshape(noise.shape)))
    elif meta["vae_latent"] == "sample":
        report.skip("roll offsets from random.Random(seed)", "the VAE sampled z0 itself, so the draws before the rolls are unknown")
        rng = None
    h, w = meta["size"][0] // LATENT_FACTOR, meta["size"][1] // LATENT_FACTOR
    levels = pyramid_heights(h)
    rolls = [json.loads((dump / f"inversion/{k:03d}_rolls.json").read_text()) for k in range(steps)]
    inner = meta["ac_rolls"] if meta["lambda_ac"] > 0 else 0
    for k, r in enumerate(rolls):
        layout = f"[{meta['reg_steps']}][{inner}][4][{len(levels)}], δ in 1..S/2−1" if meta["reg_steps"] else "[] (no regularization)"
        report.check(f"inversion/{k:03d}_rolls.json {layout}", lambda r=r: (
            np.array(r).shape == ((meta["reg_steps"], inner, 4, len(levels)) if meta["reg_steps"] else (0,))
            and all(1 <= d <= max(1, S // 2 - 1) for o in r for i in o for c in i for d, S in zip(c, levels)), f"shape {np.array(r).shape}"))
    if rng is not None:
        drawn = [[[[[rng.randrange(1, max(2, S // 2)) for S in levels] for _ in range(4)] for _ in range(inner)]
                  for _ in range(meta["reg_steps"])] for _ in range(steps)]
        differ = [f"inversion/{k:03d}_rolls.json" for k in range(steps) if drawn[k] != rolls[k]]
        report.check("roll offsets = random.Random(seed).randrange(1, S//2)", lambda: (not differ, f"differ in {differ}" if differ else f"{steps} steps"))

    # 4. Inversion: ε_reg by autograd over the official code, then z_k from z_{k−1} (DESIGN §3 step 4).
    z_prev = load(dump, "z0.npy")
    for k, t in enumerate(ts):
        n = f"{k:03d}"
        eps = torch.from_numpy(np.load(dump / f"inversion/{n}_eps.npy"))  # float32, as the official code runs
        eps_reg = load(dump, f"inversion/{n}_eps_reg.npy")
        def regularization(eps=eps, eps_reg=eps_reg, k=k):
            ok, detail = report.close(regularize(eps, rolls[k], meta), eps_reg)
            moved = ((eps_reg - eps).abs().max() / eps_reg.abs().max()).item()
            return ok, f"{detail} (the regularization moved ε by {moved:.2e})"
        report.check(f"inversion/{n}_eps_reg = official regularization (autograd) of inversion/{n}_eps", regularization)
        z_k = load(dump, f"inversion/{n}_z.npy")
        report.check(f"inversion/{n}_z = DDIM inversion step at t={t}", lambda: report.close(
            ddim_transfer(z_prev, eps_reg, a_at(t - ratio), alpha[t].item(), clip), z_k))
        z_prev = z_k
    zT = load(dump, "zT.npy")
    report.check(f"zT = inversion/{steps - 1:03d}_z", lambda: report.close(zT, z_prev))

    # 5. Reference pass: starts at z_T; its first step is checkable through the edit's ε⁰ at step 0.
    report.check("reference/000_z = zT", lambda: report.close(load(dump, "reference/000_z.npy"), zT))
    t0 = ts[-1]
    if steps > 1:
        # With the reference pass's own ε dumped (reference/000_eps.npy), its first step is checked
        # with it. ε_θ(z_T, t_0, e_c) is also the edit's ε⁰ at step 0: x⁰ = z_T − λ_xa·∂L/∂x⁰ and
        # ∂L/∂x⁰ vanishes there (the caption branch's maps are the reference maps), up to rounding.
        # The two come from different graphs (batch 1 and batch 2), whose kernels round differently
        # on a GPU (WebGPU here: 1.6e-5), so that cross-check allows 1e-4.
        has_ref_eps = (dump / "reference/000_eps.npy").exists()
        def reference_step():
            eps0 = load(dump, "reference/000_eps.npy") if has_ref_eps else load(dump, "edit/000_eps.npy")[0:1]
            ok, detail = report.close(ddim_transfer(zT, eps0, alpha[t0].item(), a_at(t0 - ratio), clip), load(dump, "reference/001_z.npy"))
            return ok, f"{detail} (max |∂L/∂x⁰| at step 0: {load(dump, 'edit/000_grad.npy')[0].abs().max().item():.1e})"
        source = "reference/000_eps" if has_ref_eps else "edit/000_eps[0]"
        report.check(f"reference/001_z = DDIM step at t={t0} of zT with {source}", reference_step)
        if has_ref_eps:
            report.check("edit/000_eps[0] = reference/000_eps: ∂L/∂x⁰ vanishes at step 0", lambda: report.close(
                load(dump, "edit/000_eps.npy")[0:1], load(dump, "reference/000_eps.npy"), tolerance=1e-4))
    # p2pz also dumps the reference pass's ε (reference/k_eps.npy, beyond docs/DUMP.md's list): then every
    # reference step is checkable.
    if steps > 2 and (dump / "reference/000_eps.npy").exists():
        for k, t in enumerate(ts[::-1][1:steps - 1], start=1):
            n, nxt = f"{k:03d}", f"{k + 1:03d}"
            report.check(f"reference/{nxt}_z = DDIM step at t={t} of reference/{n}_z with reference/{n}_eps", lambda n=n, nxt=nxt, t=t: report.close(
                ddim_transfer(load(dump, f"reference/{n}_z.npy"), load(dump, f"reference/{n}_eps.npy"), alpha[t].item(), a_at(t - ratio), clip),
                load(dump, f"reference/{nxt}_z.npy")))
    elif steps > 2:
        report.skip("reference/k_z for k ≥ 2", "needs ε_θ of the reference pass (reference/k_eps.npy), which this dump does not hold")

    # 6. Edit pass: x⁰ = z − λ_xa·grad⁰; ε̂ = ε⁰ + w(ε¹ − ε⁰); z_{k+1} = DDIM(x⁰, ε̂) at t_k.
    report.check("edit/000_z = zT", lambda: report.close(load(dump, "edit/000_z.npy"), zT))
    for k, t in enumerate(ts[::-1]):
        n = f"{k:03d}"
        nxt = f"edit/{k + 1:03d}_z" if k + 1 < steps else "z_final"

        def step(n=n, t=t, nxt=nxt):
            z, grad, eps = load(dump, f"edit/{n}_z.npy"), load(dump, f"edit/{n}_grad.npy"), load(dump, f"edit/{n}_eps.npy")
            x0 = z - meta["xa"] * grad[0:1]
            eps_hat = eps[0:1] + meta["cfg"] * (eps[1:2] - eps[0:1])
            return report.close(ddim_transfer(x0, eps_hat, alpha[t].item(), a_at(t - ratio), clip), load(dump, f"{nxt}.npy"))
        report.check(f"{nxt} = DDIM step at t={t} of edit/{n}_z − λ_xa·grad⁰ with CFG ε̂", step)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dump", type=Path, help="the folder `p2pz edit --dump` wrote")
    parser.add_argument("--model", type=Path, required=True, help="the model folder of the run (for scheduler/scheduler_config.json)")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest max|a − b| / max|b| accepted (default 1e-5)")
    args = parser.parse_args()
    torch.set_grad_enabled(True)
    report = Report(args.tolerance)
    report.check("dump readable", lambda: (True, "meta.json") if (args.dump / "meta.json").is_file() else (False, f"no meta.json in {args.dump}"))
    if report.failed == 0:
        try:
            replay(args.dump, args.model, report)
        except Exception as err:  # noqa: BLE001 - an unreadable meta.json or config ends the replay as a failure
            report.check("replay", lambda: (False, f"{type(err).__name__}: {err}"))
    print(f"{report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
