#pragma once
// A value that names a type, so a runtime choice (a config's activation, a
// command-line option) can call a generic lambda once per compile-time type:
//   dispatch(name, [&](auto tag) { using Model = typename decltype(tag)::type; ... });
namespace plm {

template <class T>
struct type_tag {
  using type = T;
};

}  // namespace plm
