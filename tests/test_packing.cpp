// Packed batches (core/packing.hpp): finite-difference checks of attention,
// the stacks and the whole T5 model on packed input, and packed == padded for
// losses, logits and every parameter gradient (T5 / Ankh3, and rotary
// attention as ESM-2 uses it); packed collation and the real-token budget.
#include <algorithm>
#include <numeric>

#include "nn_test_support.hpp"
#include "plm/nn/esm.hpp"
#include "plm/nn/t5.hpp"
#include "plm/objectives/cross_entropy.hpp"
#include "plm/objectives/multitask.hpp"
#include "plm/samplers/batching.hpp"
#include "plm/samplers/mlm.hpp"
#include "plm/train/seq2seq_step.hpp"

using namespace plm;
using namespace plm::nn;
using namespace plm::test;
using plm::testing::dot;

namespace {
using D = double;
using DT = Tensor<cpu, D>;
using PS = ParameterSet<cpu, D>;


DT copy_of(ConstView<cpu, D> v) {
  DT t(v.shape());
  std::copy(v.data(), v.data() + v.numel(), t.data());
  return t;
}

// Rows of a padded (B, T, ...) tensor's valid positions, end to end: the packed layout.
DT pack_rows(const DT& padded, const Packing& p) {
  const index_t row = padded.numel() / (padded.dim(0) * padded.dim(1)), Tn = padded.dim(1);
  DT out(Shape{1, p.tokens(), row});
  for (index_t b = 0; b < p.sequences(); ++b)
    std::copy(padded.data() + b * Tn * row, padded.data() + (b * Tn + p.length(b)) * row, out.data() + p.offset(b) * row);
  return out;
}
}  // namespace

TEST_CASE("Packing: offsets, positions, attention blocks, errors") {
  const Packing p({3, 1, 4});
  CHECK(p.sequences() == 3);
  CHECK(p.tokens() == 8);
  CHECK(p.max_length() == 4);
  CHECK(p.offsets() == std::vector<index_t>{0, 3, 4, 8});
  CHECK(p.positions() == std::vector<std::int32_t>{0, 1, 2, 0, 0, 1, 2, 3});
  CHECK(Packing::from_offsets({0, 3, 4, 8}) == p);
  const AttentionPacking cross(p, Packing({2, 2, 5}));
  CHECK(cross.blocks == std::vector<index_t>{0, 6, 8, 28});
  CHECK(cross.pairs() == 28);
  check_error([] { Packing({3, 0, 2}); }, "sequence 1 has length 0");
  check_error([] { Packing::from_offsets({1, 3}); }, "offsets must start at 0, not 1");
  check_error([] { Packing::from_offsets({0, 3, 2}); }, "sequence 1 has length -1");
  check_error([&] { AttentionPacking(p, Packing({2, 2})); }, "3 query sequences but 2 key sequences");
}

TEST_CASE("gradient: packed self-attention (bias blocks, causal, rotary, dropout, extra probability gradient) and cross-attention") {
  const Packing p({4, 1, 3});
  const AttentionPacking self = AttentionPacking::self(p);
  // Blockwise (the default) and with the probabilities kept; variant 2 reads
  // them, so it needs them kept; variant 4 drops probabilities in a training pass.
  for (int variant = 0; variant < 5; ++variant)
  for (const bool keep : {false, true}) {
    if (variant == 2 && !keep) continue;
    CAPTURE(variant);
    CAPTURE(keep);
    AttentionShape s{6, 2, 4, 0.7};
    if (variant == 3) s.rotary_base = 10000, s.bias = true;
    PS ps;
    Attention<cpu, D> attn(ps, "attn", s, 1.0, variant == 4 ? 0.3 : 0.0);
    ps.allocate();
    randomize(ps, 4 + variant);
    DT x = random_tensor<D>(Shape{1, p.tokens(), 6}, 1), bias = random_tensor<D>(Shape{2 * self.pairs()}, 2);
    DT out(x.shape()), r = random_tensor<D>(x.shape(), 3), rp = random_tensor<D>(Shape{2 * self.pairs()}, 6);
    SoftmaxMask<cpu, D> m;
    m.packed = &self;
    if (variant < 3) m.bias = bias;
    m.causal = variant == 1 || variant == 2 || variant == 4;
    const bool extra = variant == 2;
    Attention<cpu, D>::Cache c;
    c.keep_probs = keep;
    const DropoutKey key = DropoutKey::of(variant == 4 ? Pass::train(77) : Pass::eval());
    auto loss = [&] {
      attn.forward(x, x, m, out, c, key);
      CHECK(c.blockwise == !keep);
      CHECK(c.probs.empty() == !keep);
      return dot<D>(out, r) + (extra ? dot<D>(c.probs, rp) : 0.0);
    };
    DT dx(x.shape()), dbias(bias.shape());
    auto grads = [&] {
      ps.zero_grad();
      loss();
      ops<cpu>::fill<D>(dbias, 0);
      attn.backward(x, x, r, dx, dx, variant < 3 ? TensorView<cpu, D>(dbias) : TensorView<cpu, D>{}, c,
                    extra ? ConstView<cpu, D>(rp) : ConstView<cpu, D>{});
    };
    std::vector<std::pair<DT*, DT*>> inputs{{&x, &dx}};
    if (variant < 3) inputs.push_back({&bias, &dbias});
    check_all(ps, loss, grads, inputs, "packed self-attention variant " + std::to_string(variant) + (keep ? ", probabilities kept" : ""));
  }
  // Cross-attention: 3 query sequences against 3 key sequences of other lengths.
  const Packing kp({2, 5, 1});
  const AttentionPacking cross(p, kp);
  PS ps;
  Attention<cpu, D> attn(ps, "cross", AttentionShape{4, 2, 3, 0.5});
  ps.allocate();
  randomize(ps, 9);
  DT xq = random_tensor<D>(Shape{1, p.tokens(), 4}, 1), xkv = random_tensor<D>(Shape{1, kp.tokens(), 4}, 2);
  DT out(xq.shape()), r = random_tensor<D>(xq.shape(), 3);
  SoftmaxMask<cpu, D> m;
  m.packed = &cross;
  Attention<cpu, D>::Cache c;
  auto loss = [&] {
    attn.forward(xq, xkv, m, out, c);
    return dot<D>(out, r);
  };
  DT dq(xq.shape()), dkv(xkv.shape());
  auto grads = [&] {
    ps.zero_grad();
    loss();
    ops<cpu>::fill<D>(dkv, 0);
    attn.backward(xq, xkv, r, dq, dkv, {}, c);
  };
  check_all(ps, loss, grads, {{&xq, &dq}, {&xkv, &dkv}}, "packed cross-attention");
  // A packing that does not describe the input is refused by name.
  const Packing wrong({2, 2});
  const AttentionPacking bad = AttentionPacking::self(wrong);
  m.packed = &bad;
  check_error([&] { attn.forward(xq, xq, m, out, c); }, "the packing holds 4 and 4 tokens");
}

// Lengths that cross the blockwise op's query (64) and key (256) blocks: the
// online softmax, the causal block ends and the dropout draws of later blocks.
template <class T>
void blockwise_matches_kept(double tol) {
  using TT = Tensor<cpu, T>;
  const Packing qp({300, 70, 1, 129}), kp({300, 70, 1, 129}), cq({65, 3, 260, 2}), ck({270, 1, 64, 5});
  struct Case {
    const Packing *q, *k;
    bool causal, bias, rotary;
    double dropout;
  };
  for (const Case& cs : {Case{&qp, &kp, false, true, false, 0.0}, Case{&qp, &kp, true, true, false, 0.2},
                         Case{&qp, &kp, true, false, true, 0.0}, Case{&cq, &ck, false, false, false, 0.1},
                         Case{&cq, &ck, true, true, false, 0.0}}) {  // causal with Lk < Lq: rows that see no key
    CAPTURE(cs.causal);
    CAPTURE(cs.dropout);
    const AttentionPacking pk(*cs.q, *cs.k);
    AttentionShape s{12, 3, 4, 0.6};
    if (cs.rotary) s.rotary_base = 10000, s.bias = true;
    nn::ParameterSet<cpu, T> ps;
    Attention<cpu, T> attn(ps, "attn", s, 1.0, cs.dropout);
    ps.allocate();
    std::uint64_t stream = 0;
    const auto fill = [&](TensorView<cpu, T> t) { plm::testing::fill_uniform<T>(t, 5, ++stream, -0.8, 0.8); };
    fill(ps.values());
    TT xq(Shape{1, pk.q.tokens(), 12}), xk(Shape{1, pk.k.tokens(), 12}), r(xq.shape()), bias(Shape{3 * pk.pairs()});
    fill(xq), fill(xk), fill(r), fill(bias);
    SoftmaxMask<cpu, T> m;
    m.packed = &pk;
    m.causal = cs.causal;
    if (cs.bias) m.bias = bias;
    const DropoutKey key = DropoutKey::of(Pass::train(11)).in_layer(2);
    std::vector<TT> results;
    for (const bool keep : {false, true}) {
      typename Attention<cpu, T>::Cache c;
      c.keep_probs = keep;
      TT out(xq.shape()), dxq(xq.shape()), dxk(xk.shape()), dbias(bias.shape());
      ops<cpu>::fill<T>(dxk, T(0));
      ops<cpu>::fill<T>(dbias, T(0));
      ps.zero_grad();
      attn.forward(xq, xk, m, out, c, key);
      attn.backward(xq, xk, r, dxq, dxk, cs.bias ? TensorView<cpu, T>(dbias) : TensorView<cpu, T>{}, c);
      results.push_back(std::move(out));
      results.push_back(std::move(dxq));
      results.push_back(std::move(dxk));
      results.push_back(std::move(dbias));
      TT grads(ps.grads().shape());
      ops<cpu>::copy<T>(ps.grads(), grads);
      results.push_back(std::move(grads));
    }
    const std::size_t half = results.size() / 2;
    for (std::size_t i = 0; i < half; ++i) {
      const TT &a = results[i], &b = results[half + i];
      REQUIRE(a.numel() == b.numel());
      double diff = 0, scale = 0;
      for (index_t j = 0; j < a.numel(); ++j) {
        diff = std::max(diff, std::abs(static_cast<double>(a.data()[j]) - static_cast<double>(b.data()[j])));
        scale = std::max(scale, std::abs(static_cast<double>(b.data()[j])));
      }
      CAPTURE(i);
      CHECK(diff <= tol * std::max(scale, 1.0));
    }
  }
}

TEST_CASE("blockwise packed attention equals the kept-probabilities path across block edges (double and float)") {
  blockwise_matches_kept<double>(1e-12);
  blockwise_matches_kept<float>(2e-5);
}

TEST_CASE("blockwise packed attention: no probabilities to read, and a gradient on them is refused by name") {
  const Packing p({3, 2});
  const AttentionPacking pk = AttentionPacking::self(p);
  PS ps;
  Attention<cpu, D> attn(ps, "attn", AttentionShape{4, 2, 2, 1.0});
  ps.allocate();
  randomize(ps, 1);
  DT x = random_tensor<D>(Shape{1, 5, 4}, 1), out(x.shape()), dx(x.shape()), extra(Shape{2 * pk.pairs()});
  SoftmaxMask<cpu, D> m;
  m.packed = &pk;
  Attention<cpu, D>::Cache c;
  attn.forward(x, x, m, out, c);
  CHECK(c.probs.empty());
  CHECK(c.lse.shape() == Shape{2, 5});
  check_error([&] { attn.backward(x, x, out, dx, dx, {}, c, extra); }, "set Cache::keep_probs");
}

TEST_CASE("packed rotary self-attention equals padded, outputs and gradients") {
  AttentionShape s{8, 2, 4, 0.5};
  s.rotary_base = 10000, s.bias = true;
  PS ps;
  Attention<cpu, D> attn(ps, "attn", s);
  ps.allocate();
  randomize(ps, 3);
  const std::vector<index_t> len{5, 2, 4};
  const index_t Bn = 3, Tn = 5;
  const Packing p(len);
  DT xp = random_tensor<D>(Shape{Bn, Tn, 8}, 1), r = random_tensor<D>(Shape{Bn, Tn, 8}, 2);
  Tensor<cpu, std::uint8_t> valid(Shape{Bn, Tn});
  for (index_t b = 0; b < Bn; ++b)
    for (index_t t = 0; t < Tn; ++t) {
      valid.at(b, t) = t < len[static_cast<std::size_t>(b)];
      if (!valid.at(b, t))
        for (index_t k = 0; k < 8; ++k) r.at(b, t, k) = 0;  // padded outputs do not count
    }
  // padded
  SoftmaxMask<cpu, D> mp;
  mp.key_valid = valid;
  Attention<cpu, D>::Cache cp;
  DT out_p(xp.shape()), dx_p(xp.shape());
  ps.zero_grad();
  attn.forward(xp, xp, mp, out_p, cp);
  attn.backward(xp, xp, r, dx_p, dx_p, {}, cp);
  const DT grads_p = copy_of(ps.grads());
  // packed
  const AttentionPacking self = AttentionPacking::self(p);
  SoftmaxMask<cpu, D> mk;
  mk.packed = &self;
  Attention<cpu, D>::Cache ck;
  const DT xk = pack_rows(xp, p), rk = pack_rows(r, p);
  DT out_k(xk.shape()), dx_k(xk.shape());
  ps.zero_grad();
  attn.forward(xk, xk, mk, out_k, ck);
  attn.backward(xk, xk, rk, dx_k, dx_k, {}, ck);
  CHECK(max_rel_diff<D, D>(out_k, pack_rows(out_p, p)) < 1e-13);
  CHECK(max_rel_diff<D, D>(dx_k, pack_rows(dx_p, p)) < 1e-13);
  CHECK(max_rel_diff<D, D>(ps.grads(), grads_p) < 1e-13);
}

TEST_CASE("T5 / Ankh3 on a packed batch: the same loss, logits and gradients as padded, and finite differences") {
  const T5Config c = grad_config();
  Ankh3Model<cpu, D> m(c, 5);
  randomize(m.params(), 6);
  // Three examples of different source and target lengths, two tasks.
  std::vector<samplers::Seq2SeqExample> ex(3);
  Philox rng(8);
  const index_t src_len[3] = {6, 3, 5}, tgt_len[3] = {2, 4, 3};
  for (int i = 0; i < 3; ++i) {
    ex[static_cast<std::size_t>(i)].task = i == 1 ? samplers::Task::s2s : samplers::Task::nlu;
    for (index_t t = 0; t < src_len[i]; ++t) ex[static_cast<std::size_t>(i)].inputs.push_back(3 + static_cast<std::int32_t>(rng.below(8)));
    for (index_t t = 0; t < tgt_len[i]; ++t) ex[static_cast<std::size_t>(i)].targets.push_back(3 + static_cast<std::int32_t>(rng.below(8)));
  }
  samplers::Seq2SeqBatch<cpu> padded;
  samplers::PackedSeq2SeqBatch<cpu> packed;
  samplers::collate<cpu>(ex, {0, 1, 2}, padded);
  samplers::collate_packed<cpu>(ex, {0, 1, 2}, packed);
  CHECK(packed.enc.offsets() == std::vector<index_t>{0, 6, 9, 14});
  CHECK(packed.dec.offsets() == std::vector<index_t>{0, 2, 6, 9});
  CHECK(packed.input_tokens == padded.input_tokens);
  CHECK(packed.target_tokens == padded.target_tokens);
  CHECK(packed.task == padded.task);
  const std::vector<std::int32_t> residues{3, 4, 5, 6, 7};
  objectives::MultiTask<cpu, D> loss_fn({{"nlu", 1.0}, {"s2s", 0.5}}, residues, -100, 0.1);

  ParameterSet<cpu, D>& ps = m.params();
  Ankh3Model<cpu, D>::Cache cache;
  DT lp(Shape{padded.rows(), padded.dec_ids.dim(1), c.vocab_size}), dlp(lp.shape());
  ps.zero_grad();
  m.forward(padded.enc_ids, padded.enc_valid, padded.dec_ids, lp, cache, Pass::eval(), padded.dec_valid);
  const auto rp = loss_fn(lp, padded.labels, padded.task, dlp);
  m.backward(dlp, cache);
  const DT grads_padded = copy_of(ps.grads());

  DT lk(Shape{1, packed.dec.tokens(), c.vocab_size}), dlk(lk.shape());
  ps.zero_grad();
  m.forward_packed(packed.enc_ids, packed.enc, packed.dec_ids, packed.dec, lk, cache);
  const auto rk = loss_fn(lk, packed.labels, packed.dec, packed.task, dlk);
  m.backward(dlk, cache);
  CHECK(std::abs(rk.total - rp.total) < 1e-13);
  for (std::size_t k = 0; k < 2; ++k) {
    CHECK(rk.tasks[k].tokens == rp.tasks[k].tokens);
    CHECK(rk.tasks[k].correct == rp.tasks[k].correct);
    CHECK(std::abs(rk.tasks[k].loss - rp.tasks[k].loss) < 1e-13);
  }
  CHECK(max_rel_diff<D, D>(lk, pack_rows(lp, packed.dec)) < 1e-13);
  CHECK(max_rel_diff<D, D>(ps.grads(), grads_padded) < 1e-12);

  // Finite differences through the packed model and the packed loss.
  auto loss = [&] {
    m.forward_packed(packed.enc_ids, packed.enc, packed.dec_ids, packed.dec, lk, cache);
    return loss_fn(lk, packed.labels, packed.dec, packed.task).total;
  };
  auto grads = [&] {
    ps.zero_grad();
    loss();
    loss_fn(lk, packed.labels, packed.dec, packed.task, dlk);
    m.backward(dlk, cache);
  };
  check_all(ps, loss, grads, {}, "packed Ankh3 model + MultiTask");

  // train::Seq2SeqStep, the loop's piece, gives the same figures packed and padded.
  train::Seq2SeqStep<cpu, D, Ankh3Model<cpu, D>> packed_step(true), padded_step(false);
  const auto sk = packed_step.run(m, loss_fn, ex, {0, 1, 2}, Pass::eval(), true);
  const auto sp = padded_step.run(m, loss_fn, ex, {0, 1, 2}, Pass::eval(), true);
  CHECK(std::abs(sk.total - rp.total) < 1e-13);
  CHECK(std::abs(sp.total - rp.total) < 1e-13);
  CHECK(packed_step.tokens() == packed.input_tokens + packed.target_tokens);
  CHECK(max_rel_diff<D, D>(packed_step.logits(), dlk) < 1e-13);  // d loss / d logits, as the loss wrote it above

  // The encoder alone on packed sources equals the padded encoder's valid rows.
  DT ep(Shape{padded.rows(), padded.enc_ids.dim(1), c.d_model}), ek(Shape{1, packed.enc.tokens(), c.d_model});
  m.encode(padded.enc_ids, padded.enc_valid, ep, cache);
  m.encode_packed(packed.enc_ids, packed.enc, ek, cache);
  CHECK(max_rel_diff<D, D>(ek, pack_rows(ep, packed.enc)) < 1e-13);

  // Mismatched packings are refused by name.
  check_error([&] { m.forward_packed(packed.enc_ids, packed.enc, packed.dec_ids, Packing({2, 6}), lk, cache); },
              "ids (1, 9) must be (1, 8) for 2 sequences");
  check_error([&] { m.forward_packed(packed.enc_ids, Packing({7, 7}), packed.dec_ids, packed.dec, lk, cache); },
              "2 packed sources but 3 packed targets");
  check_error([&] { loss_fn(lk, packed.labels, packed.dec, {0, 1}); }, "2 task ids for 3 packed sequences");
}

TEST_CASE("gradient: packed Ankh3 model in a training pass with dropout (probabilities, residual branches, feed-forward)") {
  T5Config c = grad_config();
  c.dropout_rate = 0.2;
  Ankh3Model<cpu, D> m(c, 3);
  randomize(m.params(), 4);
  const Packing src({5, 2, 4}), dec({3, 1, 2});
  Tensor<cpu, std::int32_t> ids(Shape{1, src.tokens()}), dids(Shape{1, dec.tokens()}), labels(Shape{1, dec.tokens()});
  Philox rng(6);
  for (index_t i = 0; i < ids.numel(); ++i) ids.data()[i] = 3 + static_cast<std::int32_t>(rng.below(8));
  for (index_t i = 0; i < dids.numel(); ++i) dids.data()[i] = 3 + static_cast<std::int32_t>(rng.below(8));
  for (index_t i = 0; i < labels.numel(); ++i) labels.data()[i] = 3 + static_cast<std::int32_t>(rng.below(8));
  const objectives::CrossEntropy<cpu, D> ce(-100);
  Ankh3Model<cpu, D>::Cache cache;
  DT logits(Shape{1, dec.tokens(), c.vocab_size}), dl(logits.shape());
  const Pass pass = Pass::train(77);
  auto loss = [&] {
    m.forward_packed(ids, src, dids, dec, logits, cache, pass);
    return ce(logits, labels).loss;
  };
  auto grads = [&] {
    m.params().zero_grad();
    loss();
    ce(logits, labels, dl);
    m.backward(dl, cache);
  };
  check_all(m.params(), loss, grads, {}, "packed Ankh3 with dropout");
  // Dropout is on: a training pass differs from an evaluation pass.
  const double train_loss = loss();
  m.forward_packed(ids, src, dids, dec, logits, cache);
  CHECK(std::abs(ce(logits, labels).loss - train_loss) > 1e-6);
}

TEST_CASE("packed batches: the token budget counts real tokens, every example once, fewer steps than padded") {
  Philox rng(3);
  std::vector<index_t> in, out;
  for (int i = 0; i < 300; ++i) {
    const index_t n = 20 + static_cast<index_t>(rng.below(400));
    in.push_back(n / 2 + 2);
    out.push_back(n - n / 2 + 1);
  }
  samplers::BatchOptions o;
  o.token_budget = 2048;
  o.window = 64;
  o.packed = true;
  Philox a(1);
  const auto packed = samplers::length_bucket_batches(in, out, o, a);
  std::vector<index_t> seen;
  for (const auto& b : packed) {
    index_t real = 0;
    for (index_t i : b) real += in[static_cast<std::size_t>(i)] + out[static_cast<std::size_t>(i)], seen.push_back(i);
    CHECK(real <= o.token_budget);
  }
  std::sort(seen.begin(), seen.end());
  std::vector<index_t> all(in.size());
  std::iota(all.begin(), all.end(), index_t(0));
  CHECK(seen == all);
  o.packed = false;
  Philox b(1);
  CHECK(samplers::length_bucket_batches(in, out, o, b).size() > packed.size());
}

TEST_CASE("ESM-2 and ESM-1b on a packed batch: the same logits, loss and gradients as padded, and finite differences") {
  for (const bool esm1b : {false, true}) {
    EsmConfig cfg;
    cfg.hidden_size = 8, cfg.num_hidden_layers = 2, cfg.num_attention_heads = 2, cfg.intermediate_size = 12;
    if (esm1b) cfg.position_embedding_type = "absolute", cfg.emb_layer_norm_before = true, cfg.max_position_embeddings = 12;
    EsmModel<cpu, D> m(cfg, 5);
    randomize(m.params(), 8);
    // Three sequences (cls ... eos) with masked tokens (32), padded with 1 to the longest.
    const std::vector<std::vector<std::int32_t>> seqs{{0, 5, 32, 7, 9, 2}, {0, 12, 32, 2}, {0, 6, 8, 32, 32, 11, 2}};
    const index_t Bn = 3, Tn = 7;
    std::vector<index_t> len;
    Tensor<cpu, std::int32_t> ids(Shape{Bn, Tn}), labels(Shape{Bn, Tn});
    Tensor<cpu, std::uint8_t> valid(Shape{Bn, Tn});
    for (index_t b = 0; b < Bn; ++b) {
      const auto& q = seqs[static_cast<std::size_t>(b)];
      len.push_back(static_cast<index_t>(q.size()));
      for (index_t t = 0; t < Tn; ++t) {
        const bool tok = t < static_cast<index_t>(q.size());
        ids.at(b, t) = tok ? q[static_cast<std::size_t>(t)] : 1;
        valid.at(b, t) = tok;
        labels.at(b, t) = tok && ids.at(b, t) == 32 ? 6 + static_cast<std::int32_t>(t) : (tok && t == 1 ? ids.at(b, t) : -100);
      }
    }
    const Packing p(len);
    Tensor<cpu, std::int32_t> pids(Shape{1, p.tokens()}), plabels(Shape{1, p.tokens()});
    for (index_t b = 0; b < Bn; ++b)
      for (index_t t = 0; t < p.length(b); ++t) pids.at(0, p.offset(b) + t) = ids.at(b, t), plabels.at(0, p.offset(b) + t) = labels.at(b, t);
    const objectives::CrossEntropy<cpu, D> ce(-100);
    typename EsmModel<cpu, D>::Cache c;
    DT lp(Shape{Bn, Tn, cfg.vocab_size}), dlp(lp.shape()), lk(Shape{1, p.tokens(), cfg.vocab_size}), dlk(lk.shape());
    m.params().zero_grad();
    m.forward(ids, valid, lp, c);
    const double loss_padded = ce(lp, labels, dlp).loss;
    m.backward(dlp, c);
    const DT g_padded = copy_of(m.params().grads());
    m.params().zero_grad();
    m.forward_packed(pids, p, lk, c);
    const double loss_packed = ce(lk, plabels, dlk).loss;
    m.backward(dlk, c);
    INFO("esm1b ", esm1b);
    CHECK(std::abs(loss_packed - loss_padded) < 1e-13);
    CHECK(max_rel_diff<D, D>(lk, pack_rows(lp, p)) < 1e-13);
    CHECK(max_rel_diff<D, D>(m.params().grads(), g_padded) < 1e-12);
    auto loss = [&] {
      m.forward_packed(pids, p, lk, c);
      return ce(lk, plabels).loss;
    };
    auto grads = [&] {
      m.params().zero_grad();
      loss();
      ce(lk, plabels, dlk);
      m.backward(dlk, c);
    };
    check_all(m.params(), loss, grads, {}, esm1b ? "packed ESM-1b" : "packed ESM-2");
  }
}

TEST_CASE("collate_mlm packed: the padded batch's valid rows end to end, no mask, the lengths as its packing") {
  std::vector<samplers::MlmExample> ex(3);
  ex[0].ids = {0, 5, 32, 2}, ex[0].labels = {-100, -100, 7, -100};
  ex[1].ids = {0, 6, 2}, ex[1].labels = {-100, 6, -100};
  ex[2].ids = {0, 9, 9, 32, 2}, ex[2].labels = {-100, -100, -100, 11, -100};
  samplers::MlmBatch<cpu> padded, packed;
  samplers::collate_mlm<cpu>(ex, {2, 0}, 1, padded);
  samplers::collate_mlm<cpu>(ex, {2, 0}, 1, packed, true);
  CHECK(!padded.packed);
  CHECK(packed.packed);
  CHECK(packed.packing.offsets() == std::vector<index_t>{0, 5, 9});
  CHECK(packed.tokens == padded.tokens);
  CHECK(packed.valid.numel() == 0);
  const std::vector<std::int32_t> ids(packed.ids.data(), packed.ids.data() + 9), labels(packed.labels.data(), packed.labels.data() + 9);
  CHECK(ids == std::vector<std::int32_t>{0, 9, 9, 32, 2, 0, 5, 32, 2});
  CHECK(labels == std::vector<std::int32_t>{-100, -100, -100, 11, -100, -100, -100, 7, -100});
  check_error([&] { samplers::collate_mlm<cpu>(ex, {3}, 1, packed, true); }, "row 3 outside the 3 examples");
}
