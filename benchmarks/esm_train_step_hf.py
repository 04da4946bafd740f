#!/usr/bin/env python3
"""Peer measurement for benchmarks/esm_train_step: one masked-LM training step
(forward, loss, backward, optionally AdamW) of transformers' EsmForMaskedLM
with ESM-2's settings (rotary positions, token dropout, pre-norm) on the batch
the C++ side wrote (--batch_file: int32 ids then int32 labels). --attn eager|sdpa
chooses the attention implementation (default: transformers' own choice, which
depends on the release); stderr names the one that ran.
Prints one JSON line: {"median_s": ..., "times": [...], "torch": ..., "transformers": ...}.

Needs: pip install torch transformers (for the benchmark only)."""
import argparse
import sys

import numpy as np
import torch
from transformers import EsmConfig, EsmForMaskedLM
from transformers import __version__ as transformers_version

from hf_step_timing import report_median


def main():
    p = argparse.ArgumentParser()
    for name in ["hidden_size", "layers", "heads", "ffn", "vocab", "batch", "len", "threads", "reps", "warmup"]:
        p.add_argument("--" + name, type=int, required=True)
    p.add_argument("--batch_file", required=True)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--math", default="fp32", choices=["fp32", "tf32", "bf16"])
    p.add_argument("--adamw", action="store_true")
    p.add_argument("--attn", choices=["eager", "sdpa"], help="attention implementation (default: transformers' own choice)")
    a = p.parse_args()
    dev = torch.device(a.device)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.math == "tf32"
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    attn_kw = {"attn_implementation": a.attn} if a.attn else {}  # none: transformers' default
    cfg = EsmConfig(vocab_size=a.vocab, hidden_size=a.hidden_size, num_hidden_layers=a.layers, num_attention_heads=a.heads,
                    intermediate_size=a.ffn, position_embedding_type="rotary", token_dropout=True, mask_token_id=32,
                    pad_token_id=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-5,
                    emb_layer_norm_before=False, max_position_embeddings=max(1026, a.len + 2), **attn_kw)
    model = EsmForMaskedLM(cfg).float().train().to(dev)
    attn = getattr(model.config, "_attn_implementation", None) or "eager"  # older releases: eager only
    if a.attn and attn != a.attn:
        sys.exit(f"{sys.argv[0]}: --attn {a.attn} asked, transformers {transformers_version} runs {attn}")
    raw = np.fromfile(a.batch_file, dtype=np.int32)
    n = a.batch * a.len
    assert raw.size == 2 * n, f"{a.batch_file}: {raw.size} ints, expected {2 * n}"
    ids = torch.from_numpy(raw[:n].reshape(a.batch, a.len).astype(np.int64)).to(dev)
    labels = torch.from_numpy(raw[n:].reshape(a.batch, a.len).astype(np.int64)).to(dev)
    mask = torch.ones_like(ids)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4) if a.adamw else None
    autocast = a.device == "cuda" and a.math == "bf16"

    def step():
        model.zero_grad(set_to_none=False)
        with torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=autocast):
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        if opt is not None:
            opt.step()
        if a.device == "cuda":
            torch.cuda.synchronize()

    report_median(step, a.warmup, a.reps)
    # On stderr (the benchmark reads stdout): the attention that ran and, on CUDA, the allocator's peaks.
    note = f"peer: attention {attn}"
    if a.device == "cuda":
        note += (f"; peak GPU memory (torch.cuda) {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB allocated, "
                 f"{torch.cuda.max_memory_reserved() / 2**20:.0f} MiB reserved")
    print(note, file=sys.stderr)


if __name__ == "__main__":
    main()
