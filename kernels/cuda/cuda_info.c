/* Device queries for placement and memory plans (kernels/cuda/cuda_backend.h). */
#include <stdio.h>

#include <cuda_runtime.h>

#include "kernels/cuda/cuda_backend.h"

augur_status backend_cuda_mem_info(int device, size_t *free_bytes, size_t *total_bytes, augur_error *err)
{
    *free_bytes = *total_bytes = 0;
    int previous = 0;
    cudaError_t rc = cudaGetDevice(&previous);
    if (rc == cudaSuccess)
        rc = cudaSetDevice(device);
    if (rc == cudaSuccess)
        rc = cudaMemGetInfo(free_bytes, total_bytes);
    cudaSetDevice(previous);
    if (rc != cudaSuccess) {
        cudaGetLastError();
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "GPU %d: cudaMemGetInfo: %s (%s)", device,
                          cudaGetErrorString(rc), cudaGetErrorName(rc));
    }
    return AUGUR_OK;
}

void backend_cuda_device_name(int device, char *name, size_t len)
{
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
        cudaGetLastError();
        snprintf(name, len, "?");
        return;
    }
    snprintf(name, len, "%s", prop.name);
}
