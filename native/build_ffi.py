"""cffi out-of-line API-mode build of the libvfio-user binding.

Run by setuptools at `pip install` (setup.py's cffi_modules).  It compiles
against the libvfio-user that `make setup` provisioned into the cache and
records that directory (rpath and LIBVFIO_USER_DIR) so that the module loads
it at run time without any environment variable.
"""

import sys
from pathlib import Path

from cffi import FFI

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ocssd_vfu.guest.provision import LIBVFIO_USER  # noqa: E402

LIB_DIR = LIBVFIO_USER.path()
if not LIBVFIO_USER.ready():
    sys.exit(f"libvfio-user is not provisioned at {LIB_DIR}: run `make setup` first")

CDEF = """
typedef struct vfu_ctx vfu_ctx_t;
typedef enum { VFU_TRANS_SOCK, ... } vfu_trans_t;
typedef enum { VFU_DEV_TYPE_PCI, ... } vfu_dev_type_t;
#define LIBVFIO_USER_FLAG_ATTACH_NB ...

vfu_ctx_t *vfu_create_ctx(vfu_trans_t trans, const char *path, int flags, void *pvt,
                          vfu_dev_type_t dev_type);
int vfu_realize_ctx(vfu_ctx_t *vfu_ctx);
int vfu_attach_ctx(vfu_ctx_t *vfu_ctx);
int vfu_get_poll_fd(vfu_ctx_t *vfu_ctx);
int vfu_run_ctx(vfu_ctx_t *vfu_ctx);
void vfu_destroy_ctx(vfu_ctx_t *vfu_ctx);
void *vfu_get_private(vfu_ctx_t *vfu_ctx);

static const char LIBVFIO_USER_DIR[];
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "ocssd_vfu.vfu._libvfio_user",
    '#include "libvfio-user.h"\n'
    f'static const char LIBVFIO_USER_DIR[] = "{LIB_DIR}";\n',
    include_dirs=[str(LIB_DIR / "include")],
    library_dirs=[str(LIB_DIR / "lib")],
    libraries=["vfio-user"],
    extra_link_args=[f"-Wl,-rpath,{LIB_DIR / 'lib'}"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
