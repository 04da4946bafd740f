#!/usr/bin/env python3
"""Peak memory of loading a sharded bf16 T5 checkpoint: plm against transformers, same machine, same run.

Makes (once, under --dir) a random T5 (gated-silu, untied, d_model 768, d_ff 2048, 8 + 8 layers,
vocab 256; about 131 M parameters, 500 MiB in fp32) saved as bf16 in 200 MB shards and its fp32
twin in one file, then runs build/benchmarks/load_checkpoint on the sharded copy (with the fp32
twin's logits compared) and transformers' AutoModelForSeq2SeqLM.from_pretrained(dtype=float32) on
the same directory, each in a fresh process, and prints peak RSS against the fp32 size.

    pip install torch transformers safetensors
    python3 benchmarks/load_checkpoint.py --dir /tmp/plm-load [--program build/benchmarks/load_checkpoint]
"""
import argparse
import os
import subprocess
import sys


def make(root):
    sharded, whole = os.path.join(root, "sharded_bf16"), os.path.join(root, "fp32")
    if os.path.exists(os.path.join(sharded, "model.safetensors.index.json")) and os.path.exists(os.path.join(whole, "model.safetensors")):
        return sharded, whole
    import torch
    from transformers import T5Config, T5ForConditionalGeneration
    config = T5Config(vocab_size=256, d_model=768, d_kv=64, num_heads=12, d_ff=2048, num_layers=8, num_decoder_layers=8,
                      feed_forward_proj="gated-silu", tie_word_embeddings=False, dropout_rate=0.0, decoder_start_token_id=0)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config)
    model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.shared.weight).normal_(0.0, 768 ** -0.5))
    model.all_tied_weights_keys.pop("lm_head.weight", None)
    model = model.to(torch.bfloat16)
    model.save_pretrained(sharded, max_shard_size="200MB")
    model.to(torch.float32).save_pretrained(whole)  # the same values: bf16 widened exactly
    return sharded, whole


# VmHWM: the process's own peak (ru_maxrss also counts the parent's peak at fork).
PEAK = "int([l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]) / 1024"


def transformers_peak(directory):
    code = ("import time, torch, transformers\n"
            "t0 = time.perf_counter()\n"
            f"m = transformers.AutoModelForSeq2SeqLM.from_pretrained({directory!r}, dtype=torch.float32)\n"
            "t = time.perf_counter() - t0\n"
            "n = sum(p.numel() for p in m.parameters())\n"
            f"print(t, n, {PEAK})\n")
    base = f"import torch, transformers\nprint(0, {PEAK})\n"
    t, n, rss = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-3:]
    _, idle = subprocess.run([sys.executable, "-c", base], capture_output=True, text=True, check=True).stdout.split()[-2:]
    return float(t), int(n), float(rss), float(idle)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--program", default="build/benchmarks/load_checkpoint")
    a = ap.parse_args()
    sharded, whole = make(a.dir)
    shards = sorted(f for f in os.listdir(sharded) if f.endswith(".safetensors"))
    print(f"checkpoint: {sharded} ({len(shards)} bf16 shards), twin {whole} (fp32)")
    out = subprocess.run([a.program, sharded, whole], capture_output=True, text=True, check=True).stdout
    print(out, end="")
    t, n, rss, idle = transformers_peak(sharded)
    fp32 = n * 4 / 2**20
    print(f"transformers from_pretrained(dtype=float32): {t:.2f} s, peak RSS {rss:.1f} MiB = {rss / fp32:.2f}x the fp32 size "
          f"({rss - idle:.1f} MiB above the {idle:.1f} MiB of importing torch and transformers)")


if __name__ == "__main__":
    main()
