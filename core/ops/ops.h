// The built-in operations, one per file. RegisterBuiltinOperations lists them all.
#pragma once

#include "core/pipeline/operation.h"

namespace stackproc::core::ops {

OperationDef GaussianOperation();
OperationDef MedianOperation();
OperationDef BoxOperation();
OperationDef BilateralOperation();
OperationDef UnsharpOperation();
OperationDef ClaheOperation();
OperationDef NormalizeOperation();
OperationDef GammaOperation();
OperationDef InvertOperation();
OperationDef ThresholdOperation();
OperationDef ResizeOperation();
OperationDef CropOperation();
OperationDef FlipOperation();
OperationDef Rotate90Operation();
OperationDef ConvertOperation();
OperationDef MorphologyOperation();

}  // namespace stackproc::core::ops
