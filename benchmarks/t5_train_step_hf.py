#!/usr/bin/env python3
"""Peer measurement for benchmarks/t5_train_step: one training step (forward,
loss, backward, optionally AdamW) of Hugging Face transformers'
T5ForConditionalGeneration with the same config, batch and device as the C++
side: fp32 on the CPU; on CUDA fp32, TF32 matmuls, or bf16 autocast (fp32
weights, bf16 matmuls), matching plm's --gpu-math. --attn eager|sdpa chooses
the attention implementation (default: transformers' own choice, which
depends on the release); stderr names the one that ran.
Prints one JSON line: {"median_s": ..., "times": [...], "torch": ..., "transformers": ...}.

Needs: pip install torch transformers (for the benchmark only)."""
import argparse
import sys
import torch
from transformers import T5Config, T5ForConditionalGeneration
from transformers import __version__ as transformers_version

from hf_step_timing import report_median


def main():
    p = argparse.ArgumentParser()
    for name in ["d_model", "d_kv", "d_ff", "num_heads", "num_layers", "num_decoder_layers", "vocab_size",
                 "num_buckets", "max_distance", "batch", "src_len", "tgt_len", "threads", "reps", "warmup"]:
        p.add_argument("--" + name, type=int, required=True)
    p.add_argument("--feed_forward_proj", default="gated-gelu")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--math", default="fp32", choices=["fp32", "tf32", "bf16"])
    p.add_argument("--adamw", action="store_true")
    p.add_argument("--attn", choices=["eager", "sdpa"], help="attention implementation (default: transformers' own choice)")
    a = p.parse_args()
    dev = torch.device(a.device)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.math == "tf32"
        torch.backends.cudnn.allow_tf32 = a.math == "tf32"
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    attn_kw = {"attn_implementation": a.attn} if a.attn else {}  # none: transformers' default
    cfg = T5Config(vocab_size=a.vocab_size, d_model=a.d_model, d_kv=a.d_kv, d_ff=a.d_ff, num_heads=a.num_heads,
                   num_layers=a.num_layers, num_decoder_layers=a.num_decoder_layers,
                   relative_attention_num_buckets=a.num_buckets, relative_attention_max_distance=a.max_distance,
                   feed_forward_proj=a.feed_forward_proj, dropout_rate=0.0, tie_word_embeddings=False,
                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **attn_kw)
    model = T5ForConditionalGeneration(cfg).float().train().to(dev)
    attn = getattr(model.config, "_attn_implementation", None) or "eager"  # older releases: eager only
    if a.attn and attn != a.attn:
        sys.exit(f"{sys.argv[0]}: --attn {a.attn} asked, transformers {transformers_version} runs {attn}")
    # Ankh's head is untied; some transformers versions tie it regardless of the flag.
    if model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr():
        model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, a.vocab_size, (a.batch, a.src_len), generator=g).to(dev)
    labels = torch.randint(3, a.vocab_size, (a.batch, a.tgt_len), generator=g).to(dev)
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
