/* Built without a CUDA toolkit: the CUDA backend's constructor and queries exist, fail
 * and report no devices, so that callers need no #ifdef (kernels/cuda/ defines them
 * otherwise). */
#ifndef AUGUR_HAVE_CUDA
#include <stdio.h>

#include "kernels/cuda/cuda_backend.h"

augur_status backend_cuda_create(augur_backend **out, int device, augur_error *err)
{
    *out = NULL;
    return augur_fail(err, AUGUR_E_UNSUPPORTED, "cuda backend (device %d): augur was built without CUDA", device);
}

int backend_cuda_device_count(void)
{
    return 0;
}

augur_status backend_cuda_mem_info(int device, size_t *free_bytes, size_t *total_bytes, augur_error *err)
{
    *free_bytes = *total_bytes = 0;
    return augur_fail(err, AUGUR_E_UNSUPPORTED, "GPU %d: augur was built without CUDA", device);
}

void backend_cuda_device_name(int device, char *name, size_t len)
{
    (void)device;
    snprintf(name, len, "?");
}

void *backend_cuda_stream(augur_backend *be)
{
    (void)be;
    return NULL;
}

int backend_cuda_device(const augur_backend *be)
{
    (void)be;
    return -1;
}

augur_status backend_cuda_set_paths(augur_backend *be, const cuda_backend_paths *paths, augur_error *err)
{
    (void)be;
    (void)paths;
    return augur_fail(err, AUGUR_E_INTERNAL, "cuda backend: augur was built without CUDA");
}
#else
/* ISO C forbids an empty translation unit. */
typedef int augur_backend_stubs_unused;
#endif
