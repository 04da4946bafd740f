// The one compiled unit of plm: explicit instantiations of the common aliases
// that plm/precompiled.hpp declares extern (see there). Compile it once per
// program (plm's CMake: the plm::precompiled static library).
#define PLM_PRECOMPILED_UNIT
#include "plm/plm.hpp"
#include "plm/precompiled.hpp"

PLM_INSTANTIATE()
