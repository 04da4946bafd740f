#!/usr/bin/env python3
"""Peer measurement for the Ankh3 real-batch pre-training benchmark: passes of
training steps (forward with labels, loss, backward, AdamW) of Hugging Face
transformers' T5ForConditionalGeneration with Ankh3's settings (gated-SiLU
feed-forward, untied head) over the variable-length batches the C++ side
wrote (--batches: JSON Lines, one batch a line,
{"inputs": [[id, ...], ...], "targets": [[id, ...], ...]}, unpadded, each
sequence ending with eos 1). plm packs these sequences; the peer does what
Hugging Face users do and pads each batch to its longest input and its longest
target (the batches are already grouped by length, as group_by_length does).
Eager or torch.compile (--compile), fp32 or bf16 autocast (--autocast bf16,
fp32 master weights), CPU or CUDA.
Prints one JSON line: {"median_s": <median pass time>, "times": [...], ...,
"torch": ..., "transformers": ...}.

Needs: pip install torch transformers (for the benchmark only)."""
import argparse
import json
import sys
import time

import torch
import torch._dynamo
import transformers
from transformers import T5Config, T5ForConditionalGeneration

PAD, EOS, IGNORE = 0, 1, -100


def fail(msg):
    print(f"ankh3_real_step_hf: {msg}", file=sys.stderr)
    sys.exit(2)


def check_ids(seqs, key, where, vocab_size):
    if not isinstance(seqs, list) or not seqs:
        fail(f"{where}: \"{key}\" must be a non-empty list of token id lists (an empty batch)")
    for i, s in enumerate(seqs):
        if not isinstance(s, list) or not s:
            fail(f"{where}: {key}[{i}] must be a non-empty list of token ids")
        for t in s:
            if type(t) is not int:
                fail(f"{where}: {key}[{i}] holds {json.dumps(t)}, not an integer token id")
            if not 0 <= t < vocab_size:
                fail(f"{where}: {key}[{i}] holds token id {t}, outside [0, {vocab_size})")


def read_batches(path, vocab_size):
    """The batches of `path`, each (inputs, targets): lists of id lists."""
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        fail(f"cannot read the batches file {path}: {e.strerror}")
    batches = []
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                b = json.loads(line.rstrip())
            except json.JSONDecodeError as e:
                fail(f"{where}: not a JSON object: {e.msg} (column {e.colno})")
            if not isinstance(b, dict) or "inputs" not in b or "targets" not in b:
                fail(f"{where}: expected an object with \"inputs\" and \"targets\"")
            check_ids(b["inputs"], "inputs", where, vocab_size)
            check_ids(b["targets"], "targets", where, vocab_size)
            if len(b["inputs"]) != len(b["targets"]):
                fail(f"{where}: {len(b['inputs'])} inputs but {len(b['targets'])} targets")
            batches.append((b["inputs"], b["targets"]))
    if not batches:
        fail(f"{path}: no batches")
    return batches


def pad(seqs, value):
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def batch_tensors(inputs, targets, dev):
    """What a Hugging Face collator gives T5: input_ids padded with 0, the
    attention mask, labels padded with -100 (the model shifts them right into
    decoder_input_ids, replacing -100 by pad, and its loss ignores -100)."""
    ids = pad(inputs, PAD)
    mask = pad([[1] * len(s) for s in inputs], 0)
    labels = pad(targets, IGNORE)
    return ids.to(dev), mask.to(dev), labels.to(dev)


def main():
    p = argparse.ArgumentParser()
    for name in ["d_model", "d_kv", "d_ff", "num_heads", "num_layers", "num_decoder_layers", "vocab_size",
                 "num_buckets", "max_distance", "threads"]:
        p.add_argument("--" + name, type=int, required=True)
    p.add_argument("--feed_forward_proj", default="gated-silu")
    p.add_argument("--batches", required=True, help="JSON Lines batches file written by the C++ side")
    p.add_argument("--passes", type=int, default=3, help="timed passes over all batches")
    p.add_argument("--warmup_passes", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="wrap the model in torch.compile (default options)")
    p.add_argument("--autocast", default="none", choices=["none", "bf16"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = p.parse_args()
    if a.passes < 1 or a.warmup_passes < 0:
        fail("--passes must be at least 1 and --warmup_passes at least 0")
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)

    batches = read_batches(a.batches, a.vocab_size)
    data = [batch_tensors(i, t, dev) for i, t in batches]
    shapes = {(ids.shape[0], ids.shape[1], labels.shape[1]) for ids, _, labels in data}
    real_tokens = sum(len(s) for i, t in batches for s in i + t)
    padded_tokens = sum(ids.numel() + labels.numel() for ids, _, labels in data)

    torch.manual_seed(0)
    cfg = T5Config(vocab_size=a.vocab_size, d_model=a.d_model, d_kv=a.d_kv, d_ff=a.d_ff, num_heads=a.num_heads,
                   num_layers=a.num_layers, num_decoder_layers=a.num_decoder_layers,
                   relative_attention_num_buckets=a.num_buckets, relative_attention_max_distance=a.max_distance,
                   feed_forward_proj=a.feed_forward_proj, dropout_rate=0.0, tie_word_embeddings=False,
                   pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD)
    model = T5ForConditionalGeneration(cfg).float().train().to(dev)
    # Ankh's head is untied; some transformers versions tie it regardless of the flag.
    if model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr():
        model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    run = model
    if a.compile:
        # Every shape must run compiled: raise the per-frame and total
        # recompile limits well past the number of shapes, and make hitting a
        # limit an error instead of a silent fall-back to eager.
        limit = max(1024, 16 * len(shapes))
        cfg_dyn = torch._dynamo.config
        for name in ["recompile_limit", "cache_size_limit"]:
            if hasattr(cfg_dyn, name):
                setattr(cfg_dyn, name, max(getattr(cfg_dyn, name), limit))
        for name in ["accumulated_recompile_limit", "accumulated_cache_size_limit"]:
            if hasattr(cfg_dyn, name):
                setattr(cfg_dyn, name, max(getattr(cfg_dyn, name), 64 * limit))
        if hasattr(cfg_dyn, "fail_on_recompile_limit_hit"):
            cfg_dyn.fail_on_recompile_limit_hit = True
        run = torch.compile(model)
    autocast = a.autocast == "bf16"

    def step(ids, mask, labels):
        model.zero_grad(set_to_none=False)
        with torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=autocast):
            loss = run(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        if a.device == "cuda":
            torch.cuda.synchronize()

    def one_pass():
        t0 = time.perf_counter()
        for ids, mask, labels in data:
            step(ids, mask, labels)
        return time.perf_counter() - t0

    warmup = [one_pass() for _ in range(a.warmup_passes)]
    times = sorted(one_pass() for _ in range(a.passes))
    out = {"median_s": times[len(times) // 2], "times": times, "min_s": times[0], "max_s": times[-1],
           "steps": len(data), "real_tokens": real_tokens, "padded_tokens": padded_tokens, "shapes": len(shapes),
           "warmup_times": warmup, "torch": torch.__version__, "transformers": transformers.__version__,
           "mode": "compile" if a.compile else "eager", "autocast": a.autocast,
           "attention": getattr(model.config, "_attn_implementation", None) or "eager"}
    if a.compile:
        # How many graphs dynamo compiled and how many graph breaks it took:
        # with default options the first size change recompiles with dynamic
        # sizes, and later shapes reuse that graph unless a guard fails.
        from torch._dynamo.utils import counters
        out["compiled_graphs"] = counters["stats"]["unique_graphs"]
        out["graph_breaks"] = sum(counters["graph_break"].values())
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
