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
OperationDef Gaussian3dOperation();
OperationDef Mean3dOperation();
OperationDef Median3dOperation();
OperationDef BackgroundOperation();
OperationDef DestripeOperation();
OperationDef FlatfieldOperation();

// normalize's whole-stack stretch into another pixel type: the stack's `low` and `high`
// percentiles to 0 and `to`'s full scale (convert:mode=range).
std::unique_ptr<SliceOp> StackPercentileStretch(double low, double high, PixelType to);

}  // namespace stackproc::core::ops
