// gpgme, loaded on first use (lazylib.h): only OpenPGP signature checks
// (scanner/trust/simple_signing.cc) need it. One trampoline per function moat
// calls; the header's inline helpers (gpgme_err_code ...) need none.
#include <gpgme.h>

#include "storage/lazylib/lazylib.h"

namespace {
moat::lazylib::Library gpgme_lib{"libgpgme.so.11", "libgpgme11", "checking an OpenPGP signature"};
}  // namespace

#define MOAT_GPGME(name) reinterpret_cast<decltype(&name)>(moat::lazylib::symbol(gpgme_lib, #name))

extern "C" {

const char* gpgme_check_version_internal(const char* req, size_t offset) {
  static const auto f = MOAT_GPGME(gpgme_check_version_internal);
  return f(req, offset);
}
const char* gpgme_strerror(gpgme_error_t e) {
  static const auto f = MOAT_GPGME(gpgme_strerror);
  return f(e);
}
gpgme_error_t gpgme_new(gpgme_ctx_t* ctx) {
  static const auto f = MOAT_GPGME(gpgme_new);
  return f(ctx);
}
void gpgme_release(gpgme_ctx_t ctx) {
  static const auto f = MOAT_GPGME(gpgme_release);
  f(ctx);
}
gpgme_error_t gpgme_set_protocol(gpgme_ctx_t ctx, gpgme_protocol_t p) {
  static const auto f = MOAT_GPGME(gpgme_set_protocol);
  return f(ctx, p);
}
gpgme_error_t gpgme_ctx_set_engine_info(gpgme_ctx_t ctx, gpgme_protocol_t p, const char* file, const char* home) {
  static const auto f = MOAT_GPGME(gpgme_ctx_set_engine_info);
  return f(ctx, p, file, home);
}
gpgme_error_t gpgme_data_new_from_mem(gpgme_data_t* d, const char* buf, size_t n, int copy) {
  static const auto f = MOAT_GPGME(gpgme_data_new_from_mem);
  return f(d, buf, n, copy);
}
gpgme_error_t gpgme_data_new_from_cbs(gpgme_data_t* d, gpgme_data_cbs_t cbs, void* handle) {
  static const auto f = MOAT_GPGME(gpgme_data_new_from_cbs);
  return f(d, cbs, handle);
}
void gpgme_data_release(gpgme_data_t d) {
  static const auto f = MOAT_GPGME(gpgme_data_release);
  f(d);
}
gpgme_error_t gpgme_op_import(gpgme_ctx_t ctx, gpgme_data_t keys) {
  static const auto f = MOAT_GPGME(gpgme_op_import);
  return f(ctx, keys);
}
gpgme_import_result_t gpgme_op_import_result(gpgme_ctx_t ctx) {
  static const auto f = MOAT_GPGME(gpgme_op_import_result);
  return f(ctx);
}
gpgme_error_t gpgme_op_verify(gpgme_ctx_t ctx, gpgme_data_t sig, gpgme_data_t signed_text, gpgme_data_t plain) {
  static const auto f = MOAT_GPGME(gpgme_op_verify);
  return f(ctx, sig, signed_text, plain);
}
gpgme_verify_result_t gpgme_op_verify_result(gpgme_ctx_t ctx) {
  static const auto f = MOAT_GPGME(gpgme_op_verify_result);
  return f(ctx);
}
gpgme_error_t gpgme_get_key(gpgme_ctx_t ctx, const char* fpr, gpgme_key_t* key, int secret) {
  static const auto f = MOAT_GPGME(gpgme_get_key);
  return f(ctx, fpr, key, secret);
}
void gpgme_key_unref(gpgme_key_t key) {
  static const auto f = MOAT_GPGME(gpgme_key_unref);
  f(key);
}

}  // extern "C"
