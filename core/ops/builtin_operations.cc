#include <cstdio>
#include <cstdlib>

#include "core/ops/ops.h"
#include "core/pipeline/operation_registry.h"

namespace stackproc::core {

void RegisterBuiltinOperations(OperationRegistry& registry) {
  for (OperationDef (*def)() :
       {ops::GaussianOperation,   ops::MedianOperation,     ops::BoxOperation,
        ops::BilateralOperation,  ops::UnsharpOperation,    ops::ClaheOperation,
        ops::NormalizeOperation,  ops::GammaOperation,      ops::InvertOperation,
        ops::ThresholdOperation,  ops::ResizeOperation,     ops::CropOperation,
        ops::FlipOperation,       ops::Rotate90Operation,   ops::ConvertOperation,
        ops::MorphologyOperation, ops::Gaussian3dOperation, ops::Mean3dOperation,
        ops::Median3dOperation,   ops::BackgroundOperation, ops::DestripeOperation,
        ops::FlatfieldOperation}) {
    if (absl::Status s = registry.Register(def()); !s.ok()) {
      // A built-in that does not register is a programming error caught by every test.
      std::fprintf(stderr, "stackproc: %s\n", s.ToString().c_str());
      std::abort();
    }
  }
}

}  // namespace stackproc::core
