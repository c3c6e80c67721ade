// The emulator's <cuda_pipeline.h>: the primitives only. Its nvcuda::experimental::pipeline class
// and libcu++'s cuda::memcpy_async / cuda::barrier are not emulated (the barrier spins on host
// atomics, which would hang the fibers).
#pragma once
#include "cuda_pipeline_primitives.h"
