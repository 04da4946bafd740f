#!/usr/bin/env python3
"""Peer measurement for attention_memory: the peak resident memory of one
training step (forward with labels, loss, backward) of Hugging Face
transformers' T5ForConditionalGeneration with Ankh3's settings, above the
resident set just before the step, at the C++ side's shapes (--batch
sequences of --length source and --target target tokens). --attn picks
transformers' eager or SDPA attention.
Prints one JSON line: {"step_peak_mib": ..., "median_s": <the step's seconds>,
"torch": ..., "transformers": ...}.

Needs: pip install torch transformers (for the benchmark only)."""
import argparse
import json
import resource
import sys
import time

import torch
import transformers
from transformers import T5Config, T5ForConditionalGeneration

PAD, EOS = 0, 1


def rss_mib():
    with open("/proc/self/statm") as f:
        resident = int(f.read().split()[1])
    return resident * resource.getpagesize() / 2**20


def main():
    p = argparse.ArgumentParser()
    for name in ["d_model", "d_kv", "d_ff", "num_heads", "num_layers", "num_decoder_layers", "vocab_size",
                 "num_buckets", "max_distance", "threads", "batch", "length", "target"]:
        p.add_argument("--" + name, type=int, required=True)
    p.add_argument("--feed_forward_proj", default="gated-silu")
    p.add_argument("--attn", default="eager", choices=["eager", "sdpa"])
    a = p.parse_args()
    for name in ["threads", "batch", "length", "target"]:
        if getattr(a, name) <= 0:
            sys.exit(f"attention_memory_hf: --{name} must be positive, got {getattr(a, name)}")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=a.vocab_size, d_model=a.d_model, d_kv=a.d_kv, d_ff=a.d_ff, num_heads=a.num_heads,
                   num_layers=a.num_layers, num_decoder_layers=a.num_decoder_layers,
                   relative_attention_num_buckets=a.num_buckets, relative_attention_max_distance=a.max_distance,
                   feed_forward_proj=a.feed_forward_proj, dropout_rate=0.0, tie_word_embeddings=False,
                   pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD)
    model = T5ForConditionalGeneration._from_config(cfg, attn_implementation=a.attn).float().train()
    ids = torch.randint(5, 25, (a.batch, a.length))
    mask = torch.ones_like(ids)
    labels = torch.randint(5, 25, (a.batch, a.target))
    for prm in model.parameters():  # the gradients exist before the step, as plm's
        prm.grad = torch.zeros_like(prm)
    before = rss_mib()
    t0 = time.perf_counter()
    model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"step_peak_mib": peak - before, "median_s": seconds, "attn": model.config._attn_implementation,
                      "torch": torch.__version__, "transformers": transformers.__version__}))


if __name__ == "__main__":
    main()
