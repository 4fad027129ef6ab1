// gpgme, loaded on first use (lazylib.h): only OpenPGP signature checks
// (scanner/trust/simple_signing.cc) need it. One trampoline per function moat
// calls; the header's inline helpers (gpgme_err_code ...) need none.
#include <gpgme.h>

#include "storage/lazylib/lazylib.h"

namespace {
moat::lazylib::Library gpgme_lib{"libgpgme.so.11", "libgpgme11", "checking an OpenPGP signature"};
}  // namespace

#define MOAT_GPGME(name) reinterpret_cast<decltype(&name)>(moat::lazylib::symbol(gpgme_lib, #name))
#define MOAT_GPGME_FN(ret, name, params, args) \
  ret name params {                            \
    static const auto f = MOAT_GPGME(name);    \
    return f args;                             \
  }

extern "C" {

MOAT_GPGME_FN(const char*, gpgme_check_version_internal, (const char* req, size_t offset), (req, offset))
MOAT_GPGME_FN(const char*, gpgme_strerror, (gpgme_error_t e), (e))
MOAT_GPGME_FN(gpgme_error_t, gpgme_new, (gpgme_ctx_t* ctx), (ctx))
MOAT_GPGME_FN(void, gpgme_release, (gpgme_ctx_t ctx), (ctx))
MOAT_GPGME_FN(gpgme_error_t, gpgme_set_protocol, (gpgme_ctx_t ctx, gpgme_protocol_t p), (ctx, p))
MOAT_GPGME_FN(gpgme_error_t, gpgme_ctx_set_engine_info, (gpgme_ctx_t ctx, gpgme_protocol_t p, const char* file, const char* home), (ctx, p, file, home))
MOAT_GPGME_FN(gpgme_error_t, gpgme_data_new_from_mem, (gpgme_data_t* d, const char* buf, size_t n, int copy), (d, buf, n, copy))
MOAT_GPGME_FN(gpgme_error_t, gpgme_data_new_from_cbs, (gpgme_data_t* d, gpgme_data_cbs_t cbs, void* handle), (d, cbs, handle))
MOAT_GPGME_FN(void, gpgme_data_release, (gpgme_data_t d), (d))
MOAT_GPGME_FN(gpgme_error_t, gpgme_op_import, (gpgme_ctx_t ctx, gpgme_data_t keys), (ctx, keys))
MOAT_GPGME_FN(gpgme_import_result_t, gpgme_op_import_result, (gpgme_ctx_t ctx), (ctx))
MOAT_GPGME_FN(gpgme_error_t, gpgme_op_verify, (gpgme_ctx_t ctx, gpgme_data_t sig, gpgme_data_t signed_text, gpgme_data_t plain), (ctx, sig, signed_text, plain))
MOAT_GPGME_FN(gpgme_verify_result_t, gpgme_op_verify_result, (gpgme_ctx_t ctx), (ctx))
MOAT_GPGME_FN(gpgme_error_t, gpgme_get_key, (gpgme_ctx_t ctx, const char* fpr, gpgme_key_t* key, int secret), (ctx, fpr, key, secret))
MOAT_GPGME_FN(void, gpgme_key_unref, (gpgme_key_t key), (key))

}  // extern "C"
