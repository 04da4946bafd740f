#!/usr/bin/env python3
"""Peer measurement for benchmarks/esm_embed: mean embeddings of the final
layer of transformers' EsmModel (float32, eval, torch.no_grad) over the
proteins the C++ side wrote (--sequences: one per line, already cut), from the
checkpoint it saved (--model: config.json, model.safetensors, vocab.txt).

One pass, as Hugging Face users embed a set of proteins: EsmTokenizer
(<cls> residues <eos>), proteins sorted by length, batches padded to their
longest under --token_budget padded tokens (the rule of plm's train::embed),
the mean of last_hidden_state over the residue tokens. With --fixed_batch B,
a second pass of plain batches of B proteins in file order is timed as well.
With --plm_embeddings (float32, proteins x hidden), also the largest
difference from plm's mean embeddings, relative to the largest |value| of a
protein's embedding.

Prints one JSON line: {"median_s": ..., "times": [...], "torch": ..., "transformers": ..., ...}.

Needs: pip install torch transformers (for the benchmark only)."""
import argparse
import json
import os
import resource
import time

import numpy as np
import torch
import transformers
from transformers import EsmModel, EsmTokenizer


def budget_batches(lengths, budget):
    """Sorted by token count (stable); a batch grows while rows x longest <= budget."""
    tokens = [n + 2 for n in lengths]
    order = sorted(range(len(tokens)), key=lambda i: tokens[i])
    batches, s = [], 0
    while s < len(order):
        e = s + 1
        while e < len(order) and (e - s + 1) * tokens[order[e]] <= budget:
            e += 1
        batches.append(order[s:e])
        s = e
    return batches


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--sequences", required=True)
    p.add_argument("--plm_embeddings")
    for name in ["token_budget", "threads", "reps", "warmup", "fixed_batch"]:
        p.add_argument("--" + name, type=int, required=name != "fixed_batch", default=0)
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    tok = EsmTokenizer(vocab_file=os.path.join(a.model, "vocab.txt"))
    model = EsmModel.from_pretrained(a.model, add_pooling_layer=False, attn_implementation=a.attn, dtype=torch.float32).eval()
    with open(a.sequences) as f:
        seqs = [line.strip() for line in f if line.strip()]
    n = len(seqs)
    tokenize_s = [0.0]

    def embed(batches):
        out = [None] * n
        tokenize_s[0] = 0.0
        with torch.no_grad():
            for rows in batches:
                t0 = time.perf_counter()
                enc = tok([seqs[i] for i in rows], padding=True, return_tensors="pt")
                tokenize_s[0] += time.perf_counter() - t0
                h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
                m = enc["attention_mask"].clone()
                m[:, 0] = 0  # <cls>
                m[torch.arange(m.shape[0]), enc["attention_mask"].sum(1) - 1] = 0  # <eos>
                mean = (h * m.unsqueeze(-1).to(h.dtype)).sum(1) / m.sum(1, keepdim=True).to(h.dtype)
                for j, i in enumerate(rows):
                    out[i] = mean[j]
        return torch.stack(out)

    by_budget = budget_batches([len(s) for s in seqs], a.token_budget)
    result = {}
    times = timed(lambda: result.__setitem__("emb", embed(by_budget)), a.warmup, a.reps)
    report = {"median_s": times[len(times) // 2], "times": times, "torch": torch.__version__,
              "transformers": transformers.__version__, "attn": model.config._attn_implementation,
              "batches": len(by_budget), "tokenize_s": tokenize_s[0],
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if a.plm_embeddings:
        plm = np.fromfile(a.plm_embeddings, dtype=np.float32)
        hf = result["emb"].numpy().astype(np.float64)
        assert plm.size == hf.size, f"{a.plm_embeddings}: {plm.size} floats, expected {hf.size}"
        plm = plm.reshape(hf.shape).astype(np.float64)
        report["max_rel_diff"] = float((np.abs(plm - hf).max(1) / np.abs(hf).max(1)).max())
    if a.fixed_batch > 0:
        fixed = [list(range(s, min(s + a.fixed_batch, n))) for s in range(0, n, a.fixed_batch)]
        report["fixed_times"] = timed(lambda: embed(fixed), a.warmup, a.reps)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
