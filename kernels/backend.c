/* The backend-neutral entry points of kernels/backend.h: creation by kind, and the
 * queries a capability guards. The only file outside kernels/cuda/ that names the CUDA
 * backend's own functions, so that callers need neither its header nor an #ifdef. */
#include "kernels/backend.h"

#include <stdio.h>

#include "kernels/cuda/cuda_backend.h"

augur_status backend_create(augur_backend **out, augur_backend_kind kind, const augur_backend_opts *opts,
                            augur_error *err)
{
    *out = NULL;
    switch (kind) {
    case AUGUR_BACKEND_CPU: return backend_cpu_create(out, opts->threads, err);
    case AUGUR_BACKEND_CUDA: return backend_cuda_create(out, opts->device, err);
    }
    return augur_fail(err, AUGUR_E_INTERNAL, "backend_create: unknown backend kind %d", (int)kind);
}

int backend_device_count(augur_backend_kind kind)
{
    switch (kind) {
    case AUGUR_BACKEND_CPU: return 1;
    case AUGUR_BACKEND_CUDA: return backend_cuda_device_count();
    }
    return 0;
}

augur_status backend_memory_info(augur_backend *be, size_t *free_bytes, size_t *total_bytes, augur_error *err)
{
    if (!be->caps.memory_info || !be->iface.memory_info) {
        *free_bytes = *total_bytes = 0;
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "%s backend: no device memory to query", be->name);
    }
    return be->iface.memory_info(be, free_bytes, total_bytes, err);
}

void *backend_stream(augur_backend *be)
{
    return be && be->caps.stream && be->iface.stream ? be->iface.stream(be) : NULL;
}

void backend_device_name(augur_backend *be, char *name, size_t len)
{
    if (be->iface.device_name)
        be->iface.device_name(be, name, len);
    else
        snprintf(name, len, "%s", be->device < 0 ? "host" : "?");
}
