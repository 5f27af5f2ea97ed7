#!/usr/bin/env python3
"""Distils one pix2pix-zero edit direction into a pix2pix-style generator (see README.md).

  python3 train.py --data DATASET --out RUN [--iterations N] [--register MODELS_DIR] ...

DATASET is what `p2pz distill pairs` wrote. RUN receives generator.onnx (the runtime's contract),
meta.json (GanMeta), train.json (settings, timings), log.jsonl (losses), checkpoint.pt (resumable
with --resume) and export-check/. --register installs the result with `p2pz distill register`,
which validates it with onnxruntime first.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

import numpy as np
import torch

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from p2pz_distill.dataset import DatasetError, PairsDataset, read_manifest  # noqa: E402
from p2pz_distill.export import GENERATOR_FILE, export_onnx, write_export_check, write_meta  # noqa: E402
from p2pz_distill.losses import AdversarialLoss, VggPerceptualLoss, feature_matching_loss  # noqa: E402
from p2pz_distill.networks import PatchDiscriminator, build_generator, init_weights  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# Defaults: pix2pix's (Isola et al. 2017) unless noted.
DEFAULTS = dict(
    iterations=20000,  # ~20 epochs of 1000 pairs at batch 1
    batch=1,
    crop=256,  # training crop side; the generator runs at the full working size at inference
    arch="resnet",  # resnet (CycleGAN's resnet_9blocks) or unet
    width=64,  # generator base channels
    blocks=9,  # ResNet blocks
    depth=8,  # U-Net levels (unet_256)
    disc_width=64,
    disc_layers=3,  # 70x70 PatchGAN
    gan_loss="lsgan",  # least squares: steadier than BCE for small datasets
    lambda_l1=100.0,
    lambda_fm=0.0,  # discriminator feature matching (pix2pixHD uses 10)
    lambda_vgg=10.0,  # used only with --vgg-weights
    lr=2e-4,
    beta1=0.5,
    decay_from=0.5,  # the learning rate decays linearly to 0 over the last half
    flip=True,
    seed=0,
    log_every=100,
    checkpoint_every=1000,
)


def parse_args(argv):
    d = DEFAULTS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="pairs dataset folder (manifest.json)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--iterations", type=int, default=d["iterations"])
    p.add_argument("--batch", type=int, default=d["batch"])
    p.add_argument("--crop", type=int, default=d["crop"])
    p.add_argument("--arch", choices=["resnet", "unet"], default=d["arch"])
    p.add_argument("--width", type=int, default=d["width"])
    p.add_argument("--blocks", type=int, default=d["blocks"])
    p.add_argument("--depth", type=int, default=d["depth"])
    p.add_argument("--no-dropout", action="store_true", help="U-Net: no dropout in the inner decoders")
    p.add_argument("--disc-width", type=int, default=d["disc_width"])
    p.add_argument("--disc-layers", type=int, default=d["disc_layers"])
    p.add_argument("--gan-loss", choices=["lsgan", "vanilla"], default=d["gan_loss"])
    p.add_argument("--lambda-l1", type=float, default=d["lambda_l1"])
    p.add_argument("--lambda-fm", type=float, default=d["lambda_fm"])
    p.add_argument("--vgg-weights", help="local torchvision vgg16 state dict: enables the VGG perceptual loss")
    p.add_argument("--lambda-vgg", type=float, default=d["lambda_vgg"])
    p.add_argument("--lr", type=float, default=d["lr"])
    p.add_argument("--beta1", type=float, default=d["beta1"])
    p.add_argument("--decay-from", type=float, default=d["decay_from"])
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--log-every", type=int, default=d["log_every"])
    p.add_argument("--checkpoint-every", type=int, default=d["checkpoint_every"])
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    p.add_argument("--stop-at", type=int, default=0,
                   help="stop after this iteration with a checkpoint, without exporting (time-boxed sessions); --resume continues")
    p.add_argument("--register", metavar="MODELS_DIR", help="install the generator into this models folder")
    p.add_argument("--node", default="node", help="Node.js executable for --register")
    p.add_argument("--p2pz", default=os.path.join(REPO, "bin", "p2pz.js"), help="p2pz CLI script for --register")
    args = p.parse_args(argv)
    if args.iterations < 1 or args.batch < 1 or args.crop < 8:
        p.error("--iterations and --batch must be positive and --crop at least 8")
    return args


def pick_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA device (check the driver and the torch build)")
    return device


def lr_factor(iteration: int, total: int, decay_from: float) -> float:
    """1 until decay_from·total, then linear to 0 at total."""
    start = int(total * decay_from)
    if iteration < start:
        return 1.0
    return max(0.0, 1.0 - (iteration - start) / max(1, total - start))


def batches(dataset: PairsDataset, batch: int, rng: random.Random):
    """An endless stream of shuffled batches: ([B,3,c,c], [B,3,c,c])."""
    while True:
        order = list(range(len(dataset)))
        rng.shuffle(order)
        for i in range(0, len(order), batch):
            items = [dataset[j] for j in order[i : i + batch]]
            if len(items) < batch and len(order) >= batch:
                continue  # drop the ragged last batch unless the dataset is smaller than one
            yield torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def _truncate_log(path: str, upto: int) -> None:
    """Keeps the log lines of iterations <= upto (a resumed run redoes what came after its checkpoint)."""
    if not os.path.exists(path):
        return
    with open(path, "r", encoding="utf-8") as f:
        kept = [line for line in f if line.strip() and json.loads(line).get("iteration", 0) <= upto]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(kept)


def settings_of(args) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("data", "out", "register", "node", "p2pz", "resume", "stop_at")}


def train(args) -> dict:
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    manifest = read_manifest(args.data)
    G = build_generator(args.arch, args.width, args.blocks, args.depth, dropout=not args.no_dropout)
    if args.crop % G.multiple:
        raise SystemExit(f"--crop {args.crop} must be a multiple of {G.multiple} for this generator")
    D = PatchDiscriminator(args.disc_width, args.disc_layers)
    init_weights(G)
    init_weights(D)
    G.to(device)
    D.to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(args.beta1, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr, betas=(args.beta1, 0.999))
    adversarial = AdversarialLoss(args.gan_loss)
    l1 = torch.nn.L1Loss()
    vgg = VggPerceptualLoss(args.vgg_weights).to(device) if args.vgg_weights else None

    os.makedirs(args.out, exist_ok=True)
    checkpoint = os.path.join(args.out, "checkpoint.pt")
    start = 0
    if args.resume and os.path.exists(checkpoint):
        state = torch.load(checkpoint, map_location=device)
        saved = state.get("settings", {})
        for key in ("arch", "width", "blocks", "depth", "no_dropout", "disc_width", "disc_layers"):
            if key in saved and saved[key] != getattr(args, key):
                raise SystemExit(f"--resume: the checkpoint has {key} = {saved[key]!r}, not {getattr(args, key)!r}; "
                                 "use the same network options or a new --out")
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        start = int(state["iteration"])
        torch.set_rng_state(state["torch_rng"])
        print(json.dumps({"resumed": start}), flush=True)

    dataset = PairsDataset(manifest, args.crop, flip=not args.no_flip, seed=args.seed + start)
    stream = batches(dataset, args.batch, random.Random(args.seed + start))
    log_path = os.path.join(args.out, "log.jsonl")
    _truncate_log(log_path, start)
    log = open(log_path, "a", encoding="utf-8")
    G.train()
    D.train()
    t0 = time.perf_counter()
    window = {"start": t0, "its": 0}

    def save_checkpoint(done: int) -> None:
        tmp = checkpoint + ".tmp"
        torch.save({"G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(), "iteration": done, "torch_rng": torch.get_rng_state(),
                    "settings": settings_of(args)}, tmp)
        os.replace(tmp, checkpoint)

    def step(it: int) -> None:
        factor = lr_factor(it, args.iterations, args.decay_from)
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group["lr"] = args.lr * factor
        x, y = next(stream)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        fake = G(x)

        # D: real pairs (x, y) -> 1, generated pairs (x, G(x)) -> 0.
        opt_d.zero_grad(set_to_none=True)
        real_feats = D(x, y)
        fake_logits = D(x, fake.detach())[-1]
        loss_d = 0.5 * (adversarial(real_feats[-1], True) + adversarial(fake_logits, False))
        loss_d.backward()
        opt_d.step()

        # G: fool D, stay close to pix2pix-zero's edit.
        opt_g.zero_grad(set_to_none=True)
        fake_feats = D(x, fake)
        loss_gan = adversarial(fake_feats[-1], True)
        loss_l1 = l1(fake, y)
        loss_g = loss_gan + args.lambda_l1 * loss_l1
        terms = {"gan": loss_gan.item(), "l1": loss_l1.item()}
        if args.lambda_fm > 0:
            loss_fm = feature_matching_loss(fake_feats, [f.detach() for f in real_feats])
            loss_g = loss_g + args.lambda_fm * loss_fm
            terms["fm"] = loss_fm.item()
        if vgg is not None:
            loss_vgg = vgg(fake, y)
            loss_g = loss_g + args.lambda_vgg * loss_vgg
            terms["vgg"] = loss_vgg.item()
        loss_g.backward()
        opt_g.step()

        window["its"] += 1
        done = it + 1
        if done % args.log_every == 0 or done == args.iterations:
            now = time.perf_counter()
            line = {"iteration": done, "loss_d": loss_d.item(), "loss_g": loss_g.item(), **terms,
                    "lr": args.lr * factor, "it_per_s": window["its"] / max(1e-9, now - window["start"])}
            window.update(start=now, its=0)
            log.write(json.dumps(line) + "\n")
            log.flush()
            print(json.dumps(line), flush=True)
        if done % args.checkpoint_every == 0 or done == args.iterations:
            save_checkpoint(done)

    stop = min(args.iterations, args.stop_at) if args.stop_at > 0 else args.iterations
    it = start
    try:
        for it in range(start, stop):
            step(it)
    except KeyboardInterrupt:
        save_checkpoint(it)  # iteration `it` did not finish: --resume redoes it
        log.close()
        print(json.dumps({"interrupted": it}), flush=True)
        raise
    log.close()
    if stop < args.iterations:
        save_checkpoint(stop)
        print(json.dumps({"stopped": stop}), flush=True)
        return None
    train_s = time.perf_counter() - t0

    # Export with the runtime's contract, then the metadata the registry reads.
    G.eval()
    G.cpu()
    t1 = time.perf_counter()
    export_onnx(G, os.path.join(args.out, GENERATOR_FILE), sample_size=max(G.multiple, 64))
    write_export_check(G, args.out, height=G.multiple + 3, width=2 * G.multiple + 5, seed=args.seed)
    export_s = time.perf_counter() - t1
    meta = write_meta(args.out, manifest.source, manifest.target, manifest.size, manifest.model,
                      manifest.settings, manifest.data_hash)
    summary = {
        "direction": f"{manifest.source} -> {manifest.target}",
        "pairs": len(manifest.pairs),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "torch": torch.__version__,
        "iterations": args.iterations,
        "resumed_from": start,
        "train_seconds": round(train_s, 3),
        "seconds_per_iteration": round(train_s / max(1, args.iterations - start), 5),
        "export_seconds": round(export_s, 3),
        "generator_parameters": sum(p.numel() for p in G.parameters()),
        "settings": settings_of(args),
        "dataHash": meta["dataHash"],
    }
    with open(os.path.join(args.out, "train.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print(json.dumps({"done": summary["iterations"], "train_seconds": summary["train_seconds"]}), flush=True)
    return summary


def register(args) -> None:
    """`p2pz distill register RUN --models MODELS_DIR`: validates with onnxruntime, then installs."""
    cmd = [args.node, args.p2pz, "distill", "register", args.out, "--models", args.register]
    try:
        result = subprocess.run(cmd, check=False)
    except FileNotFoundError:
        raise SystemExit(f"--register needs Node.js ({args.node!r} not found); or run: p2pz distill register {args.out} --models {args.register}")
    if result.returncode != 0:
        raise SystemExit(f"registration failed (exit {result.returncode})")


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        summary = train(args)
    except DatasetError as e:
        print(f"dataset: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command with --resume to continue", file=sys.stderr)
        return 130
    if summary is None:  # --stop-at
        return 0
    if args.register:
        register(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
