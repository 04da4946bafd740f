#pragma once
// Encoder backbones of either model family from a Hugging Face checkpoint
// directory, picked by its config.json's model_type:
//   "t5"   T5 / Ankh (nn::AnkhModel or nn::Ankh3Model by feed_forward_proj),
//          the encoder half (io::load_t5_encoder)
//   "esm"  ESM-2, ESM-1b (nn::EsmModel)
//   "bert" ProtBert (nn::BertModel; a config without model_type whose
//          architectures name a Bert class counts as one)
// so one program embeds or fine-tunes either. Both model types offer the
// encoder interface (d_model(), vocab_size(), num_encoder_layers(),
// encode / encode_backward, hidden_state) that train::embed and
// train::NegativeMiningModel use.
#include <filesystem>
#include <string>

#include "plm/core/error.hpp"
#include "plm/core/type_tag.hpp"
#include "plm/io/bert_checkpoint.hpp"
#include "plm/io/esm_checkpoint.hpp"
#include "plm/io/hf_config.hpp"
#include "plm/io/t5_checkpoint.hpp"
#include "plm/nn/bert.hpp"
#include "plm/nn/esm.hpp"
#include "plm/nn/t5.hpp"

namespace plm::io {

// Calls f(plm::type_tag<Model>{}) with the model type of the directory's family.
template <class B, class T = float, class F>
decltype(auto) with_encoder_checkpoint_type(const std::string& dir, F&& f) {
  const std::string type = read_model_type(dir);
  if (type == "t5") return with_t5_checkpoint_type<B, T>(dir, std::forward<F>(f));
  if (type == "esm") return f(type_tag<nn::EsmModel<B, T>>{});
  if (type == "bert") return f(type_tag<nn::BertModel<B, T>>{});
  PLM_FAIL((std::filesystem::path(dir) / "config.json").string(), ": model_type '", type,
           "' is not a family plm builds as an encoder (t5, esm, bert)");
}

namespace detail {
template <class B, class T, class P>
nn::T5Model<B, T, P> load_encoder(type_tag<nn::T5Model<B, T, P>>, const std::string& dir) {
  return load_t5_encoder<nn::T5Model<B, T, P>>(dir);
}
template <class B, class T, class P>
nn::EsmModel<B, T, P> load_encoder(type_tag<nn::EsmModel<B, T, P>>, const std::string& dir) {
  return load_esm<nn::EsmModel<B, T, P>>(dir);
}
template <class B, class T, class P>
nn::BertModel<B, T, P> load_encoder(type_tag<nn::BertModel<B, T, P>>, const std::string& dir) {
  return load_bert<nn::BertModel<B, T, P>>(dir);
}
template <class B, class T, class P>
void load_backbone_weights(nn::BertModel<B, T, P>& m, const std::string& dir) {
  load_bert_weights(m, dir);
}
template <class B, class T, class P>
nn::BertConfig backbone_config(type_tag<nn::BertModel<B, T, P>>, const std::string& dir) {
  return read_bert_dir_config(dir);
}
template <class B, class T, class P>
void load_backbone_weights(nn::T5Model<B, T, P>& m, const std::string& dir) {
  load_t5_weights(m, dir);
}
template <class B, class T, class P>
void load_backbone_weights(nn::EsmModel<B, T, P>& m, const std::string& dir) {
  load_esm_weights(m, dir);
}
template <class B, class T, class P>
nn::T5Config backbone_config(type_tag<nn::T5Model<B, T, P>>, const std::string& dir) {
  nn::T5Config c = read_t5_dir_config(dir);
  c.num_decoder_layers = 0;  // the encoder alone
  return c;
}
template <class B, class T, class P>
nn::EsmConfig backbone_config(type_tag<nn::EsmModel<B, T, P>>, const std::string& dir) {
  return read_esm_dir_config(dir);
}
}  // namespace detail

// The model a directory holds, ready to encode (for T5 the encoder alone).
template <class Model>
Model load_encoder(const std::string& dir) {
  return detail::load_encoder(type_tag<Model>{}, dir);
}

// The config an encoder-only Model of this directory is built from (a T5
// config with num_decoder_layers = 0), e.g. for train::NegativeMiningModel.
template <class Model>
auto read_backbone_config(const std::string& dir) {
  return detail::backbone_config(type_tag<Model>{}, dir);
}

// Fills an encoder built in a caller's set (next to a head) from the directory.
template <class Model>
void load_backbone_weights(Model& m, const std::string& dir) {
  detail::load_backbone_weights(m, dir);
}

}  // namespace plm::io
