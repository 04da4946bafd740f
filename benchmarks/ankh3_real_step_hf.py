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

import torch
from transformers import T5Config, T5ForConditionalGeneration

from real_batches_peer import IGNORE, Peer, attention_mask, compiled, pad, train_and_report

PAD, EOS = 0, 1
peer = Peer("ankh3_real_step_hf")


def batch_tensors(inputs, targets, dev):
    """What a Hugging Face collator gives T5: input_ids padded with 0, the
    attention mask, labels padded with -100 (the model shifts them right into
    decoder_input_ids, replacing -100 by pad, and its loss ignores -100)."""
    return pad(inputs, PAD).to(dev), attention_mask(inputs).to(dev), pad(targets, IGNORE).to(dev)


def main():
    p = argparse.ArgumentParser()
    for name in ["d_model", "d_kv", "d_ff", "num_heads", "num_layers", "num_decoder_layers", "vocab_size",
                 "num_buckets", "max_distance", "threads"]:
        p.add_argument("--" + name, type=int, required=True)
    p.add_argument("--feed_forward_proj", default="gated-silu")
    peer.common_args(p)
    a = p.parse_args()
    peer.check_passes(a)
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)

    batches = peer.read_batches(a.batches, ("inputs", "targets"), a.vocab_size)
    data = [batch_tensors(i, t, dev) for i, t in batches]
    shapes = {(ids.shape[0], ids.shape[1], labels.shape[1]) for ids, _, labels in data}

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
    run = compiled(model, len(shapes)) if a.compile else model
    train_and_report(a, model, run, data, opt, {
        "real_tokens": sum(len(s) for i, t in batches for s in i + t),
        "padded_tokens": sum(ids.numel() + labels.numel() for ids, _, labels in data), "shapes": len(shapes)})


if __name__ == "__main__":
    main()
