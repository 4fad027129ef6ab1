// libcurl, loaded on first use (lazylib.h). One trampoline per function moat
// calls; a new call site that uses another libcurl function fails to link
// until it is added here.
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>

#include <cstdarg>

#include "storage/lazylib/lazylib.h"

namespace {
moat::lazylib::Library curl_lib{"libcurl.so.4", "libcurl4", "talking to a registry or a signature server"};
}  // namespace

// The real function's address, resolved once per function, and a trampoline
// to it (`return f(...)` also serves the void ones).
#define MOAT_CURL(name) reinterpret_cast<decltype(&name)>(moat::lazylib::symbol(curl_lib, #name))
#define MOAT_CURL_FN(ret, name, params, args) \
  ret name params {                           \
    static const auto f = MOAT_CURL(name);    \
    return f args;                            \
  }

extern "C" {

MOAT_CURL_FN(CURLcode, curl_global_init, (long flags), (flags))
MOAT_CURL_FN(CURL*, curl_easy_init, (void), ())
MOAT_CURL_FN(void, curl_easy_cleanup, (CURL* c), (c))
MOAT_CURL_FN(CURLcode, curl_easy_perform, (CURL* c), (c))
MOAT_CURL_FN(const char*, curl_easy_strerror, (CURLcode e), (e))
MOAT_CURL_FN(char*, curl_easy_escape, (CURL* c, const char* s, int n), (c, s, n))
MOAT_CURL_FN(void, curl_free, (void* p), (p))
MOAT_CURL_FN(curl_slist*, curl_slist_append, (curl_slist* l, const char* s), (l, s))
MOAT_CURL_FN(void, curl_slist_free_all, (curl_slist* l), (l))
MOAT_CURL_FN(CURLSH*, curl_share_init, (void), ())
MOAT_CURL_FN(CURLU*, curl_url, (void), ())
MOAT_CURL_FN(void, curl_url_cleanup, (CURLU* u), (u))
MOAT_CURL_FN(CURLUcode, curl_url_get, (CURLU* u, CURLUPart what, char** part, unsigned int flags), (u, what, part, flags))
MOAT_CURL_FN(CURLUcode, curl_url_set, (CURLU* u, CURLUPart what, const char* part, unsigned int flags), (u, what, part, flags))

// The variadic ones take exactly one argument after the option, whose type
// the option's number gives (curl.h: CURLOPTTYPE_*); it is read with that
// type and passed on, as libcurl's own curl_easy_setopt() reads it.
//
// Their last named parameter is an enum, as curl.h declares them, and clang
// calls va_start after such a parameter undefined (-Wvarargs: an enum
// promotes to int). libcurl itself is built from the same declarations and
// does the same; on every ABI moat builds for, an enum argument is passed
// exactly as an int.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wvarargs"
#endif
CURLcode curl_easy_setopt(CURL* c, CURLoption o, ...) {
  static const auto f = MOAT_CURL(curl_easy_setopt);
  va_list ap;
  va_start(ap, o);
  CURLcode r;
  if (o < CURLOPTTYPE_OBJECTPOINT) r = f(c, o, va_arg(ap, long));
  else if (o < CURLOPTTYPE_FUNCTIONPOINT) r = f(c, o, va_arg(ap, void*));
  else if (o < CURLOPTTYPE_OFF_T) r = f(c, o, va_arg(ap, void (*)()));
  else if (o < CURLOPTTYPE_BLOB) r = f(c, o, va_arg(ap, curl_off_t));
  else r = f(c, o, va_arg(ap, void*));
  va_end(ap);
  return r;
}
CURLcode curl_easy_getinfo(CURL* c, CURLINFO i, ...) {
  static const auto f = MOAT_CURL(curl_easy_getinfo);
  va_list ap;
  va_start(ap, i);
  CURLcode r = f(c, i, va_arg(ap, void*));  // always a pointer to the result
  va_end(ap);
  return r;
}
CURLSHcode curl_share_setopt(CURLSH* s, CURLSHoption o, ...) {
  static const auto f = MOAT_CURL(curl_share_setopt);
  va_list ap;
  va_start(ap, o);
  CURLSHcode r;
  if (o == CURLSHOPT_SHARE || o == CURLSHOPT_UNSHARE) r = f(s, o, va_arg(ap, int));  // a curl_lock_data
  else if (o == CURLSHOPT_LOCKFUNC || o == CURLSHOPT_UNLOCKFUNC) r = f(s, o, va_arg(ap, void (*)()));
  else r = f(s, o, va_arg(ap, void*));
  va_end(ap);
  return r;
}
#if defined(__clang__)
#pragma clang diagnostic pop
#endif

}  // extern "C"
