#include "runtime/model/mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static augur_status open_failed(const char *path, int e, augur_error *err)
{
    if (e == ENOENT)
        return augur_fail(err, AUGUR_E_INPUT, "%s: no such file", path);
    return augur_fail(err, AUGUR_E_IO, "%s: cannot open: %s", path, strerror(e));
}

augur_status mapped_file_open(mapped_file **out, const char *path, augur_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return open_failed(path, errno, err);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return augur_fail(err, AUGUR_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    augur_status bad = AUGUR_OK;
    if (S_ISDIR(st.st_mode))
        bad = augur_fail(err, AUGUR_E_INPUT, "%s: is a directory, not a file", path);
    else if (!S_ISREG(st.st_mode))
        bad = augur_fail(err, AUGUR_E_INPUT, "%s: not a regular file", path);
    else if (st.st_size == 0)
        bad = augur_fail(err, AUGUR_E_FORMAT, "%s: file is empty", path);
    if (bad) {
        close(fd);
        return bad;
    }
    void *base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); /* the mapping keeps the file alive */
    if (base == MAP_FAILED)
        return augur_fail(err, AUGUR_E_IO, "%s: mmap failed: %s", path, strerror(map_errno));
    mapped_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        munmap(base, (size_t)st.st_size);
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", path);
    }
    f->base = base;
    f->size = (size_t)st.st_size;
    *out = f;
    return AUGUR_OK;
}

void mapped_file_close(mapped_file *f)
{
    if (!f)
        return;
    munmap((void *)f->base, f->size);
    free(f->path);
    free(f);
}
