// quickstart: a tiny residue language model written directly against ops<cpu>.
//
// Predicts each residue of a protein from the three before it:
//   embed 3 residues -> RMS norm -> Linear -> gelu -> Linear -> softmax
// trained by plain SGD on four well-known proteins and evaluated on a fifth it
// never sees, next to the unigram (residue-frequency) baseline. It shows the
// pieces every plm layer is built from: tensors and views, Philox-seeded
// initialisation, forward ops and their backward ops adding into gradients.
//
// Five proteins are far too little data to learn anything that transfers: the
// training loss falls while the held-out loss stays near the unigram baseline
// and rises once the model starts to memorise. Learning that generalises needs
// the pre-training recipe on thousands of sequences.
//
//   quickstart [--epochs N] [--threads N] [--seed S]
#include <plm/plm.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace plm;
using O = ops<cpu>;
using T = Tensor<cpu, float>;

namespace {

const char* kAlphabet = "ACDEFGHIKLMNPQRSTVWY";  // the 20 standard residues
constexpr int kContext = 3, kVocab = 21;         // id 20 = before the start of the sequence

struct Protein {
  const char* name;
  const char* sequence;
};
// Commonly published sequences (UniProt): human ubiquitin, jellyfish GFP, hen
// egg-white lysozyme (mature chain), human preproinsulin; held out: sperm whale myoglobin.
const Protein kTrain[] = {
    {"ubiquitin", "MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG"},
    {"GFP", "MSKGEELFTGVVPILVELDGDVNGHKFSVSGEGEGDATYGKLTLKFICTTGKLPVPWPTLVTTFSYGVQCFSRYPDHMKQHDFFKSAMPEGYVQERTIFFKDDGNYKTRAEVKFEGDTLVNRIELKGIDFKEDGNILGHKLEYNYNSHNVYIMADKQKNGIKVNFKIRHNIEDGSVQLADHYQQNTPIGDGPVLLPDNHYLSTQSALSKDPNEKRDHMVLLEFVTAAGITHGMDELYK"},
    {"lysozyme", "KVFGRCELAAAMKRHGLDNYRGYSLGNWVCAAKFESNFNTQATNRNTDGSTDYGILQINSRWWCNDGRTPGSRNLCNIPCSALLSSDITASVNCAKKIVSDGNGMNAWVAWRNRCKGTDVQAWIRGCRL"},
    {"insulin", "MALWMRLLPLLALLALWGPDPAAAFVNQHLCGSHLVEALYLVCGERGFFYTPKTRREAEDLQVGQVELGGGPGAGSLQPLALEGSLQKRGIVEQCCTSICSLYQLENYCN"},
};
const Protein kHeldOut = {"myoglobin", "MVLSEGEWQLVLHVWAKVEADVAGHGQDILIRLFKSHPETLEKFDRFKHLKTEAEMKASEDLKKHGVTVLTALGAILKKKGHHEAELKPLAQSHATKHKIPIKYLEFISEAIIHVLHSRHPGDFGADAQGAMNKALELFRKDIAAKYKELGYQG"};

int residue_id(char c) {
  const char* p = std::strchr(kAlphabet, c);
  PLM_CHECK(c != 0 && p, "quickstart: unknown residue '", c, "'");
  return static_cast<int>(p - kAlphabet);
}

// One example per residue: (previous kContext residue ids, this residue's id).
struct Examples {
  Tensor<cpu, std::int32_t> context, target;
  explicit Examples(std::vector<const Protein*> proteins) {
    std::vector<std::int32_t> ctx, tgt;
    for (const Protein* p : proteins) {
      const std::string s = p->sequence;
      for (std::size_t i = 0; i < s.size(); ++i) {
        for (int k = kContext; k >= 1; --k) ctx.push_back(i >= std::size_t(k) ? residue_id(s[i - k]) : kVocab - 1);
        tgt.push_back(residue_id(s[i]));
      }
    }
    const index_t n = static_cast<index_t>(tgt.size());
    context.resize(Shape{n, kContext});
    target.resize(Shape{n});
    std::copy(ctx.begin(), ctx.end(), context.data());
    std::copy(tgt.begin(), tgt.end(), target.data());
  }
  index_t size() const { return target.numel(); }
};

struct Model {
  static constexpr index_t C = 4, D = kContext * C, H = 8, V = 20;
  T embed{Shape{kVocab, C}}, norm{Shape{D}}, w1{Shape{H, D}}, w2{Shape{V, H}};
  T g_embed{Shape{kVocab, C}}, g_norm{Shape{D}}, g_w1{Shape{H, D}}, g_w2{Shape{V, H}};
  // activations, sized per batch and reused
  T x, xn, inv, a, z, logits, probs, dz, da, dxn, dx;

  explicit Model(std::uint64_t seed) {
    Philox rng(seed);
    auto init = [&](T& w, double std) {
      for (index_t i = 0; i < w.numel(); ++i) w.data()[i] = static_cast<float>(std * rng.normal());
    };
    init(embed, 1.0);
    O::fill(norm, 1.f);
    init(w1, 1.0 / std::sqrt(double(D)));
    init(w2, 1.0 / std::sqrt(double(H)));
  }

  // Returns the mean cross-entropy (nats) over the examples; with train, also the gradients.
  double step(const Examples& ex, bool train) {
    const index_t n = ex.size();
    x.resize(Shape{n, kContext, C});
    xn.resize(Shape{n, D});
    inv.resize(Shape{n});
    a.resize(Shape{n, H});
    z.resize(Shape{n, H});
    logits.resize(Shape{n, V});
    probs.resize(Shape{1, 1, n, V});
    O::gather(embed, ex.context, x);                       // (n, 3, C)
    O::rms_norm(x.reshape(Shape{n, D}), norm, 1e-6f, xn, inv);  // (n, D)
    O::matmul(xn, false, w1, true, a);                     // (n, H)
    O::gelu(a, z);
    O::matmul(z, false, w2, true, logits);                 // (n, V)
    O::masked_softmax(logits.reshape(Shape{1, 1, n, V}), probs);
    double loss = 0;
    for (index_t i = 0; i < n; ++i) loss -= std::log(std::max(probs.data()[i * V + ex.target.data()[i]], 1e-30f));
    loss /= double(n);
    if (!train) return loss;

    // d loss / d logits = (softmax - onehot) / n, written over probs in place.
    T& dlogits = probs;
    for (index_t i = 0; i < n; ++i) dlogits.data()[i * V + ex.target.data()[i]] -= 1.f;
    O::scale(dlogits, 1.f / float(n), dlogits);
    auto dl = dlogits.reshape(Shape{n, V});
    for (T* g : {&g_embed, &g_norm, &g_w1, &g_w2}) O::fill(*g, 0.f);
    dz.resize(Shape{n, H});
    da.resize(Shape{n, H});
    dxn.resize(Shape{n, D});
    dx.resize(Shape{n, D});
    O::matmul(dl, true, z, false, g_w2);      // dW2 = dlogits^T z
    O::matmul(dl, false, w2, false, dz);      // dz = dlogits W2
    O::gelu_backward(a, dz, da);
    O::matmul(da, true, xn, false, g_w1);     // dW1 = da^T xn
    O::matmul(da, false, w1, false, dxn);     // dxn = da W1
    O::rms_norm_backward(x.reshape(Shape{n, D}), norm, inv, dxn, dx, g_norm);
    O::scatter_add(ex.context, dx.reshape(Shape{n, kContext, C}), g_embed);
    return loss;
  }

  void sgd(float lr) {
    O::axpy(-lr, g_embed, embed);
    O::axpy(-lr, g_norm, norm);
    O::axpy(-lr, g_w1, w1);
    O::axpy(-lr, g_w2, w2);
  }
};

double unigram_entropy(const Examples& train, const Examples& eval) {
  std::vector<double> count(20, 1.0);  // add-one smoothing
  for (index_t i = 0; i < train.size(); ++i) count[train.target.data()[i]] += 1;
  double total = 0, h = 0;
  for (double c : count) total += c;
  for (index_t i = 0; i < eval.size(); ++i) h -= std::log(count[eval.target.data()[i]] / total);
  return h / double(eval.size());
}

}  // namespace

int main(int argc, char** argv) {
  int epochs = 100, threads = 2;
  std::uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--epochs" && i + 1 < argc) epochs = std::atoi(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: %s [--epochs N] [--threads N] [--seed S]\n", argv[0]);
      return 2;
    }
  }
  try {
    set_num_threads(threads);
    std::vector<const Protein*> train_set;
    for (const Protein& p : kTrain) train_set.push_back(&p);
    const Examples train(train_set), held_out({&kHeldOut});
    Model model(seed);
    std::printf("quickstart: %lld training residues from 4 proteins, %lld held-out residues (%s)\n",
                static_cast<long long>(train.size()), static_cast<long long>(held_out.size()), kHeldOut.name);
    std::printf("unigram baseline: train %.3f nats, held-out %.3f nats (uniform: %.3f)\n",
                unigram_entropy(train, train), unigram_entropy(train, held_out), std::log(20.0));
    for (int e = 0; e <= epochs; ++e) {
      const double loss = model.step(train, e < epochs);
      if (!std::isfinite(loss)) PLM_FAIL("quickstart: loss became ", loss, " at epoch ", e);
      if (e % 20 == 0 || e == epochs)
        std::printf("epoch %4d  train loss %.3f  held-out loss %.3f\n", e, loss, model.step(held_out, false));
      if (e < epochs) model.sgd(0.5f);
    }
  } catch (const Error& err) {
    std::fprintf(stderr, "%s\n", err.what());
    return 1;
  }
  return 0;
}
