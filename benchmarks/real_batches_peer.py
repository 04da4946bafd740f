"""What the Python peers of the real-batch benchmarks share (ankh3_real_step_hf.py,
esm_real_step_hf.py): reading and checking the batches file the C++ side
writes (JSON Lines, one batch a line, each key a list of unpadded id lists),
padding a batch as a Hugging Face collator does, torch.compile with no silent
fall-back to eager, and timing passes over the batches into the one JSON line
the C++ side reads."""
import argparse
import json
import sys
import time

import torch
import torch._dynamo
import transformers

IGNORE = -100


class Peer:
    def __init__(self, name):
        self.name = name

    def fail(self, msg):
        print(f"{self.name}: {msg}", file=sys.stderr)
        sys.exit(2)

    def common_args(self, p: argparse.ArgumentParser):
        """The options every peer takes besides its model's sizes."""
        p.add_argument("--batches", required=True, help="JSON Lines batches file written by the C++ side")
        p.add_argument("--passes", type=int, default=3, help="timed passes over all batches")
        p.add_argument("--warmup_passes", type=int, default=1)
        p.add_argument("--compile", action="store_true", help="wrap the model in torch.compile (default options)")
        p.add_argument("--autocast", default="none", choices=["none", "bf16"])
        p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])

    def check_passes(self, a):
        if a.passes < 1 or a.warmup_passes < 0:
            self.fail("--passes must be at least 1 and --warmup_passes at least 0")

    def check_ids(self, seqs, key, where, vocab_size, ignore_ok):
        if not isinstance(seqs, list) or not seqs:
            self.fail(f"{where}: \"{key}\" must be a non-empty list of token id lists (an empty batch)")
        for i, s in enumerate(seqs):
            if not isinstance(s, list) or not s:
                self.fail(f"{where}: {key}[{i}] must be a non-empty list of token ids")
            for t in s:
                if type(t) is not int:
                    self.fail(f"{where}: {key}[{i}] holds {json.dumps(t)}, not an integer token id")
                if not (0 <= t < vocab_size or (ignore_ok and t == IGNORE)):
                    allowed = f"[0, {vocab_size})" + (f" or {IGNORE}" if ignore_ok else "")
                    self.fail(f"{where}: {key}[{i}] holds token id {t}, outside {allowed}")

    def read_batches(self, path, keys, vocab_size, ignore_ok=(), same_lengths=False):
        """The batches of `path`, each a tuple of id-list lists, one per key.
        ignore_ok: keys whose ids may be -100; same_lengths: every sequence of
        the first key as long as its partner under the second."""
        try:
            f = open(path, encoding="utf-8")
        except OSError as e:
            self.fail(f"cannot read the batches file {path}: {e.strerror}")
        batches = []
        with f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{n}"
                try:
                    b = json.loads(line.rstrip())
                except json.JSONDecodeError as e:
                    self.fail(f"{where}: not a JSON object: {e.msg} (column {e.colno})")
                if not isinstance(b, dict) or any(k not in b for k in keys):
                    self.fail(f"{where}: expected an object with " + " and ".join(f"\"{k}\"" for k in keys))
                for k in keys:
                    self.check_ids(b[k], k, where, vocab_size, k in ignore_ok)
                first, second = keys[0], keys[1]
                if len(b[first]) != len(b[second]):
                    self.fail(f"{where}: {len(b[first])} {first} but {len(b[second])} {second}")
                if same_lengths:
                    for i, (s, t) in enumerate(zip(b[first], b[second])):
                        if len(s) != len(t):
                            self.fail(f"{where}: {first}[{i}] holds {len(s)} tokens but {second}[{i}] {len(t)}")
                batches.append(tuple(b[k] for k in keys))
        if not batches:
            self.fail(f"{path}: no batches")
        return batches


def pad(seqs, value):
    """The sequences padded with `value` to the longest, as one (rows, longest) tensor."""
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def attention_mask(seqs):
    return pad([[1] * len(s) for s in seqs], 0)


def compiled(model, shapes):
    """torch.compile(model), where every shape must run compiled: the per-frame
    and total recompile limits are raised well past the number of shapes, and
    hitting a limit is an error instead of a silent fall-back to eager."""
    limit = max(1024, 16 * shapes)
    cfg = torch._dynamo.config
    for name in ["recompile_limit", "cache_size_limit"]:
        if hasattr(cfg, name):
            setattr(cfg, name, max(getattr(cfg, name), limit))
    for name in ["accumulated_recompile_limit", "accumulated_cache_size_limit"]:
        if hasattr(cfg, name):
            setattr(cfg, name, max(getattr(cfg, name), 64 * limit))
    if hasattr(cfg, "fail_on_recompile_limit_hit"):
        cfg.fail_on_recompile_limit_hit = True
    return torch.compile(model)


def train_and_report(a, model, run, data, opt, fields):
    """Passes of training steps over `data` (tuples of keyword tensors for `run`:
    input_ids, attention_mask, labels), timed; prints the JSON line with `fields`
    added. One step: zero_grad, forward with labels (under bf16 autocast when
    asked), backward, the optimizer step."""
    autocast = a.autocast == "bf16"
    first_loss = []  # the loss of the very first step, for comparison with plm's

    def step(ids, mask, labels):
        model.zero_grad(set_to_none=False)
        with torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=autocast):
            loss = run(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        if not first_loss:
            first_loss.append(loss.item())
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
           "steps": len(data), "warmup_times": warmup, "first_loss": first_loss[0], "torch": torch.__version__,
           "transformers": transformers.__version__, "mode": "compile" if a.compile else "eager", "autocast": a.autocast,
           "attention": getattr(model.config, "_attn_implementation", None) or "eager"}
    out.update(fields)
    if a.compile:
        # How many graphs dynamo compiled and how many graph breaks it took:
        # with default options the first size change recompiles with dynamic
        # sizes, and later shapes reuse that graph unless a guard fails.
        from torch._dynamo.utils import counters
        out["compiled_graphs"] = counters["stats"]["unique_graphs"]
        out["graph_breaks"] = sum(counters["graph_break"].values())
    print(json.dumps(out), flush=True)
